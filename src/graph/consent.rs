//! The consent check of one customer tenant.
//!
//! Rules (pure functions, top of the file):
//! - an application-permission consent is granted when a token for its app can be had in the
//!   tenant and the token's `roles` hold every required permission;
//! - no service principal (AADSTS700016/7000229/…, or Graph 404) → `Pending`;
//! - a bad, expired or missing client secret, an unknown tenant → `Error`, for the platform team;
//! - throttling or an outage → `Unknown`: the previous state stands, retry after the wait;
//! - once `directory` is granted (its token holds `Application.Read.All`), the other apps are
//!   verified through Graph with that token: service principal (`accountEnabled`), app role
//!   assignments to Microsoft Graph (application permissions, ids mapped to names through
//!   Graph's own `appRoles`) and `AllPrincipals` permission grants (delegated scopes) — all in
//!   `$batch` calls, service principal ids cached, so a steady-state poll is one batch;
//! - without `directory`, one token per application-permission consent; delegated-only
//!   consents stay `Pending` until the directory consent lets the operator look.
//!
//! The I/O shell ([`check_tenant`]) gathers tokens and Graph answers and hands them to the rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use serde_json::Value;

use super::client::{encode_query_value, BatchItem, BatchRequest, GraphClient};
use super::error::{GraphError, Service};
use super::token::{AccessToken, TokenProvider};
use crate::config::{is_guid, SecretRef, DIRECTORY_CONSENT};

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
    /// sibling ConsentGrants can schedule their next check at the same instant (see
    /// [`crate::graph::schedule::schedule_rng`]) and be checked together again.
    pub checked_at: SystemTime,
    /// One result per requested consent, in the order asked. Tenants that have granted
    /// everything get identical results, which the checker shares between them.
    pub consents: Arc<[ConsentCheck]>,
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
    /// Graph refused to list the grants (listing `oauth2PermissionGrants` needs
    /// `Directory.Read.All`); the enterprise application's presence is all that is known.
    Unreadable,
}

/// The verdict from what the tenant holds: roles (application permissions) and what could
/// be learnt of the delegated scopes.
pub fn verdict(spec: &ConsentSpec, roles: &[String], delegated: Delegated<'_>) -> ConsentCheck {
    let (mut granted, mut missing) = compare(&spec.application_permissions, roles);
    let mut note = "";
    match delegated {
        Delegated::Read(scopes) => {
            let (g, m) = compare(&spec.delegated_scopes, scopes);
            granted.extend(g);
            missing.extend(m);
        }
        _ if spec.delegated_scopes.is_empty() => {}
        Delegated::AwaitingDirectory => {
            note = "; delegated scopes are verified once the directory consent is granted";
        }
        Delegated::Unreadable => {
            note = "; the enterprise application is present, its delegated scopes are not verified (reading permission grants needs Directory.Read.All on the directory application)";
        }
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
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state,
        granted: vec![],
        missing: all_required(spec),
        message: error.to_string(),
        retry_after: error.retry_after(),
    }
}

/// The verdict for a consent whose application has no service principal in the tenant.
pub fn not_consented(spec: &ConsentSpec, tenant: &str) -> ConsentCheck {
    ConsentCheck {
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state: CheckState::Pending,
        granted: vec![],
        missing: all_required(spec),
        message: format!(
            "application {} has no service principal in tenant {tenant}: admin consent not given",
            spec.app_id
        ),
        retry_after: None,
    }
}

