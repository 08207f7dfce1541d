//! Garbage collection, safe while writes go on: condemn unreferenced
//! chunks, sweep those no in-flight write can still reference, repack
//! sparse and small packs, delete retired packs after a grace period (so
//! readers that looked up an old location finish), and delete orphan pack
//! files that no catalog row names (left by a crash or an aborted upload),
//! on every tier's backend.

use std::time::Duration;

use fulcrum_catalog::{now_ms, PackUsage};
use fulcrum_store::{pack_path, PackBuilder};
use fulcrum_types::{ChunkId, PackId, Tier};
use tracing::{info, warn};

use crate::engine::{Engine, HEARTBEAT_INTERVAL};
use crate::error::EngineResult;
use crate::lease::{Lease, MAINTENANCE_LEASE};

/// Unfinished temp files younger than this are left alone.
const STALE_TEMP: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Retired and orphan packs younger than this are kept.
    pub grace: Duration,
    /// Packs with less than this fraction of live bytes are repacked.
    pub repack_below: f64,
    /// Multipart uploads begun longer ago than this are aborted (a client
    /// killed mid-upload never completes nor aborts one), so their parts
    /// stop holding space; None keeps them.
    pub abort_uploads_after: Option<Duration>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(15 * 60),
            repack_below: 0.5,
            abort_uploads_after: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    /// Multipart uploads aborted as abandoned (see GcOptions).
    pub aborted_uploads: u64,
    pub condemned_chunks: u64,
    pub deleted_chunks: u64,
    pub revived_chunks: u64,
    pub repacked_packs: u64,
    pub moved_chunks: u64,
    /// Packs left without live chunks and marked for deletion after the
    /// grace period.
    pub retired_packs: u64,
    pub deleted_packs: u64,
    pub deleted_orphans: u64,
    /// Bytes of pack files deleted.
    pub freed_bytes: u64,
    /// Bytes of new packs written by repacking.
    pub written_bytes: u64,
}

impl Engine {
    /// Runs one collection under the maintenance lease (fails with `Busy`
    /// while another node or process runs GC, scrub, a backup or a tier
    /// move).
    pub async fn gc(&self, opts: &GcOptions) -> EngineResult<GcReport> {
        // Packs of another platform's store are not this catalog's to
        // collect.
        self.inner.identity.ensure(&self.inner).await?;
        let lease = self.lease(MAINTENANCE_LEASE).await?;
        let out = self.gc_leased(opts, &lease).await;
        lease.release().await;
        out
    }

    async fn gc_leased(&self, opts: &GcOptions, lease: &Lease) -> EngineResult<GcReport> {
        let inner = &self.inner;
        let cat = &inner.catalog;
        let mut aborted_uploads = match opts.abort_uploads_after {
            Some(age) => {
                cat.abort_uploads_before(now_ms() - age.as_millis() as i64)
                    .await?
            }
            None => 0,
        };
        // Buckets' AbortIncompleteMultipartUpload rules, sooner than that.
        for rule in self.lifecycle_rules(&[]).await? {
            let (Some(days), Some(bucket)) = (rule.abort_uploads_days, &rule.bucket) else {
                continue;
            };
            let Ok(b) = self.bucket(&rule.tenant, bucket).await else {
                continue;
            };
            let before = now_ms() - i64::from(days) * 24 * 3600 * 1000;
            aborted_uploads += cat.abort_uploads_in(b.id, &rule.prefix, before).await?;
        }
        let mut report = GcReport {
            aborted_uploads,
            condemned_chunks: cat.condemn_unreferenced().await?,
            ..Default::default()
        };
        // Wait until every live node has heartbeated since the condemnation:
        // its report then covers every write that could have seen a
        // condemned chunk as live. Our own writes count too.
        let condemned_by = now_ms();
        let deadline = std::time::Instant::now() + 3 * HEARTBEAT_INTERVAL;
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.heartbeat().await?;
        while cat.nodes_silent_since(condemned_by).await? > 0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let safe_before = cat.oldest_inflight(now_ms()).await?;
        lease.check()?;
        let swept = cat.sweep_condemned(safe_before).await?;
        report.deleted_chunks = swept.deleted_chunks;
        report.revived_chunks = swept.revived;

        // Repack sparse packs, and small packs when there are several,
        // each tier on its own: chunks never change tier here.
        let usage = cat.pack_usage().await?;
        for (tier, _) in inner.tier_backends() {
            let packs: Vec<&PackUsage> = usage.iter().filter(|p| p.tier == tier).collect();
            self.repack_tier(tier, &packs, opts, &mut report).await?;
        }

        // Delete retired packs past the grace period.
        lease.check()?;
        let grace_ms = opts.grace.as_millis() as i64;
        let now = now_ms();
        for p in cat.pack_usage().await? {
            match p.retired_at {
                Some(at) if at <= now - grace_ms && p.live_chunks == 0 => {
                    let Ok(backend) = inner.backend_for(p.tier) else {
                        warn!(pack = %p.id, tier = %p.tier, "retired pack left: its tier has no backend configured");
                        continue;
                    };
                    if let Ok(pid) = PackId::parse(&p.id) {
                        backend.delete(&pack_path(&pid)).await?;
                    }
                    cat.delete_pack_row(&p.id).await?;
                    report.deleted_packs += 1;
                    report.freed_bytes += p.size as u64;
                }
                _ => {}
            }
        }

        // Orphans: pack files no catalog row names, older than any write in
        // flight and than the grace period.
        let known = cat.pack_ids().await?;
        let orphan_before = safe_before.min(now - grace_ms);
        for (_, backend) in inner.tier_backends() {
            for e in backend.list("packs/").await? {
                let name = e.path.rsplit('/').next().unwrap_or_default();
                let Ok(pid) = PackId::parse(name) else {
                    continue;
                };
                if !known.contains(pid.as_str()) && (pid.created_ms() as i64) < orphan_before {
                    backend.delete(&e.path).await?;
                    report.deleted_orphans += 1;
                    report.freed_bytes += e.size;
                }
            }
            // Temp files of pack writes cut off by a crash: an hour is far
            // longer than any write in flight takes to finish.
            report.deleted_orphans += backend.clean_stale_temp(opts.grace.max(STALE_TEMP)).await?;
        }
        info!(?report, "garbage collection finished");
        Ok(report)
    }

