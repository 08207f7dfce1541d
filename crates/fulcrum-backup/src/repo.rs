//! A backup repository on any backend (a directory, an S3 bucket):
//!
//! ```text
//! config              plaintext JSON: format version, repository id, key check
//! packs/xx/<pack>     sealed blobs back to back, then the pack's sealed index,
//!                     its length (u32 LE) and a magic: a pack can be re-indexed
//! index/<pack>        the same sealed index, read by every run
//! snapshots/<id>      sealed JSON (see `Snapshot`), written last
//! locks/<id>          JSON: who uses the repository (see `lock`)
//! ```
//!
//! A blob is one chunk in the stored form the platform keeps it (or, for
//! the catalog export, zstd-compressed), sealed with the backup key under
//! its id. Files are written whole and durably and never changed; a run cut
//! off leaves packs that the next run finds in the index and does not send
//! again.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use fulcrum_store::{pack_path, Backend, BackendConfig, MasterKey};
use fulcrum_types::{ChunkId, PackId};
use futures::{StreamExt, TryStreamExt};

use crate::error::{BackupError, BackupResult};
use crate::seal::Sealer;
use crate::snapshot::Snapshot;

const FORMAT: u32 = 1;
const PACK_MAGIC: &[u8; 8] = b"FCBKPK01";
const ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 8 + 4;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A chunk of stored data, in the platform's stored form.
    Data = 0,
    /// A chunk of a catalog export.
    Dump = 1,
}

/// Where a blob sits, and how to decode what it seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLoc {
    pub id: ChunkId,
    pub kind: BlobKind,
    /// Codec flags of the sealed (stored-form) bytes.
    pub flags: u8,
    pub raw_len: u32,
    pub pack: String,
    pub offset: u64,
    pub len: u32,
}

/// Every blob the repository holds, by id.
pub type Index = HashMap<ChunkId, BlobLoc>;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RepoConfig {
    format: u32,
    id: String,
    created_ms: i64,
    key_check: String,
}

/// An open repository.
#[derive(Clone)]
pub struct Repo {
    backend: Backend,
    sealer: Sealer,
    id: String,
}

/// Blobs gathered for one pack.
#[derive(Default)]
pub struct PackBuf {
    data: Vec<u8>,
    entries: Vec<BlobLoc>,
}

impl PackBuf {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a blob already sealed with `Repo::seal_blob`.
    pub fn push(&mut self, id: ChunkId, kind: BlobKind, flags: u8, raw_len: u32, sealed: &[u8]) {
        self.entries.push(BlobLoc {
            id,
            kind,
            flags,
            raw_len,
            pack: String::new(),
            offset: self.data.len() as u64,
            len: sealed.len() as u32,
        });
        self.data.extend_from_slice(sealed);
    }
}

fn blob_aad(id: &ChunkId, kind: BlobKind, flags: u8, raw_len: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(38);
    a.extend_from_slice(id.as_bytes());
    a.push(kind as u8);
    a.push(flags);
    a.extend_from_slice(&raw_len.to_le_bytes());
    a
}

fn encode_entries(entries: &[BlobLoc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        out.push(e.kind as u8);
        out.push(e.flags);
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
    }
    out
}

fn decode_entries(pack: &str, data: &[u8]) -> BackupResult<Vec<BlobLoc>> {
    if !data.len().is_multiple_of(ENTRY_LEN) {
        return Err(BackupError::Damaged(format!(
            "index of pack {pack} has a bad length"
        )));
    }
    data.chunks_exact(ENTRY_LEN)
        .map(|e| {
            let kind = match e[32] {
                0 => BlobKind::Data,
                1 => BlobKind::Dump,
                k => {
                    return Err(BackupError::Damaged(format!(
                        "index of pack {pack}: unknown blob kind {k}"
                    )))
                }
            };
            let mut off = [0u8; 8];
            off.copy_from_slice(&e[38..46]);
            Ok(BlobLoc {
                id: ChunkId::from_slice(&e[..32])
                    .map_err(|err| BackupError::Damaged(err.to_string()))?,
                kind,
                flags: e[33],
                raw_len: u32::from_le_bytes([e[34], e[35], e[36], e[37]]),
                pack: pack.to_string(),
                offset: u64::from_le_bytes(off),
                len: u32::from_le_bytes([e[46], e[47], e[48], e[49]]),
            })
        })
        .collect()
}

/// Splits a pack file at its tail: where the blob area ends (the sealed
/// index starts) and the sealed index itself.
pub fn pack_tail<'a>(pack: &str, data: &'a [u8]) -> BackupResult<(usize, &'a [u8])> {
    let bad = |why: &str| BackupError::Damaged(format!("pack {pack}: {why}"));
    if data.len() < 12 || &data[data.len() - 8..] != PACK_MAGIC {
        return Err(bad("missing pack footer"));
    }
    let at = data.len() - 12;
    let n = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
    let start = at
        .checked_sub(n)
        .ok_or_else(|| bad("index longer than pack"))?;
    Ok((start, &data[start..at]))
}

