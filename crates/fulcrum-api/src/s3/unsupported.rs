//! Requests for what Fulcrum does not do, refused before anything is read
//! or changed. s3s picks an operation from the method, the path and the
//! subresource words it knows; a word it does not know (an operation newer
//! than it, `?renameObject`, `?encryption` on an object, `?annotation`)
//! left the plain operation: a PUT that overwrote the object with the
//! request's XML, a DELETE that deleted it. Headers that change what a
//! write means (an append offset, a checksum algorithm not kept, an ACL
//! granting more than the owner's control) are refused the same way,
//! rather than ignored.

use hyper::{HeaderMap, Uri};
use s3s::{S3Error, S3ErrorCode};

/// The operations s3s picks when no subresource word names another one:
/// a word left over on them was not understood.
const PLAIN_OPERATIONS: [&str; 17] = [
    "PutObject",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "CopyObject",
    "PostObject",
    "ListObjects",
    "ListObjectsV2",
    "ListBuckets",
    "HeadBucket",
    "CreateBucket",
    "DeleteBucket",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
];

/// Query parameters that carry values (and may be sent empty, as
/// `prefix=` is); any other name with an empty value is a subresource
/// word. Presigned URLs' `X-Amz-*` and the `response-*` overrides too.
const PARAMETERS: [&str; 26] = [
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "list-type",
    "continuation-token",
    "fetch-owner",
    "start-after",
    "encoding-type",
    "key-marker",
    "version-id-marker",
    "upload-id-marker",
    "max-uploads",
    "max-parts",
    "part-number-marker",
    "versionId",
    "partNumber",
    "uploadId",
    "x-id",
    "bucket-region",
    "max-buckets",
    "select-type",
    "id",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// Headers a SigV2 presigned URL signs, which botocore also puts in the
/// query (`generate_presigned_url("put_object", Params={"ContentType": …})`);
/// S3 takes them there as no subresource.
const SIGNED_HEADERS: [&str; 2] = ["content-type", "content-md5"];

/// The checksum algorithms Fulcrum checks and keeps.
const CHECKSUMS: [&str; 5] = ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"];

fn not_implemented(msg: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::NotImplemented, msg)
}

/// Why a request for operation `op` asks for what is not done here;
/// `None` when it does not.
pub(crate) fn refusal(
    op: &str,
    method: &hyper::Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<S3Error> {
    if PLAIN_OPERATIONS.contains(&op) {
        // A write takes no parameter it does not know, even with a value
        // (`?renameObject=1` overwrote the object too); a read ignores
        // valued ones (a cache buster `?_=…` from a web page).
        let writes = !matches!(method, &hyper::Method::GET | &hyper::Method::HEAD);
        if let Some(word) = unknown_word(uri.query().unwrap_or(""), writes) {
            return Some(not_implemented(format!(
                "The subresource ?{word} names an operation Fulcrum does not implement; nothing was done."
            )));
        }
    }
    let canned = headers
        .get("x-amz-acl")
        .map(|v| v.to_str().unwrap_or("").trim());
    let granted = headers
        .keys()
        .any(|k| k.as_str().starts_with("x-amz-grant-"));
    if granted || canned.is_some_and(|c| !super::acl::owner_only_canned(c)) {
        return Some(super::acl::not_granted());
    }
    if headers.contains_key("x-amz-write-offset-bytes") {
        return Some(not_implemented(
            "Appending to an object (x-amz-write-offset-bytes) is not supported; nothing was written.".into(),
        ));
    }
    unknown_checksum(headers)
}

/// The first subresource word of `query`: a name that is not a known
/// parameter, with no value (any value too when `valued`).
fn unknown_word(query: &str, valued: bool) -> Option<String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or((p, ""), |(k, v)| (k, v)))
        .filter(|(_, v)| valued || v.is_empty())
        .map(|(k, _)| {
            percent_encoding::percent_decode_str(k)
                .decode_utf8_lossy()
                .into_owned()
        })
        .find(|k| {
            let lower = k.to_ascii_lowercase();
            !PARAMETERS.contains(&k.as_str())
                && !SIGNED_HEADERS.contains(&lower.as_str())
                && !lower.starts_with("x-amz-")
                && !lower.starts_with("response-")
        })
}