    /// Repacks the sparse and small packs among `packs` (all on `tier`)
    /// into new packs on the same tier.
    async fn repack_tier(
        &self,
        tier: Tier,
        packs: &[&PackUsage],
        opts: &GcOptions,
        report: &mut GcReport,
    ) -> EngineResult<()> {
        let inner = &self.inner;
        let cat = &inner.catalog;
        let target = inner.cfg.pack_target as i64;
        let live: Vec<_> = packs.iter().filter(|p| p.retired_at.is_none()).collect();
        let small: Vec<_> = live
            .iter()
            .filter(|p| p.live_chunks > 0 && p.size < target / 4)
            .collect();
        let mut sources: Vec<String> = Vec::new();
        for p in &live {
            let sparse = (p.live_bytes as f64) < opts.repack_below * p.size as f64;
            if p.live_chunks == 0 || sparse || (small.len() > 1 && p.size < target / 4) {
                sources.push(p.id.clone());
            }
        }
        let backend = inner.backend_for(tier)?;
        let mut builder = PackBuilder::new();
        let mut moved: Vec<(ChunkId, String)> = Vec::new();
        let mut done_sources: Vec<String> = Vec::new();
        for src in &sources {
            let chunks = cat.chunks_in_pack(src).await?;
            if !chunks.is_empty() {
                let pid =
                    PackId::parse(src).map_err(|e| crate::EngineError::Corrupt(e.to_string()))?;
                let data = backend.read(&pack_path(&pid)).await?;
                for c in chunks {
                    let at = c.offset as usize;
                    let Some(stored) = data.get(at..at + c.stored_len as usize) else {
                        warn!(pack = %src, chunk = %c.id, "chunk lies past the end of its pack; left in place");
                        continue;
                    };
                    // Never copy damage into a new pack: verify first.
                    if let Err(e) = inner.codec.decode(c.id, stored, c.flags, c.raw_len) {
                        warn!(pack = %src, chunk = %c.id, error = %e, "damaged chunk left in place");
                        continue;
                    }
                    builder.push_stored(c.id, stored, c.raw_len, c.flags);
                    moved.push((c.id, src.clone()));
                }
            }
            done_sources.push(src.clone());
            report.repacked_packs += 1;
            if builder.len() >= inner.cfg.pack_target {
                let b = std::mem::take(&mut builder);
                self.flush_repack(tier, b, &mut moved, &mut done_sources, report)
                    .await?;
            }
        }
        self.flush_repack(tier, builder, &mut moved, &mut done_sources, report)
            .await
    }

    /// Writes the repacked chunks (if any), points them at the new pack and
    /// retires the emptied source packs.
    async fn flush_repack(
        &self,
        tier: Tier,
        builder: PackBuilder,
        moved: &mut Vec<(ChunkId, String)>,
        sources: &mut Vec<String>,
        report: &mut GcReport,
    ) -> EngineResult<()> {
        report.moved_chunks += moved.len() as u64;
        let (retired, written) = self
            .inner
            .write_relocated(tier, builder, moved, sources)
            .await?;
        report.retired_packs += retired;
        report.written_bytes += written;
        Ok(())
    }
}
