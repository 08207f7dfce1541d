//! `backup run`: one incremental snapshot of the whole platform.
//!
//! 1. Take the maintenance lease (GC and tier moves must not relocate or
//!    delete packs while they are read) and a shared repository lock.
//! 2. Export the catalog in one read transaction: the snapshot's point in
//!    time. Writes go on; what commits later is in the next snapshot.
//! 3. Cut the export into small content-defined chunks; send those the
//!    repository lacks (zstd, sealed).
//! 4. Send every data chunk the export references that the repository
//!    lacks: read from the platform's packs with coalesced ranged reads,
//!    verified (a damaged chunk is never copied; it is listed in the
//!    snapshot), sealed, packed.
//! 5. Write the snapshot file last: a snapshot exists only when all it
//!    references is in the repository. A run cut off leaves packs the next
//!    run finds in the index and does not send again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use fulcrum_catalog::snapshot::{DumpWriter, ExportSink, Value};
use fulcrum_engine::{ChunkParams, Engine, VerifyProgress, MAINTENANCE_LEASE};
use fulcrum_types::ChunkId;
use futures::StreamExt;
use tokio::task::JoinSet;

use crate::error::{BackupError, BackupResult};
use crate::repo::{BlobKind, PackBuf, Repo};
use crate::snapshot::Snapshot;

/// Repository packs are written once they hold this many bytes.
pub const PACK_TARGET: usize = 32 * 1024 * 1024;
/// Coalesced reads of platform packs: at most this long, gaps at most
/// `MAX_GAP`.
const MAX_READ: u64 = 16 * 1024 * 1024;
const MAX_GAP: u64 = 256 * 1024;
/// zstd level of catalog export chunks.
const DUMP_ZSTD_LEVEL: i32 = 3;

/// A row of the catalog's chunk table, as the export holds it.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRow {
    pub id: ChunkId,
    pub pack: String,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub flags: u8,
}

/// Catches the chunk rows and object counts while the export streams
/// into the dump writer.
#[derive(Default)]
pub(crate) struct Capture {
    pub dump: DumpWriter,
    table: String,
    cols: HashMap<String, usize>,
    pub chunks: Vec<ChunkRow>,
    pub objects: u64,
    pub logical_bytes: u64,
}

impl Capture {
    fn new() -> Self {
        Self {
            dump: DumpWriter::new(),
            ..Default::default()
        }
    }
}

/// Reads a chunk-table row (also used by restore on a parsed dump).
pub(crate) fn chunk_row(cols: &HashMap<String, usize>, v: &[Value]) -> Option<ChunkRow> {
    let get = |c: &str| cols.get(c).and_then(|i| v.get(*i));
    Some(ChunkRow {
        id: ChunkId::from_slice(get("id")?.as_blob()?).ok()?,
        pack: get("pack_id")?.as_text()?.to_string(),
        offset: get("pack_offset")?.as_int()? as u64,
        stored_len: get("stored_len")?.as_int()? as u32,
        raw_len: get("raw_len")?.as_int()? as u32,
        flags: get("flags")?.as_int()? as u8,
    })
}

impl ExportSink for Capture {
    fn table(&mut self, name: &str, columns: &[String]) {
        self.dump.table(name, columns);
        self.table = name.to_string();
        self.cols = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
    }

    fn row(&mut self, values: &[Value]) {
        self.dump.row(values);
        match self.table.as_str() {
            "chunks" => {
                if let Some(r) = chunk_row(&self.cols, values) {
                    self.chunks.push(r);
                }
            }
            "objects" => {
                self.objects += 1;
                let size = self.cols.get("size").and_then(|i| values.get(*i));
                self.logical_bytes += size.and_then(Value::as_int).unwrap_or(0) as u64;
            }
            _ => {}
        }
    }
}

/// Settings of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Small data-dir files to carry in the snapshot (name → content).
    pub files: BTreeMap<String, String>,
}

/// Writes sealed blobs into packs, a bounded number of pack uploads in
/// flight.
struct Packer<'a> {
    repo: &'a Repo,
    buf: PackBuf,
    uploads: JoinSet<BackupResult<()>>,
    new_blobs: u64,
    new_bytes: u64,
}

