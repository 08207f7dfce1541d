//! Listeners: the S3 API on hyper (s3s service) and the admin router on
//! axum, plain or TLS (`tls::Incoming`), both stopping gracefully when
//! `shutdown` fires: no new connections, in-flight requests run to
//! completion.

use std::future::Future;

use fulcrum_engine::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use tracing::{info, warn};

use crate::s3::{Domains, S3Api, S3Credentials};
use crate::tls::Incoming;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the S3 API until `shutdown` completes, then waits for open
/// requests to finish.
pub async fn serve_s3(
    mut listener: Incoming,
    engine: Engine,
    tenant: &str,
    creds: &S3Credentials,
    domains: Domains,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let api = S3Api::new(engine.clone(), tenant);
    let service = api.clone().into_service(creds, domains.clone());
    let metrics_engine = engine.clone();
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            c = listener.next() => c,
            _ = &mut shutdown => break,
        };
        let peer = peer.remote;
        let svc = service.clone();
        let m = metrics_engine.clone();
        let (api, domains) = (api.clone(), domains.clone());
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let svc = svc.clone();
            let m = m.clone();
            let (api, domains) = (api.clone(), domains.clone());
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            async move {
                let id = crate::s3::new_request_id();
                // Browsers' cross-origin requests: preflights are answered
                // here, allowed requests get CORS headers on their answer.
                let cors = crate::s3::CorsAsk::of(&req).map(|ask| (domains.bucket_of(&req), ask));
                let res = if req.method() == hyper::Method::OPTIONS {
                    Ok(match &cors {
                        Some((bucket, ask)) => api.preflight(bucket.as_deref(), ask).await,
                        None => crate::s3::bad_preflight(),
                    })
                } else {
                    let mut res = match crate::s3::refuse_early(&req) {
                        Some(refusal) => Ok(refusal),
                        None => svc.call(req.map(s3s::Body::from)).await,
                    };
                    if let (Ok(r), Some((Some(bucket), ask))) = (&mut res, &cors) {
                        if let Some(h) = api.cors_headers(bucket, ask).await {
                            r.headers_mut().extend(h);
                        }
                    }
                    res
                };
                let res = res.map(|r| crate::s3::stamp(r, &id));
                let status = match &res {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".to_string(),
                };
                // The server's own failures are worth an operator's look;
                // a client's mistake or an operation Fulcrum does not
                // offer (501) is not.
                let ours = (status.starts_with('5') && status != "501") || status == "error";
                if ours {
                    tracing::warn!(request_id = %id, %method, %path, %status, "S3 request failed");
                } else if !status.starts_with(['1', '2', '3']) {
                    tracing::debug!(request_id = %id, %method, %path, %status, "S3 request failed");
                }
                m.metrics().request("s3", &method, &status);
                res
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    info!("S3 listener closed; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still running after {SHUTDOWN_GRACE:?}; closing them (nothing they wrote is visible)");
    }
    Ok(())
}

/// Serves the HTTP port until `shutdown` completes: `/healthz`,
/// `/metrics`, and the protocols nested in `extra` (DICOMweb).
pub async fn serve_http(
    listener: Incoming,
    engine: Engine,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::admin::router(engine).merge(extra);
    // The local address lets DICOMweb build URLs with the right port for
    // clients whose Host header leaves it out.
    let app = app.into_make_service_with_connect_info::<crate::dicomweb::ServedOn>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
