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

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Map, Value};

use super::catalog::{self, GRAPH_APP_ID};
use super::directory::{is_guid, Application, Directory, ServicePrincipal, Tenant};

/// An OData error: HTTP status, `error.code`, `error.message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "Request_BadRequest", message)
    }

    fn not_found(key: &str) -> Self {
        Self::new(404, "Request_ResourceNotFound", format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ))
    }

    pub fn denied() -> Self {
        Self::new(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// The error JSON, with the `innerError` Graph adds to every error.
    pub fn body(&self, request_id: &str, client_request_id: &str, now: DateTime<Utc>) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }
        })
    }
}

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
    ApplicationById(String),
    Organization,
    OrganizationById(String),
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
    let query = Query::parse(raw_query)?;
    let target = parse_target(raw_path)?;
    let required = match &target {
        Target::PermissionGrants | Target::PermissionGrant(_) | Target::SpPermissionGrants(_)
            if ctx.grants_require_directory_read =>
        {
            READ_GRANTS_STRICT
        }
        Target::Organization | Target::OrganizationById(_) => READ_ORGANIZATION,
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
        ctx,
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
        ("organization", [id]) => Ok(Target::OrganizationById(id.to_string())),
        ("oauth2PermissionGrants" | "applications" | "organization", [_, other, ..]) => {
            Err(unknown(other))
        }
        (other, _) => Err(unknown(other)),
    }
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

/// The OData query options the simulator understands.
#[derive(Debug, Default)]
struct Query {
    select: Option<Vec<String>>,
    filter: Option<Vec<Clause>>,
    top: Option<usize>,
    skip: usize,
    /// All options in order except `$skiptoken`, to rebuild `@odata.nextLink`.
    carried: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &str) -> Result<Query, GraphError> {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.as_str() {
                "$select" => {
                    q.select = Some(
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "$filter" => q.filter = Some(parse_filter(&v)?),
                "$top" => {
                    let top = v.parse::<usize>().ok().filter(|n| (1..=999).contains(n)).ok_or_else(|| {
                        GraphError::bad_request(format!("Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."))
                    })?;
                    q.top = Some(top);
                }
                "$skiptoken" => {
                    q.skip = decode_skiptoken(&v)
                        .ok_or_else(|| GraphError::bad_request("Invalid skip token."))?;
                    continue;
                }
                "$expand" | "$orderby" | "$count" | "$search" | "$skip" => {
                    return Err(GraphError::bad_request(format!(
                        "The query option '{k}' is not supported by the simulator."
                    )))
                }
                _ => {}
            }
            q.carried.push((k, v));
        }
        Ok(q)
    }
}

/// One `prop eq value` clause of a `$filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    prop: String,
    value: String,
    /// A quoted string literal (`'…'`), not a bare GUID or boolean literal.
    quoted: bool,
}

/// `prop eq 'value' [and prop eq 'value' …]`, the equality filters directory objects support.
/// Values are quoted strings (`''` escapes a quote), or bare GUID and boolean literals
/// (`resourceId eq 8fce…`); which one a property takes is its type's business (see
/// [`Page::collection`]).
fn parse_filter(text: &str) -> Result<Vec<Clause>, GraphError> {
    let invalid = || GraphError::bad_request(format!("Invalid filter clause: '{text}'."));
    let mut clauses = Vec::new();
    let mut rest = text.trim();
    loop {
        let (prop, after) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
        let after = after
            .trim_start()
            .strip_prefix("eq ")
            .ok_or_else(invalid)?
            .trim_start();
        let quoted = after.starts_with('\'');
        let (value, after) = filter_value(after).ok_or_else(invalid)?;
        clauses.push(Clause {
            prop: prop.to_string(),
            value,
            quoted,
        });
        rest = after.trim();
        if rest.is_empty() {
            return Ok(clauses);
        }
        let (and, next) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
        if !and.eq_ignore_ascii_case("and") {
            return Err(invalid());
        }
        rest = next.trim_start();
    }
}

