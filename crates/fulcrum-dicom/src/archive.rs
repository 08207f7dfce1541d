//! The archive: the one object every DICOM protocol (DIMSE, DICOMweb, the
//! CLI) stores, finds, reads and deletes instances through. Instances are
//! Part 10 objects in a per-tenant bucket of the engine, indexed in the
//! catalog in the same transaction.

use std::sync::Arc;

use bytes::Bytes;
use dicom_object::InMemDicomObject;
use fulcrum_catalog::dicom::{DicomMatch, DicomQuery, DuplicatePolicy, InstanceRecord, Scope};
use fulcrum_engine::{ByteStream, Engine, EngineError, ObjectInfo, TaggedStream};
use futures::TryStreamExt;

use crate::error::{DicomError, DicomResult};

/// The engine bucket holding a tenant's instances. Its leading dot keeps
/// it out of the S3 namespace (no S3 bucket name may start with one).
pub const DICOM_BUCKET: &str = ".dicom";

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub duplicates: DuplicatePolicy,
    /// The header (everything before Pixel Data) is buffered to be parsed
    /// up to this size; past it the instance is split at the last element
    /// boundary and indexed from what was read.
    pub header_cap: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            duplicates: DuplicatePolicy::Replace,
            header_cap: 16 * 1024 * 1024,
        }
    }
}

/// Cheap to clone; shared by every protocol.
#[derive(Clone)]
pub struct Archive {
    pub(crate) engine: Engine,
    pub(crate) cfg: Arc<ArchiveConfig>,
}

/// The stored object key of an instance.
pub fn instance_key(sop_uid: &str) -> String {
    format!("instances/{sop_uid}")
}

