//! The Entra tenant id behind a customer's domain.
//!
//! `GET {authority}/{domain}/v2.0/.well-known/openid-configuration` answers with the tenant's
//! OpenID configuration, whose `issuer` is `{authority}/{tenantId}/v2.0`; an unknown domain
//! answers 400 with AADSTS90002. The document also names the tenant's national cloud
//! (`cloud_instance_name`, `tenant_region_scope`): a tenant of another cloud than the one the
//! operator is configured for is found through this authority, but can be served only by an
//! operator of its own cloud, and is reported so.

use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::entra::EntraErrorResponse;
use super::error::{GraphError, Service};
use super::http::{
    describe_reqwest_error, is_tenant_segment, join, parse_retry_after, DEFAULT_THROTTLE_WAIT,
};
use super::metrics::Counters;
use crate::config::{is_guid, CloudPreset};

/// The part of the OpenID configuration the operator reads.
#[derive(Debug, Deserialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The tenant's cloud: `microsoftonline.com`, `microsoftonline.us`, ...
    #[serde(default)]
    pub cloud_instance_name: Option<String>,
    /// The tenant's region within its cloud (`EU`, `NA`, `USGov`, ...).
    #[serde(default)]
    pub tenant_region_scope: Option<String>,
}

/// The `cloud_instance_name` values of a cloud's tenants (the first is the current one).
pub fn cloud_instance_names(preset: CloudPreset) -> &'static [&'static str] {
    match preset {
        CloudPreset::Public => &["microsoftonline.com"],
        CloudPreset::UsGov | CloudPreset::UsGovDoD => &["microsoftonline.us"],
        CloudPreset::China => &["partner.microsoftonline.cn", "chinacloudapi.cn"],
    }
}

/// The error for a tenant whose document names another cloud than `expected`, if it does.
pub fn other_cloud(
    tenant: &str,
    config: &OpenIdConfiguration,
    expected: &[&str],
) -> Option<GraphError> {
    let cloud = config.cloud_instance_name.as_deref()?;
    if expected.iter().any(|e| e.eq_ignore_ascii_case(cloud)) {
        return None;
    }
    Some(GraphError::OtherCloud {
        tenant: tenant.to_owned(),
        cloud_instance: Some(cloud.to_owned()),
        region_scope: config.tenant_region_scope.clone(),
        expected: expected.first().map(|e| e.to_string()),
    })
}

/// The tenant id in a discovery document: the path segment before `v2.0` in `issuer` (or,
/// failing that, the first segment of `token_endpoint`'s path after the authority).
pub fn tenant_id_from_configuration(config: &OpenIdConfiguration) -> Option<String> {
    let from_issuer = Url::parse(&config.issuer).ok().and_then(|issuer| {
        let segments: Vec<String> = issuer.path_segments()?.map(str::to_owned).collect();
        let v2 = segments.iter().rposition(|s| s == "v2.0")?;
        segments.get(v2.checked_sub(1)?).cloned()
    });
    let from_token_endpoint = || {
        let url = Url::parse(config.token_endpoint.as_deref()?).ok()?;
        let segments: Vec<String> = url.path_segments()?.map(str::to_owned).collect();
        let oauth2 = segments.iter().rposition(|s| s == "oauth2")?;
        segments.get(oauth2.checked_sub(1)?).cloned()
    };
    from_issuer
        .filter(|id| is_guid(id))
        .or_else(|| from_token_endpoint().filter(|id| is_guid(id)))
        .map(|id| id.to_ascii_lowercase())
}

/// OpenID discovery through the configured authority.
pub struct Discovery {
    pub http: reqwest::Client,
    pub authority: Url,
    /// `cloud_instance_name` values of the configured cloud.
    pub cloud: &'static [&'static str],
    pub counters: Arc<Counters>,
}

impl Discovery {
    /// The tenant id of `domain` (a tenant id is answered as itself, lower-cased); a tenant
    /// of another cloud is an error saying so.
    pub async fn resolve_tenant_id(&self, domain: &str) -> Result<String, GraphError> {
        let config = self.document(domain).await?;
        if let Some(e) = other_cloud(domain, &config, self.cloud) {
            return Err(e);
        }
        tenant_id_from_configuration(&config).ok_or_else(|| GraphError::Protocol {
            service: Service::Identity,
            reason: format!(
                "OpenID configuration of {domain} has no tenant id in issuer {:?}",
                config.issuer
            ),
        })
    }

    /// `error` made more precise when it was a cross-cloud refusal: the tenant's own document
    /// names its cloud. Any other error, or a document that cannot be had, leaves it as is.
    pub async fn explain(&self, tenant: &str, error: GraphError) -> GraphError {
        let GraphError::OtherCloud { .. } = error else {
            return error;
        };
        let found = match self.document(tenant).await {
            Ok(config) => other_cloud(tenant, &config, self.cloud),
            Err(_) => None,
        };
        found.unwrap_or(GraphError::OtherCloud {
            tenant: tenant.to_owned(),
            cloud_instance: None,
            region_scope: None,
            expected: self.cloud.first().map(|e| e.to_string()),
        })
    }

