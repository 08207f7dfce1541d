//! Group persist: one task collects the small tails of bodies whose
//! ingest just ended (the new chunks too few to stream a pack of their
//! own), writes whatever queued while the previous write ran as one pack
//! (one fsync, or one confirmed S3 PUT), and hands each body its pack row
//! and chunk locations. The data is then durable but not yet visible: the
//! group committer makes it visible. Done here, at the end of each ingest,
//! the pack write of one body overlaps with the hashing and compression
//! of the next ones instead of waiting for the commit (a STOW-RS request's
//! instances are all committed at its end).

use std::sync::Weak;

use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::PackBuilder;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::ingest::new_chunk;

/// A pack stops taking more tails past this many bytes.
const MAX_PACK_BYTES: usize = 32 * 1024 * 1024;

/// Where one body's tail was written.
pub(crate) struct Persisted {
    pub pack: NewPack,
    pub chunks: Vec<NewChunk>,
}

pub(crate) struct PersistJob {
    tail: PackBuilder,
    done: oneshot::Sender<EngineResult<Persisted>>,
}

impl Inner {
    /// Writes `tail` durably, in one pack with the tails of other bodies
    /// ending at about the same time.
    pub(crate) async fn persist(&self, tail: PackBuilder) -> EngineResult<Persisted> {
        let (done, rx) = oneshot::channel();
        self.persists
            .send(PersistJob { tail, done })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }
}

pub(crate) async fn run(inner: Weak<Inner>, mut rx: mpsc::Receiver<PersistJob>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.tail.len();
        let mut jobs = vec![first];
        while bytes < MAX_PACK_BYTES {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.tail.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        write_batch(&inner, jobs).await;
    }
}

async fn write_batch(inner: &Inner, jobs: Vec<PersistJob>) {
    let mut shared = PackBuilder::with_capacity(jobs.iter().map(|j| j.tail.len()).sum());
    let mut parts = Vec::with_capacity(jobs.len());
    for job in jobs {
        let entries = shared.append(job.tail);
        parts.push((entries, job.done));
    }
    match inner.write_pack(shared).await {
        Ok((id, pack, _)) => {
            for (entries, done) in parts {
                let chunks = entries.iter().map(|e| new_chunk(&id, e)).collect();
                let _ = done.send(Ok(Persisted {
                    pack: pack.clone(),
                    chunks,
                }));
            }
        }
        Err(e) => {
            for (_, done) in parts {
                let _ = done.send(Err(match &e {
                    EngineError::NoSpace(m) => EngineError::NoSpace(m.clone()),
                    other => EngineError::PackWrite(other.to_string()),
                }));
            }
        }
    }
}
