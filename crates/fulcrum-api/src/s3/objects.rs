//! S3 bucket and object operations: buckets, PUT/GET/HEAD/DELETE,
//! multi-delete, listings (v1 and v2, prefix, delimiter, pagination) and
//! CopyObject (by reference: the copy shares every chunk).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use fulcrum_engine::{EngineError, ObjectInfo, PutOptions};
use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio_util::io::StreamReader;

use super::checksum::{self, announced, set_checksums, Checked};
use super::conditions::{copy_source_conditions, read_conditions, write_condition, Unchanged};
use super::encoding::KeyEncoding;
use super::headers::{set_stored_headers, stored_headers, user_metadata, StoredHeaders};
use super::lock::lock_out;
use super::tagging;
use super::{api_err, key_check, version_check, S3Api};

/// A time the catalog keeps in milliseconds, in whole seconds, as S3 says
/// every Last-Modified (headers, listings, copies): a listing time with
/// milliseconds never equals the GET's, and `aws s3 sync
/// --exact-timestamps` fetched every file again on every run.
pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(ms.max(0) as u64 / 1000))
}

/// A time the catalog keeps in milliseconds, exactly (a retention date
/// as the client gave it).
pub(crate) fn ts_exact(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1))
}

/// The byte range and parts count a GET or HEAD of part `part_number`
/// reads: one part of an object made by a multipart upload; part 1 of any
/// other object is all of it, answered as AWS does (206 with a
/// Content-Range, which part-wise downloaders read the size from; an
/// empty object whole).
fn one_part(
    info: &ObjectInfo,
    part_number: Option<i32>,
    ranged: bool,
) -> S3Result<Option<(std::ops::Range<u64>, Option<i32>)>> {
    let Some(n) = part_number else {
        return Ok(None);
    };
    if ranged {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    let n = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Part number must be an integer from 1 to 10000"
        )
    })?;
    let unsatisfiable = || {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested part number is not satisfiable",
        );
        e.set_status_code(hyper::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    match fulcrum_engine::part_range(&info.metadata, n) {
        Some((Some(r), count)) => Ok(Some((r, Some(count as i32)))),
        Some((None, _)) => Err(unsatisfiable()),
        None if n == 1 && info.size == 0 => Ok(None),
        None if n == 1 => Ok(Some((0..info.size, None))),
        None => Err(unsatisfiable()),
    }
}

/// The bytes a GET or HEAD answers with: a part's (see [`one_part`]), a
/// Range's, or all; and the Content-Range of the first two. A range that
/// selects no byte (any range of an empty object) is not satisfiable.
fn byte_range(
    range: Option<&s3s::dto::Range>,
    part: &Option<(std::ops::Range<u64>, Option<i32>)>,
    size: u64,
) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    match (range, part) {
        (_, Some((r, _))) => Ok((r.clone(), Some(content_range(r, size)))),
        (None, None) => Ok((0..size, None)),
        (Some(r), None) => {
            let range = r
                .check(size)
                .ok()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRange,
                        "The requested range is not satisfiable.",
                    )
                })?;
            let cr = content_range(&range, size);
            Ok((range, Some(cr)))
        }
    }
}

/// The most keys one DeleteObjects request may name (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

pub(crate) fn etag(e: &str) -> ETag {
    ETag::Strong(e.to_string())
}

/// The request body as an `AsyncRead` for the engine.
pub(crate) fn body_reader(body: Option<StreamingBlob>) -> impl tokio::io::AsyncRead + Unpin + Send {
    let stream = match body {
        Some(b) => b.map_err(std::io::Error::other).boxed(),
        None => futures::stream::empty::<Result<Bytes, std::io::Error>>().boxed(),
    };
    StreamReader::new(stream)
}

pub(crate) fn put_options(
    content_type: Option<String>,
    metadata: Option<Metadata>,
    content_md5: Option<String>,
    content_length: Option<i64>,
) -> S3Result<PutOptions> {
    let content_md5 = match content_md5 {
        Some(m) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(m.trim())
                .map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidDigest,
                        "Content-MD5 is not valid base64.",
                    )
                })?;
            Some(<[u8; 16]>::try_from(raw.as_slice()).map_err(|_| {
                S3Error::with_message(S3ErrorCode::InvalidDigest, "Content-MD5 must be 16 bytes.")
            })?)
        }
        None => None,
    };
    Ok(PutOptions {
        content_type,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
        content_md5,
        expected_len: content_length.map(|n| n.max(0) as u64),
        lock: Default::default(),
        condition: None,
        late_metadata: None,
    })
}

