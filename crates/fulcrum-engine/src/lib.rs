//! Fulcrum's object engine: the one path every stored byte takes, whatever
//! protocol brought it. Streams bodies through the chunker, deduplicates
//! against the catalog, packs new chunks, acknowledges only after the pack
//! is durable (group persist) and the catalog transaction committed (group
//! commit), reads
//! back with hash verification, and collects garbage safely while writes
//! go on;
//! moves cold data to an archive tier by lifecycle rules and recalls it
//! transparently.

mod batch;
mod cache;
mod committer;
mod engine;
mod error;
mod gc;
mod identity;
mod inflight;
mod ingest;
mod lease;
mod lifecycle;
mod metrics;
mod objects;
mod outcomes;
mod persist;
mod read;
mod repair;
pub mod retention;
mod tier;
mod tier_move;
mod verify;

pub use batch::StageBatch;
pub use cache::DEFAULT_READ_CACHE_BYTES;
pub use engine::{
    Engine, EngineConfig, Stats, DEFAULT_MAX_OBJECT_SIZE, DEFAULT_PIXEL_ZSTD_LEVEL,
    DEFAULT_ZSTD_LEVEL, HEARTBEAT_INTERVAL,
};
pub use error::{EngineError, EngineResult};
pub use gc::{GcOptions, GcReport};
pub use ingest::ContentDigest;
pub use lease::{Lease, MAINTENANCE_LEASE};
pub use lifecycle::{LifecycleRule, RulePlan, TierReport};
pub use metrics::{Gauge, Metrics};
pub use objects::{
    multipart_etag, part_range, BodyRegion, LateMetadata, ObjectInfo, PartSums, PutOptions, Staged,
    Stored, UploadInfo, CONTENT_META_PREFIX, PARTS_META, UPLOAD_ID_META,
};
pub use outcomes::{JobOutcome, JOBS};
pub use read::{ByteStream, TaggedStream};
pub use repair::ChunkCopy;
pub use tier::{ArchiveConfig, DEFAULT_ARCHIVE_ZSTD_LEVEL, READ_TOUCH_INTERVAL};
pub use tier_move::MoveStats;
pub use verify::{VerifyProgress, VerifyReport};

pub use fulcrum_catalog::{
    BucketLock, BucketRow, CatalogError, DefaultRetention, DeleteCondition, LockMode, LockRequest,
    ObjectLock, ObjectRow, ObjectSummary, PartRow, Retention, UploadRow, WriteCondition,
};
pub use fulcrum_store::{BackendConfig, ChunkParams, Layout, MasterKey};
pub use fulcrum_types::Tier;
pub use retention::RetentionRule;
