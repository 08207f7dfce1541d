//! S3 multipart uploads: create, upload part, list parts, complete (parts
//! joined by reference in one transaction), abort, list uploads.

use fulcrum_engine::{CatalogError, EngineError, PutOptions};
use futures::TryStreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::checksum::{self, announced, set_checksums, sums_of, Checked};
use super::conditions::{copy_source_conditions, write_condition, Unchanged};
use super::encoding::KeyEncoding;
use super::headers::stored_headers;
use super::objects::{body_reader, copy_source, copy_source_err, etag, put_options, ts};
use super::{api_err, key_check, S3Api};

const MAX_PART_NUMBER: i32 = 10_000;
/// Largest part UploadPartCopy copies (S3's limit).
const MAX_PART_BYTES: u64 = 5 << 30;

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        "Part number must be an integer between 1 and 10000, inclusive.",
    ))
}

/// `x-amz-copy-source-range: bytes=first-last` (both given, inclusive)
/// as a half-open range of an object of `size` bytes.
fn source_range(r: &str, size: u64) -> S3Result<(u64, u64)> {
    let bad = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let (first, last) = r
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable.",
        ));
    }
    Ok((first, last + 1))
}

impl S3Api {
    /// Stores `body` as part `n` of the upload of `at` (bucket, key);
    /// returns its ETag.
    async fn store_part<R: tokio::io::AsyncRead + Unpin + Send>(
        &self,
        at: (&str, &str),
        upload_id: &str,
        n: i32,
        body: R,
        opts: PutOptions,
    ) -> Result<String, EngineError> {
        self.engine
            .upload_part(&self.tenant, at, upload_id, n as i64, body, opts)
            .await
    }

