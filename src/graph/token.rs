//! Client-credentials tokens for one platform application in one customer tenant.
//!
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with `scope={graph}/.default`, through the
//! `oauth2` crate. A token is cached per (tenant, app) until `exp - tokenRenewBefore`; callers
//! asking for the same key at once share one request. A refusal is read from its AADSTS code:
//! no service principal (no consent yet), bad or expired secret, unknown tenant; 429/503 are
//! throttling, other 5xx and network failures an outage. The application permissions granted
//! in the tenant are the token's `roles` claim, decoded without a signature check
//! (`jsonwebtoken::dangerous::insecure_decode_claims`): the token came straight from the
//! token endpoint over TLS, and the operator only reads which roles Entra put in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::metrics::{Counters, TokenOutcome};
use super::{is_tenant_segment, join, parse_retry_after, GraphError, Service};
use crate::config::{SecretRef, SecretSource};

// ---------------------------------------------------------------------------------------------
// The token and what it says
// ---------------------------------------------------------------------------------------------

/// An app-only access token for Microsoft Graph in one tenant.
#[derive(Debug)]
pub struct AccessToken {
    bearer: SecretString,
    /// Application permissions granted to the app in the tenant (`roles` claim).
    pub roles: Vec<String>,
    /// When the token stops being accepted (`exp`).
    pub expires_at: SystemTime,
    /// The tenant that issued it (`tid`).
    pub tenant_id: Option<String>,
    /// The object id of the app's service principal in that tenant (`oid`).
    pub object_id: Option<String>,
}

impl AccessToken {
    /// The bearer value for an `Authorization` header. Never log it.
    pub fn bearer(&self) -> &str {
        self.bearer.expose_secret()
    }

    /// Whether `roles` holds `name` (permission names compare case-insensitively).
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(name))
    }

    /// Whether the token may still be used at `now`, renewing `renew_before` ahead of expiry.
    pub fn is_fresh(&self, now: SystemTime, renew_before: Duration) -> bool {
        now + renew_before < self.expires_at
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    roles: Vec<String>,
    exp: Option<u64>,
    tid: Option<String>,
    oid: Option<String>,
}

/// Builds the token from the endpoint's answer: claims from the JWT, expiry from `exp`
/// (falling back to `expires_in`).
pub fn token_from_response(
    access_token: &str,
    expires_in: Option<Duration>,
    now: SystemTime,
) -> Result<AccessToken, String> {
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(access_token)
        .map_err(|e| format!("the access token is not a readable JWT ({e})"))?;
    let expires_at = match (claims.exp, expires_in) {
        (Some(exp), _) => UNIX_EPOCH + Duration::from_secs(exp),
        (None, Some(lifetime)) => now + lifetime,
        (None, None) => return Err("the access token carries no expiry".to_owned()),
    };
    Ok(AccessToken {
        bearer: SecretString::from(access_token),
        roles: claims.roles,
        expires_at,
        tenant_id: claims.tid,
        object_id: claims.oid,
    })
}

// ---------------------------------------------------------------------------------------------
// What a refusal means
// ---------------------------------------------------------------------------------------------

/// The token endpoint's error body, with the Entra fields the standard one drops.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EntraErrorResponse {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl std::fmt::Display for EntraErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl oauth2::ErrorResponse for EntraErrorResponse {}

impl EntraErrorResponse {
    /// The AADSTS code: first of `error_codes`, else read from the description.
    pub fn code(&self) -> Option<u64> {
        self.error_codes.first().copied().or_else(|| {
            self.error_description
                .as_deref()
                .and_then(super::discovery::aadsts_code)
        })
    }

    /// The description without the trace/correlation ids and timestamp Entra appends, so the
    /// text is the same from one request to the next.
    ///
    /// Entra puts them on lines of their own (`\r\n` before each), so the cut is at the
    /// first "Trace ID:" whatever precedes it.
    pub fn stable_description(&self) -> String {
        let text = self.error_description.as_deref().unwrap_or_default();
        let cut = text.find("Trace ID:").unwrap_or(text.len());
        text[..cut].trim().to_owned()
    }
}

