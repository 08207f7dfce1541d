//! S3 request parsing as our server meets it: the XML bodies s3s
//! deserializes before a handler runs (CompleteMultipartUpload,
//! DeleteObjects, CreateBucket, and the configurations of operations we
//! answer NotImplemented, which s3s still parses), with s3s's own
//! deserializer and end-of-document check; and our virtual-host parsing
//! of the Host header.
//!
//! Input: one byte choosing what to parse, then the body (or Host value).

#![no_main]

use fulcrum_api::Domains;
use libfuzzer_sys::fuzz_target;
use s3s::dto::*;
use s3s::host::S3Host;
use s3s::xml;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => parse::<CompletedMultipartUpload>(body),
        1 => parse::<Delete>(body),
        2 => parse::<CreateBucketConfiguration>(body),
        3 => parse::<BucketLifecycleConfiguration>(body),
        4 => parse::<ObjectLockConfiguration>(body),
        5 => parse::<Tagging>(body),
        6 => parse::<VersioningConfiguration>(body),
        7 => parse::<CORSConfiguration>(body),
        8 => parse::<ObjectLockRetention>(body),
        _ => {
            if let Ok(host) = std::str::from_utf8(body) {
                let d = Domains::new(vec!["localhost".into(), "s3.example.org".into()]);
                let _ = d.parse_host_header(host);
            }
        }
    }
});

/// What s3s does with a request body: deserialize, then expect its end.
fn parse<T: for<'x> xml::Deserialize<'x>>(body: &[u8]) {
    let mut d = xml::Deserializer::new(body);
    if T::deserialize(&mut d).is_ok() {
        let _ = d.expect_eof();
    }
}
