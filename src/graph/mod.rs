//! Has this customer tenant consented? Entra ID tokens, Microsoft Graph and the consent checks.
//!
//! The story, file by file:
//! - [`discovery`]: the tenant id behind a customer's domain (OpenID discovery document);
//! - [`token`]: client-credentials tokens per (tenant, app), cached until shortly before they
//!   expire, with the token endpoint's AADSTS codes turned into [`GraphError`] variants;
//! - [`client`]: Microsoft Graph reads: paging, `$batch` (20 per request), `Retry-After`,
//!   OData errors;
//! - [`consent`]: the check of one tenant's consents — pure rules over tokens' `roles` and the
//!   tenant's service principals, app role assignments and permission grants, plus the thin
//!   I/O that gathers them (one `$batch` per steady-state poll);
//! - [`checker`]: [`ConsentChecker`], shared by all reconciles: coalesces concurrent checks of a
//!   tenant, keeps tenants independent, remembers throttling, counts requests;
//! - [`schedule`]: when to check again ([`next_check_after`]) and the admin-consent URL
//!   ([`consent_url`]).

pub mod application;
pub mod checker;
pub mod client;
pub mod consent;
pub mod discovery;
pub mod metrics;
pub mod schedule;
pub mod token;

use std::time::Duration;

pub use checker::ConsentChecker;
pub use consent::{CheckState, ConsentCheck, ConsentSpec, TenantCheck};
pub use metrics::{Counters, GraphOutcome, TokenOutcome};
pub use schedule::{consent_url, next_check_after, schedule_rng};

/// The application id of Microsoft Graph, the same in every tenant and cloud.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Everything that can go wrong talking to the Microsoft identity platform and Graph.
///
/// Messages are written for the platform team and the ConsentGrant status; none carries a
/// secret, a token, a trace id or a timestamp (so a status does not change from one check to
/// the next while nothing else does).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("tenant {tenant} not found (AADSTS90002): check the Tenant's domain or tenant id")]
    TenantNotFound { tenant: String },
    /// The token endpoint's answer means the customer has not consented. AADSTS700016 and
    /// 7000229 say the application has no service principal in the tenant; the other codes
    /// read the same way (50020, 500011, 65001) carry Entra's own text in `detail`.
    #[error("{}", not_consented(tenant, app_id, *code, detail.as_deref()))]
    NotConsented {
        tenant: String,
        app_id: String,
        code: u64,
        detail: Option<String>,
    },
    #[error("the client secret of application {app_id} is invalid (AADSTS7000215): the platform team must correct the operator's configuration")]
    InvalidSecret { app_id: String },
    #[error("the client secret of application {app_id} has expired (AADSTS7000222): the platform team must rotate it")]
    SecretExpired { app_id: String },
    #[error("no client secret for application {app_id}: {reason}")]
    MissingSecret { app_id: String, reason: String },
    #[error("the token endpoint refused application {app_id} ({error}{}): {description}", code_suffix(*.code))]
    TokenRejected {
        app_id: String,
        error: String,
        code: Option<u64>,
        description: String,
    },
    #[error("{service} is throttling requests; retrying after {}s", .retry_after.as_secs())]
    Throttled {
        service: Service,
        retry_after: Duration,
    },
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        service: Service,
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("Microsoft Graph answered {status} {code}: {message}")]
    Graph {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from {service}: {reason}")]
    Protocol { service: Service, reason: String },
}

fn not_consented(tenant: &str, app_id: &str, code: u64, detail: Option<&str>) -> String {
    match detail {
        None => format!("application {app_id} has no service principal in tenant {tenant} (AADSTS{code}): admin consent not given"),
        Some(detail) => format!("the token endpoint refused application {app_id} in tenant {tenant} (AADSTS{code}: {detail}): admin consent not given"),
    }
}

fn code_suffix(code: Option<u64>) -> String {
    code.map(|c| format!(", AADSTS{c}")).unwrap_or_default()
}

/// Which remote service an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The Microsoft identity platform (token endpoint, OpenID discovery).
    Identity,
    /// Microsoft Graph.
    Graph,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Identity => "the Microsoft identity platform",
            Service::Graph => "Microsoft Graph",
        })
    }
}

impl GraphError {
    /// How long to wait before asking again, when the service said so (or throttled).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Throttled { retry_after, .. } => Some(*retry_after),
            GraphError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A passing condition of the remote service (throttling, outage), not an answer about the
    /// tenant: the previous state of a consent stays.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. } | GraphError::Unavailable { .. }
        ) || matches!(self, GraphError::Graph { status, .. } if *status >= 500)
    }
}

/// Reads a `Retry-After` value: seconds (the form Graph and the identity platform use) or an
/// HTTP date (the other form HTTP allows; a date in the past means no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The HTTP client every module here uses: no redirects (a token endpoint must never be
/// followed elsewhere with a secret), a per-request timeout so one slow tenant cannot hold
/// a check for long.
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("recording-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with rustls builds")
}

/// A path segment naming a tenant (GUID or domain) that cannot break out of its URL segment.
pub(crate) fn is_tenant_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !s.starts_with('.')
}

/// `{base}/{segments...}` for a base URL that may carry a path prefix.
pub(crate) fn join(base: &url::Url, tail: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        tail.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
