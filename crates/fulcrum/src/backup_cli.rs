//! `fulcrum backup …`: init, run, list, verify, restore (a whole snapshot
//! into a new data dir, or one bucket, object or DICOM study back into the
//! live platform) and forget with prune. Also the scheduled backup the
//! server runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fulcrum_backup::{KeepPolicy, Repo, RunOptions, Snapshot, SnapshotView};
use fulcrum_engine::{Engine, PutOptions};

use crate::commands::{human, open, Bar};
use fulcrum::config::Settings;

/// Where the repository is and which key opens it (over the environment
/// and the config file's `[backup]` table).
#[derive(Args, Clone)]
pub struct Target {
    /// Repository: a directory or s3://BUCKET[/ROOT]?endpoint=URL&region=R
    /// (Garage and MinIO need their region) [env: FULCRUM_BACKUP_REPO].
    #[arg(long, global = true)]
    repo: Option<String>,
    /// File holding the backup key (64 hex digits) [env:
    /// FULCRUM_BACKUP_KEY_FILE; or the key itself in FULCRUM_BACKUP_KEY].
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
}

impl Target {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(r) = &self.repo {
            s.backup.repo = Some(r.clone());
        }
        if let Some(k) = &self.key_file {
            s.backup.key_file = Some(k.clone());
            s.backup.key = None;
        }
    }
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Create an empty repository (`run` also creates one when needed).
    Init,
    /// Take a snapshot now; only what the repository lacks is sent.
    Run {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the snapshots.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read and re-hash the repository; exit 1 when damage is found.
    Verify {
        /// Re-read this share of the packs (the rest is checked by index).
        #[arg(long, default_value_t = 100.0)]
        sample: f64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot into a new data dir (--to), or a bucket, object
    /// or DICOM study of it back into the live platform.
    Restore {
        /// Snapshot id (a unique prefix) or "latest".
        #[arg(long)]
        snapshot: String,
        /// A new or empty directory that becomes a complete data dir.
        #[arg(long, conflicts_with_all = ["bucket", "study"])]
        to: Option<PathBuf>,
        /// Restore this bucket's objects (all, or --key / --prefix).
        #[arg(long)]
        bucket: Option<String>,
        /// Only this object of the bucket.
        #[arg(long, requires = "bucket")]
        key: Option<String>,
        /// Only the bucket's objects whose keys start with this.
        #[arg(long, requires = "bucket", default_value = "")]
        prefix: String,
        /// Restore this DICOM study (re-indexed as it is stored).
        #[arg(long, conflicts_with = "bucket")]
        study: Option<String>,
        /// The member hospital (tenant) the bucket or study belongs to.
        #[arg(long, default_value = fulcrum_types::DEFAULT_TENANT)]
        tenant: String,
    },
    /// Drop snapshots the policy does not keep, then prune unused data.
    Forget {
        /// Keep the newest N snapshots.
        #[arg(long, default_value_t = 0)]
        keep_last: usize,
        /// Keep the newest snapshot of each of the last N days.
        #[arg(long, default_value_t = 0)]
        keep_daily: usize,
        /// Keep the newest snapshot of each of the last N weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: usize,
        /// Keep the newest snapshot of each of the last N months.
        #[arg(long, default_value_t = 0)]
        keep_monthly: usize,
        /// Keep the newest snapshot of each of the last N years.
        #[arg(long, default_value_t = 0)]
        keep_yearly: usize,
        /// Only drop snapshot records; leave their data for a later prune.
        #[arg(long)]
        no_prune: bool,
        /// Show what would be dropped.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn repo(s: &Settings, create: bool) -> Result<Repo> {
    let (cfg, key) = s.backup.target()?;
    if create {
        let (repo, created) = Repo::open_or_init(&cfg, &key).await?;
        if created {
            eprintln!("initialized backup repository {}", repo.name());
        }
        Ok(repo)
    } else {
        Ok(Repo::open(&cfg, &key).await?)
    }
}

/// Small data-dir files a restored data dir needs (the S3 credentials).
fn data_dir_files(s: &Settings) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    let name = "s3-credentials.toml";
    if let Ok(text) = std::fs::read_to_string(s.data_dir.join(name)) {
        files.insert(name.to_string(), text);
    }
    files
}

/// One backup of `engine` into the configured repository; its outcome is
/// recorded for /metrics.
pub async fn backup_once(s: &Settings, engine: &Engine, bar: Option<&mut Bar>) -> Result<Snapshot> {
    let snap = async {
        let repo = repo(s, true).await?;
        let opts = RunOptions {
            files: data_dir_files(s),
        };
        Ok(match bar {
            Some(b) => fulcrum_backup::run(engine, &repo, &opts, b).await?,
            None => fulcrum_backup::run(engine, &repo, &opts, &mut ()).await?,
        })
    }
    .await;
    // Chunks left out because they are damaged make a run not ok.
    crate::jobs::record(engine, "backup", &snap, |s| {
        (s.damaged.is_empty(), s.damaged.len() as u64)
    })
    .await;
    snap
}

fn summary(s: &Snapshot) -> String {
    format!(
        "snapshot {} saved: {} objects, {} logical; {} new ({} blobs), {} reused, in {:.2}s",
        &s.id[..8],
        s.objects,
        human(s.logical_bytes as i64),
        human(s.new_bytes as i64),
        s.new_blobs,
        human(s.reused_bytes as i64),
        s.duration_ms as f64 / 1000.0
    )
}

/// Applies the configured keep policy after a scheduled backup.
pub async fn scheduled(s: &Settings, engine: &Engine) -> Result<String> {
    let snap = backup_once(s, engine, None).await?;
    let mut line = summary(&snap);
    if !s.backup.keep.is_empty() {
        let r = fulcrum_backup::forget(&repo(s, false).await?, &s.backup.keep, true, false).await?;
        line.push_str(&format!(
            "; forgot {} snapshots, freed {}",
            r.removed.len(),
            human(r.freed_bytes as i64)
        ));
    }
    Ok(line)
}

pub async fn run(s: Settings, cmd: BackupCommand) -> Result<u8> {
    match cmd {
        BackupCommand::Init => {
            let (cfg, key) = s.backup.target()?;
            let r = Repo::init(&cfg, &key).await?;
            outln!("initialized backup repository {} (id {})", r.name(), r.id());
            Ok(0)
        }
        BackupCommand::Run { json } => {
            let engine = open(&s).await?;
            let mut bar = Bar::new("backing up");
            let out = backup_once(&s, &engine, Some(&mut bar)).await;
            bar.0.finish_and_clear();
            engine.close().await;
            let snap = out?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&snap)?);
            } else {
                outln!("{}", summary(&snap));
            }
            if !snap.damaged.is_empty() {
                eprintln!(
                    "warning: {} damaged chunks were left out (run `fulcrum scrub`)",
                    snap.damaged.len()
                );
                return Ok(1);
            }
            Ok(0)
        }
        BackupCommand::List { json } => {
            let snaps = repo(&s, false).await?.snapshots().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&snaps)?);
            } else {
                outln!(
                    "{:<8}  {:<20}  {:>9}  {:>11}  {:>11}  host",
                    "id",
                    "time (UTC)",
                    "objects",
                    "logical",
                    "new"
                );
                for sn in &snaps {
                    let t = sn.time();
                    outln!(
                        "{:<8}  {:04}-{:02}-{:02} {:02}:{:02}:{:02}   {:>9}  {:>11}  {:>11}  {}",
                        &sn.id[..8],
                        t.year(),
                        t.month() as u8,
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second(),
                        sn.objects,
                        human(sn.logical_bytes as i64),
                        human(sn.new_bytes as i64),
                        sn.host
                    );
                }
                outln!("{} snapshots", snaps.len());
            }
            Ok(0)
        }
        BackupCommand::Verify { sample, json } => {
            let repo = repo(&s, false).await?;
            // The platform key, when configured, also re-hashes chunks
            // encrypted with it.
            let codec = s
                .engine_config()
                .ok()
                .and_then(|c| c.encryption_key)
                .map(|k| fulcrum_store::Codec::new(Some(&k), 1));
            let mut bar = Bar::new("verifying");
            let out = fulcrum_backup::verify(&repo, codec.as_ref(), sample, &mut bar).await;
            bar.0.finish_and_clear();
            let r = out?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for p in &r.problems {
                    outln!("problem: {p}");
                }
                outln!(
                    "{}: {} snapshots, {} of {} packs re-read ({} blobs, {})",
                    if r.is_clean() {
                        "repository is clean"
                    } else {
                        "REPOSITORY IS DAMAGED"
                    },
                    r.snapshots,
                    r.packs_checked,
                    r.packs_total,
                    r.blobs_checked,
                    human(r.bytes_checked as i64)
                );
                if r.marked_damaged > 0 {
                    outln!(
                        "{} damaged blob copies are marked: the next `fulcrum backup run` stores those chunks again from the platform, which makes every snapshot using them whole again (until then they restore without them: see the problems above)",
                        r.marked_damaged
                    );
                }
            }
            Ok(if r.is_clean() { 0 } else { 1 })
        }
        BackupCommand::Restore {
            snapshot,
            to,
            bucket,
            key,
            prefix,
            study,
            tenant,
        } => {
            let repo = repo(&s, false).await?;
            let started = Instant::now();
            if let Some(dir) = to {
                let mut bar = Bar::new("restoring");
                let out = fulcrum_backup::restore_to_dir(&repo, &snapshot, &dir, &mut bar).await;
                bar.0.finish_and_clear();
                let r = out?;
                outln!(
                    "restored snapshot {} into {}: {} objects ({}), {} chunks in {} packs, in {:.1}s; start it with: fulcrum serve --data-dir {}",
                    &r.snapshot[..8],
                    dir.display(),
                    r.objects,
                    human(r.logical_bytes as i64),
                    r.chunks,
                    r.packs,
                    started.elapsed().as_secs_f64(),
                    dir.display()
                );
                for why in &r.damaged_blobs {
                    eprintln!("damaged in the repository, left out: {why}");
                }
                if !r.missing_chunks.is_empty() {
                    eprintln!(
                        "warning: {} chunks could not be restored ({} damaged in the repository, the others when the snapshot was taken); everything else was; `fulcrum verify` on the restored data names the objects",
                        r.missing_chunks.len(),
                        r.damaged_blobs.len()
                    );
                    return Ok(1);
                }
                return Ok(0);
            }
            restore_live(
                &s, &repo, &snapshot, &tenant, bucket, key, &prefix, study, started,
            )
            .await
        }
        BackupCommand::Forget {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            no_prune,
            dry_run,
            json,
        } => {
            let policy = KeepPolicy {
                last: keep_last,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
                yearly: keep_yearly,
            };
            let repo = repo(&s, false).await?;
            let r = fulcrum_backup::forget(&repo, &policy, !no_prune, dry_run).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for id in &r.removed {
                    outln!(
                        "{} {}",
                        if dry_run { "would forget" } else { "forgot" },
                        &id[..8]
                    );
                }
                outln!(
                    "kept {} snapshots, {} {}; {} packs deleted, {} rewritten, {} freed",
                    r.kept.len(),
                    if dry_run { "would forget" } else { "forgot" },
                    r.removed.len(),
                    r.deleted_packs,
                    r.repacked_packs,
                    human(r.freed_bytes as i64)
                );
            }
            Ok(0)
        }
    }
}

