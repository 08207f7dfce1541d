//! The engine's public operations on buckets, objects and multipart
//! uploads, as every protocol sees them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use fulcrum_catalog::{
    Assembled, BucketRow, CatalogError, ChunkLoc, ObjectLock, ObjectRow, ObjectSummary,
    ObjectWrite, PartRow, PartWrite, UploadRow, Write, WriteCondition,
};
use fulcrum_store::ChunkParams;
use md5::{Digest, Md5};
use tokio::io::AsyncRead;

use crate::batch::StageBatch;
use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::ingest::{ContentDigest, Ingested};
use crate::read::{ByteStream, TaggedStream};

/// Lookups `open_object` tries before it gives up on an object that keeps
/// being replaced while it is read.
const OPEN_ATTEMPTS: usize = 8;

/// What a client says about a body it sends.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Content-MD5 the client sent, checked before the object is visible.
    pub content_md5: Option<[u8; 16]>,
    /// Content-Length the client declared.
    pub expected_len: Option<u64>,
    /// Retention and legal hold the client asked for (no retention: the
    /// bucket's default); configured policies may raise it.
    pub lock: ObjectLock,
    /// Store only if this holds for the object the write replaces.
    pub condition: Option<WriteCondition>,
    /// Metadata known only once the body has been read (a checksum sent
    /// in an aws-chunked trailer): added after its end, before the commit.
    pub late_metadata: Option<LateMetadata>,
}

/// Entries for an object's metadata, asked for after its body was read.
#[derive(Clone)]
pub struct LateMetadata(pub Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>);

impl std::fmt::Debug for LateMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateMetadata")
    }
}

/// The ETag of an object made of parts with these ETags: the MD5 of their
/// binary MD5s, then `-N` (as S3 makes it).
pub fn multipart_etag<S: AsRef<str>>(part_etags: &[S]) -> String {
    let mut md5 = Md5::new();
    for e in part_etags {
        md5.update(hex::decode(e.as_ref().trim_matches('"')).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(md5.finalize()), part_etags.len())
}

/// The protocol's rule for a completed upload's object-level checksum:
/// given the size and the checksums kept with each part the completion
/// names (in its order) and the upload's metadata (as its creation stored
/// it), the object's metadata entries; or the error refusing the
/// completion (a checksum the client gives does not match).
pub type PartSums<'a> = &'a (dyn Fn(
    &[(i64, Option<String>)],
    &BTreeMap<String, String>,
) -> EngineResult<Vec<(String, String)>>
         + Send
         + Sync);

/// Metadata entries that describe an object's content (its checksums):
/// a copy keeps them whatever metadata it is given.
pub const CONTENT_META_PREFIX: &str = ":checksum-";

/// An object's metadata as the protocols return it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub id: i64,
    pub key: String,
    pub size: u64,
    /// Hex MD5 (or `md5-of-md5s-N` for multipart), without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: i64,
    /// Retention and legal hold as stored.
    pub lock: ObjectLock,
    /// A tier move left all its chunks on the archive tier.
    pub archived: bool,
}

impl ObjectInfo {
    fn from_row(r: ObjectRow) -> Self {
        Self {
            id: r.id,
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            key: r.key,
            size: r.size as u64,
            etag: r.etag,
            content_type: r.content_type,
            created_at_ms: r.created_at,
            lock: r.lock,
            archived: r.archived_at.is_some(),
        }
    }
}

/// What a completed PUT stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub size: u64,
    /// Hex MD5 of the body, without quotes.
    pub etag: String,
}

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub key: String,
    pub created_at_ms: i64,
}

/// The metadata entry naming the multipart upload that made an object
/// (names starting with ':' are the platform's own, never user metadata).
pub const UPLOAD_ID_META: &str = ":upload-id";

/// The metadata entry giving the part sizes of an object made by a
/// multipart upload, as runs `size*count` (`5242880*3,1048576`): GET and
/// HEAD of one part (`partNumber`) read it.
pub const PARTS_META: &str = ":parts";

