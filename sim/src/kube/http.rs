//! The HTTP face of the simulator: authentication, discovery, URL and query parsing, content
//! negotiation (JSON, Tables, PartialObjectMetadata), and the mapping of each request to a
//! cluster operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::cluster::{Cluster, DeleteOptions, WriteOptions, Written};
use super::error::ApiError;
use super::patch::PatchType;
use super::protobuf;
use super::rbac::{self, Tokens, User};
use super::resources::{core_versions, openapi_document, openapi_root, version_info, ResourceType};
use super::selectors::Filter;
use super::table::{self, partial_metadata, IncludeObject};
use super::watch::{self, WatchRequest};
use super::FaultSpec;

/// State shared by every request.
pub struct Shared {
    pub cluster: Mutex<Cluster>,
    /// The harness's (admin) token.
    pub token: String,
    pub tokens: Mutex<Tokens>,
    pub server_address: String,
    pub faults: Mutex<Vec<FaultSpec>>,
    pub counts: Mutex<BTreeMap<(String, String), u64>>,
    /// TLS connections accepted so far, by the protocol they agreed on.
    pub connections: super::tls::ConnectionCounts,
    /// Bumped to close every open watch.
    pub drop_watches: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Params = BTreeMap<String, String>;

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let params: Params = query.into_iter().collect();
    let response = match route(&shared, &method, &uri, &headers, &params, &body) {
        Ok(response) => response,
        Err(e) => error_response(&e, accept_of(&headers)),
    };
    tracing::debug!(%method, %uri, accept = accept_of(&headers), status = response.status().as_u16(), "request");
    response
}

fn accept_of(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The error as a `Status`, in protobuf when the client asks for protobuf first.
pub fn error_response(e: &ApiError, accept: &str) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let status = e.status();
    let body = protobuf::wanted(accept)
        .then(|| protobuf::encode(&status).ok())
        .flatten();
    let mut r = match body {
        Some(bytes) => {
            (code, [(header::CONTENT_TYPE, protobuf::MEDIA_TYPE)], bytes).into_response()
        }
        None => (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            status.to_string(),
        )
            .into_response(),
    };
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    json_body_response(code, Body::from(value.to_string()), warnings)
}

/// An object or list: protobuf when the client lists protobuf first in `Accept` and the kind
/// has a protobuf form (built-in kinds), JSON otherwise.
fn object_response(
    code: StatusCode,
    value: &Value,
    warnings: &[String],
    accept: &str,
) -> Result<Response, ApiError> {
    if protobuf::wanted(accept) && protobuf::encodable(value) {
        let body = Body::from(protobuf::encode(value)?);
        return Ok(body_response(code, protobuf::MEDIA_TYPE, body, warnings));
    }
    Ok(json_response(code, value, warnings))
}

/// The response to a write: the stored change's JSON when the object is served as stored.
fn written_response(
    code: StatusCode,
    written: &Written,
    accept: &str,
) -> Result<Response, ApiError> {
    if protobuf::wanted(accept) {
        return object_response(code, &written.object, &written.warnings, accept);
    }
    let body = match &written.change {
        Some(change) => Body::from(change.json().clone()),
        None => Body::from(written.object.to_string()),
    };
    Ok(json_body_response(code, body, &written.warnings))
}

fn json_body_response(code: StatusCode, body: Body, warnings: &[String]) -> Response {
    body_response(code, "application/json", body, warnings)
}

fn body_response(
    code: StatusCode,
    content_type: &'static str,
    body: Body,
    warnings: &[String],
) -> Response {
    let mut r = (code, [(header::CONTENT_TYPE, content_type)], body).into_response();
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", super::error::go_quote(w))) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// The user behind the bearer token, after any impersonation.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<User, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let user = shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .user(token)
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    let as_user = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok());
    let as_groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    rbac::impersonate(user, as_user, as_groups)
}

