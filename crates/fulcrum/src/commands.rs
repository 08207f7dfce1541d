//! The offline commands: `stats`, `verify`, `gc` and `config init`. They
//! open the same engine the server uses and may run beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fulcrum_engine::{Engine, GcOptions, VerifyProgress};
use indicatif::{ProgressBar, ProgressStyle};

use fulcrum::config::{Settings, DEFAULT_TOML};

pub async fn open(s: &Settings) -> Result<Engine> {
    if s.catalog_url.is_none() && !s.data_dir.join("catalog.db").exists() {
        bail!(
            "no Fulcrum data in {} (set --data-dir or FULCRUM_DATA_DIR)",
            s.data_dir.display()
        );
    }
    Ok(Engine::open(s.command_engine_config()?).await?)
}

pub(crate) fn human(bytes: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

pub async fn stats(s: Settings, json: bool) -> Result<u8> {
    let engine = open(&s).await?;
    let st = engine.stats().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        outln!("objects            {}", st.catalog.objects);
        outln!(
            "logical bytes      {} ({})",
            st.catalog.logical_bytes,
            human(st.catalog.logical_bytes)
        );
        outln!(
            "physical bytes     {} ({})",
            st.physical_bytes,
            human(st.physical_bytes)
        );
        outln!(
            "unique chunk bytes {} ({})",
            st.catalog.unique_bytes,
            human(st.catalog.unique_bytes)
        );
        outln!("chunks             {}", st.catalog.chunks);
        outln!("packs              {}", st.catalog.packs);
        outln!("dedup ratio        {:.2}", st.dedup_ratio);
        outln!("compression ratio  {:.2}", st.compression_ratio);
        outln!("overall ratio      {:.2}", st.overall_ratio);
        for t in &st.tiers {
            outln!(
                "tier {:<13} {} packs, {} ({} chunk bytes stored, {} raw)",
                t.tier,
                t.packs,
                human(t.pack_bytes),
                human(t.stored_bytes),
                human(t.raw_bytes)
            );
        }
        outln!("(chunks and packs of deleted or replaced data count until `fulcrum gc` collects them, after its grace period)");
    }
    engine.close().await;
    Ok(0)
}

/// A progress bar counting bytes.
pub(crate) struct Bar(pub ProgressBar);

impl Bar {
    /// A bar labelled `what`, ticking on its own.
    pub fn new(what: &str) -> Self {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        Self(pb)
    }
}

impl VerifyProgress for Bar {
    fn start(&mut self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }
}

pub async fn verify(s: Settings, json: bool) -> Result<u8> {
    let engine = open(&s).await?;
    let started = Instant::now();
    let mut bar = Bar::new("verifying");
    let report = engine.verify(&mut bar).await.map_err(anyhow::Error::from);
    crate::jobs::record(&engine, "verify", &report, |r| {
        (r.is_clean(), r.bad_chunks + r.unchecked_packs)
    })
    .await;
    let report = report?;
    bar.0.finish_and_clear();
    engine.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            outln!("problem: {p}");
        }
        for o in &report.damaged_objects {
            outln!("damaged: {o}");
        }
        outln!(
            "verified {} packs, {} chunks, {} in {:.1}s: {}",
            report.packs,
            report.chunks,
            human(report.bytes as i64),
            started.elapsed().as_secs_f64(),
            if report.is_clean() {
                "all clean".to_string()
            } else {
                format!(
                    "{} damaged chunks, {} damaged objects{}",
                    report.bad_chunks,
                    report.damaged_objects.len(),
                    unchecked(report.unchecked_packs)
                )
            }
        );
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

