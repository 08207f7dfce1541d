//! Object and bucket tagging: up to 10 key/value tags per object and 50 per
//! bucket, within S3's limits (keys of 1-128 characters, values of at most
//! 256, keys unique). A bucket's tag set is a bucket setting. Object tags
//! are set by PutObjectTagging or by the `x-amz-tagging` header of
//! PutObject, CreateMultipartUpload and CopyObject (with the REPLACE
//! tagging directive), read by GetObjectTagging and counted in the
//! `x-amz-tagging-count` of GET and HEAD. They live in the object's
//! metadata under a ':' name (never user metadata), as a query string in
//! key order; changing them rewrites no data and leaves the ETag and
//! Last-Modified as they are, and is allowed under retention.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::{api_err, key_check, S3Api};

/// The metadata entry holding an object's tags.
const TAGGING: &str = ":tagging";

/// The bucket setting holding a bucket's tags.
const BUCKET_TAGGING: &str = "tagging";

const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// An object's tags, in key order.
pub(crate) type Tags = BTreeMap<String, String>;

fn invalid(msg: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidTag, msg)
}

/// Tags from key/value pairs, refused unless within S3's limits.
fn checked(pairs: impl IntoIterator<Item = (String, String)>, max: usize) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for (k, v) in pairs {
        if k.is_empty() || k.chars().count() > MAX_KEY_CHARS {
            return Err(invalid(format!(
                "a tag key has 1 to {MAX_KEY_CHARS} characters"
            )));
        }
        if v.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(format!(
                "a tag value has at most {MAX_VALUE_CHARS} characters"
            )));
        }
        if tags.insert(k.clone(), v).is_some() {
            return Err(invalid(format!("the tag key {k:?} is given twice")));
        }
    }
    if tags.len() > max {
        return Err(invalid(format!("at most {max} tags, not {}", tags.len())));
    }
    Ok(tags)
}

/// The key/value pairs of a URL-encoded tag list (`k1=v1&k2`), as the
/// `x-amz-tagging` header sends them and as they are stored.
fn pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Tags from an `x-amz-tagging` header (none when it is absent).
pub(crate) fn from_header(h: Option<&str>) -> S3Result<Tags> {
    checked(pairs(h.unwrap_or("")), MAX_OBJECT_TAGS)
}

/// Puts the tags of an `x-amz-tagging` header into new metadata (PUT,
/// CreateMultipartUpload), refused unless within S3's limits.
pub(crate) fn put_header(metadata: &mut BTreeMap<String, String>, h: Option<&str>) -> S3Result<()> {
    store_in(metadata, &from_header(h)?);
    Ok(())
}

fn from_tag_set(t: Tagging, max: usize) -> S3Result<Tags> {
    checked(
        t.tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())),
        max,
    )
}

fn parse(s: &str) -> Tags {
    pairs(s).collect()
}

fn tag_set(tags: Tags) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| {
            let mut t = Tag::default();
            t.key = Some(k);
            t.value = Some(v);
            t
        })
        .collect()
}

/// An object's tags, from its metadata.
pub(crate) fn of(metadata: &BTreeMap<String, String>) -> Tags {
    metadata.get(TAGGING).map(|s| parse(s)).unwrap_or_default()
}

/// The `x-amz-tagging-count` of an object, when it has tags.
pub(crate) fn count(metadata: &BTreeMap<String, String>) -> Option<i32> {
    let n = of(metadata).len();
    (n > 0).then_some(n as i32)
}

fn encoded(tags: &Tags) -> Option<String> {
    (!tags.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(tags)
            .finish()
    })
}

/// Puts `tags` into an object's metadata (an empty set removes them).
pub(crate) fn store_in(metadata: &mut BTreeMap<String, String>, tags: &Tags) {
    match encoded(tags) {
        Some(s) => metadata.insert(TAGGING.to_string(), s),
        None => metadata.remove(TAGGING),
    };
}

impl S3Api {
    async fn set_tags(&self, bucket: &str, key: &str, tags: &Tags) -> S3Result<()> {
        key_check(key)?;
        self.engine
            .set_object_meta(
                &self.tenant,
                bucket,
                key,
                (TAGGING, encoded(tags).as_deref()),
            )
            .await
            .map_err(api_err)
    }

    pub(crate) async fn do_put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let i = req.input;
        let tags = from_tag_set(i.tagging, MAX_OBJECT_TAGS)?;
        self.set_tags(&i.bucket, &i.key, &tags).await?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    pub(crate) async fn do_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let i = req.input;
        let info = self.head(&i.bucket, &i.key).await?;
        let mut out = GetObjectTaggingOutput::default();
        out.tag_set = tag_set(of(&info.metadata));
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let i = req.input;
        self.set_tags(&i.bucket, &i.key, &Tags::new()).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    pub(crate) async fn do_put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let i = req.input;
        let tags = from_tag_set(i.tagging, MAX_BUCKET_TAGS)?;
        self.set_setting(&i.bucket, BUCKET_TAGGING, encoded(&tags).as_deref())
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    /// A bucket's tag set; NoSuchTagSet when it has none.
    pub(crate) async fn do_get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let bucket = &req.input.bucket;
        let Some(tags) = self
            .setting(bucket, BUCKET_TAGGING)
            .await?
            .map(|s| parse(&s))
        else {
            return self
                .none_configured(bucket, S3ErrorCode::NoSuchTagSet, "tag set")
                .await;
        };
        let mut out = GetBucketTaggingOutput::default();
        out.tag_set = tag_set(tags);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.clear_setting(&req.input.bucket, BUCKET_TAGGING).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_metadata_in_key_order() {
        let tags = from_header(Some("foo=bar&bar&a%20b=c%26d")).expect("tags");
        let mut m = BTreeMap::new();
        store_in(&mut m, &tags);
        assert_eq!(
            of(&m).into_iter().collect::<Vec<_>>(),
            [("a b", "c&d"), ("bar", ""), ("foo", "bar")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(count(&m), Some(3));
        store_in(&mut m, &Tags::new());
        assert!(m.is_empty() && count(&m).is_none());
    }

    #[test]
    fn limits_are_s3s() {
        let n = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(from_header(Some(&n(10))).is_ok());
        assert!(from_header(Some(&n(11))).is_err());
        assert!(from_header(Some(&format!("{}=v", "k".repeat(128)))).is_ok());
        assert!(from_header(Some(&format!("{}=v", "k".repeat(129)))).is_err());
        assert!(from_header(Some(&format!("k={}", "v".repeat(257)))).is_err());
        assert!(from_header(Some("k=1&k=2")).is_err());
        assert!(from_header(Some("=v")).is_err());
        assert!(from_header(None).expect("no header").is_empty());
    }
}
