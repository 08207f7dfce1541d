//! Repair: damaged or missing chunks replaced by good copies found
//! elsewhere (a backup repository, another tier). A copy is verified
//! against the chunk's id before it is written; the copies go into a new
//! pack, and the catalog points the chunks at it in one transaction. The
//! damaged bytes stay where they were, unreferenced, until GC reclaims
//! them.

use fulcrum_store::PackBuilder;
use fulcrum_types::ChunkId;
use tracing::warn;

use crate::engine::Engine;
use crate::error::EngineResult;
use crate::lease::MAINTENANCE_LEASE;

/// A copy of one chunk in stored form, as another store keeps it.
#[derive(Debug, Clone)]
pub struct ChunkCopy {
    pub id: ChunkId,
    pub stored: Vec<u8>,
    pub flags: u8,
    pub raw_len: u32,
}

impl Engine {
    /// Writes the copies that verify and points their chunks at them;
    /// returns the ids repaired (a copy that fails verification is skipped
    /// and logged).
    pub async fn repair_chunks(&self, copies: Vec<ChunkCopy>) -> EngineResult<Vec<ChunkId>> {
        let lease = self.lease(MAINTENANCE_LEASE).await?;
        let out = self.repair_leased(copies).await;
        lease.release().await;
        out
    }

    async fn repair_leased(&self, copies: Vec<ChunkCopy>) -> EngineResult<Vec<ChunkId>> {
        let inner = &self.inner;
        let mut repaired = Vec::new();
        for batch in copies.chunks(256) {
            let mut builder = PackBuilder::new();
            let mut rows = Vec::new();
            for c in batch {
                if let Err(e) = inner.codec.decode(c.id, &c.stored, c.flags, c.raw_len) {
                    warn!(chunk = %c.id, error = %e, "repair copy fails verification; skipped");
                    continue;
                }
                let e = builder.push_stored(c.id, &c.stored, c.raw_len, c.flags);
                rows.push((c.id, e.offset as i64, e.stored_len as i64, e.flags as i64));
            }
            if builder.is_empty() {
                continue;
            }
            let (pid, row, _) = inner.write_pack(builder).await?;
            inner
                .catalog
                .repoint_chunks((pid.as_str(), row.size), &rows)
                .await?;
            repaired.extend(rows.iter().map(|r| r.0));
        }
        Ok(repaired)
    }
}
