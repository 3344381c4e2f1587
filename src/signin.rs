//! Sign-in with Microsoft for a tenant's administrators: OpenID Connect authorization code flow
//! with PKCE through the platform's `login` application, against the configured authority.
//!
//! - `GET /signin/start?tenant=<Tenant>&return=<path>`: with Quick Start links, `return` must
//!   be a valid Quick Start link of that Tenant (else the one refusal, whether the Tenant exists
//!   or not). While the Tenant's `login` consent is not granted, straight to its
//!   admin-consent link (the admin grants it first; its state brings them back); otherwise a
//!   short-lived signed flow cookie (state, nonce, PKCE verifier) and the authorization request
//!   at `{authority}/organizations/oauth2/v2.0/authorize`.
//! - `GET /signin/callback`: the state must match the flow cookie; `consent_required` leads to
//!   the consent link; the code is redeemed with the verifier, and the ID token validated for
//!   real: RS256 signature against the keys at the tenant's `jwks_uri`, issuer
//!   `{authority}/{tenant id}/v2.0`, audience the `login` app, nonce, expiry. Admitted only
//!   when `tid` is the Tenant's Entra tenant and the UPN (`preferred_username`, else `upn`) is
//!   in `spec.adminUpns`; then a signed, HTTP-only, SameSite=Lax session cookie (Secure unless
//!   the callback is plain HTTP on loopback) and back to the page. Everybody else gets
//!   [`REFUSAL`], whatever the reason (logged, without token or secret).
//! - [`SignIn::session`]: who is signed in for a Tenant, for the pages behind it.
//!
//! The pure parts (cookies, URLs, claim checks) come first; the HTTP shell last.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken9 as jwt;
use kube::Api;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crd::{ConsentState, Tenant};

/// Cookie holding a signed-in administrator's session.
pub const SESSION_COOKIE: &str = "rec_session";
/// Cookie holding one sign-in in progress.
pub const FLOW_COOKIE: &str = "rec_signin";
/// How long a sign-in may take from start to callback.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// The consent key of the application users sign in through.
pub const LOGIN_CONSENT: &str = "login";
/// The one answer to whoever may not sign in.
pub const REFUSAL: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in refused</title></head><body><main><h1>You cannot sign in here</h1><p>Only the administrators your organisation named for this platform can open this page. Ask your platform contact.</p></main></body></html>\n";

/// Errors of setting sign-in up.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("signIn.{field}: {rule}")]
    Config { field: &'static str, rule: String },
}

/// The settings sign-in needs.
#[derive(Clone)]
pub struct SignInSettings {
    /// The authority host, e.g. `https://login.microsoftonline.us` (sovereign clouds too).
    pub authority: String,
    /// The `login` application's client id and secret.
    pub client_id: String,
    pub client_secret: SecretString,
    /// Public URL of `/signin/callback`, registered on the `login` app as a Web redirect URI.
    pub redirect_uri: String,
    /// Key the cookies are signed with.
    pub cookie_key: SecretString,
    /// How long a session lasts.
    pub session_ttl: Duration,
}

// ---------------------------------------------------------------------------------------------
// Signed cookies
// ---------------------------------------------------------------------------------------------

/// A signed-in administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The Tenant object's name.
    pub tenant: String,
    pub upn: String,
    /// Seconds since the epoch.
    pub exp: u64,
}

/// One sign-in in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Flow {
    tenant: String,
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn mac(key: &[u8], purpose: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(payload.as_bytes());
    mac
}

/// `payload.signature`, both base64url; `purpose` keeps a flow cookie from passing as a session.
fn seal<T: Serialize>(key: &[u8], purpose: &str, value: &T) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = b64.encode(serde_json::to_vec(value).expect("cookie value serialises"));
    let signature = b64.encode(mac(key, purpose, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// The value of a cookie [`seal`] made with the same key and purpose, if unexpired.
fn open<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    purpose: &str,
    text: &str,
    exp: fn(&T) -> u64,
) -> Option<T> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, signature) = text.split_once('.')?;
    let signature = b64.decode(signature).ok()?;
    mac(key, purpose, payload).verify_slice(&signature).ok()?;
    let value: T = serde_json::from_slice(&b64.decode(payload).ok()?).ok()?;
    (exp(&value) > now_secs()).then_some(value)
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies may go without `Secure`: only for a plain-HTTP callback on loopback.
fn insecure_loopback(redirect_uri: &str) -> bool {
    url::Url::parse(redirect_uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) | matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                | matches!(u.host(), Some(url::Host::Domain("localhost")))
    })
}

fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A local path to go back to: absolute path, not `//host`, no backslash.
fn local_path(path: &str) -> Option<&str> {
    (path.starts_with('/') && !path.starts_with("//") && !path.contains('\\')).then_some(path)
}

// ---------------------------------------------------------------------------------------------
// What an ID token must say
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct IdClaims {
    tid: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    upn: Option<String>,
}

/// What a Tenant tells sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantFacts {
    pub tenant_id: String,
    pub admin_upns: Vec<String>,
    /// The `login` consent's admin-consent link, while it is not granted.
    pub login_consent_url: Option<String>,
}

impl TenantFacts {
    /// From a Tenant object, once its Entra tenant id is known.
    pub fn of(tenant: &Tenant) -> Option<TenantFacts> {
        let status = tenant.status.as_ref();
        let tenant_id = tenant
            .spec
            .tenant_id
            .clone()
            .or_else(|| status.and_then(|s| s.tenant_id.clone()))?
            .to_ascii_lowercase();
        let login = status
            .and_then(|s| s.consents.iter().find(|c| c.name == LOGIN_CONSENT))
            .filter(|c| c.state != ConsentState::Granted);
        Some(TenantFacts {
            tenant_id,
            admin_upns: tenant.spec.admin_upns.clone(),
            login_consent_url: login.and_then(|c| c.consent_url.clone()),
        })
    }
}

/// Whether verified claims admit the user to the tenant: its `tid`, a listed UPN, the nonce.
fn admits(claims: &IdClaims, facts: &TenantFacts, nonce: &str) -> Result<String, &'static str> {
    if claims.nonce.as_deref() != Some(nonce) {
        return Err("the nonce does not match");
    }
    if !claims.tid.eq_ignore_ascii_case(&facts.tenant_id) {
        return Err("the user belongs to another Entra tenant");
    }
    let upn = claims
        .preferred_username
        .as_deref()
        .or(claims.upn.as_deref())
        .ok_or("the ID token names no user")?;
    facts
        .admin_upns
        .iter()
        .any(|a| a.eq_ignore_ascii_case(upn))
        .then(|| upn.to_ascii_lowercase())
        .ok_or("the user is not in spec.adminUpns")
}

// ---------------------------------------------------------------------------------------------
// The HTTP shell
// ---------------------------------------------------------------------------------------------

/// Sign-in, shared by the public routes.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<Inner>,
    /// The Quick Start links' keys: the `login` consent link sent from a page carries that
    /// page in its signed state, so the admin comes back to it after consenting.
    links: Option<crate::links::QuickStartLinks>,
}

struct Inner {
    settings: SignInSettings,
    http: reqwest::Client,
    secure: bool,
    tenants: Api<Tenant>,
}

