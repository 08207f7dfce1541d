//! The S3 service as the listener calls it: s3s with what it leaves out
//! done around it, once for every operation. Request bodies are checked
//! against their announced digests (see `digest`), and a body refused there
//! is answered as AWS answers it (400 `BadDigest`, `InvalidDigest` or
//! `XAmzContentSHA256Mismatch`) rather than as the read error s3s or a
//! handler made of it; an error s3s answered without a `<Message>` gets
//! one, so clients show more than "Unknown".

use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use s3s::service::S3Service;
use s3s::{HttpError, S3Error, S3ErrorCode};

use super::digest::{self, Mismatch};

/// The s3s service with Fulcrum's checks around it.
#[derive(Clone)]
pub struct S3Front {
    inner: S3Service,
}

impl S3Front {
    pub(crate) fn new(inner: S3Service) -> Self {
        Self { inner }
    }

    pub async fn call(
        &self,
        req: hyper::Request<s3s::Body>,
    ) -> Result<hyper::Response<s3s::Body>, HttpError> {
        use s3s::stream::ByteStream as _;
        let has_body = req.body().remaining_length().exact() != Some(0);
        let (req, verdict) = digest::watch(req);
        let res = self.inner.call(req).await?;
        let mut res = match verdict.mismatch() {
            // The body's read failed on purpose; whatever s3s or the
            // handler answered for that failure, this is the reason.
            Some(m) if !res.status().is_success() => error_response(refusal(m)),
            _ => unquote_etag(escape_carriage_returns(with_message(res))),
        };
        if let Some(Status(status)) = res.extensions().get::<Status>().copied() {
            *res.status_mut() = status;
        }
        // An error may be answered before the body was read (a refused
        // encryption header, an unknown bucket). A client that sent the
        // body with `Expect: 100-continue` anyway (botocore does, for
        // small bodies) would have its next request on this connection
        // read after the unread body: close the connection instead.
        if has_body && !res.status().is_success() {
            res.headers_mut()
                .insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        Ok(res)
    }
}

fn refusal(m: &Mismatch) -> S3Error {
    let mut e = match m {
        Mismatch::InvalidMd5 => S3Error::with_message(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not valid: it must be the base64 of the body's 16-byte MD5. Nothing was done.",
        ),
        Mismatch::Md5 => S3Error::with_message(
            S3ErrorCode::BadDigest,
            "The Content-MD5 you specified did not match what we received. Nothing was done.",
        ),
        Mismatch::Sha256 {
            announced,
            computed,
        } => S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            format!("The provided 'x-amz-content-sha256' header does not match what was computed (client: {announced}, server: {computed}). Nothing was done."),
        ),
    };
    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
    e
}

/// `e` as S3's XML error document.
fn error_response(e: S3Error) -> hyper::Response<s3s::Body> {
    let status = e
        .status_code()
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut buf = Vec::with_capacity(256);
    let mut ser = s3s::xml::Serializer::new(&mut buf);
    if ser.decl().and_then(|()| ser.content("Error", &e)).is_err() {
        buf.clear();
    }
    hyper::Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/xml")
        .body(s3s::Body::from(buf))
        .unwrap_or_else(|_| hyper::Response::new(s3s::Body::empty()))
}

/// What an error without its own message says (AWS's wording where AWS
/// has one).
fn default_message(code: &str) -> String {
    match code {
        "SignatureDoesNotMatch" => "The request signature we calculated does not match the signature you provided. Check your key and signing method.".into(),
        "InvalidBucketName" => "The specified bucket is not valid: bucket names are 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit.".into(),
        "MalformedXML" => "The XML you provided was not well-formed or did not validate against our published schema.".into(),
        "InternalError" => "We encountered an internal error. Please try again.".into(),
        "AccessDenied" => "Access Denied".into(),
        "IncompleteBody" => "You did not provide the number of bytes specified by the Content-Length HTTP header.".into(),
        "MissingContentLength" => "You must provide the Content-Length HTTP header.".into(),
        "MaxMessageLengthExceeded" => "Your request was too big.".into(),
        "InvalidURI" => "Couldn't parse the specified URI.".into(),
        "MethodNotAllowed" => "The specified method is not allowed against this resource.".into(),
        "NotImplemented" => "A header you provided implies functionality that is not implemented.".into(),
        "RequestTimeTooSkewed" => "The difference between the request time and the current time is too large.".into(),
        "MissingSecurityHeader" => "Your request is missing a required header.".into(),
        "InvalidRequest" | "InvalidArgument" => "The request is not valid.".into(),
        other => format!("The request failed: {other}."),
    }
}

