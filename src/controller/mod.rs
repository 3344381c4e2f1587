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
pub mod caches;
pub mod consent;
pub mod events;
pub mod gate;
pub mod grants;
pub mod index;
pub mod own_writes;
pub mod owned;
pub mod rules;
pub mod service;
pub mod tenant;
pub mod unique;
pub mod wakes;
pub mod watches;

pub use caches::{Caches, ResolvedTenantIds};
pub use events::Events;
pub use gate::Gate;
pub use wakes::Wakes;
pub use watches::{slim, slim_grant, LastSeen};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Microsoft Graph answered, but not what its contract promises (a check without the
    /// result asked for).
    #[error("unexpected answer from Microsoft Graph: {0}")]
    UnexpectedGraphAnswer(String),
}

impl Error {
    /// Short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Graph(_) => "graph",
            Error::Config(_) => "config",
            Error::UnexpectedGraphAnswer(_) => "graph",
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

/// What a [`Backoff`] counts the failures of, for one object: its reconcile as a whole, or
/// one step that fails and is retried on a schedule of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retried {
    Reconcile,
    /// A Tenant's Entra tenant id (OpenID discovery of its domain).
    TenantId,
    /// A Tenant's storage locations.
    Storage,
    /// A deleted Tenant's storage cleanup.
    Cleanup,
    /// The consent reconcile of a Tenant's grants.
    Consents,
    /// A RecordingService's app registration check.
    Auth,
}

/// Per-object retry state: exponential backoff with jitter for failing reconciles, reset on
/// the first success, so one bad object never slows down the others.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<(String, Retried), u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(300);

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn failed(&self, key: &str, what: Retried) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().expect("backoff lock");
            let n = failures.entry((key.to_string(), what)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = Self::BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        jittered(exp.min(Self::MAX), 0.2)
    }

    /// Forgets the failures of an object after a successful reconcile.
    pub fn succeeded(&self, key: &str, what: Retried) {
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&(key.to_string(), what));
    }
}

/// The sooner of two optional waits (`None`: no wait asked for).
pub fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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

// ---------------------------------------------------------------------------------------------
// Shared context and the controllers' run loop
// ---------------------------------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Future, StreamExt};
use kube::runtime::{controller, Controller};

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
    pub backoff: Backoff,
    pub caches: Caches,
    /// The tenants' storage, when the configuration has a `storage` section.
    pub storage: Option<crate::storage::tenant::TenantStorage>,
    /// Asks the consent reconcile of a Tenant's grants to run now (a Tenant waking its
    /// granted consents' re-checks).
    pub wake_consents: Wakes,
    /// Signs the Tenants' Quick Start links, when the configuration has a `publicUrl`.
    pub links: Option<crate::links::QuickStartLinks>,
    /// E-mail to the customers' contacts, when the configuration sets a transport up.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// What the controllers are built from.
pub struct Parts {
    pub client: kube::Client,
    pub config: Arc<OperatorConfig>,
    pub checker: ConsentChecker,
    pub metrics: Metrics,
    /// The tenants' storage, when the configuration has a `storage` section.
    pub storage: Option<crate::storage::tenant::TenantStorage>,
    /// The Quick Start links, when the configuration has a `publicUrl`.
    pub links: Option<crate::links::QuickStartLinks>,
}

impl Context {
    /// See [`Caches::synced`].
    pub async fn caches_synced(&self) {
        self.caches.synced().await;
    }

