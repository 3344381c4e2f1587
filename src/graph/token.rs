//! Client-credentials tokens for one platform application in one customer tenant.
//!
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with `scope={graph}/.default`, through the
//! `oauth2` crate. A token is cached per (tenant, app) until `expires_in - tokenRenewBefore`; callers
//! asking for the same key at once share one request. A refusal is read from its AADSTS code:
//! no service principal (no consent yet), bad or expired secret, unknown tenant; 429/503 are
//! throttling, other 5xx and network failures an outage. The application permissions granted
//! in the tenant are hinted at by the token's `roles` claim, decoded without a signature check
//! (`jsonwebtoken::dangerous::insecure_decode_claims`) when the token is a JWT: it came
//! straight from the token endpoint over TLS. Microsoft treats tokens as opaque, so a token
//! that does not decode is still a token, and its lifetime is `expires_in`.

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
use serde::Deserialize;
use url::Url;

use super::entra::{classify_token_error, EntraErrorResponse};
use super::error::{GraphError, Service};
use super::http::{
    describe_reqwest_error, is_tenant_segment, join, parse_retry_after, DEFAULT_THROTTLE_WAIT,
};
use super::metrics::{Counters, TokenOutcome};
use crate::config::{SecretRef, SecretSource};

// ---------------------------------------------------------------------------------------------
// The token and what it says
// ---------------------------------------------------------------------------------------------

/// An app-only access token for Microsoft Graph in one tenant.
///
/// The token itself is opaque by contract: its lifetime comes from the token endpoint's
/// `expires_in`, and what its payload says (when it is a readable JWT) is a hint only.
#[derive(Debug)]
pub struct AccessToken {
    bearer: SecretString,
    /// The application permissions granted to the app in the tenant, from the `roles` claim
    /// (absent claim: none); `None` when the token is not a readable JWT. A hint: Graph's
    /// app role assignments are the truth.
    pub roles: Option<Vec<String>>,
    /// When the token stops being accepted: `expires_in` after it was received.
    pub expires_at: SystemTime,
    /// The tenant that issued it (`tid`), when readable.
    pub tenant_id: Option<String>,
    /// The object id of the app's service principal in that tenant (`oid`), when readable.
    pub object_id: Option<String>,
}

impl AccessToken {
    /// The bearer value for an `Authorization` header. Never log it.
    pub fn bearer(&self) -> &str {
        self.bearer.expose_secret()
    }