/// Streams objects of a snapshot back into the live platform: a bucket's
/// objects as they were (replacing current ones), or a DICOM study stored
/// again through the archive so its index is rebuilt.
#[allow(clippy::too_many_arguments)]
async fn restore_live(
    s: &Settings,
    repo: &Repo,
    snapshot: &str,
    tenant: &str,
    bucket: Option<String>,
    key: Option<String>,
    prefix: &str,
    study: Option<String>,
    started: Instant,
) -> Result<u8> {
    let view = SnapshotView::open(repo, snapshot).await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    if let Some(uid) = study {
        let archive = crate::dicom_cli::archive(s, false).await?;
        let keys = view.study_keys(tenant, &uid);
        if keys.is_empty() {
            bail!(
                "snapshot {} holds no study {uid} for tenant {tenant}",
                &view.snapshot.id[..8]
            );
        }
        let codec = archive.engine().codec().clone();
        for k in keys {
            for o in view.objects(tenant, fulcrum_dicom::DICOM_BUCKET, Some(&k), "") {
                let reader = tokio_util::io::StreamReader::new(view.read(&o, codec.clone()));
                archive
                    .store_file(tenant, reader, &fulcrum_dicom::StoreContext::default())
                    .await
                    .with_context(|| format!("restoring instance {k}"))?;
                n += 1;
                bytes += o.size;
            }
        }
        archive.engine().close().await;
    } else if let Some(bucket) = bucket {
        let engine = open(s).await?;
        let objs = view.objects(tenant, &bucket, key.as_deref(), prefix);
        if objs.is_empty() {
            bail!(
                "snapshot {} holds no matching object in bucket {bucket}",
                &view.snapshot.id[..8]
            );
        }
        if engine.bucket(tenant, &bucket).await.is_err() {
            engine.create_bucket(tenant, &bucket).await?;
        }
        for o in objs {
            let metadata = serde_json::from_str(&o.metadata).unwrap_or_default();
            let reader = tokio_util::io::StreamReader::new(view.read(&o, engine.codec().clone()));
            engine
                .put_object(
                    tenant,
                    &bucket,
                    &o.key,
                    reader,
                    PutOptions {
                        content_type: o.content_type.clone(),
                        metadata,
                        expected_len: Some(o.size),
                        ..Default::default()
                    },
                )
                .await
                .with_context(|| format!("restoring {bucket}/{}", o.key))?;
            n += 1;
            bytes += o.size;
        }
        engine.close().await;
    } else {
        bail!(
            "say what to restore: --to DIR, --bucket NAME [--key K | --prefix P], or --study UID"
        );
    }
    outln!(
        "restored {n} objects ({}) from snapshot {} in {:.1}s",
        human(bytes as i64),
        &view.snapshot.id[..8],
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