impl<'a> Packer<'a> {
    fn new(repo: &'a Repo) -> Self {
        Self {
            repo,
            buf: PackBuf::default(),
            uploads: JoinSet::new(),
            new_blobs: 0,
            new_bytes: 0,
        }
    }

    async fn push(
        &mut self,
        id: ChunkId,
        kind: BlobKind,
        flags: u8,
        raw_len: u32,
        sealed: &[u8],
    ) -> BackupResult<()> {
        self.buf.push(id, kind, flags, raw_len, sealed);
        self.new_blobs += 1;
        self.new_bytes += sealed.len() as u64;
        if self.buf.len() >= PACK_TARGET {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> BackupResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        while self.uploads.len() >= 2 {
            join_one(&mut self.uploads).await?;
        }
        let buf = std::mem::take(&mut self.buf);
        let repo = self.repo.clone();
        self.uploads
            .spawn(async move { repo.write_pack(buf).await.map(|_| ()) });
        Ok(())
    }

    async fn finish(mut self) -> BackupResult<(u64, u64)> {
        self.flush().await?;
        while !self.uploads.is_empty() {
            join_one(&mut self.uploads).await?;
        }
        Ok((self.new_blobs, self.new_bytes))
    }
}

async fn join_one(set: &mut JoinSet<BackupResult<()>>) -> BackupResult<()> {
    match set.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(BackupError::Invalid(format!(
            "pack upload task failed: {e}"
        ))),
        None => Ok(()),
    }
}