/// Parses a pack's index once opened: its entries, each of which must lie
/// within the pack's first `blob_area` bytes. With [`pack_tail`], what
/// `Repo::pack_entries` does around the authentication check (the fuzz
/// target `catalog_dump` drives both).
pub fn parse_pack_index(pack: &str, plain: &[u8], blob_area: u64) -> BackupResult<Vec<BlobLoc>> {
    let entries = decode_entries(pack, plain)?;
    let outside = |e: &BlobLoc| {
        e.offset
            .checked_add(e.len as u64)
            .is_none_or(|end| end > blob_area)
    };
    if entries.iter().any(outside) {
        return Err(BackupError::Damaged(format!(
            "pack {pack}: a blob lies past the blob area"
        )));
    }
    Ok(entries)
}

impl Repo {
    /// Opens the repository at `cfg` with `key`; a wrong key is refused
    /// before anything is read.
    pub async fn open(cfg: &BackendConfig, key: &MasterKey) -> BackupResult<Self> {
        // Opening a local backend makes its folder: a mistyped --repo of
        // `backup list` must not leave one behind.
        if let BackendConfig::Fs { root } = cfg {
            if !root.join("config").is_file() {
                return Err(BackupError::NotARepo(root.display().to_string()));
            }
        }
        let backend = Backend::open(cfg)?;
        let sealer = Sealer::new(key);
        let conf = match backend.size("config").await? {
            None => return Err(BackupError::NotARepo(backend.name().to_string())),
            Some(_) => backend.read("config").await?,
        };
        let conf: RepoConfig = serde_json::from_slice(&conf)
            .map_err(|e| BackupError::Damaged(format!("repository config: {e}")))?;
        if conf.format != FORMAT {
            return Err(BackupError::Invalid(format!(
                "repository format {} is not supported by this version (expects {FORMAT})",
                conf.format
            )));
        }
        if conf.key_check != sealer.key_check() {
            return Err(BackupError::WrongKey);
        }
        Ok(Self {
            backend,
            sealer,
            id: conf.id,
        })
    }

    /// Creates a repository; refuses a location that already holds files.
    pub async fn init(cfg: &BackendConfig, key: &MasterKey) -> BackupResult<Self> {
        let backend = Backend::open(cfg)?;
        if backend.size("config").await?.is_some() {
            return Err(BackupError::Invalid(format!(
                "{} already holds a backup repository",
                backend.name()
            )));
        }
        if !backend.list("packs/").await?.is_empty()
            || !backend.list("snapshots/").await?.is_empty()
        {
            return Err(BackupError::Invalid(format!(
                "{} holds files but no repository config; refusing to initialize over them",
                backend.name()
            )));
        }
        let sealer = Sealer::new(key);
        let conf = RepoConfig {
            format: FORMAT,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created_ms: fulcrum_catalog::now_ms(),
            key_check: sealer.key_check().to_string(),
        };
        let text =
            serde_json::to_vec_pretty(&conf).map_err(|e| BackupError::Invalid(e.to_string()))?;
        backend.write("config", vec![Bytes::from(text)]).await?;
        Ok(Self {
            backend,
            sealer,
            id: conf.id,
        })
    }

