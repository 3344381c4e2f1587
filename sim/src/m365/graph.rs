//! Microsoft Graph v1.0, the read side the operator uses: service principals (by object id
//! or by `appId` alternate key), their appRoleAssignments and oauth2PermissionGrants, the
//! tenant-wide oauth2PermissionGrants collection, applications (home tenant only) and the
//! organization. Each request is authorised by the caller's token (its `tid` picks the
//! tenant, its `roles` must hold a permission the endpoint accepts), then answered with
//! OData JSON: `@odata.context`, `$select`, simple `$filter` equality, and paging through
//! `@odata.nextLink` with a small default page size and `$top`.
//!
//! A pure function from (directory, caller, relative URL) to a reply, so direct requests and
//! `$batch` items take exactly the same path.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::audit;
use super::catalog::{self, GRAPH_APP_ID};
use super::directory::{is_guid, Application, Directory, ServicePrincipal, Tenant};
pub(crate) use super::odata::GraphError;
use super::odata::{entity, Page, Query};
use super::users::user_json;

/// Who is calling: from a verified access token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub tenant_id: String,
    pub roles: Vec<String>,
}

/// Per-server facts the Graph answers depend on.
#[derive(Debug, Clone)]
pub(crate) struct GraphContext {
    /// Graph endpoint as clients reach it (no trailing slash), for `@odata` links.
    pub base: String,
    pub page_size: usize,
    pub grants_require_directory_read: bool,
}