    /// Whether `roles` holds `name` (permission names compare case-insensitively); `None`
    /// when the token cannot say.
    pub fn has_role(&self, name: &str) -> Option<bool> {
        let roles = self.roles.as_ref()?;
        Some(roles.iter().any(|r| r.eq_ignore_ascii_case(name)))
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

/// The longest a token is kept, whatever its `expires_in` or `exp` say (Entra's are 1 to 24 h).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Builds the token from the endpoint's answer. The lifetime is `expires_in` (the OAuth
/// contract); only an answer without it falls back to the JWT's `exp`. The payload is read
/// for hints when it is a JWT, and a token that is not one is kept all the same.
pub fn token_from_response(
    access_token: &str,
    expires_in: Option<Duration>,
    now: SystemTime,
) -> Result<AccessToken, String> {
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(access_token).ok();
    // No `expires_in` beyond a day is believed, and no `exp` overflows the clock.
    let longest = now + MAX_TOKEN_LIFETIME;
    let expires_at = match (expires_in, claims.as_ref().and_then(|c| c.exp)) {
        (Some(lifetime), _) => now + lifetime.min(MAX_TOKEN_LIFETIME),
        (None, Some(exp)) => UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .unwrap_or(longest),
        (None, None) => {
            return Err(
                "the token response has no expires_in and the token no readable expiry".to_owned(),
            )
        }
    };
    let (roles, tenant_id, object_id) = match claims {
        Some(c) => (Some(c.roles), c.tid, c.oid),
        None => (None, None, None),
    };
    Ok(AccessToken {
        bearer: SecretString::from(access_token),
        roles,
        expires_at,
        tenant_id,
        object_id,
    })
}

// ---------------------------------------------------------------------------------------------
// What a refusal means
// ---------------------------------------------------------------------------------------------

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
            retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
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

/// Whose credential a cached token was issued to: the platform's configured secret for the
/// app, or a client secret someone else named (a RecordingService's own app registration).
/// Two credentials for one app id never share a slot, so a RecordingService whose `clientId`
/// is a platform app's can neither evict the platform's token nor be answered with it.
type SlotKey = (String, String, String);

/// The platform's credential (the third part of a [`SlotKey`]).
const PLATFORM: &str = "";

fn slot_key(tenant: &str, app_id: &str, credential: &str) -> SlotKey {
    (
        tenant.to_ascii_lowercase(),
        app_id.to_ascii_lowercase(),
        credential.to_owned(),
    )
}

/// The slot credential of a client secret named by someone other than the platform.
fn foreign_credential(secret: &SecretRef) -> String {
    // A reference names where the secret is, never its value.
    format!("ref:{}", serde_json::to_string(secret).unwrap_or_default())
}

/// Tokens per (tenant, app, credential), cached and fetched once per key at a time.
pub struct TokenProvider {
    http: reqwest::Client,
    authority: Url,
    scope: String,
    renew_before: Duration,
    secrets: Arc<dyn SecretSource>,
    counters: Arc<Counters>,
    slots: Mutex<HashMap<SlotKey, Slot>>,
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

    /// Where the applications' client secrets are read from.
    pub fn secrets(&self) -> &Arc<dyn SecretSource> {
        &self.secrets
    }

    /// A fresh token for the platform's `app_id` in `tenant`, from the cache or the token
    /// endpoint (with `secret`, the platform's client secret for the app).
    pub async fn token(
        &self,
        tenant: &str,
        app_id: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Arc<AccessToken>, GraphError> {
        self.token_in(self.slot(tenant, app_id, PLATFORM), tenant, app_id, secret)
            .await
    }

    /// A fresh token for `app_id` in `tenant` with a client secret someone else keeps (a
    /// RecordingService's own app registration), cached apart from the platform's tokens.
    pub async fn foreign_token(
        &self,
        tenant: &str,
        app_id: &str,
        secret: &SecretRef,
    ) -> Result<Arc<AccessToken>, GraphError> {
        let slot = self.slot(tenant, app_id, &foreign_credential(secret));
        self.token_in(slot, tenant, app_id, Some(secret)).await
    }

    /// Drops the cached token [`TokenProvider::foreign_token`] gave for `secret`.
    pub fn invalidate_foreign(&self, tenant: &str, app_id: &str, secret: &SecretRef) {
        let key = slot_key(tenant, app_id, &foreign_credential(secret));
        self.slots.lock().expect("token slots lock").remove(&key);
    }

    async fn token_in(
        &self,
        slot: Slot,
        tenant: &str,
        app_id: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Arc<AccessToken>, GraphError> {
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

    /// Drops the platform's cached token (e.g. after Graph refused it).
    pub fn invalidate(&self, tenant: &str, app_id: &str) {
        let key = slot_key(tenant, app_id, PLATFORM);
        self.slots.lock().expect("token slots lock").remove(&key);
    }

    /// Drops every cached token of a tenant (its Tenant is gone).
    pub fn forget_tenant(&self, tenant: &str) {
        let tenant = tenant.to_ascii_lowercase();
        self.slots
            .lock()
            .expect("token slots lock")
            .retain(|(t, _, _), _| *t != tenant);
    }

    /// Drops the cached tokens of `app_ids` in `tenant` that will no longer be fresh at
    /// `next_use`, the earliest the caller expects to need them again.
    ///
    /// A token is kept to save a token request, and only saves one while it lasts: the
    /// tenants whose consents are all granted are checked hours apart, their tokens last an
    /// hour, so keeping them would hold memory for every tenant that is never used again.
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
            let key = slot_key(&tenant, app_id, PLATFORM);
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

    /// How many (tenant, app, credential) keys hold a cached token or a fetch in progress.
    pub fn cached(&self) -> usize {
        self.slots.lock().expect("token slots lock").len()
    }

    fn slot(&self, tenant: &str, app_id: &str, credential: &str) -> Slot {
        let key = slot_key(tenant, app_id, credential);
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
        oauth2::HttpClientError::Reqwest(e) => describe_reqwest_error(e),
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
    fn lifetime_from_expires_in_roles_from_the_jwt_as_a_hint() {
        let token = jwt(
            r#"{"aud":"https://graph.microsoft.com","iss":"https://sts.windows.net/4a7c1d2e-0000-4000-8000-00000000c0de/","tid":"4a7c1d2e-0000-4000-8000-00000000c0de","appid":"8b0f7a52-0000-4000-8000-000000000003","oid":"5d1a","idtyp":"app","exp":1900000000,"roles":["Calls.AccessMedia.All","Calls.JoinGroupCall.All"]}"#,
        );
        let parsed =
            token_from_response(&token, Some(Duration::from_secs(3599)), UNIX_EPOCH).unwrap();
        assert_eq!(
            parsed.roles.as_deref().unwrap(),
            ["Calls.AccessMedia.All", "Calls.JoinGroupCall.All"]
        );
        assert_eq!(parsed.has_role("calls.accessmedia.all"), Some(true));
        // expires_in wins over the payload's exp.
        assert_eq!(parsed.expires_at, UNIX_EPOCH + Duration::from_secs(3599));
        assert_eq!(parsed.object_id.as_deref(), Some("5d1a"));
        assert!(
            !format!("{parsed:?}").contains(&token),
            "Debug must not print the bearer"
        );

        // No roles claim: nothing granted.
        let bare = token_from_response(
            &jwt(r#"{"idtyp":"app"}"#),
            Some(Duration::from_secs(3599)),
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(bare.roles.as_deref(), Some(&[][..]));
        assert!(bare.is_fresh(
            UNIX_EPOCH + Duration::from_secs(3000),
            Duration::from_secs(300)
        ));
        assert!(!bare.is_fresh(
            UNIX_EPOCH + Duration::from_secs(3300),
            Duration::from_secs(300)
        ));
        // Only an answer without expires_in falls back to exp.
        let no_lifetime = token_from_response(&token, None, UNIX_EPOCH).unwrap();
        assert_eq!(
            no_lifetime.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_900_000_000)
        );
    }

    #[test]
    fn a_huge_lifetime_is_one_day_and_does_not_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let long = token_from_response("opaque", Some(Duration::from_secs(u64::MAX)), now).unwrap();
        assert_eq!(long.expires_at, now + MAX_TOKEN_LIFETIME);
        let far = token_from_response(&jwt(r#"{"exp":18446744073709551615}"#), None, now).unwrap();
        assert_eq!(far.expires_at, now + MAX_TOKEN_LIFETIME);
    }

    #[test]
    fn an_opaque_token_is_a_token_that_says_nothing() {
        let opaque = token_from_response(
            "EwBwA8l6BAAUs5+HQn0N+h2FxWzLS31ZgQVuHsYAAV",
            Some(Duration::from_secs(3599)),
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(opaque.roles, None);
        assert_eq!(opaque.has_role("Directory.Read.All"), None);
        assert_eq!(opaque.object_id, None);
        assert_eq!(opaque.expires_at, UNIX_EPOCH + Duration::from_secs(3599));
        // Without expires_in nothing tells how long it lasts.
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