    /// The Tenant named `name`, as last seen.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.caches.tenant(name)
    }

    /// Has the consent reconcile of `tenant`'s grants run soon.
    pub fn wake_consents(&self, tenant: ObjectRef<Tenant>) {
        self.wake_consents.wake(&tenant.name);
    }

    /// The ConsentGrants in `namespace` that belong to the Tenant named `tenant`, as last
    /// seen.
    pub fn grants_of(&self, namespace: &str, tenant: &str) -> Vec<Arc<ConsentGrant>> {
        self.caches.grants_of(namespace, tenant)
    }

    /// The ConsentGrants in `namespace`, as last seen.
    pub fn grants_in(&self, namespace: &str) -> Vec<Arc<ConsentGrant>> {
        self.caches.grants_in(namespace)
    }
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
        links,
    } = parts;
    // One watch per kind, shared by every controller that needs it.
    let watches::Watches {
        caches,
        tenants_for_tenants,
        tenants_for_consents,
        tenants_for_services,
        tenant_wake_ups,
        consent_wake_ups,
        wake_consents,
        strays,
        tenant_facts,
        services_for_services,
        service_wake_ups,
        running: watches,
    } = watches::start(&client);
    let tenants = caches.tenants.clone();
    let notifier = match crate::notify::Notifier::from_config(
        &config,
        Arc::new(crate::config::Secrets::with_kube(client.clone())),
        metrics.clone(),
        checker.counters(),
    ) {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: the configuration is not usable");
            None
        }
    };
    let ctx = Arc::new(Context {
        notifier,
        wake_consents,
        events: Events::new(client.clone(), "recording-operator"),
        client,
        config,
        checker,
        metrics,
        caches,
        backoff: Default::default(),
        storage,
        links,
    });

    let controller_config = controller::Config::default()
        .concurrency(options.concurrency)
        .debounce(options.debounce);
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    // Not woken by the Tenant events its own writes cause (see `own_writes`).
    let tenant_triggers = tenants_for_tenants.filter({
        let own_writes = ctx.caches.own_writes.clone();
        move |t: &Arc<Tenant>| {
            let (own_writes, t) = (own_writes.clone(), t.clone());
            async move { !own_writes.is_own(&t).await }
        }
    });
    let tenant_controller = Controller::for_shared_stream(tenant_triggers, tenants.clone())
        .reconcile_on(tenant_wake_ups)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(tenant::reconcile, tenant::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));

    let service_controller = service::controller(
        ctx.clone(),
        service::Triggers {
            tenants: tenants_for_services,
            services: services_for_services,
            siblings: service_wake_ups,
        },
        controller_config.clone(),
        shutdown.clone(),
    );

    // The consent controller runs per Tenant (see `consent::reconcile`). A Tenant's own
    // change wakes it only when it changes what the grants read of it.
    let consent_triggers = tenants_for_consents.filter({
        let facts = tenant_facts.clone();
        move |t: &Arc<Tenant>| {
            std::future::ready(facts.changed(&t.name_any(), consent::tenant_facts(t)))
        }
    });
    let consent_controller = Controller::for_shared_stream(consent_triggers, tenants.clone())
        .reconcile_on(consent_wake_ups)
        .with_config(controller_config)
        .graceful_shutdown_on(shutdown.clone())
        .run(consent::reconcile, consent::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));
    let strays = consent::reconcile_strays(ctx.clone(), strays);

    let readiness = {
        let (ctx, ready) = (ctx.clone(), ready.clone());
        async move {
            ctx.caches_synced().await;
            ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced; controllers running");
        }
    };
    let gauges = gauge_loop(ctx.clone());
    let retention = retention_sweeps(&ctx);
    let platform_secrets = platform_secret_expiry(&ctx);

    tokio::select! {
        _ = async { futures::join!(tenant_controller, consent_controller, service_controller, readiness) } => {}
        _ = watches => {}
        _ = gauges => {}
        _ = strays => {}
        _ = retention => {}
        _ = platform_secrets => {}
    }
    ready.store(false, Ordering::SeqCst);
}

/// The retention sweeps (leader only, like everything here), when storage is configured.
async fn retention_sweeps(ctx: &Arc<Context>) {
    let Some(storage) = ctx.storage.clone() else {
        return std::future::pending().await;
    };
    let tenants = ctx.caches.tenants.clone();
    crate::retention::sweeper::Sweeper {
        client: ctx.client.clone(),
        storage,
        tenants: Arc::new(move || tenants.state()),
        events: Arc::new(ctx.events.clone()),
        metrics: ctx.metrics.clone(),
    }
    .run()
    .await
}

