//! `fulcrum tier apply` and the server's background lifecycle job: apply
//! the lifecycle rules (config file and S3 bucket rules) under the
//! maintenance lease, with a progress bar and a summary line, or in the
//! background every `lifecycle_interval`.

use std::time::Duration;

use anyhow::Result;
use fulcrum_engine::{Engine, TierReport};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::commands::{human, open, Bar};
use fulcrum::config::{Settings, TierSettings};

pub async fn apply(s: Settings, dry_run: bool, json: bool) -> Result<u8> {
    let engine = open(&s).await?;
    let report = if dry_run || json {
        engine.tier_apply(&s.tier.rules, dry_run, &mut ()).await
    } else {
        let mut bar = Bar::new("archiving");
        let r = engine.tier_apply(&s.tier.rules, false, &mut bar).await;
        bar.0.finish_and_clear();
        r
    };
    let report = report.map_err(anyhow::Error::from);
    if !dry_run {
        crate::jobs::record(&engine, "lifecycle", &report, |_| (true, 0)).await;
    }
    engine.leave().await?;
    engine.close().await;
    let report = report?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(0)
}

fn print_report(r: &TierReport) {
    for p in &r.rules {
        outln!(
            "rule {:<40} {:>8} objects {:>12}",
            p.rule,
            p.objects,
            human(p.bytes as i64)
        );
    }
    if r.dry_run {
        outln!(
            "dry run: {} objects ({}) would move to the archive tier",
            r.objects,
            human(r.bytes as i64)
        );
        return;
    }
    let m = &r.moved;
    outln!(
        "tier apply: {} objects ({}) archived: {} chunks moved, {} read from hot, {} written to the archive in {} packs{} in {:.1}s",
        r.archived_objects,
        human(r.bytes as i64),
        m.chunks,
        human(m.read_bytes as i64),
        human(m.written_bytes as i64),
        m.packs_written,
        if m.damaged_chunks > 0 {
            format!(", {} damaged chunks left in place (see fulcrum verify)", m.damaged_chunks)
        } else {
            String::new()
        },
        r.seconds
    );
}

/// Schedules the lifecycle rules every `lifecycle_interval` as a server
/// job (`jobs::spawn_periodic`: once per period across a cluster, under
/// the maintenance lease); `None` without an archive tier or an interval.
pub fn schedule_lifecycle(
    engine: &Engine,
    t: &TierSettings,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some(interval) = t.interval else {
        info!("lifecycle_interval is off: lifecycle rules apply with `fulcrum tier apply` only");
        return None;
    };
    if !engine.has_archive() {
        if !t.rules.is_empty() {
            warn!(
                "lifecycle rules are configured but there is no archive tier: set archive_backend"
            );
        }
        return None;
    }
    let (rules, job_engine) = (t.rules.clone(), engine.clone());
    Some(crate::jobs::spawn_periodic(
        engine.clone(),
        "lifecycle",
        interval.max(Duration::from_secs(1)),
        stop,
        move || {
            let (rules, engine) = (rules.clone(), job_engine.clone());
            async move {
                let r = engine
                    .tier_apply(&rules, false, &mut ())
                    .await
                    .map_err(anyhow::Error::from);
                crate::jobs::record(&engine, "lifecycle", &r, |_| (true, 0)).await;
                let r = r?;
                Ok(format!(
                    "lifecycle: {} objects ({}) moved to the archive tier, {} written",
                    r.archived_objects,
                    human(r.bytes as i64),
                    human(r.moved.written_bytes as i64)
                ))
            }
        },
    ))
}