/// The storage class GET and HEAD report: GLACIER_IR for an object on
/// the archive tier (readable at once, as Glacier Instant Retrieval);
/// nothing (STANDARD) otherwise.
pub(crate) fn storage_class(info: &ObjectInfo) -> Option<StorageClass> {
    info.archived
        .then(|| StorageClass::from_static(StorageClass::GLACIER_IR))
}

/// The fields GET and HEAD both answer about an object: type, ETag, date,
/// user metadata and stored headers, retention, storage class.
macro_rules! describe_object {
    ($out:expr, $info:expr) => {{
        let info: &ObjectInfo = &$info;
        // S3 gives an object stored without a type this one.
        $out.content_type = Some(
            info.content_type
                .clone()
                .unwrap_or_else(|| "binary/octet-stream".into()),
        );
        $out.e_tag = Some(etag(&info.etag));
        $out.last_modified = Some(ts(info.created_at_ms));
        $out.metadata = user_metadata(&info.metadata);
        set_stored_headers!($out, StoredHeaders::of(&info.metadata));
        $out.accept_ranges = Some("bytes".into());
        let lock = lock_out(info);
        $out.object_lock_mode = lock.mode;
        $out.object_lock_retain_until_date = lock.until;
        $out.object_lock_legal_hold_status = lock.hold;
        $out.storage_class = storage_class(info);
    }};
}

/// The `response-*` query parameters of a GET or HEAD override the stored
/// headers in this answer only: a presigned link that makes a browser save
/// a file under a given name (`response-content-disposition`) or show it as
/// a given type, as web portals hand out.
macro_rules! response_overrides {
    ($out:expr, $i:expr) => {{
        $out.cache_control = $i
            .response_cache_control
            .clone()
            .or($out.cache_control.take());
        $out.content_disposition = $i
            .response_content_disposition
            .clone()
            .or($out.content_disposition.take());
        $out.content_encoding = $i
            .response_content_encoding
            .clone()
            .or($out.content_encoding.take());
        $out.content_language = $i
            .response_content_language
            .clone()
            .or($out.content_language.take());
        $out.content_type = $i
            .response_content_type
            .clone()
            .or($out.content_type.take());
        $out.expires = $i.response_expires.clone().or($out.expires.take());
    }};
}

/// One page of a listing: objects and common prefixes, in key order.
pub(crate) struct Page {
    pub contents: Vec<Object>,
    pub prefixes: Vec<String>,
    /// Where the next page starts (set when truncated).
    pub next: Option<String>,
}

impl Page {
    /// Names `owner` as every object's owner (ListObjects v1 always does,
    /// v2 when asked with fetch-owner).
    pub(crate) fn owned_by(&mut self, owner: &s3s::dto::Owner) {
        for o in &mut self.contents {
            o.owner = Some(owner.clone());
        }
    }

    /// The page with its keys and common prefixes as the listing sends them.
    fn encoded(mut self, enc: KeyEncoding) -> Self {
        for o in &mut self.contents {
            o.key = enc.opt(o.key.take());
        }
        self.prefixes = self.prefixes.into_iter().map(|p| enc.name(p)).collect();
        self
    }
}

/// A page of a listing request (ListObjects v1/v2, ListObjectVersions) and
/// the request's values as the response echoes them, names encoded as the
/// client's `encoding-type` asks.
pub(crate) struct Listed {
    pub page: Page,
    pub max_keys: i32,
    pub prefix: String,
    pub delimiter: Option<String>,
    /// NextMarker / NextKeyMarker: the last key or common prefix of a
    /// truncated page.
    pub next_marker: Option<String>,
    pub enc: KeyEncoding,
}

