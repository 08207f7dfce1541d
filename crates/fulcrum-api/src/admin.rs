//! The HTTP admin port: `/healthz` (readiness for load balancers: the
//! catalog and the pack backend answer), `/livez` (the process answers:
//! for restart-on-failure probes, which a backend outage must not
//! trigger on every node) and
//! `/metrics` (Prometheus text, with storage totals computed per scrape).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fulcrum_engine::{Engine, Gauge, JobOutcome};

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(engine)
}

/// How long the health check waits for the pack backend.
const BACKEND_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the health check waits for the catalog: a stopped PostgreSQL
/// made it wait for the pool's 30 s acquire timeout, past a load
/// balancer's probe timeout (the node was dropped as unreachable, not as
/// unhealthy, and the probes piled up).
const CATALOG_CHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// 200 when the catalog answers and, for a remote pack backend, a listing
/// of one entry does (a refused connection, a rejected key, a wrong
/// region or a bucket that does not exist is no answer), so a load balancer stops
/// sending work to a node that cannot store or read anything.
async fn healthz(State(engine): State<Engine>) -> impl IntoResponse {
    let catalog = tokio::time::timeout(
        CATALOG_CHECK,
        engine.catalog().get_meta("encryption_key_check"),
    )
    .await;
    let problem = match catalog {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer in {} s", CATALOG_CHECK.as_secs())),
    };
    if let Some(e) = problem {
        tracing::error!(error = %e, "health check: catalog unreachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "catalog unavailable\n");
    }
    if let Some(e) = backend_problem(&engine).await {
        tracing::error!(error = %e, "health check: pack backend unavailable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "pack backend unavailable\n",
        );
    }
    (StatusCode::OK, "ok\n")
}

/// Why a remote pack backend cannot be used now (a listing of one entry
/// fails or does not answer in time, or it is another platform's), or
/// `None`; a local one is not probed, only checked to be this platform's.
pub async fn backend_problem(engine: &Engine) -> Option<String> {
    let backend = engine.backend();
    if !backend.is_local() {
        match tokio::time::timeout(BACKEND_CHECK, backend.probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(e.to_string()),
            Err(_) => return Some(format!("no answer in {} s", BACKEND_CHECK.as_secs())),
        }
    }
    // A store that answers may still be another platform's.
    match tokio::time::timeout(BACKEND_CHECK, engine.check_platform()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer in {} s", BACKEND_CHECK.as_secs())),
    }
}

async fn metrics(State(engine): State<Engine>) -> impl IntoResponse {
    let mut gauges = Vec::new();
    if let Ok(s) = engine.stats().await {
        gauges = vec![
            Gauge::one(
                "logical_bytes",
                "Bytes of all objects as clients see them",
                s.catalog.logical_bytes as f64,
            ),
            Gauge::one(
                "physical_bytes",
                "Bytes of all pack files on the backend",
                s.physical_bytes as f64,
            ),
            Gauge::one(
                "unique_chunk_bytes",
                "Plaintext bytes of all distinct chunks",
                s.catalog.unique_bytes as f64,
            ),
            Gauge::one(
                "stored_chunk_bytes",
                "Bytes of all distinct chunks as stored",
                s.catalog.stored_bytes as f64,
            ),
            Gauge::one("objects", "Objects stored", s.catalog.objects as f64),
            Gauge::one("packs", "Pack files", s.catalog.packs as f64),
            Gauge::one(
                "dedup_ratio",
                "Logical bytes per unique chunk byte",
                s.dedup_ratio,
            ),
            Gauge::one(
                "compression_ratio",
                "Unique chunk bytes per stored byte",
                s.compression_ratio,
            ),
        ];
    }
    if let Some((used, bound)) = engine.read_cache_usage() {
        gauges.push(Gauge::one(
            "read_cache_bytes",
            "Bytes of decoded chunks the read cache holds",
            used as f64,
        ));
        gauges.push(Gauge::one(
            "read_cache_limit_bytes",
            "Bound of the read cache (read_cache_mib)",
            bound as f64,
        ));
    }
    gauges.extend(job_gauges(&engine).await);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        engine.metrics().render(&gauges),
    )
}

/// The last run of each maintenance job, whichever node or command ran it
/// (kept in the catalog): when it ended, whether it was ok, what it found
/// wrong, when one last succeeded. Labelled `task`: Prometheus sets `job`
/// itself (to the scrape job) and would rename ours. Jobs never run have
/// no samples.
async fn job_gauges(engine: &Engine) -> Vec<Gauge> {
    let runs: Vec<(String, JobOutcome)> = match engine.job_outcomes().await {
        Ok(runs) => runs
            .into_iter()
            .map(|(job, o)| (format!("task=\"{job}\""), o))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the maintenance outcomes");
            Vec::new()
        }
    };
    let gauge = |name, help, value: &dyn Fn(&JobOutcome) -> Option<f64>| Gauge {
        name,
        help,
        samples: runs
            .iter()
            .filter_map(|(l, o)| value(o).map(|v| (l.clone(), v)))
            .collect(),
    };
    let secs = |ms: i64| ms as f64 / 1000.0;
    vec![
        gauge(
            "maintenance_last_run_timestamp_seconds",
            "When the job's last run ended",
            &|o| Some(secs(o.finished_ms)),
        ),
        gauge(
            "maintenance_last_run_ok",
            "1 when the job's last run ended without error and found nothing wrong",
            &|o| Some(if o.ok { 1.0 } else { 0.0 }),
        ),
        gauge(
            "maintenance_last_run_problems",
            "What the job's last run found wrong (damaged chunks left, packs unchecked)",
            &|o| Some(o.problems as f64),
        ),
        gauge(
            "maintenance_last_success_timestamp_seconds",
            "When a run of the job last ended ok",
            &|o| o.last_ok_ms.map(secs),
        ),
    ]
}
