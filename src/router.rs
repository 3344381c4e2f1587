//! The platform's calling webhook router: `recording-operator router`.
//!
//! With the platform's own applications one app serves every tenant, so Teams posts every
//! tenant's calls to the one calling webhook of that app. The router stands behind that
//! webhook's Ingress (`webhook.platformHost`) and forwards each request to the right tenant's
//! bots, inside the cluster:
//!
//! - `POST /api/calling/<role>` (a new call): the customer tenant is the `tenantId` of the
//!   call in the notification (`value[].resourceData.tenantId`, else the caller's
//!   `source.identity.user.tenantId`); every notification of one request must name the same
//!   tenant. It goes to `<service>-cb-p` / `-cb-pp` (the ready pods of that bot).
//! - `POST /api/calling/<role>/<n>/<tenant id>` (an instance's notifications): the tenant is
//!   in the path; it goes to instance `n` by its own DNS name,
//!   `<statefulset>-<n>.<service>-bots.<namespace>.svc`, which a draining instance keeps.
//!
//! A tenant is served by its RecordingService that uses the platform applications (no
//! `spec.appRegistration`; the oldest, should there be several). A request naming no tenant
//! is refused (400); one for a tenant the platform does not serve, or a paired bot of an
//! Essentials tenant, is not routed (404); the body is bounded ([`MAX_BODY_BYTES`]) and both
//! the request and the forward have timeouts. The router does not check the caller: the bot
//! validates the token Teams signs each request with (the `Authorization` header is passed on
//! unchanged, with the content type and Microsoft's request-id headers).
//!
//! Why a separate process (a Deployment of the operator's image running `router`) rather than
//! a route of the operator: calls must reach the bots while the operator restarts or changes
//! leader, the router scales out behind its Service, and it needs only to read Tenants and
//! RecordingServices, none of the operator's write permissions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::controller::service::{BotRole, SIGNALING_PORT};
use crate::crd::{License, RecordingService, Tenant};
use crate::webhook::{self as names, CallingRoute};

/// Default listen address of the router.
pub const DEFAULT_ROUTER_ADDR: &str = "0.0.0.0:8443";
/// Largest notification accepted (Graph's call notifications are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest a request may take, forward included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the bot may take to answer a forwarded request.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(8);
/// Request headers passed on to the bot.
const FORWARDED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "client-request-id",
    "scenario-id",
    "x-microsoft-skype-chain-id",
];

/// Where a tenant's bots are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    pub license: License,
}

/// The service that takes the platform calls of the customer tenant `tenant_id`: a
/// RecordingService of the Tenant with that id, in its namespace, using the platform
/// applications, not being deleted; the oldest (then first by name) of several.
pub fn target_of(
    tenant_id: &str,
    tenants: &[Arc<Tenant>],
    services: &[Arc<RecordingService>],
) -> Option<Target> {
    let tenant = tenants.iter().find(|t| {
        t.metadata.deletion_timestamp.is_none() && t.entra_tenant_id().as_deref() == Some(tenant_id)
    })?;
    let (name, namespace) = (tenant.name_any(), tenant.namespace_name());
    services
        .iter()
        .filter(|s| {
            s.spec.tenant_ref == name
                && s.namespace().as_deref() == Some(namespace.as_str())
                && s.spec.app_registration.is_none()
                && s.metadata.deletion_timestamp.is_none()
        })
        .min_by_key(|s| (s.metadata.creation_timestamp.clone(), s.name_any()))
        .map(|s| Target {
            namespace: namespace.clone(),
            service: s.name_any(),
            license: tenant.spec.license,
        })
}

/// Why a request cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unroutable {
    #[error("not a calling webhook route")]
    Route,
    #[error("the notification is not JSON with a `value` list")]
    Payload,
    #[error("the notification names no customer tenant")]
    NoTenant,
    #[error("the notifications name more than one customer tenant")]
    MixedTenants,
    #[error("no service of this platform takes this tenant's calls")]
    UnknownTenant,
    #[error("this tenant has no such bot")]
    NoSuchBot,
}

