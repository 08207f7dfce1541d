//! HTTPS for the S3 and HTTP ports: a certificate chain and private key in
//! PEM files (`[tls]` in the config, `FULCRUM_TLS_CERT` / `FULCRUM_TLS_KEY`)
//! turn both listeners into TLS 1.2/1.3 ones (rustls, with the aws-lc-rs
//! provider already in the tree for the S3 backend's client). Handshakes
//! run in their own tasks, bounded in time, so a slow or silent client
//! never holds up accepting others; what fails a handshake is logged and
//! dropped. `Incoming` is the one listener type both servers accept from,
//! plain or TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {msg}")]
    Certificate { path: PathBuf, msg: String },
    #[error("TLS private key {path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("TLS certificate and key do not go together: {0}")]
    Config(String),
}

/// A loaded certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct Tls(Arc<ServerConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// PEM certificates: a chain, or a set of trust anchors.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |msg: String| TlsError::Certificate {
        path: path.into(),
        msg,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.into(),
        msg: e.to_string(),
    })
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) and checks that they match.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        Self::build(cert, key, None)
    }

    /// Like [`Tls::from_pem_files`], and clients must present a certificate
    /// that a CA of `client_ca` signed (mutual TLS, as IHE ATNA secure
    /// nodes authenticate each other).
    pub fn requiring_clients(cert: &Path, key: &Path, client_ca: &Path) -> Result<Tls, TlsError> {
        Self::build(cert, key, Some(client_ca))
    }

    fn build(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, TlsError> {
        let chain = read_certificates(cert)?;
        let key_der = read_key(key)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certificates(ca)? {
                    roots.add(c).map_err(|e| TlsError::Certificate {
                        path: ca.into(),
                        msg: e.to_string(),
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(chain, key_der)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(cfg)))
    }
}

/// A connection either server reads requests from.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection, its peer and the local address it came in on.
type Accepted = (Pin<Box<dyn Io>>, SocketAddr, SocketAddr);

enum Source {
    Plain(TcpListener),
    Tls(mpsc::Receiver<Accepted>),
}

/// Where a connection comes from and how it came in.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: SocketAddr,
    /// The address it was accepted on.
    pub local: SocketAddr,
    pub tls: bool,
}

/// A listener of plain TCP or TLS connections.
pub struct Incoming {
    source: Source,
    local: SocketAddr,
    tls: bool,
}

impl Incoming {
    /// Serves `listener` as it is, or behind TLS when `tls` is given.
    pub fn new(listener: TcpListener, tls: Option<Tls>) -> std::io::Result<Incoming> {
        let local = listener.local_addr()?;
        let Some(Tls(cfg)) = tls else {
            return Ok(Incoming {
                source: Source::Plain(listener),
                local,
                tls: false,
            });
        };
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(handshakes(listener, TlsAcceptor::from(cfg), tx));
        Ok(Incoming {
            source: Source::Tls(rx),
            local,
            tls: true,
        })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next connection, waiting as long as it takes. `Peer::local` is
    /// the connection's own local address (not the listener's 0.0.0.0).
    pub async fn next(&mut self) -> (Pin<Box<dyn Io>>, Peer) {
        let (io, remote, local) = self.next_raw().await;
        let peer = Peer {
            remote,
            local,
            tls: self.tls,
        };
        (io, peer)
    }

    async fn next_raw(&mut self) -> Accepted {
        match &mut self.source {
            Source::Plain(l) => loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        let local = s.local_addr().unwrap_or(self.local);
                        return (Box::pin(s), peer, local);
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            },
            Source::Tls(rx) => match rx.recv().await {
                Some(c) => c,
                None => std::future::pending().await,
            },
        }
    }
}

/// Accepts TCP connections and completes their handshakes, each in its own
/// task, until the `Incoming` they feed is dropped.
async fn handshakes(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<Accepted>) {
    loop {
        let (sock, peer): (TcpStream, SocketAddr) = tokio::select! {
            () = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let Ok(local) = sock.local_addr() else {
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((Box::pin(stream), peer, local)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
