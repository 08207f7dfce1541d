//! `backup verify`: re-reads packs (all, or a random sample), opens every
//! blob (authentication), re-hashes what is not encrypted with the
//! platform key (and that too when the key is given), checks each pack's
//! own index against the index files, and checks that every snapshot finds
//! every blob it references.

use std::collections::HashSet;

use fulcrum_engine::VerifyProgress;
use fulcrum_store::{Codec, FLAG_AEAD};
use fulcrum_types::ChunkId;

use crate::error::BackupResult;
use crate::repo::Repo;
use crate::restore::SnapshotView;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepoVerifyReport {
    pub snapshots: u64,
    pub packs_checked: u64,
    pub packs_total: u64,
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// One line per problem found.
    pub problems: Vec<String>,
    /// Blob copies found damaged or gone, marked so the next `backup run`
    /// stores their chunks again.
    pub marked_damaged: u64,
}

impl RepoVerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `repo`; `sample_percent` of the packs (100: all) are re-read.
/// `codec` (the platform's, with its key) also re-hashes chunks encrypted
/// with the platform key; without it their seal alone is checked.
pub async fn verify(
    repo: &Repo,
    codec: Option<&Codec>,
    sample_percent: f64,
    progress: &mut dyn VerifyProgress,
) -> BackupResult<RepoVerifyReport> {
    let lock = repo.lock(false).await?;
    let out = verify_locked(repo, codec, sample_percent, progress).await;
    lock.release().await;
    out
}

async fn verify_locked(
    repo: &Repo,
    codec: Option<&Codec>,
    sample_percent: f64,
    progress: &mut dyn VerifyProgress,
) -> BackupResult<RepoVerifyReport> {
    let mut report = RepoVerifyReport::default();
    let index = std::sync::Arc::new(repo.load_index().await?);
    let packs = repo.packs().await?;
    report.packs_total = packs.len() as u64;
    let listed: HashSet<&str> = packs.iter().map(|(id, _, _)| id.as_str()).collect();
    let mut indexed: Vec<&str> = index.values().map(|l| l.pack.as_str()).collect();
    indexed.sort_unstable();
    indexed.dedup();
    // Copies found damaged (or gone) are marked, so the next `backup run`
    // stores those chunks again from the live platform.
    let mut damaged: Vec<(String, ChunkId)> = Vec::new();
    for p in indexed.iter().filter(|p| !listed.contains(*p)) {
        report
            .problems
            .push(format!("pack {p} is in the index but missing"));
        damaged.extend(
            index
                .values()
                .filter(|l| l.pack == *p)
                .map(|l| (l.pack.clone(), l.id)),
        );
    }
    let marked = repo.damaged().await?;

    // The sample: that share of the packs, rounded up (a sample of a small
    // repository re-reads at least one pack), chosen at random.
    let frac = (sample_percent / 100.0).clamp(0.0, 1.0);
    let take = (frac * packs.len() as f64).ceil() as usize;
    let mut shuffled: Vec<(u64, &(String, String, u64))> =
        packs.iter().map(|p| (rand::random::<u64>(), p)).collect();
    shuffled.sort_by_key(|(r, _)| *r);
    let chosen: Vec<&(String, String, u64)> =
        shuffled.into_iter().take(take).map(|(_, p)| p).collect();
    progress.start(chosen.iter().map(|(_, _, s)| *s).sum());
    let plain = Codec::new(None, 0);
    for (id, _, size) in chosen {
        report.packs_checked += 1;
        let data = match repo.read_pack(id).await {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(format!("pack {id}: {e}"));
                progress.advance(*size);
                continue;
            }
        };
        let entries = match repo.pack_entries(id, &data) {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(e.to_string());
                progress.advance(*size);
                continue;
            }
        };
        for e in &entries {
            report.blobs_checked += 1;
            if !index.contains_key(&e.id) && !marked.contains(&(id.clone(), e.id)) {
                report.problems.push(format!(
                    "blob {} of pack {id} is missing from the index files",
                    e.id
                ));
            }
            let sealed = &data[e.offset as usize..(e.offset + e.len as u64) as usize];
            let checked = repo.open_blob(e, sealed).and_then(|stored| {
                let c = if e.flags & FLAG_AEAD != 0 {
                    codec
                } else {
                    Some(&plain)
                };
                if let Some(c) = c {
                    c.decode(e.id, &stored, e.flags, e.raw_len).map_err(|err| {
                        crate::BackupError::Damaged(format!("blob {} in pack {id}: {err}", e.id))
                    })?;
                }
                Ok(())
            });
            if let Err(err) = checked {
                report.problems.push(err.to_string());
                damaged.push((id.clone(), e.id));
            }
        }
        report.bytes_checked += data.len() as u64;
        progress.advance(*size);
    }

    for (pack, chunk) in &damaged {
        repo.mark_damaged(pack, chunk).await?;
    }
    report.marked_damaged = damaged.len() as u64;
    // Every snapshot must find its catalog and every chunk it references
    // (without the copies just marked: the snapshots they cost are named).
    let index = match damaged.is_empty() {
        true => index,
        false => std::sync::Arc::new(repo.load_index().await?),
    };
    for s in repo.snapshots().await? {
        report.snapshots += 1;
        let id = s.id.clone();
        let damaged: HashSet<String> = s.damaged.iter().cloned().collect();
        let view = match SnapshotView::open_with(repo, s, index.clone()).await {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(format!("snapshot {id}: {e}"));
                continue;
            }
        };
        let missing: Vec<ChunkId> = view
            .chunk_rows()
            .into_iter()
            .map(|r| r.id)
            .filter(|c| !index.contains_key(c) && !damaged.contains(&c.to_hex()))
            .collect();
        if !missing.is_empty() {
            report.problems.push(format!(
                "snapshot {id}: {} chunks are missing from the repository (first: {})",
                missing.len(),
                missing[0]
            ));
        }
    }
    Ok(report)
}
