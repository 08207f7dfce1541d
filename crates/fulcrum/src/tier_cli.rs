//! `fulcrum tier apply` and the server's background lifecycle job: apply
//! the lifecycle rules (config file and S3 bucket rules) under the
//! maintenance lease, with a progress bar and a summary line, or in the
//! background every `lifecycle_interval`.

use std::time::Duration;

use anyhow::Result;
use fulcrum_engine::{Engine, EngineError, TierReport};
use tokio::sync::watch;
use tracing::{debug, info, warn};

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
    engine.leave().await?;
    engine.close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(0)
}

fn print_report(r: &TierReport) {
    for p in &r.rules {
        println!(
            "rule {:<40} {:>8} objects {:>12}",
            p.rule,
            p.objects,
            human(p.bytes as i64)
        );
    }
    if r.dry_run {
        println!(
            "dry run: {} objects ({}) would move to the archive tier",
            r.objects,
            human(r.bytes as i64)
        );
        return;
    }
    let m = &r.moved;
    println!(
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

/// Applies the lifecycle rules every `interval` until `stop`; does
/// nothing without an archive tier or an interval.
pub fn spawn_lifecycle(
    engine: Engine,
    t: &TierSettings,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (rules, interval) = (t.rules.clone(), t.interval);
    tokio::spawn(async move {
        let Some(interval) = interval else {
            info!(
                "lifecycle_interval is off: lifecycle rules apply with `fulcrum tier apply` only"
            );
            return;
        };
        if !engine.has_archive() {
            if !rules.is_empty() {
                warn!("lifecycle rules are configured but there is no archive tier: set archive_backend");
            }
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            match engine.tier_apply(&rules, false, &mut ()).await {
                Ok(r) if r.objects > 0 => info!(
                    objects = r.archived_objects,
                    bytes = r.bytes,
                    written = r.moved.written_bytes,
                    "lifecycle: data moved to the archive tier"
                ),
                Ok(_) => debug!("lifecycle: nothing to move"),
                Err(EngineError::Busy(by)) => debug!(%by, "lifecycle: maintenance runs elsewhere"),
                Err(e) => warn!(error = %e, "lifecycle run failed"),
            }
        }
    })
}
