//! Group commit: one task collects finished writes from all requests,
//! writes their small tails as one pack (one fsync or one backend PUT;
//! larger tails were persisted already, see `persist`), commits all their
//! catalog rows in one transaction, then acknowledges them all. A batch is
//! whatever queued while the previous one committed, so a lone write is
//! never delayed by a timer.

use std::sync::Weak;
use std::time::Instant;

use fulcrum_catalog::{CommitBatch, NewChunk, NewPack, Write};
use fulcrum_store::PackBuilder;
use fulcrum_types::Tier;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::inflight::InflightGuard;
use crate::ingest::Ingested;
use crate::persist::{plan_tails, same_failure};

/// At most this many writes share one commit.
const MAX_BATCH: usize = 512;

pub(crate) struct CommitJob {
    pub write: Write,
    pub packs: Vec<NewPack>,
    pub chunks: Vec<NewChunk>,
    pub tail: PackBuilder,
    pub done: oneshot::Sender<EngineResult<()>>,
}

impl Inner {
    /// Hands a write to the committer and waits until it is durable and
    /// visible (or failed, leaving nothing visible).
    pub(crate) async fn commit(&self, mut ing: Ingested, write: Write) -> EngineResult<()> {
        if let Some(batch) = ing.batch.take() {
            // Every pack of the batch: rows shared by several writes are
            // inserted once.
            ing.packs.extend(batch.seal(self).await?);
        }
        let job = |done| CommitJob {
            write,
            packs: ing.packs,
            chunks: ing.new_chunks,
            tail: ing.tail,
            done,
        };
        self.submit(job, ing.guard).await
    }

    /// Commits a write that adds no new chunks (copy, multipart completion).
    pub(crate) async fn commit_rows(&self, write: Write, guard: InflightGuard) -> EngineResult<()> {
        let job = |done| CommitJob {
            write,
            packs: Vec::new(),
            chunks: Vec::new(),
            tail: PackBuilder::new(),
            done,
        };
        self.submit(job, guard).await
    }

    /// Queues a job and waits for its outcome; the write stays registered
    /// as in flight (protected from GC) until then.
    async fn submit(
        &self,
        job: impl FnOnce(oneshot::Sender<EngineResult<()>>) -> CommitJob,
        guard: InflightGuard,
    ) -> EngineResult<()> {
        let (done, rx) = oneshot::channel();
        self.commits
            .send(job(done))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let res = rx.await.map_err(|_| EngineError::ShuttingDown)?;
        drop(guard);
        res
    }
}

pub(crate) async fn run(inner: Weak<Inner>, mut rx: mpsc::Receiver<CommitJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        commit_batch(&inner, jobs).await;
    }
}

async fn commit_batch(inner: &Inner, mut jobs: Vec<CommitJob>) {
    let started = Instant::now();
    // Nothing is acknowledged into a pack store the catalog does not own.
    if let Err(e) = inner.identity.ensure(inner).await {
        for job in jobs {
            let _ = job.done.send(Err(same_failure(&e)));
        }
        return;
    }
    let n = jobs.len();
    // One pack for the small tails, written while the catalog statements
    // run on a local disk (the transaction commits once the pack is
    // durable), before them on a remote backend.
    let with_tail: Vec<usize> = (0..n).filter(|&i| !jobs[i].tail.is_empty()).collect();
    let mut tail_pack = None;
    if !with_tail.is_empty() {
        let tails = with_tail
            .iter()
            .map(|&i| std::mem::take(&mut jobs[i].tail))
            .collect();
        let (pack, persisted) = plan_tails(tails);
        for (i, p) in with_tail.into_iter().zip(persisted) {
            jobs[i].packs.push(p.pack);
            jobs[i].chunks.extend(p.chunks);
        }
        tail_pack = Some(pack);
    }
    let mut all = CommitBatch::default();
    for job in &jobs {
        all.packs.extend(job.packs.iter().cloned());
        all.chunks.extend(job.chunks.iter().cloned());
        all.writes.push(job.write.clone());
    }
    // Tails packed together share a pack row.
    all.packs.sort_by(|a, b| a.id.cmp(&b.id));
    all.packs.dedup_by(|a, b| a.id == b.id);
    let durable = async {
        match tail_pack {
            Some(pack) => inner.store_pack(Tier::Hot, pack).await,
            None => Ok(()),
        }
    };
    // A pack going over the network (an S3 PUT, retried for seconds when
    // the backend struggles) is written before the transaction begins, so
    // no lock is held over it: SQLite's write lock is database-wide, and
    // on PostgreSQL the batch's study rows stay locked until COMMIT.
    let committed = if inner.backend.is_local() {
        inner.catalog.commit_after(&all, durable).await
    } else {
        match durable.await {
            Ok(()) => inner.catalog.commit(&all).await.map(Ok),
            Err(e) => Ok(Err(e)),
        }
    };
    match committed {
        Ok(Ok(())) => {
            for job in jobs {
                let _ = job.done.send(Ok(()));
            }
        }
        Ok(Err(e)) => {
            // The tail pack could not be written: nothing was committed.
            for job in jobs {
                let _ = job.done.send(Err(same_failure(&e)));
            }
            return;
        }
        Err(e) if n > 1 => {
            // One bad write must not fail its neighbours: retry each alone
            // (the tail pack is durable by now).
            warn!(error = %e, writes = n, "group commit failed; committing writes one by one");
            for job in jobs {
                let b = CommitBatch {
                    packs: job.packs,
                    chunks: job.chunks,
                    writes: vec![job.write],
                };
                let _ = job
                    .done
                    .send(inner.catalog.commit(&b).await.map_err(EngineError::from));
            }
        }
        Err(e) => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.done.send(Err(e.into()));
            }
        }
    }
    inner
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    inner.metrics.commit_batch_writes.observe(n as f64);
}
