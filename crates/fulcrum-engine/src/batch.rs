//! Stage batches: bodies staged to be committed together (the instances
//! of one STOW-RS request). Without a batch, a body's new chunks too few
//! for a pack of their own wait in memory and are written, as one pack with
//! its neighbours', by the commit, while the request waits. In a batch they
//! are appended to a shared pack as each body's ingest ends, so the pack
//! data is written while later bodies are still being read and hashed, and
//! the commit only finishes the pack (trailer, fsync or last upload) before
//! its catalog transaction. Small tails still go with the commit. The pack
//! becomes visible only through the commits of its bodies: bodies dropped
//! instead leave their chunks as garbage for GC, and a pack no commit named
//! is an orphan GC deletes.

use std::sync::Arc;

use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::{PackBuilder, PackStream};
use tokio::sync::Mutex;

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::ingest::new_chunk;
use crate::persist::same_failure;

/// Tails at least this big go to the batch's pack; smaller ones (a small
/// instance's few KiB) ride with the commit as without a batch, where one
/// write packs the tails of every request committing at the time instead
/// of one write per body.
pub(crate) const BATCH_MIN: usize = 64 * 1024;

/// Bodies staged for one commit (pass it to [`crate::Engine::stage`]);
/// cheap to clone (clones share the batch).
#[derive(Clone, Default)]
pub struct StageBatch {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for StageBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageBatch")
    }
}

#[derive(Default)]
struct State {
    /// The pack being appended to.
    open: Option<PackStream>,
    /// Full packs being finished in the background.
    finishing: Vec<crate::ingest::Finishing>,
    /// Set by the first commit: the packs, or why they could not be written.
    sealed: Option<EngineResult<Vec<NewPack>>>,
    /// A write failed: every later body and the commit fail the same way.
    failed: Option<EngineError>,
}

/// What became of a tail handed to a batch.
pub(crate) enum Pushed {
    /// Written: the chunks' locations.
    Written(Vec<NewChunk>),
    /// The batch was already sealed by a commit: the tail is given back.
    Sealed(PackBuilder),
}

impl StageBatch {
    /// Appends `tail` to the batch's open pack (starting one when needed,
    /// and finishing it in the background once it reaches the pack size).
    pub(crate) async fn push(&self, inner: &Inner, tail: PackBuilder) -> EngineResult<Pushed> {
        let mut st = self.state.lock().await;
        if st.sealed.is_some() {
            return Ok(Pushed::Sealed(tail));
        }
        if let Some(e) = &st.failed {
            return Err(same_failure(e));
        }
        let res = async {
            if st.open.is_none() {
                st.open = Some(PackStream::start(&inner.backend, PackBuilder::new()).await?);
            }
            let open = st.open.as_mut().expect("opened above");
            let id = open.id().clone();
            let entries = open.append(tail).await?;
            if open.len() >= inner.cfg.pack_target as u64 {
                if let Some(full) = st.open.take() {
                    st.finishing.push(tokio::spawn(full.finish()));
                }
            }
            Ok::<_, EngineError>(entries.iter().map(|e| new_chunk(&id, e)).collect())
        }
        .await;
        match res {
            Ok(chunks) => Ok(Pushed::Written(chunks)),
            Err(e) => {
                st.open = None; // dropped unclosed: nothing becomes visible
                let out = same_failure(&e);
                st.failed = Some(e);
                Err(out)
            }
        }
    }

    /// Finishes the batch's packs durably (once; later calls get the same
    /// answer) and returns their rows. Bodies that end after this keep
    /// their tails for the committer.
    pub(crate) async fn seal(&self, inner: &Inner) -> EngineResult<Vec<NewPack>> {
        let mut st = self.state.lock().await;
        if st.sealed.is_none() {
            let res = match st.failed.take() {
                Some(e) => Err(e),
                None => finish_all(inner, &mut st).await,
            };
            st.sealed = Some(res);
        }
        match st.sealed.as_ref().expect("set above") {
            Ok(packs) => Ok(packs.clone()),
            Err(e) => Err(same_failure(e)),
        }
    }
}

async fn finish_all(inner: &Inner, st: &mut State) -> EngineResult<Vec<NewPack>> {
    let mut handles = std::mem::take(&mut st.finishing);
    if let Some(open) = st.open.take() {
        handles.push(tokio::spawn(open.finish()));
    }
    let mut packs = Vec::with_capacity(handles.len());
    let mut first_err = None;
    // Every finish is awaited, even after a failure, so none is left running.
    for h in handles {
        match inner.finished_pack(h).await {
            Ok((pack, _)) => packs.push(pack),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(packs),
    }
}
