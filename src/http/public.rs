//! The operator's public listener, apart from `/metrics` and the probes: what the customer's
//! browser reaches through the Ingress.
//!
//! - `/consent/callback`: where Microsoft sends the admin after an admin-consent page. It asks
//!   for an immediate re-check of the ConsentGrant named by `state` (`<namespace>/<grant>`)
//!   and, when `state` carries a valid Quick Start token (`<namespace>/<grant>/<token>`, as the
//!   page's buttons send), lands the admin back on the page.
//! - `/quickstart/{token}`: the tenant's Quick Start page ([`super::page`]);
//!   `/quickstart/{token}/state` the same view as JSON, which the page polls. With sign-in on
//!   ([`crate::signin`], whose routes are merged here) both open only for an administrator
//!   signed in for the link's Tenant: the page sends anybody else (303) through
//!   `/signin/start`, back to the page afterwards; the JSON answers 401.
//! - `/quickstart-assets/page.js`, `page.css`: the page's script and style sheet.
//!
//! A link that is malformed, tampered with, expired, signed by a key no longer configured or
//! for a Tenant that no longer exists gets [`refusal`]: one status and one body whatever the
//! reason, with no tenant name in it. Every answer has `nosniff`, a strict
//! Content-Security-Policy (nothing but this origin's script and style), `no-referrer` (the
//! token never leaves in a Referer) and `no-store`.
//!
//! [`serve`] runs the router over HTTP/1.1 with a header-read timeout and a bounded request
//! head; the router has a per-request timeout, a body limit and a URI length limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::page;
use super::HttpError;
use crate::config::OperatorConfig;
use crate::controller::consent::recheck_stamp;
use crate::crd::{tenant_namespace, ConsentGrant, Tenant, RECHECK_ANNOTATION};
use crate::links::{QuickStartLinks, Token};
use crate::signin::SignIn;

/// Default listen address of the public listener.
pub const DEFAULT_PUBLIC_ADDR: &str = "0.0.0.0:8081";
/// Longest request URI answered (a consent redirect with its `state` fits easily).
pub const MAX_URI_BYTES: usize = 2048;
/// Largest request body accepted (every route is a GET).
pub const MAX_BODY_BYTES: usize = 1024;
/// Longest a request may take once its head is read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head buffered (hyper's smallest allowed buffer is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The page's Content-Security-Policy: this origin's script, style and JSON, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The one answer to a link that does not open a page.
pub const REFUSAL_BODY: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Link not valid</title><link rel=\"stylesheet\" href=\"/quickstart-assets/page.css\"></head><body><main><p class=\"platform\">Teams compliance recording</p><h1>This link is not valid</h1><p>The link may have expired. Ask your platform contact for a new Quick Start link.</p></main></body></html>\n";

/// What the public routes read.
#[derive(Clone)]
pub struct PublicState {
    pub client: kube::Client,
    pub config: Arc<OperatorConfig>,
    /// Quick Start links, when configured; without them the pages refuse every link.
    pub links: Option<QuickStartLinks>,
    /// Sign-in with Microsoft, when on: the pages then open only for the Tenant's signed-in
    /// administrators, and `/signin/start`, `/signin/callback` are served here.
    pub signin: Option<SignIn>,
}

/// The public routes with their limits and headers.
pub fn router(state: PublicState) -> Router {
    let header = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let signin = state
        .signin
        .as_ref()
        .map(SignIn::router)
        .unwrap_or_default();
    let reports = super::report::router(super::report::ReportState::new(state.client.clone()));
    Router::new()
        .route("/consent/callback", get(callback))
        .route("/quickstart/{token}", get(page_html))
        .route("/quickstart/{token}/state", get(page_state))
        .route(page::SCRIPT_PATH, get(script))
        .route(page::STYLE_PATH, get(style))
        .with_state(state)
        .merge(signin)
        .merge(reports)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(limit_uri))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

async fn limit_uri(request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return (StatusCode::URI_TOO_LONG, "URI too long\n").into_response();
    }
    next.run(request).await
}

/// The one answer to a link that does not open a page.
pub fn refusal() -> Response {
    (StatusCode::NOT_FOUND, Html(REFUSAL_BODY)).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "10")],
        Html(
            "<!doctype html>\n<p>The page is not available right now; try again in a minute.</p>\n",
        ),
    )
        .into_response()
}

/// The Tenant a token opens, or the response to give instead.
async fn opened(state: &PublicState, token: &str) -> Result<Tenant, Response> {
    let Some(links) = &state.links else {
        return Err(refusal());
    };
    let Some(parsed) = Token::parse(token) else {
        return Err(refusal());
    };
    let keys = links.keys().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot verify Quick Start links");
        unavailable()
    })?;
    let api: Api<Tenant> = Api::all(state.client.clone());
    let tenant = api.get_opt(parsed.tenant()).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the Tenant of a Quick Start link");
        unavailable()
    })?;
    // A missing Tenant costs the same signature check as a present one: the answer's timing
    // does not tell which customers exist.
    let uid = tenant
        .as_ref()
        .and_then(|t| t.metadata.uid.clone())
        .unwrap_or_default();
    let valid = parsed.verify(&keys, &uid, Timestamp::now());
    match tenant {
        Some(tenant) if valid && !uid.is_empty() => Ok(tenant),
        _ => Err(refusal()),
    }
}

