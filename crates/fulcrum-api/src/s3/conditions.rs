//! Conditional requests (RFC 9110 section 13, as S3 applies them).
//! Reads (GET, HEAD, and a copy's source) check `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` against
//! the object's ETag and Last-Modified (whole seconds, as HTTP dates are).
//! Writes (PUT, CompleteMultipartUpload) take `If-None-Match: *` (create
//! only) and `If-Match: "etag"` (replace only that version), checked by the
//! catalog in the transaction that would replace the object, so two
//! concurrent create-only writes never both succeed.

use fulcrum_engine::{DeleteCondition, ObjectInfo, WriteCondition};
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{s3_error, S3Result};

/// The read preconditions of a request.
pub(crate) struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// The read conditions of an input with S3's `if_*` fields (GET, HEAD).
macro_rules! read_conditions {
    ($i:expr) => {
        $crate::s3::conditions::ReadConditions {
            if_match: $i.if_match.as_ref(),
            if_none_match: $i.if_none_match.as_ref(),
            if_modified_since: $i.if_modified_since.as_ref(),
            if_unmodified_since: $i.if_unmodified_since.as_ref(),
        }
    };
}

/// The conditions on a copy's source (`x-amz-copy-source-if-*`).
macro_rules! copy_source_conditions {
    ($i:expr) => {
        $crate::s3::conditions::ReadConditions {
            if_match: $i.copy_source_if_match.as_ref(),
            if_none_match: $i.copy_source_if_none_match.as_ref(),
            if_modified_since: $i.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $i.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use {copy_source_conditions, read_conditions};

/// How a failed `If-None-Match` / `If-Modified-Since` is answered: 304 for
/// GET and HEAD, 412 for a copy source.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unchanged {
    NotModified,
    PreconditionFailed,
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        // Weak comparison, as RFC 9110 asks for If-None-Match; S3 ETags are
        // strong, so If-Match compares the same way.
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

impl ReadConditions<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    pub(crate) fn check(&self, info: &ObjectInfo, unchanged: Unchanged) -> S3Result<()> {
        let modified = info.created_at_ms.div_euclid(1000);
        if let Some(c) = self.if_match {
            if !matches(c, &info.etag) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold (If-Match)"
                ));
            }
        } else if let Some(t) = self.if_unmodified_since {
            if modified > seconds(t) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold (If-Unmodified-Since)"
                ));
            }
        }
        let not_modified = match (self.if_none_match, self.if_modified_since) {
            (Some(c), _) => matches(c, &info.etag),
            (None, Some(t)) => modified <= seconds(t),
            (None, None) => false,
        };
        if not_modified {
            return Err(match unchanged {
                Unchanged::NotModified => not_modified_error(info),
                Unchanged::PreconditionFailed => s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold (If-None-Match / If-Modified-Since)"
                ),
            });
        }
        Ok(())
    }
}

/// A 304, which names the object's ETag and Last-Modified (RFC 9110
/// section 15.4.5; clients revalidating a cache read them).
fn not_modified_error(info: &ObjectInfo) -> s3s::S3Error {
    let mut e = s3_error!(NotModified);
    let mut headers = hyper::HeaderMap::new();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(hyper::header::ETAG, v);
    }
    let modified = super::headers::http_date(&super::objects::ts(info.created_at_ms));
    if let Some(v) = modified.and_then(|m| hyper::header::HeaderValue::from_str(&m).ok()) {
        headers.insert(hyper::header::LAST_MODIFIED, v);
    }
    e.set_headers(headers);
    e
}

/// The condition of a conditional delete: an ETag (`*`: any), a size, a
/// last-modified time, each optional; `None` when none is given.
pub(crate) fn delete_condition(
    etag: Option<&str>,
    size: Option<i64>,
    modified: Option<&Timestamp>,
) -> Option<DeleteCondition> {
    if etag.is_none() && size.is_none() && modified.is_none() {
        return None;
    }
    Some(DeleteCondition {
        etag: etag
            .map(|e| e.trim().trim_matches('"').to_string())
            .filter(|e| e != "*"),
        size,
        modified_secs: modified.map(seconds),
    })
}

/// The ETag an `If-Match` names (`*` for any).
pub(crate) fn condition_etag(c: &ETagCondition) -> &str {
    match c {
        ETagCondition::Any => "*",
        ETagCondition::ETag(e) => e.value(),
    }
}

/// The condition of a conditional write.
pub(crate) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match cannot be combined on a write"
        )),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write takes only * (create the object only if the key is free)"
        )),
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::Present(None))),
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::Present(Some(e.value().to_string()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(etag: &str, at_s: i64) -> ObjectInfo {
        ObjectInfo {
            id: 1,
            key: "k".into(),
            size: 1,
            etag: etag.into(),
            content_type: None,
            metadata: Default::default(),
            created_at_ms: at_s * 1000 + 250,
            lock: Default::default(),
            archived: false,
        }
    }

    fn tag(s: &str) -> ETagCondition {
        ETagCondition::parse_http_header(format!("\"{s}\"").as_bytes()).expect("etag")
    }

    fn at(s: i64) -> Timestamp {
        time::OffsetDateTime::from_unix_timestamp(s)
            .expect("time")
            .into()
    }

    fn code(r: S3Result<()>) -> Option<String> {
        r.err().map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn read_conditions_follow_rfc_9110_order() {
        let o = info("abc", 1000);
        let nm = Unchanged::NotModified;
        let check = |c: ReadConditions, u| code(c.check(&o, u));
        let (t_abc, t_xyz) = (tag("abc"), tag("xyz"));
        let (before, same, after) = (at(999), at(1000), at(1001));
        let c = |m, n, ms, us| ReadConditions {
            if_match: m,
            if_none_match: n,
            if_modified_since: ms,
            if_unmodified_since: us,
        };
        assert_eq!(check(c(None, None, None, None), nm), None);
        assert_eq!(check(c(Some(&t_abc), None, None, None), nm), None);
        assert_eq!(
            check(c(Some(&t_xyz), None, None, None), nm).as_deref(),
            Some("PreconditionFailed")
        );
        assert_eq!(
            check(c(None, Some(&t_abc), None, None), nm).as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            check(
                c(None, Some(&t_abc), None, None),
                Unchanged::PreconditionFailed
            )
            .as_deref(),
            Some("PreconditionFailed")
        );
        assert_eq!(check(c(None, Some(&t_xyz), None, None), nm), None);
        // Last-Modified is compared in whole seconds.
        assert_eq!(
            check(c(None, None, Some(&same), None), nm).as_deref(),
            Some("NotModified")
        );
        assert_eq!(check(c(None, None, Some(&before), None), nm), None);
        assert_eq!(check(c(None, None, None, Some(&same)), nm), None);
        assert_eq!(
            check(c(None, None, None, Some(&before)), nm).as_deref(),
            Some("PreconditionFailed")
        );
        // If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert_eq!(check(c(Some(&t_abc), None, None, Some(&before)), nm), None);
        assert_eq!(check(c(None, Some(&t_xyz), Some(&after), None), nm), None);
    }

    #[test]
    fn write_conditions() {
        let any = ETagCondition::Any;
        assert_eq!(
            write_condition(None, Some(&any)).expect("ok"),
            Some(WriteCondition::Absent)
        );
        assert_eq!(
            write_condition(Some(&tag("abc")), None).expect("ok"),
            Some(WriteCondition::Present(Some("abc".into())))
        );
        assert!(write_condition(None, Some(&tag("abc"))).is_err());
        assert_eq!(write_condition(None, None).expect("ok"), None);
    }
}