#[derive(Deserialize)]
struct StartQuery {
    tenant: String,
    #[serde(rename = "return", default)]
    return_to: Option<String>,
    /// Set by the consent callback right after an admin consent: no detour through the
    /// `login` consent even if the Tenant's status has not caught up yet (if the consent is
    /// in fact missing, Microsoft answers `consent_required` and the callback leads to it).
    #[serde(default)]
    consented: Option<String>,
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

fn refuse(why: &str) -> Response {
    tracing::info!(reason = why, "sign-in refused");
    (StatusCode::FORBIDDEN, Html(REFUSAL)).into_response()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl SignIn {
    /// Sign-in as the operator configuration describes it: `None` when it is off.
    pub async fn from_config(
        config: &crate::config::OperatorConfig,
        secrets: &dyn crate::config::SecretSource,
        client: kube::Client,
    ) -> Result<Option<SignIn>, SignInError> {
        let Some(c) = config.sign_in.as_ref().filter(|c| c.enabled) else {
            return Ok(None);
        };
        let login = config
            .consents
            .get(LOGIN_CONSENT)
            .ok_or_else(|| SignInError::Config {
                field: "enabled",
                rule: format!("needs consents.{LOGIN_CONSENT}"),
            })?;
        let secret_ref = login.client_secret.as_ref().ok_or(SignInError::Config {
            field: "enabled",
            rule: format!("needs consents.{LOGIN_CONSENT}.clientSecret"),
        })?;
        let client_secret = secrets
            .get(secret_ref)
            .await
            .map_err(|e| SignInError::Config {
                field: "enabled",
                rule: format!("the {LOGIN_CONSENT} client secret cannot be read: {e}"),
            })?;
        let cookie_key = secrets
            .get(&c.cookie_key)
            .await
            .map_err(|e| SignInError::Config {
                field: "cookieKey",
                rule: format!("cannot be read: {e}"),
            })?;
        let authority = config
            .cloud
            .authority_host()
            .map_err(|rule| SignInError::Config {
                field: "enabled",
                rule: format!("the cloud's authority host: {rule}"),
            })?;
        let settings = SignInSettings {
            authority: authority.to_string(),
            client_id: login.app_id.clone(),
            client_secret,
            redirect_uri: c.redirect_uri.clone(),
            cookie_key,
            session_ttl: c.session_ttl,
        };
        SignIn::new(settings, client).map(Some)
    }

    pub fn new(settings: SignInSettings, client: kube::Client) -> Result<SignIn, SignInError> {
        if url::Url::parse(&settings.redirect_uri).is_err() {
            return Err(SignInError::Config {
                field: "redirectUri",
                rule: "must be an absolute URL (the public URL of /signin/callback)".into(),
            });
        }
        if settings.cookie_key.expose_secret().len() < 32 {
            return Err(SignInError::Config {
                field: "cookieKey",
                rule: "must be at least 32 characters".into(),
            });
        }
        let secure = !insecure_loopback(&settings.redirect_uri);
        Ok(SignIn {
            inner: Arc::new(Inner {
                settings,
                http: crate::graph::http_client(Duration::from_secs(10)),
                secure,
                tenants: Api::all(client),
            }),
            links: None,
        })
    }

    fn key(&self) -> &[u8] {
        self.inner.settings.cookie_key.expose_secret().as_bytes()
    }

    /// The administrator signed in for the Tenant `tenant`, if any.
    pub fn session(&self, headers: &HeaderMap, tenant: &str) -> Option<Session> {
        let text = cookie_value(headers, SESSION_COOKIE)?;
        open::<Session>(self.key(), "session", text, |s| s.exp).filter(|s| s.tenant == tenant)
    }

    /// Where to send a visitor of `return_to` who is not signed in for `tenant`.
    pub fn start_url(tenant: &str, return_to: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("tenant", tenant)
            .append_pair("return", return_to);
        format!("/signin/start?{}", q.finish())
    }

    /// Sign-in whose `login` consent links return to the Quick Start page signed by `links`.
    pub fn with_links(mut self, links: Option<crate::links::QuickStartLinks>) -> Self {
        self.links = links;
        self
    }

    /// [`SignIn::start_url`] for an admin who has just given an admin consent.
    pub fn start_url_after_consent(tenant: &str, return_to: &str) -> String {
        format!("{}&consented=1", Self::start_url(tenant, return_to))
    }

    /// The `login` consent link `consent`, its state carrying the Quick Start page
    /// `return_to` when it is one (else the link as it is).
    async fn consent_returning_to(&self, consent: &str, return_to: &str) -> String {
        let (Some(links), Some(page)) =
            (&self.links, return_to.strip_prefix(crate::links::PAGE_PATH))
        else {
            return consent.to_owned();
        };
        match links.keys().await {
            Ok(keys) => crate::consent_link::returning_to_page(
                consent,
                &keys,
                page,
                k8s_openapi::jiff::Timestamp::now(),
            ),
            Err(_) => consent.to_owned(),
        }
    }

    /// Whether `return_to` may follow a sign-in for `tenant`: with Quick Start links, only that
    /// Tenant's page under a token that verifies; without them, any local path.
    async fn opens_page(&self, tenant: &Tenant, return_to: &str) -> bool {
        let Some(links) = &self.links else {
            return true;
        };
        let name = kube::ResourceExt::name_any(tenant);
        let uid = tenant.metadata.uid.as_deref().unwrap_or_default();
        let Some(token) = return_to
            .strip_prefix(crate::links::PAGE_PATH)
            .and_then(crate::links::Token::parse)
            .filter(|t| t.tenant() == name)
        else {
            return false;
        };
        match links.keys().await {
            Ok(keys) => {
                !uid.is_empty() && token.verify(&keys, uid, k8s_openapi::jiff::Timestamp::now())
            }
            Err(_) => false,
        }
    }

    /// `/signin/start` and `/signin/callback`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/signin/start", get(start))
            .route("/signin/callback", get(callback))
            .with_state(self.clone())
    }

    async fn facts(&self, tenant: &str) -> Option<TenantFacts> {
        let found = self.inner.tenants.get_opt(tenant).await.ok().flatten()?;
        TenantFacts::of(&found)
    }

    /// Verifies an ID token: signature against the tenant's published keys, issuer, audience
    /// and expiry.
    async fn verify(&self, id_token: &str, tenant_id: &str) -> Result<IdClaims, String> {
        let authority = self.inner.settings.authority.trim_end_matches('/');
        let issuer = format!("{authority}/{tenant_id}/v2.0");
        let doc: serde_json::Value = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        let jwks_uri = doc["jwks_uri"].as_str().ok_or("no jwks_uri")?.to_owned();
        let keys: jwt::jwk::JwkSet = serde_json::from_value(self.get_json(&jwks_uri).await?)
            .map_err(|e| format!("bad JWKS: {e}"))?;
        let header = jwt::decode_header(id_token).map_err(|e| format!("not a JWT: {e}"))?;
        let kid = header.kid.ok_or("the ID token names no key")?;
        let jwk = keys
            .find(&kid)
            .ok_or("the ID token's key is not published")?;
        let key = jwt::DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        let mut validation = jwt::Validation::new(jwt::Algorithm::RS256);
        validation.set_audience(&[&self.inner.settings.client_id]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;
        jwt::decode::<IdClaims>(id_token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| format!("the ID token does not validate: {e}"))
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("{url}: {e}"))
    }

    /// Redeems the code; the ID token.
    async fn redeem(&self, code: &str, verifier: &str) -> Result<String, String> {
        let s = &self.inner.settings;
        let url = format!(
            "{}/organizations/oauth2/v2.0/token",
            s.authority.trim_end_matches('/')
        );
        let response = self
            .inner
            .http
            .post(&url)
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", s.client_id.as_str()),
                ("client_secret", s.client_secret.expose_secret()),
                ("code", code),
                ("redirect_uri", s.redirect_uri.as_str()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| format!("token endpoint: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "token endpoint refused the code: {}",
                body["error"].as_str().unwrap_or("no error given")
            ));
        }
        body["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no id_token in the answer".to_owned())
    }
}