impl Unroutable {
    fn status(&self) -> StatusCode {
        match self {
            Unroutable::UnknownTenant | Unroutable::NoSuchBot | Unroutable::Route => {
                StatusCode::NOT_FOUND
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The customer tenant (lowercase) the notifications of one request are about.
pub fn tenant_of(body: &[u8]) -> Result<String, Unroutable> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Unroutable::Payload)?;
    let items = payload["value"].as_array().ok_or(Unroutable::Payload)?;
    let mut found: Option<String> = None;
    for item in items {
        let data = &item["resourceData"];
        let id = data["tenantId"]
            .as_str()
            .or_else(|| data["source"]["identity"]["user"]["tenantId"].as_str())
            .filter(|id| crate::config::is_guid(id))
            .map(str::to_ascii_lowercase)
            .ok_or(Unroutable::NoTenant)?;
        match &found {
            Some(f) if *f != id => return Err(Unroutable::MixedTenants),
            _ => found = Some(id),
        }
    }
    found.ok_or(Unroutable::NoTenant)
}

/// The in-cluster URL a request for `route` of `target` goes to; `path_and_query` is passed on.
pub fn backend_url(
    target: &Target,
    route: &CallingRoute,
    port: u16,
    cluster_domain: &str,
    path_and_query: &str,
) -> Result<String, Unroutable> {
    let role = match route {
        CallingRoute::Bot { role } | CallingRoute::Instance { role, .. } => role,
    };
    let bot = match role.as_str() {
        "primary" => BotRole::Primary,
        "paired" if target.license == License::Pro => BotRole::Paired,
        _ => return Err(Unroutable::NoSuchBot),
    };
    let ns = &target.namespace;
    let host = match route {
        CallingRoute::Bot { .. } => format!(
            "{}.{ns}.svc.{cluster_domain}",
            names::calling_service(&target.service, bot.component())
        ),
        CallingRoute::Instance { ordinal, .. } => format!(
            "{}.{}.{ns}.svc.{cluster_domain}",
            names::pod_name(&bot.object_name(&target.service), *ordinal),
            names::headless_service(&target.service)
        ),
    };
    Ok(format!("http://{host}:{port}{path_and_query}"))
}

// ---------------------------------------------------------------------------------------------
// The HTTP service
// ---------------------------------------------------------------------------------------------

/// Settings of the router.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// The bots' signalling port (default [`SIGNALING_PORT`]).
    pub bot_port: u16,
    /// The cluster's DNS domain (default `cluster.local`).
    pub cluster_domain: String,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            bot_port: SIGNALING_PORT as u16,
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// What the router reads: the Tenants and RecordingServices as last seen, and the client it
/// forwards with.
#[derive(Clone)]
pub struct RouterState {
    pub tenants: Store<Tenant>,
    pub services: Store<RecordingService>,
    pub http: reqwest::Client,
    pub settings: RouterSettings,
}

/// The HTTP client the router forwards with: no redirects, no proxy, bounded waits.
pub fn forward_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(3))
        .timeout(FORWARD_TIMEOUT)
}

/// The router's routes with their limits.
pub fn router(state: RouterState) -> Router {
    Router::new()
        .route("/api/calling/{*rest}", post(forward))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

fn refuse(why: Unroutable) -> Response {
    (why.status(), format!("{why}\n")).into_response()
}

async fn forward(
    State(state): State<RouterState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(route) = names::parse_calling_path(uri.path()) else {
        return refuse(Unroutable::Route);
    };
    let tenant = match &route {
        CallingRoute::Instance {
            tenant: Some(t), ..
        } => Ok(t.clone()),
        _ => tenant_of(&body),
    };
    let tenant = match tenant {
        Ok(t) => t,
        Err(why) => return refuse(why),
    };
    let Some(target) = target_of(&tenant, &state.tenants.state(), &state.services.state()) else {
        tracing::info!(
            tenant,
            path = uri.path(),
            "calling notification for a tenant this platform does not serve"
        );
        return refuse(Unroutable::UnknownTenant);
    };
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = match backend_url(
        &target,
        &route,
        state.settings.bot_port,
        &state.settings.cluster_domain,
        path_and_query,
    ) {
        Ok(url) => url,
        Err(why) => return refuse(why),
    };
    let mut request = state.http.post(&url).body(body);
    for name in FORWARDED_HEADERS {
        for value in headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
        Err(e) => {
            tracing::warn!(tenant, namespace = target.namespace, service = target.service, error = %e, "the tenant's bot did not answer");
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, "the bot did not answer\n").into_response()
        }
    }
}

