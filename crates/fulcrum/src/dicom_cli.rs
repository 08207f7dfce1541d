//! `fulcrum dicom import|export|send|hold|reindex`: bulk loading of Part
//! 10 files into the archive (parallel, resumable: identical instances are
//! skipped), byte-exact export of a study, forwarding a study to another
//! PACS, legal holds on studies and series, and re-indexing stored studies
//! from their headers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fulcrum_catalog::dicom::StudyPage;
use fulcrum_dicom::{Archive, ArchiveConfig, DicomError, Outcome, Scope, StoreContext};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use crate::commands::open;
use fulcrum::config::Settings;

/// Files imported at once.
const PARALLEL_FILES: usize = 4;

/// The files under `paths` (folders searched recursively, symbolic links
/// followed, each folder once: a link back up is no loop), and the paths
/// that could not be read with why (a broken link, a missing path, a
/// folder without permission): listed, and the rest imported. A DICOMDIR
/// named on the command line stands for the folder it indexes.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    unreadable: Vec<(PathBuf, String)>,
    folders: std::collections::HashSet<PathBuf>,
}

impl Walk {
    fn of(paths: &[PathBuf]) -> Self {
        let mut w = Walk::default();
        let named: Vec<PathBuf> = paths
            .iter()
            .map(|p| match p.file_name().and_then(|n| n.to_str()) {
                Some(n) if n.eq_ignore_ascii_case("DICOMDIR") && p.is_file() => p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                _ => p.clone(),
            })
            .collect();
        w.visit(&named);
        w
    }

    fn visit(&mut self, paths: &[PathBuf]) {
        for p in paths {
            let meta = match std::fs::metadata(p) {
                Ok(m) => m,
                Err(e) => {
                    self.unreadable.push((p.clone(), e.to_string()));
                    continue;
                }
            };
            if meta.is_dir() {
                // The folder itself, whatever link led here.
                let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                if !self.folders.insert(real) {
                    continue;
                }
                let entries = match std::fs::read_dir(p) {
                    Ok(r) => r,
                    Err(e) => {
                        self.unreadable.push((p.clone(), e.to_string()));
                        continue;
                    }
                };
                let mut entries: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                self.visit(&entries);
            } else if meta.is_file() {
                self.files.push(p.clone());
            }
        }
    }
}

/// The archive of the data dir; `create` lets an import start a new one.
pub async fn archive(s: &Settings, create: bool) -> Result<Archive> {
    let engine = if create {
        if !s.data_dir.exists() && s.catalog_url.is_none() {
            // A mistyped --data-dir must not pass unnoticed.
            eprintln!(
                "creating a new archive in {} (no Fulcrum data was there)",
                s.data_dir.display()
            );
        }
        fulcrum_store::create_private_dir(&s.data_dir)
            .with_context(|| format!("creating data dir {}", s.data_dir.display()))?;
        fulcrum_engine::Engine::open(s.command_engine_config()?).await?
    } else {
        open(s).await?
    };
    let cfg = ArchiveConfig {
        duplicates: s.dicom.duplicates,
        ..ArchiveConfig::default()
    };
    Ok(Archive::new(engine, cfg))
}

/// What storing a file did, and the study its instance left (if any).
type Imported = (Outcome, Option<String>);

/// Why a file was not imported.
#[derive(Debug)]
enum Failed {
    Open(String),
    Store(DicomError),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Open(e) => write!(f, "cannot open: {e}"),
            Failed::Store(e) => e.fmt(f),
        }
    }
}

/// Largest dataset without a file meta group that import reads (whole,
/// into memory, to learn its UIDs before it is stored).
const MAX_BARE_DATASET: u64 = 256 * 1024 * 1024;

/// Stores a file that is no Part 10 file if it is a dataset written
/// without preamble and meta group (older archives' files); else the
/// "not DICOM" error `why` stands.
async fn bare(
    archive: &Archive,
    path: &Path,
    ctx: &StoreContext,
    why: String,
) -> Result<fulcrum_dicom::StoredInstance, DicomError> {
    let not_dicom = || DicomError::NotDicom(why.clone());
    let mut head = [0u8; 8];
    let small = tokio::fs::metadata(path)
        .await
        .is_ok_and(|m| m.len() <= MAX_BARE_DATASET);
    let read = async {
        use tokio::io::AsyncReadExt;
        tokio::fs::File::open(path)
            .await?
            .read_exact(&mut head)
            .await
    };
    if !small || read.await.is_err() || fulcrum_dicom::part10::bare_dataset_syntax(&head).is_none()
    {
        return Err(not_dicom());
    }
    let data = tokio::fs::read(path).await.map_err(|_| not_dicom())?;
    archive
        .store_bare_dataset(fulcrum_types::DEFAULT_TENANT, data.into(), "IMPORT", ctx)
        .await
}