fn part_runs(sizes: &[i64]) -> String {
    let mut runs: Vec<(i64, usize)> = Vec::new();
    for &s in sizes {
        match runs.last_mut() {
            Some((size, n)) if *size == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs.iter()
        .map(|(s, n)| {
            if *n == 1 {
                s.to_string()
            } else {
                format!("{s}*{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The byte range of part `n` (from 1) of an object and its number of
/// parts: `None` for an object not made by a multipart upload, and a
/// range of `None` when it has no part `n`.
pub fn part_range(
    metadata: &BTreeMap<String, String>,
    n: u32,
) -> Option<(Option<std::ops::Range<u64>>, u32)> {
    let (mut start, mut count, mut range) = (0u64, 0u32, None);
    for run in metadata.get(PARTS_META)?.split(',') {
        let (size, times) = match run.split_once('*') {
            Some((s, c)) => (s.parse::<u64>().ok()?, c.parse::<u32>().ok()?),
            None => (run.parse::<u64>().ok()?, 1),
        };
        if range.is_none() && n > count && n <= count + times {
            let at = start + u64::from(n - count - 1) * size;
            range = Some(at..at + size);
        }
        start += u64::from(times) * size;
        count += times;
    }
    Some((range, count))
}

fn metadata_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

impl Engine {
    /// Ingests a body and checks it against the client's Content-MD5.
    async fn ingest_checked<R: AsyncRead + Unpin + Send>(
        &self,
        body: R,
        opts: &PutOptions,
    ) -> EngineResult<Ingested> {
        let ing = self
            .inner
            .ingest(body, opts.expected_len, ChunkParams::BULK)
            .await?;
        if opts.content_md5.is_some_and(|m| m != ing.md5) {
            return Err(EngineError::BadDigest);
        }
        Ok(ing)
    }

    pub async fn create_bucket(&self, tenant: &str, name: &str) -> EngineResult<BucketRow> {
        Ok(self.inner.catalog.create_bucket(tenant, name).await?)
    }

    /// Looks a bucket up, through a short-lived cache: every request names
    /// one. A bucket deleted on another node meanwhile is caught by the
    /// catalog's foreign keys when a write commits.
    pub async fn bucket(&self, tenant: &str, name: &str) -> EngineResult<BucketRow> {
        let key = (tenant.to_string(), name.to_string());
        if let Some(row) = self.inner.buckets.get(&key) {
            return Ok(row);
        }
        let row = self.inner.catalog.bucket(tenant, name).await?;
        self.inner.buckets.put(key, row.clone());
        Ok(row)
    }

    pub async fn list_buckets(&self, tenant: &str) -> EngineResult<Vec<BucketRow>> {
        Ok(self.inner.catalog.list_buckets(tenant).await?)
    }

    /// A bucket setting (its tag set, ...); `None` when not set.
    pub async fn bucket_setting(
        &self,
        tenant: &str,
        bucket: &str,
        name: &str,
    ) -> EngineResult<Option<String>> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self.inner.catalog.bucket_setting(b.id, name).await?)
    }

    /// Sets a bucket setting, or removes it with `None`.
    pub async fn set_bucket_setting(
        &self,
        tenant: &str,
        bucket: &str,
        (name, value): (&str, Option<&str>),
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self
            .inner
            .catalog
            .set_bucket_setting(b.id, name, value)
            .await?)
    }

    pub async fn delete_bucket(&self, tenant: &str, name: &str) -> EngineResult<()> {
        self.inner
            .buckets
            .forget(&(tenant.to_string(), name.to_string()));
        Ok(self.inner.catalog.delete_bucket(tenant, name).await?)
    }

    /// Stores a body under `key`, replacing any object there; returns once
    /// it is durable and visible.
    pub async fn put_object<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        body: R,
        opts: PutOptions,
    ) -> EngineResult<Stored> {
        let b = self.bucket(tenant, bucket).await?;
        let ing = self.ingest_checked(body, &opts).await?;
        let mut opts = opts;
        if let Some(LateMetadata(late)) = opts.late_metadata.take() {
            opts.metadata.extend(late());
        }
        let etag = hex::encode(ing.md5);
        let write = ObjectWrite {
            bucket_id: b.id,
            key: key.to_string(),
            size: ing.size as i64,
            etag: etag.clone(),
            content_type: opts.content_type,
            metadata: metadata_json(&opts.metadata),
            chunks: ing.chunks.clone(),
            completes_upload: None,
            lock: self.lock_request(opts.lock, (bucket, key), &opts.metadata),
            condition: opts.condition,
        };
        let size = ing.size;
        self.inner.commit(ing, Write::Object(write)).await?;
        Ok(Stored { size, etag })
    }

    pub async fn head_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> EngineResult<ObjectInfo> {
        let b = self.bucket(tenant, bucket).await?;
        let row = self
            .inner
            .catalog
            .get_object(b.id, key)
            .await?
            .ok_or_else(|| EngineError::NoSuchKey {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })?;
        Ok(ObjectInfo::from_row(row))
    }

    /// Streams `[start, end)` of an object found by `head_object`; fails
    /// with NoSuchKey when that version was replaced or deleted since.
    pub async fn read_object(
        &self,
        obj: &ObjectInfo,
        start: u64,
        end: u64,
    ) -> EngineResult<ByteStream> {
        self.read_version(obj, start, end)
            .await?
            .ok_or_else(|| EngineError::NoSuchKey {
                bucket: String::new(),
                key: obj.key.clone(),
            })
    }

    /// Looks an object up and streams the range of it that `plan` picks
    /// (after checking the version it is shown, as a conditional GET
    /// does), from that same version. An object replaced between the
    /// lookup and the read is looked up again: a reader gets the old
    /// object or the new one, never "no such key" (S3's read-after-write
    /// consistency). `err` maps the engine's errors to the caller's.
    pub async fn open_object<T, E>(
        &self,
        key: (&str, &str, &str),
        err: impl Fn(EngineError) -> E,
        plan: impl FnMut(&ObjectInfo) -> Result<(T, Range<u64>), E>,
    ) -> Result<(ObjectInfo, T, ByteStream), E> {
        let (info, (picked, range), chunks) = self.current_version(key, err, plan).await?;
        self.after_read(info.id, &chunks);
        let s = self
            .inner
            .read_chunks(chunks, range.start, range.end.min(info.size));
        Ok((info, picked, s))
    }

    /// Looks `key` up, lets `plan` check the version it finds, and returns
    /// that version with its chunks; a version replaced or deleted before
    /// its chunks were read is looked up again (up to OPEN_ATTEMPTS times),
    /// so readers and copies see one whole version, never another's size
    /// with none of its chunks.
    async fn current_version<T, E>(
        &self,
        (tenant, bucket, key): (&str, &str, &str),
        err: impl Fn(EngineError) -> E,
        mut plan: impl FnMut(&ObjectInfo) -> Result<T, E>,
    ) -> Result<(ObjectInfo, T, Vec<ChunkLoc>), E> {
        for _ in 0..OPEN_ATTEMPTS {
            let info = self.head_object(tenant, bucket, key).await.map_err(&err)?;
            let picked = plan(&info)?;
            if let Some(chunks) = self.version_chunks(&info).await.map_err(&err)? {
                return Ok((info, picked, chunks));
            }
        }
        Err(err(EngineError::Busy(format!(
            "{bucket}/{key} was replaced {OPEN_ATTEMPTS} times while being read; retry"
        ))))
    }

    /// The chunks of version `obj`, or None when it was replaced or deleted
    /// since it was looked up (its chunk rows are gone with its row).
    async fn version_chunks(&self, obj: &ObjectInfo) -> EngineResult<Option<Vec<ChunkLoc>>> {
        let chunks = self.inner.catalog.object_chunks(obj.id).await?;
        let total: u64 = chunks.iter().map(|c| c.raw_len as u64).sum();
        Ok((total == obj.size).then_some(chunks))
    }

    /// The stream of `read_object`, or None when the version `obj` was
    /// replaced or deleted since it was looked up.
    async fn read_version(
        &self,
        obj: &ObjectInfo,
        start: u64,
        end: u64,
    ) -> EngineResult<Option<ByteStream>> {
        let Some(chunks) = self.version_chunks(obj).await? else {
            return Ok(None);
        };
        self.after_read(obj.id, &chunks);
        Ok(Some(self.inner.read_chunks(
            chunks,
            start,
            end.min(obj.size),
        )))
    }

    /// Streams whole objects of one bucket one after the other, each piece
    /// tagged with the index of its key in `keys`: one catalog query for
    /// all of them, and neighbouring objects (e.g. the instances of a study
    /// stored together) share ranged reads and decoding. A key with no
    /// object fails the call.
    pub async fn read_objects(
        &self,
        tenant: &str,
        bucket: &str,
        keys: &[&str],
    ) -> EngineResult<TaggedStream> {
        let whole: Vec<(&str, Range<u64>)> = keys.iter().map(|k| (*k, 0..u64::MAX)).collect();
        self.read_object_ranges(tenant, bucket, &whole).await
    }

    /// Like [`Engine::read_objects`], a range of each object (cut to its
    /// size): the headers of a study's instances, say, in one call.
    pub async fn read_object_ranges(
        &self,
        tenant: &str,
        bucket: &str,
        items: &[(&str, Range<u64>)],
    ) -> EngineResult<TaggedStream> {
        let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
        let b = self.bucket(tenant, bucket).await?;
        let mut found: std::collections::HashMap<String, (i64, i64, Vec<ChunkLoc>)> = self
            .inner
            .catalog
            .objects_with_chunks(b.id, &keys)
            .await?
            .into_iter()
            .map(|(key, id, size, chunks)| (key, (id, size, chunks)))
            .collect();
        let mut objects = Vec::with_capacity(keys.len());
        for (key, range) in items {
            let (id, size, chunks) = match found.remove(*key) {
                Some(f) => f,
                // An object without chunks is empty (or gone).
                None => {
                    let info = self.head_object(tenant, bucket, key).await?;
                    (info.id, info.size as i64, Vec::new())
                }
            };
            let total: u64 = chunks.iter().map(|c| c.raw_len as u64).sum();
            if total != size as u64 {
                return Err(EngineError::NoSuchKey {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                });
            }
            self.after_read(id, &chunks);
            let size = size as u64;
            objects.push((range.start.min(size)..range.end.min(size), chunks));
        }
        Ok(self.inner.read_many(objects))
    }

    /// Deletes an object unless retention or a legal hold protects it.
    pub async fn delete_object(&self, tenant: &str, bucket: &str, key: &str) -> EngineResult<bool> {
        self.delete_object_with(tenant, bucket, key, false).await
    }

    pub async fn list_objects(
        &self,
        tenant: &str,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> EngineResult<Vec<ObjectSummary>> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self
            .inner
            .catalog
            .list_objects(b.id, prefix, after, limit)
            .await?)
    }

    /// Sets (or, with `None`, removes) one entry of an object's metadata
    /// without rewriting the object (tags): allowed under retention and
    /// legal hold, which protect content, not labels.
    pub async fn set_object_meta(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        (name, value): (&str, Option<&str>),
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        match self
            .inner
            .catalog
            .set_object_meta(b.id, key, name, value)
            .await?
        {
            true => Ok(()),
            false => Err(Self::no_such_key(bucket, key)),
        }
    }

    /// Copies an object by reference: the new object shares every chunk.
    /// `replace` gives new content type and metadata; `lock` is what the
    /// copy asks for (the source's protection is not copied, as in S3).
    pub async fn copy_object(
        &self,
        tenant: &str,
        src: (&str, &str),
        dst: (&str, &str),
        replace: Option<(Option<String>, BTreeMap<String, String>)>,
        lock: ObjectLock,
    ) -> EngineResult<ObjectInfo> {
        self.copy_object_if(tenant, src, dst, replace, lock, None)
            .await
    }

    /// [`Engine::copy_object`], committed only if the destination meets
    /// `condition` (S3 `If-None-Match: *` / `If-Match` on a copy).
    pub async fn copy_object_if(
        &self,
        tenant: &str,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        replace: Option<(Option<String>, BTreeMap<String, String>)>,
        lock: ObjectLock,
        condition: Option<WriteCondition>,
    ) -> EngineResult<ObjectInfo> {
        let guard = self.inner.inflight.begin();
        let dst = self.bucket(tenant, dst_bucket).await?;
        let (src, (), chunks) = self
            .current_version((tenant, src_bucket, src_key), |e| e, |_| Ok(()))
            .await?;
        let chunks = chunks.into_iter().map(|c| c.id).collect();
        let (content_type, mut metadata) =
            replace.unwrap_or((src.content_type.clone(), src.metadata.clone()));
        // A copy was made by no upload, and holds the same bytes.
        metadata.remove(UPLOAD_ID_META);
        metadata.retain(|k, _| !k.starts_with(CONTENT_META_PREFIX));
        metadata.extend(
            src.metadata
                .iter()
                .filter(|(k, _)| k.starts_with(CONTENT_META_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let write = ObjectWrite {
            bucket_id: dst.id,
            key: dst_key.to_string(),
            size: src.size as i64,
            etag: src.etag.clone(),
            content_type,
            metadata: metadata_json(&metadata),
            chunks,
            completes_upload: None,
            lock: self.lock_request(lock, (dst_bucket, dst_key), &metadata),
            condition,
        };
        self.committed(tenant, dst_bucket, write, guard).await
    }

    /// Commits `write` and describes the object it made: as stored, or,
    /// when another request deleted it right after the commit, as written
    /// (the write succeeded; a NoSuchKey then made a completed copy look
    /// like a missing copy source, and a completed upload like a failed
    /// one, to the client).
    async fn committed(
        &self,
        tenant: &str,
        bucket: &str,
        write: ObjectWrite,
        guard: crate::inflight::InflightGuard,
    ) -> EngineResult<ObjectInfo> {
        let key = write.key.clone();
        let (size, etag, content_type) =
            (write.size, write.etag.clone(), write.content_type.clone());
        let metadata = serde_json::from_str(&write.metadata).unwrap_or_default();
        self.inner.commit_rows(Write::Object(write), guard).await?;
        match self.head_object(tenant, bucket, &key).await {
            Err(EngineError::NoSuchKey { .. }) => Ok(ObjectInfo {
                id: 0,
                key,
                size: size as u64,
                etag,
                content_type,
                metadata,
                created_at_ms: fulcrum_catalog::now_ms(),
                lock: ObjectLock::default(),
                archived: false,
            }),
            r => r,
        }
    }

    pub async fn create_upload(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
        lock: ObjectLock,
    ) -> EngineResult<String> {
        let b = self.bucket(tenant, bucket).await?;
        // Its start time first, so upload IDs sort as the uploads began
        // (ListMultipartUploads pages resume after an ID that may be gone).
        let id = format!(
            "{:012x}{:020x}",
            fulcrum_catalog::now_ms(),
            rand::random::<u128>() >> 48
        );
        self.inner
            .catalog
            .create_upload(&UploadRow {
                id: id.clone(),
                bucket_id: b.id,
                key: key.to_string(),
                content_type,
                metadata: metadata_json(&metadata),
                created_at: fulcrum_catalog::now_ms(),
            })
            .await?;
        if !lock.is_empty() {
            self.inner.catalog.set_upload_lock(&id, &lock).await?;
        }
        Ok(id)
    }

    /// The upload `upload_id` of `key` in `bucket`: an ID sent with
    /// another bucket or key names no upload (S3 answers NoSuchUpload), so
    /// a request for one key never touches another key's upload.
    async fn upload_row(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
    ) -> EngineResult<UploadRow> {
        let b = self.bucket(tenant, bucket).await?;
        let u = self.inner.catalog.upload(b.id, upload_id).await?;
        if u.key != key {
            return Err(CatalogError::NoSuchUpload(upload_id.to_string()).into());
        }
        Ok(u)
    }

    /// Stores one part; returns its ETag (hex MD5).
    pub async fn upload_part<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
        part_number: i64,
        body: R,
        opts: PutOptions,
    ) -> EngineResult<String> {
        self.upload_row(tenant, (bucket, key), upload_id).await?;
        let ing = self.ingest_checked(body, &opts).await?;
        let etag = hex::encode(ing.md5);
        // The part's own checksums (the late metadata of a part).
        let checksums = opts
            .late_metadata
            .map(|LateMetadata(late)| late())
            .filter(|m| !m.is_empty())
            .map(|m| metadata_json(&m.into_iter().collect()));
        let write = PartWrite {
            upload_id: upload_id.to_string(),
            part_number,
            size: ing.size as i64,
            etag: etag.clone(),
            chunks: ing.chunks.clone(),
            checksums,
        };
        self.inner.commit(ing, Write::Part(write)).await?;
        Ok(etag)
    }

    pub async fn list_parts(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
    ) -> EngineResult<(UploadRow, Vec<PartRow>)> {
        let u = self.upload_row(tenant, (bucket, key), upload_id).await?;
        let parts = self.inner.catalog.list_parts(upload_id).await?;
        Ok((u, parts))
    }

    pub async fn list_uploads(&self, tenant: &str, bucket: &str) -> EngineResult<Vec<UploadInfo>> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self
            .inner
            .catalog
            .list_uploads(b.id)
            .await?
            .into_iter()
            .map(|u| UploadInfo {
                id: u.id,
                key: u.key,
                created_at_ms: u.created_at,
            })
            .collect())
    }

    pub async fn abort_upload(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
    ) -> EngineResult<()> {
        self.upload_row(tenant, (bucket, key), upload_id).await?;
        Ok(self.inner.catalog.abort_upload(upload_id).await?)
    }

    /// Joins the listed parts (number, ETag) into the upload's object.
    pub async fn complete_upload(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
        parts: &[(i64, String)],
    ) -> EngineResult<ObjectInfo> {
        self.complete_upload_if(tenant, (bucket, key), upload_id, parts, None, None)
            .await
    }

    /// The object at `key` if the upload `upload_id` made it and nothing
    /// has replaced it since: a retried CompleteMultipartUpload (the first
    /// answer was lost) is answered with it, as S3 does, instead of with
    /// NoSuchUpload for an upload that succeeded.
    pub async fn completed_by(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> EngineResult<Option<ObjectInfo>> {
        match self.head_object(tenant, bucket, key).await {
            Ok(info) => Ok((info.metadata.get(UPLOAD_ID_META).map(String::as_str)
                == Some(upload_id))
            .then_some(info)),
            Err(EngineError::NoSuchKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Engine::complete_upload`] if `condition` holds for the object the
    /// upload replaces (the upload stays open when it does not).
    pub async fn complete_upload_if(
        &self,
        tenant: &str,
        (bucket, key): (&str, &str),
        upload_id: &str,
        parts: &[(i64, String)],
        condition: Option<WriteCondition>,
        sums: Option<PartSums<'_>>,
    ) -> EngineResult<ObjectInfo> {
        let guard = self.inner.inflight.begin();
        let u = self.upload_row(tenant, (bucket, key), upload_id).await?;
        if parts.is_empty() {
            return Err(CatalogError::InvalidPart(0).into());
        }
        let Assembled {
            sizes,
            chunks,
            etags,
            checksums,
        } = self.inner.catalog.assemble_upload(upload_id, parts).await?;
        let mut metadata: BTreeMap<String, String> =
            serde_json::from_str(&u.metadata).unwrap_or_default();
        let content = match sums {
            Some(f) => {
                let parts: Vec<_> = sizes.iter().copied().zip(checksums).collect();
                f(&parts, &metadata)?
            }
            None => Vec::new(),
        };
        let size: i64 = sizes.iter().sum();
        // Each part was held to the limit; the object they make is too (the
        // upload stays open, as on S3, for a Complete with fewer parts).
        let max = self.inner.cfg.max_object_size;
        if u64::try_from(size).map_or(true, |n| n > max) {
            return Err(EngineError::TooLarge { max });
        }
        let etag = multipart_etag(&etags);
        metadata.insert(UPLOAD_ID_META.to_string(), upload_id.to_string());
        metadata.insert(PARTS_META.to_string(), part_runs(&sizes));
        metadata.extend(content);
        let lock = self.lock_request(
            self.upload_lock(upload_id).await?,
            (bucket, &u.key),
            &metadata,
        );
        let write = ObjectWrite {
            bucket_id: u.bucket_id,
            key: u.key.clone(),
            size,
            etag,
            content_type: u.content_type.clone(),
            metadata: metadata_json(&metadata),
            chunks,
            completes_upload: Some(upload_id.to_string()),
            lock,
            condition,
        };
        self.committed(tenant, bucket, write, guard).await
    }
}

/// A body stored but not yet visible: the protocol layer checks it (and
/// builds its catalog rows) before [`Engine::commit_staged`] makes it
/// visible. Dropping it abandons the write; its new chunks become garbage.
pub struct Staged {
    ing: Ingested,
}

impl Staged {
    pub fn size(&self) -> u64 {
        self.ing.size
    }

    /// Hex digest of the body (MD5, or of its chunk list: see [`ContentDigest`]).
    pub fn etag(&self) -> String {
        hex::encode(self.ing.md5)
    }

    /// A digest of `seed` and the body's chunks from `offset` on (as
    /// [`ContentDigest::ChunkList`] digests a whole body): `None` unless a
    /// chunk starts at `offset` (a region boundary). With a seed that
    /// identifies the bytes before, it identifies a part of the body (a
    /// DICOM dataset after its file meta) at no extra pass over the rest.
    pub fn digest_from(&self, offset: u64, seed: &[u8]) -> Option<String> {
        let digest = |i: usize| {
            hex::encode(crate::ingest::chunk_list_digest(
                seed,
                &self.ing.chunks[i..],
            ))
        };
        let mut start = 0u64;
        for (i, &len) in self.ing.lens.iter().enumerate() {
            if start >= offset {
                return (start == offset).then(|| digest(i));
            }
            start += u64::from(len);
        }
        (start == offset).then(|| digest(self.ing.chunks.len()))
    }
}

pub use crate::ingest::BodyRegion;

impl Engine {
    /// Stores a body made of regions, each chunked on its own (a DICOM
    /// header with small chunks, its pixel data with large ones), without
    /// making it visible. Bodies staged in one `batch` share its packs
    /// (see [`StageBatch`]).
    pub async fn stage(
        &self,
        regions: Vec<BodyRegion<'_>>,
        digest: ContentDigest,
        batch: Option<&StageBatch>,
    ) -> EngineResult<Staged> {
        let ing = self
            .inner
            .ingest_regions(regions, None, digest, batch)
            .await?;
        Ok(Staged { ing })
    }

    /// Commits a staged body with the catalog write that references it
    /// (its chunk list is filled in here); returns once durable and visible.
    pub async fn commit_staged(&self, staged: Staged, mut write: Write) -> EngineResult<()> {
        let chunks = staged.ing.chunks.clone();
        match &mut write {
            Write::Object(o) => o.chunks = chunks,
            Write::Part(p) => p.chunks = chunks,
            Write::Dicom(d) => {
                d.object.chunks = chunks;
                d.object.lock.policy = self.policy_retention(crate::retention::WriteFacts {
                    target: crate::retention::Target::Dicom { tenant: &d.tenant },
                    key: &d.object.key,
                    metadata: &BTreeMap::new(),
                    study_date: d.study.study_date.as_deref(),
                    now_ms: fulcrum_catalog::now_ms(),
                });
            }
        }
        self.inner.commit(staged.ing, write).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_are_kept_as_runs_and_give_each_part_its_range() {
        let sizes = [5, 5, 5, 2, 2, 1];
        let runs = part_runs(&sizes);
        assert_eq!(runs, "5*3,2*2,1");
        let meta = BTreeMap::from([(PARTS_META.to_string(), runs)]);
        assert_eq!(part_range(&meta, 1), Some((Some(0..5), 6)));
        assert_eq!(part_range(&meta, 4), Some((Some(15..17), 6)));
        assert_eq!(part_range(&meta, 6), Some((Some(19..20), 6)));
        assert_eq!(part_range(&meta, 7), Some((None, 6)));
        assert_eq!(part_range(&meta, 0), Some((None, 6)));
        assert_eq!(part_range(&BTreeMap::new(), 1), None);
        let bad = BTreeMap::from([(PARTS_META.to_string(), "5*x".to_string())]);
        assert_eq!(part_range(&bad, 1), None);
    }
}
