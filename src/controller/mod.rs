//! The controllers and what they share.
//!
//! - [`tenant`]: a Tenant → its namespace, quota, network policy, ConsentGrants and storage,
//!   and the Tenant's health (`Warning`/`OK`) and conditions;
//! - [`consent`]: a ConsentGrant → its admin-consent URL and state, by polling Microsoft Graph;
//! - [`service`]: a RecordingService → its recording bots (a paired one for Pro) and the
//!   check of its own app registration.
//!
//! Each controller's logic is a pure function from observed objects to desired objects and
//! status, wrapped in a thin async shell that applies the result with server-side apply (one
//! field manager, [`FIELD_MANAGER`](crate::crd::FIELD_MANAGER)) and writes status only when it
//! changed.

pub mod apply;
pub mod consent;
pub mod service;
pub mod tenant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rand::RngExt;

/// Everything that can fail inside a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Graph(_) => "graph",
            Error::Config(_) => "config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Labels every object the operator owns carries.
pub fn owned_labels(tenant: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/managed-by", "recording-operator"),
        ("app.kubernetes.io/part-of", "recording-platform"),
        (crate::crd::TENANT_LABEL, tenant),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Per-object retry state: exponential backoff with jitter for failing reconciles, reset on
/// the first success, so one bad object never slows down the others.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(300);

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().expect("backoff lock");
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = Self::BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        jittered(exp.min(Self::MAX), 0.2)
    }

    /// Forgets the failures of an object after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// `d` moved randomly by up to `fraction` either way, so retries of many objects spread out.
pub fn jittered(d: Duration, fraction: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - fraction)..=(1.0 + fraction));
    d.mul_f64(f.max(0.0))
}

/// A key naming one object, for backoff bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    ObjectRef::from_obj(obj).to_string()
}

/// Publishes Kubernetes Events for one controller, one per transition (callers decide when a
/// transition happened). Event failures are logged, never fail a reconcile.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "could not publish event");
        }
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate_note(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 997;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

// ---------------------------------------------------------------------------------------------
// Shared context and the controllers' run loop
// ---------------------------------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Future, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{controller, watcher, Controller, WatchStreamExt};

use crate::config::OperatorConfig;
use crate::crd::{ConsentGrant, Tenant};
use crate::graph::ConsentChecker;
use crate::metrics::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub config: Arc<OperatorConfig>,
    pub checker: ConsentChecker,
    pub metrics: Metrics,
    pub events: Events,
    /// Every Tenant, as last seen.
    pub tenants: Store<Tenant>,
    /// Every ConsentGrant, as last seen.
    pub grants: Store<ConsentGrant>,
    pub applied: apply::AppliedCache,
    pub backoff: Backoff,
    /// The tenants' storage, when the configuration has a `storage` section.
    pub storage: Option<crate::storage::tenant::TenantStorage>,
}

/// What the controllers are built from.
pub struct Parts {
    pub client: kube::Client,
    pub config: Arc<OperatorConfig>,
    pub checker: ConsentChecker,
    pub metrics: Metrics,
    /// The tenants' storage, when the configuration has a `storage` section.
    pub storage: Option<crate::storage::tenant::TenantStorage>,
}

/// Settings of the controllers' run loop.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Reconciles running at once per controller.
    pub concurrency: u16,
    /// Quiet time before a changed object is reconciled, so bursts of changes coalesce.
    pub debounce: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            debounce: Duration::from_millis(200),
        }
    }
}

/// Runs the Tenant and ConsentGrant controllers until `shutdown` completes. `ready` turns true
/// once both caches hold the cluster's objects.
pub async fn run(
    parts: Parts,
    options: RunOptions,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Parts {
        client,
        config,
        checker,
        metrics,
        storage,
    } = parts;
    // One watch per kind, shared by every controller that needs it.
    let (tenants, tenant_writer) = reflector::store_shared::<Tenant>(1024);
    let tenant_for_tenants = tenant_writer.subscribe().expect("shared store subscribes");
    let tenant_for_grants = tenant_writer.subscribe().expect("shared store subscribes");
    let tenant_for_services = tenant_writer.subscribe().expect("shared store subscribes");
    let tenant_watch = watcher(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect_shared(tenant_writer)
    .for_each(|_| std::future::ready(()));

    let (grants, grant_writer) = reflector::store_shared::<ConsentGrant>(1024);
    let grant_for_grants = grant_writer.subscribe().expect("shared store subscribes");
    let grant_for_tenants = grant_writer.subscribe().expect("shared store subscribes");
    let grant_watch = watcher(
        Api::<ConsentGrant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect_shared(grant_writer)
    .for_each(|_| std::future::ready(()));

    let ctx = Arc::new(Context {
        events: Events::new(client.clone(), "recording-operator"),
        client,
        config,
        checker,
        metrics,
        tenants: tenants.clone(),
        grants: grants.clone(),
        applied: Default::default(),
        backoff: Default::default(),
        storage,
    });

    let controller_config = controller::Config::default()
        .concurrency(options.concurrency)
        .debounce(options.debounce);
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let tenant_controller = Controller::for_shared_stream(tenant_for_tenants, tenants.clone())
        .owns_shared_stream(grant_for_tenants)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(tenant::reconcile, tenant::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));

    let service_controller = service::controller(
        ctx.clone(),
        tenant_for_services,
        controller_config.clone(),
        shutdown.clone(),
    );

    let grants_of_tenant = {
        let grants = grants.clone();
        move |t: Arc<Tenant>| {
            let ns = t.namespace_name();
            grants
                .state()
                .into_iter()
                .filter(|g| g.namespace().as_deref() == Some(ns.as_str()))
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let consent_controller = Controller::for_shared_stream(grant_for_grants, grants.clone())
        .watches_shared_stream(tenant_for_grants, grants_of_tenant)
        .with_config(controller_config)
        .graceful_shutdown_on(shutdown.clone())
        .run(consent::reconcile, consent::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));

    let readiness = {
        let (tenants, grants, ready) = (tenants.clone(), grants.clone(), ready.clone());
        async move {
            let _ = tenants.wait_until_ready().await;
            let _ = grants.wait_until_ready().await;
            ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced; controllers running");
        }
    };
    let gauges = gauge_loop(ctx.clone());

    tokio::select! {
        _ = async { futures::join!(tenant_controller, consent_controller, service_controller, readiness) } => {}
        _ = tenant_watch => {}
        _ = grant_watch => {}
        _ = gauges => {}
    }
    ready.store(false, Ordering::SeqCst);
}

/// Keeps the "tenants by health" and "consents by state" gauges current.
async fn gauge_loop(ctx: Arc<Context>) {
    loop {
        let mut by_health = std::collections::BTreeMap::new();
        for t in ctx.tenants.state() {
            let health = match t.status.as_ref().and_then(|s| s.health) {
                Some(crate::crd::Health::Ok) => "OK",
                Some(crate::crd::Health::Warning) => "Warning",
                None => "Unknown",
            };
            *by_health.entry(health.to_string()).or_insert(0i64) += 1;
        }
        let mut by_state = std::collections::BTreeMap::new();
        for g in ctx.grants.state() {
            let state = g
                .status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| s.as_str())
                .unwrap_or("Unknown");
            *by_state.entry(state.to_string()).or_insert(0i64) += 1;
        }
        ctx.metrics.set_tenants_by_health(&by_health);
        ctx.metrics.set_consents_by_state(&by_state);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
