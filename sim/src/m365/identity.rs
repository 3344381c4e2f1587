//! The Microsoft identity platform's answers: the OpenID discovery document, the
//! client-credentials token endpoint and the AADSTS errors both give, in the JSON shape and
//! with the HTTP statuses of the real service. Pure functions over the directory; the HTTP
//! shell in `server.rs` only moves bytes.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::catalog::GRAPH_APP_ID;
use super::directory::{is_guid, new_guid, Directory};
use super::jwt::AppTokenClaims;
use super::seed::NationalCloud;

/// An error of the identity platform: HTTP status, OAuth `error`, AADSTS code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AADSTS{code}: {message}")]
pub(crate) struct AadError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

/// The endpoint-independent facts the identity platform needs.
#[derive(Debug, Clone)]
pub(crate) struct IdentityContext {
    /// Resource identifiers that name Microsoft Graph (token `aud` values Graph accepts).
    pub graph_resources: Vec<String>,
    pub token_lifetime_secs: u64,
    /// How long a new consent takes to reach the token service (see
    /// `M365Sim::set_consent_propagation_delay`).
    pub propagation_delay: chrono::Duration,
    /// 7000229 or 700016: the answer for an app without service principal in the tenant.
    pub missing_sp_code: u32,
}

/// `2025-09-18 01:17:37Z`, the timestamp format of AADSTS errors.
pub(crate) fn aad_timestamp(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

impl AadError {
    fn new(status: u16, error: &'static str, code: u32, message: String) -> Self {
        AadError {
            status,
            error,
            code,
            message,
        }
    }

    /// The JSON body the identity platform answers with.
    pub fn body(&self, authority: &str, now: DateTime<Utc>, correlation_id: Option<&str>) -> Value {
        let trace_id = new_guid();
        let correlation_id = correlation_id.map(str::to_string).unwrap_or_else(new_guid);
        let timestamp = aad_timestamp(now);
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("{authority}/error?code={}", self.code),
        })
    }

    /// `error` is `invalid_tenant` on discovery and `invalid_request` on the token endpoint.
    pub fn tenant_not_found(segment: &str, error: &'static str) -> Self {
        Self::new(400, error, 90002, format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ))
    }

    /// A client-credentials request to this cloud's authority for a tenant of another cloud.
    pub fn cross_cloud() -> Self {
        Self::new(
            400,
            "invalid_request",
            900382,
            "Confidential Client is not supported in Cross Cloud request.".to_string(),
        )
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        )
    }

    pub fn invalid_client_id(client_id: &str) -> Self {
        Self::new(
            400,
            "unauthorized_client",
            700038,
            format!("{client_id} is not a valid application identifier."),
        )
    }

    pub fn invalid_scope(scope: &str) -> Self {
        Self::new(400, "invalid_scope", 1002012, format!(
            "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
        ))
    }

    pub fn resource_not_found(resource: &str, tenant_name: &str) -> Self {
        Self::new(400, "invalid_resource", 500011, format!(
            "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ))
    }

    pub fn app_not_found(app_id: &str, tenant_name: &str) -> Self {
        Self::new(400, "unauthorized_client", 700016, format!(
            "Application with identifier '{app_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ))
    }

    pub fn missing_service_principal(app_id: &str, tenant_id: &str) -> Self {
        Self::new(401, "invalid_client", 7000229, format!(
            "The client application {app_id} is missing service principal in the tenant {tenant_id}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119"
        ))
    }

    pub fn missing_secret() -> Self {
        Self::new(401, "invalid_client", 7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string())
    }

    pub fn invalid_secret(app_id: &str) -> Self {
        Self::new(401, "invalid_client", 7000215, format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app_id}'."
        ))
    }

    pub fn expired_secret(app_id: &str) -> Self {
        Self::new(401, "invalid_client", 7000222, format!(
            "The provided client secret keys for app '{app_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
        ))
    }

    pub fn app_disabled(app_id: &str, display_name: &str) -> Self {
        Self::new(
            400,
            "unauthorized_client",
            7000112,
            format!("Application '{app_id}'({display_name}) is disabled."),
        )
    }

    pub fn temporarily_unavailable(status: u16) -> Self {
        Self::new(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.".to_string(),
        )
    }
}

/// The OpenID Provider Configuration of a tenant (v2.0 endpoints). `tenant` is the tenant
/// id, or the literal `{tenantid}` for the multi-tenant aliases.
pub(crate) fn openid_configuration(authority: &str, tenant: &str, graph_host: &str) -> Value {
    json!({
        "token_endpoint": format!("{authority}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{authority}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{authority}/{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{graph_host}/oidc/userinfo"),
        "authorization_endpoint": format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{authority}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{authority}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{authority}/{tenant}/kerberos"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": graph_host.trim_start_matches("https://").trim_start_matches("http://"),
        "rbac_url": "https://pas.windows.net",
    })
}

/// The OpenID document of a tenant of another national cloud, as the public authority serves
/// it: that cloud's endpoints, `cloud_instance_name` and `tenant_region_scope`.
pub(crate) fn national_cloud_configuration(tenant: &str, cloud: NationalCloud) -> Value {
    let graph = format!("https://{}", cloud.graph_host());
    let mut doc = openid_configuration(cloud.authority(), tenant, &graph);
    doc["tenant_region_scope"] = json!(cloud.region_scope());
    doc["cloud_instance_name"] = json!(cloud.instance_name());
    doc
}

/// The multi-tenant aliases of the authority, which resolve to no single tenant.
pub(crate) fn is_multi_tenant_alias(segment: &str) -> bool {
    ["common", "organizations", "consumers"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(segment))
}

/// A parsed client-credentials request (form body plus an optional HTTP Basic header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

impl TokenRequest {
    /// Reads the form body; credentials in an `Authorization: Basic` header (RFC 6749
    /// section 2.3.1: id and secret form-urlencoded, then base64) take precedence, as the
    /// identity platform supports `client_secret_basic` as well as `client_secret_post`.
    pub fn parse(body: &[u8], authorization: Option<&str>) -> TokenRequest {
        let mut req = TokenRequest::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = Some(v.into_owned()).filter(|v| !v.is_empty());
            match k.as_ref() {
                "grant_type" => req.grant_type = v,
                "client_id" => req.client_id = v,
                "client_secret" => req.client_secret = v,
                "scope" => req.scope = v,
                _ => {}
            }
        }
        if let Some((id, secret)) = authorization.and_then(basic_credentials) {
            req.client_id = Some(id);
            req.client_secret = Some(secret);
        }
        req
    }
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// Decides a client-credentials request to `/{tenant_segment}/oauth2/v2.0/token` and, when
/// it succeeds, returns the claims of the access token to sign.
pub(crate) fn issue_token(
    dir: &Directory,
    tenant_segment: &str,
    req: &TokenRequest,
    ctx: &IdentityContext,
    now: DateTime<Utc>,
) -> Result<AppTokenClaims, AadError> {
    let tenant = dir
        .resolve_tenant(tenant_segment)
        .ok_or_else(|| AadError::tenant_not_found(tenant_segment, "invalid_request"))?;
    if tenant.national_cloud.is_some() {
        return Err(AadError::cross_cloud());
    }
    let grant_type = req
        .grant_type
        .as_deref()
        .ok_or_else(|| AadError::missing_parameter("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError::unsupported_grant_type(grant_type));
    }
    let client_id = req
        .client_id
        .as_deref()
        .ok_or_else(|| AadError::missing_parameter("client_id"))?;
    if !is_guid(client_id) {
        return Err(AadError::invalid_client_id(client_id));
    }
    let scope = req
        .scope
        .as_deref()
        .ok_or_else(|| AadError::missing_parameter("scope"))?;
    let resource = scope
        .trim()
        .strip_suffix("/.default")
        .filter(|r| !r.contains(' '))
        .ok_or_else(|| AadError::invalid_scope(scope))?
        .trim_end_matches('/');
    let audience = ctx
        .graph_resources
        .iter()
        .find(|r| r.eq_ignore_ascii_case(resource))
        .cloned()
        .ok_or_else(|| AadError::resource_not_found(resource, tenant.default_domain()))?;
    let app = dir
        .app(client_id)
        .ok_or_else(|| AadError::app_not_found(client_id, &tenant.display_name))?;
    let visible = now - ctx.propagation_delay;
    let sp = tenant
        .sp_by_app_id(&app.app_id)
        .filter(|sp| sp.created <= visible)
        .ok_or_else(|| match ctx.missing_sp_code {
            700016 => AadError::app_not_found(&app.app_id, &tenant.display_name),
            _ => AadError::missing_service_principal(&app.app_id, &tenant.id),
        })?;
    let secret = req
        .client_secret
        .as_deref()
        .ok_or_else(AadError::missing_secret)?;
    let matching = app.secrets.iter().find(|s| s.value == secret);
    match matching {
        Some(s) if s.end <= now => return Err(AadError::expired_secret(&app.app_id)),
        Some(s) if s.start > now => return Err(AadError::invalid_secret(&app.app_id)),
        Some(_) => {}
        None if !app.secrets.is_empty() && app.secrets.iter().all(|s| s.end <= now) => {
            return Err(AadError::expired_secret(&app.app_id))
        }
        None => return Err(AadError::invalid_secret(&app.app_id)),
    }
    if !sp.account_enabled {
        return Err(AadError::app_disabled(&app.app_id, &app.display_name));
    }
    let roles = tenant.granted_roles(&sp.id, visible);
    let issued = now.timestamp();
    let issuer = format!("https://sts.windows.net/{}/", tenant.id);
    Ok(AppTokenClaims {
        aud: audience,
        iss: issuer.clone(),
        iat: issued - 300,
        nbf: issued - 300,
        exp: issued + ctx.token_lifetime_secs as i64,
        app_displayname: app.display_name.clone(),
        appid: app.app_id.clone(),
        appidacr: "1".to_string(),
        idp: issuer,
        idtyp: "app".to_string(),
        oid: sp.id.clone(),
        roles: Some(roles).filter(|r| !r.is_empty()),
        sub: sp.id.clone(),
        tid: tenant.id.clone(),
        uti: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&uuid::Uuid::new_v4().as_bytes()[..16]),
        ver: "1.0".to_string(),
    })
}

/// The success body of the token endpoint.
pub(crate) fn token_response(access_token: &str, lifetime_secs: u64) -> Value {
    json!({
        "token_type": "Bearer",
        "expires_in": lifetime_secs,
        "ext_expires_in": lifetime_secs,
        "access_token": access_token,
    })
}

/// The resource identifiers under which the simulator's Graph can be asked for.
pub(crate) fn graph_resources(sim_url: &str) -> Vec<String> {
    vec![
        "https://graph.microsoft.com".to_string(),
        sim_url.trim_end_matches('/').to_string(),
        GRAPH_APP_ID.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // id "a b", secret "x+y~z:" form-urlencoded as the oauth2 crate does
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a+b:x%2By~z%3A")
        );
        let req = TokenRequest::parse(b"grant_type=client_credentials&scope=s", Some(&header));
        assert_eq!(req.client_id.as_deref(), Some("a b"));
        assert_eq!(req.client_secret.as_deref(), Some("x+y~z:"));
        assert_eq!(req.grant_type.as_deref(), Some("client_credentials"));
    }

    #[test]
    fn error_body_has_the_identity_platform_shape() {
        let now = DateTime::parse_from_rfc3339("2025-09-18T01:17:37Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = AadError::invalid_secret("app").body("https://login.example", now, Some("corr"));
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7000215]));
        assert_eq!(body["timestamp"], "2025-09-18 01:17:37Z");
        assert_eq!(body["correlation_id"], "corr");
        assert_eq!(
            body["error_uri"],
            "https://login.example/error?code=7000215"
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS7000215: Invalid client secret provided."));
        assert!(
            description.ends_with("\r\nCorrelation ID: corr\r\nTimestamp: 2025-09-18 01:17:37Z")
        );
    }
}
