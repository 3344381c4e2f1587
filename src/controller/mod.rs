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
pub mod grants;
pub mod service;
pub mod tenant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
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

/// Publishes Kubernetes Events (`events.k8s.io/v1`) for one controller, one per transition
/// (callers decide when a transition happened). Event failures are logged, never fail a
/// reconcile.
///
/// Each Event is created as is. kube's `Recorder` would also remember every Event it sent for
/// six minutes (to count repeats into a series) and sweep that memory on every publish — with
/// thousands of tenants onboarding that memory dominated the operator's footprint and the
/// sweep its CPU, while transitions never repeat within minutes anyway.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<RecentEvents>>,
}

/// The same Event about the same object again within this window is a repeat, not a new
/// transition: a reconcile that read its object from the cache just before its own status
/// write arrived computes the same transition once more.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Fingerprints of the Events published within [`REPEAT_WINDOW`], oldest first; small, since
/// entries leave as soon as they are older than the window.
#[derive(Default)]
struct RecentEvents {
    seen: HashMap<u64, std::time::Instant>,
    order: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl RecentEvents {
    /// Whether `fingerprint` was published within the window; records it when not.
    fn repeat(&mut self, fingerprint: u64, now: std::time::Instant) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) < REPEAT_WINDOW {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&fingerprint) {
            return true;
        }
        self.seen.insert(fingerprint, now);
        self.order.push_back((now, fingerprint));
        false
    }
}

impl Events {
    pub fn new(client: kube::Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| controller.to_string()),
            recent: Default::default(),
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
        let fingerprint = crate::hash64(&(
            obj.meta().uid.as_deref(),
            obj.meta().namespace.as_deref(),
            obj.meta().name.as_deref(),
            warning,
            reason,
            &note,
        ));
        let now = std::time::Instant::now();
        if self
            .recent
            .lock()
            .expect("recent events lock")
            .repeat(fingerprint, now)
        {
            tracing::debug!(object = %obj.name_any(), reason, "same event within a minute; not repeated");
            return;
        }
        let event = self.event(obj.object_ref(&()), warning, reason, action, note);
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "could not publish event");
        }
    }

    /// The Event about `regarding`, named after it and the current time.
    fn event(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> KubeEvent {
        let now = k8s_openapi::jiff::Timestamp::now();
        KubeEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(truncate_note(note)),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
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
use grants::GrantCache;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub config: Arc<OperatorConfig>,
    pub checker: ConsentChecker,
    pub metrics: Metrics,
    pub events: Events,
    /// Every Tenant, as last seen.
    pub tenants: Store<Tenant>,
    /// Open once the Tenant store has its first list.
    pub tenants_synced: Gate,
    /// Every ConsentGrant, as last seen, by namespace.
    pub grants: GrantCache,
    /// Tenant ids resolved and not yet seen in a Tenant's status.
    pub resolved_tenant_ids: ResolvedTenantIds,
    pub applied: apply::AppliedCache,
    pub backoff: Backoff,
    /// The tenants' storage, when the configuration has a `storage` section.
    pub storage: Option<crate::storage::tenant::TenantStorage>,
    /// Asks the consent reconcile of a Tenant's grants to run now (a Tenant waking its
    /// granted consents' re-checks).
    pub wake_consents: Wakes,
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

impl Context {
    /// Returns once the Tenant and ConsentGrant caches hold the cluster's objects (each
    /// watch's first list is complete); at once after that.
    ///
    /// Every reconcile waits for it before reading them. kube-runtime holds a controller's
    /// reconciles until the store it runs on is ready, but not until the others it reads are:
    /// after a restart the Tenant list (one object per tenant) completes before the grant
    /// list (four or five per tenant), and a Tenant reconciled in between found no grants,
    /// wrote "checking consents", then Ready again with a new `lastTransitionTime` and a
    /// second Ready Event. A status computed from a cache that has not synced is a guess.
    pub async fn caches_synced(&self) {
        self.tenants_synced.wait().await;
        self.grants.wait_until_ready().await;
    }

    /// The Tenant named `name`, as last seen.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(&ObjectRef::new(name))
    }

    /// Has the consent reconcile of `tenant`'s grants run soon.
    pub fn wake_consents(&self, tenant: ObjectRef<Tenant>) {
        self.wake_consents.wake(&tenant.name);
    }

    /// The ConsentGrants in `namespace` that belong to the Tenant named `tenant`, as last
    /// seen.
    pub fn grants_of(&self, namespace: &str, tenant: &str) -> Vec<Arc<ConsentGrant>> {
        grants::naming(tenant, &self.grants_in(namespace))
    }

    /// The ConsentGrants in `namespace`, as last seen.
    pub fn grants_in(&self, namespace: &str) -> Vec<Arc<ConsentGrant>> {
        self.grants.in_namespace(namespace)
    }
}

/// A flag that opens once, when a cache's first list has completed, and that any number of
/// tasks can wait for.
///
/// kube-runtime's `Store::wait_until_ready` wakes only the last of several tasks waiting at
/// once (its readiness is a oneshot channel, which keeps one waker): reconciles, which wait
/// by the dozen, would never wake. The gate is opened where a watch stream passes its first
/// `InitDone`, after the store took it.
#[derive(Clone)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the gate is open; at once after that.
    pub async fn wait(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }

    /// Opens the gate when `event` ends a list.
    pub fn open_on<K, E>(&self, event: &Result<watcher::Event<K>, E>) {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            self.open();
        }
    }
}

