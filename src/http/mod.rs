//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` here, on the port the
//! kubelet and Prometheus reach; the customer-facing routes (`/consent/callback`, the Quick
//! Start pages) on a listener of their own, [`public`], the only one an Ingress exposes.
//!
//! [`router`] builds the axum [`Router`] of the probes and metrics, [`serve`] runs it until a shutdown future completes, letting
//! requests in flight finish.
//!
//! - `/healthz` answers 200 while the process can answer at all (liveness).
//! - `/readyz` answers 200 once [`HttpState::ready`] is set, else 503 (readiness).
//! - `/metrics` answers the OpenMetrics text of [`Metrics::encode`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics};

pub mod page;
pub mod public;
pub mod report;

/// Default listen address of the HTTP endpoint.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8080";

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Command-line options of the HTTP endpoint (flatten into a subcommand).
#[derive(Clone, Debug, clap::Args)]
pub struct HttpArgs {
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "RECORDING_OPERATOR_HTTP_ADDR", default_value = DEFAULT_ADDR)]
    pub http_addr: SocketAddr,
    /// Address of the public listener: /consent/callback and the Quick Start pages.
    #[arg(long, env = "RECORDING_OPERATOR_PUBLIC_ADDR", default_value = public::DEFAULT_PUBLIC_ADDR)]
    pub public_addr: SocketAddr,
}

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub metrics: Metrics,
    /// Set once this replica is ready to serve: its caches synced, or standing by for the
    /// leader Lease.
    pub ready: Arc<AtomicBool>,
}

impl HttpState {
    /// State that is not ready yet.
    pub fn new(metrics: Metrics) -> Self {
        HttpState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The `/metrics`, `/healthz` and `/readyz` routes; `.merge()` other routes into it.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_handler(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Binds `addr` and serves `router` until `shutdown` completes; requests in flight finish.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_on(bind(addr).await?, router, shutdown).await
}

/// Serves `router` on an already bound listener (port 0 in tests) until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}
