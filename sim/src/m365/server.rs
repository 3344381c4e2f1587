//! The HTTP shell: routes, headers, latency, throttling and counting around the pure
//! functions of `identity`, `consent`, `graph` and `batch`. No lock is held across an
//! `.await`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::batch::{self, ItemReply};
use super::consent::{self, ConsentOutcome, ConsentVersion};
use super::directory::new_guid;
use super::faults::{EndpointCounts, Target};
use super::graph::{self, Caller, GraphContext, GraphError};
use super::identity::{self, AadError, IdentityContext, TokenRequest};
use super::signin::{self, CodeRedemption, IdTokenFault, Page};
use super::{jwt, lock, Shared};

type AppState = Arc<Shared>;

const ODATA_JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const AAD_JSON: &str = "application/json; charset=utf-8";

pub(crate) fn router(shared: AppState) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
        .route("/{tenant}/v2.0/adminconsent", get(admin_consent_v2))
        .route("/{tenant}/adminconsent", get(admin_consent_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/login", post(login))
        .route("/v1.0/$batch", post(graph_batch).fallback(graph_read_only))
        .route("/v1.0/users/{user}/sendMail", post(graph_send_mail))
        .route("/v1.0/{*rest}", get(graph_get).fallback(graph_read_only))
        .layer(middleware::from_fn_with_state(shared.clone(), latency))
        .with_state(shared)
}

async fn latency(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let delay = lock(&shared.faults).latency;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

/// Waits out the extra latency of `tenant`, if any (no lock is held while waiting).
async fn tenant_delay(shared: &Shared, tenant: Option<&str>) {
    let delay = lock(&shared.faults).latency_of(tenant);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn count(shared: &Shared, tenant: Option<&str>, pick: fn(&mut EndpointCounts) -> &mut u64) {
    lock(&shared.counts).bump(tenant, pick);
}

fn identity_context(shared: &Shared) -> IdentityContext {
    IdentityContext {
        graph_resources: identity::graph_resources(&shared.url),
        token_lifetime_secs: shared.settings.token_lifetime_secs,
        propagation_delay: *lock(&shared.propagation_delay),
        missing_sp_code: shared.settings.missing_service_principal_aadsts,
    }
}

fn json_response(status: u16, content_type: &str, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("static content type"),
    );
    response
}

fn aad_error(shared: &Shared, err: &AadError, headers: &HeaderMap) -> Response {
    let correlation = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok());
    let body = err.body(&shared.url, shared.now(), correlation);
    let mut response = json_response(err.status, AAD_JSON, &body);
    no_store(&mut response);
    stamp_identity(&mut response, headers);
    response
}

/// Identity-platform response headers: a request id of ours, the client's id echoed.
fn stamp_identity(response: &mut Response, request: &HeaderMap) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&new_guid()) {
        h.insert("x-ms-request-id", v);
    }
    if let Some(v) = request.get("client-request-id") {
        h.insert("client-request-id", v.clone());
    }
}

fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

// ---- OpenID discovery and keys -------------------------------------------------------

async fn discovery(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (resolved, cloud) = lock(&shared.dir)
        .resolve_tenant(&tenant)
        .map(|t| (Some(t.id.clone()), t.national_cloud))
        .unwrap_or_default();
    count(&shared, resolved.as_deref(), |c| &mut c.discovery);
    tenant_delay(&shared, resolved.as_deref()).await;
    if let (Some(id), Some(cloud)) = (&resolved, cloud) {
        let doc = identity::national_cloud_configuration(id, cloud);
        return json_response(200, AAD_JSON, &doc);
    }
    let tenant_in_doc = match resolved {
        Some(id) => id,
        None if identity::is_multi_tenant_alias(&tenant) => "{tenantid}".to_string(),
        None => {
            return aad_error(
                &shared,
                &AadError::tenant_not_found(&tenant, "invalid_tenant"),
                &headers,
            )
        }
    };
    let doc = identity::openid_configuration(&shared.url, &tenant_in_doc, &shared.url);
    json_response(200, AAD_JSON, &doc)
}

async fn keys(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    let resolved = lock(&shared.dir)
        .resolve_tenant(&tenant)
        .map(|t| t.id.clone());
    count(&shared, resolved.as_deref(), |c| &mut c.keys);
    let issuer = format!(
        "{}/{}/v2.0",
        shared.url,
        resolved.as_deref().unwrap_or("{tenantid}")
    );
    json_response(200, AAD_JSON, &jwt::jwks(&issuer))
}

// ---- admin consent -------------------------------------------------------------------