/// Watches the Tenants and RecordingServices into stores; the returned future runs the
/// watches until dropped, and the stores are usable once it has listed both.
pub fn watch(
    client: kube::Client,
) -> (
    Store<Tenant>,
    Store<RecordingService>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let (services, service_writer) = reflector::store::<RecordingService>();
    let tenant_watch = reflector::reflector(
        tenant_writer,
        watcher(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| std::future::ready(()));
    let service_watch = reflector::reflector(
        service_writer,
        watcher(
            Api::<RecordingService>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| std::future::ready(()));
    let run = async move {
        futures::join!(tenant_watch, service_watch);
    };
    (tenants, services, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONTOSO: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

    #[test]
    fn the_tenant_is_the_calls_tenant_id() {
        let body = json!({"value": [{
            "changeType": "created",
            "resource": "/app/calls/abc",
            "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming",
                             "tenantId": CONTOSO.to_uppercase()}
        }]});
        assert_eq!(tenant_of(body.to_string().as_bytes()), Ok(CONTOSO.into()));
        let caller = json!({"value": [{"resourceData": {"source": {"identity": {"user": {"id": "u", "tenantId": CONTOSO}}}}}]});
        assert_eq!(tenant_of(caller.to_string().as_bytes()), Ok(CONTOSO.into()));
        let mixed = json!({"value": [
            {"resourceData": {"tenantId": CONTOSO}},
            {"resourceData": {"tenantId": "11111111-2222-4333-8444-555555555555"}}
        ]});
        assert_eq!(
            tenant_of(mixed.to_string().as_bytes()),
            Err(Unroutable::MixedTenants)
        );
        assert_eq!(tenant_of(b"{\"value\": []}"), Err(Unroutable::NoTenant));
        assert_eq!(
            tenant_of(b"{\"value\": [{\"resourceData\": {\"tenantId\": \"x\"}}]}"),
            Err(Unroutable::NoTenant)
        );
        assert_eq!(tenant_of(b"not json"), Err(Unroutable::Payload));
    }

    #[test]
    fn new_calls_go_to_the_bot_and_notifications_to_the_instance_by_its_dns_name() {
        let target = Target {
            namespace: "tenant-contoso".into(),
            service: "main".into(),
            license: License::Essentials,
        };
        let bot = CallingRoute::Bot {
            role: "primary".into(),
        };
        assert_eq!(
            backend_url(&target, &bot, 9441, "cluster.local", "/api/calling/primary").unwrap(),
            "http://main-cb-p.tenant-contoso.svc.cluster.local:9441/api/calling/primary"
        );
        let instance = CallingRoute::Instance {
            role: "primary".into(),
            ordinal: 2,
            tenant: None,
        };
        assert_eq!(
            backend_url(&target, &instance, 9441, "cluster.local", "/api/calling/primary/2").unwrap(),
            "http://main-hue-2.main-bots.tenant-contoso.svc.cluster.local:9441/api/calling/primary/2"
        );
        let paired = CallingRoute::Bot {
            role: "paired".into(),
        };
        assert_eq!(
            backend_url(&target, &paired, 9441, "cluster.local", "/x"),
            Err(Unroutable::NoSuchBot),
            "an Essentials tenant has no paired bot"
        );
    }
}
