//! Ingest: streams a body through the chunker, hashes each chunk, skips
//! chunks the catalog (or this body) already has, encodes and packs the
//! rest. Full packs are written at once; the small tail goes to the group
//! committer, which shares one pack write among many concurrent bodies.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::{pack_path, ChunkParams, Chunker, EncodedChunk, PackBuilder, PackEntry};
use fulcrum_types::{ChunkId, PackId};
use futures::TryStreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncRead;

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::inflight::InflightGuard;

/// A body turned into chunks, not yet visible to anyone.
pub(crate) struct Ingested {
    pub size: u64,
    pub md5: [u8; 16],
    pub chunks: Vec<ChunkId>,
    pub packs: Vec<NewPack>,
    pub new_chunks: Vec<NewChunk>,
    /// New chunks not yet in a written pack.
    pub tail: PackBuilder,
    /// Keeps GC from collecting chunks this write relies on until commit.
    pub guard: InflightGuard,
}

pub(crate) fn new_chunk(pack: &PackId, e: &PackEntry) -> NewChunk {
    NewChunk {
        id: e.id,
        pack_id: pack.as_str().to_string(),
        offset: e.offset as i64,
        stored_len: e.stored_len as i64,
        raw_len: e.raw_len as i64,
        flags: e.flags as i64,
    }
}

impl Inner {
    /// Seals `builder` and writes it durably; returns its id, row and entries.
    pub(crate) async fn write_pack(
        &self,
        builder: PackBuilder,
    ) -> EngineResult<(PackId, NewPack, Vec<PackEntry>)> {
        let id = PackId::generate();
        let (parts, entries) = builder.seal();
        let size = parts.iter().map(|p| p.len() as i64).sum();
        self.backend.write(&pack_path(&id), parts).await?;
        self.metrics.packs_written.inc();
        let row = NewPack {
            id: id.as_str().to_string(),
            size,
        };
        Ok((id, row, entries))
    }

    /// Hashes a chunk and, unless a copy is already stored, encodes it;
    /// runs on the blocking pool so several chunks of one body are
    /// processed in parallel while the next ones are read.
    async fn prepare(&self, chunk: Bytes) -> EngineResult<Prepared> {
        let codec = self.codec.clone();
        let (id, chunk) = tokio::task::spawn_blocking(move || (codec.id_of(&chunk), chunk))
            .await
            .map_err(join_err)?;
        if !self.catalog.find_chunks(&[id]).await?.is_empty() {
            return Ok(Prepared::Known(id, chunk.len()));
        }
        let codec = self.codec.clone();
        let enc = tokio::task::spawn_blocking(move || codec.encode(id, &chunk))
            .await
            .map_err(join_err)?;
        Ok(Prepared::New(enc))
    }

    /// Seals a full pack and starts writing it in the background, so the
    /// disk or network works while the next chunks are hashed.
    fn spawn_pack_write(&self, builder: PackBuilder) -> PendingPack {
        let id = PackId::generate();
        let (parts, entries) = builder.seal();
        let size = parts.iter().map(|p| p.len() as i64).sum();
        let backend = self.backend.clone();
        let path = pack_path(&id);
        let write = tokio::spawn(async move { backend.write(&path, parts).await });
        PendingPack {
            id,
            size,
            entries,
            write,
        }
    }

    async fn finish_pack_write(
        &self,
        p: PendingPack,
        packs: &mut Vec<NewPack>,
        rows: &mut Vec<NewChunk>,
    ) -> EngineResult<()> {
        p.write.await.map_err(join_err)??;
        self.metrics.packs_written.inc();
        rows.extend(p.entries.iter().map(|e| new_chunk(&p.id, e)));
        packs.push(NewPack {
            id: p.id.as_str().to_string(),
            size: p.size,
        });
        Ok(())
    }

