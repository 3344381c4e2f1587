//! HTTPS for the simulator. `kubectl` (client-go) only sends a bearer token over TLS, so the
//! server speaks TLS with a fixed certificate for `127.0.0.1`/`localhost`, issued by a test CA
//! that the generated kubeconfig trusts. These keys exist for loopback tests only.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The test CA, PEM, as a kubeconfig's `certificate-authority-data` (after base64).
pub const CA_PEM: &str = include_str!("tls/ca.pem");
const SERVER_CERT_DER: &[u8] = include_bytes!("tls/server.der");
const SERVER_KEY_DER: &[u8] = include_bytes!("tls/server-key.der");

/// A handshake that has not finished by then is dropped, so one stuck client cannot stall
/// the accept loop.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS side of the server; `http2` offers HTTP/2 by ALPN besides HTTP/1.1.
pub fn acceptor(http2: bool) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(SERVER_CERT_DER.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(SERVER_KEY_DER.to_vec())),
        )
        .expect("the bundled certificate and key match");
    let mut config = config;
    // HTTP/2 first, as a real API server offers it (client-go then multiplexes every request
    // over one connection); HTTP/1.1 for clients that do not speak it.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    TlsAcceptor::from(Arc::new(config))
}

/// TLS connections accepted, by the application protocol agreed by ALPN.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    http2: AtomicU64,
    http1: AtomicU64,
}

impl ConnectionCounts {
    fn count(&self, alpn: Option<&[u8]>) {
        let counter = if alpn == Some(b"h2") {
            &self.http2
        } else {
            &self.http1
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Connections {
        Connections {
            http2: self.http2.load(Ordering::Relaxed),
            http1: self.http1.load(Ordering::Relaxed),
        }
    }
}

/// How many TLS connections the simulator has accepted: those that agreed on HTTP/2 and the
/// others (HTTP/1.1, or no ALPN at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    pub http2: u64,
    pub http1: u64,
}

/// A TCP listener that completes the TLS handshake before handing connections to axum.
pub struct TlsListener {
    pub tcp: TcpListener,
    pub acceptor: TlsAcceptor,
    pub shared: Arc<super::http::Shared>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    self.shared
                        .connections
                        .count(tls.get_ref().1.alpn_protocol());
                    return (tls, addr);
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
