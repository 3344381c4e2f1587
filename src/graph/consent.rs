//! The consent check of one customer tenant: the rules (pure functions).
//!
//! - An application-permission consent is granted when Microsoft Graph's app role
//!   assignments of its service principal, read with the `directory` consent's token, hold
//!   every required permission. Without that token a client-credentials token of the app
//!   itself tells the app is there, and its `roles` claim hints at what it was granted (tokens
//!   are opaque by contract: one that does not decode says nothing, and the consent is
//!   `Unverified`, never `Granted` or `Error`).
//! - A delegated consent is granted only by an admin's grant for the whole organisation
//!   (`consentType: AllPrincipals`) holding every required scope. A user's own consent
//!   (`Principal`) creates the service principal too, and does not count. Grants Graph will
//!   not list (that needs `Directory.Read.All`) leave the consent `Unverified`, saying why.
//! - No service principal (AADSTS700016/7000229, or Graph 404) → `Pending`.
//! - A bad, expired or missing client secret, an unknown tenant, a tenant of another cloud,
//!   a configuration Entra refuses → `Error`, for the platform team.
//! - Throttling or an outage → `Unknown`: the previous state stands, retry after the wait.
//!
//! These rules take the tokens and Graph answers as inputs; gathering them is the I/O of the
//! `verify` module, which calls these.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::client::encode_query_value;
use super::error::GraphError;
use super::token::AccessToken;
use crate::config::DIRECTORY_CONSENT;

/// The application id of Microsoft Graph, the same in every tenant and cloud.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

// ---------------------------------------------------------------------------------------------
// Input and output
// ---------------------------------------------------------------------------------------------

/// One consent a tenant needs, as its ConsentGrant describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentSpec {
    /// Consent key (`login`, `directory`, ...).
    pub key: String,
    /// The platform application's client id.
    pub app_id: String,
    /// Microsoft Graph application permissions required.
    pub application_permissions: Vec<String>,
    /// Microsoft Graph delegated scopes required (admin consent for all users).
    pub delegated_scopes: Vec<String>,
    /// The tenant's administrators (UPNs) to look up in its directory: only on the
    /// `directory` consent, whose token reads users.
    pub administrators: Vec<String>,
}

/// What one check found out about a consent. The ConsentGrant controller derives `Revoked`
/// from history (granted before, `Pending` or `Partial` now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// Not granted yet (no service principal in the tenant).
    Pending,
    /// Every required permission is granted.
    Granted,
    /// The application is there but some permissions are missing.
    Partial,
    /// Cannot be checked until someone acts (bad secret, unknown tenant, disabled app...).
    Error,
    /// The check could not complete (throttling, outage): keep the previous state and check
    /// again after `retry_after`.
    Unknown,
    /// The application is there, but what it was granted could not be verified (an opaque
    /// token and no Graph to ask, grants Graph will not list): never `Granted`; the message
    /// says what could not be checked and why.
    Unverified,
}

/// The result for one consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentCheck {
    pub key: String,
    pub app_id: String,
    pub state: CheckState,
    /// Required permissions and scopes found granted.
    pub granted: Vec<String>,
    /// Required permissions and scopes not granted (all of them while `Pending`).
    pub missing: Vec<String>,
    /// For people: what was found, and who must act. Stable while nothing changes.
    pub message: String,
    /// Wait at least this long before the next check (throttling).
    pub retry_after: Option<Duration>,
}

/// The results for one tenant, one per requested consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantCheck {
    pub tenant_id: String,
    /// When the check started. Every consent answered from the same check shares it, so
    /// sibling ConsentGrants can schedule their next check at the same instant (the schedule
    /// seeds its jitter with it) and be checked together again.
    pub checked_at: SystemTime,
    /// One result per requested consent, in the order asked. Tenants that have granted
    /// everything get identical results, which the checker shares between them.
    pub consents: Arc<[ConsentCheck]>,
    /// The administrators of the `directory` consent's spec, as the directory knows them.
    pub administrators: Vec<super::admins::AdminCheck>,
    /// The platform's Teams app in the customer's catalog, when the configuration names it.
    pub teams_app: Option<super::teams_catalog::CatalogCheck>,
}

impl TenantCheck {
    /// The result for a consent key.
    pub fn get(&self, key: &str) -> Option<&ConsentCheck> {
        self.consents.iter().find(|c| c.key == key)
    }