/// Reads the platform applications' client secrets in the home tenant for the expiry gauge
/// (leader only), when the configuration names the home tenant.
async fn platform_secret_expiry(ctx: &Arc<Context>) {
    use crate::graph::platform_apps::{read_expiries, READ_EVERY, RETRY_AFTER};
    let Some(home) = ctx.config.home_tenant_id.clone() else {
        return std::future::pending().await;
    };
    let Ok(endpoint) = ctx.config.cloud.graph_endpoint() else {
        return std::future::pending().await;
    };
    let graph = crate::graph::client::GraphClient::new(
        crate::graph::http_client(ctx.config.polling.request_timeout),
        &endpoint,
        ctx.checker.counters(),
    );
    loop {
        let read = read_expiries(
            ctx.checker.tokens(),
            &graph,
            &ctx.config,
            &home,
            k8s_openapi::jiff::Timestamp::now(),
        )
        .await;
        let wait = match read {
            Ok(apps) => {
                let mut wait = READ_EVERY;
                for (app, end) in apps {
                    match end {
                        Ok(end) => ctx.metrics.platform_client_secret(
                            &app.key,
                            end.map(|e| (app.app_id.as_str(), e)),
                        ),
                        // The last figure stands until a read gets through.
                        Err(e) => {
                            tracing::warn!(app = %app.key, app_id = %app.app_id, error = %e, "could not read the platform application's client secrets");
                            wait = RETRY_AFTER;
                        }
                    }
                }
                wait
            }
            Err(e) => {
                tracing::warn!(home_tenant = %home, error = %e, "could not sign in to the platform's home tenant to read its applications' client secrets");
                e.retry_after().unwrap_or(RETRY_AFTER)
            }
        };
        tokio::time::sleep(jittered(wait, 0.1)).await;
    }
}

#[async_trait::async_trait]
impl crate::retention::sweeper::Announce for Events {
    async fn announce(&self, tenant: &Tenant, warning: bool, reason: &str, note: String) {
        self.publish(tenant, warning, reason, "Retention", note)
            .await;
    }
}