/// A checksum of an algorithm Fulcrum neither checks nor keeps (SHA-512,
/// MD5, the xxHash family), as a header, a trailer or the algorithm
/// named: refused, rather than stored unchecked with the client told the
/// sum matched.
fn unknown_checksum(headers: &HeaderMap) -> Option<S3Error> {
    let named = ["x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let sent = headers
        .keys()
        .filter_map(|k| k.as_str().strip_prefix("x-amz-checksum-"))
        .filter(|a| !matches!(*a, "algorithm" | "type" | "mode"))
        .map(str::to_string);
    let trailed = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| {
            t.trim()
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .map(str::to_string)
        });
    let algorithm = named
        .chain(sent)
        .chain(trailed)
        .find(|a| !CHECKSUMS.contains(&a.as_str()))?;
    let mut e = S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        format!(
            "The checksum algorithm {} is not supported (CRC32, CRC32C, CRC64NVME, SHA1 and SHA256 are); nothing was stored.",
            algorithm.to_ascii_uppercase()
        ),
    );
    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(op: &str, uri: &str, headers: &[(&'static str, &str)]) -> Option<String> {
        let method = match op {
            "GetObject" | "ListObjectsV2" => hyper::Method::GET,
            "DeleteObject" | "DeleteBucket" => hyper::Method::DELETE,
            "CreateMultipartUpload" | "DeleteObjects" => hyper::Method::POST,
            _ => hyper::Method::PUT,
        };
        let uri: Uri = uri.parse().expect("uri");
        let h: HeaderMap = headers
            .iter()
            .map(|(k, v)| {
                (
                    hyper::header::HeaderName::from_static(k),
                    v.parse().expect("value"),
                )
            })
            .collect();
        refusal(op, &method, &uri, &h)
            .map(|e| format!("{:?} {}", e.code(), e.message().unwrap_or("")))
    }

    #[test]
    fn unknown_subresources_on_plain_operations_are_refused() {
        for (op, uri) in [
            ("PutObject", "/b/k?encryption"),
            ("PutObject", "/b/k?renameObject"),
            ("PutObject", "/b/k?torrent="),
            ("DeleteObject", "/b/k?annotation"),
            ("DeleteBucket", "/b?metadataConfiguration"),
            ("GetObject", "/b/k?abac"),
            // With a value too, on writes.
            ("PutObject", "/b/k?renameObject=1"),
            ("DeleteObject", "/b/k?encryption=x"),
        ] {
            let e = refused(op, uri, &[]).expect(uri);
            assert!(
                e.starts_with("NotImplemented") && e.contains("?"),
                "{uri}: {e}"
            );
        }
        for (op, uri) in [
            ("PutObject", "/b/k"),
            ("PutObject", "/b/k?x-id=PutObject"),
            (
                "ListObjectsV2",
                "/b?list-type=2&prefix=&delimiter=%2F&encoding-type=url",
            ),
            (
                "GetObject",
                "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab&response-content-type=",
            ),
            ("UploadPart", "/b/k?partNumber=1&uploadId=abc"),
            ("PutObjectTagging", "/b/k?tagging"),
            ("CreateMultipartUpload", "/b/k?uploads="),
            ("DeleteObjects", "/b?delete"),
            ("GetObject", "/b/k?_=1700000000"),
            ("DeleteObject", "/b/k?versionId=null&x-id=DeleteObject"),
            // botocore's SigV2 presigned PUT (a tester's find: 501).
            (
                "PutObject",
                "/b/k?AWSAccessKeyId=a&Signature=s&Expires=1&content-type=application%2Fdicom&content-md5=x",
            ),
        ] {
            assert_eq!(refused(op, uri, &[]), None, "{uri}");
        }
    }

    #[test]
    fn acls_beyond_the_owner_are_refused_on_every_write() {
        for h in [
            ("x-amz-acl", "public-read"),
            ("x-amz-acl", "authenticated-read"),
            (
                "x-amz-grant-read",
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
            ),
        ] {
            for op in [
                "PutObject",
                "CreateBucket",
                "CreateMultipartUpload",
                "CopyObject",
            ] {
                let e = refused(op, "/b/k", &[h]).expect("refused");
                assert!(e.starts_with("NotImplemented") && e.contains("ACL"), "{e}");
            }
        }
        for canned in [
            "private",
            "bucket-owner-full-control",
            "bucket-owner-read",
            "",
        ] {
            assert_eq!(refused("PutObject", "/b/k", &[("x-amz-acl", canned)]), None);
        }
    }

    #[test]
    fn appends_and_unknown_checksums_are_refused() {
        let e =
            refused("PutObject", "/b/k", &[("x-amz-write-offset-bytes", "1000")]).expect("append");
        assert!(e.starts_with("NotImplemented"), "{e}");
        for h in [
            ("x-amz-checksum-sha512", "AAAA"),
            ("x-amz-sdk-checksum-algorithm", "XXHASH64"),
            ("x-amz-trailer", "x-amz-checksum-md5"),
        ] {
            let e = refused("PutObject", "/b/k", &[h]).expect("checksum");
            assert!(e.starts_with("InvalidRequest"), "{e}");
        }
        for h in [
            ("x-amz-checksum-crc64nvme", "AAAAAAAAAAA="),
            ("x-amz-sdk-checksum-algorithm", "crc32"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("x-amz-checksum-mode", "ENABLED"),
        ] {
            assert_eq!(refused("PutObject", "/b/k", &[h]), None, "{h:?}");
        }
    }
}