/// Groups chunk rows into coalesced ranged reads of their packs.
pub(crate) fn read_groups(mut rows: Vec<ChunkRow>) -> Vec<Vec<ChunkRow>> {
    rows.sort_by(|a, b| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
    let mut groups: Vec<Vec<ChunkRow>> = Vec::new();
    for r in rows {
        if let Some(g) = groups.last_mut() {
            let (first, last) = (&g[0], &g[g.len() - 1]);
            let last_end = last.offset + last.stored_len as u64;
            if first.pack == r.pack
                && r.offset >= last_end
                && r.offset - last_end <= MAX_GAP
                && r.offset + r.stored_len as u64 - first.offset <= MAX_READ
            {
                g.push(r);
                continue;
            }
        }
        groups.push(vec![r]);
    }
    groups
}

/// Takes one snapshot of `engine`'s platform into `repo`.
pub async fn run(
    engine: &Engine,
    repo: &Repo,
    opts: &RunOptions,
    progress: &mut dyn VerifyProgress,
) -> BackupResult<Snapshot> {
    let started = Instant::now();
    let lease = engine.lease(MAINTENANCE_LEASE).await?;
    let lock = repo.lock(false).await?;
    let out = run_locked(engine, repo, opts, progress, started).await;
    lock.release().await;
    lease.release().await;
    out
}

async fn run_locked(
    engine: &Engine,
    repo: &Repo,
    opts: &RunOptions,
    progress: &mut dyn VerifyProgress,
    started: Instant,
) -> BackupResult<Snapshot> {
    let index = repo.load_index().await?;
    let time_ms = fulcrum_catalog::now_ms();
    let mut cap = Capture::new();
    engine.catalog().export(&mut cap).await?;
    let Capture {
        dump,
        chunks,
        objects,
        logical_bytes,
        ..
    } = cap;
    let dump = dump.finish();

    let mut packer = Packer::new(repo);
    let mut sent: HashSet<ChunkId> = HashSet::new();
    let mut reused_bytes = 0u64;

    // The catalog export.
    let mut dump_ids = Vec::new();
    let mut pos = 0;
    for n in ChunkParams::SMALL.split(&dump) {
        let piece = &dump[pos..pos + n];
        pos += n;
        let id = ChunkId(*blake3::hash(piece).as_bytes());
        dump_ids.push(id.to_hex());
        if index.contains_key(&id) || !sent.insert(id) {
            reused_bytes += n as u64;
            continue;
        }
        let (flags, stored) = match zstd::bulk::compress(piece, DUMP_ZSTD_LEVEL) {
            Ok(c) if c.len() < piece.len() => (fulcrum_store::FLAG_ZSTD, c),
            _ => (0, piece.to_vec()),
        };
        let sealed = repo.seal_blob(&id, BlobKind::Dump, flags, n as u32, &stored);
        packer
            .push(id, BlobKind::Dump, flags, n as u32, &sealed)
            .await?;
    }

    // The data chunks the repository lacks.
    let chunk_count = chunks.len() as u64;
    let chunk_bytes: u64 = chunks.iter().map(|c| c.stored_len as u64).sum();
    let mut needed = Vec::new();
    for c in chunks {
        if index.contains_key(&c.id) || sent.contains(&c.id) {
            reused_bytes += c.stored_len as u64;
        } else {
            sent.insert(c.id);
            needed.push(c);
        }
    }
    progress.start(needed.iter().map(|c| c.stored_len as u64).sum());
    let mut damaged = Vec::new();
    let groups = read_groups(needed);
    let mut fetched = futures::stream::iter(groups)
        .map(|g| fetch_group(engine, repo, g))
        .buffered(4);
    while let Some(r) = fetched.next().await {
        for item in r? {
            match item {
                Fetched::Sealed(c, sealed) => {
                    packer
                        .push(c.id, BlobKind::Data, c.flags, c.raw_len, &sealed)
                        .await?;
                    progress.advance(c.stored_len as u64);
                }
                Fetched::Damaged(c, why) => {
                    tracing::error!(chunk = %c.id, pack = %c.pack, error = %why, "damaged chunk left out of the backup");
                    damaged.push(c.id.to_hex());
                    progress.advance(c.stored_len as u64);
                }
            }
        }
    }
    drop(fetched);
    let (new_blobs, new_bytes) = packer.finish().await?;

    let snap = Snapshot {
        id: Snapshot::new_id(),
        time_ms,
        host: crate::lock::hostname(),
        source: format!(
            "{} + {:?} catalog",
            engine.backend_name(),
            engine.catalog().kind()
        ),
        dump: dump_ids,
        dump_bytes: dump.len() as u64,
        files: opts.files.clone(),
        objects,
        logical_bytes,
        chunks: chunk_count,
        chunk_bytes,
        new_blobs,
        new_bytes,
        reused_bytes,
        damaged,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    repo.write_snapshot(&snap).await?;
    Ok(snap)
}

enum Fetched {
    Sealed(ChunkRow, Vec<u8>),
    Damaged(ChunkRow, String),
}

/// Reads one coalesced range of a platform pack, verifies each chunk and
/// seals it for the repository (on a blocking thread: hashing,
/// decompression and encryption are CPU work).
async fn fetch_group(engine: &Engine, repo: &Repo, g: Vec<ChunkRow>) -> BackupResult<Vec<Fetched>> {
    let start = g[0].offset;
    let end = g
        .last()
        .map(|c| c.offset + c.stored_len as u64)
        .unwrap_or(start);
    let data = match engine.read_pack_range(&g[0].pack, start..end).await {
        Ok(d) => d,
        Err(e @ fulcrum_engine::EngineError::Corrupt(_)) => {
            let why = e.to_string();
            return Ok(g
                .into_iter()
                .map(|c| Fetched::Damaged(c, why.clone()))
                .collect());
        }
        Err(fulcrum_engine::EngineError::Store(e)) if e.is_not_found() => {
            let why = e.to_string();
            return Ok(g
                .into_iter()
                .map(|c| Fetched::Damaged(c, why.clone()))
                .collect());
        }
        Err(e) => return Err(e.into()),
    };
    let codec = Arc::new(engine.codec().clone());
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        g.into_iter()
            .map(|c| {
                let at = (c.offset - start) as usize;
                let stored = &data[at..at + c.stored_len as usize];
                match codec.decode(c.id, stored, c.flags, c.raw_len) {
                    Ok(_) => {
                        let sealed =
                            repo.seal_blob(&c.id, BlobKind::Data, c.flags, c.raw_len, stored);
                        Fetched::Sealed(c, sealed)
                    }
                    Err(e) => Fetched::Damaged(c, e.to_string()),
                }
            })
            .collect()
    })
    .await
    .map_err(|e| BackupError::Invalid(format!("backup worker failed: {e}")))
}