    /// The longest wait any result asks for.
    pub fn retry_after(&self) -> Option<Duration> {
        self.consents.iter().filter_map(|c| c.retry_after).max()
    }
}

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

/// The required names found in `held` and those not found, in the required order.
pub fn compare(required: &[String], held: &[String]) -> (Vec<String>, Vec<String>) {
    required
        .iter()
        .cloned()
        .partition(|r| held.iter().any(|h| h.eq_ignore_ascii_case(r)))
}

fn all_required(spec: &ConsentSpec) -> Vec<String> {
    spec.application_permissions
        .iter()
        .chain(&spec.delegated_scopes)
        .cloned()
        .collect()
}

/// What is known of a consent's delegated scopes.
#[derive(Clone, Copy, Debug)]
pub enum Delegated<'a> {
    /// The scopes granted to Graph for all users (`AllPrincipals` grants).
    Read(&'a [String]),
    /// Not looked at: the directory consent, which lets the operator read grants, is missing.
    AwaitingDirectory,
    /// Graph refused to list the grants; the reason says why and who must act.
    Unreadable(&'a str),
}

/// The verdict from what the tenant holds: roles (application permissions) and what could
/// be learnt of the delegated scopes.
pub fn verdict(spec: &ConsentSpec, roles: &[String], delegated: Delegated<'_>) -> ConsentCheck {
    let (mut granted, mut missing) = compare(&spec.application_permissions, roles);
    let mut note = String::new();
    let mut unverified = None;
    match delegated {
        Delegated::Read(scopes) => {
            let (g, m) = compare(&spec.delegated_scopes, scopes);
            granted.extend(g);
            missing.extend(m);
        }
        _ if spec.delegated_scopes.is_empty() => {}
        Delegated::AwaitingDirectory => {
            note = "; delegated scopes are verified once the directory consent is granted".into();
            unverified = Some("the directory consent is not granted".to_owned());
        }
        Delegated::Unreadable(reason) => {
            note = format!(
                "; delegated scopes {} not verified: {reason}",
                spec.delegated_scopes.join(", ")
            );
            unverified = Some(reason.to_owned());
        }
    }
    if let (true, Some(reason)) = (missing.is_empty(), unverified) {
        return ConsentCheck {
            key: spec.key.clone(),
            app_id: spec.app_id.clone(),
            state: CheckState::Unverified,
            granted,
            missing: spec.delegated_scopes.clone(),
            message: format!(
                "the enterprise application is present; its delegated scopes {} are not verified: {reason}",
                spec.delegated_scopes.join(", ")
            ),
            retry_after: None,
        };
    }
    let (state, message) = if missing.is_empty() {
        (
            CheckState::Granted,
            format!("all {} required permissions granted{note}", granted.len()),
        )
    } else {
        (
            CheckState::Partial,
            format!(
                "missing {}: the customer's Global admin must grant consent again with the consent URL{note}",
                missing.join(", ")
            ),
        )
    };
    ConsentCheck {
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state,
        granted,
        missing,
        message,
        retry_after: None,
    }
}

/// The verdict when the answer was an error.
pub fn from_error(spec: &ConsentSpec, error: &GraphError) -> ConsentCheck {
    let state = match error {
        GraphError::NotConsented { .. } => CheckState::Pending,
        e if e.is_transient() => CheckState::Unknown,
        _ => CheckState::Error,
    };
    ConsentCheck {
        retry_after: error.retry_after(),
        ..nothing_granted(spec, state, error.to_string())
    }
}

/// A verdict in which nothing is granted: every required permission is missing.
fn nothing_granted(spec: &ConsentSpec, state: CheckState, message: String) -> ConsentCheck {
    ConsentCheck {
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state,
        granted: vec![],
        missing: all_required(spec),
        message,
        retry_after: None,
    }
}

/// The verdict for a consent whose application has no service principal in the tenant.
pub fn not_consented(spec: &ConsentSpec, tenant: &str) -> ConsentCheck {
    nothing_granted(
        spec,
        CheckState::Pending,
        format!(
            "application {} has no service principal in tenant {tenant}: admin consent not given",
            spec.app_id
        ),
    )
}

/// The verdict for a delegated-only consent while the directory consent cannot be used.
pub fn awaiting_directory(spec: &ConsentSpec) -> ConsentCheck {
    nothing_granted(
        spec,
        CheckState::Pending,
        format!(
            "delegated consent: verification waits for the {DIRECTORY_CONSENT} consent to be granted"
        ),
    )
}

/// The verdict for a consent that cannot be verified, for `reason`: never `Granted`.
pub fn unverified(spec: &ConsentSpec, reason: &str) -> ConsentCheck {
    nothing_granted(
        spec,
        CheckState::Unverified,
        format!("not verified: {reason}"),
    )
}

/// The verdict for a consent that cannot be verified now for a passing reason on the
/// operator's side (throttling, an outage): its previous state stands.
pub fn unverifiable(spec: &ConsentSpec, reason: &str) -> ConsentCheck {
    ConsentCheck {
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state: CheckState::Unknown,
        granted: vec![],
        missing: vec![],
        message: format!("not verified: {reason}"),
        retry_after: None,
    }
}

/// The verdict on an application-permission consent from its own token: the `roles` hint,
/// or `Unverified` when the token is opaque. `why_no_graph` says why Graph, the truth, was not
/// asked.
pub fn by_token(spec: &ConsentSpec, token: &AccessToken, why_no_graph: &str) -> ConsentCheck {
    match &token.roles {
        Some(roles) => verdict(spec, roles, Delegated::AwaitingDirectory),
        None => unverified(
            spec,
            &format!(
                "the application is present in the tenant, but its access token is not a readable JWT (access tokens are opaque by contract), so its permissions are read from Microsoft Graph's app role assignments, and {why_no_graph}"
            ),
        ),
    }
}

/// Why the tenant's permission grants could not be listed with the directory token, and
/// the state that leaves a delegated consent in: the customer's part (`Unverified`: the
/// directory consent's `Directory.Read.All` is not granted yet) or the configuration's
/// (`Error`: the directory consent does not ask for it).
pub fn grants_unreadable(directory: &ConsentSpec) -> (String, CheckState) {
    let asks = directory
        .application_permissions
        .iter()
        .any(|p| p.eq_ignore_ascii_case(READ_GRANTS));
    if asks {
        (
            format!("Microsoft Graph refused to list the tenant's oauth2PermissionGrants with the {DIRECTORY_CONSENT} application's token: its {READ_GRANTS} is not granted (yet); the customer's Global admin must grant the {DIRECTORY_CONSENT} consent again"),
            CheckState::Unverified,
        )
    } else {
        (
            format!("Microsoft Graph refused to list the tenant's oauth2PermissionGrants with the {DIRECTORY_CONSENT} application's token: listing them needs {READ_GRANTS}, which consents.{DIRECTORY_CONSENT}.applicationPermissions of the operator's configuration does not ask for; the platform team must add it (and to that app's registration)"),
            CheckState::Error,
        )
    }
}

/// The application permission that lets an app list a tenant's permission grants (and read
/// service principals and their app role assignments).
pub const READ_GRANTS: &str = "Directory.Read.All";

/// Whether the directory token may read other applications' service principals, as far as
/// its `roles` hint tells (an opaque token is tried).
pub fn may_read_others(token: &AccessToken) -> bool {
    match (
        token.has_role("Application.Read.All"),
        token.has_role(READ_GRANTS),
    ) {
        (None, _) | (_, None) => true,
        (Some(app), Some(dir)) => app || dir,
    }
}

/// The parts of a service principal the operator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub id: String,
    pub display_name: String,
    pub account_enabled: bool,
}