pub async fn gc(s: Settings, opts: GcOptions, json: bool) -> Result<u8> {
    let engine = open(&s).await?;
    let started = Instant::now();
    let report = gc_once(&engine, &opts).await?;
    engine.leave().await?;
    engine.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{} in {:.1}s",
            gc_summary(&report),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// `fulcrum gc`'s defaults, also the scheduled GC's: packs and orphans
/// younger than this are kept ...
pub const GC_GRACE_SECS: u64 = 900;
/// ... and multipart uploads begun this many days ago are aborted.
pub const GC_ABORT_UPLOADS_DAYS: u64 = 7;

/// The default options of `fulcrum gc` (and of the server's scheduled
/// one): abandoned multipart uploads are aborted after `days`.
pub fn gc_options(grace_secs: u64, days: u64) -> GcOptions {
    GcOptions {
        grace: Duration::from_secs(grace_secs),
        abort_uploads_after: (days > 0)
            .then(|| Duration::from_secs(days.saturating_mul(24 * 3600))),
        ..Default::default()
    }
}

/// One GC run of `engine`; its outcome is recorded for /metrics.
pub async fn gc_once(engine: &Engine, opts: &GcOptions) -> Result<fulcrum_engine::GcReport> {
    let report = engine.gc(opts).await.map_err(anyhow::Error::from);
    crate::jobs::record(engine, "gc", &report, |_| (true, 0)).await;
    report
}

pub fn gc_summary(report: &fulcrum_engine::GcReport) -> String {
    format!(
        "gc: {} abandoned uploads aborted, {} chunks deleted, {} packs repacked ({} chunks moved, {} written), {} packs and {} orphans deleted ({} freed)",
        report.aborted_uploads,
        report.deleted_chunks,
        report.repacked_packs,
        report.moved_chunks,
        human(report.written_bytes as i64),
        report.deleted_packs,
        report.deleted_orphans,
        human(report.freed_bytes as i64),
    )
}

/// What one scrub found and mended.
#[derive(Debug, serde::Serialize)]
pub struct ScrubOutcome {
    #[serde(flatten)]
    pub report: fulcrum_engine::VerifyReport,
    /// Chunks replaced by a verified copy from the backup repository.
    pub repaired_chunks: u64,
    /// Chunks still damaged, and the objects they belong to.
    pub unrepaired_chunks: u64,
    pub unrepaired_objects: Vec<String>,
    /// Why no repair was attempted, when none was.
    pub repair_note: Option<String>,
}

/// One scrub of `engine`, repairing from the configured backup
/// repository; its outcome is recorded for /metrics.
pub async fn scrub_once(
    s: &Settings,
    engine: &Engine,
    rate_mib: Option<u64>,
    repair: bool,
    progress: &mut dyn VerifyProgress,
) -> Result<ScrubOutcome> {
    let out = scrub_and_repair(s, engine, rate_mib, repair, progress).await;
    crate::jobs::record(engine, "scrub", &out, |o| {
        let left = o.unrepaired_chunks + o.report.unchecked_packs;
        (left == 0, left)
    })
    .await;
    out
}

async fn scrub_and_repair(
    s: &Settings,
    engine: &Engine,
    rate_mib: Option<u64>,
    repair: bool,
    progress: &mut dyn VerifyProgress,
) -> Result<ScrubOutcome> {
    let report = engine
        .scrub(rate_mib.map(|m| m * 1024 * 1024), progress)
        .await?;
    let bad = report.bad_chunk_ids.clone();
    let mut out = ScrubOutcome {
        repaired_chunks: 0,
        unrepaired_chunks: bad.len() as u64,
        unrepaired_objects: report.damaged_objects.clone(),
        repair_note: None,
        report,
    };
    if bad.is_empty() || !repair {
        return Ok(out);
    }
    let copies = match s.backup.target() {
        Err(e) => {
            out.repair_note = Some(format!("no repair source: {}", crate::error_chain(&e)));
            return Ok(out);
        }
        Ok((cfg, key)) => {
            fulcrum_backup::Repo::open(&cfg, &key)
                .await?
                .chunk_copies(&bad)
                .await?
        }
    };
    let repaired: std::collections::HashSet<_> =
        engine.repair_chunks(copies).await?.into_iter().collect();
    let left: Vec<_> = bad.into_iter().filter(|c| !repaired.contains(c)).collect();
    out.repaired_chunks = repaired.len() as u64;
    out.unrepaired_chunks = left.len() as u64;
    out.unrepaired_objects = engine.catalog().objects_referencing(&left).await?;
    Ok(out)
}

pub async fn scrub(s: Settings, rate_mib: Option<u64>, repair: bool, json: bool) -> Result<u8> {
    let engine = open(&s).await?;
    let mut bar = Bar::new("scrubbing");
    let out = scrub_once(&s, &engine, rate_mib, repair, &mut bar).await;
    bar.0.finish_and_clear();
    engine.close().await;
    let out = out?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &out.report.problems {
            outln!("problem: {p}");
        }
        if let Some(n) = &out.repair_note {
            outln!("note: {n}");
        }
        for o in &out.unrepaired_objects {
            outln!("unrepaired: {o}");
        }
        outln!("{}", scrub_summary(&out));
    }
    Ok(
        if out.unrepaired_chunks == 0 && out.report.unchecked_packs == 0 {
            0
        } else {
            1
        },
    )
}

pub fn scrub_summary(out: &ScrubOutcome) -> String {
    format!(
        "scrub: {} packs, {} chunks, {} checked; {} damaged, {} repaired from backup, {} unrepaired ({} objects){}",
        out.report.packs,
        out.report.chunks,
        human(out.report.bytes as i64),
        out.report.bad_chunks,
        out.repaired_chunks,
        out.unrepaired_chunks,
        out.unrepaired_objects.len(),
        unchecked(out.report.unchecked_packs)
    )
}

/// The summary's note on packs whose backend could not be reached.
fn unchecked(packs: u64) -> String {
    match packs {
        0 => String::new(),
        n => format!(
            "; {n} packs unchecked: their backend could not be reached (see the problems above)"
        ),
    }
}

pub fn config_init(path: &Path, force: bool) -> Result<u8> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(path, DEFAULT_TOML)?;
    outln!("wrote {}", path.display());
    Ok(0)
}