const READ_APPS: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const READ_GRANTS_STRICT: &[&str] = &["Directory.Read.All", "Directory.ReadWrite.All"];
const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// `directoryAudits`: `AuditLog.Read.All`, the least (and only) application permission Graph
/// documents that reads the audit log.
const READ_AUDIT: &[&str] = &["AuditLog.Read.All"];
/// `appCatalogs/teamsApps`: the application permissions Graph documents for listing the
/// catalog (the `Directory.*` ones are accepted for delegated calls only).
const READ_CATALOG: &[&str] = &["AppCatalog.Read.All", "AppCatalog.ReadWrite.All"];
const READ_ORGANIZATION: &[&str] = &[
    "Organization.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// What a relative Graph URL addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    ServicePrincipals,
    ServicePrincipal(SpKey),
    AppRoleAssignments(SpKey),
    SpPermissionGrants(SpKey),
    PermissionGrants,
    PermissionGrant(String),
    Applications,
    ApplicationByAppId(String),
    /// `/applications(appId='…')/owners`.
    ApplicationOwners(String),
    ApplicationById(String),
    Organization,
    OrganizationById(String),
    /// `/users/{id | userPrincipalName}`.
    User(String),
    /// `/auditLogs/directoryAudits`.
    DirectoryAudits,
    /// `/appCatalogs/teamsApps`.
    TeamsApps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SpKey {
    Id(String),
    AppId(String),
}

/// Answers `GET {version root}/{relative}`; `relative` is the path and query after
/// `/v1.0/`, still percent-encoded.
pub(crate) fn get(
    dir: &Directory,
    ctx: &GraphContext,
    caller: &Caller,
    relative: &str,
) -> Result<Value, GraphError> {
    let (raw_path, raw_query) = relative.split_once('?').unwrap_or((relative, ""));
    let raw_path = raw_path.trim_matches('/');
    let target = parse_target(raw_path)?;
    // The audit log and the catalog take filters and `$expand` of their own.
    let (special, raw_query) = match target {
        Target::DirectoryAudits | Target::TeamsApps => take_options(raw_query),
        _ => (Default::default(), raw_query.to_string()),
    };
    let query = Query::parse(&raw_query)?;
    let required = match &target {
        Target::DirectoryAudits => READ_AUDIT,
        Target::TeamsApps => READ_CATALOG,
        Target::PermissionGrants | Target::PermissionGrant(_) | Target::SpPermissionGrants(_)
            if ctx.grants_require_directory_read =>
        {
            READ_GRANTS_STRICT
        }
        Target::Organization | Target::OrganizationById(_) => READ_ORGANIZATION,
        Target::User(_) => READ_USERS,
        _ => READ_APPS,
    };
    if !caller.roles.iter().any(|r| required.contains(&r.as_str())) {
        return Err(GraphError::denied());
    }
    let tenant = dir.tenants.get(&caller.tenant_id).ok_or_else(|| {
        GraphError::new(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        )
    })?;
    let meta = format!("{}/v1.0/$metadata#", ctx.base);
    let page = Page {
        base: &ctx.base,
        page_size: ctx.page_size,
        raw_path,
        query: &query,
    };
    match target {
        Target::ServicePrincipals => {
            let items = tenant.service_principals.iter().map(sp_json).collect();
            page.collection(
                &format!("{meta}servicePrincipals"),
                "servicePrincipal",
                items,
            )
        }
        Target::ServicePrincipal(key) => {
            let sp = find_sp(tenant, &key)?;
            entity(
                &format!("{meta}servicePrincipals"),
                "servicePrincipal",
                sp_json(sp),
                &query,
            )
        }
        Target::AppRoleAssignments(key) => {
            let sp = find_sp(tenant, &key)?;
            let items = tenant
                .assignments
                .iter()
                .filter(|a| a.principal_id == sp.id)
                .map(|a| {
                    json!({
                        "id": a.id,
                        "deletedDateTime": null,
                        "appRoleId": a.app_role_id,
                        "createdDateTime": instant(a.created),
                        "principalDisplayName": a.principal_display_name,
                        "principalId": a.principal_id,
                        "principalType": "ServicePrincipal",
                        "resourceDisplayName": catalog::GRAPH_DISPLAY_NAME,
                        "resourceId": a.resource_id,
                    })
                })
                .collect();
            page.collection(
                &format!("{meta}servicePrincipals('{}')/appRoleAssignments", sp.id),
                "appRoleAssignment",
                items,
            )
        }
        Target::SpPermissionGrants(key) => {
            let sp = find_sp(tenant, &key)?;
            let items = tenant
                .grants
                .iter()
                .filter(|g| g.client_id == sp.id)
                .map(grant_json)
                .collect();
            page.collection(
                &format!("{meta}oauth2PermissionGrants"),
                "oAuth2PermissionGrant",
                items,
            )
        }
        Target::PermissionGrants => {
            let items = tenant.grants.iter().map(grant_json).collect();
            page.collection(
                &format!("{meta}oauth2PermissionGrants"),
                "oAuth2PermissionGrant",
                items,
            )
        }
        Target::PermissionGrant(id) => {
            let grant = tenant
                .grants
                .iter()
                .find(|g| g.id == id)
                .ok_or_else(|| GraphError::not_found(&id))?;
            entity(
                &format!("{meta}oauth2PermissionGrants"),
                "oAuth2PermissionGrant",
                grant_json(grant),
                &query,
            )
        }
        Target::Applications => {
            let items = home_apps(dir, tenant)
                .map(|a| app_json(a, tenant))
                .collect();
            page.collection(&format!("{meta}applications"), "application", items)
        }
        Target::ApplicationByAppId(app_id) => {
            let app = home_apps(dir, tenant)
                .find(|a| a.app_id.eq_ignore_ascii_case(&app_id))
                .ok_or_else(|| GraphError::not_found(&app_id))?;
            entity(
                &format!("{meta}applications"),
                "application",
                app_json(app, tenant),
                &query,
            )
        }
        Target::ApplicationOwners(app_id) => {
            let app = home_apps(dir, tenant)
                .find(|a| a.app_id.eq_ignore_ascii_case(&app_id))
                .ok_or_else(|| GraphError::not_found(&app_id))?;
            let owners = app
                .owners
                .iter()
                .filter_map(|id| tenant.user(id))
                .map(|u| {
                    let mut user = super::users::user_json(u);
                    user["@odata.type"] = json!("#microsoft.graph.user");
                    user
                })
                .collect();
            page.collection(&format!("{meta}directoryObjects"), "user", owners)
        }
        Target::ApplicationById(id) => {
            let app = home_apps(dir, tenant)
                .find(|a| a.object_id.eq_ignore_ascii_case(&id))
                .ok_or_else(|| GraphError::not_found(&id))?;
            entity(
                &format!("{meta}applications"),
                "application",
                app_json(app, tenant),
                &query,
            )
        }
        Target::Organization => page.collection(
            &format!("{meta}organization"),
            "organization",
            vec![organization_json(tenant)],
        ),
        Target::User(key) => {
            let user = tenant
                .user(&key)
                .ok_or_else(|| GraphError::not_found(&key))?;
            entity(&format!("{meta}users"), "user", user_json(user), &query)
        }
        Target::DirectoryAudits => {
            let clauses = audit::parse_filter(special.filter.as_deref().unwrap_or(""))
                .or_else(|e| special.filter.is_none().then(Vec::new).ok_or(e))?;
            let mut items = Vec::new();
            // Newest first, as the audit log lists them.
            for a in tenant.audits.iter().rev() {
                if audit::audit_matches(a, &clauses)? {
                    items.push(audit::consent_audit_json(a));
                }
            }
            page.collection(
                &format!("{meta}auditLogs/directoryAudits"),
                "directoryAudit",
                items,
            )
        }
        Target::TeamsApps => {
            let clauses = audit::parse_filter(special.filter.as_deref().unwrap_or(""))
                .or_else(|e| special.filter.is_none().then(Vec::new).ok_or(e))?;
            let expand = match special.expand.as_deref() {
                None => false,
                Some(e) if e.eq_ignore_ascii_case("appDefinitions") => true,
                Some(other) => {
                    return Err(GraphError::bad_request(format!(
                    "Could not find a property named '{other}' on type 'microsoft.graph.teamsApp'."
                )))
                }
            };
            let mut items = Vec::new();
            for app in &tenant.teams_apps {
                if audit::teams_app_matches(app, &clauses)? {
                    items.push(audit::teams_app_json(app, expand));
                }
            }
            page.collection(&format!("{meta}appCatalogs/teamsApps"), "teamsApp", items)
        }
        Target::OrganizationById(id) => {
            if !id.eq_ignore_ascii_case(&tenant.id) {
                return Err(GraphError::not_found(&id));
            }
            entity(
                &format!("{meta}organization"),
                "organization",
                organization_json(tenant),
                &query,
            )
        }
    }
}

fn parse_target(raw_path: &str) -> Result<Target, GraphError> {
    let segments: Vec<String> = raw_path
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let first = segments.first().map(String::as_str).unwrap_or("");
    let rest: Vec<&str> = segments.iter().skip(1).map(String::as_str).collect();
    let unknown = |segment: &str| {
        GraphError::new(
            400,
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        )
    };
    let object_id = |id: &str| -> Result<String, GraphError> {
        if is_guid(id) {
            Ok(id.to_ascii_lowercase())
        } else {
            Err(GraphError::bad_request(format!(
                "Invalid object identifier '{id}'."
            )))
        }
    };
    let sp_nav = |key: SpKey, nav: &[&str]| -> Result<Target, GraphError> {
        match nav {
            [] => Ok(Target::ServicePrincipal(key)),
            ["appRoleAssignments"] => Ok(Target::AppRoleAssignments(key)),
            ["oauth2PermissionGrants"] => Ok(Target::SpPermissionGrants(key)),
            [other, ..] => Err(unknown(other)),
        }
    };
    if let Some(app_id) = alternate_key(first, "servicePrincipals") {
        return sp_nav(SpKey::AppId(app_id), &rest);
    }
    if let Some(app_id) = alternate_key(first, "applications") {
        return match rest.as_slice() {
            [] => Ok(Target::ApplicationByAppId(app_id)),
            ["owners"] => Ok(Target::ApplicationOwners(app_id)),
            [other, ..] => Err(unknown(other)),
        };
    }
    match (first, rest.as_slice()) {
        ("servicePrincipals", []) => Ok(Target::ServicePrincipals),
        ("servicePrincipals", [id, nav @ ..]) => sp_nav(SpKey::Id(object_id(id)?), nav),
        ("oauth2PermissionGrants", []) => Ok(Target::PermissionGrants),
        ("oauth2PermissionGrants", [id]) => Ok(Target::PermissionGrant(id.to_string())),
        ("applications", []) => Ok(Target::Applications),
        ("applications", [id]) => Ok(Target::ApplicationById(object_id(id)?)),
        ("organization", []) => Ok(Target::Organization),
        ("auditLogs", ["directoryAudits" | "directoryaudits"]) => Ok(Target::DirectoryAudits),
        ("appCatalogs", ["teamsApps"]) => Ok(Target::TeamsApps),
        ("users", [key]) if !key.is_empty() => Ok(Target::User(key.to_string())),
        ("organization", [id]) => Ok(Target::OrganizationById(id.to_string())),
        ("oauth2PermissionGrants" | "applications" | "organization", [_, other, ..]) => {
            Err(unknown(other))
        }
        (other, _) => Err(unknown(other)),
    }
}

/// The `$filter` and `$expand` of the audit log and the catalog, taken out of the query.
#[derive(Default)]
struct SpecialOptions {
    filter: Option<String>,
    expand: Option<String>,
}

fn take_options(raw_query: &str) -> (SpecialOptions, String) {
    let mut special = SpecialOptions::default();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "$filter" => special.filter = Some(v.into_owned()),
            "$expand" => special.expand = Some(v.into_owned()),
            _ => {
                rest.append_pair(&k, &v);
            }
        }
    }
    (special, rest.finish())
}