impl ServicePrincipal {
    pub fn from_json(body: &Value) -> Option<Self> {
        Some(ServicePrincipal {
            id: body.get("id")?.as_str()?.to_owned(),
            display_name: body
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            account_enabled: body
                .get("accountEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }
}

/// Microsoft Graph's application permissions by app role id (lower-case) → name. The same in
/// every tenant: fetched once per process and shared.
pub type RoleNames = Arc<HashMap<String, String>>;

/// Microsoft Graph's own service principal in a tenant: its id (the `resourceId` of every
/// grant to Graph) and its app roles by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphResource {
    pub id: String,
    pub role_names: RoleNames,
}

impl GraphResource {
    /// Reads the service principal; its `appRoles` when the body has them, else `known`.
    pub fn from_json(body: &Value, known: Option<&RoleNames>) -> Option<Self> {
        let id = body.get("id")?.as_str()?.to_owned();
        let listed = body.get("appRoles").and_then(Value::as_array).map(|roles| {
            Arc::new(
                roles
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.get("id")?.as_str()?.to_ascii_lowercase(),
                            r.get("value")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect::<HashMap<_, _>>(),
            )
        });
        let role_names = listed.or_else(|| known.cloned()).unwrap_or_default();
        Some(GraphResource { id, role_names })
    }

    /// Names of the Graph application permissions among live app role assignments.
    pub fn assigned_roles(&self, assignments: &[Value]) -> Vec<String> {
        assignments
            .iter()
            .filter(|a| a.get("deletedDateTime").is_none_or(Value::is_null))
            .filter(|a| {
                a.get("resourceId")
                    .and_then(Value::as_str)
                    .is_none_or(|r| r.eq_ignore_ascii_case(&self.id))
            })
            .filter_map(|a| a.get("appRoleId")?.as_str())
            .filter_map(|id| self.role_names.get(&id.to_ascii_lowercase()).cloned())
            .collect()
    }

    /// Delegated scopes to Graph granted for all users (`consentType: AllPrincipals`).
    pub fn admin_granted_scopes(&self, grants: &[Value]) -> Vec<String> {
        grants
            .iter()
            .filter(|g| g.get("consentType").and_then(Value::as_str) == Some("AllPrincipals"))
            .filter(|g| {
                g.get("resourceId")
                    .and_then(Value::as_str)
                    .is_none_or(|r| r.eq_ignore_ascii_case(&self.id))
            })
            .filter_map(|g| g.get("scope")?.as_str())
            .flat_map(|s| s.split_whitespace().map(str::to_owned))
            .collect()
    }
}

/// The verdict from Graph's view of an application in the tenant.
pub fn from_graph(
    spec: &ConsentSpec,
    sp: &ServicePrincipal,
    graph: &GraphResource,
    assignments: &[Value],
    grants: Result<&[Value], (&str, CheckState)>,
) -> ConsentCheck {
    if !sp.account_enabled {
        return nothing_granted(
            spec,
            CheckState::Error,
            format!(
                "the enterprise application {} ({}) is disabled in the customer tenant: the customer's admin must enable sign-in for it",
                sp.display_name, spec.app_id
            ),
        );
    }
    let roles = graph.assigned_roles(assignments);
    match grants {
        Ok(grants) => {
            let mut check = verdict(
                spec,
                &roles,
                Delegated::Read(&graph.admin_granted_scopes(grants)),
            );
            let user_consent = grants
                .iter()
                .any(|g| g.get("consentType").and_then(Value::as_str) == Some("Principal"));
            let scopes_missing = spec
                .delegated_scopes
                .iter()
                .any(|s| check.missing.contains(s));
            if user_consent && scopes_missing {
                check.message.push_str("; the tenant holds only users' own consents (consentType Principal), which are not admin consent for the organisation");
            }
            check
        }
        Err((reason, state)) => {
            let mut check = verdict(spec, &roles, Delegated::Unreadable(reason));
            if check.state == CheckState::Unverified {
                check.state = state;
            }
            check
        }
    }
}

/// Graph URLs of the verification requests.
pub mod urls {
    use super::*;

    /// Graph's service principal: its id, and its app roles unless they are known already.
    pub fn graph_resource(with_roles: bool) -> String {
        let select = if with_roles { "id,appRoles" } else { "id" };
        format!("/servicePrincipals(appId='{MICROSOFT_GRAPH_APP_ID}')?$select={select}")
    }

    pub fn service_principal(app_id: &str) -> String {
        format!("/servicePrincipals(appId='{app_id}')?$select=id,appId,displayName,accountEnabled")
    }

    /// `$top=999` (Graph's maximum page) keeps a steady-state poll to one round trip.
    pub fn app_role_assignments(sp_id: &str) -> String {
        format!("/servicePrincipals/{sp_id}/appRoleAssignments?$top=999")
    }

    pub fn permission_grants(sp_id: &str) -> String {
        format!(
            "/oauth2PermissionGrants?$filter={}",
            encode_query_value(&format!("clientId eq '{sp_id}'"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(key: &str, app: &[&str], delegated: &[&str]) -> ConsentSpec {
        ConsentSpec {
            key: key.into(),
            app_id: "8b0f7a52-0000-4000-8000-000000000003".into(),
            application_permissions: app.iter().map(|s| s.to_string()).collect(),
            delegated_scopes: delegated.iter().map(|s| s.to_string()).collect(),
            administrators: vec![],
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const CALLS: [&str; 3] = [
        "Calls.AccessMedia.All",
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
    ];

    #[test]
    fn roles_decide_granted_and_partial() {
        let recording = spec("recording", &CALLS, &[]);
        let all = verdict(&recording, &strings(&CALLS), Delegated::AwaitingDirectory);
        assert_eq!(all.state, CheckState::Granted);
        assert_eq!(all.message, "all 3 required permissions granted");

        let some = verdict(
            &recording,
            &strings(&["calls.accessmedia.all", "User.Read.All"]),
            Delegated::AwaitingDirectory,
        );
        assert_eq!(some.state, CheckState::Partial);
        assert_eq!(some.granted, ["Calls.AccessMedia.All"]);
        assert_eq!(
            some.missing,
            ["Calls.JoinGroupCall.All", "Calls.JoinGroupCallAsGuest.All"]
        );
        assert_eq!(
            some.message,
            "missing Calls.JoinGroupCall.All, Calls.JoinGroupCallAsGuest.All: the customer's Global admin must grant consent again with the consent URL"
        );
        // A token without a roles claim: the app is there, no permission is.
        assert_eq!(
            verdict(&recording, &[], Delegated::AwaitingDirectory).state,
            CheckState::Partial
        );
    }

    #[test]
    fn token_errors_map_to_states() {
        let s = spec("recording", &CALLS, &[]);
        let pending = from_error(
            &s,
            &GraphError::NotConsented {
                tenant: "t".into(),
                app_id: s.app_id.clone(),
                code: 7000229,
                detail: None,
            },
        );
        assert_eq!(pending.state, CheckState::Pending);
        assert_eq!(pending.missing.len(), 3);
        let bad = from_error(
            &s,
            &GraphError::InvalidSecret {
                app_id: s.app_id.clone(),
            },
        );
        assert_eq!(bad.state, CheckState::Error);
        let throttled = from_error(
            &s,
            &GraphError::Throttled {
                service: crate::graph::Service::Identity,
                retry_after: Duration::from_secs(3),
            },
        );
        assert_eq!(throttled.state, CheckState::Unknown);
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(3)));
    }

    fn graph_resource() -> GraphResource {
        GraphResource::from_json(&json!({
            "id": "graph-sp",
            "appRoles": [
                {"id": "A7A681DC-756E-4909-B988-F160EDC6655F", "value": "Calls.AccessMedia.All"},
                {"id": "f6b49018-60ab-4f81-83bd-22caeabfed2d", "value": "Calls.JoinGroupCall.All"},
                {"id": "fd7ccf6b-3d28-418b-9701-cd10f5cd2fd4", "value": "Calls.JoinGroupCallAsGuest.All"}
            ]
        }), None)
        .unwrap()
    }

    #[test]
    fn graph_view_maps_role_ids_and_ignores_other_resources_and_deleted() {
        let graph = graph_resource();
        let sp = ServicePrincipal {
            id: "sp-1".into(),
            display_name: "recording-hue".into(),
            account_enabled: true,
        };
        let assignments = [
            json!({"appRoleId":"a7a681dc-756e-4909-b988-f160edc6655f","resourceId":"graph-sp","deletedDateTime":null}),
            json!({"appRoleId":"f6b49018-60ab-4f81-83bd-22caeabfed2d","resourceId":"graph-sp","deletedDateTime":"2026-01-01T00:00:00Z"}),
            json!({"appRoleId":"fd7ccf6b-3d28-418b-9701-cd10f5cd2fd4","resourceId":"other-api"}),
        ];
        let check = from_graph(
            &spec("recording", &CALLS, &[]),
            &sp,
            &graph,
            &assignments,
            Ok(&[]),
        );
        assert_eq!(check.state, CheckState::Partial);
        assert_eq!(check.granted, ["Calls.AccessMedia.All"]);
        assert_eq!(
            check.missing,
            ["Calls.JoinGroupCall.All", "Calls.JoinGroupCallAsGuest.All"]
        );
    }

    #[test]
    fn role_names_are_shared_between_tenants() {
        let first = graph_resource();
        let other = GraphResource::from_json(&json!({"id": "graph-sp-2"}), Some(&first.role_names))
            .unwrap();
        assert!(Arc::ptr_eq(&first.role_names, &other.role_names));
        assert_eq!(
            other.assigned_roles(&[json!({"appRoleId":"f6b49018-60ab-4f81-83bd-22caeabfed2d","resourceId":"graph-sp-2"})]),
            ["Calls.JoinGroupCall.All"]
        );
        assert_eq!(
            urls::graph_resource(false),
            "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id"
        );
    }

    #[test]
    fn delegated_scopes_need_an_all_principals_grant_to_graph() {
        let graph = graph_resource();
        let sp = ServicePrincipal {
            id: "sp-2".into(),
            display_name: "recording-auth".into(),
            account_enabled: true,
        };
        let login = spec("login", &[], &["openid", "profile", "User.Read"]);
        let user_only = [
            json!({"clientId":"sp-2","consentType":"Principal","resourceId":"graph-sp","scope":"openid profile User.Read"}),
        ];
        let check = from_graph(&login, &sp, &graph, &[], Ok(&user_only));
        assert_eq!(
            check.state,
            CheckState::Partial,
            "a user's own consent is not admin consent"
        );
        assert!(
            check.message.ends_with("the tenant holds only users' own consents (consentType Principal), which are not admin consent for the organisation"),
            "{}",
            check.message
        );
        let admin = [
            json!({"clientId":"sp-2","consentType":"AllPrincipals","resourceId":"graph-sp","scope":" openid  profile User.Read "}),
        ];
        let check = from_graph(&login, &sp, &graph, &[], Ok(&admin));
        assert_eq!(check.state, CheckState::Granted, "{}", check.message);
        assert_eq!(check.granted, ["openid", "profile", "User.Read"]);

        // Grants Graph will not list: never Granted, and the reason says who must act.
        let directory = spec(
            "directory",
            &["Application.Read.All", "Directory.Read.All"],
            &[],
        );
        let (reason, state) = grants_unreadable(&directory);
        let check = from_graph(&login, &sp, &graph, &[], Err((&reason, state)));
        assert_eq!(check.state, CheckState::Unverified);
        assert_eq!(check.missing, ["openid", "profile", "User.Read"]);
        assert!(
            check.message.starts_with("the enterprise application is present; its delegated scopes openid, profile, User.Read are not verified: Microsoft Graph refused to list the tenant's oauth2PermissionGrants"),
            "{}",
            check.message
        );
        assert!(check.message.contains("Directory.Read.All is not granted"));
        // A configuration that does not ask for Directory.Read.All: the platform's to fix.
        let old = spec("directory", &["Application.Read.All"], &[]);
        let (reason, state) = grants_unreadable(&old);
        let check = from_graph(&login, &sp, &graph, &[], Err((&reason, state)));
        assert_eq!(check.state, CheckState::Error);
        assert!(
            check
                .message
                .contains("consents.directory.applicationPermissions"),
            "{}",
            check.message
        );
    }

    #[test]
    fn an_opaque_token_leaves_its_consent_unverified_not_granted_nor_error() {
        let recording = spec("recording", &CALLS, &[]);
        let opaque = crate::graph::token::token_from_response(
            "opaque",
            Some(Duration::from_secs(3599)),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let check = by_token(&recording, &opaque, "the directory consent is not granted");
        assert_eq!(check.state, CheckState::Unverified);
        assert_eq!(
            check.message,
            "not verified: the application is present in the tenant, but its access token is not a readable JWT (access tokens are opaque by contract), so its permissions are read from Microsoft Graph's app role assignments, and the directory consent is not granted"
        );
        assert!(
            may_read_others(&opaque),
            "an opaque directory token is tried"
        );
    }

    #[test]
    fn disabled_enterprise_app_is_an_error_for_the_customer() {
        let sp = ServicePrincipal {
            id: "sp-3".into(),
            display_name: "recording-im".into(),
            account_enabled: false,
        };
        let check = from_graph(
            &spec("instantMessages", &["Chat.Read.All"], &[]),
            &sp,
            &graph_resource(),
            &[],
            Ok(&[]),
        );
        assert_eq!(check.state, CheckState::Error);
        assert!(check.message.contains("recording-im"), "{}", check.message);
        assert!(check.message.contains("disabled"), "{}", check.message);
    }

    #[test]
    fn delegated_only_consents_wait_for_directory() {
        let check = awaiting_directory(&spec("login", &[], &["openid"]));
        assert_eq!(check.state, CheckState::Pending);
        assert_eq!(
            check.message,
            "delegated consent: verification waits for the directory consent to be granted"
        );
    }

    #[test]
    fn grant_filter_url_is_encoded() {
        assert_eq!(
            urls::permission_grants("5d1a"),
            "/oauth2PermissionGrants?$filter=clientId%20eq%20'5d1a'"
        );
    }
}
