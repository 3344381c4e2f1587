//! The Entra tenant id behind a customer's domain.
//!
//! `GET {authority}/{domain}/v2.0/.well-known/openid-configuration` answers with the tenant's
//! OpenID configuration, whose `issuer` is `{authority}/{tenantId}/v2.0`; an unknown domain
//! answers 400 with AADSTS90002.

use serde::Deserialize;
use url::Url;

use super::entra::EntraErrorResponse;
use super::error::{GraphError, Service};
use super::http::{
    describe_reqwest_error, is_tenant_segment, join, parse_retry_after, DEFAULT_THROTTLE_WAIT,
};
use super::metrics::Counters;
use crate::config::is_guid;

/// The part of the OpenID configuration the operator reads.
#[derive(Debug, Deserialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    #[serde(default)]
    pub token_endpoint: Option<String>,
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

/// Resolves the tenant id of `domain` (a tenant id is answered as itself, lower-cased).
pub async fn resolve_tenant_id(
    http: &reqwest::Client,
    authority: &Url,
    domain: &str,
    counters: &Counters,
) -> Result<String, GraphError> {
    if !is_tenant_segment(domain) {
        return Err(GraphError::TenantNotFound {
            tenant: domain.to_owned(),
        });
    }
    let url = join(
        authority,
        &format!("{domain}/v2.0/.well-known/openid-configuration"),
    );
    counters.discovery_request();
    let response = http
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
        let config: OpenIdConfiguration =
            serde_json::from_slice(&body).map_err(|e| GraphError::Protocol {
                service: Service::Identity,
                reason: format!("OpenID configuration of {domain} is not valid JSON: {e}"),
            })?;
        return tenant_id_from_configuration(&config).ok_or_else(|| GraphError::Protocol {
            service: Service::Identity,
            reason: format!(
                "OpenID configuration of {domain} has no tenant id in issuer {:?}",
                config.issuer
            ),
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
}
