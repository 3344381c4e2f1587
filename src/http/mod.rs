//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` here, on the port the
//! kubelet and Prometheus reach; the customer-facing routes (`/consent/callback`, the Quick
//! Start pages) on a listener of their own, [`public`], the only one an Ingress exposes.
//!
//! [`router`] builds the axum [`Router`] of the probes and metrics, [`serve`] runs it until a shutdown future completes, letting
//! requests in flight finish.
//!
//! - `/healthz` answers 200 while the process can answer and [`HttpState::healthy`] is set
//!   (liveness); it answers 503 from the moment this replica lost its leader Lease, while the
//!   process exits.
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
    /// Public listener: requests per second one source address may make on average (429
    /// beyond).
    #[arg(long, default_value_t = public::Limits::default().per_source_per_second)]
    pub public_rate: std::num::NonZeroU32,
    /// Public listener: requests one source may make at once before the average applies.
    #[arg(long, default_value_t = public::Limits::default().per_source_burst)]
    pub public_burst: std::num::NonZeroU32,
    /// Public listener: requests in progress at once, all sources together (503 beyond).
    #[arg(long, default_value_t = public::Limits::default().max_in_flight)]
    pub public_max_in_flight: usize,
    /// Public listener: connections open at once (more wait in the listen queue).
    #[arg(long, default_value_t = public::Limits::default().max_connections)]
    pub public_max_connections: usize,
    /// Public listener: a grant is re-checked through the consent callback at most once per
    /// this interval.
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub public_recheck_interval: std::time::Duration,
}

impl HttpArgs {
    /// The public listener's limits these options set.
    pub fn public_limits(&self) -> public::Limits {
        public::Limits {
            per_source_per_second: self.public_rate,
            per_source_burst: self.public_burst,
            max_in_flight: self.public_max_in_flight,
            max_connections: self.public_max_connections,
            recheck_interval: self.public_recheck_interval,
        }
    }
}

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub metrics: Metrics,
    /// Set once this replica is ready to serve: its caches synced, or standing by for the
    /// leader Lease.
    pub ready: Arc<AtomicBool>,
    /// Cleared when the process must be restarted (leadership lost): `/healthz` fails.
    pub healthy: Arc<AtomicBool>,
}

impl HttpState {
    /// State that is healthy and not ready yet.
    pub fn new(metrics: Metrics) -> Self {
        HttpState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            healthy: Arc::new(AtomicBool::new(true)),
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

async fn healthz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.healthy.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: leadership lost\n",
        )
    }
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
