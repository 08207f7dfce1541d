//! The DIMSE listener: association acceptance (called AE title, calling AE
//! allow-list, presentation contexts for every supported transfer syntax,
//! SCU/SCP role selection for C-GET), one task per association with
//! TCP_NODELAY, and a graceful shutdown that lets associations finish for
//! a bounded time before aborting them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::MINIMUM_PDU_SIZE;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::association::{Io, Link, LinkError, Policy, Wire};
use super::session::{Session, Shared};
use super::DimseConfig;
use crate::Archive;

/// How long associations in flight may go on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest PDU we advertise, whatever the configuration says.
const MAX_PDU_CAP: u32 = 16 * 1024 * 1024;

fn policy(cfg: &DimseConfig) -> Policy {
    Policy {
        ae_title: cfg.ae_title.clone(),
        allowed: cfg.allowed_aets.clone(),
        max_pdu: cfg.max_pdu.clamp(MINIMUM_PDU_SIZE.max(16_378), MAX_PDU_CAP),
        timeout: cfg.idle_timeout,
    }
}

/// Where the listener takes connections from: a TCP listener, or (DICOM
/// over TLS, PS3.15 B.1) one that hands over connections whose TLS
/// handshake is done.
pub trait Accept: Send {
    /// The next connection and its peer address.
    fn accept(
        &mut self,
    ) -> impl Future<Output = std::io::Result<(Pin<Box<dyn Io>>, SocketAddr)>> + Send;
    /// What the listener is bound to, for the log.
    fn describe(&self) -> String;
}

impl Accept for TcpListener {
    async fn accept(&mut self) -> std::io::Result<(Pin<Box<dyn Io>>, SocketAddr)> {
        let (sock, addr) = TcpListener::accept(self).await?;
        if let Err(e) = sock.set_nodelay(true) {
            warn!(%addr, "TCP_NODELAY not set: {e}");
        }
        Ok((Box::pin(sock), addr))
    }

    fn describe(&self) -> String {
        self.local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// Connections (associations and those still negotiating) served at once;
/// more are closed as they come.
pub const MAX_CONNECTIONS: usize = 512;

/// Serves DIMSE on `listener` until `shutdown` completes, then waits for
/// associations in flight (up to a grace period) and aborts the rest.
pub async fn serve(
    mut listener: impl Accept,
    archive: Archive,
    cfg: DimseConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let policy = Arc::new(policy(&cfg));
    let shared = Arc::new(Shared { archive, cfg });
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    info!(addr = %listener.describe(), ae = %shared.cfg.ae_title, "DIMSE listening");
    let (mut refused, mut last_refusal) = (0u64, None);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done),
            accepted = listener.accept() => match accepted {
                Ok((sock, addr)) if tasks.len() >= MAX_CONNECTIONS => {
                    // Closed at once: open descriptors stay bounded, and the
                    // HTTP and S3 ports keep theirs (20,000 idle connections
                    // had taken every descriptor of the process).
                    drop(sock);
                    refused += 1;
                    if last_refusal.is_none_or(|t: tokio::time::Instant| t.elapsed() >= Duration::from_secs(10)) {
                        warn!(%addr, open = tasks.len(), refused, "DIMSE connection limit reached: new connections are closed");
                        last_refusal = Some(tokio::time::Instant::now());
                    }
                }
                Ok((sock, addr)) => {
                    let (policy, shared, stop) = (policy.clone(), shared.clone(), stop.clone());
                    tasks.spawn(association(sock, addr, policy, shared, stop));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off a little.
                    warn!("DIMSE accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    if !tasks.is_empty() {
        info!(
            associations = tasks.len(),
            "DIMSE shutting down: waiting for associations in flight"
        );
    }
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            done = tasks.join_next() => match done {
                Some(done) => reap(done),
                None => return Ok(()),
            },
        }
    }
    warn!(
        associations = tasks.len(),
        "DIMSE shutdown: aborting associations still open"
    );
    stop.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(done) = tasks.join_next().await {
            reap(done);
        }
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
    Ok(())
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!("an association task panicked: {e}");
        }
    }
}

async fn association(
    sock: Pin<Box<dyn Io>>,
    addr: SocketAddr,
    policy: Arc<Policy>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let link = tokio::select! {
        () = stop.cancelled() => return,
        r = Link::accept(sock, &policy) => match r {
            Ok(link) => link,
            Err(LinkError::Rejected(reason)) => {
                warn!(%addr, "association rejected: {reason}");
                return;
            }
            // Port probes connect and hang up without a word.
            Err(LinkError::Closed) => {
                debug!(%addr, "connection closed before an association request");
                return;
            }
            // A silent or garbled peer (a TCP health check that waits):
            // its own problem, not the operator's.
            Err(e) => {
                info!(%addr, "association not established: {e}");
                return;
            }
        },
    };
    info!(peer = %link.peer_ae, %addr, contexts = link.contexts.len(), max_pdu = link.peer_max(), "association accepted");
    Session::new(link, shared, addr).run(stop).await;
}
