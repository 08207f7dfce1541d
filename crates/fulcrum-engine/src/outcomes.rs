//! The outcome of each maintenance job's last run (backup, scrub, verify,
//! gc, lifecycle), kept in the catalog (meta `job_outcome:<job>`), so that
//! `/metrics` on any node reports runs made by any node, by its schedule or
//! by the command line (cron): a dashboard can alert on a backup that has
//! not succeeded for a day, or on damage a scrub could not repair.

use fulcrum_catalog::now_ms;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::EngineResult;

/// The jobs whose outcomes are kept.
pub const JOBS: [&str; 5] = ["backup", "scrub", "verify", "gc", "lifecycle"];

/// A job's last run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// When the last run ended (ms since the epoch).
    pub finished_ms: i64,
    /// Whether it ended without error and found nothing wrong.
    pub ok: bool,
    /// What it found wrong: damaged chunks left, packs it could not check.
    pub problems: u64,
    /// When a run last ended ok (kept across failed runs). Kept under a
    /// key of its own; read here from records written before that.
    #[serde(default, skip_serializing)]
    pub last_ok_ms: Option<i64>,
}

fn meta_key(job: &str) -> String {
    format!("job_outcome:{job}")
}

/// The end of the last ok run, a key of its own: two runs ending at once
/// (verify from two machines) each write, and none reads what the other
/// is writing.
fn ok_key(job: &str) -> String {
    format!("job_last_ok:{job}")
}

impl Engine {
    /// Records the end of a run of `job`.
    pub async fn record_job(&self, job: &str, ok: bool, problems: u64) -> EngineResult<()> {
        let now = now_ms();
        let outcome = JobOutcome {
            finished_ms: now,
            ok,
            problems,
            last_ok_ms: None,
        };
        let text = serde_json::to_string(&outcome).unwrap_or_default();
        self.catalog().set_meta(&meta_key(job), &text).await?;
        if ok {
            self.catalog()
                .set_meta(&ok_key(job), &now.to_string())
                .await?;
        }
        Ok(())
    }

    /// The last run of each job of [`JOBS`] that was ever recorded, read
    /// in one catalog query (every /metrics scrape asks).
    pub async fn job_outcomes(&self) -> EngineResult<Vec<(&'static str, JobOutcome)>> {
        let meta = self.catalog().metas_with_prefix("job_").await?;
        Ok(JOBS
            .into_iter()
            .filter_map(|job| {
                let text = meta.get(&meta_key(job))?;
                let mut outcome: JobOutcome = serde_json::from_str(text).ok()?;
                let own = meta.get(&ok_key(job)).and_then(|v| v.parse().ok());
                outcome.last_ok_ms = own.or(outcome.last_ok_ms);
                Some((job, outcome))
            })
            .collect())
    }
}
