//! HTTPS for `berth serve` without a reverse proxy (`--tls-cert`, `--tls-key`): rustls with
//! ALPN `h2` and `http/1.1`, so clients that can speak HTTP/2 do.
//!
//! [`Certificates`] holds the configuration built from the two PEM files and looks at the files
//! again (their modification time and size) at most once a [`RELOAD_CHECK`], on a new
//! connection: a renewed certificate (certbot, cert-manager) is served from the next connection
//! on, with no restart. A renewal that cannot be read (half-written, mismatched) is logged and
//! the certificate in use stays. [`TlsListener`] accepts TCP connections and runs each handshake
//! in a task of its own, bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up
//! no one else.

use std::fs::Metadata;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::serve::Listener;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::server::TlsStream;

/// How often, at most, the certificate files are looked at for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished and not yet taken by the server.
const ACCEPTED_QUEUE: usize = 64;

/// What identifies a version of the files: modification time and size of each.
type Stamp = [(SystemTime, u64); 2];

/// The TLS configuration from a certificate chain and key, reloaded when the files change.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

struct State {
    config: Arc<ServerConfig>,
    stamp: Option<Stamp>,
    checked: Instant,
}

impl Certificates {
    /// Reads `cert` and `key`; an error says which file is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let stamp = stamp(cert, key);
        let config = config(cert, key)?;
        let state = Mutex::new(State { config, stamp, checked: Instant::now() });
        Ok(Self { cert: cert.to_path_buf(), key: key.to_path_buf(), state })
    }

    /// The configuration for a new connection, read again first if the files changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != state.stamp {
                match config(&self.cert, &self.key) {
                    Ok(config) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        state.config = config;
                        state.stamp = now;
                    }
                    // Tried again at the next check: the files may be half-written.
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but cannot be used; keeping the old one")
                    }
                }
            }
        }
        state.config.clone()
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let of = |meta: Metadata| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
    Some([of(std::fs::metadata(cert).ok()?), of(std::fs::metadata(key).ok()?)])
}

fn config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have finished their TLS handshake.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` with `certificates`, until the listener is dropped.
    pub fn new(tcp: TcpListener, certificates: Arc<Certificates>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = sender.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: wait rather than spin.
                            tracing::warn!(error = %e, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let acceptor = TlsAcceptor::from(certificates.current());
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { accepted, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone (it never ends while this listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
