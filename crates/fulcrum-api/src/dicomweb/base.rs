//! The service's own URL as the client sees it, for RetrieveURL,
//! BulkDataURI and Location: scheme and host from the request (or
//! X-Forwarded-Proto / X-Forwarded-Host), the path prefix it is nested
//! under from the original URI.

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

/// The local address a connection came in on, in each request's
/// extensions as `ConnectInfo<ServedOn>` (the HTTP listener puts it
/// there), so URLs get the right port for clients whose Host header omits
/// it (dicomweb-client sends `Host: 127.0.0.1` when talking to
/// `127.0.0.1:8080`).
#[derive(Debug, Clone, Copy)]
pub struct ServedOn {
    pub local: SocketAddr,
    pub tls: bool,
}

/// The port to add to a Host header without one: only when the host is
/// the very address the connection came in on (or `localhost` on a
/// loopback one), never behind a proxy that names the public host.
fn missing_port(headers: &HeaderMap, host: &str, served_on: Option<ServedOn>) -> Option<u16> {
    let ServedOn { local, tls } = served_on?;
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    if has_port || headers.contains_key("x-forwarded-host") {
        return None;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let same = bare.parse::<std::net::IpAddr>().ok() == Some(local.ip())
        || (bare.eq_ignore_ascii_case("localhost") && local.ip().is_loopback());
    let default = if scheme(headers, tls) == "https" {
        443
    } else {
        80
    };
    (same && local.port() != default).then_some(local.port())
}

/// The absolute URL of the service root as the client reached it
/// (`http://host:port/dicom-web`): for RetrieveURL, BulkDataURI, Location.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let full = parts
            .extensions
            .get::<OriginalUri>()
            .map(|o| o.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let prefix = full
            .strip_suffix(parts.uri.path())
            .unwrap_or("/dicom-web")
            .trim_end_matches('/');
        let on = parts.extensions.get::<ConnectInfo<ServedOn>>().map(|c| c.0);
        let host = host(&parts.headers, parts.uri.authority().map(|a| a.as_str()));
        let port = missing_port(&parts.headers, host, on)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        Ok(Base(format!(
            "{}://{host}{port}{prefix}",
            scheme(&parts.headers, on.is_some_and(|o| o.tls))
        )))
    }
}

/// Host names and ports only: anything else in a Host header is ignored.
fn clean_host(h: &str) -> Option<&str> {
    let h = h.trim();
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    ok.then_some(h)
}

fn host<'a>(headers: &'a HeaderMap, authority: Option<&'a str>) -> &'a str {
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next());
    forwarded
        .and_then(clean_host)
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(clean_host)
        })
        .or_else(|| authority.and_then(clean_host))
        .unwrap_or("localhost")
}

/// X-Forwarded-Proto when a proxy says, else what the connection is.
fn scheme(headers: &HeaderMap, tls: bool) -> &'static str {
    match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        Some(p) if p.trim().eq_ignore_ascii_case("http") => "http",
        _ if tls => "https",
        _ => "http",
    }
}

/// A UID as a URL path segment (UIDs are digits and dots; anything else
/// a damaged file may hold is percent-encoded).
pub(crate) fn seg(uid: &str) -> String {
    let mut out = String::with_capacity(uid.len());
    for b in uid.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Base {
    pub fn study(&self, st: &str) -> String {
        format!("{}/studies/{}", self.0, seg(st))
    }
    pub fn series(&self, st: &str, se: &str) -> String {
        format!("{}/series/{}", self.study(st), seg(se))
    }
    pub fn instance(&self, st: &str, se: &str, sop: &str) -> String {
        format!("{}/instances/{}", self.series(st, se), seg(sop))
    }
}
