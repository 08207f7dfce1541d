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
    /// The encoding asked for: `url` or none; any other is refused, as
    /// AWS refuses it (400 InvalidArgument).
    pub(crate) fn of(requested: Option<&EncodingType>) -> s3s::S3Result<Self> {
        match requested.map(|e| e.as_str()) {
            None => Ok(Self(false)),
            Some(EncodingType::URL) => Ok(Self(true)),
            Some(other) => Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::InvalidArgument,
                format!("Invalid Encoding Method specified in Request: {other:?} (only url is)"),
            )),
        }
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
        let url =
            KeyEncoding::of(Some(&EncodingType::from_static(EncodingType::URL))).expect("url");
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
        assert_eq!(
            KeyEncoding::of(None).expect("none").name("a%20b".into()),
            "a%20b"
        );
        assert!(KeyEncoding::of(Some(&EncodingType::from("bogus".to_string()))).is_err());
        // As AWS sends them (ceph's s3-tests check these exact forms).
        assert_eq!(url.name("quux ab/".into()), "quux%20ab/");
        assert_eq!(url.name("foo+1/".into()), "foo%2B1/");
        assert_eq!(url.name("/".into()), "/");
    }
}
