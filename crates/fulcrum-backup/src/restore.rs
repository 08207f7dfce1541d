//! Restores: a whole snapshot into a new data dir that `fulcrum serve`
//! starts on (packs rewritten, chunk locations rewritten, the catalog
//! imported in one transaction, the S3 credentials file put back), and
//! single objects or DICOM studies of a snapshot streamed back into the
//! live platform.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use fulcrum_catalog::snapshot::{Dump, DumpTable, Value};
use fulcrum_catalog::Catalog;
use fulcrum_engine::VerifyProgress;
use fulcrum_store::{pack_path, Backend, BackendConfig, Codec, PackBuilder, FLAG_AEAD};
use fulcrum_types::{ChunkId, PackId};
use futures::{Stream, StreamExt};

use crate::error::{BackupError, BackupResult};
use crate::repo::{BlobLoc, Index, Repo};
use crate::run::{chunk_row, read_groups, ChunkRow, PACK_TARGET};
use crate::snapshot::Snapshot;

/// A snapshot opened for reading: its catalog export and the repository
/// index.
pub struct SnapshotView {
    pub snapshot: Snapshot,
    pub dump: Dump,
    repo: Repo,
    index: Arc<Index>,
}

/// An object of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapObject {
    pub tenant: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// User metadata as the catalog keeps it (a JSON object of strings).
    pub metadata: String,
    pub chunks: Vec<ChunkId>,
}

/// Opens a blob's stored bytes and, unless they are encrypted with the
/// platform key (the seal already authenticates those), re-hashes them.
fn check_stored(loc: &BlobLoc, stored: &[u8]) -> BackupResult<()> {
    if loc.flags & FLAG_AEAD == 0 {
        Codec::new(None, 0)
            .decode(loc.id, stored, loc.flags, loc.raw_len)
            .map_err(|e| {
                BackupError::Damaged(format!("blob {} in pack {}: {e}", loc.id, loc.pack))
            })?;
    }
    Ok(())
}

fn col_map(t: &DumpTable) -> HashMap<String, usize> {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i))
        .collect()
}

impl SnapshotView {
    /// Loads snapshot `id` (a unique prefix or "latest") and its export.
    pub async fn open(repo: &Repo, id: &str) -> BackupResult<Self> {
        let snapshot = repo.find_snapshot(id).await?;
        let index = Arc::new(repo.load_index().await?);
        Self::open_with(repo, snapshot, index).await
    }

    /// Loads `snapshot`'s export with an index already read (verify and
    /// prune open every snapshot against one index).
    pub async fn open_with(
        repo: &Repo,
        snapshot: Snapshot,
        index: Arc<Index>,
    ) -> BackupResult<Self> {
        let mut bytes = Vec::with_capacity(snapshot.dump_bytes as usize);
        let plain = Codec::new(None, 0);
        for id in snapshot.dump_ids()? {
            let loc = index.get(&id).ok_or_else(|| {
                BackupError::Damaged(format!(
                    "snapshot {}: catalog blob {id} is missing",
                    snapshot.id
                ))
            })?;
            let stored = repo.read_blob(loc).await?;
            let raw = plain
                .decode(id, &stored, loc.flags, loc.raw_len)
                .map_err(|e| BackupError::Damaged(format!("catalog blob {id}: {e}")))?;
            bytes.extend_from_slice(&raw);
        }
        let dump = Dump::parse(&bytes)?;
        Ok(Self {
            snapshot,
            dump,
            repo: repo.clone(),
            index,
        })
    }

    /// Every data chunk the snapshot references, from its chunk table.
    pub(crate) fn chunk_rows(&self) -> Vec<ChunkRow> {
        let Some(t) = self.dump.table("chunks") else {
            return Vec::new();
        };
        let cols = col_map(t);
        t.rows.iter().filter_map(|r| chunk_row(&cols, r)).collect()
    }

