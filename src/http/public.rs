//! The operator's public listener, apart from `/metrics` and the probes: what the customer's
//! browser reaches through the Ingress.
//!
//! - `/consent/callback`: where Microsoft sends the admin after an admin-consent page. Its
//!   `state` is signed ([`crate::consent_link`]) and verified before anything touches the API:
//!   a state that is missing, forged, tampered with or expired gets [`refusal`] and no API
//!   request. A valid one asks for an immediate re-check of the ConsentGrant it names (at most
//!   once per grant per [`Limits::recheck_interval`]) and, when it carries the Quick Start
//!   page it was sent from, lands the admin back on that page (through the sign-in when it is
//!   on and the admin has no session yet).
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
//! [`serve`] runs the router over HTTP/1.1 with a header-read timeout, a bounded request head
//! and at most [`Limits::max_connections`] connections; the router has a per-request timeout,
//! a body limit, a URI length limit, a per-source rate limit (429 beyond it) and a limit on
//! requests in progress at once (503 beyond it, without queueing). What the callback logs is
//! rate-limited too: a flood leaves a few lines and a count of those left out.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
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
use crate::consent_link::{self, GrantState};
use crate::crd::{ConsentGrant, Tenant, RECHECK_ANNOTATION};
use crate::links::{QuickStartLinks, SigningKeys, Token};
use crate::signin::SignIn;

type KeyedLimiter<K> = governor::RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
>;
type DirectLimiter = governor::DefaultDirectRateLimiter;

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

/// The public listener's limits (command-line options, see [`super::HttpArgs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second one source address may make, on average.
    pub per_source_per_second: NonZeroU32,
    /// Requests one source may make at once before the average applies.
    pub per_source_burst: NonZeroU32,
    /// Requests in progress at once, all sources together; more get 503 at once.
    pub max_in_flight: usize,
    /// Connections open at once; more wait in the listen queue.
    pub max_connections: usize,
    /// A grant is re-checked through the callback at most once per this interval (per
    /// replica): the API server sees at most one PATCH per grant per interval.
    pub recheck_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source_per_second: NonZeroU32::new(20).expect("non-zero"),
            per_source_burst: NonZeroU32::new(40).expect("non-zero"),
            max_in_flight: 64,
            max_connections: 1024,
            recheck_interval: Duration::from_secs(10),
        }
    }
}

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

/// What the callback keeps between requests: its re-check limit per grant and its log limit.
struct CallbackState {
    public: PublicState,
    rechecks: KeyedLimiter<(String, String)>,
    log: LogLimit,
}

/// The public routes with the default [`Limits`] and their headers.
pub fn router(state: PublicState) -> Router {
    router_with(state, &Limits::default())
}

/// The public routes with `limits` and their headers.
pub fn router_with(state: PublicState, limits: &Limits) -> Router {
    let header = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let signin = state
        .signin
        .clone()
        .map(|s| s.with_links(state.links.clone()).router())
        .unwrap_or_default();
    let reports = super::report::router(super::report::ReportState::new(state.client.clone()));
    let recheck_quota = governor::Quota::with_period(limits.recheck_interval)
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN));
    let callback_state = Arc::new(CallbackState {
        public: state.clone(),
        rechecks: governor::RateLimiter::keyed(recheck_quota),
        log: LogLimit::new(),
    });
    let routes = Router::new()
        .route(
            "/consent/callback",
            get(callback).with_state(callback_state),
        )
        .route("/quickstart/{token}", get(page_html))
        .route("/quickstart/{token}/state", get(page_state))
        .route(page::SCRIPT_PATH, get(script))
        .route(page::STYLE_PATH, get(style))
        .with_state(state)
        .merge(signin)
        .merge(reports);
    limited(routes, limits)
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

/// `routes` behind the per-source rate limit (429) and the limit on requests in progress
/// (503 at once beyond it, no queue).
fn limited(routes: Router, limits: &Limits) -> Router {
    let per_source = Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(limits.per_source_per_second)
            .allow_burst(limits.per_source_burst),
    ));
    spawn_forgetting(Arc::downgrade(&per_source));
    let in_flight = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            overloaded()
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight.max(1),
        ));
    routes
        .layer(in_flight)
        .layer(middleware::from_fn_with_state(per_source, limit_per_source))
}

/// Forgets, once a minute, the sources that have not been limited lately (the limiter's map
/// would otherwise grow with every address ever seen); ends with the router.
fn spawn_forgetting(limiter: std::sync::Weak<KeyedLimiter<IpAddr>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.retain_recent();
        }
    });
}

/// 429 for a source over its rate; the source is the peer address [`serve`] records.
async fn limit_per_source(
    State(limiter): State<Arc<KeyedLimiter<IpAddr>>>,
    request: Request,
    next: Next,
) -> Response {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if limiter.check_key(&source).is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many requests\n",
        )
            .into_response();
    }
    next.run(request).await
}

fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "busy; try again in a moment\n",
    )
        .into_response()
}

/// A log line budget: a few lines a minute, then a count of the lines left out.
struct LogLimit {
    limiter: DirectLimiter,
    dropped: AtomicU64,
}

impl LogLimit {
    fn new() -> Self {
        LogLimit {
            limiter: governor::RateLimiter::direct(
                governor::Quota::per_minute(NonZeroU32::new(10).expect("non-zero"))
                    .allow_burst(NonZeroU32::new(5).expect("non-zero")),
            ),
            dropped: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may be logged now.
    fn admit(&self) -> Option<u64> {
        if self.limiter.check().is_ok() {
            Some(self.dropped.swap(0, Ordering::Relaxed))
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
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

/// The Tenant a token opens and the keys that verified it, or the response to give instead.
async fn opened(state: &PublicState, token: &str) -> Result<(Tenant, Arc<SigningKeys>), Response> {
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
        Some(tenant) if valid && !uid.is_empty() => Ok((tenant, keys)),
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
    let to_signin = |tenant: &Tenant| {
        Redirect::to(&SignIn::start_url(
            &kube::ResourceExt::name_any(tenant),
            &format!("/quickstart/{token}"),
        ))
        .into_response()
    };
    match signed_in_view(&state, &token, &headers, to_signin).await {
        Ok(view) => {
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
    let unauthorized =
        |_: &Tenant| (StatusCode::UNAUTHORIZED, "sign-in required\n").into_response();
    match signed_in_view(&state, &token, &headers, unauthorized).await {
        Ok(view) => Json(view).into_response(),
        Err(response) => response,
    }
}

/// The view of the Tenant `token` opens, for a visitor [`signed_in`] for it; `not_signed_in`
/// answers anybody else.
async fn signed_in_view(
    state: &PublicState,
    token: &str,
    headers: &HeaderMap,
    not_signed_in: impl FnOnce(&Tenant) -> Response,
) -> Result<page::PageView, Response> {
    let (tenant, keys) = opened(state, token).await?;
    if !signed_in(state, headers, &tenant) {
        return Err(not_signed_in(&tenant));
    }
    let view = page::view(&tenant, &state.config, token, &keys, Timestamp::now());
    Ok(with_services(state, &tenant, view).await)
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

/// The grant a callback's `state` names, when the operator signed it and it has not expired.
async fn verified_state(state: &PublicState, q: &Callback) -> Result<GrantState, Response> {
    let (Some(links), Some(raw)) = (&state.links, q.state.as_deref()) else {
        return Err(refusal());
    };
    let keys = links.keys().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot verify admin-consent states");
        unavailable()
    })?;
    consent_link::open(&keys, raw, Timestamp::now()).ok_or_else(refusal)
}

async fn callback(
    State(cb): State<Arc<CallbackState>>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    // Nothing reaches the API server before the state verifies.
    let grant = match verified_state(&cb.public, &q).await {
        Ok(grant) => grant,
        Err(response) => {
            if let Some(dropped) = cb.log.admit() {
                tracing::info!(
                    dropped,
                    "consent redirect with a state that does not verify: refused"
                );
            }
            return response;
        }
    };
    let answer = recheck(&cb, &grant, &q).await;
    // Back to the Quick Start page the admin came from; through the sign-in when it is on and
    // this browser has no session (the consent just given needs no detour there).
    let (Some(page_token), Some(links)) = (&grant.page, &cb.public.links) else {
        return answer;
    };
    let Some(tenant) = Token::parse(page_token).map(|t| t.tenant().to_owned()) else {
        return answer;
    };
    match &cb.public.signin {
        Some(signin) if signin.session(&headers, &tenant).is_none() => Redirect::to(
            &SignIn::start_url_after_consent(&tenant, &format!("/quickstart/{page_token}")),
        )
        .into_response(),
        _ => Redirect::to(&links.page_url(page_token)).into_response(),
    }
}

/// How often the redirect can have a grant re-checked: the endpoint needs no credential
/// (Entra's redirect carries none), and its `state` is no secret, so repeated hits within
/// one window write the same annotation value — a write that changes nothing and wakes
/// nothing.
const CALLBACK_WINDOW_SECS: i64 = 10;

/// The recheck annotation the redirect writes at `now`: the start of its window.
fn recheck_stamp(now: Timestamp) -> String {
    let second = now.as_second();
    Timestamp::from_second(second - second.rem_euclid(CALLBACK_WINDOW_SECS))
        .unwrap_or(now)
        .to_string()
}

/// Stamps the re-check on the grant the state names (at most once per grant per
/// [`Limits::recheck_interval`]); the page to show without a Quick Start page to return to.
async fn recheck(cb: &CallbackState, grant: &GrantState, q: &Callback) -> Response {
    let (namespace, name) = (grant.namespace.as_str(), grant.name.as_str());
    if let Some(error) = &q.error {
        if let Some(dropped) = cb.log.admit() {
            tracing::info!(namespace, name, error, description = ?q.error_description, dropped, "admin consent was not granted");
        }
        return (
            StatusCode::OK,
            Html(format!("<p>Consent was not granted ({}). You can close this page and open the consent link again.</p>", page::escape(error))),
        )
            .into_response();
    }
    if !q
        .admin_consent
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return refusal();
    }
    let thanks = || {
        (StatusCode::OK, Html("<p>Thank you. Consent was recorded; the platform is verifying it now. You can close this page.</p>")).into_response()
    };
    if cb
        .rechecks
        .check_key(&(namespace.to_owned(), name.to_owned()))
        .is_err()
    {
        // Asked for moments ago: that re-check is under way.
        return thanks();
    }
    let api: Api<ConsentGrant> = Api::namespaced(cb.public.client.clone(), namespace);
    let patch =
        json!({"metadata": {"annotations": {RECHECK_ANNOTATION: recheck_stamp(Timestamp::now())}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            if let Some(dropped) = cb.log.admit() {
                tracing::info!(namespace, name, tenant = ?q.tenant, dropped, "admin consent redirect: re-checking now");
            }
            thanks()
        }
        Err(kube::Error::Api(s)) if s.code == 404 => refusal(),
        Err(e) => {
            tracing::warn!(namespace, name, error = %e, "could not request a consent re-check");
            (StatusCode::SERVICE_UNAVAILABLE, Html("<p>The platform could not record the consent right now; it will notice it on its next check.</p>")).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown` completes, with the default
/// [`Limits::max_connections`]; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_with(
        listener,
        router,
        Limits::default().max_connections,
        shutdown,
    )
    .await
}

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown` completes: at most
/// `max_connections` connections at once (more wait in the listen queue), each of which must
/// send its request head within [`HEADER_READ_TIMEOUT`] and in at most [`MAX_HEAD_BYTES`];
/// requests carry their peer address (`ConnectInfo<SocketAddr>`) for the per-source limit;
/// requests in flight finish (for up to [`REQUEST_TIMEOUT`]).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /consent/callback and the Quick Start pages");
    }
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = async {
                let permit = connections.clone().acquire_owned().await;
                (permit, listener.accept().await)
            } => accepted,
            _ = &mut shutdown => break,
        };
        let (permit, (stream, peer)) = match accepted {
            (Ok(permit), Ok(stream)) => (permit, stream),
            (_, Err(e)) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "public listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            (Err(_), _) => break,
        };
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .service(router.clone());
        let service = hyper_util::service::TowerToHyperService::new(service);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "public connection ended");
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    #[test]
    fn redirects_within_ten_seconds_ask_for_one_recheck() {
        let at = |s: i64| recheck_stamp(Timestamp::from_second(s).unwrap());
        assert_eq!(at(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(at(1_800_000_009), at(1_800_000_000));
        assert_ne!(at(1_800_000_010), at(1_800_000_009));
    }

    fn from(ip: [u8; 4]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        *request.uri_mut() = "/slow".parse().unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        request
    }

    #[tokio::test]
    async fn requests_beyond_the_limit_in_progress_get_503_at_once() {
        let limits = Limits {
            max_in_flight: 2,
            ..Limits::default()
        };
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let router = limited(slow, &limits);
        let started = std::time::Instant::now();
        let answers = futures::future::join_all(
            (0..3u8).map(|i| router.clone().oneshot(from([10, 0, 0, i]))),
        )
        .await;
        let mut statuses: Vec<u16> = answers
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 200, 503]);
        assert!(started.elapsed() < Duration::from_secs(2), "no queue");
    }

    #[tokio::test]
    async fn a_source_over_its_rate_gets_429_and_others_do_not() {
        let limits = Limits {
            per_source_per_second: NonZeroU32::new(1).unwrap(),
            per_source_burst: NonZeroU32::new(3).unwrap(),
            ..Limits::default()
        };
        let router = limited(
            Router::new().route("/slow", get(|| async { "ok" })),
            &limits,
        );
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                router
                    .clone()
                    .oneshot(from([10, 0, 0, 1]))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(statuses.iter().filter(|s| s.as_u16() == 200).count(), 3);
        let limited = router.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
        let other = router.oneshot(from([10, 0, 0, 2])).await.unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn the_log_budget_counts_what_it_leaves_out() {
        let log = LogLimit::new();
        let admitted: Vec<Option<u64>> = (0..8).map(|_| log.admit()).collect();
        assert_eq!(&admitted[..5], &[Some(0); 5]);
        assert_eq!(&admitted[5..], &[None; 3]);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
    }
}