/// The verdict for a delegated-only consent while the directory consent cannot be used.
pub fn awaiting_directory(spec: &ConsentSpec) -> ConsentCheck {
    ConsentCheck {
        key: spec.key.clone(),
        app_id: spec.app_id.clone(),
        state: CheckState::Pending,
        granted: vec![],
        missing: all_required(spec),
        message: format!(
            "delegated consent: verification waits for the {DIRECTORY_CONSENT} consent to be granted"
        ),
        retry_after: None,
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
    grants: Option<&[Value]>,
) -> ConsentCheck {
    if !sp.account_enabled {
        return ConsentCheck {
            key: spec.key.clone(),
            app_id: spec.app_id.clone(),
            state: CheckState::Error,
            granted: vec![],
            missing: all_required(spec),
            message: format!(
                "the enterprise application {} ({}) is disabled in the customer tenant: the customer's admin must enable sign-in for it",
                sp.display_name, spec.app_id
            ),
            retry_after: None,
        };
    }
    let scopes = grants.map(|g| graph.admin_granted_scopes(g));
    let delegated = match &scopes {
        Some(scopes) => Delegated::Read(scopes),
        None => Delegated::Unreadable,
    };
    verdict(spec, &graph.assigned_roles(assignments), delegated)
}

/// Whether a token can read other applications' service principals and grants.
pub fn can_verify_others(token: &AccessToken) -> bool {
    token.has_role("Application.Read.All") || token.has_role("Directory.Read.All")
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

// ---------------------------------------------------------------------------------------------
// The I/O shell
// ---------------------------------------------------------------------------------------------

/// What a check needs from outside.
pub struct CheckEnv<'a> {
    pub tokens: &'a TokenProvider,
    pub graph: &'a GraphClient,
    /// Client secret reference per application id (lower-case).
    pub secrets: &'a HashMap<String, SecretRef>,
    /// Graph's app role names, once known (shared by all tenants).
    pub role_names: &'a Mutex<Option<RoleNames>>,
}

impl CheckEnv<'_> {
    async fn token(
        &self,
        tenant: &str,
        spec: &ConsentSpec,
    ) -> Result<Arc<AccessToken>, GraphError> {
        let secret = self.secrets.get(&spec.app_id.to_ascii_lowercase());
        self.tokens.token(tenant, &spec.app_id, secret).await
    }

    /// The verdict on `spec` from its token's `roles`; the cached token is dropped unless they
    /// granted the consent. A token's `roles` are fixed when Entra issues it, and a permission
    /// granted after that (or one that reached the directory late) shows only in a new token:
    /// a token that fell short would otherwise hold the consent at Partial until it expires,
    /// an hour later.
    fn judge_by_token(
        &self,
        tenant: &str,
        spec: &ConsentSpec,
        token: &AccessToken,
    ) -> ConsentCheck {
        let check = verdict(spec, &token.roles, Delegated::AwaitingDirectory);
        if check.state != CheckState::Granted {
            self.tokens.invalidate(tenant, &spec.app_id);
        }
        check
    }
}

/// What a tenant's checks remember between polls.
#[derive(Clone, Debug, Default)]
pub struct TenantCache {
    /// Microsoft Graph's service principal in the tenant.
    pub graph: Option<GraphResource>,
    /// Service principal id per application id.
    pub sp_ids: SpIds,
}

/// The service principal id of each application in one tenant, kept between polls for every
/// tenant. Both ids are GUIDs, kept here as 16 bytes each (a map of strings took about
/// 0.55 KiB per tenant for four applications); an id that is not a GUID in lower-case
/// canonical form is kept as it came.
#[derive(Clone, Debug, Default)]
pub struct SpIds(Vec<(ObjectId, ObjectId)>);

/// A directory object id, as compact as it can be kept and given back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ObjectId {
    Guid([u8; 16]),
    Text(Box<str>),
}

impl ObjectId {
    fn new(id: &str) -> Self {
        match uuid::Uuid::try_parse(id) {
            Ok(guid) if guid.hyphenated().to_string() == id => Self::Guid(guid.into_bytes()),
            _ => Self::Text(id.into()),
        }
    }

    /// Application ids are compared regardless of case.
    fn of_app(app_id: &str) -> Self {
        Self::new(&app_id.to_ascii_lowercase())
    }

    fn text(&self) -> String {
        match self {
            Self::Guid(bytes) => uuid::Uuid::from_bytes(*bytes).hyphenated().to_string(),
            Self::Text(id) => id.to_string(),
        }
    }
}

impl SpIds {
    /// The service principal id of the application `app_id`, if known.
    pub fn get(&self, app_id: &str) -> Option<String> {
        let app = ObjectId::of_app(app_id);
        self.0
            .iter()
            .find(|(a, _)| *a == app)
            .map(|(_, sp)| sp.text())
    }

    /// Remembers `sp_id` for `app_id`; true when it was not the one known.
    pub fn insert(&mut self, app_id: &str, sp_id: &str) -> bool {
        let (app, sp) = (ObjectId::of_app(app_id), ObjectId::new(sp_id));
        match self.0.iter_mut().find(|(a, _)| *a == app) {
            Some((_, known)) if *known == sp => false,
            Some((_, known)) => {
                *known = sp;
                true
            }
            None => {
                self.0.push((app, sp));
                self.0.shrink_to_fit();
                true
            }
        }
    }