    /// Objects of `tenant`'s `bucket` whose key equals `key` or, without
    /// one, starts with `prefix`.
    pub fn objects(
        &self,
        tenant: &str,
        bucket: &str,
        key: Option<&str>,
        prefix: &str,
    ) -> Vec<SnapObject> {
        let (Some(b), Some(o), Some(oc)) = (
            self.dump.table("buckets"),
            self.dump.table("objects"),
            self.dump.table("object_chunks"),
        ) else {
            return Vec::new();
        };
        let (bc, occ, ocm) = (col_map(b), col_map(o), col_map(oc));
        let text = |row: &[Value], cols: &HashMap<String, usize>, c: &str| {
            cols.get(c)
                .and_then(|i| row[*i].as_text())
                .map(str::to_string)
        };
        let int = |row: &[Value], cols: &HashMap<String, usize>, c: &str| {
            cols.get(c).and_then(|i| row[*i].as_int())
        };
        let Some(bucket_id) = b.rows.iter().find_map(|r| {
            (text(r, &bc, "tenant").as_deref() == Some(tenant)
                && text(r, &bc, "name").as_deref() == Some(bucket))
            .then(|| int(r, &bc, "id"))
            .flatten()
        }) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, SnapObject)> = o
            .rows
            .iter()
            .filter(|r| int(r, &occ, "bucket_id") == Some(bucket_id))
            .filter_map(|r| {
                let k = text(r, &occ, "key")?;
                let hit = match key {
                    Some(want) => k == want,
                    None => k.starts_with(prefix),
                };
                hit.then(|| {
                    Some((
                        int(r, &occ, "id")?,
                        SnapObject {
                            tenant: tenant.to_string(),
                            bucket: bucket.to_string(),
                            key: k,
                            size: int(r, &occ, "size")? as u64,
                            content_type: text(r, &occ, "content_type"),
                            metadata: text(r, &occ, "metadata").unwrap_or_else(|| "{}".into()),
                            chunks: Vec::new(),
                        },
                    ))
                })
                .flatten()
            })
            .collect();
        let at: HashMap<i64, usize> = out
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        let mut lists: HashMap<i64, Vec<(i64, ChunkId)>> = HashMap::new();
        for r in &oc.rows {
            let Some(oid) = int(r, &ocm, "object_id").filter(|id| at.contains_key(id)) else {
                continue;
            };
            let seq = int(r, &ocm, "seq").unwrap_or(0);
            if let Some(c) = ocm
                .get("chunk_id")
                .and_then(|i| r[*i].as_blob())
                .and_then(|b| ChunkId::from_slice(b).ok())
            {
                lists.entry(oid).or_default().push((seq, c));
            }
        }
        for (oid, mut l) in lists {
            l.sort_by_key(|(s, _)| *s);
            out[at[&oid]].1.chunks = l.into_iter().map(|(_, c)| c).collect();
        }
        out.into_iter().map(|(_, o)| o).collect()
    }

    /// Object keys (in the tenant's DICOM bucket) of the instances of
    /// `study_uid` in the snapshot.
    pub fn study_keys(&self, tenant: &str, study_uid: &str) -> Vec<String> {
        let Some(t) = self.dump.table("dicom_instances") else {
            return Vec::new();
        };
        let cols = col_map(t);
        let get = |r: &[Value], c: &str| {
            cols.get(c)
                .and_then(|i| r[*i].as_text())
                .map(str::to_string)
        };
        t.rows
            .iter()
            .filter(|r| {
                get(r, "tenant").as_deref() == Some(tenant)
                    && get(r, "study_uid").as_deref() == Some(study_uid)
            })
            .filter_map(|r| get(r, "object_key"))
            .collect()
    }

    /// The bytes of `obj`, chunk by chunk, decoded and verified with the
    /// platform's `codec` (which holds its key when it is encrypted).
    pub fn read(
        &self,
        obj: &SnapObject,
        codec: Codec,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let (repo, index) = (self.repo.clone(), self.index.clone());
        futures::stream::iter(obj.chunks.clone())
            .map(move |id| {
                let (repo, index, codec) = (repo.clone(), index.clone(), codec.clone());
                async move {
                    let loc = index.get(&id).ok_or_else(|| {
                        std::io::Error::other(format!("chunk {id} is not in the backup"))
                    })?;
                    let stored = repo.read_blob(loc).await.map_err(std::io::Error::other)?;
                    let raw = codec
                        .decode(id, &stored, loc.flags, loc.raw_len)
                        .map_err(std::io::Error::other)?;
                    Ok(Bytes::from(raw))
                }
            })
            .buffered(4)
    }
}

/// What a restore into a directory wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    pub packs: u64,
    pub bytes: u64,
    /// Chunks the restored data lacks: damaged when the snapshot was
    /// taken, or their blob in the repository is (see `damaged_blobs`).
    pub missing_chunks: Vec<String>,
    /// Why each blob found damaged in the repository was left out.
    pub damaged_blobs: Vec<String>,
}