/// One filter value at the start of `text`, and what follows it.
fn filter_value(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('\'') else {
        let (literal, tail) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let valid = is_guid(literal) || literal == "true" || literal == "false";
        return valid.then(|| (literal.to_string(), tail));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if matches!(chars.peek(), Some((_, '\''))) => {
                value.push('\'');
                chars.next();
            }
            '\'' => return Some((value, &quoted[i + 1..])),
            _ => value.push(c),
        }
    }
    None
}

/// What next links percent-encode in query keys and values: `$`, `,`, `'` and
/// parentheses stay readable, as in Graph's own links.
const QUERY_PART: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

const SKIPTOKEN_PREFIX: &str = "RFNwdAIA";

fn encode_skiptoken(offset: usize) -> String {
    let body =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("sim-offset:{offset}"));
    format!("{SKIPTOKEN_PREFIX}{body}")
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let body = token.strip_prefix(SKIPTOKEN_PREFIX)?;
    let text = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?,
    )
    .ok()?;
    text.strip_prefix("sim-offset:")?.parse().ok()
}

/// Filterable properties typed `Edm.Guid` (compared with bare GUID literals); every other
/// filterable property is an `Edm.String` and takes a quoted string, as in Graph's metadata
/// (`oAuth2PermissionGrant.clientId` is a string: `clientId eq '…'`).
fn guid_typed(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "appRoleAssignment" => &["appRoleId", "principalId", "resourceId"],
        _ => &[],
    }
}

/// Filterable properties per entity type (Graph supports `eq` on these).
fn filterable(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "servicePrincipal" => &["id", "appId", "displayName", "servicePrincipalType"],
        "oAuth2PermissionGrant" => &["id", "clientId", "consentType", "principalId", "resourceId"],
        "application" => &["id", "appId", "displayName"],
        "appRoleAssignment" => &["appRoleId", "principalId", "resourceId"],
        _ => &[],
    }
}

struct Page<'a> {
    ctx: &'a GraphContext,
    raw_path: &'a str,
    query: &'a Query,
}

impl Page<'_> {
    fn collection(
        &self,
        context: &str,
        type_name: &str,
        items: Vec<Value>,
    ) -> Result<Value, GraphError> {
        let mut items = items;
        if let Some(clauses) = &self.query.filter {
            for Clause { prop, quoted, .. } in clauses {
                if !filterable(type_name).contains(&prop.as_str()) {
                    let resource =
                        format!("{}{}", type_name[..1].to_ascii_uppercase(), &type_name[1..]);
                    return Err(GraphError::new(400, "Request_UnsupportedQuery", format!(
                        "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."
                    )));
                }
                let (want, found) = match (guid_typed(type_name).contains(&prop.as_str()), quoted) {
                    (true, true) => ("Edm.Guid", "Edm.String"),
                    (false, false) => ("Edm.String", "Edm.Guid"),
                    _ => continue,
                };
                return Err(GraphError::new(400, "BadRequest", format!(
                    "A binary operator with incompatible types was detected. Found operand types '{want}' and '{found}' for operator kind 'Equal'."
                )));
            }
            items.retain(|item| {
                clauses.iter().all(|Clause { prop, value, .. }| {
                    item.get(prop).is_some_and(|v| match v {
                        Value::String(text) => text.eq_ignore_ascii_case(value),
                        Value::Bool(b) => b.to_string() == *value,
                        _ => false,
                    })
                })
            });
        }
        let (items, context) = project(items, type_name, self.query.select.as_deref(), context)?;
        let size = self.query.top.unwrap_or(self.ctx.page_size).max(1);
        let start = self.query.skip.min(items.len());
        let end = (start + size).min(items.len());
        let mut body = Map::new();
        body.insert("@odata.context".into(), Value::String(context));
        if end < items.len() {
            let skiptoken = ("$skiptoken".to_string(), encode_skiptoken(end));
            let query: Vec<String> = self
                .query
                .carried
                .iter()
                .chain(std::iter::once(&skiptoken))
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, QUERY_PART),
                        utf8_percent_encode(v, QUERY_PART)
                    )
                })
                .collect();
            let next = format!(
                "{}/v1.0/{}?{}",
                self.ctx.base,
                self.raw_path,
                query.join("&")
            );
            body.insert("@odata.nextLink".into(), Value::String(next));
        }
        body.insert("value".into(), Value::Array(items[start..end].to_vec()));
        Ok(Value::Object(body))
    }
}