    /// Opens the repository, creating it when the location is empty;
    /// returns whether it was created.
    pub async fn open_or_init(cfg: &BackendConfig, key: &MasterKey) -> BackupResult<(Self, bool)> {
        match Self::open(cfg, key).await {
            Ok(r) => Ok((r, false)),
            Err(BackupError::NotARepo(_)) => Ok((Self::init(cfg, key).await?, true)),
            Err(e) => Err(e),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        self.backend.name()
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Seals one blob's stored bytes for a pack.
    pub fn seal_blob(
        &self,
        id: &ChunkId,
        kind: BlobKind,
        flags: u8,
        raw_len: u32,
        stored: &[u8],
    ) -> Vec<u8> {
        self.sealer
            .seal(&blob_aad(id, kind, flags, raw_len), stored)
    }

    /// Opens a sealed blob read from its pack; returns its stored bytes.
    pub fn open_blob(&self, loc: &BlobLoc, sealed: &[u8]) -> BackupResult<Vec<u8>> {
        self.sealer
            .open(&blob_aad(&loc.id, loc.kind, loc.flags, loc.raw_len), sealed)
            .ok_or_else(|| {
                BackupError::Damaged(format!(
                    "blob {} in pack {} fails its authentication check",
                    loc.id, loc.pack
                ))
            })
    }

    /// Writes a pack and then its index file (both durable); returns the
    /// blobs' locations.
    pub async fn write_pack(&self, buf: PackBuf) -> BackupResult<Vec<BlobLoc>> {
        let pid = PackId::generate();
        let pack = pid.as_str().to_string();
        let entries: Vec<BlobLoc> = buf
            .entries
            .into_iter()
            .map(|mut e| {
                e.pack = pack.clone();
                e
            })
            .collect();
        let index = self.sealer.seal(
            format!("index:{pack}").as_bytes(),
            &encode_entries(&entries),
        );
        let mut tail = index.clone();
        tail.extend_from_slice(&(index.len() as u32).to_le_bytes());
        tail.extend_from_slice(PACK_MAGIC);
        self.backend
            .write(
                &pack_path(&pid),
                vec![Bytes::from(buf.data), Bytes::from(tail)],
            )
            .await?;
        self.backend
            .write(&format!("index/{pack}"), vec![Bytes::from(index)])
            .await?;
        Ok(entries)
    }

    /// Reads every index file: what the repository holds. A damaged index
    /// is an error (run `backup verify`).
    pub async fn load_index(&self) -> BackupResult<Index> {
        let files = self.backend.list("index/").await?;
        let loaded: Vec<Vec<BlobLoc>> = futures::stream::iter(files)
            .map(|f| async move {
                let pack = f.path.rsplit('/').next().unwrap_or_default().to_string();
                let data = self.backend.read(&f.path).await?;
                self.decode_index(&pack, &data)
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let damaged = self.damaged().await?;
        let mut index = Index::with_capacity(loaded.iter().map(|v| v.len()).sum());
        for e in loaded.into_iter().flatten() {
            // A copy `backup verify` found damaged is not what the
            // repository holds: the next run sends the chunk again.
            if !damaged.contains(&(e.pack.clone(), e.id)) {
                index.entry(e.id).or_insert(e);
            }
        }
        Ok(index)
    }

    /// Records that the copy of chunk `id` in `pack` is damaged: the index
    /// no longer lists it, so the next `backup run` stores the chunk again
    /// (from the live platform) and restores read the new copy.
    pub async fn mark_damaged(&self, pack: &str, id: &ChunkId) -> BackupResult<()> {
        self.backend
            .write(
                &format!("damaged/{pack}.{}", id.to_hex()),
                vec![Bytes::new()],
            )
            .await?;
        Ok(())
    }

    /// The blob copies marked damaged: (pack, chunk id).
    pub async fn damaged(&self) -> BackupResult<HashSet<(String, ChunkId)>> {
        Ok(self
            .backend
            .list("damaged/")
            .await?
            .into_iter()
            .filter_map(|e| {
                let name = e.path.rsplit('/').next()?;
                let (pack, id) = name.split_once('.')?;
                let id = ChunkId::from_slice(&hex::decode(id).ok()?).ok()?;
                Some((pack.to_string(), id))
            })
            .collect())
    }

    fn decode_index(&self, pack: &str, sealed: &[u8]) -> BackupResult<Vec<BlobLoc>> {
        decode_entries(pack, &self.open_index(pack, sealed)?)
    }

    /// The plaintext of a pack's sealed index.
    fn open_index(&self, pack: &str, sealed: &[u8]) -> BackupResult<Vec<u8>> {
        self.sealer
            .open(format!("index:{pack}").as_bytes(), sealed)
            .ok_or_else(|| {
                BackupError::Damaged(format!(
                    "index of pack {pack} fails its authentication check"
                ))
            })
    }

    /// The pack's own index, read from its tail (for verify and prune).
    pub fn pack_entries(&self, pack: &str, data: &[u8]) -> BackupResult<Vec<BlobLoc>> {
        let (start, sealed) = pack_tail(pack, data)?;
        let plain = self.open_index(pack, sealed)?;
        parse_pack_index(pack, &plain, start as u64)
    }

    /// Every pack file: (pack id, path, size).
    pub async fn packs(&self) -> BackupResult<Vec<(String, String, u64)>> {
        Ok(self
            .backend
            .list("packs/")
            .await?
            .into_iter()
            .filter_map(|e| {
                let id = e.path.rsplit('/').next()?.to_string();
                PackId::parse(&id).ok()?;
                Some((id, e.path, e.size))
            })
            .collect())
    }

    pub async fn read_pack(&self, pack: &str) -> BackupResult<Bytes> {
        let pid = PackId::parse(pack).map_err(|e| BackupError::Damaged(e.to_string()))?;
        Ok(self.backend.read(&pack_path(&pid)).await?)
    }

    /// Reads `[start, end)` of a pack.
    pub async fn read_pack_range(&self, pack: &str, start: u64, end: u64) -> BackupResult<Bytes> {
        let pid = PackId::parse(pack).map_err(|e| BackupError::Damaged(e.to_string()))?;
        let data = self
            .backend
            .read_range(&pack_path(&pid), start..end)
            .await?;
        if data.len() as u64 != end - start {
            return Err(BackupError::Damaged(format!(
                "pack {pack} is shorter than its index says"
            )));
        }
        Ok(data)
    }

    /// Deletes a pack's index, then the pack (so no index ever names a
    /// missing pack).
    pub async fn delete_pack(&self, pack: &str) -> BackupResult<()> {
        let pid = PackId::parse(pack).map_err(|e| BackupError::Damaged(e.to_string()))?;
        self.backend.delete(&format!("index/{pack}")).await?;
        self.backend.delete(&pack_path(&pid)).await?;
        Ok(())
    }

    /// Reads one blob and returns its stored bytes (authenticated).
    pub async fn read_blob(&self, loc: &BlobLoc) -> BackupResult<Vec<u8>> {
        let sealed = self
            .read_pack_range(&loc.pack, loc.offset, loc.offset + loc.len as u64)
            .await?;
        self.open_blob(loc, &sealed)
    }

    /// Copies of the chunks `ids` that the repository holds, in the stored
    /// form the platform keeps them (for `Engine::repair_chunks`, which
    /// verifies them); blobs that fail to open are skipped and logged.
    pub async fn chunk_copies(
        &self,
        ids: &[ChunkId],
    ) -> BackupResult<Vec<fulcrum_engine::ChunkCopy>> {
        let index = self.load_index().await?;
        let mut out = Vec::new();
        for id in ids {
            let Some(loc) = index.get(id) else {
                continue;
            };
            match self.read_blob(loc).await {
                Ok(stored) => out.push(fulcrum_engine::ChunkCopy {
                    id: *id,
                    stored,
                    flags: loc.flags,
                    raw_len: loc.raw_len,
                }),
                Err(e) => tracing::warn!(chunk = %id, error = %e, "backup copy unusable"),
            }
        }
        Ok(out)
    }

    pub async fn write_snapshot(&self, s: &Snapshot) -> BackupResult<()> {
        let json = serde_json::to_vec(s).map_err(|e| BackupError::Invalid(e.to_string()))?;
        let sealed = self
            .sealer
            .seal(format!("snapshot:{}", s.id).as_bytes(), &json);
        self.backend
            .write(&format!("snapshots/{}", s.id), vec![Bytes::from(sealed)])
            .await?;
        Ok(())
    }

    /// Every snapshot, oldest first.
    pub async fn snapshots(&self) -> BackupResult<Vec<Snapshot>> {
        let files = self.backend.list("snapshots/").await?;
        let mut out: Vec<Snapshot> = futures::stream::iter(files)
            .map(|f| async move {
                let id = f.path.rsplit('/').next().unwrap_or_default().to_string();
                let sealed = self.backend.read(&f.path).await?;
                let json = self
                    .sealer
                    .open(format!("snapshot:{id}").as_bytes(), &sealed)
                    .ok_or_else(|| {
                        BackupError::Damaged(format!(
                            "snapshot {id} fails its authentication check"
                        ))
                    })?;
                serde_json::from_slice::<Snapshot>(&json)
                    .map_err(|e| BackupError::Damaged(format!("snapshot {id}: {e}")))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        out.sort_by(|a, b| (a.time_ms, &a.id).cmp(&(b.time_ms, &b.id)));
        Ok(out)
    }

    /// The snapshot named by `id`: a unique prefix of its id, or "latest".
    pub async fn find_snapshot(&self, id: &str) -> BackupResult<Snapshot> {
        let all = self.snapshots().await?;
        if id == "latest" {
            return all
                .into_iter()
                .last()
                .ok_or_else(|| BackupError::NoSuchSnapshot(id.into()));
        }
        let mut m: Vec<Snapshot> = all.into_iter().filter(|s| s.id.starts_with(id)).collect();
        match m.len() {
            0 => Err(BackupError::NoSuchSnapshot(id.into())),
            1 => Ok(m.remove(0)),
            _ => Err(BackupError::AmbiguousSnapshot(id.into())),
        }
    }

    pub async fn delete_snapshot(&self, id: &str) -> BackupResult<()> {
        Ok(self.backend.delete(&format!("snapshots/{id}")).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `catalog_dump` fuzz target: an index entry whose
    /// offset + length overflows u64 panicked instead of being damage.
    #[test]
    fn fuzz_index_entry_past_u64_is_damage() {
        let data = include_bytes!("../tests/fuzz/pack_index_offset_overflow");
        let (start, index) = pack_tail("p", data).expect("the tail is well-formed");
        let err = parse_pack_index("p", index, start as u64).expect_err("overflowing entry");
        assert!(matches!(err, BackupError::Damaged(_)), "{err}");
    }
}
