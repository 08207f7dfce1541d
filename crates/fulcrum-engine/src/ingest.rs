//! Ingest: streams a body through the chunker, hashes each chunk, skips
//! chunks the catalog (or this body) already has, encodes and packs the
//! rest. Full packs are written at once; the small tail goes to the group
//! committer, which shares one pack write among many concurrent bodies.

use std::collections::HashSet;

use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::{pack_path, ChunkParams, Chunker, PackBuilder, PackEntry};
use fulcrum_types::{ChunkId, PackId};
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

    /// Chunks and stores a body. `expected` is its declared length, if any.
    pub(crate) async fn ingest<R: AsyncRead + Unpin>(
        &self,
        body: R,
        expected: Option<u64>,
        params: ChunkParams,
    ) -> EngineResult<Ingested> {
        let guard = self.inflight.begin();
        let max = self.cfg.max_object_size;
        if let Some(n) = expected {
            if n > max {
                return Err(EngineError::TooLarge { max });
            }
        }
        let mut chunker = Chunker::new(body, params);
        let mut md5 = Md5::new();
        let mut chunks = Vec::new();
        let mut seen: HashSet<ChunkId> = HashSet::new();
        let mut packs = Vec::new();
        let mut new_chunks = Vec::new();
        let mut builder = PackBuilder::new();
        loop {
            let chunk = match chunker.next_chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(match expected {
                        Some(expected) => EngineError::IncompleteBody {
                            expected,
                            got: chunker.bytes_read(),
                        },
                        None => EngineError::Store(fulcrum_store::StoreError::Source(e)),
                    })
                }
            };
            if chunker.bytes_read() > max {
                return Err(EngineError::TooLarge { max });
            }
            self.metrics.bytes_in.inc_by(chunk.len() as u64);
            let codec = self.codec.clone();
            let (id, digest_state, encoded) = tokio::task::spawn_blocking(move || {
                let mut md5 = md5;
                md5.update(&chunk);
                let id = codec.id_of(&chunk);
                (id, md5, chunk)
            })
            .await
            .map_err(|e| {
                EngineError::Store(fulcrum_store::StoreError::Source(std::io::Error::other(e)))
            })?;
            md5 = digest_state;
            chunks.push(id);
            if !seen.insert(id) {
                self.metrics.chunks_deduplicated.inc();
                continue;
            }
            if !self.catalog.find_chunks(&[id]).await?.is_empty() {
                self.metrics.chunks_deduplicated.inc();
                continue;
            }
            let codec = self.codec.clone();
            let enc = tokio::task::spawn_blocking(move || codec.encode(id, &encoded))
                .await
                .map_err(|e| {
                    EngineError::Store(fulcrum_store::StoreError::Source(std::io::Error::other(e)))
                })?;
            self.metrics.chunks_new.inc();
            builder.push(&enc);
            if builder.len() >= self.cfg.pack_target {
                let full = std::mem::take(&mut builder);
                let (id, pack, entries) = self.write_pack(full).await?;
                packs.push(pack);
                new_chunks.extend(entries.iter().map(|e| new_chunk(&id, e)));
            }
        }
        let size = chunker.bytes_read();
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
            md5: md5.finalize().into(),
            chunks,
            packs,
            new_chunks,
            tail: builder,
            guard,
        })
    }
}