    /// Chunks and stores a body. `expected` is its declared length, if any.
    ///
    /// Stage 1 (in order): read and cut; MD5 on its own thread. Stage 2
    /// (parallel): hash, dedup lookup, compress, encrypt. Stage 3 (in
    /// order): pack, with full packs written in the background.
    pub(crate) async fn ingest<R: AsyncRead + Unpin + Send>(
        &self,
        body: R,
        expected: Option<u64>,
        params: ChunkParams,
    ) -> EngineResult<Ingested> {
        let guard = self.inflight.begin();
        let max = self.cfg.max_object_size;
        if expected.is_some_and(|n| n > max) {
            return Err(EngineError::TooLarge { max });
        }
        let (md5_tx, mut md5_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let md5_task = tokio::task::spawn_blocking(move || {
            let mut h = Md5::new();
            while let Some(b) = md5_rx.blocking_recv() {
                h.update(&b);
            }
            <[u8; 16]>::from(h.finalize())
        });
        let chunk_stream = futures::stream::try_unfold(
            (Chunker::new(body, params), md5_tx),
            move |(mut chunker, md5_tx)| async move {
                match chunker.next_chunk().await {
                    Ok(Some(_)) if chunker.bytes_read() > max => Err(EngineError::TooLarge { max }),
                    Ok(Some(c)) => {
                        md5_tx
                            .send(c.clone())
                            .await
                            .map_err(|_| EngineError::ShuttingDown)?;
                        Ok(Some((c, (chunker, md5_tx))))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(match expected {
                        Some(expected) => EngineError::IncompleteBody {
                            expected,
                            got: chunker.bytes_read(),
                        },
                        None => EngineError::Store(fulcrum_store::StoreError::Source(e)),
                    }),
                }
            },
        );
        let mut prepared = std::pin::pin!(chunk_stream
            .map_ok(|c| {
                self.metrics.bytes_in.inc_by(c.len() as u64);
                self.prepare(c)
            })
            .try_buffered(PARALLEL_CHUNKS));
        let mut size = 0u64;
        let mut chunks = Vec::new();
        let mut seen: HashSet<ChunkId> = HashSet::new();
        let mut packs = Vec::new();
        let mut new_chunks = Vec::new();
        // Size packs for the body when its length is known, so they never
        // grow by reallocation.
        let pack_capacity =
            expected.map_or(0, |n| n as usize).min(self.cfg.pack_target) + (1 << 20);
        let mut builder = PackBuilder::with_capacity(pack_capacity);
        let mut writing: VecDeque<PendingPack> = VecDeque::new();
        while let Some(item) = prepared.try_next().await? {
            let enc = match item {
                Prepared::Known(id, len) => {
                    size += len as u64;
                    chunks.push(id);
                    seen.insert(id);
                    self.metrics.chunks_deduplicated.inc();
                    continue;
                }
                Prepared::New(enc) => enc,
            };
            size += enc.raw_len as u64;
            chunks.push(enc.id);
            if !seen.insert(enc.id) {
                self.metrics.chunks_deduplicated.inc();
                continue;
            }
            self.metrics.chunks_new.inc();
            builder.push(&enc);
            if builder.len() >= self.cfg.pack_target {
                if writing.len() >= MAX_PACK_WRITES {
                    if let Some(p) = writing.pop_front() {
                        self.finish_pack_write(p, &mut packs, &mut new_chunks)
                            .await?;
                    }
                }
                let full =
                    std::mem::replace(&mut builder, PackBuilder::with_capacity(pack_capacity));
                writing.push_back(self.spawn_pack_write(full));
            }
        }
        // A big tail gets its own pack now; only small tails are worth
        // merging (and copying) in the group committer.
        if builder.len() >= self.cfg.pack_target / 4 {
            writing.push_back(self.spawn_pack_write(std::mem::take(&mut builder)));
        }
        for p in writing {
            self.finish_pack_write(p, &mut packs, &mut new_chunks)
                .await?;
        }
        let md5 = md5_task.await.map_err(join_err)?;
        if let Some(expected) = expected {
            if size != expected {
                return Err(EngineError::IncompleteBody {
                    expected,
                    got: size,
                });
            }
        }
        Ok(Ingested {
            size,
            md5,
            chunks,
            packs,
            new_chunks,
            tail: builder,
            guard,
        })
    }
}

/// Full packs of one body being written at once.
const MAX_PACK_WRITES: usize = 2;

struct PendingPack {
    id: PackId,
    size: i64,
    entries: Vec<PackEntry>,
    write: tokio::task::JoinHandle<fulcrum_store::StoreResult<()>>,
}

/// Chunks of one body processed at once (bounded memory: each is ≤ 4 MiB).
const PARALLEL_CHUNKS: usize = 4;

enum Prepared {
    Known(ChunkId, usize),
    New(EncodedChunk),
}

fn join_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Store(fulcrum_store::StoreError::Source(std::io::Error::other(e)))
}
