//! The archive tier: its backend and codec (zstd at the archive level),
//! which backend holds a pack of a given tier, and what a read does
//! besides streaming bytes: count a recall when chunks come from the
//! archive, record the read for "not read for N days" rules (at most once
//! a day per object, off the request path, many reads per statement), and
//! optionally promote the
//! object back to hot in the background.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fulcrum_catalog::{now_ms, ChunkLoc, NewPack};
use fulcrum_store::{pack_path, Backend, BackendConfig, Codec, MasterKey, PackBuilder, PackEntry};
use fulcrum_types::{PackId, Tier};
use tracing::{debug, info, warn};

use crate::engine::{Engine, Inner};
use crate::error::{EngineError, EngineResult};

/// zstd level of the archive tier: slow to write (once, in the
/// background), as fast to read as any level.
pub const DEFAULT_ARCHIVE_ZSTD_LEVEL: i32 = 19;

/// A read is recorded in the catalog at most this often per object.
pub const READ_TOUCH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Settings of the archive tier.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub backend: BackendConfig,
    pub zstd_level: i32,
    /// Move an object's chunks back to hot after it was read from the
    /// archive.
    pub promote_on_read: bool,
}

impl ArchiveConfig {
    pub fn new(backend: BackendConfig) -> Self {
        Self {
            backend,
            zstd_level: DEFAULT_ARCHIVE_ZSTD_LEVEL,
            promote_on_read: false,
        }
    }
}

/// The opened archive tier.
pub(crate) struct ArchiveTier {
    pub backend: Backend,
    pub codec: Codec,
    pub promote_on_read: bool,
}

impl ArchiveTier {
    pub fn open(
        cfg: Option<&ArchiveConfig>,
        key: Option<&MasterKey>,
    ) -> EngineResult<Option<Self>> {
        let Some(cfg) = cfg else { return Ok(None) };
        Ok(Some(Self {
            backend: Backend::open(&cfg.backend)?,
            codec: Codec::new(key, cfg.zstd_level),
            promote_on_read: cfg.promote_on_read,
        }))
    }
}

/// Which objects this node recorded a read of lately, and which it is
/// promoting, so neither is repeated per request.
#[derive(Default)]
pub(crate) struct ReadTracker {
    touched: Mutex<HashMap<i64, Instant>>,
    promoting: Mutex<HashSet<i64>>,
    /// Reads not yet recorded in the catalog (see `record_reads`).
    pending: Mutex<Vec<i64>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

/// Reads are recorded together, this long after the first of a batch: a
/// study retrieve of 500 instances costs one statement, not 500
/// transactions.
const RECORD_DELAY: Duration = Duration::from_millis(200);

/// Records the reads `after_read` queued, in batches, until the engine
/// is dropped.
pub(crate) async fn record_reads(inner: std::sync::Weak<Inner>) {
    let Some(wake) = inner.upgrade().map(|i| i.reads.wake.clone()) else {
        return;
    };
    loop {
        let notified = wake.notified();
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let has_pending = !strong
            .reads
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        drop(strong);
        if !has_pending {
            // Wakes for new reads; a check now and then ends the loop
            // once the engine is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
            continue;
        }
        tokio::time::sleep(RECORD_DELAY).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let ids = std::mem::take(
            &mut *strong
                .reads
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let interval = READ_TOUCH_INTERVAL.as_millis() as i64;
        if let Err(e) = strong.catalog.touch_reads(&ids, now_ms(), interval).await {
            debug!(objects = ids.len(), error = %e, "could not record reads");
        }
    }
}

impl ReadTracker {
    /// True when a read of `object` should be recorded now.
    fn should_touch(&self, object: i64) -> bool {
        let mut m = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(&object)
            .is_some_and(|at| at.elapsed() < READ_TOUCH_INTERVAL)
        {
            return false;
        }
        if m.len() > 100_000 {
            m.retain(|_, at| at.elapsed() < READ_TOUCH_INTERVAL);
            if m.len() > 100_000 {
                m.clear();
            }
        }
        m.insert(object, Instant::now());
        true
    }

    fn start_promotion(&self, object: i64) -> bool {
        self.promoting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(object)
    }

    fn end_promotion(&self, object: i64) {
        self.promoting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&object);
    }
}

impl Inner {
    /// The backend holding packs of `tier`.
    pub(crate) fn backend_for(&self, tier: Tier) -> EngineResult<&Backend> {
        match tier {
            Tier::Hot => Ok(&self.backend),
            Tier::Archive => self.archive.as_ref().map(|a| &a.backend).ok_or_else(|| {
                EngineError::NoArchive(
                    "data is on the archive tier but no archive backend is configured (set archive_backend / FULCRUM_ARCHIVE_BACKEND)".into(),
                )
            }),
        }
    }