/// Requests to reconcile Tenants, by name, that a controller takes through
/// [`Controller::reconcile_on`]: a name already waiting is not queued again.
///
/// A burst of grant events (4.5 per tenant) can find a controller with every reconcile slot
/// busy, when kube-runtime does not read its triggers; a plain unbounded channel would then
/// hold one request per event. Here at most one request per Tenant waits.
#[derive(Clone)]
pub struct Wakes {
    waiting: Arc<Mutex<std::collections::HashSet<String>>>,
    sender: futures::channel::mpsc::UnboundedSender<String>,
}

impl Wakes {
    /// The sending side, and the stream of requests for the controller.
    pub fn new() -> (
        Self,
        impl futures::Stream<Item = ObjectRef<Tenant>> + Send + 'static,
    ) {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<String>();
        let waiting: Arc<Mutex<std::collections::HashSet<String>>> = Default::default();
        let taken = waiting.clone();
        let requests = receiver.map(move |name| {
            taken.lock().expect("wakes lock").remove(&name);
            ObjectRef::new(&name)
        });
        (Self { waiting, sender }, requests)
    }

    /// Asks for a reconcile of the Tenant `name`, unless one is already waiting.
    pub fn wake(&self, name: &str) {
        let mut waiting = self.waiting.lock().expect("wakes lock");
        if !waiting.contains(name) {
            // Fails only when the controllers are shutting down.
            if self.sender.unbounded_send(name.to_string()).is_ok() {
                waiting.insert(name.to_string());
            }
        }
    }
}

/// The last value seen per object name, to pass on only the changes of one aspect of an
/// object (see [`consent::tenant_facts`]). Keys and values are 64-bit hashes: 16 bytes an
/// object.
#[derive(Clone, Default)]
pub struct LastSeen {
    inner: Arc<Mutex<HashMap<u64, u64>>>,
}

fn name_key(name: &str) -> u64 {
    crate::hash64(name)
}

impl LastSeen {
    /// Records `value` for `name`; true when it differs from the last one (or is the first).
    pub fn changed(&self, name: &str, value: u64) -> bool {
        let mut seen = self.inner.lock().expect("last seen lock");
        seen.insert(name_key(name), value) != Some(value)
    }

    /// Forgets `name`, so its next value counts as a change.
    pub fn forget(&self, name: &str) {
        self.inner
            .lock()
            .expect("last seen lock")
            .remove(&name_key(name));
    }
}