/// Imports every file under `paths`; returns the exit code (1 when a DICOM
/// file could not be stored; files that are not DICOM and DICOMDIRs, the
/// directory of a CD or DVD whose instances are files of their own, are
/// listed but are no failure).
pub async fn import(s: Settings, paths: Vec<PathBuf>) -> Result<u8> {
    let Walk {
        files, unreadable, ..
    } = Walk::of(&paths);
    let archive = archive(&s, true).await?;
    let tenant = fulcrum_types::DEFAULT_TENANT;
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let bytes = Arc::new(AtomicU64::new(0));
    let results: Vec<(PathBuf, Result<Imported, Failed>)> = futures::stream::iter(files)
        .map(|path| {
            let archive = archive.clone();
            let bar = bar.clone();
            let bytes = bytes.clone();
            async move {
                let res = async {
                    let ctx = StoreContext {
                        known_versions_stored: true,
                        ..StoreContext::default()
                    };
                    let f = tokio::fs::File::open(&path)
                        .await
                        .map_err(|e| Failed::Open(e.to_string()))?;
                    let staged = archive
                        .stage_file(tenant, tokio::io::BufReader::new(f), &ctx)
                        .await;
                    let r = match staged {
                        Ok(p) => p.commit_only().await,
                        Err(DicomError::NotDicom(why)) => bare(&archive, &path, &ctx, why).await,
                        Err(e) => Err(e),
                    }
                    .map_err(Failed::Store)?;
                    bytes.fetch_add(r.size, Ordering::Relaxed);
                    Ok((r.outcome, r.left))
                }
                .await;
                let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{:.1} MB/s", mb / secs));
                bar.inc(1);
                (path, res)
            }
        })
        .buffer_unordered(PARALLEL_FILES)
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut stored, mut skipped, mut replaced, mut not_dicom, mut dirs) = (0, 0, 0, 0, 0);
    let mut failed = unreadable.len();
    for (path, e) in &unreadable {
        outln!("FAILED: {}: cannot read: {e}", path.display());
    }
    // Studies imported instances left (files re-sent under new UIDs):
    // refreshed once each, after the import.
    let left: std::collections::BTreeSet<&String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.1.as_ref())
        .collect();
    for study in left {
        archive.refresh_left(tenant, study).await;
    }
    for (path, r) in &results {
        match r.as_ref().map(|(o, _)| o) {
            Ok(Outcome::Stored) => stored += 1,
            Ok(Outcome::AlreadyStored) => skipped += 1,
            Ok(Outcome::Replaced) => replaced += 1,
            Err(Failed::Store(DicomError::NotDicom(_))) => {
                not_dicom += 1;
                outln!("not DICOM: {}", path.display());
            }
            Err(Failed::Store(DicomError::MediaDirectory)) => {
                dirs += 1;
                outln!("DICOMDIR, skipped: {}", path.display());
            }
            Err(e) => {
                failed += 1;
                outln!("FAILED: {}: {e}", path.display());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    let dirs = match dirs {
        0 => String::new(),
        1 => ", 1 DICOMDIR skipped".into(),
        n => format!(", {n} DICOMDIRs skipped"),
    };
    outln!(
        "imported {stored} new, {replaced} replaced, {skipped} already stored, {not_dicom} not DICOM{dirs}, {failed} failed; {mb:.1} MB in {secs:.1} s ({:.0} instances/s, {:.1} MB/s)",
        (stored + skipped + replaced) as f64 / secs,
        mb / secs
    );
    archive.engine().close().await;
    Ok(if failed > 0 { 1 } else { 0 })
}

/// A study's instances; an error when it is not in the archive.
async fn study_instances(
    archive: &Archive,
    tenant: &str,
    study: &str,
) -> Result<Vec<fulcrum_dicom::InstanceRecord>> {
    let instances = archive
        .instances(tenant, &Scope::Study(study.to_string()))
        .await?;
    if instances.is_empty() {
        bail!("study {study} is not in the archive");
    }
    Ok(instances)
}

/// Writes a study's instances byte-exact as OUT/<study>/<series>/<sop>.dcm.
pub async fn export(s: Settings, study: String, out: PathBuf) -> Result<u8> {
    let archive = archive(&s, false).await?;
    let tenant = fulcrum_types::DEFAULT_TENANT;
    let instances = study_instances(&archive, tenant, &study).await?;
    let bar = ProgressBar::new(instances.len() as u64);
    let started = Instant::now();
    let mut bytes = 0u64;
    for rec in &instances {
        let dir = out.join(&rec.study_uid).join(&rec.series_uid);
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("{}.dcm", rec.sop_uid));
        bytes += write_instance(&archive, tenant, rec, &path).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    outln!(
        "exported {} instances ({:.1} MB) of study {study} to {} in {:.1?}",
        instances.len(),
        bytes as f64 / 1e6,
        out.display(),
        started.elapsed().max(Duration::from_millis(1))
    );
    archive.engine().close().await;
    Ok(0)
}

async fn write_instance(
    archive: &Archive,
    tenant: &str,
    rec: &fulcrum_dicom::InstanceRecord,
    path: &Path,
) -> Result<u64> {
    let tmp = path.with_extension("dcm.part");
    let mut f = tokio::fs::File::create(&tmp).await?;
    let mut stream = archive.read(tenant, rec, 0, rec.size as u64).await?;
    let mut n = 0u64;
    while let Some(b) = stream.next().await {
        let b = b?;
        n += b.len() as u64;
        f.write_all(&b).await?;
    }
    f.sync_all().await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(n)
}

/// Sends a study to another DICOM node (C-STORE SCU) over one association.
pub async fn send(s: Settings, study: String, to: String) -> Result<u8> {
    let dest: fulcrum_dicom::dimse::Node = to
        .parse()
        .map_err(|e| anyhow::anyhow!("--to {to:?}: {e}"))?;
    let archive = archive(&s, false).await?;
    let tenant = fulcrum_types::DEFAULT_TENANT;
    let instances = study_instances(&archive, tenant, &study).await?;
    let bar = ProgressBar::new(instances.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} instances  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let report = fulcrum_dicom::dimse::send(
        &archive,
        tenant,
        &instances,
        &s.dicom.ae_title,
        &dest,
        s.dicom_tls_client()?.as_ref(),
        |rec, res| {
            if let Err(e) = res {
                // Printed whether or not the bar is drawn (a pipe, cron):
                // `bar.println` shows nothing when it is hidden.
                bar.suspend(|| outln!("FAILED: {}: {e}", rec.sop_uid));
            }
            bar.inc(1);
        },
    )
    .await?;
    bar.finish_and_clear();
    let bytes: i64 = instances.iter().map(|i| i.size).sum();
    outln!(
        "sent study {study} to {dest}: {} completed, {} with warnings, {} failed; {:.1} MB in {:.1?}",
        report.completed,
        report.warning,
        report.failed,
        bytes as f64 / 1e6,
        started.elapsed()
    );
    archive.engine().close().await;
    Ok(if report.failed > 0 { 1 } else { 0 })
}

/// Puts or lifts (`release`) a legal hold on a study, or one series of it:
/// its instances and their kept versions cannot be deleted by any protocol
/// until the hold is lifted (a changed instance sent again is stored as a
/// new version; the held one is kept).
pub async fn hold(s: Settings, study: String, series: Option<String>, release: bool) -> Result<u8> {
    let archive = archive(&s, false).await?;
    let scope = match &series {
        Some(se) => Scope::Series(study.clone(), se.clone()),
        None => Scope::Study(study.clone()),
    };
    let out = archive
        .hold(fulcrum_types::DEFAULT_TENANT, &scope, !release)
        .await;
    archive.engine().close().await;
    let n = out?;
    let what = match &series {
        Some(se) => format!("series {se} of study {study}"),
        None => format!("study {study}"),
    };
    if release {
        outln!(
            "legal hold lifted from {n} objects of {what} (retention, if any, still applies; a hold on all of a study is lifted from a series released alone)"
        );
    } else {
        outln!(
            "legal hold on {what}: {n} objects (instances and kept versions) cannot be deleted until `fulcrum dicom hold --release`; instances stored later are not held"
        );
    }
    Ok(0)
}

/// Studies re-indexed at once.
const PARALLEL_STUDIES: usize = 4;

/// Re-reads the headers of every stored study (or one) and rewrites the
/// index rows that differ; returns the exit code (1 when a study could
/// not be re-indexed).
pub async fn reindex(s: Settings, study: Option<String>) -> Result<u8> {
    let archive = archive(&s, false).await?;
    let catalog = archive.engine().catalog().clone();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} studies  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let (mut studies, mut changed, mut series, mut instances) = (0u64, 0u64, 0u64, 0u64);
    let mut failed: Vec<String> = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = catalog
            .dicom_study_page(
                after.as_ref(),
                match study.as_deref() {
                    Some(uid) => StudyPage::One(uid),
                    None => StudyPage::All,
                },
                1000,
            )
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        let results: Vec<_> = futures::stream::iter(page)
            .map(|(tenant, uid)| {
                let archive = archive.clone();
                async move {
                    let r = archive.reindex_study(&tenant, &uid).await;
                    (tenant, uid, r)
                }
            })
            .buffer_unordered(PARALLEL_STUDIES)
            .collect()
            .await;
        for (tenant, uid, r) in results {
            studies += 1;
            bar.inc(1);
            match r {
                Ok(o) if o.raced => failed.push(format!(
                    "{tenant}/{uid}: instances kept arriving while it was read; run again"
                )),
                Ok(o) => {
                    changed += u64::from(o.study);
                    series += o.series;
                    instances += o.instances;
                }
                Err(e) => failed.push(format!("{tenant}/{uid}: {e}")),
            }
        }
        bar.set_message(format!("{changed} changed"));
        after = Some(last);
    }
    bar.finish_and_clear();
    if let (Some(uid), 0) = (&study, studies) {
        archive.engine().close().await;
        bail!("study {uid} is not in the archive");
    }
    for f in &failed {
        outln!("FAILED: {f}");
    }
    outln!(
        "re-indexed {studies} studies in {:.1?}: {changed} study rows, {series} series rows and {instances} instance rows changed; {} failed",
        started.elapsed(),
        failed.len()
    );
    archive.engine().close().await;
    Ok(if failed.is_empty() { 0 } else { 1 })
}
