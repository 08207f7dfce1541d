//! The HTTP admin port: `/healthz` (liveness and catalog reachability) and
//! `/metrics` (Prometheus text, with storage totals computed per scrape).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fulcrum_engine::Engine;

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(engine)
}

async fn healthz(State(engine): State<Engine>) -> impl IntoResponse {
    match engine.catalog().get_meta("encryption_key_check").await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::error!(error = %e, "health check: catalog unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "catalog unavailable\n")
        }
    }
}

async fn metrics(State(engine): State<Engine>) -> impl IntoResponse {
    let mut extra: Vec<(&str, &str, f64)> = Vec::new();
    if let Ok(s) = engine.stats().await {
        extra = vec![
            (
                "logical_bytes",
                "Bytes of all objects as clients see them",
                s.catalog.logical_bytes as f64,
            ),
            (
                "physical_bytes",
                "Bytes of all pack files on the backend",
                s.physical_bytes as f64,
            ),
            (
                "unique_chunk_bytes",
                "Plaintext bytes of all distinct chunks",
                s.catalog.unique_bytes as f64,
            ),
            (
                "stored_chunk_bytes",
                "Bytes of all distinct chunks as stored",
                s.catalog.stored_bytes as f64,
            ),
            ("objects", "Objects stored", s.catalog.objects as f64),
            ("packs", "Pack files", s.catalog.packs as f64),
            (
                "dedup_ratio",
                "Logical bytes per unique chunk byte",
                s.dedup_ratio,
            ),
            (
                "compression_ratio",
                "Unique chunk bytes per stored byte",
                s.compression_ratio,
            ),
        ];
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        engine.metrics().render(&extra),
    )
}