impl Archive {
    pub fn new(engine: Engine, cfg: ArchiveConfig) -> Self {
        Self {
            engine,
            cfg: Arc::new(cfg),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.cfg
    }

    /// The tenant's DICOM bucket id, created on first use.
    pub(crate) async fn bucket_id(&self, tenant: &str) -> DicomResult<i64> {
        match self.engine.bucket(tenant, DICOM_BUCKET).await {
            Ok(b) => Ok(b.id),
            Err(EngineError::Catalog(fulcrum_engine::CatalogError::NoSuchBucket(_))) => {
                match self.engine.create_bucket(tenant, DICOM_BUCKET).await {
                    Ok(b) => Ok(b.id),
                    // Created meanwhile by another request.
                    Err(_) => Ok(self.engine.bucket(tenant, DICOM_BUCKET).await?.id),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// QIDO-RS / C-FIND.
    pub async fn query(&self, q: &DicomQuery) -> DicomResult<Vec<DicomMatch>> {
        Ok(self.engine.catalog().query_dicom(q).await?)
    }

    /// The instances of a study, series or single instance (empty if none).
    pub async fn instances(&self, tenant: &str, scope: &Scope) -> DicomResult<Vec<InstanceRecord>> {
        Ok(self.engine.catalog().dicom_instances(tenant, scope).await?)
    }

    /// One instance by SOP Instance UID.
    pub async fn instance(
        &self,
        tenant: &str,
        sop_uid: &str,
    ) -> DicomResult<Option<InstanceRecord>> {
        Ok(self
            .engine
            .catalog()
            .dicom_instance(tenant, sop_uid)
            .await?)
    }

    async fn object(&self, tenant: &str, rec: &InstanceRecord) -> DicomResult<ObjectInfo> {
        self.engine
            .head_object(tenant, DICOM_BUCKET, &rec.object_key)
            .await
            .map_err(|e| match e {
                EngineError::NoSuchKey { .. } => {
                    DicomError::NotFound(format!("instance {}", rec.sop_uid))
                }
                e => e.into(),
            })
    }

    /// Streams `[start, end)` of an instance's stored Part 10 bytes (hash
    /// verified on the way).
    pub async fn read(
        &self,
        tenant: &str,
        rec: &InstanceRecord,
        start: u64,
        end: u64,
    ) -> DicomResult<ByteStream> {
        let obj = self.object(tenant, rec).await?;
        Ok(self.engine.read_object(&obj, start, end).await?)
    }

    /// Streams several instances' stored bytes whole, one after the other,
    /// each piece tagged with the instance's index in `recs`; instances
    /// stored together are read together.
    pub async fn read_many(
        &self,
        tenant: &str,
        recs: &[InstanceRecord],
    ) -> DicomResult<TaggedStream> {
        let keys: Vec<&str> = recs.iter().map(|r| r.object_key.as_str()).collect();
        self.engine
            .read_objects(tenant, DICOM_BUCKET, &keys)
            .await
            .map_err(not_found)
    }

    /// Reads a range of each of several instances into memory (their
    /// headers, say) with one engine call: one catalog query, and
    /// instances stored together share ranged reads.
    pub async fn read_ranges(
        &self,
        tenant: &str,
        items: &[(&InstanceRecord, std::ops::Range<u64>)],
    ) -> DicomResult<Vec<Bytes>> {
        let keys: Vec<(&str, std::ops::Range<u64>)> = items
            .iter()
            .map(|(r, range)| (r.object_key.as_str(), range.clone()))
            .collect();
        let mut s = self
            .engine
            .read_object_ranges(tenant, DICOM_BUCKET, &keys)
            .await
            .map_err(not_found)?;
        let mut out: Vec<Vec<u8>> = items
            .iter()
            .map(|(_, r)| Vec::with_capacity(r.end.saturating_sub(r.start).min(1 << 30) as usize))
            .collect();
        while let Some((i, b)) = s.try_next().await? {
            if let Some(o) = out.get_mut(i) {
                o.extend_from_slice(&b);
            }
        }
        Ok(out.into_iter().map(Bytes::from).collect())
    }

    /// Reads a range into memory (headers, frames).
    pub async fn read_bytes(
        &self,
        tenant: &str,
        rec: &InstanceRecord,
        start: u64,
        end: u64,
    ) -> DicomResult<Bytes> {
        let mut one = self.read_ranges(tenant, &[(rec, start..end)]).await?;
        Ok(one.pop().unwrap_or_default())
    }

    /// The parsed header (the dataset before Pixel Data).
    pub async fn header(
        &self,
        tenant: &str,
        rec: &InstanceRecord,
    ) -> DicomResult<InMemDicomObject> {
        let bytes = self
            .read_bytes(
                tenant,
                rec,
                rec.dataset_offset as u64,
                rec.header_len as u64,
            )
            .await?;
        let ts = rec.transfer_syntax.clone();
        tokio::task::spawn_blocking(move || crate::store::parse_dataset(&bytes, &ts))
            .await
            .map_err(|e| DicomError::Malformed(e.to_string()))?
    }

    /// The parsed headers of several instances, read with one engine call
    /// and parsed off the async threads; each parse may fail on its own.
    pub(crate) async fn headers(
        &self,
        tenant: &str,
        recs: &[&InstanceRecord],
    ) -> DicomResult<Vec<DicomResult<InMemDicomObject>>> {
        let ranges: Vec<_> = recs
            .iter()
            .map(|r| (*r, r.dataset_offset as u64..r.header_len as u64))
            .collect();
        let bytes = self.read_ranges(tenant, &ranges).await?;
        let syntaxes: Vec<String> = recs.iter().map(|r| r.transfer_syntax.clone()).collect();
        tokio::task::spawn_blocking(move || {
            bytes
                .iter()
                .zip(&syntaxes)
                .map(|(b, ts)| crate::store::parse_dataset(b, ts))
                .collect()
        })
        .await
        .map_err(|e| DicomError::Malformed(format!("header parsing failed: {e}")))
    }

    /// Removes a study, series or instance (with earlier versions); returns
    /// how many instances went. Refused as a whole (nothing removed) when
    /// any of them is under retention or legal hold; `bypass_governance`
    /// lifts governance-mode retention only.
    pub async fn delete(
        &self,
        tenant: &str,
        scope: &Scope,
        bypass_governance: bool,
    ) -> DicomResult<usize> {
        let bucket = self.bucket_id(tenant).await?;
        let gone = self
            .engine
            .catalog()
            .delete_dicom(tenant, bucket, scope, bypass_governance)
            .await?;
        if let Scope::Series(study, _) | Scope::Instance(study, _, _) = scope {
            if !gone.is_empty() {
                self.refresh_left(tenant, study).await;
            }
        }
        Ok(gone.len())
    }

    /// Brings a study's attributes back to its remaining instances' after
    /// instances left it (deleted, or re-sent into another study or
    /// series): they were the latest instance's, and one that left kept
    /// its name on the study (a misfiled image corrected, and the study
    /// still listed under the wrong patient). The latest headers are read
    /// again (see `reindex`); a failure is logged, `fulcrum dicom reindex`
    /// repairs it.
    pub async fn refresh_left(&self, tenant: &str, study_uid: &str) {
        if let Err(e) = self.refresh_study(tenant, study_uid).await {
            tracing::warn!(study = study_uid, error = %e, "cannot refresh the attributes of a study instances left; run `fulcrum dicom reindex --study`");
        }
    }

    /// Puts (`on`) or lifts a legal hold on every instance of a scope and
    /// its earlier versions; returns how many objects it put on hold, or
    /// how many holds it lifted. Not found when the scope holds no
    /// instance.
    pub async fn hold(&self, tenant: &str, scope: &Scope, on: bool) -> DicomResult<u64> {
        let bucket = self.bucket_id(tenant).await?;
        let (instances, n) = self
            .engine
            .catalog()
            .hold_dicom(tenant, bucket, scope, on)
            .await?;
        if instances == 0 {
            return Err(DicomError::NotFound(match scope {
                Scope::Study(s) => format!("study {s}"),
                Scope::Series(s, se) => format!("series {se} of study {s}"),
                Scope::Instance(s, se, sop) => {
                    format!("instance {sop} of series {se} of study {s}")
                }
            }));
        }
        Ok(n)
    }
}

/// An instance whose object is gone is not found; other errors are the
/// engine's.
fn not_found(e: EngineError) -> DicomError {
    match e {
        EngineError::NoSuchKey { key, .. } => {
            DicomError::NotFound(format!("the instance stored as {key}"))
        }
        e => e.into(),
    }
}