/// A request for a resource (as opposed to discovery).
struct ResourcePath {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_resource_path(segs: &[&str]) -> Option<ResourcePath> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] if !rest.is_empty() => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let namespaced_path = rest[0] == "namespaces"
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced_path {
        (rest[1].to_string(), &rest[2..])
    } else {
        (String::new(), rest)
    };
    if rest.len() > 3 {
        return None;
    }
    Some(ResourcePath {
        group,
        version,
        namespace,
        plural: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz"] | ["livez"] | ["readyz"] => return Ok((StatusCode::OK, "ok").into_response()),
        ["version"] => return Ok(json_response(StatusCode::OK, &version_info(), &[])),
        _ => {}
    }
    let user = authenticate(shared, headers)?;
    let discovery = |v: Option<Value>| {
        v.map(|v| json_response(StatusCode::OK, &v, &[]))
            .ok_or_else(ApiError::not_found_path)
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if wants_aggregated_discovery(accept) {
        match segs.as_slice() {
            ["api"] => return Ok(aggregated_response(shared.lock().registry.aggregated(true))),
            ["apis"] => {
                return Ok(aggregated_response(
                    shared.lock().registry.aggregated(false),
                ))
            }
            _ => {}
        }
    }
    match segs.as_slice() {
        ["api"] => return discovery(Some(core_versions(&shared.server_address))),
        ["apis"] => return discovery(Some(shared.lock().registry.group_list())),
        ["api", v] => return discovery(shared.lock().registry.resource_list("", v)),
        ["apis", g] => return discovery(shared.lock().registry.group(g)),
        ["apis", g, v] => return discovery(shared.lock().registry.resource_list(g, v)),
        ["openapi", "v3"] => return discovery(Some(openapi_root(&shared.lock().registry))),
        ["openapi", "v3", "api", v] => {
            return discovery(openapi_document(&shared.lock().registry, "", v))
        }
        ["openapi", "v3", "apis", g, v] => {
            return discovery(openapi_document(&shared.lock().registry, g, v))
        }
        _ => {}
    }
    let rp = parse_resource_path(&segs).ok_or_else(ApiError::not_found_path)?;
    let rt = shared
        .lock()
        .resource(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(ApiError::not_found_path)?;
    if (!rt.namespaced && !rp.namespace.is_empty())
        || rp
            .subresource
            .as_deref()
            .is_some_and(|s| s != "status" || !rt.status_subresource)
    {
        return Err(ApiError::not_found_path());
    }
    let watching = is_true(params.get("watch"));
    let verb = match (method.as_str(), rp.name.is_some()) {
        ("GET", true) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    let resource = match &rp.subresource {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    count_and_check_faults(shared, verb, &resource)?;
    let attributes = rbac::Attributes {
        verb,
        group: &rt.group,
        resource: &rt.plural,
        subresource: rp.subresource.as_deref(),
        namespace: &rp.namespace,
        name: rp.name.as_deref(),
    };
    if !rbac::allowed(&shared.lock().store, &user, &attributes) {
        return Err(rbac::forbidden(&user, &attributes));
    }
    check_write_authorization(shared, &user, &attributes, &rt, body, headers)?;
    if rt.group == "authentication.k8s.io" {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let request = decode_body(body, headers, &rt)?;
        let review = shared
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .review(request);
        return object_response(StatusCode::CREATED, &review, &[], accept);
    }
    if rt.group == "authorization.k8s.io" {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let request = decode_body(body, headers, &rt)?;
        let review = rbac::review(&shared.lock().store, &user, &rt.kind, request);
        return object_response(StatusCode::CREATED, &review, &[], accept);
    }
    match verb {
        "get" => {
            let object =
                shared
                    .lock()
                    .get(&rt, &rp.namespace, rp.name.as_deref().unwrap_or_default())?;
            render_one(&rt, object, accept, params)
        }
        "list" => list(shared, &rt, &rp, params, accept),
        "watch" => {
            let mut field_selector = params.get("fieldSelector").cloned().unwrap_or_default();
            if let Some(name) = &rp.name {
                field_selector = format!("metadata.name={name}");
            }
            let request = WatchRequest {
                rt: rt.clone(),
                namespace: rp.namespace.clone(),
                filter: Filter::parse(
                    params.get("labelSelector").map(String::as_str),
                    Some(&field_selector),
                    &rt.selectable_fields,
                )?,
                resource_version: params.get("resourceVersion").cloned().unwrap_or_default(),
                send_initial_events: is_true(params.get("sendInitialEvents")),
                bookmarks: is_true(params.get("allowWatchBookmarks")),
                timeout: Duration::from_secs(
                    params
                        .get("timeoutSeconds")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(1800),
                ),
                table: wants_table(accept)
                    .then(|| IncludeObject::parse(params.get("includeObject").map(String::as_str))),
                metadata_only: accept.contains("as=PartialObjectMetadata"),
            };
            watch::start(shared.clone(), request)
        }
        "create" => {
            let object = decode_body(body, headers, &rt)?;
            let opts = write_options(params, headers);
            let written = shared.lock().create(&rt, &rp.namespace, object, &opts)?;
            written_response(StatusCode::CREATED, &written, accept)
        }
        "update" => {
            let object = decode_body(body, headers, &rt)?;
            let opts = write_options(params, headers);
            let status = rp.subresource.is_some();
            let written = shared.lock().update(
                &rt,
                &rp.namespace,
                rp.name.as_deref().unwrap_or_default(),
                object,
                status,
                &opts,
            )?;
            written_response(StatusCode::OK, &written, accept)
        }
        "patch" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = PatchType::from_content_type(content_type).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                    if rt.is_custom() { "" } else { ", application/strategic-merge-patch+json" }
                ))
            })?;
            let mut opts = write_options(params, headers);
            if kind == PatchType::Apply {
                opts.field_manager = params.get("fieldManager").cloned().unwrap_or_default();
            }
            let status = rp.subresource.is_some();
            let written = shared.lock().patch(
                &rt,
                &rp.namespace,
                rp.name.as_deref().unwrap_or_default(),
                kind,
                body,
                status,
                &opts,
            )?;
            let code = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            written_response(code, &written, accept)
        }
        "delete" => {
            let opts = delete_options(params, body, headers)?;
            let name = rp.name.as_deref().unwrap_or_default();
            let mut cluster = shared.lock();
            let result = cluster.delete(&rt, &rp.namespace, name, &opts)?;
            let pending = !opts.dry_run && cluster.get(&rt, &rp.namespace, name).is_ok();
            let code = if pending {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            object_response(code, &result, &[], accept)
        }
        _ => delete_collection(shared, &rt, &rp, params, body, headers),
    }
}

