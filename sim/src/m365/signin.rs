//! Users signing in to an application: the OpenID Connect authorization code flow with PKCE.
//!
//! 1. `GET /{tenant}/oauth2/v2.0/authorize`: the request is checked as Entra checks it (a
//!    known client, a redirect URI registered on it, `response_type=code`, `openid` in the
//!    scope, an S256 code challenge); a bad client or redirect URI gets an error page, never a
//!    redirect. A good one gets the login page: a plain HTML form.
//! 2. `POST /{tenant}/login`: username and password of a user seeded in a tenant. A wrong
//!    password, a disabled account or a user of another tenant than the one asked for gets
//!    the form again with the AADSTS error; an app without a service principal in the user's
//!    tenant (nobody consented) redirects back with `error=consent_required`. Otherwise a
//!    single-use authorization code, valid for ten minutes, goes back to the redirect URI.
//! 3. `POST /{tenant}/oauth2/v2.0/token` with `grant_type=authorization_code`: the code, the
//!    client (and its secret, when the app has secrets), the same redirect URI and the PKCE
//!    verifier are checked; the answer carries an RS256 ID token signed with the key at the
//!    tenant's `jwks_uri`.
//!
//! Pure functions over the directory and the pending flows; `server.rs` moves the bytes.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::directory::{is_guid, new_guid, Directory};
use super::identity::AadError;

/// How long an authorization code may be redeemed (Entra: about ten minutes).
pub const CODE_LIFETIME_SECS: i64 = 600;
/// How long a login page may be submitted.
const FLOW_LIFETIME_SECS: i64 = 1800;
/// Lifetime of ID tokens.
const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

/// A deliberate defect in the next ID tokens, to test that clients really validate them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenFault {
    /// The payload is changed after signing to claim this UPN: the signature no longer
    /// matches.
    Forged(String),
    /// Issued and expired an hour and more ago.
    Expired,
    /// Another nonce than the one the client sent.
    WrongNonce,
    /// Issued for another application.
    WrongAudience,
}

/// An authorization request the login page is answering.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    /// The tenant segment of the URL (a tenant, or `organizations` / `common`).
    pub tenant_segment: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub started: DateTime<Utc>,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub(crate) struct Code {
    pub flow: Flow,
    pub tenant_id: String,
    pub user_id: String,
    pub upn: String,
    pub name: String,
    pub issued: DateTime<Utc>,
    pub redeemed: bool,
}

/// Pending flows and issued codes.
#[derive(Debug, Default)]
pub(crate) struct SignIns {
    pub flows: HashMap<String, Flow>,
    pub codes: HashMap<String, Code>,
    pub fault: Option<IdTokenFault>,
}

/// What the authorization endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Page {
    /// An HTML page with this status.
    Html(u16, String),
    /// A redirect to this URL.
    Redirect(String),
}

fn random() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(status: u16, code: u32, message: &str) -> Page {
    Page::Html(
        status,
        format!(
            "<!doctype html><html><head><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">AADSTS{code}: {}</p></body></html>",
            escape(message)
        ),
    )
}

/// `redirect_uri?params` with the parameters form-encoded.
fn redirect(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", query.finish())
}

/// The login form of flow `flow_id`, with an error line when a try failed.
pub(crate) fn login_page(tenant_segment: &str, flow_id: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body>\
<h1>Sign in</h1>{error}\
<form method=\"post\" action=\"/{tenant}/login\">\
<input type=\"hidden\" name=\"flow\" value=\"{flow}\">\
<label for=\"username\">Email, phone, or Skype</label> <input id=\"username\" name=\"username\" type=\"email\" autocomplete=\"username\"><br>\
<label for=\"password\">Password</label> <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"><br>\
<button id=\"sign-in\" type=\"submit\">Sign in</button></form></body></html>",
        tenant = escape(tenant_segment),
        flow = escape(flow_id),
    )
}