    /// Forgets the application's service principal (it is gone).
    pub fn remove(&mut self, app_id: &str) {
        let app = ObjectId::of_app(app_id);
        self.0.retain(|(a, _)| *a != app);
    }
}

/// Checks `specs` in `tenant`.
pub async fn check_tenant(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    specs: &[ConsentSpec],
) -> TenantCheck {
    let checked_at = SystemTime::now();
    let mut results: Vec<ConsentCheck> = Vec::with_capacity(specs.len());
    let directory = specs.iter().find(|s| s.key == DIRECTORY_CONSENT);
    let others: Vec<&ConsentSpec> = specs
        .iter()
        .filter(|s| s.key != DIRECTORY_CONSENT)
        .collect();

    let mut verifier = None;
    if let Some(directory) = directory {
        match env.token(tenant, directory).await {
            Ok(token) => {
                results.push(env.judge_by_token(tenant, directory, &token));
                if can_verify_others(&token) {
                    verifier = Some(token);
                }
            }
            Err(e @ GraphError::TenantNotFound { .. }) => {
                // Nothing can be known about any consent of a tenant that does not exist.
                return TenantCheck {
                    tenant_id: tenant.to_owned(),
                    checked_at,
                    consents: specs.iter().map(|s| from_error(s, &e)).collect(),
                };
            }
            Err(e) => results.push(from_error(directory, &e)),
        }
    }

    let others_checked = match (verifier, directory) {
        (Some(token), Some(directory)) => {
            verify_others(env, cache, tenant, token, directory, &others).await
        }
        _ => {
            // A directory consent the customer has not (fully) granted is a wait; one the
            // operator cannot use (bad secret, throttled) says nothing about the others.
            let failing = results
                .iter()
                .find(|r| r.key == DIRECTORY_CONSENT)
                .filter(|r| matches!(r.state, CheckState::Error | CheckState::Unknown))
                .map(|r| {
                    format!(
                        "the {DIRECTORY_CONSENT} consent cannot be used: {}",
                        r.message
                    )
                });
            check_by_tokens(env, tenant, &others, failing.as_deref()).await
        }
    };
    results.extend(others_checked);

    // Report in the order asked.
    results.sort_by_key(|r| specs.iter().position(|s| s.key == r.key));
    TenantCheck {
        tenant_id: tenant.to_owned(),
        checked_at,
        consents: results.into(),
    }
}