/// `servicePrincipals(appId='…')` → the app id.
fn alternate_key(segment: &str, entity_set: &str) -> Option<String> {
    let inner = segment
        .strip_prefix(entity_set)?
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (name, value) = inner.split_once('=')?;
    if name.trim() != "appId" {
        return None;
    }
    let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    Some(value.replace("''", "'"))
}

fn find_sp<'t>(tenant: &'t Tenant, key: &SpKey) -> Result<&'t ServicePrincipal, GraphError> {
    match key {
        SpKey::Id(id) => tenant.sp_by_id(id).ok_or_else(|| GraphError::not_found(id)),
        SpKey::AppId(app_id) => tenant
            .sp_by_app_id(app_id)
            .ok_or_else(|| GraphError::not_found(app_id)),
    }
}

fn home_apps<'d>(dir: &'d Directory, tenant: &'d Tenant) -> impl Iterator<Item = &'d Application> {
    dir.apps
        .values()
        .filter(move |a| a.home_tenant == tenant.id)
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn sp_json(sp: &ServicePrincipal) -> Value {
    let is_graph = sp.app_id == GRAPH_APP_ID;
    json!({
        "id": sp.id,
        "deletedDateTime": null,
        "accountEnabled": sp.account_enabled,
        "appDisplayName": sp.display_name,
        "appId": sp.app_id,
        "appOwnerOrganizationId": sp.app_owner_tenant,
        "appRoleAssignmentRequired": false,
        "appRoles": if is_graph { catalog::app_roles_json() } else { json!([]) },
        "displayName": sp.display_name,
        "keyCredentials": [],
        "oauth2PermissionScopes": if is_graph { catalog::scopes_json() } else { json!([]) },
        "passwordCredentials": [],
        "replyUrls": sp.reply_urls,
        "servicePrincipalNames": if is_graph { json!([sp.app_id, "https://graph.microsoft.com"]) } else { json!([sp.app_id]) },
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "tags": if is_graph { json!([]) } else { json!(["WindowsAzureActiveDirectoryIntegratedApp"]) },
    })
}

fn grant_json(g: &super::directory::PermissionGrant) -> Value {
    json!({
        "clientId": g.client_id,
        "consentType": g.consent_type(),
        "id": g.id,
        "principalId": g.principal_id,
        "resourceId": g.resource_id,
        "scope": g.scope,
    })
}

fn app_json(app: &Application, home: &Tenant) -> Value {
    let mut access: Vec<Value> = app
        .application_permissions
        .iter()
        .filter_map(|p| catalog::app_role(p))
        .map(|p| json!({"id": p.id, "type": "Role"}))
        .collect();
    access.extend(
        app.delegated_scopes
            .iter()
            .filter_map(|s| catalog::scope(s))
            .map(|p| json!({"id": p.id, "type": "Scope"})),
    );
    let secrets: Vec<Value> = app
        .secrets
        .iter()
        .map(|s| {
            json!({
                "customKeyIdentifier": null,
                "displayName": s.display_name,
                "endDateTime": instant(s.end),
                "hint": s.value.chars().take(3).collect::<String>(),
                "keyId": s.key_id,
                "secretText": null,
                "startDateTime": instant(s.start),
            })
        })
        .collect();
    json!({
        "id": app.object_id,
        "deletedDateTime": null,
        "appId": app.app_id,
        "createdDateTime": instant(app.created),
        "displayName": app.display_name,
        "identifierUris": [],
        "keyCredentials": [],
        "passwordCredentials": secrets,
        "publisherDomain": home.default_domain(),
        "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID, "resourceAccess": access}],
        "signInAudience": "AzureADMultipleOrgs",
        "web": {"homePageUrl": null, "logoutUrl": null, "redirectUris": app.redirect_uris},
    })
}

fn organization_json(t: &Tenant) -> Value {
    let domains: Vec<Value> = t
        .domains
        .iter()
        .map(|d| {
            json!({
                "capabilities": if d.is_initial { "Email, OfficeCommunicationsOnline" } else { "Email" },
                "isDefault": d.is_default,
                "isInitial": d.is_initial,
                "name": d.name,
                "type": "Managed",
            })
        })
        .collect();
    json!({
        "id": t.id,
        "deletedDateTime": null,
        "createdDateTime": instant(t.created),
        "displayName": t.display_name,
        "tenantType": "AAD",
        "verifiedDomains": domains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_cover_alternate_keys_and_navigation() {
        assert_eq!(
            parse_target("servicePrincipals(appId='abc')/appRoleAssignments").unwrap(),
            Target::AppRoleAssignments(SpKey::AppId("abc".into()))
        );
        assert_eq!(
            parse_target("applications(appId='x')").unwrap(),
            Target::ApplicationByAppId("x".into())
        );
        assert_eq!(
            parse_target("servicePrincipals/nope").unwrap_err().message,
            "Invalid object identifier 'nope'."
        );
        assert_eq!(
            parse_target("users").unwrap_err().message,
            "Resource not found for the segment 'users'."
        );
    }
}