    pub(crate) async fn do_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let mut i = req.input;
        key_check(&i.key)?;
        super::errors::metadata_check(i.metadata.as_ref())?;
        let mut metadata = i.metadata.take().unwrap_or_default().into_iter().collect();
        stored_headers!(i).store_in(&mut metadata);
        super::tagging::put_header(&mut metadata, i.tagging.as_deref())?;
        checksum::upload_intent(
            i.checksum_algorithm.as_ref(),
            i.checksum_type.as_ref(),
            &mut metadata,
        )?;
        let lock = self
            .lock_headers(
                &i.bucket,
                i.object_lock_mode.as_ref(),
                i.object_lock_retain_until_date.as_ref(),
                i.object_lock_legal_hold_status.as_ref(),
            )
            .await?;
        let id = self
            .engine
            .create_upload(
                &self.tenant,
                &i.bucket,
                &i.key,
                i.content_type,
                metadata,
                lock,
            )
            .await
            .map_err(api_err)?;
        let mut out = CreateMultipartUploadOutput::default();
        out.bucket = Some(i.bucket);
        out.key = Some(i.key);
        out.upload_id = Some(id);
        // What the client said it will send (echoed, as S3 does).
        out.checksum_algorithm = i.checksum_algorithm;
        out.checksum_type = i.checksum_type;
        out.server_side_encryption = self.sse();
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let mut i = req.input;
        check_part_number(i.part_number)?;
        let (body, verdict) = Checked::new(
            body_reader(i.body.take()),
            announced!(i, req.trailing_headers),
        );
        let mut opts = put_options(None, None, i.content_md5, i.content_length)?;
        opts.late_metadata = Some(verdict.late_metadata());
        let e = self
            .store_part((&i.bucket, &i.key), &i.upload_id, i.part_number, body, opts)
            .await
            .map_err(|e| verdict.error().unwrap_or_else(|| api_err(e)))?;
        let mut out = UploadPartOutput::default();
        out.e_tag = Some(etag(&e));
        set_checksums!(out, verdict.matched());
        out.server_side_encryption = self.sse();
        Ok(S3Response::new(out))
    }

    /// A part copied from (a byte range of) a stored object: read, checked
    /// and stored again like any part (unchanged chunks are deduplicated),
    /// so a part's ETag is always the MD5 of its bytes.
    pub(crate) async fn do_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        check_part_number(i.part_number)?;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        let (_, len, stream) = self
            .engine
            .open_object(
                (&self.tenant, &src_bucket, &src_key),
                copy_source_err,
                |src| {
                    copy_source_conditions!(i).check(src, Unchanged::PreconditionFailed)?;
                    let (start, end) = match &i.copy_source_range {
                        None => (0, src.size),
                        Some(r) => source_range(r, src.size)?,
                    };
                    if end - start > MAX_PART_BYTES {
                        return Err(S3Error::with_message(
                            S3ErrorCode::EntityTooLarge,
                            "A copied part may be at most 5 GiB.",
                        ));
                    }
                    Ok((end - start, start..end))
                },
            )
            .await?;
        let stream = stream.map_err(std::io::Error::other);
        let opts = PutOptions {
            expected_len: Some(len),
            ..Default::default()
        };
        let body = tokio_util::io::StreamReader::new(stream);
        let e = self
            .store_part((&i.bucket, &i.key), &i.upload_id, i.part_number, body, opts)
            .await
            .map_err(api_err)?;
        let mut result = CopyPartResult::default();
        result.e_tag = Some(etag(&e));
        result.last_modified = Some(std::time::SystemTime::now().into());
        let mut out = UploadPartCopyOutput::default();
        out.copy_part_result = Some(result);
        out.server_side_encryption = self.sse();
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let (upload, parts) = self
            .engine
            .list_parts(&self.tenant, (&i.bucket, &i.key), &i.upload_id)
            .await
            .map_err(api_err)?;
        let marker = i.part_number_marker.unwrap_or(0) as i64;
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let after: Vec<_> = parts
            .into_iter()
            .filter(|p| p.part_number > marker)
            .collect();
        let truncated = after.len() > max;
        let shown: Vec<Part> = after
            .into_iter()
            .take(max)
            .map(|p| {
                let mut part = Part::default();
                part.part_number = Some(p.part_number as i32);
                part.size = Some(p.size);
                part.e_tag = Some(etag(&p.etag));
                part.last_modified = Some(ts(p.created_at));
                set_checksums!(part, checksum::of_part(p.checksums.as_deref()));
                part
            })
            .collect();
        let mut out = ListPartsOutput::default();
        out.next_part_number_marker = shown
            .last()
            .and_then(|p| p.part_number)
            .filter(|_| truncated);
        out.bucket = Some(i.bucket);
        out.key = Some(i.key);
        out.upload_id = Some(i.upload_id);
        out.max_parts = Some(max as i32);
        out.is_truncated = Some(truncated);
        out.parts = Some(shown);
        let upload_meta = serde_json::from_str(&upload.metadata).unwrap_or_default();
        (out.checksum_algorithm, out.checksum_type) = checksum::upload_checksum(&upload_meta);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut i = req.input;
        // Each part's number and ETag, and the sums the completion names.
        type Named = (i64, Checksum);
        let (parts, named): (Vec<(i64, String)>, Vec<Named>) = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|mut p| {
                let tag = match p.e_tag.take() {
                    Some(ETag::Strong(s)) | Some(ETag::Weak(s)) => s,
                    None => String::new(),
                };
                let n = p.part_number.unwrap_or(0) as i64;
                ((n, tag), (n, sums_of!(p)))
            })
            .unzip();
        if parts.is_empty() {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The XML you provided did not list any parts.",
            ));
        }
        let completion = checksum::Completion {
            parts: named,
            object: sums_of!(i),
            full_object: i
                .checksum_type
                .as_ref()
                .map(|t| t.as_str().eq_ignore_ascii_case("FULL_OBJECT")),
        };
        let declared = i.mpu_object_size;
        let sums = |kept: &[(i64, Option<String>)],
                    upload: &std::collections::BTreeMap<String, String>| {
            // x-amz-mp-object-size: the size the client expects the parts
            // to make, checked before the object is committed.
            let size: i64 = kept.iter().map(|(n, _)| n).sum();
            if let Some(want) = declared.filter(|want| *want != size) {
                return Err(fulcrum_engine::EngineError::InvalidRequest(format!(
                    "The provided 'x-amz-mp-object-size' header ({want}) does not match the object's size ({size}); nothing was completed."
                )));
            }
            checksum::object_sums(kept, &completion.with_intent(upload))
        };
        let done = self
            .engine
            .complete_upload_if(
                &self.tenant,
                (&i.bucket, &i.key),
                &i.upload_id,
                &parts,
                write_condition(i.if_match.as_ref(), i.if_none_match.as_ref())?,
                Some(&sums),
            )
            .await;
        let info = match done {
            // A retry of a completion that succeeded (its answer was lost):
            // the object it made, if this retry names the same parts.
            Err(e @ EngineError::Catalog(CatalogError::NoSuchUpload(_))) => {
                let tags: Vec<&String> = parts.iter().map(|(_, t)| t).collect();
                self.engine
                    .completed_by(&self.tenant, &i.bucket, &i.key, &i.upload_id)
                    .await
                    .map_err(api_err)?
                    .filter(|made| made.etag == fulcrum_engine::multipart_etag(&tags))
                    .ok_or_else(|| api_err(e))?
            }
            done => done.map_err(api_err)?,
        };
        let mut out = CompleteMultipartUploadOutput::default();
        out.bucket = Some(i.bucket);
        out.key = Some(info.key);
        out.e_tag = Some(etag(&info.etag));
        out.server_side_encryption = self.sse();
        let sums = checksum::of_metadata(&info.metadata);
        out.checksum_type = checksum::checksum_type(&sums);
        set_checksums!(out, sums);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        self.engine
            .abort_upload(&self.tenant, (&i.bucket, &i.key), &i.upload_id)
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    /// In key order, then by when each began (as S3 lists them; upload IDs
    /// begin with their start time, so this is ID order), from the
    /// markers on; with a delimiter, keys sharing what comes before it
    /// after the prefix are one CommonPrefix; at most `max-uploads` (1,000)
    /// entries, uploads and prefixes alike.
    pub(crate) async fn do_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let prefix = i.prefix.clone().unwrap_or_default();
        let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
        let enc = KeyEncoding::of(i.encoding_type.as_ref())?;
        let max = i.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let mut all: Vec<_> = self
            .engine
            .list_uploads(&self.tenant, &i.bucket)
            .await
            .map_err(api_err)?
            .into_iter()
            .filter(|u| u.key.starts_with(&prefix))
            .collect();
        all.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
        // Past the markers: later keys; with an upload-id marker, also the
        // marker key's uploads after that ID (whether or not it is still
        // there: a client aborts what it lists as it pages).
        let start = match (&i.key_marker, &i.upload_id_marker) {
            (None, _) => 0,
            (Some(km), um) => {
                let after_id = um
                    .as_ref()
                    .map(|id| all.partition_point(|u| (&u.key, &u.id) <= (km, id)));
                // A marker that is a CommonPrefix (the last of a page)
                // passes every key under it.
                let group = delimiter.as_deref().is_some_and(|d| km.ends_with(d));
                after_id.unwrap_or_else(|| {
                    all.partition_point(|u| {
                        u.key.as_str() <= km.as_str() || (group && u.key.starts_with(km.as_str()))
                    })
                })
            }
        };
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let (mut next_key, mut next_id, mut truncated) = (None, None, false);
        for u in &all[start..] {
            let group = delimiter.as_deref().and_then(|d| {
                u.key[prefix.len()..]
                    .find(d)
                    .map(|at| u.key[..prefix.len() + at + d.len()].to_string())
            });
            if let Some(g) = &group {
                if prefixes.last() == Some(g) {
                    continue;
                }
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            match group {
                Some(g) => {
                    next_key = Some(g.clone());
                    next_id = None;
                    prefixes.push(g);
                }
                None => {
                    next_key = Some(u.key.clone());
                    next_id = Some(u.id.clone());
                    let mut m = MultipartUpload::default();
                    m.key = Some(enc.name(u.key.clone()));
                    m.upload_id = Some(u.id.clone());
                    m.initiated = Some(ts(u.created_at_ms));
                    uploads.push(m);
                }
            }
        }
        let mut out = ListMultipartUploadsOutput::default();
        out.bucket = Some(i.bucket);
        out.prefix = enc.opt(i.prefix);
        out.delimiter = enc.opt(delimiter);
        out.key_marker = enc.opt(i.key_marker);
        out.upload_id_marker = i.upload_id_marker;
        out.max_uploads = Some(max as i32);
        out.encoding_type = i.encoding_type;
        out.is_truncated = Some(truncated);
        if truncated {
            out.next_key_marker = enc.opt(next_key);
            out.next_upload_id_marker = next_id;
        }
        out.common_prefixes = Some(super::common_prefixes(
            prefixes.into_iter().map(|p| enc.name(p)).collect(),
        ));
        out.uploads = Some(uploads);
        Ok(S3Response::new(out))
    }
}
