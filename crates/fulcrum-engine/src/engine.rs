//! The `Engine`: one struct wiring backend, catalog, codec, group
//! committer, in-flight registry and metrics together.

use std::sync::Arc;

use fulcrum_catalog::{BucketRow, Catalog, CatalogStats, TierStats};
use fulcrum_store::{Backend, BackendConfig, Codec, MasterKey};
use tokio::sync::mpsc;

use crate::cache::ReadCache;
use crate::committer::{self, CommitJob};
use crate::error::{EngineError, EngineResult};
use crate::inflight::Inflight;
use crate::metrics::Metrics;
use crate::persist::{self, PersistJob};
use crate::tier::{ArchiveConfig, ArchiveTier, ReadTracker};

/// zstd level of the hot tier: level 1 compresses ~370 MB/s per core on CT
/// pixel data taken as bytes (level 3: ~190) for a ratio 10 % lower;
/// colder tiers recompress harder.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// zstd level of native 16/32-bit pixel data on the hot tier, compressed as
/// byte planes: zstd's fast level -1 stores CT in ~39 % of its size (level
/// 1: ~33 %) at twice the speed both ways, which the hot tier's ingest and
/// retrieve rates need; the archive tier recompresses it harder.
pub const DEFAULT_PIXEL_ZSTD_LEVEL: i32 = -1;

/// Largest object (or part) accepted unless configured otherwise: 5 TiB,
/// as S3.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// Settings of the engine (the binary fills them from config and flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub backend: BackendConfig,
    pub catalog_url: String,
    pub encryption_key: Option<MasterKey>,
    pub zstd_level: i32,
    /// zstd level of native multi-byte pixel data (byte planes).
    pub pixel_zstd_level: i32,
    /// Packs are sealed and written once they hold this many bytes.
    pub pack_target: usize,
    /// Largest object (or part) body accepted, in bytes.
    pub max_object_size: u64,
    /// Identifies this node in the catalog's heartbeat table.
    pub node_id: String,
    /// Retention policies applied to new objects (see `retention`).
    pub retention: Vec<crate::retention::RetentionRule>,
    /// The archive tier lifecycle rules move cold data to (none: hot only).
    pub archive: Option<ArchiveConfig>,
    /// Bytes of decoded chunks kept in memory for reads (0: none; see
    /// `cache`).
    pub read_cache_bytes: u64,
}

impl EngineConfig {
    pub fn new(backend: BackendConfig, catalog_url: String) -> Self {
        Self {
            backend,
            catalog_url,
            encryption_key: None,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            pixel_zstd_level: DEFAULT_PIXEL_ZSTD_LEVEL,
            pack_target: 32 * 1024 * 1024,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            node_id: format!("node-{:016x}", rand::random::<u64>()),
            retention: Vec::new(),
            archive: None,
            read_cache_bytes: crate::cache::DEFAULT_READ_CACHE_BYTES,
        }
    }

    /// The embedded layout under one directory: packs in `store/`, the
    /// SQLite catalog in `catalog.db` (what `fulcrum serve` uses by default).
    pub fn local(dir: &std::path::Path) -> Self {
        Self::new(
            BackendConfig::Fs {
                root: dir.join("store"),
            },
            format!("sqlite://{}", dir.join("catalog.db").display()),
        )
    }
}

pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub backend: Backend,
    pub catalog: Catalog,
    pub codec: Codec,
    pub inflight: Inflight,
    pub metrics: Metrics,
    pub commits: mpsc::Sender<CommitJob>,
    pub persists: mpsc::Sender<PersistJob>,
    pub buckets: BucketCache,
    pub archive: Option<ArchiveTier>,
    pub reads: ReadTracker,
    /// Chunk-decoding jobs of reads running at once: one per core (see
    /// `read::DECODE_JOB_BYTES`).
    pub decoders: tokio::sync::Semaphore,
    /// Decoded chunks kept for reads (None: off).
    pub cache: Option<ReadCache>,
    /// Whether catalog and pack store were found to be one platform's.
    pub identity: crate::identity::Identity,
}

/// CPU cores this process may use (2 when unknown): how many CPU-bound
/// jobs (decoding, re-encoding) run side by side.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Bucket rows by (tenant, name), each trusted for a few seconds.
#[derive(Default)]
pub(crate) struct BucketCache(
    std::sync::Mutex<std::collections::HashMap<(String, String), (BucketRow, std::time::Instant)>>,
);

impl BucketCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn get(&self, key: &(String, String)) -> Option<BucketRow> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(r, _)| r.clone())
    }

    pub fn put(&self, key: (String, String), row: BucketRow) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(key, (row, std::time::Instant::now()));
    }

    pub fn forget(&self, key: &(String, String)) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl Inner {
    /// Reads `range` of a pack on `tier`'s backend (archive reads count as
    /// recalls); a pack shorter than asked is damage.
    pub(crate) async fn read_pack_range(
        &self,
        pack: &str,
        tier: fulcrum_types::Tier,
        range: std::ops::Range<u64>,
    ) -> EngineResult<bytes::Bytes> {
        Ok(self.read_pack_span(pack, tier, range).await?.to_bytes())
    }

    /// Like `read_pack_range`, keeping the backend's pieces (see `Span`).
    pub(crate) async fn read_pack_span(
        &self,
        pack: &str,
        tier: fulcrum_types::Tier,
        range: std::ops::Range<u64>,
    ) -> EngineResult<fulcrum_store::Span> {
        let pid = fulcrum_types::PackId::parse(pack)
            .map_err(|e| EngineError::Corrupt(format!("pack id {pack:?}: {e}")))?;
        let len = range.end - range.start;
        let data = self
            .backend_for(tier)?
            .read_span(&fulcrum_store::pack_path(&pid), range)
            .await?;
        if tier == fulcrum_types::Tier::Archive {
            self.metrics
                .archive_recalled_bytes
                .inc_by(data.len() as u64);
        }
        if data.len() as u64 != len {
            return Err(EngineError::Corrupt(format!(
                "pack {pack} is shorter than the catalog says"
            )));
        }
        Ok(data)
    }
}