/// Verifies the other consents through Graph with the directory token. A token Graph
/// refuses (401: expired or revoked early) is replaced once; when Graph still refuses, the
/// others are judged by their own tokens and delegated-only consents are `Unknown` (they were
/// verifiable a moment ago: no reason to call them pending).
async fn verify_others(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    token: Arc<AccessToken>,
    directory: &ConsentSpec,
    others: &[&ConsentSpec],
) -> Vec<ConsentCheck> {
    let mut result = verify_through_graph(env, cache, tenant, &token, others).await;
    if let Err(GraphError::Graph { status: 401, .. }) = result {
        env.tokens.invalidate(tenant, &directory.app_id);
        result = match env.token(tenant, directory).await {
            Ok(fresh) if can_verify_others(&fresh) => {
                verify_through_graph(env, cache, tenant, &fresh, others).await
            }
            Ok(_) => result,
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(checks) => checks,
        Err(
            refused @ GraphError::Graph {
                status: 401 | 403, ..
            },
        ) => {
            env.tokens.invalidate(tenant, &directory.app_id);
            let reason = format!(
                "Microsoft Graph refused the {DIRECTORY_CONSENT} application's token ({refused})"
            );
            check_by_tokens(env, tenant, others, Some(&reason)).await
        }
        Err(e) => others.iter().map(|s| from_error(s, &e)).collect(),
    }
}

/// One token per application-permission consent. Delegated-only consents wait for the
/// directory consent, or are `Unknown` when it exists but cannot be used (`failing` says why).
async fn check_by_tokens(
    env: &CheckEnv<'_>,
    tenant: &str,
    specs: &[&ConsentSpec],
    failing: Option<&str>,
) -> Vec<ConsentCheck> {
    join_all(specs.iter().map(|spec| async move {
        if spec.application_permissions.is_empty() {
            return match failing {
                None => awaiting_directory(spec),
                Some(reason) => unverifiable(spec, reason),
            };
        }
        match env.token(tenant, spec).await {
            Ok(token) => env.judge_by_token(tenant, spec, &token),
            Err(e) => from_error(spec, &e),
        }
    }))
    .await
}

/// The verdict for a consent that cannot be verified now for a reason on the operator's side:
/// its previous state stands.
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

/// Verifies `specs` through Graph with the directory token: one `$batch` when every service
/// principal id is known and unchanged, two otherwise (look-ups, then details).
async fn verify_through_graph(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    token: &AccessToken,
    specs: &[&ConsentSpec],
) -> Result<Vec<ConsentCheck>, GraphError> {
    if specs.is_empty() {
        return Ok(vec![]);
    }
    let mut checks: Vec<Option<ConsentCheck>> = vec![None; specs.len()];
    for (i, spec) in specs.iter().enumerate() {
        if !is_guid(&spec.app_id) {
            checks[i] = Some(from_error(
                spec,
                &GraphError::Protocol {
                    service: Service::Graph,
                    reason: format!("application id {:?} is not a GUID", spec.app_id),
                },
            ));
        }
    }

    // Round 1: Graph's own service principal (once per tenant), every app's service principal,
    // and the details of those whose id is already known.
    let mut requests = Vec::new();
    let known_roles = env.role_names.lock().expect("role names lock").clone();
    if cache.graph.is_none() {
        requests.push(BatchRequest::get(
            "graph",
            urls::graph_resource(known_roles.is_none()),
        ));
    }
    for (i, spec) in specs
        .iter()
        .enumerate()
        .filter(|(i, _)| checks[*i].is_none())
    {
        requests.push(BatchRequest::get(
            format!("sp{i}"),
            urls::service_principal(&spec.app_id),
        ));
        if let Some(sp_id) = cache.sp_ids.get(&spec.app_id) {
            requests.extend(detail_requests(i, spec, &sp_id));
        }
    }
    let items = env.graph.batch(token, requests).await?;
    let item = |id: &str| items.iter().find(|it| it.id == id);

    if let Some(graph_item) = item("graph") {
        let body = graph_item.result()?;
        let resource = GraphResource::from_json(body, known_roles.as_ref()).ok_or_else(|| {
            GraphError::Protocol {
                service: Service::Graph,
                reason: "Microsoft Graph's service principal has no id".to_owned(),
            }
        })?;
        if known_roles.is_none() && !resource.role_names.is_empty() {
            *env.role_names.lock().expect("role names lock") = Some(resource.role_names.clone());
        }
        cache.graph = Some(resource);
    }
    let graph = cache.graph.clone().expect("graph resource fetched above");

    // Which apps are there, and whose details are still to fetch.
    let mut found: Vec<Option<ServicePrincipal>> = vec![None; specs.len()];
    let mut second_round = Vec::new();
    let open: Vec<usize> = (0..specs.len()).filter(|i| checks[*i].is_none()).collect();
    for i in open {
        let spec = specs[i];
        let sp_item = item(&format!("sp{i}")).expect("every request is answered");
        match sp_item.result() {
            Err(GraphError::Graph { status: 404, .. }) => {
                cache.sp_ids.remove(&spec.app_id);
                checks[i] = Some(not_consented(spec, tenant));
            }
            Err(e) => checks[i] = Some(from_error(spec, &e)),
            Ok(body) => match ServicePrincipal::from_json(body) {
                None => {
                    checks[i] = Some(from_error(
                        spec,
                        &GraphError::Protocol {
                            service: Service::Graph,
                            reason: "a service principal without id".to_owned(),
                        },
                    ))
                }
                Some(sp) => {
                    if cache.sp_ids.insert(&spec.app_id, &sp.id) {
                        second_round.extend(detail_requests(i, spec, &sp.id));
                    }
                    found[i] = Some(sp);
                }
            },
        }
    }
    let mut items = items;
    if !second_round.is_empty() {
        items.extend(env.graph.batch(token, second_round).await?);
    }

    // Details → verdicts.
    for (i, spec) in specs.iter().enumerate() {
        if checks[i].is_some() {
            continue;
        }
        let sp = found[i].as_ref().expect("found or judged above");
        let assignments = collection(
            env,
            token,
            &items,
            &format!("ra{i}"),
            !spec.application_permissions.is_empty(),
        )
        .await;
        let grants = collection(
            env,
            token,
            &items,
            &format!("pg{i}"),
            !spec.delegated_scopes.is_empty(),
        )
        .await;
        checks[i] = Some(match (assignments, grants) {
            (Ok(a), Ok(g)) => from_graph(spec, sp, &graph, &a, Some(&g)),
            (Ok(a), Err(GraphError::Graph { status: 403, .. })) => {
                from_graph(spec, sp, &graph, &a, None)
            }
            (Err(GraphError::Graph { status: 404, .. }), _)
            | (_, Err(GraphError::Graph { status: 404, .. })) => {
                // Deleted between the look-up and the details: consent withdrawn.
                cache.sp_ids.remove(&spec.app_id);
                not_consented(spec, tenant)
            }
            (Err(e), _) | (_, Err(e)) => from_error(spec, &e),
        });
    }
    Ok(checks
        .into_iter()
        .map(|c| c.expect("every consent judged"))
        .collect())
}

/// The detail requests of one app: its app role assignments and/or its permission grants.
fn detail_requests(i: usize, spec: &ConsentSpec, sp_id: &str) -> Vec<BatchRequest> {
    let mut requests = Vec::new();
    if !spec.application_permissions.is_empty() {
        requests.push(BatchRequest::get(
            format!("ra{i}"),
            urls::app_role_assignments(sp_id),
        ));
    }
    if !spec.delegated_scopes.is_empty() {
        requests.push(BatchRequest::get(
            format!("pg{i}"),
            urls::permission_grants(sp_id),
        ));
    }
    requests
}

/// The full collection answered to batch item `id` (following its next pages), or nothing
/// when that kind of detail was not needed.
async fn collection(
    env: &CheckEnv<'_>,
    token: &AccessToken,
    items: &[BatchItem],
    id: &str,
    needed: bool,
) -> Result<Vec<Value>, GraphError> {
    if !needed {
        return Ok(vec![]);
    }
    // The last answer with this id wins (a second round supersedes a stale first one).
    let Some(item) = items.iter().rev().find(|it| it.id == id) else {
        return Err(GraphError::Protocol {
            service: Service::Graph,
            reason: format!("no answer for batch item {id}"),
        });
    };
    let body = item.result()?.clone();
    env.graph.rest_of_pages(token, body).await
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
        }
    }

    #[test]
    fn service_principal_ids_are_given_back_exactly_by_application_whatever_its_case() {
        let mut ids = SpIds::default();
        let app = "8B0F7A52-0000-4000-8000-000000000003";
        assert!(ids.insert(app, "5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"));
        assert!(!ids.insert(
            &app.to_ascii_lowercase(),
            "5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
        ));
        assert_eq!(
            ids.get("8b0f7a52-0000-4000-8000-000000000003").as_deref(),
            Some("5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
        );
        // Not a GUID in canonical form: kept as it came.
        assert!(ids.insert("other-app", "SP-42"));
        assert_eq!(ids.get("OTHER-APP").as_deref(), Some("SP-42"));
        assert!(ids.insert("other-app", "5F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9"));
        assert_eq!(
            ids.get("other-app").as_deref(),
            Some("5F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9")
        );
        ids.remove(app);
        assert_eq!(ids.get(app), None);
        assert!(ids.get("other-app").is_some());
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
                service: Service::Identity,
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
            Some(&[]),
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
        assert_eq!(
            from_graph(&login, &sp, &graph, &[], Some(&user_only)).state,
            CheckState::Partial
        );
        let admin = [
            json!({"clientId":"sp-2","consentType":"AllPrincipals","resourceId":"graph-sp","scope":" openid  profile User.Read "}),
        ];
        let check = from_graph(&login, &sp, &graph, &[], Some(&admin));
        assert_eq!(check.state, CheckState::Granted, "{}", check.message);
        assert_eq!(check.granted, ["openid", "profile", "User.Read"]);

        // Real Graph refuses to list grants without Directory.Read.All: presence is all we know.
        let check = from_graph(&login, &sp, &graph, &[], None);
        assert_eq!(check.state, CheckState::Granted);
        assert!(check.granted.is_empty() && check.missing.is_empty());
        assert!(
            check.message.contains("needs Directory.Read.All"),
            "{}",
            check.message
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
            Some(&[]),
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
