//! The standard headers S3 keeps with an object and returns on GET and HEAD:
//! Cache-Control, Content-Disposition, Content-Encoding, Content-Language
//! and Expires (a report's download file name, a pre-compressed asset).
//! They are stored in the object's metadata under names starting with `:`,
//! which no HTTP header (so no `x-amz-meta-*` name) can hold, and kept
//! apart from the user metadata returned as `x-amz-meta-*`.

use std::collections::BTreeMap;

use s3s::dto::{Metadata, Timestamp, TimestampFormat};

/// Metadata names of the stored headers start with this.
const MARK: char = ':';

#[derive(Default)]
pub(crate) struct StoredHeaders {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
}

/// The stored headers of an input or output with S3's fields of those names.
macro_rules! stored_headers {
    ($i:expr) => {
        $crate::s3::headers::StoredHeaders {
            cache_control: $i.cache_control.clone(),
            content_disposition: $i.content_disposition.clone(),
            content_encoding: $i.content_encoding.clone(),
            content_language: $i.content_language.clone(),
            expires: $i.expires.clone(),
        }
    };
}

/// Sets an output's fields from stored headers.
macro_rules! set_stored_headers {
    ($out:expr, $h:expr) => {{
        let h = $h;
        $out.cache_control = h.cache_control;
        $out.content_disposition = h.content_disposition;
        $out.content_encoding = h.content_encoding;
        $out.content_language = h.content_language;
        $out.expires = h.expires;
    }};
}
pub(crate) use {set_stored_headers, stored_headers};

/// `t` as an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
pub(crate) fn http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

impl StoredHeaders {
    fn texts(&self) -> [(&'static str, Option<String>); 5] {
        let expires = self.expires.as_ref().and_then(http_date);
        // aws-chunked is how the body was sent, not how it is stored.
        let encoding = self.content_encoding.as_deref().map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        });
        [
            ("cache-control", self.cache_control.clone()),
            ("content-disposition", self.content_disposition.clone()),
            ("content-encoding", encoding.filter(|e| !e.is_empty())),
            ("content-language", self.content_language.clone()),
            ("expires", expires),
        ]
    }

    /// Adds the headers to an object's metadata.
    pub(crate) fn store_in(&self, metadata: &mut BTreeMap<String, String>) {
        for (name, value) in self.texts() {
            if let Some(v) = value {
                metadata.insert(format!("{MARK}{name}"), v);
            }
        }
    }

    /// The headers stored in an object's metadata.
    pub(crate) fn of(metadata: &BTreeMap<String, String>) -> Self {
        let get = |n: &str| metadata.get(&format!("{MARK}{n}")).cloned();
        Self {
            cache_control: get("cache-control"),
            content_disposition: get("content-disposition"),
            content_encoding: get("content-encoding"),
            content_language: get("content-language"),
            expires: get("expires")
                .and_then(|s| Timestamp::parse(TimestampFormat::HttpDate, &s).ok()),
        }
    }
}

/// The user metadata (`x-amz-meta-*`) of an object's metadata.
pub(crate) fn user_metadata(m: &BTreeMap<String, String>) -> Option<Metadata> {
    let user: Metadata = m
        .iter()
        .filter(|(k, _)| !k.starts_with(MARK))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_metadata_apart_from_user_metadata() {
        let h = StoredHeaders {
            cache_control: Some("max-age=60".into()),
            content_disposition: Some("attachment; filename=\"report.pdf\"".into()),
            content_encoding: Some("aws-chunked,gzip".into()),
            content_language: Some("zh-CN".into()),
            expires: Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2026 07:28:00 GMT")
                .ok(),
        };
        let mut m = BTreeMap::from([("patient".to_string(), "anon".to_string())]);
        h.store_in(&mut m);
        let back = StoredHeaders::of(&m);
        assert_eq!(back.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(back.content_disposition, h.content_disposition);
        assert_eq!(back.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(back.content_language.as_deref(), Some("zh-CN"));
        assert_eq!(back.expires, h.expires);
        let user = user_metadata(&m).expect("user metadata");
        assert_eq!(user.len(), 1);
        assert_eq!(user.get("patient").map(String::as_str), Some("anon"));
    }
}
