//! Ingest: streams a body through the chunker, hashes each chunk, skips
//! chunks the catalog (or this body) already has, encodes and packs the
//! rest. Full packs are written at once; the tail goes to the group
//! persister (or, when small, to the group committer), which shares one
//! pack write among many concurrent bodies.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use fulcrum_catalog::{NewChunk, NewPack};
use fulcrum_store::{
    ChunkParams, Chunker, EncodedChunk, Layout, PackBuilder, PackEntry, PackStream, StoreResult,
};
use fulcrum_types::{ChunkId, PackId};
use futures::TryStreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;

use crate::batch::{Pushed, StageBatch};
use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};
use crate::inflight::InflightGuard;

/// A body turned into chunks, not yet visible to anyone.
pub(crate) struct Ingested {
    pub size: u64,
    pub md5: [u8; 16],
    pub chunks: Vec<ChunkId>,
    /// The plaintext length of each of `chunks`.
    pub lens: Vec<u32>,
    pub packs: Vec<NewPack>,
    pub new_chunks: Vec<NewChunk>,
    /// New chunks not yet written: a small tail, packed with the commit.
    pub tail: PackBuilder,
    /// Keeps GC from collecting chunks this write relies on until commit.
    pub guard: InflightGuard,
    /// The batch whose shared pack holds some of the new chunks: sealed
    /// (made durable) before the commit.
    pub batch: Option<StageBatch>,
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
        self.write_pack_to(fulcrum_types::Tier::Hot, builder).await
    }

    /// Hashes a chunk and, unless a copy is already stored, encodes it;
    /// runs on the blocking pool so several chunks of one body are
    /// processed in parallel while the next ones are read.
    async fn prepare(&self, chunk: Bytes, layout: Layout) -> EngineResult<Prepared> {
        let codec = self.codec.clone();
        let (id, chunk) = cpu(chunk.len(), move || (codec.id_of(&chunk), chunk)).await?;
        if !self.catalog.find_chunks(&[id]).await?.is_empty() {
            return Ok(Prepared::Known(id, chunk.len()));
        }
        let codec = self.codec.clone();
        let enc = cpu(chunk.len(), move || codec.encode_as(id, chunk, layout)).await?;
        Ok(Prepared::New(enc))
    }

    /// Waits for a streamed pack to be finished (durable), counts it, and
    /// returns its row and where its chunks are.
    pub(crate) async fn finished_pack(
        &self,
        h: Finishing,
    ) -> EngineResult<(NewPack, Vec<NewChunk>)> {
        let (id, size, entries) = h.await.map_err(join_err)??;
        self.metrics.packs_written.inc();
        let pack = NewPack {
            id: id.as_str().to_string(),
            size: size as i64,
        };
        Ok((pack, entries.iter().map(|e| new_chunk(&id, e)).collect()))
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
        self.ingest_regions(
            vec![BodyRegion::new(body, params)],
            expected,
            ContentDigest::Md5,
            None,
        )
        .await
    }

    /// Like `ingest`, for a body made of regions read one after the other,
    /// each cut with its own parameters and never across a boundary (a
    /// DICOM header and its pixel data dedup independently). With a
    /// `batch`, the new chunks left at the end go to its shared pack.
    pub(crate) async fn ingest_regions(
        &self,
        regions: Vec<BodyRegion<'_>>,
        expected: Option<u64>,
        digest: ContentDigest,
        batch: Option<&StageBatch>,
    ) -> EngineResult<Ingested> {
        let guard = self.inflight.begin();
        let max = self.cfg.max_object_size;
        if expected.is_some_and(|n| n > max) {
            return Err(EngineError::TooLarge { max });
        }
        if let Some(Ok((free, keep))) = self.backend.space() {
            // New data stops short of the last bytes of a local disk (see
            // Backend::space); what is stored stays readable and deletable.
            let need = expected.unwrap_or(0).saturating_add(keep);
            if free < need {
                return Err(EngineError::NoSpace(format!(
                    "{free} bytes free on the data disk; new data keeps {keep} bytes free for deletes, gc and the catalog"
                )));
            }
        }
        // MD5 runs in order beside the other stages: an async task hands
        // each chunk to a short blocking job (never a long-lived blocking
        // thread, which could starve the pool under many uploads).
        let (md5_tx, mut md5_rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let md5_tx = (digest == ContentDigest::Md5).then_some(md5_tx);
        let md5_task = tokio::spawn(async move {
            let mut h = Md5::new();
            while let Some(b) = md5_rx.recv().await {
                h = cpu(b.len(), move || {
                    h.update(&b);
                    h
                })
                .await?;
            }
            Ok::<[u8; 16], EngineError>(h.finalize().into())
        });
        // Stage 1 runs as its own future beside stages 2-3 (joined below),
        // so reading and cutting go on while packs are written.
        let (chunk_tx, chunk_rx) =
            tokio::sync::mpsc::channel::<EngineResult<(Bytes, Layout)>>(PARALLEL_CHUNKS);
        let produce = async move {
            let mut before = 0u64;
            for region in regions {
                let mut chunker = Chunker::new(region.body, region.params);
                let go_on = produce_region(
                    &mut chunker,
                    region.layout,
                    &mut before,
                    max,
                    expected,
                    md5_tx.as_ref(),
                    &chunk_tx,
                )
                .await;
                if !go_on {
                    break;
                }
            }
        };
        let chunk_stream = futures::stream::unfold(chunk_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let consume = async {
            let mut prepared = std::pin::pin!(chunk_stream
                .map_ok(|(c, layout)| {
                    self.metrics.bytes_in.inc_by(c.len() as u64);
                    self.prepare(c, layout)
                })
                .try_buffered(PARALLEL_CHUNKS));
            // New chunks collect in memory; once a body has more than
            // STREAM_AFTER of them it streams them to its own packs instead, so
            // memory stays bounded whatever the body's size. Small bodies'
            // chunks go to the group committer, which packs many together.
            let mut memory = PackBuilder::new();
            let mut stream: Option<PackStream> = None;
            let mut finishing: VecDeque<Finishing> = VecDeque::new();
            let mut size = 0u64;
            let mut chunks = Vec::new();
            let mut lens = Vec::new();
            let mut seen: HashSet<ChunkId> = HashSet::new();
            let mut packs = Vec::new();
            let mut new_chunks = Vec::new();
            while let Some(item) = prepared.try_next().await? {
                let enc = match item {
                    Prepared::Known(id, len) => {
                        size += len as u64;
                        chunks.push(id);
                        lens.push(len as u32);
                        seen.insert(id);
                        self.metrics.chunks_deduplicated.inc();
                        continue;
                    }
                    Prepared::New(enc) => enc,
                };
                size += enc.raw_len as u64;
                chunks.push(enc.id);
                lens.push(enc.raw_len);
                if !seen.insert(enc.id) {
                    self.metrics.chunks_deduplicated.inc();
                    continue;
                }
                self.metrics.chunks_new.inc();
                match stream.as_mut() {
                    Some(ps) => {
                        ps.push(enc).await?;
                        if ps.len() >= self.cfg.pack_target as u64 {
                            if finishing.len() >= MAX_PACK_WRITES {
                                if let Some(h) = finishing.pop_front() {
                                    let (pack, rows) = self.finished_pack(h).await?;
                                    packs.push(pack);
                                    new_chunks.extend(rows);
                                }
                            }
                            if let Some(full) = stream.take() {
                                finishing.push_back(tokio::spawn(full.finish()));
                            }
                        }
                    }
                    None => {
                        memory.push(&enc);
                        if memory.len() >= STREAM_AFTER {
                            let start = std::mem::take(&mut memory);
                            stream = Some(PackStream::start(&self.backend, start).await?);
                        }
                    }
                }
            }
            if let Some(ps) = stream.take() {
                finishing.push_back(tokio::spawn(ps.finish()));
            }
            for h in finishing {
                let (pack, rows) = self.finished_pack(h).await?;
                packs.push(pack);
                new_chunks.extend(rows);
            }
            Ok::<_, EngineError>((size, chunks, lens, packs, new_chunks, memory))
        };
        let ((), consumed) = tokio::join!(produce, consume);
        let (size, chunks, lens, mut packs, mut new_chunks, memory) = consumed?;
        let md5 = match digest {
            ContentDigest::Md5 => md5_task.await.map_err(join_err)??,
            // Same bytes, same chunk list: a digest of the list identifies
            // the content without another pass over it.
            ContentDigest::ChunkList => {
                md5_task.abort();
                chunk_list_digest(&[], &chunks)
            }
        };
        if let Some(expected) = expected {
            if size != expected {
                return Err(EngineError::IncompleteBody {
                    expected,
                    got: size,
                });
            }
        }
        let (memory, batch) = match batch.filter(|_| memory.len() >= crate::batch::BATCH_MIN) {
            Some(b) => match b.push(self, memory).await? {
                Pushed::Written(rows) => {
                    new_chunks.extend(rows);
                    (PackBuilder::new(), Some(b.clone()))
                }
                Pushed::Sealed(memory) => (memory, None),
            },
            None => (memory, None),
        };
        let tail = if memory.len() >= crate::persist::PERSIST_EARLY {
            let p = self.persist(memory).await?;
            packs.push(p.pack);
            new_chunks.extend(p.chunks);
            PackBuilder::new()
        } else {
            memory
        };
        Ok(Ingested {
            size,
            md5,
            chunks,
            lens,
            packs,
            new_chunks,
            tail,
            guard,
            batch,
        })
    }
}

/// BLAKE3 of `seed` and a list of chunk ids, truncated to 16 bytes: a
/// body's identity (see [`ContentDigest::ChunkList`]), or a part's.
pub(crate) fn chunk_list_digest(seed: &[u8], chunks: &[ChunkId]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(seed);
    for c in chunks {
        h.update(c.as_bytes());
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.finalize().as_bytes()[..16]);
    d
}

/// How a body's content digest (`Ingested::md5`) is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentDigest {
    /// MD5 of the bytes: what S3 ETags are.
    Md5,
    /// BLAKE3 of the chunk id list (truncated to 16 bytes): identifies the
    /// content as well, for bodies no S3 client sees, at no extra pass.
    ChunkList,
}

