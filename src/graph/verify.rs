//! The I/O shell of a tenant's consent check: gathers tokens and Graph answers and hands
//! them to the rules of [`super::consent`].
//!
//! - With the `directory` consent's token, every consent (`directory` included) is verified
//!   through Graph: service principals, their app role assignments (the truth about
//!   application permissions) and `AllPrincipals` permission grants, in `$batch` calls;
//!   service principal ids are cached, so a steady-state poll is one batch. A token Graph
//!   refuses (401, on the whole batch or on one item) is replaced once.
//! - Without it, each application-permission consent is judged by its own token's `roles`
//!   (a hint; an opaque token says nothing, and the consent is `Unverified`), and
//!   delegated-only consents wait for the directory consent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::join_all;
use serde_json::Value;

use super::admins::{self, AdminCheck};
use super::client::{BatchItem, BatchRequest, GraphClient};
use super::consent::*;
use super::discovery::Discovery;
use super::error::{GraphError, Service};
use super::teams_catalog::{self, CatalogCheck};
use super::token::{AccessToken, TokenProvider};
use crate::config::{is_guid, SecretRef, DIRECTORY_CONSENT};

/// What a check needs from outside.
pub struct CheckEnv<'a> {
    pub tokens: &'a TokenProvider,
    pub graph: &'a GraphClient,
    /// Client secret reference per application id (lower-case).
    pub secrets: &'a HashMap<String, SecretRef>,
    /// Graph's app role names, once known (shared by all tenants).
    pub role_names: &'a Mutex<Option<RoleNames>>,
    /// OpenID discovery, to name the cloud of a tenant the token endpoint calls cross-cloud.
    pub discovery: &'a Discovery,
    /// The platform's Teams app manifest id, looked up in the customer's catalog.
    pub teams_app_id: Option<&'a str>,
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

    /// The verdict on `spec` from its own token (see [`by_token`]); the cached token is
    /// dropped unless it granted the consent. A token's `roles` are fixed when Entra issues
    /// it, and a permission granted after that (or one that reached the directory late) shows
    /// only in a new token: a token that fell short would otherwise hold the consent at
    /// Partial until it expires, an hour later.
    fn judge_by_token(
        &self,
        tenant: &str,
        spec: &ConsentSpec,
        token: &AccessToken,
        why_no_graph: &str,
    ) -> ConsentCheck {
        let check = by_token(spec, token, why_no_graph);
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
    /// The administrators as last looked up (they stand while Graph cannot answer).
    pub administrators: Vec<AdminCheck>,
    /// The Teams app in the customer's catalog, as last looked up.
    pub teams_app: Option<CatalogCheck>,
}

/// The service principal id of each application in one tenant, kept between polls for every
/// tenant. Both ids are GUIDs, kept here as 16 bytes each rather than as strings, since
/// every tenant holds one; an id that is not a GUID in lower-case canonical form is kept as
/// it came.
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