/// Entra tenant ids the Tenant controller resolved (OpenID discovery of `spec.domain`) whose
/// Tenant's status does not show them yet, by Tenant uid.
///
/// A new Tenant's ConsentGrants are created before its first status write lands in the
/// cache; a grant reconciled in between would otherwise report "waiting for the tenant id"
/// (a status write, and later a ConsentGranted Event that is no news) and try again five
/// seconds later. An entry lives only until the Tenant's status carries the id.
#[derive(Clone, Default)]
pub struct ResolvedTenantIds {
    ids: Arc<Mutex<HashMap<String, String>>>,
}

impl ResolvedTenantIds {
    fn uid(tenant: &Tenant) -> Option<&str> {
        tenant.meta().uid.as_deref()
    }

    /// The id resolved for this Tenant (the same object: same uid), if any.
    pub fn get(&self, tenant: &Tenant) -> Option<String> {
        let uid = Self::uid(tenant)?;
        self.ids
            .lock()
            .expect("resolved ids lock")
            .get(uid)
            .cloned()
    }

    pub fn remember(&self, tenant: &Tenant, id: &str) {
        if let Some(uid) = Self::uid(tenant) {
            self.ids
                .lock()
                .expect("resolved ids lock")
                .insert(uid.to_string(), id.to_string());
        }
    }

    /// Forgets the Tenant's entry (its status carries the id, or it is being deleted or
    /// gone).
    pub fn forget(&self, tenant: &Tenant) {
        if let Some(uid) = Self::uid(tenant) {
            self.ids.lock().expect("resolved ids lock").remove(uid);
        }
    }
}