impl S3Api {
    /// Lists a page for a request: at most `max_keys` (default and cap
    /// 1000) keys and common prefixes after `start`.
    pub(crate) async fn listing(
        &self,
        bucket: &str,
        (prefix, delimiter): (Option<String>, Option<String>),
        start: &str,
        max_keys: Option<i32>,
        encoding: Option<&EncodingType>,
    ) -> S3Result<Listed> {
        let prefix = prefix.unwrap_or_default();
        // An empty delimiter is no delimiter, and is not echoed back.
        let delimiter = delimiter.filter(|d| !d.is_empty());
        super::errors::max_keys_check("max-keys", max_keys)?;
        let max_keys = max_keys.unwrap_or(1000).clamp(0, 1000);
        let enc = KeyEncoding::of(encoding)?;
        let page = self
            .list_page(
                bucket,
                &prefix,
                delimiter.as_deref(),
                start,
                max_keys as usize,
            )
            .await?
            .encoded(enc);
        let next_marker = page
            .next
            .as_ref()
            .map(|n| enc.name(n.trim_end_matches('\u{10FFFF}').to_string()));
        Ok(Listed {
            page,
            max_keys,
            prefix: enc.name(prefix),
            delimiter: enc.opt(delimiter),
            next_marker,
            enc,
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: &str,
        max_keys: usize,
    ) -> S3Result<Page> {
        let mut after = start_after.to_string();
        let mut page = Page {
            contents: Vec::new(),
            prefixes: Vec::new(),
            next: None,
        };
        // max-keys=0 asks for nothing, and S3 answers with an empty page
        // that is not truncated.
        if max_keys == 0 {
            return Ok(page);
        }
        'fetch: loop {
            let rows = self
                .engine
                .list_objects(&self.tenant, bucket, prefix, &after, 1000)
                .await
                .map_err(api_err)?;
            if rows.is_empty() {
                break;
            }
            for o in rows {
                if page.contents.len() + page.prefixes.len() >= max_keys {
                    page.next = Some(after.clone());
                    break 'fetch;
                }
                let rest = &o.key[prefix.len()..];
                if let Some(i) = delimiter.and_then(|d| rest.find(d).map(|i| i + d.len())) {
                    let cp = format!("{prefix}{}", &rest[..i]);
                    after = format!("{cp}\u{10FFFF}");
                    // A marker that is a common prefix (the NextMarker of
                    // the page that ended with it) has had it listed: its
                    // keys sort after it but roll up into it.
                    if cp.as_str() > start_after {
                        page.prefixes.push(cp);
                    }
                    continue 'fetch;
                }
                after = o.key.clone();
                let mut obj = Object::default();
                obj.key = Some(o.key);
                obj.size = Some(o.size);
                obj.e_tag = Some(etag(&o.etag));
                obj.last_modified = Some(ts(o.created_at));
                obj.storage_class = Some(ObjectStorageClass::from_static(match o.archived_at {
                    Some(_) => ObjectStorageClass::GLACIER_IR,
                    None => ObjectStorageClass::STANDARD,
                }));
                (obj.checksum_algorithm, obj.checksum_type) = checksum::listed(&o.metadata);
                page.contents.push(obj);
            }
        }
        Ok(page)
    }

    pub(crate) async fn do_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mut i = req.input;
        key_check(&i.key)?;
        let (body, verdict) = Checked::new(
            body_reader(i.body.take()),
            announced!(i, req.trailing_headers),
        );
        let condition = write_condition(i.if_match.as_ref(), i.if_none_match.as_ref())?;
        let stored = stored_headers!(i);
        super::errors::metadata_check(i.metadata.as_ref())?;
        let mut opts = put_options(i.content_type, i.metadata, i.content_md5, i.content_length)?;
        stored.store_in(&mut opts.metadata);
        tagging::put_header(&mut opts.metadata, i.tagging.as_deref())?;
        opts.condition = condition;
        opts.late_metadata = Some(verdict.late_metadata());
        opts.lock = self
            .lock_headers(
                &i.bucket,
                i.object_lock_mode.as_ref(),
                i.object_lock_retain_until_date.as_ref(),
                i.object_lock_legal_hold_status.as_ref(),
            )
            .await?;
        let info = self
            .engine
            .put_object(&self.tenant, &i.bucket, &i.key, body, opts)
            .await
            .map_err(|e| verdict.error().unwrap_or_else(|| api_err(e)))?;
        let mut out = PutObjectOutput::default();
        out.e_tag = Some(etag(&info.etag));
        out.server_side_encryption = self.sse();
        let sums = verdict.matched();
        out.checksum_type = checksum::checksum_type(&sums);
        set_checksums!(out, sums);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn head(&self, bucket: &str, key: &str) -> S3Result<ObjectInfo> {
        key_check(key)?;
        self.engine
            .head_object(&self.tenant, bucket, key)
            .await
            .map_err(api_err)
    }

    pub(crate) async fn do_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        version_check(i.version_id.as_deref())?;
        key_check(&i.key)?;
        let (info, (part, content_range, range), mut stream) = self
            .engine
            .open_object((&self.tenant, &i.bucket, &i.key), api_err, |info| {
                read_conditions!(i).check(info, Unchanged::NotModified)?;
                let part = one_part(info, i.part_number, i.range.is_some())?;
                let (range, content_range) = byte_range(i.range.as_ref(), &part, info.size)?;
                Ok(((part, content_range, range.clone()), range))
            })
            .await?;
        // Check the first part before answering, so damage at the start of
        // an object is a clean error response rather than a cut connection.
        let first = stream.next().await;
        if let Some(Err(e)) = first {
            return Err(api_err(e));
        }
        let body = futures::stream::iter(first)
            .chain(stream)
            .map_err(std::io::Error::other);
        let mut out = GetObjectOutput::default();
        out.body = Some(StreamingBlob::wrap(ChannelBody::spawn(body)));
        out.content_length = Some((range.end - range.start) as i64);
        out.content_range = content_range;
        describe_object!(out, info);
        response_overrides!(out, i);
        out.tag_count = tagging::count(&info.metadata);
        let sums = checksum::for_reading(
            &info.metadata,
            i.checksum_mode.as_ref(),
            out.content_range.is_none(),
        );
        out.checksum_type = checksum::checksum_type(&sums);
        set_checksums!(out, sums);
        out.parts_count = part.and_then(|(_, n)| n);
        out.server_side_encryption = self.sse();
        let mut res = S3Response::new(out);
        // The object's own bytes: never rewritten as an XML document is.
        res.extensions.insert(super::front::ObjectBody);
        Ok(res)
    }

