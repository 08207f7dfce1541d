//! Bucket CORS, so a web page (a research portal, a viewer uploading
//! through presigned URLs) may call the S3 API from a browser: the
//! configuration (Put/Get/DeleteBucketCors, kept as a bucket setting) and
//! its use, in front of s3s. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered from the first matching
//! rule, or refused with 403; an actual request from an allowed origin gets
//! `Access-Control-Allow-Origin` and the rule's other headers on its
//! response, error responses included, as S3 does. Origins and header
//! names may hold one `*` wildcard; header names match case-insensitively.

use hyper::header::{HeaderMap, HeaderValue};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use super::S3Api;

/// The bucket setting holding the rules.
const CORS: &str = "cors";

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
const MAX_RULES: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rule {
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: Option<i32>,
}

/// `pattern` (with at most one `*`) matches `s`.
fn wildcard(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match pattern.split_once('*') {
        None => eq(pattern, s),
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len()
                && s.is_char_boundary(pre.len())
                && s.is_char_boundary(s.len() - post.len())
                && eq(&s[..pre.len()], pre)
                && eq(&s[s.len() - post.len()..], post)
        }
    }
}

impl Rule {
    fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.origins.iter().any(|o| wildcard(o, origin, false))
            && self.methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| self.headers.iter().any(|p| wildcard(p, h, true)))
    }

    /// The CORS headers of a response allowed by this rule.
    fn headers_for(&self, origin: &str, requested: &[&str], preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        let any = self.origins.iter().any(|o| o == "*");
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(
            "access-control-allow-origin",
            if any { "*" } else { origin },
        );
        put("access-control-allow-methods", &self.methods.join(", "));
        if !any {
            put("access-control-allow-credentials", "true");
            put(
                "vary",
                "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
            );
        }
        if preflight {
            if !requested.is_empty() {
                put("access-control-allow-headers", &requested.join(", "));
            }
            if let Some(age) = self.max_age {
                put("access-control-max-age", &age.to_string());
            }
        }
        if !self.expose.is_empty() {
            put("access-control-expose-headers", &self.expose.join(", "));
        }
        h
    }
}

fn from_config(cfg: CORSConfiguration) -> S3Result<Vec<Rule>> {
    if cfg.cors_rules.is_empty() || cfg.cors_rules.len() > MAX_RULES {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!("a CORS configuration has 1 to {MAX_RULES} rules"),
        ));
    }
    cfg.cors_rules
        .into_iter()
        .map(|r| {
            if let Some(m) = r
                .allowed_methods
                .iter()
                .find(|m| !METHODS.contains(&m.as_str()))
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ),
                ));
            }
            if r.allowed_origins.is_empty()
                || r.allowed_origins.iter().any(|o| o.matches('*').count() > 1)
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    "every CORS rule names at least one origin, each with at most one *",
                ));
            }
            Ok(Rule {
                id: r.id,
                origins: r.allowed_origins,
                methods: r.allowed_methods,
                headers: r.allowed_headers.unwrap_or_default(),
                expose: r.expose_headers.unwrap_or_default(),
                max_age: r.max_age_seconds,
            })
        })
        .collect()
}

fn to_config(rules: Vec<Rule>) -> Vec<CORSRule> {
    rules
        .into_iter()
        .map(|r| {
            let mut c = CORSRule::default();
            c.id = r.id;
            c.allowed_origins = r.origins;
            c.allowed_methods = r.methods;
            c.allowed_headers = (!r.headers.is_empty()).then_some(r.headers);
            c.expose_headers = (!r.expose.is_empty()).then_some(r.expose);
            c.max_age_seconds = r.max_age;
            c
        })
        .collect()
}

/// The CORS part of a browser's request: its origin, the method it makes
/// (or, in a preflight, asks about) and the headers it asks to send.
pub struct CorsAsk {
    pub origin: String,
    pub method: String,
    pub headers: Vec<String>,
    pub preflight: bool,
}