/// Drops what no reconcile reads from a cached Tenant or ConsentGrant: `managedFields` (often
/// larger than the object itself), the labels, and every annotation but
/// [`RECHECK_ANNOTATION`](crate::crd::RECHECK_ANNOTATION) (among them the client-side apply
/// annotation, a full copy of the object).
///
/// The caches hold every Tenant and ConsentGrant for the whole life of the process, so each
/// byte here is paid once per object: a label map alone takes a 0.5 KiB tree node plus its
/// strings, for each of the five or six objects a tenant has. The reconcilers find a
/// tenant's grants through [`GrantCache`] (by namespace) and a grant's Tenant through `spec.tenantRef`,
/// never through labels.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == crate::crd::RECHECK_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`slim`], and what a cached ConsentGrant needs least: its `ownerReferences` (the Tenant
/// controller finds a grant's Tenant by `spec.tenantRef`), `spec.displayName` (shown to the
/// customer by Entra, never read here) and `resourceVersion` (grant writes are server-side
/// applies, which need none; kube-runtime copies it into every reference to the grant it
/// queues). About 0.3 KiB per grant.
pub fn slim_grant(grant: &mut ConsentGrant) {
    slim(grant);
    grant.metadata.owner_references = None;
    grant.metadata.resource_version = None;
    grant.spec.display_name = None;
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
    let tenant_for_consents = tenant_writer.subscribe().expect("shared store subscribes");
    let tenant_for_services = tenant_writer.subscribe().expect("shared store subscribes");
    let resolved_tenant_ids = ResolvedTenantIds::default();
    let tenant_facts = LastSeen::default();
    let tenants_synced = Gate::default();
    let grants = GrantCache::default();
    // Grants no Tenant's consent reconcile covers, as the watches find them.
    let (found_strays, strays) = futures::channel::mpsc::unbounded::<grants::Touched>();
    let tenant_watch = watcher(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .map({
        let resolved = resolved_tenant_ids.clone();
        let facts = tenant_facts.clone();
        let (grants, found_strays) = (grants.clone(), found_strays.clone());
        move |event| {
            if let Ok(watcher::Event::Delete(gone)) = &event {
                resolved.forget(gone);
                facts.forget(&gone.name_any());
                // Its grants are strays until garbage collection takes them.
                let name = gone.name_any();
                for g in grants::naming(&name, &grants.in_namespace(&gone.namespace_name())) {
                    let _ = found_strays.unbounded_send(grants::Touched::of(&g));
                }
            }
            event
        }
    })
    .modify(slim)
    .reflect_shared(tenant_writer)
    .for_each({
        let synced = tenants_synced.clone();
        move |event| {
            synced.open_on(&event);
            std::future::ready(())
        }
    });

    // Grant events wake the grant's Tenant in both controllers: the Tenant controller for its
    // consent lines, the consent controller for the grants themselves.
    let (wake_tenants, tenant_wake_ups) = Wakes::new();
    let (wake_consents, consent_wake_ups) = Wakes::new();
    let grant_watch = watcher(
        Api::<ConsentGrant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim_grant)
    .for_each({
        let (grants, tenants) = (grants.clone(), tenants.clone());
        let tenants_synced = tenants_synced.clone();
        let wake_consents = wake_consents.clone();
        move |event| {
            let Ok(event) = event else {
                // The watcher backs off and retries; the cache keeps its last view.
                return std::future::ready(());
            };
            let tenants_ready = tenants_synced.is_open();
            for touched in grants.apply(event) {
                wake_tenants.wake(&touched.tenant);
                wake_consents.wake(&touched.tenant);
                // Before the Tenants are listed, the stray reconcile looks at every grant
                // once they are.
                if tenants_ready && !consent::covered(&tenants, &touched.namespace, &touched.tenant)
                {
                    let _ = found_strays.unbounded_send(touched);
                }
            }
            std::future::ready(())
        }
    });

    let ctx = Arc::new(Context {
        wake_consents,
        events: Events::new(client.clone(), "recording-operator"),
        client,
        config,
        checker,
        metrics,
        tenants: tenants.clone(),
        tenants_synced,
        grants: grants.clone(),
        resolved_tenant_ids: resolved_tenant_ids.clone(),
        applied: Default::default(),
        backoff: Default::default(),
        storage,
    });

    let controller_config = controller::Config::default()
        .concurrency(options.concurrency)
        .debounce(options.debounce);
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let tenant_controller = Controller::for_shared_stream(tenant_for_tenants, tenants.clone())
        .reconcile_on(tenant_wake_ups)
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

    // The consent controller runs per Tenant (see `consent::reconcile`). A Tenant's own
    // change wakes it only when it changes what the grants read of it.
    let consent_triggers = tenant_for_consents.filter({
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

    tokio::select! {
        _ = async { futures::join!(tenant_controller, consent_controller, service_controller, readiness) } => {}
        _ = tenant_watch => {}
        _ = grant_watch => {}
        _ = gauges => {}
        _ = strays => {}
    }
    ready.store(false, Ordering::SeqCst);
}

/// Keeps the "tenants by health" and "consents by state" gauges current.
async fn gauge_loop(ctx: Arc<Context>) {
    ctx.caches_synced().await;
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
        for (state, n) in ctx.grants.count_by_state() {
            let state = state.map(|s| s.as_str()).unwrap_or("Unknown");
            *by_state.entry(state.to_string()).or_insert(0i64) += n as i64;
        }
        ctx.metrics.set_tenants_by_health(&by_health);
        ctx.metrics.set_consents_by_state(&by_state);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn an_event_repeated_within_the_window_is_dropped_and_allowed_after() {
        let mut recent = RecentEvents::default();
        let t0 = std::time::Instant::now();
        assert!(!recent.repeat(1, t0));
        assert!(recent.repeat(1, t0 + Duration::from_secs(1)));
        assert!(!recent.repeat(2, t0 + Duration::from_secs(2)));
        assert!(
            !recent.repeat(1, t0 + REPEAT_WINDOW + Duration::from_secs(1)),
            "after the window it is news again"
        );
        assert!(recent.seen.len() <= 2);
    }
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
