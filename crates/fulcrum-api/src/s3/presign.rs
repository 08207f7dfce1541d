//! Presigned URL lifetimes. SigV4 allows `X-Amz-Expires` from 0 to 604,800
//! seconds (seven days); s3s accepts a longer one and answers a negative
//! one as a malformed request. A URL outside that window is refused as AWS
//! refuses an expired one, so a link shared for longer than a week never
//! works. The same holds for the SigV2 links s3s also accepts (what the aws
//! cli's `s3 presign` and boto3 make by default for some endpoints): their
//! `Expires` is a time, not a lifetime, so one more than seven days ahead
//! is refused.

/// The longest lifetime SigV4 allows a presigned URL, in seconds.
pub const MAX_EXPIRES: i64 = 7 * 24 * 3600;

/// Why a presigned request is refused before its signature is checked,
/// if it is.
pub fn refused_lifetime<B>(req: &hyper::Request<B>) -> Option<&'static str> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    refused_at(req.uri().query()?, now)
}

/// `refused_lifetime` at `now` (seconds since the epoch).
fn refused_at(query: &str, now: i64) -> Option<&'static str> {
    let get = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    // SigV2 (s3s checks a URL with `Signature` as one, whatever else it
    // carries: an added X-Amz-Expires is not signed and must not decide):
    // `Expires` is seconds since the epoch.
    if get("Signature").is_some() {
        let expires = get("Expires")?;
        return match expires.parse::<i64>() {
            Ok(t) if t.saturating_sub(now) <= MAX_EXPIRES => None,
            Ok(_) => Some("A presigned URL may be valid for at most seven days from now"),
            Err(_) => Some("Expires must be a time in seconds since the epoch"),
        };
    }
    let expires = get("X-Amz-Expires")?;
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
        // SigV2 links: a time at most seven days ahead.
        let now = 1_800_000_000;
        let v2 = |t: i64| format!("AWSAccessKeyId=AK&Signature=x%3D&Expires={t}");
        assert_eq!(refused_at(&v2(now + 3600), now), None);
        assert_eq!(refused_at(&v2(now + MAX_EXPIRES), now), None);
        assert!(refused_at(&v2(now + MAX_EXPIRES + 1), now).is_some());
        assert!(refused_at(&v2(now + 315_360_000), now).is_some());
        assert!(refused_at("AWSAccessKeyId=AK&Signature=x&Expires=later", now).is_some());
        // An unsigned X-Amz-Expires added to a SigV2 link decides nothing.
        let padded = format!("{}&X-Amz-Expires=60", v2(now + 315_360_000));
        assert!(refused_at(&padded, now).is_some());
        assert!(refused_at(&v2(i64::MIN), now).is_none());
        // An `Expires` that is no presigned URL's (a plain query) passes.
        assert_eq!(refused_at("Expires=9999999999", now), None);
        let res = refusal_response("Request has expired");
        assert_eq!(res.status(), 403);
    }
}
