//! `backup forget`: drops the snapshots a keep policy does not keep and
//! prunes: packs no kept snapshot uses are deleted, packs mostly unused are
//! rewritten with their live blobs (copied sealed, never re-encrypted),
//! new packs first, old ones after, so a crash never loses a live blob.
//! Runs under the exclusive repository lock.

use std::collections::{HashMap, HashSet};

use fulcrum_types::ChunkId;

use crate::error::BackupResult;
use crate::repo::{PackBuf, Repo};
use crate::restore::SnapshotView;
use crate::snapshot::KeepPolicy;

/// Packs with less than this share of live bytes are rewritten.
const REPACK_BELOW: f64 = 0.8;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ForgetReport {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub deleted_packs: u64,
    pub repacked_packs: u64,
    pub freed_bytes: u64,
}

pub async fn forget(
    repo: &Repo,
    policy: &KeepPolicy,
    prune: bool,
    dry_run: bool,
) -> BackupResult<ForgetReport> {
    if policy.is_empty() {
        return Err(crate::BackupError::Invalid(
            "no keep policy given (--keep-last/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly); refusing to forget every snapshot".into(),
        ));
    }
    let lock = repo.lock(true).await?;
    let out = forget_locked(repo, policy, prune, dry_run).await;
    lock.release().await;
    out
}

async fn forget_locked(
    repo: &Repo,
    policy: &KeepPolicy,
    prune: bool,
    dry_run: bool,
) -> BackupResult<ForgetReport> {
    let all = repo.snapshots().await?;
    let keep = policy.keep(&all);
    let mut report = ForgetReport::default();
    for s in &all {
        if keep.contains(&s.id) {
            report.kept.push(s.id.clone());
        } else {
            report.removed.push(s.id.clone());
        }
    }
    if dry_run {
        return Ok(report);
    }
    for id in &report.removed {
        repo.delete_snapshot(id).await?;
    }
    if !prune {
        return Ok(report);
    }
    // Live blobs: the catalog exports and chunks of the kept snapshots.
    let index = std::sync::Arc::new(repo.load_index().await?);
    let mut live: HashSet<ChunkId> = HashSet::new();
    for s in all.into_iter().filter(|s| keep.contains(&s.id)) {
        let view = SnapshotView::open_with(repo, s, index.clone()).await?;
        live.extend(view.snapshot.dump_ids()?);
        live.extend(view.chunk_rows().into_iter().map(|r| r.id));
    }
    let mut by_pack: HashMap<&str, (u64, u64)> = HashMap::new(); // live, total bytes
    for loc in index.values() {
        let e = by_pack.entry(loc.pack.as_str()).or_default();
        e.1 += loc.len as u64;
        if live.contains(&loc.id) {
            e.0 += loc.len as u64;
        }
    }
    let sizes: HashMap<String, u64> = repo
        .packs()
        .await?
        .into_iter()
        .map(|(id, _, s)| (id, s))
        .collect();
    let mut buf = PackBuf::default();
    let mut emptied: Vec<String> = Vec::new();
    for (pack, (live_bytes, total)) in by_pack {
        if live_bytes == total {
            continue;
        }
        if live_bytes > 0 && (live_bytes as f64) >= REPACK_BELOW * total as f64 {
            continue;
        }
        if live_bytes > 0 {
            let data = repo.read_pack(pack).await?;
            for e in repo.pack_entries(pack, &data)? {
                if live.contains(&e.id) {
                    let sealed = &data[e.offset as usize..(e.offset + e.len as u64) as usize];
                    buf.push(e.id, e.kind, e.flags, e.raw_len, sealed);
                }
            }
            report.repacked_packs += 1;
        } else {
            report.deleted_packs += 1;
        }
        report.freed_bytes += sizes.get(pack).copied().unwrap_or(total);
        emptied.push(pack.to_string());
        if buf.len() >= crate::run::PACK_TARGET {
            repo.write_pack(std::mem::take(&mut buf)).await?;
        }
    }
    if !buf.is_empty() {
        repo.write_pack(buf).await?;
    }
    for pack in &emptied {
        repo.delete_pack(pack).await?;
    }
    Ok(report)
}
