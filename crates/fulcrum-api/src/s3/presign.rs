//! Presigned URL lifetimes. SigV4 allows `X-Amz-Expires` from 0 to 604,800
//! seconds (seven days); s3s accepts a longer one and answers a negative
//! one as a malformed request. A URL outside that window is refused as AWS
//! refuses an expired one, so a link shared for longer than a week never
//! works.

/// The longest lifetime SigV4 allows a presigned URL, in seconds.
pub const MAX_EXPIRES: i64 = 7 * 24 * 3600;

/// Why a presigned request is refused before its signature is checked,
/// if it is.
pub fn refused_lifetime<B>(req: &hyper::Request<B>) -> Option<&'static str> {
    let query = req.uri().query()?;
    let expires = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Expires")
        .map(|(_, v)| v.into_owned())?;
    match expires.parse::<i64>() {
        Ok(n) if (0..=MAX_EXPIRES).contains(&n) => None,
        Ok(n) if n < 0 => Some("Request has expired"),
        _ => Some("X-Amz-Expires must be a number of seconds from 0 to 604800 (seven days)"),
    }
}

/// The answer to a refused presigned request.
pub fn refusal_response(message: &str) -> hyper::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
         <Message>{message}</Message></Error>"
    );
    hyper::Response::builder()
        .status(hyper::StatusCode::FORBIDDEN)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(s3s::Body::from(body))
        .unwrap_or_else(|_| hyper::Response::new(s3s::Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> hyper::Request<()> {
        hyper::Request::get(format!("/b/k?{q}"))
            .body(())
            .expect("request")
    }

    #[test]
    fn lifetimes_outside_seven_days_are_refused() {
        assert_eq!(refused_lifetime(&req("X-Amz-Expires=3600")), None);
        assert_eq!(refused_lifetime(&req("X-Amz-Expires=604800")), None);
        assert_eq!(refused_lifetime(&req("X-Amz-Expires=0")), None);
        assert!(refused_lifetime(&req("X-Amz-Expires=604801")).is_some());
        assert_eq!(
            refused_lifetime(&req("X-Amz-Expires=-7")),
            Some("Request has expired")
        );
        assert!(refused_lifetime(&req("X-Amz-Expires=soon")).is_some());
        assert_eq!(refused_lifetime(&req("list-type=2")), None);
        let res = refusal_response("Request has expired");
        assert_eq!(res.status(), 403);
    }
}