/// The status a response is sent with, where s3s would send another
/// (HeadObject's is always 200 there).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status(pub hyper::StatusCode);

/// Marks a response whose body is an object's bytes (GetObject), not a
/// document s3s wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObjectBody;

/// Marks a GetObjectAttributes answer, whose ETag AWS sends unquoted
/// (s3s quotes every ETag it writes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnquotedETag;

/// The `<ETag>` of a document marked [`UnquotedETag`] without its quotes.
fn unquote_etag(mut res: hyper::Response<s3s::Body>) -> hyper::Response<s3s::Body> {
    if res.extensions().get::<UnquotedETag>().is_none() {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    let text = String::from_utf8_lossy(&body)
        .replace("<ETag>&quot;", "<ETag>")
        .replace("&quot;</ETag>", "</ETag>")
        .replace("<ETag>\"", "<ETag>")
        .replace("\"</ETag>", "</ETag>");
    res.headers_mut().remove(CONTENT_LENGTH);
    *res.body_mut() = s3s::Body::from(text);
    res
}

/// An XML document's carriage returns as `&#13;` (keys, prefixes and
/// markers may hold them): XML parsers turn a raw one into a line feed,
/// so a listed key would name no object, as AWS documents for keys
/// (without `encoding-type=url`, which SDKs other than boto3 do not send).
fn escape_carriage_returns(mut res: hyper::Response<s3s::Body>) -> hyper::Response<s3s::Body> {
    if !is_xml(&res) || res.extensions().get::<ObjectBody>().is_some() {
        return res;
    }
    let Some(body) = res.body().bytes().filter(|b| b.contains(&b'\r')) else {
        return res;
    };
    let mut out = Vec::with_capacity(body.len() + 16);
    for &b in body.iter() {
        match b {
            b'\r' => out.extend_from_slice(b"&#13;"),
            b => out.push(b),
        }
    }
    res.headers_mut().remove(CONTENT_LENGTH);
    *res.body_mut() = s3s::Body::from(out);
    res
}

/// Whether `res` is an XML document.
fn is_xml(res: &hyper::Response<s3s::Body>) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"))
}

/// `res` with a `<Message>` added to its error document if it has none.
fn with_message(mut res: hyper::Response<s3s::Body>) -> hyper::Response<s3s::Body> {
    if res.status().as_u16() < 400 || !is_xml(&res) {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    if let Some(filled) = add_message(&body) {
        res.headers_mut().remove(CONTENT_LENGTH);
        *res.body_mut() = s3s::Body::from(filled);
    }
    res
}

fn add_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("<Error>") || text.contains("<Message>") {
        return None;
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let code = &text[start..end];
    let at = end + "</Code>".len();
    // The message is ours; the code is escaped XML already and is only
    // matched, never copied unescaped into the new text.
    let msg = default_message(code)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Some(format!(
        "{}<Message>{msg}</Message>{}",
        &text[..at],
        &text[at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_without_a_message_get_one() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        let filled = add_message(body.as_bytes()).expect("filled");
        assert!(filled.contains(
            "<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated"
        ));
        assert!(filled.ends_with("</Message></Error>"));
        let odd = add_message(b"<Error><Code>Some&amp;Thing</Code></Error>").expect("filled");
        assert!(odd.contains("<Message>The request failed: Some&amp;amp;Thing.</Message>"));
        assert!(add_message(b"<Error><Code>X</Code><Message>m</Message></Error>").is_none());
        assert!(add_message(b"<ListBucketResult/>").is_none());
    }

    #[test]
    fn refused_bodies_are_answered_as_aws_does() {
        let res = error_response(refusal(&Mismatch::Sha256 {
            announced: "aa".into(),
            computed: "bb".into(),
        }));
        assert_eq!(res.status(), 400);
        let text = String::from_utf8(res.body().bytes().expect("body").to_vec()).expect("utf8");
        assert!(
            text.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
            "{text}"
        );
        let res = error_response(refusal(&Mismatch::Md5));
        let text = String::from_utf8(res.body().bytes().expect("body").to_vec()).expect("utf8");
        assert!(text.contains("<Code>BadDigest</Code>"), "{text}");
    }
}