impl CorsAsk {
    /// The CORS question a request asks; `None` when it is not a browser's
    /// cross-origin request.
    pub fn of<B>(req: &hyper::Request<B>) -> Option<Self> {
        let get = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        let origin = get("origin")?.to_string();
        let preflight = req.method() == hyper::Method::OPTIONS;
        let method = match preflight {
            true => get("access-control-request-method")
                .unwrap_or("")
                .to_string(),
            false => req.method().as_str().to_string(),
        };
        let headers = get("access-control-request-headers")
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Some(Self {
            origin,
            method,
            headers,
            preflight,
        })
    }
}

/// The answer to a preflight that has no origin or method to ask about.
pub fn bad_preflight() -> hyper::Response<s3s::Body> {
    xml_response(
        hyper::StatusCode::BAD_REQUEST,
        "BadRequest",
        "Insufficient information. Origin request header needed.",
    )
}

fn xml_response(
    status: hyper::StatusCode,
    code: &str,
    message: &str,
) -> hyper::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(s3s::Body::from(body))
        .unwrap_or_else(|_| hyper::Response::new(s3s::Body::empty()))
}

impl S3Api {
    async fn cors_rules(&self, bucket: &str) -> S3Result<Option<Vec<Rule>>> {
        let stored = self.setting(bucket, CORS).await?;
        Ok(stored.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// The CORS headers for `ask` on `bucket`: `None` when no rule allows
    /// it (or the bucket has no CORS configuration, or does not exist).
    pub async fn cors_headers(&self, bucket: &str, ask: &CorsAsk) -> Option<HeaderMap> {
        let rules = self.cors_rules(bucket).await.ok()??;
        let requested: Vec<&str> = ask.headers.iter().map(String::as_str).collect();
        rules
            .iter()
            .find(|r| r.allows(&ask.origin, &ask.method, &requested))
            .map(|r| r.headers_for(&ask.origin, &requested, ask.preflight))
    }

    /// The answer to a preflight request for `bucket`.
    pub async fn preflight(
        &self,
        bucket: Option<&str>,
        ask: &CorsAsk,
    ) -> hyper::Response<s3s::Body> {
        if ask.method.is_empty() {
            return bad_preflight();
        }
        let allowed = match bucket {
            Some(b) => self.cors_headers(b, ask).await,
            None => None,
        };
        match allowed {
            Some(headers) => {
                let mut res = hyper::Response::new(s3s::Body::empty());
                *res.headers_mut() = headers;
                res
            }
            None => xml_response(
                hyper::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            ),
        }
    }

    pub(crate) async fn do_put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let i = req.input;
        let rules = from_config(i.cors_configuration)?;
        let json = serde_json::to_string(&rules)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
        self.set_setting(&i.bucket, CORS, Some(&json)).await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(crate) async fn do_get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        let Some(rules) = self.cors_rules(bucket).await? else {
            return self
                .none_configured(
                    bucket,
                    S3ErrorCode::NoSuchCORSConfiguration,
                    "CORS configuration",
                )
                .await;
        };
        let mut out = GetBucketCorsOutput::default();
        out.cors_rules = Some(to_config(rules));
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.clear_setting(&req.input.bucket, CORS).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> Rule {
        Rule {
            id: None,
            origins: origins.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            expose: vec![],
            max_age: None,
        }
    }

    #[test]
    fn origins_methods_and_headers_match_with_one_wildcard() {
        let r = rule(&["*suffix", "start*end", "prefix*"], &["GET"], &["x-amz-*"]);
        for ok in [
            "foo.suffix",
            "startend",
            "start12end",
            "prefix",
            "prefix.suffix",
        ] {
            assert!(r.allows(ok, "GET", &[]), "{ok}");
        }
        for no in ["foo.bar", "foo.suffix.get", "0start12end", "bla.prefix"] {
            assert!(!r.allows(no, "GET", &[]), "{no}");
        }
        assert!(!r.allows("foo.suffix", "PUT", &[]));
        assert!(r.allows("prefix", "GET", &["X-Amz-Meta-A"]));
        assert!(!r.allows("prefix", "GET", &["content-type"]));
        let any = rule(&["*"], &["GET", "PUT"], &[]);
        let h = any.headers_for("https://viewer.example", &[], false);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        let h = r.headers_for("prefix.x", &["x-amz-meta-a"], true);
        assert_eq!(h["access-control-allow-origin"], "prefix.x");
        assert_eq!(h["access-control-allow-headers"], "x-amz-meta-a");
    }
}