/// Turns a token-endpoint refusal into the operator's meaning of it.
pub fn classify_token_error(tenant: &str, app_id: &str, body: &EntraErrorResponse) -> GraphError {
    match body.code() {
        // No service principal: the customer has not consented.
        Some(code @ (700016 | 7000229)) => GraphError::NotConsented {
            tenant: tenant.to_owned(),
            app_id: app_id.to_owned(),
            code,
            detail: None,
        },
        // Other principal-not-found variants, or (65001) consent required: read as not
        // consented too, with Entra's text, since they can also point at a wrong app id or
        // cloud.
        Some(code @ (50020 | 500011 | 65001)) => GraphError::NotConsented {
            tenant: tenant.to_owned(),
            app_id: app_id.to_owned(),
            code,
            detail: Some(body.stable_description()),
        },
        Some(7000215) => GraphError::InvalidSecret {
            app_id: app_id.to_owned(),
        },
        Some(7000222) => GraphError::SecretExpired {
            app_id: app_id.to_owned(),
        },
        Some(90002) => GraphError::TenantNotFound {
            tenant: tenant.to_owned(),
        },
        // OAuth's "try again later" answers, whatever the HTTP status: a passing outage, not
        // a refusal.
        _ if matches!(
            body.error.as_str(),
            "server_error" | "temporarily_unavailable"
        ) =>
        {
            GraphError::Unavailable {
                service: Service::Identity,
                reason: format!("{}: {}", body.error, body.stable_description()),
                retry_after: None,
            }
        }
        code => GraphError::TokenRejected {
            app_id: app_id.to_owned(),
            error: body.error.clone(),
            code,
            description: body.stable_description(),
        },
    }
}

/// The metrics label of a token request's end.
pub fn token_outcome(result: &Result<AccessToken, GraphError>) -> TokenOutcome {
    match result {
        Ok(_) => TokenOutcome::Success,
        Err(GraphError::NotConsented { .. }) => TokenOutcome::NotConsented,
        Err(GraphError::InvalidSecret { .. }) => TokenOutcome::InvalidSecret,
        Err(GraphError::SecretExpired { .. }) => TokenOutcome::SecretExpired,
        Err(GraphError::TenantNotFound { .. }) => TokenOutcome::TenantNotFound,
        Err(GraphError::Throttled { .. }) => TokenOutcome::Throttled,
        Err(GraphError::Unavailable { .. }) => TokenOutcome::Unavailable,
        Err(_) => TokenOutcome::OtherError,
    }
}

/// Failures below the OAuth layer: no answer, or an answer that is throttling or an outage.
#[derive(Debug, thiserror::Error)]
enum Transport {
    #[error("{reason}")]
    Network {
        reason: String,
        /// The connection could not be made (worth an immediate retry; a timeout is not).
        connect: bool,
    },
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
}

