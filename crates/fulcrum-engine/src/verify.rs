//! `verify`: re-reads every pack, re-hashes every chunk the catalog lists,
//! and names every object that a damaged or missing chunk belongs to (in
//! one catalog query; parts of unfinished uploads are not named).

use std::collections::HashSet;

use fulcrum_store::pack_path;
use fulcrum_types::{ChunkId, PackId};

use crate::engine::Engine;
use crate::error::EngineResult;
use crate::lease::MAINTENANCE_LEASE;

/// Progress callbacks: bytes of packs checked so far, of the total.
pub trait VerifyProgress: Send {
    fn start(&mut self, total_bytes: u64);
    fn advance(&mut self, bytes: u64);
}

impl VerifyProgress for () {
    fn start(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub packs: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub bad_chunks: u64,
    /// `bucket/key` of every damaged object.
    pub damaged_objects: Vec<String>,
    /// Packs whose backend could not be reached (down, or not configured
    /// on this node): their chunks are neither verified nor counted as
    /// damaged.
    pub unchecked_packs: u64,
    /// One line per problem found (pack missing, chunk corrupt, …).
    pub problems: Vec<String>,
    /// Every damaged or missing chunk (what a repair needs).
    #[serde(skip)]
    pub bad_chunk_ids: Vec<ChunkId>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.bad_chunks == 0 && self.problems.is_empty()
    }
}

impl Engine {
    pub async fn verify(&self, progress: &mut dyn VerifyProgress) -> EngineResult<VerifyReport> {
        self.check_packs(progress, None).await
    }

    /// `verify` under the maintenance lease (no GC or tier move relocates
    /// chunks meanwhile), reading at most `rate` bytes per second so a
    /// background scrub leaves the disks to the users.
    pub async fn scrub(
        &self,
        rate: Option<u64>,
        progress: &mut dyn VerifyProgress,
    ) -> EngineResult<VerifyReport> {
        let lease = self.lease(MAINTENANCE_LEASE).await?;
        let out = self.check_packs(progress, rate).await;
        lease.release().await;
        out
    }

    async fn check_packs(
        &self,
        progress: &mut dyn VerifyProgress,
        rate: Option<u64>,
    ) -> EngineResult<VerifyReport> {
        let started = std::time::Instant::now();
        let inner = &self.inner;
        let cat = &inner.catalog;
        let mut report = VerifyReport::default();
        let packs = cat.pack_usage().await?;
        progress.start(
            packs
                .iter()
                .filter(|p| p.live_chunks > 0)
                .map(|p| p.size as u64)
                .sum(),
        );
        let mut bad: HashSet<ChunkId> = HashSet::new();
        for p in packs.iter().filter(|p| p.live_chunks > 0) {
            let chunks = cat.chunks_in_pack(&p.id).await?;
            report.packs += 1;
            // A pack that is gone or malformed is damage; a backend that
            // cannot be reached (down, or not configured here) is not: its
            // chunks are reported unchecked, never repaired from a backup
            // (which would pull an archive tier's data back to hot storage
            // over a short outage).
            let data = match (PackId::parse(&p.id), inner.backend_for(p.tier)) {
                (Ok(pid), Ok(backend)) => match backend.read(&pack_path(&pid)).await {
                    Ok(d) => Ok(d),
                    // A local disk that fails a read (EIO) is damage too.
                    Err(e) if e.is_not_found() || e.is_corruption() || backend.is_local() => {
                        Err((e.to_string(), true))
                    }
                    Err(e) => Err((e.to_string(), false)),
                },
                (Err(e), _) => Err((e.to_string(), true)),
                (_, Err(e)) => Err((e.to_string(), false)),
            };
            let data = match data {
                Ok(d) => d,
                Err((e, true)) => {
                    report.problems.push(format!("pack {}: {e}", p.id));
                    bad.extend(chunks.iter().map(|c| c.id));
                    progress.advance(p.size as u64);
                    continue;
                }
                Err((e, false)) => {
                    report.unchecked_packs += 1;
                    report.problems.push(format!(
                        "pack {} could not be read, its {} chunks are unchecked (not counted as damaged): {e}",
                        p.id,
                        chunks.len()
                    ));
                    progress.advance(p.size as u64);
                    continue;
                }
            };
            for c in &chunks {
                report.chunks += 1;
                let at = c.offset as usize;
                let ok = data
                    .get(at..at + c.stored_len as usize)
                    .ok_or_else(|| "chunk lies past the end of its pack".to_string())
                    .and_then(|stored| {
                        inner
                            .codec
                            .decode(c.id, stored, c.flags, c.raw_len)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = ok {
                    inner.metrics.corrupt_chunks.inc();
                    report
                        .problems
                        .push(format!("pack {} chunk {}: {e}", p.id, c.id));
                    bad.insert(c.id);
                }
            }
            report.bytes += data.len() as u64;
            progress.advance(p.size as u64);
            if let Some(rate) = rate.filter(|r| *r > 0) {
                let due = std::time::Duration::from_secs_f64(report.bytes as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        for (id, pack) in cat.chunks_without_pack().await? {
            report
                .problems
                .push(format!("chunk {id}: its pack {pack} is not in the catalog"));
            bad.insert(id);
        }
        report.bad_chunks = bad.len() as u64;
        let bad: Vec<ChunkId> = bad.into_iter().collect();
        report.damaged_objects = cat.objects_referencing(&bad).await?;
        report.bad_chunk_ids = bad;
        Ok(report)
    }
}
