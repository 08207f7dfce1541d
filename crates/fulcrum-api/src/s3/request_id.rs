//! Request IDs: every S3 response carries `x-amz-request-id` (and
//! `x-amz-id-2`), and an error body names the same ID in `<RequestId>`, as
//! AWS does. A hospital's IT team quotes it when it reports a failed
//! upload; the server logs every failed request with it.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};

/// A new request ID: 16 upper-case hex digits, like AWS's.
pub fn new_request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// `res` with `id` in its headers and, for an S3 error body held in
/// memory, in the body.
pub fn stamp(mut res: hyper::Response<s3s::Body>, id: &str) -> hyper::Response<s3s::Body> {
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert("x-amz-request-id", v.clone());
        res.headers_mut().insert("x-amz-id-2", v);
    }
    let is_xml = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    if res.status().as_u16() < 300 || !is_xml {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    if let Some(with_id) = with_request_id(&body, id) {
        res.headers_mut().remove(hyper::header::CONTENT_LENGTH);
        *res.body_mut() = s3s::Body::from(with_id);
    }
    res
}

/// An `<Error>` document with `<RequestId>` added before its end, unless
/// it has one already or is not an error document.
fn with_request_id(body: &[u8], id: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    if text.contains("<RequestId>") {
        return None;
    }
    let end = text.rfind("</Error>")?;
    let mut out = String::with_capacity(text.len() + id.len() + 24);
    out.push_str(&text[..end]);
    out.push_str("<RequestId>");
    out.push_str(id);
    out.push_str("</RequestId>");
    out.push_str(&text[end..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_and_headers_name_the_request() {
        let id = new_request_id();
        assert_eq!(id.len(), 16);
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let res = hyper::Response::builder()
            .status(404)
            .header(CONTENT_TYPE, "application/xml")
            .body(s3s::Body::from(body.to_string()))
            .expect("response");
        let res = stamp(res, &id);
        assert_eq!(res.headers()["x-amz-request-id"], id.as_str());
        let text =
            String::from_utf8(res.body().bytes().expect("in memory").to_vec()).expect("utf8");
        assert_eq!(
            text,
            format!("<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>{id}</RequestId></Error>")
        );
        // A success body is left alone; so is an error that names its ID.
        let ok = hyper::Response::builder()
            .header(CONTENT_TYPE, "application/xml")
            .body(s3s::Body::from("<Error></Error>".to_string()))
            .expect("response");
        assert_eq!(
            stamp(ok, &id).body().bytes().expect("body").as_ref(),
            b"<Error></Error>"
        );
        assert!(with_request_id(b"<Error><RequestId>x</RequestId></Error>", &id).is_none());
    }
}
