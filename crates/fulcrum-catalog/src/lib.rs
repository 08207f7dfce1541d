//! Fulcrum's catalog: every fact about stored data except the bytes —
//! tenants, buckets, objects and their chunk lists, where each chunk sits in
//! which pack (and so on which tier), lifecycle rules, multipart uploads,
//! node heartbeats. SQLite (WAL) embedded, PostgreSQL for clusters, chosen
//! by URL; one code path through sqlx's `Any` driver with per-database
//! migrations.

mod buckets;
mod commit;
mod db;
pub mod dicom;
mod error;
mod gc;
mod leases;
mod nodes;
mod objects;
pub mod retention;
pub mod snapshot;
mod stats;
mod tier;
mod uploads;

pub use buckets::BucketRow;
pub use commit::{
    CommitBatch, DeleteCondition, NewChunk, NewPack, ObjectWrite, PartWrite, Write, WriteCondition,
};
pub use db::{now_ms, Catalog, DbKind};
pub use error::{CatalogError, CatalogResult};
pub use gc::{GcCounts, PackUsage, Relocation};
pub use leases::LeaseHolder;
pub use objects::{ChunkLoc, ObjectRow, ObjectSummary};
pub use retention::{BucketLock, DefaultRetention, LockMode, LockRequest, ObjectLock, Retention};
pub use stats::CatalogStats;
pub use tier::{Candidate, Selection, TierStats};
pub use uploads::{Assembled, PartRow, UploadRow};

/// Marks SQL built at run time as safe: every dynamic statement here is
/// assembled from constants and numbered placeholders, never from input.
/// `$from,$from+1,…` : `n` numbered parameters for an `IN (…)` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn dynamic(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}
