//! Listeners: the S3 API on hyper (s3s service) and the admin router on
//! axum, plain or TLS (`tls::Incoming`), both stopping gracefully when
//! `shutdown` fires: no new connections, in-flight requests run to
//! completion. Both serve connections through one hyper builder whose
//! header timeout closes connections that send nothing: idle kept-alive
//! ones and request headers that never end (slowloris); without it 200
//! such sockets held 200 descriptors for as long as their peer wished.

use std::future::Future;

use fulcrum_engine::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use tracing::{info, warn};

use crate::s3::{Domains, S3Api, S3Credentials};
use crate::tls::{Incoming, Peer};

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client has to send a request's header, from when the
/// connection is ready for one (so also how long a kept-alive connection
/// may sit idle), unless configured. Clients reopen closed keep-alive
/// connections by themselves; nginx waits 60 s for a header, AWS S3
/// about 20 s.
pub const DEFAULT_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The connection builder both ports serve with.
fn conn_builder(header_timeout: std::time::Duration) -> ConnBuilder<TokioExecutor> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // HTTP/2: a connection whose peer stops answering pings is closed.
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    http
}

/// Waits for the connections `graceful` watches, at most SHUTDOWN_GRACE.
async fn drain(graceful: GracefulShutdown, what: &str) {
    info!("{what} listener closed; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still running after {SHUTDOWN_GRACE:?}; closing them (nothing they wrote is visible)");
    }
}

/// Serves the S3 API until `shutdown` completes, then waits for open
/// requests to finish.
pub async fn serve_s3(
    listener: Incoming,
    engine: Engine,
    tenant: &str,
    creds: &S3Credentials,
    domains: Domains,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let api = S3Api::new(engine.clone(), tenant);
    let service = api.clone().into_service(creds, domains.clone());
    let metrics_engine = engine.clone();
    serve_loop(listener, header_timeout, shutdown, "S3", move |_peer| {
        let svc = service.clone();
        let m = metrics_engine.clone();
        let (api, domains) = (api.clone(), domains.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
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
        })
    })
    .await
}

/// Serves the HTTP port until `shutdown` completes: `/healthz`,
/// `/metrics`, and the protocols nested in `extra` (DICOMweb).
pub async fn serve_http(
    listener: Incoming,
    engine: Engine,
    extra: axum::Router,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::admin::router(engine).merge(extra);
    serve_loop(listener, header_timeout, shutdown, "HTTP", move |peer| {
        // The local address lets DICOMweb build URLs with the right port
        // for clients whose Host header leaves it out.
        let on = crate::dicomweb::ServedOn {
            local: peer.local,
            tls: peer.tls,
        };
        let svc = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(on)));
        hyper_util::service::TowerToHyperService::new(svc)
    })
    .await
}

/// Accepts connections until `shutdown` completes, serving each with the
/// service `service_for` makes for its peer, then waits for open requests
/// to finish.
async fn serve_loop<S, B>(
    mut listener: Incoming,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()>,
    what: &str,
    mut service_for: impl FnMut(&Peer) -> S,
) -> std::io::Result<()>
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = conn_builder(header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            c = listener.next() => c,
            _ = &mut shutdown => break,
        };
        let svc = service_for(&peer);
        let conn = http
            .serve_connection_with_upgrades(TokioIo::new(socket), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        let remote = peer.remote;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain(graceful, what).await;
    Ok(())
}