    pub(crate) async fn do_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &req.input;
        version_check(i.version_id.as_deref())?;
        let info = self.head(&i.bucket, &i.key).await?;
        read_conditions!(i).check(&info, Unchanged::NotModified)?;
        let part = one_part(&info, i.part_number, i.range.is_some())?;
        // A Range is answered as GET answers it, without the bytes.
        let (range, content_range) = byte_range(i.range.as_ref(), &part, info.size)?;
        let mut out = HeadObjectOutput::default();
        out.content_length = Some((range.end - range.start) as i64);
        out.server_side_encryption = self.sse();
        describe_object!(out, info);
        response_overrides!(out, i);
        out.parts_count = part.as_ref().and_then(|(_, count)| *count);
        let whole = content_range.is_none();
        out.content_range = content_range;
        let sums = checksum::for_reading(&info.metadata, i.checksum_mode.as_ref(), whole);
        out.checksum_type = checksum::checksum_type(&sums);
        set_checksums!(out, sums);
        let mut res = S3Response::new(out);
        if !whole {
            // s3s sends a HEAD's status as 200 whatever the response says.
            res.extensions
                .insert(super::front::Status(hyper::StatusCode::PARTIAL_CONTENT));
        }
        // HeadObjectOutput has no field for it; S3 sends it on HEAD too.
        if let Some(n) = tagging::count(&info.metadata) {
            res.headers.insert("x-amz-tagging-count", n.into());
        }
        Ok(res)
    }

    pub(crate) async fn do_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = &req.input;
        key_check(&i.key)?;
        version_check(i.version_id.as_deref())?;
        let cond = super::conditions::delete_condition(
            i.if_match.as_ref().map(super::conditions::condition_etag),
            i.if_match_size,
            i.if_match_last_modified_time.as_ref(),
        );
        self.engine
            .delete_object_if(
                &self.tenant,
                &i.bucket,
                &i.key,
                i.bypass_governance_retention.unwrap_or(false),
                cond.as_ref(),
            )
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(crate) async fn do_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        self.bucket_exists(&i.bucket).await?;
        if i.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request names at most {MAX_DELETE_KEYS} keys, this one {}",
                i.delete.objects.len()
            ));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        let bypass = i.bypass_governance_retention.unwrap_or(false);
        for o in i.delete.objects {
            let version = o.version_id.clone();
            let cond = super::conditions::delete_condition(
                o.e_tag.as_ref().map(|e| e.value()),
                o.size,
                o.last_modified_time.as_ref(),
            );
            let res = match key_check(&o.key).and(version_check(version.as_deref())) {
                Ok(()) => self
                    .engine
                    .delete_object_if(&self.tenant, &i.bucket, &o.key, bypass, cond.as_ref())
                    .await
                    .map_err(api_err),
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => {
                    let mut d = DeletedObject::default();
                    d.key = Some(o.key);
                    d.version_id = version;
                    deleted.push(d);
                }
                Err(e) => {
                    let mut err = s3s::dto::Error::default();
                    err.key = Some(o.key);
                    err.version_id = version;
                    err.code = Some(e.code().as_str().to_string());
                    err.message = e.message().map(|m| m.to_string());
                    errors.push(err);
                }
            }
        }
        let mut out = DeleteObjectsOutput::default();
        if !i.delete.quiet.unwrap_or(false) {
            out.deleted = Some(deleted);
        }
        out.errors = (!errors.is_empty()).then_some(errors);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        key_check(&i.key)?;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        super::errors::directive_check(
            "metadata directive",
            i.metadata_directive.as_ref().map(|d| d.as_str()),
        )?;
        super::errors::directive_check(
            "tagging directive",
            i.tagging_directive.as_ref().map(|d| d.as_str()),
        )?;
        super::errors::metadata_check(i.metadata.as_ref())?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let new_tags = match &i.tagging_directive {
            Some(d) if d.as_str() == TaggingDirective::REPLACE => {
                Some(tagging::from_header(i.tagging.as_deref())?)
            }
            _ => None,
        };
        // The destination's conditions (If-Match, If-None-Match: *), which
        // s3s does not parse for a copy: checked where the copy commits.
        let dest_condition = {
            let header = |name: &str| -> S3Result<Option<ETagCondition>> {
                req.headers
                    .get(name)
                    .map(|v| {
                        ETagCondition::parse_http_header(v.as_bytes()).map_err(|_| {
                            S3Error::with_message(
                                S3ErrorCode::InvalidArgument,
                                format!("The {name} header is not an ETag or *."),
                            )
                        })
                    })
                    .transpose()
            };
            let (m, n) = (header("if-match")?, header("if-none-match")?);
            write_condition(m.as_ref(), n.as_ref())?
        };
        // A change of storage class is a change (rclone settier, aws s3 cp
        // --storage-class onto the same key).
        let changes = replace || new_tags.is_some() || i.storage_class.is_some();
        if !changes && src_bucket == i.bucket && src_key == i.key {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
            ));
        }
        let source = copy_source_conditions!(i);
        // The source is read first when the conditions or a replaced
        // metadata or tag set need it; otherwise the engine copies all.
        let src = match !source.is_empty() || replace || new_tags.is_some() {
            true => Some(self.copy_source_info(&src_bucket, &src_key).await?),
            false => None,
        };
        if let Some(src) = &src {
            source.check(src, Unchanged::PreconditionFailed)?;
        }
        let new_meta = src.filter(|_| replace || new_tags.is_some()).map(|src| {
            let (content_type, mut metadata) = match replace {
                true => {
                    let mut m: BTreeMap<String, String> =
                        i.metadata.clone().unwrap_or_default().into_iter().collect();
                    stored_headers!(i).store_in(&mut m);
                    (i.content_type.clone(), m)
                }
                false => (src.content_type.clone(), src.metadata.clone()),
            };
            let tags = new_tags.unwrap_or_else(|| tagging::of(&src.metadata));
            tagging::store_in(&mut metadata, &tags);
            (content_type, metadata)
        });
        let lock = self
            .lock_headers(
                &i.bucket,
                i.object_lock_mode.as_ref(),
                i.object_lock_retain_until_date.as_ref(),
                i.object_lock_legal_hold_status.as_ref(),
            )
            .await?;
        let info = self
            .engine
            .copy_object_if(
                &self.tenant,
                (&src_bucket, &src_key),
                (&i.bucket, &i.key),
                new_meta,
                lock,
                dest_condition,
            )
            .await
            .map_err(copy_source_err)?;
        let mut res = CopyObjectResult::default();
        res.e_tag = Some(etag(&info.etag));
        res.last_modified = Some(ts(info.created_at_ms));
        // The copy's sums are its source's (a copy shares its bytes).
        let sums = checksum::of_metadata(&info.metadata);
        res.checksum_type = checksum::checksum_type(&sums);
        set_checksums!(res, sums);
        let mut out = CopyObjectOutput::default();
        out.copy_object_result = Some(res);
        out.server_side_encryption = self.sse();
        Ok(S3Response::new(out))
    }
}

/// The bucket and key a copy reads from.
pub(crate) fn copy_source(src: &CopySource) -> S3Result<(String, String)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            key_check(key)?;
            version_check(version_id.as_deref())?;
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "Access point copy sources are not supported.",
        )),
    }
}

impl S3Api {
    /// The object a copy reads from, or NoSuchKey naming it as the source.
    pub(crate) async fn copy_source_info(&self, bucket: &str, key: &str) -> S3Result<ObjectInfo> {
        self.engine
            .head_object(&self.tenant, bucket, key)
            .await
            .map_err(copy_source_err)
    }
}

pub(crate) fn copy_source_err(e: EngineError) -> S3Error {
    match e {
        EngineError::NoSuchKey { .. } => {
            S3Error::with_message(S3ErrorCode::NoSuchKey, "The copy source does not exist.")
        }
        e => api_err(e),
    }
}

/// A response body fed by a task: decouples reading and verifying chunks
/// from sending them, and is `Sync` as s3s requires. When the client goes
/// away the receiver drops and the task stops.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl ChannelBody {
    fn spawn<S>(stream: S) -> Self
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Self(rx)
    }
}

impl futures::Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