/// One region of a body: its bytes, how to cut them, and what they are
/// (a hint for compression).
pub struct BodyRegion<'a> {
    pub body: Box<dyn AsyncRead + Unpin + Send + 'a>,
    pub params: ChunkParams,
    pub layout: Layout,
}

impl<'a> BodyRegion<'a> {
    /// Bytes of no particular layout, cut with `params`.
    pub fn new(body: impl AsyncRead + Unpin + Send + 'a, params: ChunkParams) -> Self {
        Self {
            body: Box::new(body),
            params,
            layout: Layout::Bytes,
        }
    }

    /// The same region, compressed as `layout` (e.g. 16-bit samples).
    pub fn with_layout(self, layout: Layout) -> Self {
        Self { layout, ..self }
    }
}

/// Reads and cuts one region, handing chunks to MD5 and to the next
/// stage; `before` counts the bytes of earlier regions. Returns false when
/// the body must stop (an error was sent, or the consumer is gone).
async fn produce_region(
    chunker: &mut Chunker<Box<dyn AsyncRead + Unpin + Send + '_>>,
    layout: Layout,
    before: &mut u64,
    max: u64,
    expected: Option<u64>,
    md5_tx: Option<&tokio::sync::mpsc::Sender<Bytes>>,
    chunk_tx: &tokio::sync::mpsc::Sender<EngineResult<(Bytes, Layout)>>,
) -> bool {
    loop {
        let item = match chunker.next_chunk().await {
            Ok(Some(_)) if *before + chunker.bytes_read() > max => {
                Err(EngineError::TooLarge { max })
            }
            Ok(Some(c)) => match md5_tx {
                None => Ok((c, layout)),
                Some(tx) => match tx.send(c.clone()).await {
                    Ok(()) => Ok((c, layout)),
                    Err(_) => Err(EngineError::ShuttingDown),
                },
            },
            Ok(None) => {
                *before += chunker.bytes_read();
                return true;
            }
            Err(e) => Err(match (carried(e), expected) {
                (Ok(engine), _) => engine,
                (Err(_), Some(expected)) => EngineError::IncompleteBody {
                    expected,
                    got: *before + chunker.bytes_read(),
                },
                (Err(e), None) => EngineError::Store(fulcrum_store::StoreError::Source(e)),
            }),
        };
        let failed = item.is_err();
        if chunk_tx.send(item).await.is_err() || failed {
            return false;
        }
    }
}

