//! Scheduled background jobs of a serving node (backup, scrub, lifecycle): each runs
//! at most once per period across the whole cluster. Every node checks
//! often; the last successful run is a catalog fact (`meta`), and the job
//! itself runs under the maintenance lease, so with N nodes a job still
//! runs once per period, on whichever node gets there first.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use fulcrum_catalog::now_ms;
use fulcrum_engine::{Engine, EngineError};
use tokio::sync::watch;
use tracing::{info, warn};

/// Starts `job` every `every` until `stop` turns true.
pub fn spawn_periodic<F, Fut>(
    engine: Engine,
    name: &'static str,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    job: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<String>> + Send,
{
    let key = format!("job_last_run:{name}");
    let tick = (every / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            let last: i64 = match engine.catalog().get_meta(&key).await {
                Ok(v) => v.and_then(|v| v.parse().ok()).unwrap_or(0),
                Err(e) => {
                    warn!(job = name, error = %e, "cannot read the job schedule");
                    continue;
                }
            };
            if now_ms() - last < every.as_millis() as i64 {
                continue;
            }
            match job().await {
                Ok(summary) => {
                    info!(job = name, "{summary}");
                    if let Err(e) = engine.catalog().set_meta(&key, &now_ms().to_string()).await {
                        warn!(job = name, error = %e, "cannot record the job run");
                    }
                }
                Err(e) if is_busy(&e) => {
                    info!(job = name, reason = %e, "another maintenance job is running; retrying later");
                }
                Err(e) => warn!(
                    job = name,
                    error = crate::error_chain(&e),
                    "scheduled job failed; retrying later"
                ),
            }
        }
    })
}

/// True when `e` says another maintenance job holds the lease: this run
/// did not happen, rather than failed.
pub fn is_busy(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Busy(_)))
        || matches!(
            e.downcast_ref::<fulcrum_backup::BackupError>(),
            Some(fulcrum_backup::BackupError::Engine(EngineError::Busy(_)))
        )
}

/// Records how a run of `job` ended (see `Engine::record_job`): `judge`
/// says whether a finished run was ok and what it found wrong; an error is
/// a failed run, unless the job did not run (busy). Failing to record is
/// logged, never the job's failure.
pub async fn record<T>(
    engine: &Engine,
    job: &str,
    res: &Result<T>,
    judge: impl Fn(&T) -> (bool, u64),
) {
    let (ok, problems) = match res {
        Ok(v) => judge(v),
        Err(e) if is_busy(e) => return,
        Err(_) => (false, 0),
    };
    if let Err(e) = engine.record_job(job, ok, problems).await {
        warn!(job, error = %e, "cannot record the job's outcome");
    }
}