async fn admin_consent_v2(
    state: State<AppState>,
    tenant: Path<String>,
    params: Query<HashMap<String, String>>,
) -> Response {
    admin_consent(state, tenant, params, ConsentVersion::V2)
}

async fn admin_consent_v1(
    state: State<AppState>,
    tenant: Path<String>,
    params: Query<HashMap<String, String>>,
) -> Response {
    admin_consent(state, tenant, params, ConsentVersion::V1)
}

fn admin_consent(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    version: ConsentVersion,
) -> Response {
    let now = shared.now();
    let auto = shared.auto_consent.load(Ordering::SeqCst);
    let resources = identity::graph_resources(&shared.url);
    let (resolved, outcome) = {
        let mut dir = lock(&shared.dir);
        let resolved = dir.resolve_tenant(&tenant).map(|t| t.id.clone());
        let outcome =
            consent::admin_consent(&mut dir, version, &tenant, &params, auto, &resources, now);
        (resolved, outcome)
    };
    count(&shared, resolved.as_deref(), |c| &mut c.admin_consent);
    match outcome {
        ConsentOutcome::Redirect(location) => {
            tracing::info!(tenant = %tenant, client_id = params.get("client_id").map(String::as_str).unwrap_or(""), "admin consent answered with a redirect");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        ConsentOutcome::Awaiting(html) => html_response(StatusCode::OK, html),
        ConsentOutcome::ErrorPage { status, html } => html_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            html,
        ),
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

// ---- token endpoint ------------------------------------------------------------------

async fn token(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resolved = lock(&shared.dir)
        .resolve_tenant(&tenant)
        .map(|t| t.id.clone());
    count(&shared, resolved.as_deref(), |c| &mut c.token);
    tenant_delay(&shared, resolved.as_deref()).await;
    let refuse = |err: AadError| {
        count(&shared, resolved.as_deref(), |c| &mut c.token_errors);
        tracing::info!(tenant = %tenant, code = err.code, "token request refused");
        aad_error(&shared, &err, &headers)
    };
    let throttled = lock(&shared.faults).take(Target::Token, resolved.as_deref());
    if let Some((status, retry_after)) = throttled {
        count(&shared, resolved.as_deref(), |c| &mut c.throttled);
        let mut response = refuse(AadError::temporarily_unavailable(status));
        set_retry_after(&mut response, retry_after);
        return response;
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request = TokenRequest::parse(&body, authorization);
    if request.grant_type.as_deref() == Some("authorization_code") {
        let mut redemption = CodeRedemption {
            client_id: request.client_id.clone(),
            client_secret: request.client_secret.clone(),
            ..Default::default()
        };
        for (k, v) in form_urlencoded::parse(&body) {
            let v = Some(v.into_owned()).filter(|v| !v.is_empty());
            match k.as_ref() {
                "code" => redemption.code = v,
                "redirect_uri" => redemption.redirect_uri = v,
                "code_verifier" => redemption.code_verifier = v,
                _ => {}
            }
        }
        return match redeem_code(&shared, &redemption) {
            Ok(body) => {
                let mut response = json_response(200, AAD_JSON, &body);
                no_store(&mut response);
                stamp_identity(&mut response, &headers);
                response
            }
            Err(err) => refuse(err),
        };
    }
    let ctx = identity_context(&shared);
    let now = shared.now();
    let issued = {
        let dir = lock(&shared.dir);
        identity::issue_token(&dir, &tenant, &request, &ctx, now)
    };
    match issued {
        Ok(claims) => {
            tracing::info!(tenant = %claims.tid, app_id = %claims.appid, roles = ?claims.roles, "token issued");
            let access_token = if shared.opaque_tokens.load(Ordering::SeqCst) {
                let opaque = jwt::opaque_token();
                lock(&shared.opaque).insert(opaque.clone(), claims.clone());
                opaque
            } else {
                jwt::sign(&claims)
            };
            let mut response = json_response(
                200,
                AAD_JSON,
                &identity::token_response(&access_token, ctx.token_lifetime_secs),
            );
            no_store(&mut response);
            stamp_identity(&mut response, &headers);
            response
        }
        Err(err) => refuse(err),
    }
}

/// An authorization code for an ID token (signed, or with the fault the harness set).
fn redeem_code(shared: &Shared, req: &CodeRedemption) -> Result<Value, AadError> {
    let now = shared.now();
    let (claims, scope, fault) = {
        let dir = lock(&shared.dir);
        let mut signins = lock(&shared.signins);
        let (claims, scope) = signin::redeem(&dir, &mut signins, &shared.url, req, now)?;
        (claims, scope, signins.fault.clone())
    };
    let mut id_token = jwt::sign(&claims);
    if let Some(IdTokenFault::Forged(upn)) = fault {
        id_token = signin::forge(&id_token, &claims, &upn);
    }
    tracing::info!(tenant = %claims.tid, client_id = %claims.aud, "ID token issued");
    Ok(signin::token_response(
        &id_token,
        &jwt::opaque_token(),
        &scope,
    ))
}

// ---- user sign-in --------------------------------------------------------------------

fn page_response(page: Page) -> Response {
    match page {
        Page::Html(status, html) => html_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            html,
        ),
        Page::Redirect(location) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
    }
}

async fn authorize(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let now = shared.now();
    let page = {
        let dir = lock(&shared.dir);
        let mut signins = lock(&shared.signins);
        signin::authorize(&dir, &mut signins, &tenant, &params, now)
    };
    page_response(page)
}

async fn login(State(shared): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let now = shared.now();
    let page = {
        let dir = lock(&shared.dir);
        let mut signins = lock(&shared.signins);
        signin::login(&dir, &mut signins, &form, now)
    };
    page_response(page)
}

fn set_retry_after(response: &mut Response, retry_after: Option<u64>) {
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

// ---- Microsoft Graph -----------------------------------------------------------------

/// Request ids of one Graph request: ours, and the client's (echoed, or ours).
struct RequestIds {
    request_id: String,
    client_request_id: String,
}

impl RequestIds {
    fn from(headers: &HeaderMap) -> Self {
        let request_id = new_guid();
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| request_id.clone());
        RequestIds {
            request_id,
            client_request_id,
        }
    }

    fn stamp(&self, response: &mut Response) {
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.client_request_id) {
            h.insert("client-request-id", v);
        }
    }
}

fn graph_context(shared: &Shared) -> GraphContext {
    GraphContext {
        base: shared.url.clone(),
        page_size: shared.settings.graph_page_size,
        grants_require_directory_read: shared.settings.grants_require_directory_read,
    }
}

fn graph_error(
    shared: &Shared,
    ids: &RequestIds,
    err: &GraphError,
    retry_after: Option<u64>,
) -> Response {
    let body = err.body(&ids.request_id, &ids.client_request_id, shared.now());
    let mut response = json_response(err.status, ODATA_JSON, &body);
    if err.status == 401 {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\""),
        );
    }
    set_retry_after(&mut response, retry_after);
    ids.stamp(&mut response);
    response
}