/// The storage engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// Totals with the derived ratios, for `fulcrum stats` and `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    #[serde(flatten)]
    pub catalog: CatalogStats,
    /// Bytes of the pack files, as the backend holds them.
    pub physical_bytes: i64,
    /// Logical bytes per unique chunk byte (2.0: everything stored twice).
    pub dedup_ratio: f64,
    /// Unique chunk bytes per stored byte (2.0: halved by compression).
    pub compression_ratio: f64,
    /// Logical bytes per physical byte.
    pub overall_ratio: f64,
    /// Packs and chunk bytes per tier (hot, archive).
    pub tiers: Vec<TierStats>,
}

/// How often a serving node records its heartbeat (see `heartbeat`).
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

const META_ENCRYPTION: &str = "encryption_key_check";

impl Engine {
    /// Opens backend and catalog, checks the encryption key against the
    /// one the data was written with, and starts the group persister and
    /// committer.
    pub async fn open(cfg: EngineConfig) -> EngineResult<Self> {
        let backend = Backend::open(&cfg.backend)?;
        let catalog = Catalog::open(&cfg.catalog_url).await?;
        let check = cfg
            .encryption_key
            .as_ref()
            .map(|k| k.check_value())
            .unwrap_or_else(|| "none".to_string());
        let stored = catalog.init_meta(META_ENCRYPTION, &check).await?;
        if stored != check {
            return Err(EngineError::KeyMismatch(match (stored.as_str(), cfg.encryption_key.is_some()) {
                ("none", _) => "this data dir was created without encryption; unset FULCRUM_ENCRYPTION_KEY / encryption_key_file".into(),
                (_, false) => "this data dir is encrypted; set FULCRUM_ENCRYPTION_KEY or encryption_key_file to its key".into(),
                _ => "the configured encryption key is not the one this data dir was created with".into(),
            }));
        }
        let codec = Codec::new(cfg.encryption_key.as_ref(), cfg.zstd_level)
            .with_plane_level(cfg.pixel_zstd_level);
        let archive = ArchiveTier::open(cfg.archive.as_ref(), cfg.encryption_key.as_ref())?;
        let (tx, rx) = mpsc::channel(1024);
        let (ptx, prx) = mpsc::channel(1024);
        let cache = ReadCache::new(cfg.read_cache_bytes);
        let inner = Arc::new(Inner {
            cfg,
            backend,
            catalog,
            codec,
            inflight: Inflight::default(),
            metrics: Metrics::default(),
            commits: tx,
            persists: ptx,
            buckets: BucketCache::default(),
            archive,
            reads: ReadTracker::default(),
            decoders: tokio::sync::Semaphore::new(cores()),
            cache,
            identity: Default::default(),
        });
        tokio::spawn(committer::run(Arc::downgrade(&inner), rx));
        tokio::spawn(persist::run(Arc::downgrade(&inner), prx));
        tokio::spawn(crate::tier::record_reads(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Bytes the read cache holds and its bound (None: caching off).
    pub fn read_cache_usage(&self) -> Option<(u64, u64)> {
        self.inner.cache.as_ref().map(ReadCache::usage)
    }

    /// The backend holding the hot packs.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The chunk codec (decodes and verifies stored chunks).
    pub fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    /// Reads `range` of pack `pack` on whichever tier the catalog says it
    /// lives.
    pub async fn read_pack_range(
        &self,
        pack: &str,
        range: std::ops::Range<u64>,
    ) -> EngineResult<bytes::Bytes> {
        let tier = self
            .inner
            .catalog
            .pack_tier(pack)
            .await?
            .unwrap_or_default();
        self.inner.read_pack_range(pack, tier, range).await
    }

    pub fn backend_name(&self) -> &str {
        self.inner.backend.name()
    }

    /// Records this node's liveness and oldest in-flight write (call every
    /// few seconds while serving).
    pub async fn heartbeat(&self) -> EngineResult<()> {
        let oldest = self.inner.inflight.oldest();
        Ok(self
            .inner
            .catalog
            .heartbeat(&self.inner.cfg.node_id, oldest)
            .await?)
    }

    /// Removes this node from the heartbeat table (clean shutdown).
    pub async fn leave(&self) -> EngineResult<()> {
        Ok(self
            .inner
            .catalog
            .remove_node(&self.inner.cfg.node_id)
            .await?)
    }

    pub async fn stats(&self) -> EngineResult<Stats> {
        let c = self.inner.catalog.stats().await?;
        let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 1.0 };
        Ok(Stats {
            physical_bytes: c.pack_bytes,
            dedup_ratio: ratio(c.logical_bytes, c.unique_bytes),
            compression_ratio: ratio(c.unique_bytes, c.stored_bytes),
            overall_ratio: ratio(c.logical_bytes, c.pack_bytes),
            catalog: c,
            tiers: self.inner.catalog.tier_stats().await?,
        })
    }

    /// Closes the catalog pool (after the servers stopped).
    pub async fn close(&self) {
        self.inner.catalog.close().await;
    }
}