/// Checks an authorization request; a good one starts a flow and shows the login page.
pub(crate) fn authorize(
    dir: &Directory,
    signins: &mut SignIns,
    tenant_segment: &str,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Page {
    signins
        .flows
        .retain(|_, f| (now - f.started).num_seconds() < FLOW_LIFETIME_SECS);
    let multi = super::identity::is_multi_tenant_alias(tenant_segment);
    if !multi && dir.resolve_tenant(tenant_segment).is_none() {
        return error_page(400, 90002, &format!("Tenant '{tenant_segment}' not found."));
    }
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = param("client_id") else {
        return error_page(
            400,
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = dir.app(client_id).filter(|_| is_guid(client_id)) else {
        return error_page(
            400,
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    };
    let Some(redirect_uri) = param("redirect_uri") else {
        return error_page(
            400,
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    if !app.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page(400, 50011, &format!(
            "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
            app.app_id
        ));
    }
    let state = param("state");
    let back = |error: &str, description: String| {
        let mut p = vec![
            ("error", error),
            ("error_description", description.as_str()),
        ];
        if let Some(s) = state {
            p.push(("state", s));
        }
        Page::Redirect(redirect(redirect_uri, &p))
    };
    if param("response_type") != Some("code") {
        return back(
            "unsupported_response_type",
            "AADSTS700054: response_type must be 'code' for this application.".to_string(),
        );
    }
    let scope = param("scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return back(
            "invalid_request",
            "AADSTS900144: The scope must contain 'openid' to sign a user in.".to_string(),
        );
    }
    let Some(challenge) = param("code_challenge") else {
        return back(
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required.".to_string(),
        );
    };
    if param("code_challenge_method") != Some("S256") {
        return back(
            "invalid_request",
            "AADSTS501491: code_challenge_method must be S256.".to_string(),
        );
    }
    let flow_id = random();
    signins.flows.insert(
        flow_id.clone(),
        Flow {
            tenant_segment: tenant_segment.to_string(),
            client_id: app.app_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            state: state.map(str::to_string),
            nonce: param("nonce").map(str::to_string),
            code_challenge: challenge.to_string(),
            scope: scope.to_string(),
            started: now,
        },
    );
    Page::Html(200, login_page(tenant_segment, &flow_id, None))
}

/// A submitted login form.
pub(crate) fn login(
    dir: &Directory,
    signins: &mut SignIns,
    form: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Page {
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let flow_id = get("flow");
    let Some(flow) = signins.flows.get(flow_id).cloned() else {
        return error_page(
            400,
            50058,
            "The sign-in session has expired or is unknown. Start again from the application.",
        );
    };
    let again = |message: &str| {
        Page::Html(
            200,
            login_page(&flow.tenant_segment, flow_id, Some(message)),
        )
    };
    let username = get("username").trim();
    let Some((tenant, user)) = dir
        .find_user(username)
        .filter(|(_, u)| u.password == get("password"))
    else {
        return again("AADSTS50126: Your account or password is incorrect.");
    };
    let asked_tenant = dir.resolve_tenant(&flow.tenant_segment);
    if asked_tenant.is_some_and(|t| t.id != tenant.id) {
        return again(&format!(
            "AADSTS50020: User account '{}' from identity provider does not exist in tenant '{}' and cannot access the application.",
            user.upn, flow.tenant_segment
        ));
    }
    if !user.account_enabled {
        return again("AADSTS50057: The user account is disabled.");
    }
    signins.flows.remove(flow_id);
    let with_state = |mut p: Vec<(&'static str, String)>| {
        if let Some(s) = &flow.state {
            p.push(("state", s.clone()));
        }
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Page::Redirect(redirect(&flow.redirect_uri, &p))
    };
    if tenant.sp_by_app_id(&flow.client_id).is_none() {
        return with_state(vec![
            ("error", "consent_required".to_string()),
            ("error_description", format!(
                "AADSTS65001: The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                flow.client_id
            )),
        ]);
    }
    let code = random();
    signins
        .codes
        .retain(|_, c| (now - c.issued).num_seconds() < CODE_LIFETIME_SECS * 2);
    signins.codes.insert(
        code.clone(),
        Code {
            flow: flow.clone(),
            tenant_id: tenant.id.clone(),
            user_id: user.id.clone(),
            upn: user.upn.clone(),
            name: user.display_name.clone(),
            issued: now,
            redeemed: false,
        },
    );
    with_state(vec![("code", code), ("session_state", new_guid())])
}

/// The fields of an authorization-code redemption.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeRedemption {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
}

/// The claims of an ID token (v2.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub oid: String,
    pub preferred_username: String,
    pub upn: String,
    pub sub: String,
    pub tid: String,
    pub ver: String,
}

fn invalid_grant(code: u32, message: &str) -> AadError {
    AadError {
        status: 400,
        error: "invalid_grant",
        code,
        message: message.to_string(),
    }
}

/// Redeems an authorization code: the claims of the ID token to sign, and the scope.
pub(crate) fn redeem(
    dir: &Directory,
    signins: &mut SignIns,
    authority: &str,
    req: &CodeRedemption,
    now: DateTime<Utc>,
) -> Result<(IdTokenClaims, String), AadError> {
    let missing = |name: &str| AadError {
        status: 400,
        error: "invalid_request",
        code: 900144,
        message: format!("The request body must contain the following parameter: '{name}'."),
    };
    let client_id = req
        .client_id
        .as_deref()
        .ok_or_else(|| missing("client_id"))?;
    let code_text = req.code.as_deref().ok_or_else(|| missing("code"))?;
    let redirect_uri = req
        .redirect_uri
        .as_deref()
        .ok_or_else(|| missing("redirect_uri"))?;
    let code = signins.codes.get_mut(code_text).ok_or_else(|| {
        invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    })?;
    if code.redeemed {
        return Err(invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    if (now - code.issued).num_seconds() >= CODE_LIFETIME_SECS {
        return Err(invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    if !code.flow.client_id.eq_ignore_ascii_case(client_id) {
        return Err(invalid_grant(
            700005,
            "Provided Authorization Code is intended to use against other tenant/app, hence rejected.",
        ));
    }
    // A code is spent by any redemption that names its client, good or bad, as Entra does.
    code.redeemed = true;
    if code.flow.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            50148,
            "The redirect_uri does not match the one of the authorization request.",
        ));
    }
    let app = dir
        .app(client_id)
        .ok_or_else(|| AadError::app_not_found(client_id, &code.tenant_id))?;
    if !app.secrets.is_empty() {
        let secret = req
            .client_secret
            .as_deref()
            .ok_or_else(AadError::missing_secret)?;
        match app.secrets.iter().find(|s| s.value == secret) {
            Some(s) if s.end <= now => return Err(AadError::expired_secret(&app.app_id)),
            Some(_) => {}
            None => return Err(AadError::invalid_secret(&app.app_id)),
        }
    }
    let verifier = req
        .code_verifier
        .as_deref()
        .ok_or_else(|| missing("code_verifier"))?;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if computed != code.flow.code_challenge {
        return Err(invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ));
    }
    let issued = now.timestamp();
    let mut claims = IdTokenClaims {
        aud: app.app_id.clone(),
        iss: format!("{authority}/{}/v2.0", code.tenant_id),
        iat: issued,
        nbf: issued,
        exp: issued + ID_TOKEN_LIFETIME_SECS,
        name: code.name.clone(),
        nonce: code.flow.nonce.clone(),
        oid: code.user_id.clone(),
        preferred_username: code.upn.clone(),
        upn: code.upn.clone(),
        sub: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(format!("{}{}", code.user_id, app.app_id))),
        tid: code.tenant_id.clone(),
        ver: "2.0".to_string(),
    };
    match &signins.fault {
        Some(IdTokenFault::Expired) => {
            claims.iat = issued - 2 * ID_TOKEN_LIFETIME_SECS;
            claims.nbf = claims.iat;
            claims.exp = issued - ID_TOKEN_LIFETIME_SECS;
        }
        Some(IdTokenFault::WrongNonce) => claims.nonce = Some(random()),
        Some(IdTokenFault::WrongAudience) => claims.aud = new_guid(),
        Some(IdTokenFault::Forged(_)) | None => {}
    }
    Ok((claims, code.flow.scope.clone()))
}

/// Changes the payload of a signed token without signing it again.
pub(crate) fn forge(token: &str, claims: &IdTokenClaims, upn: &str) -> String {
    let mut forged = claims.clone();
    forged.preferred_username = upn.to_string();
    forged.upn = upn.to_string();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged).expect("claims serialise"));
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &payload;
    parts.join(".")
}

/// The success body of an authorization-code redemption.
pub(crate) fn token_response(id_token: &str, access_token: &str, scope: &str) -> Value {
    json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access_token,
        "id_token": id_token,
    })
}