async fn start(State(signin): State<SignIn>, Query(q): Query<StartQuery>) -> Response {
    let Some(return_to) = local_path(q.return_to.as_deref().unwrap_or("/")).map(str::to_owned)
    else {
        return refuse("the return path is not local");
    };
    let Some(found) = signin.inner.tenants.get_opt(&q.tenant).await.ok().flatten() else {
        return refuse("no such Tenant");
    };
    if !signin.opens_page(&found, &return_to).await {
        // With Quick Start links, sign-in starts only from a valid link of this Tenant: the
        // answer tells nobody else whether the Tenant exists.
        return refuse("the return path is not a valid Quick Start link of this Tenant");
    }
    let Some(facts) = TenantFacts::of(&found) else {
        return refuse("the Tenant's tenant id is not known yet");
    };
    if let Some(consent) = facts
        .login_consent_url
        .as_deref()
        .filter(|_| q.consented.is_none())
    {
        // The login application must be consented to before anybody can sign in through it;
        // the consent callback brings the admin back here, to the same page.
        return redirect(&signin.consent_returning_to(consent, &return_to).await, &[]);
    }
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let flow = Flow {
        tenant: q.tenant,
        state: oauth2::CsrfToken::new_random().secret().clone(),
        nonce: oauth2::CsrfToken::new_random().secret().clone(),
        verifier: verifier.secret().clone(),
        return_to,
        exp: now_secs() + FLOW_TTL.as_secs(),
    };
    let s = &signin.inner.settings;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("client_id", &s.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &s.redirect_uri)
        .append_pair("response_mode", "query")
        .append_pair("scope", "openid profile")
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256");
    let location = format!(
        "{}/organizations/oauth2/v2.0/authorize?{}",
        s.authority.trim_end_matches('/'),
        query.finish()
    );
    let cookie = set_cookie(
        FLOW_COOKIE,
        &seal(signin.key(), "flow", &flow),
        FLOW_TTL,
        signin.inner.secure,
    );
    redirect(&location, &[cookie])
}