/// Keeps the "tenants by health" and "consents by state" gauges current.
async fn gauge_loop(ctx: Arc<Context>) {
    ctx.caches_synced().await;
    loop {
        let mut by_health = std::collections::BTreeMap::new();
        let mut live = std::collections::HashSet::new();
        for t in ctx.caches.tenants.state() {
            live.insert(t.name_any());
            let health = match t.status.as_ref().and_then(|s| s.health) {
                Some(crate::crd::Health::Ok) => "OK",
                Some(crate::crd::Health::Warning) => "Warning",
                None => "Unknown",
            };
            *by_health.entry(health.to_string()).or_insert(0i64) += 1;
        }
        let mut by_state = std::collections::BTreeMap::new();
        for (state, n) in ctx.caches.grants.count_by_state() {
            let state = state.map(|s| s.as_str()).unwrap_or("Unknown");
            *by_state.entry(state.to_string()).or_insert(0i64) += n as i64;
        }
        let figures = consent_figures(&ctx.caches.grants, &ctx.config);
        ctx.metrics.set_tenants_by_health(&by_health);
        ctx.metrics.set_consents_by_state(&by_state);
        ctx.metrics.retain_tenants(&live);
        ctx.metrics.set_consent_figures(&figures);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Tenants waiting per consent and the revoked grants, from the grants' names and states:
/// a Tenant's grant of consent `key` is `consent_grant_name(key)` in the Tenant's namespace.
fn consent_figures(
    grants: &grants::GrantCache,
    config: &OperatorConfig,
) -> crate::metrics::ConsentFigures {
    let keys: HashMap<String, &str> = config
        .consents
        .keys()
        .map(|key| (tenant::consent_grant_name(key), key.as_str()))
        .collect();
    let mut figures = crate::metrics::ConsentFigures::default();
    grants.for_each_state(|namespace, name, state| {
        if let (Some(tenant), Some(key)) = (namespace.strip_prefix("tenant-"), keys.get(name)) {
            figures.add(tenant, key, state);
        }
    });
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, name: &str) -> ConsentGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "ConsentGrant",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"tenantRef": "t", "consent": name, "appId": "00000000-0000-0000-0000-000000000001"}
        }))
        .expect("grant")
    }

    #[tokio::test]
    async fn a_tenant_waiting_to_be_reconciled_is_not_queued_again() {
        let (wakes, mut requests) = Wakes::new();
        wakes.wake("fabrikam");
        wakes.wake("contoso");
        wakes.wake("fabrikam");
        let next = |r: Option<ObjectRef<Tenant>>| r.map(|r| r.name);
        assert_eq!(next(requests.next().await).as_deref(), Some("fabrikam"));
        assert_eq!(next(requests.next().await).as_deref(), Some("contoso"));
        // Taken by the controller: a new request is queued again.
        wakes.wake("fabrikam");
        assert_eq!(next(requests.next().await).as_deref(), Some("fabrikam"));
        drop(wakes);
        assert_eq!(next(requests.next().await), None);
    }

    #[test]
    fn a_resolved_tenant_id_belongs_to_that_tenant_object_until_forgotten() {
        let ids = ResolvedTenantIds::default();
        let mut tenant = tenant::tests::tenant("Pro");
        ids.remember(&tenant, "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b");
        assert_eq!(
            ids.get(&tenant).as_deref(),
            Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b")
        );
        // A Tenant of the same name created again is another object: its id is its own.
        let mut again = tenant.clone();
        again.metadata.uid = Some("9d1e0c55-7a31-4f62-b0a8-5e4c3d2b1a09".into());
        assert_eq!(ids.get(&again), None);
        ids.forget(&tenant);
        assert_eq!(ids.get(&tenant), None);
        // Without a uid nothing is kept.
        tenant.metadata.uid = None;
        ids.remember(&tenant, "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b");
        assert_eq!(ids.get(&tenant), None);
    }

    #[test]
    fn last_seen_passes_on_first_sightings_and_changes_only() {
        let seen = LastSeen::default();
        assert!(seen.changed("contoso", 1));
        assert!(!seen.changed("contoso", 1));
        assert!(seen.changed("fabrikam", 1), "names are apart");
        assert!(seen.changed("contoso", 2));
        seen.forget("contoso");
        assert!(
            seen.changed("contoso", 2),
            "forgotten: a first sighting again"
        );
    }

    #[test]
    fn slim_keeps_only_what_the_reconcilers_read() {
        let mut g = grant("tenant-a", "login");
        g.metadata.managed_fields = Some(vec![Default::default()]);
        g.metadata.labels = Some(owned_labels("a"));
        g.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                ("recording.m365.io/recheck-at", "now"),
                ("example.com/note", "kept by nobody"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        g.metadata.owner_references = Some(vec![Default::default()]);
        g.metadata.uid = Some("6f1c".into());
        g.metadata.resource_version = Some("42".into());
        g.metadata.generation = Some(3);
        let before = g.clone();
        slim(&mut g);
        assert_eq!(g.metadata.managed_fields, None);
        assert_eq!(g.metadata.labels, None);
        assert_eq!(
            g.metadata
                .annotations
                .clone()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["recording.m365.io/recheck-at"]
        );
        // What reconciles, Events and owner lookups use stays as it was.
        assert_eq!(
            g.metadata.owner_references,
            before.metadata.owner_references
        );
        assert_eq!(g.object_ref(&()), before.object_ref(&()));
        assert_eq!(g.meta().generation, Some(3));
        assert_eq!(g.spec, before.spec);
        assert_eq!(g.status, before.status);
    }

    #[test]
    fn a_cached_grant_keeps_no_owner_references_display_name_nor_version() {
        let mut g = grant("tenant-a", "login");
        g.metadata.owner_references = Some(vec![Default::default()]);
        g.metadata.resource_version = Some("42".into());
        g.metadata.uid = Some("6f1c".into());
        g.spec.display_name = Some("recording-auth".into());
        let before = g.clone();
        slim_grant(&mut g);
        assert_eq!(g.metadata.owner_references, None);
        assert_eq!(g.metadata.resource_version, None);
        assert_eq!(g.spec.display_name, None);
        // What the reconcilers read stays.
        assert_eq!(g.spec.tenant_ref, before.spec.tenant_ref);
        assert_eq!(g.spec.consent, before.spec.consent);
        assert_eq!(g.spec.app_id, before.spec.app_id);
        // Events name the grant by its uid (`kubectl describe` matches on it).
        assert_eq!(g.metadata.uid.as_deref(), Some("6f1c"));
    }

    #[test]
    fn slim_leaves_no_empty_annotation_map() {
        let mut g = grant("tenant-a", "login");
        g.metadata.annotations = Some(
            [("kubectl.kubernetes.io/last-applied-configuration", "{...}")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        slim(&mut g);
        assert_eq!(g.metadata.annotations, None);
    }
}