const AGGREGATED_DISCOVERY: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Does the client list the v2 aggregated discovery type among what it accepts?
fn wants_aggregated_discovery(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let t = t.replace(' ', "");
        t.contains("g=apidiscovery.k8s.io")
            && t.contains("v=v2")
            && !t.contains("v=v2beta1")
            && t.contains("as=APIGroupDiscoveryList")
    })
}

fn aggregated_response(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, AGGREGATED_DISCOVERY)],
        body.to_string(),
    )
        .into_response()
}

fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true") | Some("1"))
}

fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn count_and_check_faults(shared: &Shared, verb: &str, resource: &str) -> Result<(), ApiError> {
    *shared
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((verb.to_string(), resource.to_string()))
        .or_default() += 1;
    let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    let hit = faults.iter_mut().find(|f| {
        f.count > 0
            && (f.resource == "*" || f.resource == resource)
            && f.verb.as_deref().is_none_or(|v| v == verb)
    });
    if let Some(f) = hit {
        f.count -= 1;
        let code = f.status;
        faults.retain(|f| f.count > 0);
        return Err(ApiError::injected(code));
    }
    Ok(())
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// A create or update body: JSON, YAML, or (built-in kinds only) protobuf.
/// What the real server checks beyond the request's own verb: an apply that creates its object
/// needs `create` too, and a write of a role binding passes the RBAC escalation check
/// ([`rbac::check_binding`]).
fn check_write_authorization(
    shared: &Shared,
    user: &User,
    a: &rbac::Attributes,
    rt: &ResourceType,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !matches!(a.verb, "create" | "update" | "patch") || a.subresource.is_some() {
        return Ok(());
    }
    let cluster = shared.lock();
    let existing = a
        .name
        .and_then(|name| cluster.get(rt, a.namespace, name).ok());
    if a.verb == "patch" && existing.is_none() {
        let create = rbac::Attributes {
            verb: "create",
            ..a.clone()
        };
        if !rbac::allowed(&cluster.store, user, &create) {
            return Err(rbac::forbidden(user, &create));
        }
    }
    if rt.group != "rbac.authorization.k8s.io"
        || !matches!(rt.plural.as_str(), "rolebindings" | "clusterrolebindings")
    {
        return Ok(());
    }
    // The roleRef the write asks for (a patch that leaves it out keeps the stored one).
    let sent = decode_body(body, headers, rt)
        .ok()
        .or_else(|| serde_saphyr::from_slice::<Value>(body).ok())
        .map(|b| b["roleRef"].clone())
        .filter(|r| r.is_object());
    let Some(role_ref) = sent.or_else(|| existing.map(|e| e["roleRef"].clone())) else {
        return Ok(());
    };
    let name = a.name.map(str::to_string).unwrap_or_else(|| {
        decode_body(body, headers, rt)
            .ok()
            .and_then(|b| b["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default()
    });
    rbac::check_binding(
        &cluster.store,
        user,
        (&rt.plural, a.namespace, &name),
        &role_ref,
    )
}

fn decode_body(body: &Bytes, headers: &HeaderMap, rt: &ResourceType) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    if protobuf::is_protobuf(ct) && !rt.is_custom() {
        return protobuf::decode(body, (&rt.api_version(), &rt.kind));
    }
    if !is_json_or_yaml(ct) {
        return Err(unsupported_media_type(rt));
    }
    let parsed = if ct.contains("yaml") {
        serde_saphyr::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

fn is_json_or_yaml(ct: &str) -> bool {
    let media_type = ct.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
        || media_type.eq_ignore_ascii_case("application/yaml")
        || media_type.is_empty()
}

/// The 415 of a body in a format the resource does not take (custom resources have no
/// protobuf form).
fn unsupported_media_type(rt: &ResourceType) -> ApiError {
    let protobuf = if rt.is_custom() {
        String::new()
    } else {
        format!(", {}", protobuf::MEDIA_TYPE)
    };
    ApiError::unsupported_media_type(format!(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml{protobuf}"
    ))
}

/// The field manager of a non-apply write: `fieldManager`, else the User-Agent's product.
fn write_options(params: &Params, headers: &HeaderMap) -> WriteOptions {
    let from_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.split('/').next().unwrap_or_default().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    WriteOptions {
        dry_run: params.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: params.get("fieldManager").cloned().unwrap_or(from_agent),
        strict: params.get("fieldValidation").is_some_and(|v| v == "Strict"),
        force: is_true(params.get("force")),
    }
}

fn delete_options(
    params: &Params,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else if protobuf::is_protobuf(content_type(headers)) {
        protobuf::decode(body, ("", "DeleteOptions"))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All")
        || body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    Ok(DeleteOptions {
        dry_run,
        propagation: params
            .get("propagationPolicy")
            .cloned()
            .or_else(|| body["propagationPolicy"].as_str().map(String::from))
            .or_else(|| (body["orphanDependents"] == json!(true)).then(|| "Orphan".to_string())),
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
    })
}

fn render_one(
    rt: &ResourceType,
    object: Value,
    accept: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    if wants_table(accept) {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        let rv = object["metadata"]["resourceVersion"].clone();
        let t = table::table(rt, &[object], json!({"resourceVersion": rv}), include, true);
        return Ok(json_response(StatusCode::OK, &t, &[]));
    }
    if accept.contains("as=PartialObjectMetadata") {
        return Ok(json_response(
            StatusCode::OK,
            &partial_metadata(&object),
            &[],
        ));
    }
    object_response(StatusCode::OK, &object, &[], accept)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

fn list(
    shared: &Shared,
    rt: &ResourceType,
    rp: &ResourcePath,
    params: &Params,
    accept: &str,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(
        params.get("labelSelector").map(String::as_str),
        params.get("fieldSelector").map(String::as_str),
        &rt.selectable_fields,
    )?;
    // A list at `resourceVersion=0` is served from the API server's watch cache, which does
    // not paginate: `limit` is ignored and every object comes in one response
    // (kubernetes/kubernetes#70735). A client that wants pages must not ask for version 0.
    let from_watch_cache = params.get("resourceVersion").is_some_and(|v| v == "0")
        && params.get("continue").is_none_or(|c| c.is_empty());
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|_| !from_watch_cache);
    let cluster = shared.lock();
    let current = cluster.store.current_rv();
    let continue_from = match params.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            if decoded.rv < cluster.store.oldest_watchable() {
                return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to load the next page."));
            }
            Some(decoded)
        }
    };
    if params
        .get("resourceVersionMatch")
        .is_some_and(|m| m == "Exact")
    {
        let wanted = params
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if wanted != current {
            return Err(ApiError::expired(format!(
                "too old resource version: {wanted} ({current})"
            )));
        }
    }
    let list_rv = continue_from.as_ref().map(|c| c.rv).unwrap_or(current);
    let after = continue_from.map(|c| (c.ns, c.name));
    let (items, next, remaining) = cluster.list(rt, &rp.namespace, &filter, limit, after.as_ref());
    drop(cluster);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some((ns, name)) = next {
        let token = ContinueToken {
            rv: list_rv,
            ns,
            name,
        };
        meta["continue"] = json!(base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&token).unwrap_or_default()));
        meta["remainingItemCount"] = json!(remaining);
    }
    if wants_table(accept) {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        return Ok(json_response(
            StatusCode::OK,
            &table::table(rt, &items, meta, include, true),
            &[],
        ));
    }
    if accept.contains("as=PartialObjectMetadataList") {
        let items: Vec<Value> = items.iter().map(partial_metadata).collect();
        let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items});
        return Ok(json_response(StatusCode::OK, &list, &[]));
    }
    let list = json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": meta,
        "items": items,
    });
    object_response(StatusCode::OK, &list, &[], accept)
}

fn delete_collection(
    shared: &Shared,
    rt: &ResourceType,
    rp: &ResourcePath,
    params: &Params,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(
        params.get("labelSelector").map(String::as_str),
        params.get("fieldSelector").map(String::as_str),
        &rt.selectable_fields,
    )?;
    let opts = delete_options(params, body, headers)?;
    let mut cluster = shared.lock();
    let (items, _, _) = cluster.list(rt, &rp.namespace, &filter, None, None);
    let mut deleted = Vec::new();
    for item in items {
        let ns = item["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cluster.delete(rt, &ns, &name, &opts).is_ok() {
            deleted.push(item);
        }
    }
    let rv = cluster.store.current_rv().to_string();
    let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted});
    object_response(StatusCode::OK, &list, &[], accept_of(headers))
}

pub fn streaming_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