async fn callback(
    State(signin): State<SignIn>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(flow) = cookie_value(&headers, FLOW_COOKIE)
        .and_then(|text| open::<Flow>(signin.key(), "flow", text, |f| f.exp))
    else {
        return refuse("no sign-in in progress in this browser");
    };
    if q.state.as_deref() != Some(flow.state.as_str()) {
        return refuse("the state does not match the sign-in in progress");
    }
    let Some(facts) = signin.facts(&flow.tenant).await else {
        return refuse("the Tenant is gone");
    };
    let clear_flow = set_cookie(FLOW_COOKIE, "", Duration::ZERO, signin.inner.secure);
    if q.error.as_deref() == Some("consent_required") {
        if let Some(consent) = &facts.login_consent_url {
            let consent = signin.consent_returning_to(consent, &flow.return_to).await;
            return redirect(&consent, &[clear_flow]);
        }
    }
    let Some(code) = q.code.as_deref().filter(|_| q.error.is_none()) else {
        return refuse("Microsoft answered with an error");
    };
    let id_token = match signin.redeem(code, &flow.verifier).await {
        Ok(t) => t,
        Err(why) => return refuse(&why),
    };
    let claims = match signin.verify(&id_token, &facts.tenant_id).await {
        Ok(c) => c,
        Err(why) => return refuse(&why),
    };
    let upn = match admits(&claims, &facts, &flow.nonce) {
        Ok(upn) => upn,
        Err(why) => return refuse(why),
    };
    tracing::info!(tenant = %flow.tenant, upn = %upn, "administrator signed in");
    let ttl = signin.inner.settings.session_ttl;
    let session = Session {
        tenant: flow.tenant.clone(),
        upn,
        exp: now_secs() + ttl.as_secs(),
    };
    let cookie = set_cookie(
        SESSION_COOKIE,
        &seal(signin.key(), "session", &session),
        ttl,
        signin.inner.secure,
    );
    redirect(&flow.return_to, &[cookie, clear_flow])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn sealed_cookies_open_only_unchanged_unexpired_and_for_their_purpose() {
        let s = Session {
            tenant: "contoso".into(),
            upn: "a@b.example".into(),
            exp: now_secs() + 60,
        };
        let text = seal(KEY, "session", &s);
        assert_eq!(
            open::<Session>(KEY, "session", &text, |s| s.exp),
            Some(s.clone())
        );
        assert_eq!(open::<Session>(KEY, "flow", &text, |s| s.exp), None);
        assert_eq!(
            open::<Session>(b"another key of thirty-two bytes!", "session", &text, |s| s
                .exp),
            None
        );
        let mut forged = s.clone();
        forged.upn = "boss@b.example".into();
        let forged_payload = seal(KEY, "session", &forged);
        let tampered = format!(
            "{}.{}",
            forged_payload.split('.').next().unwrap(),
            text.split('.').nth(1).unwrap()
        );
        assert_eq!(open::<Session>(KEY, "session", &tampered, |s| s.exp), None);
        let old = Session {
            exp: now_secs() - 1,
            ..s
        };
        assert_eq!(
            open::<Session>(KEY, "session", &seal(KEY, "session", &old), |s| s.exp),
            None
        );
    }

    #[test]
    fn cookies_are_secure_except_on_plain_http_loopback_and_returns_stay_local() {
        assert!(insecure_loopback("http://127.0.0.1:8081/signin/callback"));
        assert!(insecure_loopback("http://localhost:8081/signin/callback"));
        assert!(!insecure_loopback("https://127.0.0.1/signin/callback"));
        assert!(!insecure_loopback(
            "http://platform.example/signin/callback"
        ));
        let c = set_cookie("n", "v", Duration::from_secs(60), true);
        assert_eq!(c, "n=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(local_path("/quickstart/x"), Some("/quickstart/x"));
        assert_eq!(local_path("//evil.example"), None);
        assert_eq!(local_path("https://evil.example"), None);
    }

    #[test]
    fn only_listed_administrators_of_the_tenant_with_the_nonce_are_admitted() {
        let facts = TenantFacts {
            tenant_id: "t1".into(),
            admin_upns: vec!["Admin@Contoso.example".into()],
            login_consent_url: None,
        };
        let claims = |tid: &str, upn: &str, nonce: &str| IdClaims {
            tid: tid.into(),
            nonce: Some(nonce.into()),
            preferred_username: Some(upn.into()),
            upn: None,
        };
        assert_eq!(
            admits(&claims("t1", "admin@contoso.example", "n"), &facts, "n"),
            Ok("admin@contoso.example".into())
        );
        assert!(admits(&claims("t1", "other@contoso.example", "n"), &facts, "n").is_err());
        assert!(admits(&claims("t2", "admin@contoso.example", "n"), &facts, "n").is_err());
        assert!(admits(&claims("t1", "admin@contoso.example", "x"), &facts, "n").is_err());
    }
}