/// True when `dir` is missing or an empty directory.
fn is_empty_dir(dir: &Path) -> BackupResult<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(BackupError::Io {
            path: dir.display().to_string(),
            source,
        }),
    }
}

/// Restores snapshot `id` into `dir` (which must be missing or empty) as
/// an embedded data dir: packs in `dir/store`, SQLite catalog in
/// `dir/catalog.db`. On failure everything written is removed again.
pub async fn restore_to_dir(
    repo: &Repo,
    id: &str,
    dir: &Path,
    progress: &mut dyn VerifyProgress,
) -> BackupResult<RestoreReport> {
    if !is_empty_dir(dir)? {
        return Err(BackupError::TargetNotEmpty(dir.display().to_string()));
    }
    fulcrum_store::create_private_dir(dir).map_err(|source| BackupError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let lock = repo.lock(false).await?;
    let out = restore_locked(repo, id, dir, progress).await;
    lock.release().await;
    if out.is_err() {
        for p in [
            "store",
            "catalog.db",
            "catalog.db-wal",
            "catalog.db-shm",
            "s3-credentials.toml",
        ] {
            let p: PathBuf = dir.join(p);
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    out
}

async fn restore_locked(
    repo: &Repo,
    id: &str,
    dir: &Path,
    progress: &mut dyn VerifyProgress,
) -> BackupResult<RestoreReport> {
    let view = SnapshotView::open(repo, id).await?;
    let mut report = RestoreReport {
        snapshot: view.snapshot.id.clone(),
        objects: view.snapshot.objects,
        logical_bytes: view.snapshot.logical_bytes,
        ..Default::default()
    };
    let rows = view.chunk_rows();
    // Blob reads, grouped by repository pack.
    let mut wanted = Vec::with_capacity(rows.len());
    for r in &rows {
        match view.index.get(&r.id) {
            Some(loc) => wanted.push(ChunkRow {
                id: r.id,
                pack: loc.pack.clone(),
                offset: loc.offset,
                stored_len: loc.len,
                raw_len: loc.raw_len,
                flags: loc.flags,
            }),
            None => report.missing_chunks.push(r.id.to_hex()),
        }
    }
    progress.start(wanted.iter().map(|c| c.stored_len as u64).sum());
    let store = Backend::open(&BackendConfig::Fs {
        root: dir.join("store"),
    })?;
    let mut builder = PackBuilder::with_capacity(PACK_TARGET + 2 * 1024 * 1024);
    let mut located: HashMap<ChunkId, (String, u64)> = HashMap::with_capacity(wanted.len());
    let mut packs: Vec<(String, u64)> = Vec::new();
    let index = view.index.clone();
    let mut fetched = futures::stream::iter(read_groups(wanted))
        .map(|g| {
            let (repo, index) = (repo.clone(), index.clone());
            async move {
                let start = g[0].offset;
                let end = g
                    .last()
                    .map(|c| c.offset + c.stored_len as u64)
                    .unwrap_or(start);
                // A pack that is gone or damaged loses its blobs, not the
                // restore; a backend that cannot be reached fails it.
                let data = match repo.read_pack_range(&g[0].pack, start, end).await {
                    Ok(d) => d,
                    Err(BackupError::Store(e)) if e.is_not_found() || e.is_corruption() => {
                        let why = e.to_string();
                        return Ok(g.iter().map(|c| Err((c.id, why.clone()))).collect());
                    }
                    // Shorter than its index says, or a malformed name.
                    Err(BackupError::Damaged(why)) => {
                        return Ok(g.iter().map(|c| Err((c.id, why.clone()))).collect());
                    }
                    Err(e) => return Err(e),
                };
                tokio::task::spawn_blocking(move || {
                    g.iter()
                        .map(|c| {
                            let loc = &index[&c.id];
                            let at = (c.offset - start) as usize;
                            repo.open_blob(loc, &data[at..at + c.stored_len as usize])
                                .and_then(|stored| {
                                    check_stored(loc, &stored)?;
                                    Ok((loc.clone(), stored))
                                })
                                .map_err(|e| (c.id, e.to_string()))
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| BackupError::Invalid(format!("restore worker failed: {e}")))
            }
        })
        .buffered(4);
    while let Some(batch) = fetched.next().await {
        for blob in batch? {
            let (loc, stored) = match blob {
                Ok(b) => b,
                Err((id, why)) => {
                    // Restored without it, as a chunk the snapshot lacks:
                    // its chunk row points at no pack, and `fulcrum
                    // verify` on the restored data names its objects.
                    tracing::warn!(chunk = %id, error = %why, "restore: a damaged blob is left out");
                    report.damaged_blobs.push(why);
                    report.missing_chunks.push(id.to_hex());
                    continue;
                }
            };
            let e = builder.push_stored(loc.id, &stored, loc.raw_len, loc.flags);
            located.insert(loc.id, (String::new(), e.offset));
            progress.advance(loc.len as u64);
        }
        if builder.len() >= PACK_TARGET {
            let b = std::mem::replace(
                &mut builder,
                PackBuilder::with_capacity(PACK_TARGET + 2 * 1024 * 1024),
            );
            write_hot_pack(&store, b, &mut located, &mut packs).await?;
        }
    }
    drop(fetched);
    write_hot_pack(&store, builder, &mut located, &mut packs).await?;
    report.chunks = located.len() as u64;
    report.packs = packs.len() as u64;
    report.bytes = packs.iter().map(|(_, s)| s).sum();

    // The catalog: chunk rows point at the new packs, and the pack table
    // lists them.
    let mut dump = view.dump;
    if let Some(t) = dump.table_mut("chunks") {
        let cols = col_map(t);
        let (Some(&ic), Some(&pc), Some(&oc)) =
            (cols.get("id"), cols.get("pack_id"), cols.get("pack_offset"))
        else {
            return Err(BackupError::Damaged(
                "snapshot's chunk table lacks its columns".into(),
            ));
        };
        let condemned = cols.get("condemned_at").copied();
        for row in &mut t.rows {
            let id = row[ic].as_blob().and_then(|b| ChunkId::from_slice(b).ok());
            let (pack, off) = match id.and_then(|id| located.get(&id)) {
                Some((p, o)) => (p.clone(), *o as i64),
                None => ("missing".to_string(), 0),
            };
            row[pc] = Value::Text(pack);
            row[oc] = Value::Int(off);
            if let Some(c) = condemned {
                row[c] = Value::Null;
            }
        }
    }
    // Everything comes back on the hot tier.
    if let Some(t) = dump.table_mut("objects") {
        if let Some(c) = t.col("archived_at") {
            for row in &mut t.rows {
                row[c] = Value::Null;
            }
        }
    }
    let now = fulcrum_catalog::now_ms();
    dump.tables.push(DumpTable {
        name: "packs".into(),
        columns: vec![
            "id".into(),
            "tier".into(),
            "size".into(),
            "created_at".into(),
        ],
        rows: packs
            .iter()
            .map(|(id, size)| {
                vec![
                    Value::Text(id.clone()),
                    Value::Text("hot".into()),
                    Value::Int(*size as i64),
                    Value::Int(now),
                ]
            })
            .collect(),
    });
    let catalog = Catalog::open(&format!("sqlite://{}", dir.join("catalog.db").display())).await?;
    let imported = catalog.import(&dump).await;
    catalog.close().await;
    imported?;
    for (name, content) in &view.snapshot.files {
        if name.contains('/') || name.starts_with('.') {
            continue;
        }
        // The data dir's files are secrets (the S3 credentials).
        let p = dir.join(name);
        fulcrum_store::write_private_file(&p, content.as_bytes()).map_err(|source| {
            BackupError::Io {
                path: p.display().to_string(),
                source,
            }
        })?;
    }
    Ok(report)
}

/// Writes a hot pack of restored chunks and fills in their pack id.
async fn write_hot_pack(
    store: &Backend,
    builder: PackBuilder,
    located: &mut HashMap<ChunkId, (String, u64)>,
    packs: &mut Vec<(String, u64)>,
) -> BackupResult<()> {
    if builder.is_empty() {
        return Ok(());
    }
    let pid = PackId::generate();
    let (parts, entries) = builder.seal();
    let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
    store.write(&pack_path(&pid), parts).await?;
    let ids: HashSet<ChunkId> = entries.iter().map(|e| e.id).collect();
    for id in ids {
        if let Some(l) = located.get_mut(&id) {
            l.0 = pid.as_str().to_string();
        }
    }
    packs.push((pid.as_str().to_string(), size));
    Ok(())
}