fn classify_transport(transport: Transport) -> GraphError {
    match transport {
        Transport::Network { reason, .. } => GraphError::Unavailable {
            service: Service::Identity,
            reason,
            retry_after: None,
        },
        // 429 and 503 both mean "slow down" at the token endpoint.
        Transport::Status {
            status: 429 | 503,
            retry_after,
        } => GraphError::Throttled {
            service: Service::Identity,
            retry_after: retry_after.unwrap_or(super::client::DEFAULT_THROTTLE_WAIT),
        },
        Transport::Status {
            status,
            retry_after,
        } => GraphError::Unavailable {
            service: Service::Identity,
            reason: format!("HTTP {status}"),
            retry_after,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The provider: cache, single flight, the request itself
// ---------------------------------------------------------------------------------------------

type EntraClient = oauth2::Client<
    EntraErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<AccessToken>>>>;

/// Tokens per (tenant, app), cached and fetched once per key at a time.
pub struct TokenProvider {
    http: reqwest::Client,
    authority: Url,
    scope: String,
    renew_before: Duration,
    secrets: Arc<dyn SecretSource>,
    counters: Arc<Counters>,
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        authority: Url,
        graph_scope: String,
        renew_before: Duration,
        secrets: Arc<dyn SecretSource>,
        counters: Arc<Counters>,
    ) -> Self {
        TokenProvider {
            http,
            authority,
            scope: graph_scope,
            renew_before,
            secrets,
            counters,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh token for `app_id` in `tenant`, from the cache or the token endpoint.
    pub async fn token(
        &self,
        tenant: &str,
        app_id: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Arc<AccessToken>, GraphError> {
        let slot = self.slot(tenant, app_id);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if token.is_fresh(SystemTime::now(), self.renew_before) {
                return Ok(token.clone());
            }
        }
        *cached = None;
        let secret_ref = secret.ok_or_else(|| GraphError::MissingSecret {
            app_id: app_id.to_owned(),
            reason: "the operator configuration names no clientSecret for it".to_owned(),
        })?;
        let secret = self
            .secrets
            .get(secret_ref)
            .await
            .map_err(|e| GraphError::MissingSecret {
                app_id: app_id.to_owned(),
                reason: e.to_string(),
            })?;
        let result = self.request(tenant, app_id, &secret).await;
        self.counters.token_request(token_outcome(&result));
        let token = Arc::new(result?);
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops the cached token (e.g. after Graph refused it).
    pub fn invalidate(&self, tenant: &str, app_id: &str) {
        let key = (tenant.to_ascii_lowercase(), app_id.to_ascii_lowercase());
        self.slots.lock().expect("token slots lock").remove(&key);
    }

    /// Drops every cached token of a tenant (its Tenant is gone).
    pub fn forget_tenant(&self, tenant: &str) {
        let tenant = tenant.to_ascii_lowercase();
        self.slots
            .lock()
            .expect("token slots lock")
            .retain(|(t, _), _| *t != tenant);
    }

    /// Drops the cached tokens of `app_ids` in `tenant` that will no longer be fresh at
    /// `next_use`, the earliest the caller expects to need them again.
    ///
    /// A token is kept to save a token request, and only saves one while it lasts: the
    /// tenants whose consents are all granted are checked hours apart, their tokens last an
    /// hour, so keeping them would hold about 1.5 KiB per tenant that is never used again.
    /// A token being fetched or used at this moment is left alone.
    pub fn release_unless_fresh_at<'a>(
        &self,
        tenant: &str,
        app_ids: impl IntoIterator<Item = &'a str>,
        next_use: SystemTime,
    ) {
        let tenant = tenant.to_ascii_lowercase();
        let mut slots = self.slots.lock().expect("token slots lock");
        for app_id in app_ids {
            let key = (tenant.clone(), app_id.to_ascii_lowercase());
            let stale = slots.get(&key).is_some_and(|slot| {
                slot.try_lock().is_ok_and(|cached| {
                    cached
                        .as_ref()
                        .is_none_or(|token| !token.is_fresh(next_use, self.renew_before))
                })
            });
            if stale {
                slots.remove(&key);
            }
        }
    }

    /// How many (tenant, app) pairs hold a cached token or a fetch in progress.
    pub fn cached(&self) -> usize {
        self.slots.lock().expect("token slots lock").len()
    }

    fn slot(&self, tenant: &str, app_id: &str) -> Slot {
        let key = (tenant.to_ascii_lowercase(), app_id.to_ascii_lowercase());
        self.slots
            .lock()
            .expect("token slots lock")
            .entry(key)
            .or_default()
            .clone()
    }

    /// One client-credentials request (retried on network failures only).
    async fn request(
        &self,
        tenant: &str,
        app_id: &str,
        secret: &SecretString,
    ) -> Result<AccessToken, GraphError> {
        if !is_tenant_segment(tenant) {
            return Err(GraphError::TenantNotFound {
                tenant: tenant.to_owned(),
            });
        }
        let token_url = TokenUrl::new(join(
            &self.authority,
            &format!("{tenant}/oauth2/v2.0/token"),
        ))
        .map_err(|e| GraphError::Protocol {
            service: Service::Identity,
            reason: format!("token URL: {e}"),
        })?;
        let client: EntraClient = oauth2::Client::new(ClientId::new(app_id.to_owned()))
            .set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);

        let http = self.http.clone();
        let send = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            async move {
                let response = oauth2::AsyncHttpClient::call(&http, request)
                    .await
                    .map_err(|e| Transport::Network {
                        reason: describe_http_client_error(&e),
                        connect: matches!(&e, oauth2::HttpClientError::Reqwest(r) if r.is_connect()),
                    })?;
                let status = response.status().as_u16();
                if status == 429 || status >= 500 {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    return Err(Transport::Status {
                        status,
                        retry_after,
                    });
                }
                Ok(response)
            }
        };
        let attempt = || async {
            client
                .exchange_client_credentials()
                .add_scope(Scope::new(self.scope.clone()))
                .request_async(&send)
                .await
        };
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(2)
                    .with_jitter(),
            )
            .when(|e| {
                matches!(
                    e,
                    RequestTokenError::Request(Transport::Network { connect: true, .. })
                )
            })
            .await;

        let scrub = |text: String| scrub_secret(text, secret);
        match result {
            Ok(response) => token_from_response(
                response.access_token().secret(),
                response.expires_in(),
                SystemTime::now(),
            )
            .map_err(|reason| GraphError::Protocol {
                service: Service::Identity,
                reason,
            }),
            Err(RequestTokenError::ServerResponse(body)) => {
                // Scrubbed once, at the source: every error made from the answer is clean.
                let body = EntraErrorResponse {
                    error: scrub(body.error),
                    error_description: body.error_description.map(scrub),
                    error_codes: body.error_codes,
                };
                Err(classify_token_error(tenant, app_id, &body))
            }
            Err(RequestTokenError::Request(transport)) => Err(classify_transport(transport)),
            Err(RequestTokenError::Parse(e, _)) => Err(GraphError::Protocol {
                service: Service::Identity,
                reason: format!("the token response is not valid: {}", scrub(e.to_string())),
            }),
            Err(RequestTokenError::Other(text)) => Err(GraphError::Protocol {
                service: Service::Identity,
                reason: scrub(text),
            }),
        }
    }
}

fn describe_http_client_error(e: &oauth2::HttpClientError<reqwest::Error>) -> String {
    match e {
        oauth2::HttpClientError::Reqwest(e) => super::client::describe_reqwest_error(e),
        other => other.to_string(),
    }
}

/// Replaces any occurrence of the secret (should a remote echo it) with `[redacted]`.
fn scrub_secret(text: String, secret: &SecretString) -> String {
    let value = secret.expose_secret();
    if value.len() >= 4 && text.contains(value) {
        text.replace(value, "[redacted]")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> EntraErrorResponse {
        serde_json::from_str(json).unwrap()
    }

    const TENANT: &str = "4a7c1d2e-0000-4000-8000-00000000c0de";
    const APP: &str = "8b0f7a52-0000-4000-8000-000000000003";

    #[test]
    fn missing_service_principal_is_not_consented_in_both_forms() {
        let unauthorized = body(
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier '8b0f7a52-0000-4000-8000-000000000003' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant. Trace ID: 1e0b Correlation ID: 77aa Timestamp: 2025-09-18 01:17:37Z","error_codes":[700016],"timestamp":"2025-09-18 01:17:37Z","trace_id":"1e0b","correlation_id":"77aa","error_uri":"https://login.microsoftonline.com/error?code=700016"}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &unauthorized),
            GraphError::NotConsented {
                tenant: TENANT.into(),
                app_id: APP.into(),
                code: 700016,
                detail: None,
            }
        );
        let missing_sp = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000229: The client application 8b0f7a52-0000-4000-8000-000000000003 is missing service principal in the tenant 4a7c1d2e-0000-4000-8000-00000000c0de. Trace ID: 2f Correlation ID: 3a Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000229]}"#,
        );
        let err = classify_token_error(TENANT, APP, &missing_sp);
        assert_eq!(
            err.to_string(),
            "application 8b0f7a52-0000-4000-8000-000000000003 has no service principal in tenant 4a7c1d2e-0000-4000-8000-00000000c0de (AADSTS7000229): admin consent not given"
        );
        for code in [50020, 500011] {
            let b = body(&format!(
                r#"{{"error":"invalid_request","error_description":"AADSTS{code}: something not found.","error_codes":[{code}]}}"#
            ));
            assert!(matches!(
                classify_token_error(TENANT, APP, &b),
                GraphError::NotConsented { .. }
            ));
        }
    }

    #[test]
    fn other_not_consented_codes_keep_entras_text() {
        // As Entra sends it: the trace id, correlation id and timestamp on lines of their own.
        let resource = body(
            "{\"error\":\"invalid_resource\",\"error_description\":\"AADSTS500011: The resource principal named https://graph.microsoft.us was not found in the tenant named Contoso.\\r\\nTrace ID: 5d1c\\r\\nCorrelation ID: 0f2e\\r\\nTimestamp: 2025-09-18 01:17:37Z\",\"error_codes\":[500011]}",
        );
        let err = classify_token_error(TENANT, APP, &resource);
        assert_eq!(
            err.to_string(),
            "the token endpoint refused application 8b0f7a52-0000-4000-8000-000000000003 in tenant 4a7c1d2e-0000-4000-8000-00000000c0de (AADSTS500011: AADSTS500011: The resource principal named https://graph.microsoft.us was not found in the tenant named Contoso.): admin consent not given"
        );
    }

    #[test]
    fn trace_lines_are_cut_whatever_separates_them() {
        for sep in ["\r\n", " ", "\n"] {
            let b = EntraErrorResponse {
                error: "unauthorized_client".into(),
                error_description: Some(format!(
                    "AADSTS7000112: Application is disabled.{sep}Trace ID: 1{sep}Correlation ID: 2{sep}Timestamp: 2025-09-18 01:17:37Z"
                )),
                ..body(r#"{"error":"x"}"#)
            };
            assert_eq!(
                b.stable_description(),
                "AADSTS7000112: Application is disabled.",
                "{sep:?}"
            );
        }
    }

    #[test]
    fn try_again_answers_are_an_outage_not_a_refusal() {
        for error in ["server_error", "temporarily_unavailable"] {
            let b = body(&format!(
                r#"{{"error":"{error}","error_description":"AADSTS90033: A transient error has occurred. Please try again.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2025-09-18 01:17:37Z","error_codes":[90033]}}"#
            ));
            let err = classify_token_error(TENANT, APP, &b);
            assert!(err.is_transient(), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("the Microsoft identity platform is unavailable: {error}: AADSTS90033: A transient error has occurred. Please try again.")
            );
        }
    }

    #[test]
    fn secret_problems_are_for_the_platform_team() {
        let invalid = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '8b0f7a52-0000-4000-8000-000000000003'. Trace ID: a Correlation ID: b Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000215]}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &invalid).to_string(),
            "the client secret of application 8b0f7a52-0000-4000-8000-000000000003 is invalid (AADSTS7000215): the platform team must correct the operator's configuration"
        );
        // Code only in the description (no error_codes array).
        let expired = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '8b0f7a52-0000-4000-8000-000000000003' are expired. Visit the Azure portal to create new keys for your app."}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &expired),
            GraphError::SecretExpired { app_id: APP.into() }
        );
    }

    #[test]
    fn unknown_tenant_and_other_codes() {
        let not_found = body(
            r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nosuch.example' not found.","error_codes":[90002]}"#,
        );
        assert!(matches!(
            classify_token_error("nosuch.example", APP, &not_found),
            GraphError::TenantNotFound { .. }
        ));
        let consent_required = body(
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application. Trace ID: 9 Correlation ID: 8 Timestamp: 2025-09-18 01:17:37Z","error_codes":[65001]}"#,
        );
        assert!(matches!(
            classify_token_error(TENANT, APP, &consent_required),
            GraphError::NotConsented { code: 65001, .. }
        ));
        let other = body(
            r#"{"error":"unauthorized_client","error_description":"AADSTS7000112: Application '8b0f7a52-0000-4000-8000-000000000003'(recording-hue) is disabled. Trace ID: 9 Correlation ID: 8 Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000112]}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &other).to_string(),
            "the token endpoint refused application 8b0f7a52-0000-4000-8000-000000000003 (unauthorized_client, AADSTS7000112): AADSTS7000112: Application '8b0f7a52-0000-4000-8000-000000000003'(recording-hue) is disabled."
        );
    }

    #[test]
    fn throttling_and_outages_at_the_token_endpoint() {
        let err = classify_transport(Transport::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
        });
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert!(matches!(err, GraphError::Throttled { .. }));
        let err = classify_transport(Transport::Status {
            status: 500,
            retry_after: None,
        });
        assert!(matches!(err, GraphError::Unavailable { .. }));
        assert!(err.is_transient());
    }

    fn jwt(payload: &str) -> String {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.c2lnbmF0dXJl",
            enc(r#"{"typ":"JWT","alg":"RS256","kid":"k1"}"#),
            enc(payload)
        )
    }

    #[test]
    fn roles_and_expiry_come_from_the_jwt() {
        let token = jwt(
            r#"{"aud":"https://graph.microsoft.com","iss":"https://sts.windows.net/4a7c1d2e-0000-4000-8000-00000000c0de/","tid":"4a7c1d2e-0000-4000-8000-00000000c0de","appid":"8b0f7a52-0000-4000-8000-000000000003","oid":"5d1a","idtyp":"app","exp":1900000000,"roles":["Calls.AccessMedia.All","Calls.JoinGroupCall.All"]}"#,
        );
        let parsed =
            token_from_response(&token, Some(Duration::from_secs(3599)), UNIX_EPOCH).unwrap();
        assert_eq!(
            parsed.roles,
            ["Calls.AccessMedia.All", "Calls.JoinGroupCall.All"]
        );
        assert!(parsed.has_role("calls.accessmedia.all"));
        assert_eq!(
            parsed.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_900_000_000)
        );
        assert_eq!(parsed.object_id.as_deref(), Some("5d1a"));
        assert!(
            !format!("{parsed:?}").contains(&token),
            "Debug must not print the bearer"
        );

        // No roles claim: nothing granted. No exp: expires_in counts from now.
        let bare = token_from_response(
            &jwt(r#"{"idtyp":"app"}"#),
            Some(Duration::from_secs(3599)),
            UNIX_EPOCH,
        )
        .unwrap();
        assert!(bare.roles.is_empty());
        assert_eq!(bare.expires_at, UNIX_EPOCH + Duration::from_secs(3599));
        assert!(bare.is_fresh(
            UNIX_EPOCH + Duration::from_secs(3000),
            Duration::from_secs(300)
        ));
        assert!(!bare.is_fresh(
            UNIX_EPOCH + Duration::from_secs(3300),
            Duration::from_secs(300)
        ));

        assert!(token_from_response("opaque-token", None, UNIX_EPOCH).is_err());
    }

    #[test]
    fn scrubbing_hides_an_echoed_secret() {
        let secret = SecretString::from("Xy7~s3cr3t");
        assert_eq!(
            scrub_secret("bad secret Xy7~s3cr3t sent".into(), &secret),
            "bad secret [redacted] sent"
        );
    }
}