/// Why the directory consent's token cannot be used to verify the others.
#[derive(Clone, Copy, Debug)]
enum NoVerifier<'a> {
    /// The directory consent is not (fully) granted: delegated consents wait for it.
    NotGranted,
    /// It cannot be used for now (throttling, an outage): previous states stand.
    Passing(&'a str),
    /// It cannot be used until someone acts (a bad secret, a token Graph refuses).
    Broken(&'a str),
}

impl NoVerifier<'_> {
    /// In words, for the verdict by an app's own token.
    fn why(&self) -> String {
        match self {
            NoVerifier::NotGranted => {
                format!("the {DIRECTORY_CONSENT} consent, whose token reads them, is not granted")
            }
            NoVerifier::Passing(reason) | NoVerifier::Broken(reason) => {
                format!("the {DIRECTORY_CONSENT} consent cannot be used: {reason}")
            }
        }
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
    let directory = specs.iter().find(|s| s.key == DIRECTORY_CONSENT);
    let others: Vec<&ConsentSpec> = specs
        .iter()
        .filter(|s| s.key != DIRECTORY_CONSENT)
        .collect();
    let mut results = match directory {
        None => check_by_tokens(env, tenant, &others, NoVerifier::NotGranted).await,
        Some(directory) => match env.token(tenant, directory).await {
            Ok(token) => check_with_directory(env, cache, tenant, token, directory, &others).await,
            Err(e @ (GraphError::TenantNotFound { .. } | GraphError::OtherCloud { .. })) => {
                // Nothing can be known about any consent of a tenant this cloud cannot serve.
                let e = env.discovery.explain(tenant, e).await;
                specs.iter().map(|s| from_error(s, &e)).collect()
            }
            Err(e) => {
                let directory_check = from_error(directory, &e);
                let reason = format!(
                    "the {DIRECTORY_CONSENT} consent cannot be used: {}",
                    directory_check.message
                );
                let why = match directory_check.state {
                    CheckState::Unknown => NoVerifier::Passing(&reason),
                    CheckState::Error => NoVerifier::Broken(&reason),
                    _ => NoVerifier::NotGranted,
                };
                let mut results = check_by_tokens(env, tenant, &others, why).await;
                results.push(directory_check);
                results
            }
        },
    };
    // Report in the order asked.
    results.sort_by_key(|r| specs.iter().position(|s| s.key == r.key));
    let administrators = administrators_after(cache, directory, &results);
    let teams_app = env
        .teams_app_id
        .map(|_| teams_app_after(cache, directory, &results));
    TenantCheck {
        tenant_id: tenant.to_owned(),
        checked_at,
        consents: results.into(),
        administrators,
        teams_app,
    }
}

/// The administrators of the directory consent's spec: as Graph answered in this check; as
/// before while the directory consent cannot be used for a passing reason; `NotChecked`
/// when it is not granted.
fn administrators_after(
    cache: &mut TenantCache,
    directory: Option<&ConsentSpec>,
    results: &[ConsentCheck],
) -> Vec<AdminCheck> {
    let Some(directory) = directory else {
        cache.administrators.clear();
        return vec![];
    };
    let state = results
        .iter()
        .find(|r| r.key == DIRECTORY_CONSENT)
        .map(|r| r.state);
    let why = match state {
        Some(CheckState::Granted) | Some(CheckState::Unknown) => {
            "not looked up yet: Microsoft Graph has not answered".to_owned()
        }
        _ => {
            cache.administrators.clear();
            format!("looked up once the {DIRECTORY_CONSENT} consent is granted")
        }
    };
    directory
        .administrators
        .iter()
        .map(|upn| {
            cache
                .administrators
                .iter()
                .find(|a| a.upn.eq_ignore_ascii_case(upn))
                .cloned()
                .unwrap_or_else(|| AdminCheck::not_checked(upn, &why))
        })
        .collect()
}

/// The Teams app in the customer's catalog: as Graph answered in this check (or before, while
/// the directory consent cannot be used for a passing reason); `NotChecked` while it is not
/// granted.
fn teams_app_after(
    cache: &mut TenantCache,
    directory: Option<&ConsentSpec>,
    results: &[ConsentCheck],
) -> CatalogCheck {
    let state = directory.and_then(|_| results.iter().find(|r| r.key == DIRECTORY_CONSENT));
    match state.map(|r| r.state) {
        Some(CheckState::Granted) | Some(CheckState::Unknown) => {
            cache.teams_app.clone().unwrap_or_else(|| {
                CatalogCheck::not_checked("not checked yet: Microsoft Graph has not answered")
            })
        }
        _ => {
            cache.teams_app = None;
            CatalogCheck::not_checked(format!(
                "not checked: the catalog is read with the {DIRECTORY_CONSENT} consent, which is not granted"
            ))
        }
    }
}

/// Every consent, the directory's own included, verified through Graph with the directory
/// token; its `roles` hint is used when Graph cannot be asked.
async fn check_with_directory(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    token: Arc<AccessToken>,
    directory: &ConsentSpec,
    others: &[&ConsentSpec],
) -> Vec<ConsentCheck> {
    if !may_read_others(&token) {
        // The hint says Graph would refuse: the directory consent lacks what it needs.
        let mut results = check_by_tokens(env, tenant, others, NoVerifier::NotGranted).await;
        results.push(env.judge_by_token(
            tenant,
            directory,
            &token,
            "Microsoft Graph cannot be asked",
        ));
        return results;
    }
    if let Some(oid) = &token.object_id {
        // The token names the directory app's own service principal: no look-up round.
        cache.sp_ids.insert(&directory.app_id, oid);
    }
    let all: Vec<&ConsentSpec> = std::iter::once(directory)
        .chain(others.iter().copied())
        .collect();
    match verify_with_fresh_token(env, cache, tenant, token.clone(), directory, &all).await {
        Ok(checks) => {
            if checks[0].state != CheckState::Granted {
                // A new token carries what was granted since this one was issued.
                env.tokens.invalidate(tenant, &directory.app_id);
            }
            checks
        }
        Err(e) if e.is_transient() => {
            let mut results: Vec<ConsentCheck> = others.iter().map(|s| from_error(s, &e)).collect();
            let passing = from_error(directory, &e);
            results.push(match &token.roles {
                // The hint stands in for the truth while Graph cannot answer.
                Some(roles) => verdict(directory, roles, Delegated::AwaitingDirectory),
                None => passing,
            });
            results
        }
        Err(refused) => {
            env.tokens.invalidate(tenant, &directory.app_id);
            let reason = format!(
                "Microsoft Graph refused the {DIRECTORY_CONSENT} application's token ({refused})"
            );
            let mut results =
                check_by_tokens(env, tenant, others, NoVerifier::Broken(&reason)).await;
            results.push(by_token(directory, &token, &reason));
            results
        }
    }
}

/// [`verify_through_graph`]; when Graph refuses the token (401, on the whole batch or on one
/// of its items: expired or revoked early), once more with a new one.
async fn verify_with_fresh_token(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    token: Arc<AccessToken>,
    directory: &ConsentSpec,
    specs: &[&ConsentSpec],
) -> Result<Vec<ConsentCheck>, GraphError> {
    let result = verify_through_graph(env, cache, tenant, &token, directory, specs).await;
    let Err(GraphError::Graph { status: 401, .. }) = result else {
        return result;
    };
    env.tokens.invalidate(tenant, &directory.app_id);
    let fresh = env.token(tenant, directory).await?;
    verify_through_graph(env, cache, tenant, &fresh, directory, specs).await
}

/// One token per application-permission consent, judged by its `roles` hint. Delegated-only
/// consents wait for the directory consent, keep their state while it cannot be used for a
/// passing reason, and are `Unverified` while it is broken.
async fn check_by_tokens(
    env: &CheckEnv<'_>,
    tenant: &str,
    specs: &[&ConsentSpec],
    no_verifier: NoVerifier<'_>,
) -> Vec<ConsentCheck> {
    let why = no_verifier.why();
    join_all(specs.iter().map(|spec| {
        let why = why.as_str();
        async move {
            if spec.application_permissions.is_empty() {
                return match no_verifier {
                    NoVerifier::NotGranted => awaiting_directory(spec),
                    NoVerifier::Passing(reason) => unverifiable(spec, reason),
                    NoVerifier::Broken(reason) => unverified(spec, reason),
                };
            }
            match env.token(tenant, spec).await {
                Ok(token) => env.judge_by_token(tenant, spec, &token, why),
                Err(e) => from_error(spec, &e),
            }
        }
    }))
    .await
}

/// Verifies `specs` through Graph with the directory token: one `$batch` when every service
/// principal id is known and unchanged, two otherwise (look-ups, then details).
async fn verify_through_graph(
    env: &CheckEnv<'_>,
    cache: &mut TenantCache,
    tenant: &str,
    token: &AccessToken,
    directory: &ConsentSpec,
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
    // The administrators and the Teams app, in the same batch: no call of their own.
    for (j, upn) in directory.administrators.iter().enumerate() {
        requests.push(BatchRequest::get(format!("u{j}"), admins::user_url(upn)));
    }
    if let Some(app) = env.teams_app_id {
        requests.push(BatchRequest::get(
            "catalog",
            teams_catalog::catalog_url(app),
        ));
    }
    let items = refused_token(env.graph.batch(token, requests).await?)?;
    let item = |id: &str| items.iter().find(|it| it.id == id);
    if let Some(app) = env.teams_app_id {
        let answer = match item("catalog") {
            Some(found) => found.result(),
            None => Err(GraphError::Protocol {
                service: Service::Graph,
                reason: "no answer for the catalog in the batch".into(),
            }),
        };
        cache.teams_app = Some(teams_catalog::judge(app, answer, cache.teams_app.as_ref()));
    }
    let previous = std::mem::take(&mut cache.administrators);
    cache.administrators = directory
        .administrators
        .iter()
        .enumerate()
        .map(|(j, upn)| {
            let before = previous.iter().find(|a| a.upn.eq_ignore_ascii_case(upn));
            match item(&format!("u{j}")).map(|it| it.result()) {
                Some(answer) => admins::judge(upn, answer, before),
                None => before
                    .cloned()
                    .unwrap_or_else(|| AdminCheck::not_checked(upn, "no answer in the batch")),
            }
        })
        .collect();

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
            // The token may not read service principals: nothing here can be verified.
            Err(e @ GraphError::Graph { status: 403, .. }) => return Err(e),
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
        items.extend(refused_token(env.graph.batch(token, second_round).await?)?);
    }

    // Details → verdicts.
    let (unreadable, unreadable_state) = grants_unreadable(directory);
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
            (Err(e @ GraphError::Graph { status: 401, .. }), _)
            | (_, Err(e @ GraphError::Graph { status: 401, .. })) => return Err(e),
            (Ok(a), Ok(g)) => from_graph(spec, sp, &graph, &a, Ok(&g)),
            (Ok(a), Err(GraphError::Graph { status: 403, .. })) => {
                from_graph(spec, sp, &graph, &a, Err((&unreadable, unreadable_state)))
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

/// The items of a `$batch` answer, or the refusal of the token when Graph refused it on any
/// item (401): a token is refused as a whole, whichever item tells.
fn refused_token(items: Vec<BatchItem>) -> Result<Vec<BatchItem>, GraphError> {
    match items.iter().find(|it| it.status == 401) {
        Some(refused) => Err(refused.result().expect_err("a 401 is an error").clone()),
        None => Ok(items),
    }
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
}
