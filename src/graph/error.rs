//! What can go wrong talking to the Microsoft identity platform and Microsoft Graph, in the
//! operator's words.

use std::time::Duration;

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
    /// 7000229 say the application has no service principal in the tenant; 65001 (consent
    /// required) carries Entra's own text in `detail`.
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
    /// The token endpoint's answer points at the platform's configuration, not at the
    /// customer: AADSTS500011 (Graph's resource principal not found: usually a Graph endpoint
    /// of another cloud), 50020 (the tenant is not reachable through this authority), an
    /// invalid scope. `setting` names what to check.
    #[error("the token endpoint refused application {app_id} in tenant {tenant} ({detail}): this is the operator's configuration, not a missing consent: check {setting}")]
    Misconfigured {
        tenant: String,
        app_id: String,
        detail: String,
        setting: &'static str,
    },
    /// The tenant lives in another national cloud than the one the operator is configured
    /// for (its OpenID document's `cloud_instance_name`, or AADSTS900382).
    #[error("{}", other_cloud(tenant, cloud_instance.as_deref(), region_scope.as_deref(), expected.as_deref()))]
    OtherCloud {
        tenant: String,
        /// `cloud_instance_name` of the tenant's OpenID document, when read.
        cloud_instance: Option<String>,
        /// `tenant_region_scope` of the tenant's OpenID document, when read.
        region_scope: Option<String>,
        /// The cloud instance the operator is configured for, when known here.
        expected: Option<String>,
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

fn other_cloud(
    tenant: &str,
    cloud_instance: Option<&str>,
    region_scope: Option<&str>,
    expected: Option<&str>,
) -> String {
    let found = match (cloud_instance, region_scope) {
        (Some(cloud), Some(scope)) => format!("the {cloud} cloud (tenant_region_scope {scope})"),
        (Some(cloud), None) => format!("the {cloud} cloud"),
        _ => "another national cloud (AADSTS900382: cross-cloud request refused)".to_owned(),
    };
    let expected = match expected {
        Some(cloud) => format!("{cloud} that this operator is configured for"),
        None => "the cloud this operator is configured for".to_owned(),
    };
    format!(
        "tenant {tenant} belongs to {found}, not to {expected}: onboard it with an operator whose cloud.preset is that tenant's cloud"
    )
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
