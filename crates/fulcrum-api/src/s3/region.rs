//! The signing region. Fulcrum, like MinIO and Ceph RGW, accepts a SigV4
//! signature made for any region name, but a name outside `[a-z0-9-]`
//! (s3cmd's default `bucket_location = US`, `EU`) is not a region. For
//! those, answer what AWS answers a request signed for the wrong region:
//! `400 AuthorizationHeaderMalformed` naming the region to sign for, which
//! clients such as s3cmd read and retry with.

/// The region Fulcrum reports (`GetBucketLocation` answers the default,
/// which clients read as this).
pub const REGION: &str = "us-east-1";

/// The signing region of a SigV4 request (Authorization header or
/// presigned `X-Amz-Credential`), if it is not a valid region name.
pub fn malformed_region<B>(req: &hyper::Request<B>) -> Option<String> {
    let from_header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("AWS4-HMAC-SHA256"))
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string());
    let credential = from_header.or_else(|| {
        req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "X-Amz-Credential")
                .map(|(_, v)| v.into_owned())
        })
    })?;
    // access-key/date/region/service/aws4_request; the key may hold '/'.
    let mut parts = credential.rsplit('/');
    let (_terminator, _service, region) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!valid).then(|| region.to_string())
}

/// The error body AWS sends for a request signed for the wrong region.
pub fn wrong_region_response(region: &str) -> hyper::Response<s3s::Body> {
    // Echoed only as far as it is plain text (it comes from the client).
    let shown: String = region
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
         <Message>The authorization header is malformed; the region '{shown}' is wrong; \
         expecting '{REGION}'</Message><Region>{REGION}</Region></Error>"
    );
    hyper::Response::builder()
        .status(hyper::StatusCode::BAD_REQUEST)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .header("x-amz-bucket-region", REGION)
        .body(s3s::Body::from(body))
        .unwrap_or_else(|_| hyper::Response::new(s3s::Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> hyper::Request<()> {
        hyper::Request::builder()
            .uri("/b/k")
            .header("authorization", v)
            .body(())
            .expect("request")
    }

    #[test]
    fn upper_case_and_odd_regions_are_reported_and_real_ones_pass() {
        let auth = |r: &str| {
            with_auth(&format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20261126/{r}/s3/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
            ))
        };
        assert_eq!(malformed_region(&auth("US")).as_deref(), Some("US"));
        assert_eq!(malformed_region(&auth("EU")).as_deref(), Some("EU"));
        assert_eq!(malformed_region(&auth("us-east-1")), None);
        assert_eq!(malformed_region(&auth("garage")), None);
        let presigned = hyper::Request::builder()
            .uri("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261126%2FUS%2Fs3%2Faws4_request&X-Amz-Signature=00")
            .body(())
            .expect("request");
        assert_eq!(malformed_region(&presigned).as_deref(), Some("US"));
        let anonymous = hyper::Request::builder()
            .uri("/b/k")
            .body(())
            .expect("request");
        assert_eq!(malformed_region(&anonymous), None);
        assert_eq!(malformed_region(&with_auth("AWS AKID:sig")), None);
    }
}