/// Whether the page may be shown to this visitor: always when sign-in is off, else only to an
/// administrator signed in for this Tenant.
fn signed_in(state: &PublicState, headers: &HeaderMap, tenant: &Tenant) -> bool {
    state.signin.as_ref().is_none_or(|signin| {
        signin
            .session(headers, &kube::ResourceExt::name_any(tenant))
            .is_some()
    })
}

/// The Quick Start page; a visitor not signed in goes through sign-in and comes back here.
async fn page_html(
    State(state): State<PublicState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    match opened(&state, &token).await {
        Ok(tenant) if !signed_in(&state, &headers, &tenant) => Redirect::to(&SignIn::start_url(
            &kube::ResourceExt::name_any(&tenant),
            &format!("/quickstart/{token}"),
        ))
        .into_response(),
        Ok(tenant) => {
            let view =
                with_services(&state, &tenant, page::view(&tenant, &state.config, &token)).await;
            Html(page::render(&view, &format!("/quickstart/{token}/state"))).into_response()
        }
        Err(response) => response,
    }
}

/// The page's view as JSON; 401 without a sign-in (the script cannot follow a sign-in).
async fn page_state(
    State(state): State<PublicState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    match opened(&state, &token).await {
        Ok(tenant) if !signed_in(&state, &headers, &tenant) => {
            (StatusCode::UNAUTHORIZED, "sign-in required\n").into_response()
        }
        Ok(tenant) => {
            Json(with_services(&state, &tenant, page::view(&tenant, &state.config, &token)).await)
                .into_response()
        }
        Err(response) => response,
    }
}

/// The view with the recording policy steps of the tenant's services; without them should the
/// services not be readable right now (the page still shows the consents).
async fn with_services(
    state: &PublicState,
    tenant: &Tenant,
    view: page::PageView,
) -> page::PageView {
    let api: Api<crate::crd::RecordingService> =
        Api::namespaced(state.client.clone(), &tenant.namespace_name());
    match api.list(&Default::default()).await {
        Ok(list) => page::with_recording_policy(view, tenant, &list.items, &state.config),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the recording services of a Quick Start page's tenant");
            view
        }
    }
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        page::SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        page::STYLE,
    )
}

// ---------------------------------------------------------------------------------------------
// The consent redirect
// ---------------------------------------------------------------------------------------------

/// Query of the admin-consent redirect.
#[derive(Debug, Deserialize)]
pub struct Callback {
    admin_consent: Option<String>,
    tenant: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `<namespace>/<grant>` and the Quick Start token after them, if any.
pub fn split_state(state: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = state.splitn(3, '/');
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    Some((namespace, name, parts.next().filter(|s| !s.is_empty())))
}

async fn callback(State(state): State<PublicState>, Query(q): Query<Callback>) -> Response {
    let Some((namespace, name, token)) = q.state.as_deref().and_then(split_state) else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The consent link is missing its state parameter.</p>"),
        )
            .into_response();
    };
    let answer = recheck(&state.client, namespace, name, &q).await;
    // Back to the Quick Start page the admin came from, when the token opens it and is for
    // the tenant of this grant.
    if let Some(token) = token {
        if let Ok(tenant) = opened(&state, token).await {
            if tenant_namespace(&kube::ResourceExt::name_any(&tenant)) == namespace {
                if let Some(links) = &state.links {
                    return Redirect::to(&links.page_url(token)).into_response();
                }
            }
        }
    }
    answer.into_response()
}

/// Stamps the re-check on the grant the redirect names; the page to show without a Quick
/// Start page to return to.
async fn recheck(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    q: &Callback,
) -> (StatusCode, Html<String>) {
    if let Some(error) = &q.error {
        tracing::info!(namespace, name, error, description = ?q.error_description, "admin consent was not granted");
        return (
            StatusCode::OK,
            Html(format!("<p>Consent was not granted ({}). You can close this page and open the consent link again.</p>", page::escape(error))),
        );
    }
    if !q
        .admin_consent
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The redirect does not say that consent was granted.</p>".to_string()),
        );
    }
    let api: Api<ConsentGrant> = Api::namespaced(client.clone(), namespace);
    let patch =
        json!({"metadata": {"annotations": {RECHECK_ANNOTATION: recheck_stamp(Timestamp::now())}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, name, tenant = ?q.tenant, "admin consent redirect: re-checking now");
            (StatusCode::OK, Html("<p>Thank you. Consent was recorded; the platform is verifying it now. You can close this page.</p>".to_string()))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => (
            StatusCode::NOT_FOUND,
            Html("<p>This consent link is no longer valid.</p>".to_string()),
        ),
        Err(e) => {
            tracing::warn!(namespace, name, error = %e, "could not request a consent re-check");
            (StatusCode::SERVICE_UNAVAILABLE, Html("<p>The platform could not record the consent right now; it will notice it on its next check.</p>".to_string()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown` completes: each connection
/// must send its request head within [`HEADER_READ_TIMEOUT`] and in at most
/// [`MAX_HEAD_BYTES`]; requests in flight finish (for up to [`REQUEST_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /consent/callback and the Quick Start pages");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "public listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "public connection ended");
            }
        });
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_names_the_grant_and_may_carry_the_page_token() {
        assert_eq!(
            split_state("tenant-contoso/recording"),
            Some(("tenant-contoso", "recording", None))
        );
        assert_eq!(
            split_state("tenant-contoso/recording/abc.1.def"),
            Some(("tenant-contoso", "recording", Some("abc.1.def")))
        );
        assert_eq!(split_state("tenant-contoso"), None);
        assert_eq!(split_state("/recording"), None);
    }
}
