//! The one mapping from engine errors to S3 error codes, and key checks.
//! Internal details (paths, SQL) are logged, never sent to clients.

use fulcrum_engine::{CatalogError, EngineError};
use s3s::{S3Error, S3ErrorCode};
use tracing::error;

/// Maps an engine error to the S3 error a client should see.
pub(crate) fn api_err(e: EngineError) -> S3Error {
    use S3ErrorCode as C;
    if let EngineError::NoSpace(detail) = &e {
        error!(error = %detail, "storage full; write refused");
        let mut err = S3Error::with_message(
            C::Custom("StorageFull".into()),
            "Fulcrum's storage is full; nothing of this request was stored. Free space or add capacity, then retry.",
        );
        err.set_status_code(hyper::StatusCode::INSUFFICIENT_STORAGE);
        return err;
    }
    let (code, msg): (C, String) = match &e {
        EngineError::NoSuchKey { .. } => (C::NoSuchKey, "The specified key does not exist.".into()),
        EngineError::TooLarge { .. } => (C::EntityTooLarge, e.to_string()),
        EngineError::IncompleteBody { .. } => (C::IncompleteBody, e.to_string()),
        // The client's body broke off (a dropped connection, a chunked
        // body cut short): the request's fault, nothing was stored.
        EngineError::Store(fulcrum_store::StoreError::Source(io)) => (
            C::IncompleteBody,
            format!("The request body ended before it was complete ({io}); nothing was stored."),
        ),
        EngineError::BadDigest | EngineError::BadChecksum(_) => (C::BadDigest, e.to_string()),
        EngineError::InvalidRequest(_) => (C::InvalidRequest, e.to_string()),
        EngineError::ShuttingDown => (C::ServiceUnavailable, e.to_string()),
        EngineError::Busy(_) | EngineError::LeaseLost(_) => (C::SlowDown, e.to_string()),
        // Answered above with 507.
        EngineError::NoSpace(_) => (C::InternalError, e.to_string()),
        EngineError::Corrupt(_) => {
            error!(error = %e, "refusing to serve damaged data");
            (C::InternalError, "Stored data failed its integrity check; no bytes were returned. The operator has been alerted (see fulcrum verify).".into())
        }
        EngineError::Catalog(c) => match c {
            CatalogError::NoSuchBucket(b) => (
                C::NoSuchBucket,
                format!("The specified bucket {b:?} does not exist."),
            ),
            CatalogError::BucketExists(_) => (C::BucketAlreadyOwnedByYou, c.to_string()),
            CatalogError::BucketNotEmpty(_) => (
                C::BucketNotEmpty,
                "The bucket you tried to delete is not empty.".into(),
            ),
            CatalogError::NoSuchUpload(_) => (
                C::NoSuchUpload,
                "The specified multipart upload does not exist.".into(),
            ),
            CatalogError::InvalidPart(_) => (C::InvalidPart, c.to_string()),
            // AWS answers If-Match on a missing key with 404.
            CatalogError::ConditionFailed { missing: true, .. } => (C::NoSuchKey, c.to_string()),
            CatalogError::ConditionFailed { .. } => (C::PreconditionFailed, c.to_string()),
            CatalogError::InvalidPartOrder => (C::InvalidPartOrder, c.to_string()),
            CatalogError::PartTooSmall(_) => (C::EntityTooSmall, c.to_string()),
            // What AWS answers, with the protection and its date named.
            CatalogError::ObjectLocked { key, reason } => (
                C::AccessDenied,
                format!(
                    "Access Denied because object protected by object lock: {key:?}: {reason}."
                ),
            ),
            _ => {
                error!(error = %e, "catalog failure");
                (
                    C::InternalError,
                    "The catalog could not complete the request; try again.".into(),
                )
            }
        },
        EngineError::WrongStore(_) => {
            error!(error = %e, "this node's pack store is not its catalog's");
            (
                C::ServiceUnavailable,
                "This node is misconfigured: its pack store and catalog are not one platform's \
                 (see its log); nothing was stored."
                    .into(),
            )
        }
        EngineError::Store(_)
        | EngineError::PackWrite(_)
        | EngineError::Internal(_)
        | EngineError::KeyMismatch(_)
        | EngineError::NoArchive(_) => {
            error!(error = %e, "storage failure");
            (
                C::InternalError,
                "The storage backend could not complete the request; try again.".into(),
            )
        }
    };
    S3Error::with_message(code, msg)
}

/// Object keys are opaque strings in the catalog (never paths), so `..`
/// is harmless; NUL cannot be stored and S3 caps keys at 1024 bytes.
/// Buckets keep no versions: each object is its only version, `null`
/// (as ListObjectVersions says). Any other version ID names nothing, and
/// is refused as S3 refuses an unknown one on an unversioned bucket;
/// above all a delete of an "old version" must not delete the object.
pub(crate) fn version_check(version: Option<&str>) -> Result<(), S3Error> {
    match version {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Invalid version id specified: this bucket keeps no versions (each object is version null).",
        )),
    }
}

pub(crate) fn key_check(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Object key must not be empty.",
        ));
    }
    if key.len() > 1024 {
        return Err(S3Error::with_message(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long: at most 1024 bytes.",
        ));
    }
    if key.contains('\0') {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Object key must not contain NUL characters.",
        ));
    }
    Ok(())
}

/// User metadata (`x-amz-meta-*`) is at most 2 KB, keys and values
/// together, as on AWS: larger headers break proxies in front of clients.
pub(crate) fn metadata_check(metadata: Option<&s3s::dto::Metadata>) -> Result<(), S3Error> {
    let size: usize = metadata
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum())
        .unwrap_or(0);
    if size > 2048 {
        return Err(S3Error::with_message(
            S3ErrorCode::MetadataTooLarge,
            format!("Your metadata headers exceed the maximum allowed metadata size: {size} bytes, at most 2048."),
        ));
    }
    Ok(())
}

/// A metadata or tagging directive, when given, is COPY or REPLACE.
pub(crate) fn directive_check(name: &str, value: Option<&str>) -> Result<(), S3Error> {
    match value {
        None | Some("COPY") | Some("REPLACE") => Ok(()),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("Unknown {name} {other:?}: COPY or REPLACE."),
        )),
    }
}

/// max-keys (or max-uploads, max-parts) is not negative.
pub(crate) fn max_keys_check(name: &str, value: Option<i32>) -> Result<(), S3Error> {
    match value {
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("{name} must be a non-negative integer."),
        )),
        _ => Ok(()),
    }
}

/// S3's storage classes. Any of them is accepted and stored alike (hot,
/// until a lifecycle rule moves the object); an unknown one is refused as
/// S3 refuses it, not silently ignored.
pub(crate) fn storage_class_check(class: Option<&s3s::dto::StorageClass>) -> Result<(), S3Error> {
    const KNOWN: [&str; 13] = [
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "GLACIER_IR",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "SNOW",
        "EXPRESS_ONEZONE",
        "FSX_OPENZFS",
        "FSX_ONTAP",
    ];
    match class {
        Some(c) if !KNOWN.contains(&c.as_str()) => Err(S3Error::with_message(
            S3ErrorCode::InvalidStorageClass,
            format!(
                "The storage class you specified is not valid: {:?}.",
                c.as_str()
            ),
        )),
        _ => Ok(()),
    }
}
