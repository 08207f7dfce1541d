//! Group persist: one task collects the tails of bodies whose ingest just
//! ended (new chunks too few to stream a pack of their own, but at least
//! PERSIST_EARLY bytes), writes whatever queued while the previous write
//! ran as one pack (one fsync, or one confirmed S3 PUT), and hands each
//! body its pack row and chunk locations. The data is then durable but not
//! yet visible: the group committer makes it visible. Done here, at the
//! end of each ingest, the pack write of one body overlaps with the
//! hashing and compression of the next ones instead of waiting for the
//! commit (a STOW-RS request's instances are all committed at its end).
//! Smaller tails ride with the commit instead (`plan_tails` there), where
//! one pack and one transaction serve a whole batch of small writes.

use std::sync::Weak;

use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::PackBuilder;
use fulcrum_types::Tier;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::ingest::new_chunk;
use crate::tier::SealedPack;

/// Tails of at least this many bytes are persisted when their ingest ends;
/// smaller ones are packed by the committer.
pub(crate) const PERSIST_EARLY: usize = 256 * 1024;

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
    let (tails, dones): (Vec<PackBuilder>, Vec<_>) =
        jobs.into_iter().map(|j| (j.tail, j.done)).unzip();
    match pack_tails(inner, tails).await {
        Ok(persisted) => {
            for (p, done) in persisted.into_iter().zip(dones) {
                let _ = done.send(Ok(p));
            }
        }
        Err(e) => {
            for done in dones {
                let _ = done.send(Err(same_failure(&e)));
            }
        }
    }
}

/// Writes `tails` durably as one pack; returns where each went, in order.
pub(crate) async fn pack_tails(
    inner: &Inner,
    tails: Vec<PackBuilder>,
) -> EngineResult<Vec<Persisted>> {
    let (pack, persisted) = plan_tails(tails);
    inner.store_pack(Tier::Hot, pack).await?;
    Ok(persisted)
}

/// Lays `tails` out as one pack, not written yet: the pack, and where each
/// tail will be in it, in order.
pub(crate) fn plan_tails(tails: Vec<PackBuilder>) -> (SealedPack, Vec<Persisted>) {
    let mut shared = PackBuilder::with_capacity(tails.iter().map(|t| t.len()).sum());
    let entries: Vec<_> = tails.into_iter().map(|t| shared.append(t)).collect();
    let (pack, _) = SealedPack::seal(shared);
    let persisted = entries
        .into_iter()
        .map(|entries| Persisted {
            pack: pack.row.clone(),
            chunks: entries.iter().map(|e| new_chunk(&pack.id, e)).collect(),
        })
        .collect();
    (pack, persisted)
}

/// The error each write sharing a failed pack write gets.
pub(crate) fn same_failure(e: &EngineError) -> EngineError {
    match e {
        EngineError::NoSpace(m) => EngineError::NoSpace(m.clone()),
        EngineError::WrongStore(m) => EngineError::WrongStore(m.clone()),
        other => EngineError::PackWrite(other.to_string()),
    }
}