    /// The OpenID configuration of a tenant (by id or domain).
    async fn document(&self, domain: &str) -> Result<OpenIdConfiguration, GraphError> {
        if !is_tenant_segment(domain) {
            return Err(GraphError::TenantNotFound {
                tenant: domain.to_owned(),
            });
        }
        let url = join(
            &self.authority,
            &format!("{domain}/v2.0/.well-known/openid-configuration"),
        );
        self.counters.discovery_request();
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| GraphError::Unavailable {
                service: Service::Identity,
                reason: describe_reqwest_error(&e),
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| GraphError::Protocol {
                service: Service::Identity,
                reason: format!("OpenID configuration of {domain} is not valid JSON: {e}"),
            });
        }
        let error: EntraErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
        Err(classify_discovery_failure(
            domain,
            status.as_u16(),
            retry_after,
            &error,
        ))
    }
}

/// What a failed discovery request means.
pub fn classify_discovery_failure(
    domain: &str,
    status: u16,
    retry_after: Option<std::time::Duration>,
    error: &EntraErrorResponse,
) -> GraphError {
    match (status, error.code()) {
        (_, Some(90002)) | (404, _) => GraphError::TenantNotFound {
            tenant: domain.to_owned(),
        },
        (429, _) => GraphError::Throttled {
            service: Service::Identity,
            retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
        },
        (s, _) if s >= 500 => GraphError::Unavailable {
            service: Service::Identity,
            reason: format!("HTTP {s}"),
            retry_after,
        },
        (s, code) => GraphError::Protocol {
            service: Service::Identity,
            reason: format!(
                "OpenID discovery of {domain} answered HTTP {s}{}",
                code.map(|c| format!(" AADSTS{c}")).unwrap_or_default()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_comes_from_the_issuer() {
        let config: OpenIdConfiguration = serde_json::from_str(
            r#"{"token_endpoint":"https://login.microsoftonline.com/72F988BF-86F1-41AF-91AB-2D7CD011DB47/oauth2/v2.0/token",
                "issuer":"https://login.microsoftonline.com/72F988BF-86F1-41AF-91AB-2D7CD011DB47/v2.0"}"#,
        )
        .unwrap();
        assert_eq!(
            tenant_id_from_configuration(&config).as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
    }

    #[test]
    fn issuer_behind_a_path_prefix_and_token_endpoint_fallback() {
        let config = OpenIdConfiguration {
            issuer: "http://127.0.0.1:8080/login/0b5c3e7e-1111-4222-8333-444455556666/v2.0".into(),
            token_endpoint: None,
            cloud_instance_name: None,
            tenant_region_scope: None,
        };
        assert_eq!(
            tenant_id_from_configuration(&config).as_deref(),
            Some("0b5c3e7e-1111-4222-8333-444455556666")
        );
        let config = OpenIdConfiguration {
            issuer: "https://sts.example/{tenantid}/v2.0".into(),
            token_endpoint: Some(
                "https://login.microsoftonline.us/0b5c3e7e-1111-4222-8333-444455556666/oauth2/v2.0/token".into(),
            ),
            cloud_instance_name: None,
            tenant_region_scope: None,
        };
        assert_eq!(
            tenant_id_from_configuration(&config).as_deref(),
            Some("0b5c3e7e-1111-4222-8333-444455556666")
        );
    }

    #[test]
    fn unknown_domain_is_tenant_not_found() {
        let body: EntraErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'nosuch.onmicrosoft.com' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Trace ID: 0b1f Correlation ID: 9c2e Timestamp: 2025-09-18 01:17:37Z","error_codes":[90002],"timestamp":"2025-09-18 01:17:37Z","trace_id":"0b1f","correlation_id":"9c2e","error_uri":"https://login.microsoftonline.com/error?code=90002"}"#,
        )
        .unwrap();
        let err = classify_discovery_failure("nosuch.onmicrosoft.com", 400, None, &body);
        assert_eq!(
            err.to_string(),
            "tenant nosuch.onmicrosoft.com not found (AADSTS90002): check the Tenant's domain or tenant id"
        );
    }

    #[test]
    fn a_tenant_of_another_cloud_is_named_with_its_cloud() {
        let gov: OpenIdConfiguration = serde_json::from_str(
            r#"{"issuer":"https://login.microsoftonline.us/0b5c3e7e-1111-4222-8333-444455556666/v2.0",
                "cloud_instance_name":"microsoftonline.us","tenant_region_scope":"USGov"}"#,
        )
        .unwrap();
        let public = cloud_instance_names(CloudPreset::Public);
        let err = other_cloud("agency.us", &gov, public).unwrap();
        assert_eq!(
            err.to_string(),
            "tenant agency.us belongs to the microsoftonline.us cloud (tenant_region_scope USGov), not to microsoftonline.com that this operator is configured for: onboard it with an operator whose cloud.preset is that tenant's cloud"
        );
        assert!(other_cloud(
            "agency.us",
            &gov,
            cloud_instance_names(CloudPreset::UsGovDoD)
        )
        .is_none());
        // A document without the field says nothing either way.
        let bare = OpenIdConfiguration {
            issuer: gov.issuer.clone(),
            token_endpoint: None,
            cloud_instance_name: None,
            tenant_region_scope: None,
        };
        assert!(other_cloud("agency.us", &bare, public).is_none());
    }
}