/// The error a throttle answers with.
fn throttle_error(status: u16) -> GraphError {
    match status {
        401 => GraphError::new(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        ),
        429 => GraphError::new(429, "TooManyRequests", "Too many requests."),
        503 => GraphError::new(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry later.",
        ),
        _ => GraphError::new(
            status,
            "UnknownError",
            "The gateway timed out waiting for the service.",
        ),
    }
}

/// Checks the bearer token: valid, for Graph, of a known tenant.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        })
        .unwrap_or_default();
    let audiences = identity::graph_resources(&shared.url);
    let now = shared.now().timestamp();
    let opaque = lock(&shared.opaque).get(&token).cloned();
    let claims = match opaque {
        Some(claims) if claims.exp > now => claims,
        Some(_) => {
            return Err(GraphError::new(
                401,
                "InvalidAuthenticationToken",
                jwt::TokenRejection::Expired.to_string(),
            ))
        }
        None => jwt::verify(&token, &audiences, now)
            .map_err(|e| GraphError::new(401, "InvalidAuthenticationToken", e.to_string()))?,
    };
    if !lock(&shared.dir).tenants.contains_key(&claims.tid) {
        return Err(GraphError::new(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        ));
    }
    Ok(Caller {
        tenant_id: claims.tid,
        roles: claims.roles.unwrap_or_default(),
    })
}

async fn graph_get(State(shared): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let ids = RequestIds::from(&headers);
    let caller = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(e) => {
            count(&shared, None, |c| &mut c.graph_get);
            return graph_error(&shared, &ids, &e, None);
        }
    };
    let tenant = Some(caller.tenant_id.as_str());
    count(&shared, tenant, |c| &mut c.graph_get);
    tenant_delay(&shared, tenant).await;
    let throttled = lock(&shared.faults).take(Target::GraphWork, tenant);
    if let Some((status, retry_after)) = throttled {
        if status != 401 {
            count(&shared, tenant, |c| &mut c.throttled);
        }
        return graph_error(&shared, &ids, &throttle_error(status), retry_after);
    }
    let relative = relative_url(&uri);
    let ctx = graph_context(&shared);
    let answer = {
        let dir = lock(&shared.dir);
        graph::get(&dir, &ctx, &caller, &relative)
    };
    match answer {
        Ok(body) => {
            let mut response = json_response(200, ODATA_JSON, &body);
            ids.stamp(&mut response);
            response
        }
        Err(e) => graph_error(&shared, &ids, &e, None),
    }
}