/// Chunks of one body processed at once (each is at most 4 MiB).
const PARALLEL_CHUNKS: usize = 2;

/// A streamed pack being finished (trailer, close, fsync) in the background.
pub(crate) type Finishing = JoinHandle<StoreResult<(PackId, u64, Vec<PackEntry>)>>;

/// Streamed packs of one body being finished at once.
const MAX_PACK_WRITES: usize = 2;

/// Bytes of new chunks above which a body streams its own packs.
const STREAM_AFTER: usize = 1024 * 1024;

enum Prepared {
    Known(ChunkId, usize),
    New(EncodedChunk),
}

/// Runs CPU work over `len` bytes: inline when small (a thread hand-off
/// costs more than hashing a few KiB), on the blocking pool otherwise.
async fn cpu<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> EngineResult<T> {
    if len < 64 * 1024 {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f).await.map_err(join_err)
    }
}

fn join_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// The engine error a body's reader carried, as it was (a copy reads
/// another object: damage there is not the request's fault), or the I/O
/// error itself.
fn carried(e: std::io::Error) -> Result<EngineError, std::io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<EngineError>()) {
        return Err(e);
    }
    match e.into_inner().map(|inner| inner.downcast::<EngineError>()) {
        Some(Ok(engine)) => Ok(*engine),
        Some(Err(other)) => Err(std::io::Error::other(other)),
        None => Err(std::io::Error::other("a body read failed")),
    }
}
