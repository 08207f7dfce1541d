//! `encoding-type=url` on listings. boto3, the aws cli and rclone ask for it
//! and percent-decode every key, prefix, delimiter and marker of the answer,
//! so those must then be sent encoded: a key `a%20b` or `x+y` sent raw comes
//! back to the client as `a b` or `x y`. The encoding is AWS's: every byte
//! but the URI-unreserved characters and `/` is percent-encoded (a space is
//! `%20`, never `+`), so `quux ab/` is sent as `quux%20ab/` and a `/`
//! delimiter as `/`, which clients that ask for the encoding themselves
//! (and so do not decode) compare as such.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use s3s::dto::EncodingType;

/// What AWS leaves as is in an encoded listing.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Whether a listing's names are sent URL-encoded.
#[derive(Clone, Copy)]
pub(crate) struct KeyEncoding(bool);

impl KeyEncoding {
    pub(crate) fn of(requested: Option<&EncodingType>) -> Self {
        Self(requested.is_some_and(|e| e.as_str() == EncodingType::URL))
    }

    /// A name as the listing sends it.
    pub(crate) fn name(self, s: String) -> String {
        if self.0 {
            utf8_percent_encode(&s, KEEP).to_string()
        } else {
            s
        }
    }

    pub(crate) fn opt(self, s: Option<String>) -> Option<String> {
        s.map(|s| self.name(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_url_decoding() {
        let url = KeyEncoding::of(Some(&EncodingType::from_static(EncodingType::URL)));
        for key in [
            "a%20b",
            "x+y",
            "space here",
            "üñï/çødé",
            "q?x=1&y#z",
            "plain/key.txt",
        ] {
            let sent = url.name(key.to_string());
            assert!(sent.is_ascii() && !sent.contains(' '), "{sent}");
            let back: String = form_urlencoded::parse(format!("k={sent}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            assert_eq!(back, key);
        }
        assert_eq!(KeyEncoding::of(None).name("a%20b".into()), "a%20b");
        // As AWS sends them (ceph's s3-tests check these exact forms).
        assert_eq!(url.name("quux ab/".into()), "quux%20ab/");
        assert_eq!(url.name("foo+1/".into()), "foo%2B1/");
        assert_eq!(url.name("/".into()), "/");
    }
}
