//! Ingest: streams a body through the chunker, hashes each chunk, skips
//! chunks the catalog (or this body) already has, encodes and packs the
//! rest. Full packs are written at once; the small tail goes to the group
//! committer, which shares one pack write among many concurrent bodies.

use std::collections::HashSet;

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
        let (bytes, entries) = builder.seal();
        let size = bytes.len() as i64;
        self.backend.write(&pack_path(&id), bytes).await?;
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
            return Ok(Prepared::Known(id));
        }
        let codec = self.codec.clone();
        let enc = tokio::task::spawn_blocking(move || codec.encode(id, &chunk))
            .await
            .map_err(join_err)?;
        Ok(Prepared::New(enc))
    }

    /// Chunks and stores a body. `expected` is its declared length, if any.
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
        // Stage 1 (in order): read, cut, MD5. Stage 2 (parallel): hash,
        // dedup lookup, compress, encrypt. Stage 3 (in order): pack.
        let read_state = (Chunker::new(body, params), Md5::new(), false);
        let chunk_stream =
            futures::stream::try_unfold(read_state, |(mut chunker, mut md5, done)| async move {
                if done {
                    return Ok(None);
                }
                match chunker.next_chunk().await {
                    Ok(Some(c)) => {
                        if chunker.bytes_read() > max {
                            return Err(EngineError::TooLarge { max });
                        }
                        md5.update(&c);
                        Ok(Some((Step::Chunk(c), (chunker, md5, false))))
                    }
                    Ok(None) => {
                        let total = chunker.bytes_read();
                        let digest: [u8; 16] = md5.clone().finalize().into();
                        Ok(Some((Step::End(total, digest), (chunker, md5, true))))
                    }
                    Err(e) => Err(match expected {
                        Some(expected) => EngineError::IncompleteBody {
                            expected,
                            got: chunker.bytes_read(),
                        },
                        None => EngineError::Store(fulcrum_store::StoreError::Source(e)),
                    }),
                }
            });
        let mut prepared = std::pin::pin!(chunk_stream
            .map_ok(|step| async move {
                match step {
                    Step::Chunk(c) => {
                        self.metrics.bytes_in.inc_by(c.len() as u64);
                        self.prepare(c).await.map(Some)
                    }
                    Step::End(total, digest) => Ok(Some(Prepared::End(total, digest))),
                }
            })
            .try_buffered(PARALLEL_CHUNKS));
        let mut chunks = Vec::new();
        let mut seen: HashSet<ChunkId> = HashSet::new();
        let mut packs = Vec::new();
        let mut new_chunks = Vec::new();
        let mut builder = PackBuilder::new();
        let mut end = None;
        while let Some(item) = prepared.try_next().await? {
            let enc = match item {
                Some(Prepared::End(total, digest)) => {
                    end = Some((total, digest));
                    continue;
                }
                Some(Prepared::Known(id)) => {
                    chunks.push(id);
                    seen.insert(id);
                    self.metrics.chunks_deduplicated.inc();
                    continue;
                }
                Some(Prepared::New(enc)) => enc,
                None => continue,
            };
            chunks.push(enc.id);
            if !seen.insert(enc.id) {
                self.metrics.chunks_deduplicated.inc();
                continue;
            }
            self.metrics.chunks_new.inc();
            builder.push(&enc);
            if builder.len() >= self.cfg.pack_target {
                let full = std::mem::take(&mut builder);
                let (id, pack, entries) = self.write_pack(full).await?;
                packs.push(pack);
                new_chunks.extend(entries.iter().map(|e| new_chunk(&id, e)));
            }
        }
        let (size, md5) = end.ok_or(EngineError::ShuttingDown)?;
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

/// Chunks of one body processed at once (bounded memory: each is ≤ 4 MiB).
const PARALLEL_CHUNKS: usize = 4;

enum Step {
    Chunk(Bytes),
    End(u64, [u8; 16]),
}

enum Prepared {
    Known(ChunkId),
    New(EncodedChunk),
    End(u64, [u8; 16]),
}

fn join_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Store(fulcrum_store::StoreError::Source(std::io::Error::other(e)))
}
