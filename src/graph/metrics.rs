//! Request counters the metrics module reads: Graph requests and token requests by outcome.
//! Plain atomics, incremented where each request ends.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a Microsoft Graph HTTP request ended (a `$batch` counts once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphOutcome {
    Success,
    /// 4xx other than 429.
    ClientError,
    /// 429, or 503/504 with `Retry-After`.
    Throttled,
    /// 5xx.
    ServerError,
    /// No HTTP answer: connection failure or timeout.
    NetworkError,
}

impl GraphOutcome {
    pub const ALL: [GraphOutcome; 5] = [
        GraphOutcome::Success,
        GraphOutcome::ClientError,
        GraphOutcome::Throttled,
        GraphOutcome::ServerError,
        GraphOutcome::NetworkError,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphOutcome::Success => "success",
            GraphOutcome::ClientError => "client_error",
            GraphOutcome::Throttled => "throttled",
            GraphOutcome::ServerError => "server_error",
            GraphOutcome::NetworkError => "network_error",
        }
    }
}

/// How a client-credentials token request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOutcome {
    Success,
    NotConsented,
    InvalidSecret,
    SecretExpired,
    TenantNotFound,
    Throttled,
    Unavailable,
    OtherError,
}

impl TokenOutcome {
    pub const ALL: [TokenOutcome; 8] = [
        TokenOutcome::Success,
        TokenOutcome::NotConsented,
        TokenOutcome::InvalidSecret,
        TokenOutcome::SecretExpired,
        TokenOutcome::TenantNotFound,
        TokenOutcome::Throttled,
        TokenOutcome::Unavailable,
        TokenOutcome::OtherError,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutcome::Success => "success",
            TokenOutcome::NotConsented => "not_consented",
            TokenOutcome::InvalidSecret => "invalid_secret",
            TokenOutcome::SecretExpired => "secret_expired",
            TokenOutcome::TenantNotFound => "tenant_not_found",
            TokenOutcome::Throttled => "throttled",
            TokenOutcome::Unavailable => "unavailable",
            TokenOutcome::OtherError => "other_error",
        }
    }
}

/// Counters shared by the token provider, the Graph client and the checker.
#[derive(Debug, Default)]
pub struct Counters {
    graph: [AtomicU64; 5],
    token: [AtomicU64; 8],
    discovery: AtomicU64,
    checks: AtomicU64,
    coalesced: AtomicU64,
}

impl Counters {
    pub fn graph_request(&self, outcome: GraphOutcome) {
        let i = GraphOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.graph[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_request(&self, outcome: TokenOutcome) {
        let i = TokenOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.token[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn discovery_request(&self) {
        self.discovery.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn check_run(&self) {
        self.checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn check_coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Graph HTTP requests by outcome label.
    pub fn graph_requests(&self) -> Vec<(&'static str, u64)> {
        GraphOutcome::ALL
            .iter()
            .zip(&self.graph)
            .map(|(o, n)| (o.as_str(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Token requests by outcome label.
    pub fn token_requests(&self) -> Vec<(&'static str, u64)> {
        TokenOutcome::ALL
            .iter()
            .zip(&self.token)
            .map(|(o, n)| (o.as_str(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// All Graph HTTP requests so far.
    pub fn graph_total(&self) -> u64 {
        self.graph.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// All token requests so far.
    pub fn token_total(&self) -> u64 {
        self.token.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// OpenID discovery requests (tenant id from domain) so far.
    pub fn discovery_total(&self) -> u64 {
        self.discovery.load(Ordering::Relaxed)
    }

    /// Tenant checks that went to the network, and checks answered from a recent one.
    pub fn checks(&self) -> (u64, u64) {
        (
            self.checks.load(Ordering::Relaxed),
            self.coalesced.load(Ordering::Relaxed),
        )
    }
}