async fn graph_send_mail(
    State(shared): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ids = RequestIds::from(&headers);
    let caller = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(e) => return graph_error(&shared, &ids, &e, None),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let outcome = {
        let dir = lock(&shared.dir);
        match dir.tenants.get(&caller.tenant_id) {
            Some(tenant) => super::mail::send_mail(tenant, &caller, &user, content_type, &body),
            None => Err(GraphError::new(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            )),
        }
    };
    match outcome {
        Ok(mail) => {
            lock(&shared.mail).push(mail);
            let mut response = StatusCode::ACCEPTED.into_response();
            ids.stamp(&mut response);
            response
        }
        Err(e) => graph_error(&shared, &ids, &e, None),
    }
}

/// Graph methods the simulator does not serve (it is read-only apart from `$batch`).
async fn graph_read_only(
    State(shared): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let ids = RequestIds::from(&headers);
    let err = GraphError::new(
        405,
        "Request_BadRequest",
        format!("The simulator does not serve {method} requests on Graph."),
    );
    graph_error(&shared, &ids, &err, None)
}

/// Path and query after `/v1.0/`, still percent-encoded.
fn relative_url(uri: &Uri) -> String {
    let path = uri.path().strip_prefix("/v1.0/").unwrap_or(uri.path());
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

async fn graph_batch(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ids = RequestIds::from(&headers);
    let caller = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(e) => {
            count(&shared, None, |c| &mut c.graph_batch);
            return graph_error(&shared, &ids, &e, None);
        }
    };
    let tenant = caller.tenant_id.clone();
    count(&shared, Some(&tenant), |c| &mut c.graph_batch);
    tenant_delay(&shared, Some(&tenant)).await;
    let throttled = lock(&shared.faults).take(Target::GraphBatch, Some(&tenant));
    if let Some((status, retry_after)) = throttled {
        count(&shared, Some(&tenant), |c| &mut c.throttled);
        return graph_error(&shared, &ids, &throttle_error(status), retry_after);
    }
    let items = match batch::parse(&body) {
        Ok(items) => items,
        Err(e) => return graph_error(&shared, &ids, &e, None),
    };
    let ctx = graph_context(&shared);
    let now = shared.now();
    let answer = batch::execute(&items, |item| {
        count(&shared, Some(&tenant), |c| &mut c.batch_items);
        let item_ids = RequestIds {
            request_id: new_guid(),
            client_request_id: ids.client_request_id.clone(),
        };
        let error_reply = |err: GraphError, retry_after: Option<u64>| {
            let mut headers = batch::json_headers();
            if let Some(secs) = retry_after {
                headers.insert("Retry-After".into(), Value::String(secs.to_string()));
            }
            ItemReply {
                status: err.status,
                headers,
                body: err.body(&item_ids.request_id, &item_ids.client_request_id, now),
            }
        };
        let throttled = lock(&shared.faults).take(Target::GraphBatchItem, Some(&tenant));
        if let Some((status, retry_after)) = throttled {
            if status != 401 {
                count(&shared, Some(&tenant), |c| &mut c.throttled);
            }
            return error_reply(throttle_error(status), retry_after);
        }
        if !item.method.eq_ignore_ascii_case("GET") {
            return error_reply(
                GraphError::new(
                    405,
                    "Request_BadRequest",
                    format!(
                        "The simulator serves GET requests only, not {}.",
                        item.method
                    ),
                ),
                None,
            );
        }
        if item.url.starts_with("http://") || item.url.starts_with("https://") {
            return error_reply(
                GraphError::new(
                    400,
                    "BadRequest",
                    "Batch request URLs must be relative to the version root.",
                ),
                None,
            );
        }
        let dir = lock(&shared.dir);
        match graph::get(&dir, &ctx, &caller, item.url.trim_start_matches('/')) {
            Ok(body) => ItemReply {
                status: 200,
                headers: batch::json_headers(),
                body,
            },
            Err(e) => error_reply(e, None),
        }
    });
    let mut response = json_response(200, "application/json", &answer);
    ids.stamp(&mut response);
    response
}