fn entity(context: &str, type_name: &str, item: Value, query: &Query) -> Result<Value, GraphError> {
    let (mut items, context) = project(vec![item], type_name, query.select.as_deref(), context)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{context}/$entity")),
    );
    if let Value::Object(fields) = items.remove(0) {
        body.extend(fields);
    }
    Ok(Value::Object(body))
}

/// Applies `$select` to `items` and returns the matching `@odata.context`.
fn project(
    items: Vec<Value>,
    type_name: &str,
    select: Option<&[String]>,
    context: &str,
) -> Result<(Vec<Value>, String), GraphError> {
    let Some(select) = select else {
        return Ok((items, context.to_string()));
    };
    let known: Vec<String> = items
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_else(|| properties_of(type_name));
    for name in select {
        if !known.contains(name) {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
            )));
        }
    }
    let projected = items
        .into_iter()
        .map(|item| {
            let mut out = Map::new();
            for name in select {
                if let Some(v) = item.get(name) {
                    out.insert(name.clone(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    Ok((projected, format!("{context}({})", select.join(","))))
}

/// Property names per type, for `$select` validation on empty collections.
fn properties_of(type_name: &str) -> Vec<String> {
    let names: &[&str] = match type_name {
        "servicePrincipal" => &[
            "id",
            "deletedDateTime",
            "accountEnabled",
            "appDisplayName",
            "appId",
            "appOwnerOrganizationId",
            "appRoleAssignmentRequired",
            "appRoles",
            "displayName",
            "keyCredentials",
            "oauth2PermissionScopes",
            "passwordCredentials",
            "replyUrls",
            "servicePrincipalNames",
            "servicePrincipalType",
            "signInAudience",
            "tags",
        ],
        "appRoleAssignment" => &[
            "id",
            "deletedDateTime",
            "appRoleId",
            "createdDateTime",
            "principalDisplayName",
            "principalId",
            "principalType",
            "resourceDisplayName",
            "resourceId",
        ],
        "oAuth2PermissionGrant" => &[
            "id",
            "clientId",
            "consentType",
            "principalId",
            "resourceId",
            "scope",
        ],
        "application" => &[
            "id",
            "deletedDateTime",
            "appId",
            "createdDateTime",
            "displayName",
            "identifierUris",
            "keyCredentials",
            "passwordCredentials",
            "publisherDomain",
            "requiredResourceAccess",
            "signInAudience",
            "web",
        ],
        _ => &[],
    };
    names.iter().map(|s| s.to_string()).collect()
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
    fn filters_parse_equality_clauses_joined_by_and() {
        let clause = |prop: &str, value: &str, quoted: bool| Clause {
            prop: prop.into(),
            value: value.into(),
            quoted,
        };
        assert_eq!(
            parse_filter("clientId eq 'a''b' and consentType eq 'AllPrincipals'").unwrap(),
            [
                clause("clientId", "a'b", true),
                clause("consentType", "AllPrincipals", true)
            ]
        );
        assert_eq!(
            parse_filter("resourceId eq 8fce32da-1246-437b-99cd-76d1d4677bd5 and appRoleId eq 'x'")
                .unwrap(),
            [
                clause("resourceId", "8fce32da-1246-437b-99cd-76d1d4677bd5", false),
                clause("appRoleId", "x", true)
            ]
        );
        assert!(parse_filter("clientId eq x").is_err());
        assert!(parse_filter("clientId ne 'x'").is_err());
        assert!(parse_filter("clientId eq 'x' or id eq 'y'").is_err());
    }

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

    #[test]
    fn skiptokens_round_trip() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(42)), Some(42));
        assert_eq!(decode_skiptoken("garbage"), None);
    }
}