    /// The codec that encodes new chunks of `tier` (any codec decodes any
    /// chunk: the zstd level is not needed to decompress).
    pub(crate) fn codec_for(&self, tier: Tier) -> &Codec {
        match (tier, &self.archive) {
            (Tier::Archive, Some(a)) => &a.codec,
            _ => &self.codec,
        }
    }

    /// Every configured tier with its backend.
    pub(crate) fn tier_backends(&self) -> Vec<(Tier, &Backend)> {
        let mut v = vec![(Tier::Hot, &self.backend)];
        if let Some(a) = &self.archive {
            v.push((Tier::Archive, &a.backend));
        }
        v
    }

    /// Seals `builder` and writes it durably to the backend of `tier`;
    /// returns its id, row and entries.
    pub(crate) async fn write_pack_to(
        &self,
        tier: Tier,
        builder: PackBuilder,
    ) -> EngineResult<(PackId, NewPack, Vec<PackEntry>)> {
        let (sealed, entries) = SealedPack::seal(builder);
        let (id, row) = (sealed.id.clone(), sealed.row.clone());
        self.store_pack(tier, sealed).await?;
        Ok((id, row, entries))
    }

    /// Writes a sealed pack durably to the backend of `tier`.
    pub(crate) async fn store_pack(&self, tier: Tier, pack: SealedPack) -> EngineResult<()> {
        self.backend_for(tier)?
            .write(&pack_path(&pack.id), pack.parts)
            .await?;
        self.metrics.packs_written.inc();
        Ok(())
    }
}

/// A pack laid out but not written yet: its id, catalog row and bytes.
/// Where its chunks will be is known before it is written, so its catalog
/// rows can be prepared while it is (see `Catalog::commit_after`).
pub(crate) struct SealedPack {
    pub id: PackId,
    pub row: NewPack,
    parts: Vec<bytes::Bytes>,
}

impl SealedPack {
    /// Seals `builder` under a new id; also returns its chunks' entries.
    pub(crate) fn seal(builder: PackBuilder) -> (Self, Vec<PackEntry>) {
        let id = PackId::generate();
        let (parts, entries) = builder.seal();
        let row = NewPack {
            id: id.as_str().to_string(),
            size: parts.iter().map(|p| p.len() as i64).sum(),
        };
        (Self { id, row, parts }, entries)
    }
}

impl Engine {
    /// Whether an archive backend is configured.
    pub fn has_archive(&self) -> bool {
        self.inner.archive.is_some()
    }

    /// Bookkeeping after a read of `object_id` made of `chunks` began:
    /// records the read (at most once a day, in the background), counts a
    /// recall when any chunk comes from the archive, and starts promoting
    /// the object back to hot when so configured.
    pub(crate) fn after_read(&self, object_id: i64, chunks: &[ChunkLoc]) {
        let inner = &self.inner;
        if inner.reads.should_touch(object_id) {
            inner
                .reads
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(object_id);
            inner.reads.wake.notify_one();
        }
        if !chunks.iter().any(|c| c.tier == Tier::Archive) {
            return;
        }
        inner.metrics.archive_recalls.inc();
        let promote = inner.archive.as_ref().is_some_and(|a| a.promote_on_read);
        if promote && inner.reads.start_promotion(object_id) {
            let engine = self.clone();
            tokio::spawn(async move {
                match engine.promote_object(object_id).await {
                    Ok(n) => info!(
                        object_id,
                        chunks = n,
                        "promoted to the hot tier after a read"
                    ),
                    Err(e) => warn!(object_id, error = %e, "promotion to the hot tier failed"),
                }
                engine.inner.reads.end_promotion(object_id);
            });
        }
    }

    /// Moves an object's archived chunks back to the hot tier (re-encoded
    /// at the hot zstd level) and clears its archived mark; returns how
    /// many chunks moved. Safe beside GC and tier moves: each relocation
    /// applies only to chunks still where they were read from.
    pub async fn promote_object(&self, object_id: i64) -> EngineResult<u64> {
        let _guard = self.inner.inflight.begin();
        let chunks = self
            .inner
            .catalog
            .chunks_of_objects_on(&[object_id], Tier::Archive)
            .await?;
        let moved = self.move_chunks(chunks, Tier::Hot, &mut ()).await?;
        self.inner.catalog.unmark_archived(object_id).await?;
        self.inner.metrics.archive_promotions.inc();
        Ok(moved.chunks)
    }
}
