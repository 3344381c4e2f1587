//! Prometheus metrics of the operator, served on `/metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] value (cheap to clone) is shared by every controller:
//! - reconciles, their errors and their durations per controller, measured by the
//!   [`ReconcileGuard`] that [`Metrics::reconcile_started`] hands out;
//! - Graph and token requests by outcome, read at scrape time from the plain atomics of
//!   [`crate::graph::Counters`] (the Graph client counts; this module only exposes);
//! - consents by state and tenants by health, gauges the controllers set after each pass over
//!   their caches.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `recording_operator_reconciles_total` | counter | `controller` |
//! | `recording_operator_reconcile_errors_total` | counter | `controller`, `reason` |
//! | `recording_operator_reconcile_duration_seconds` | histogram | `controller` |
//! | `recording_operator_graph_requests_total` | counter | `outcome` |
//! | `recording_operator_token_requests_total` | counter | `outcome` |
//! | `recording_operator_consents` | gauge | `state` |
//! | `recording_operator_tenants` | gauge | `health` |
//! | `recording_operator_leader` | gauge | — |
//! | `recording_operator_notifications_sent_total` | counter | `kind` |
//! | `recording_operator_notifications_failed_total` | counter | `kind`, `reason` |
//! | `recording_operator_retention_sweeps_total` | counter | `result` |
//! | `recording_operator_retention_blobs_total` | counter | `outcome` |
//! | `recording_operator_retention_deleted_bytes_total` | counter | — |
//! | `recording_operator_granted_checks_unwritten_total` | counter | — |
//!
//! The onboarding funnel and the per-Tenant figures the alert rules read are in [`funnel`]
//! (its table says which series carry a `tenant` label); requests to the public listener in
//! [`public`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::crd::{ConsentGrant, ConsentGrantStatus, RecordingService, Tenant, TenantStatus};
use crate::graph::Counters;

pub mod funnel;
pub mod public;

pub use funnel::ConsentFigures;
pub use public::count_public_request;

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the reconcile duration buckets: a reconcile that only reads its
/// caches takes milliseconds, one that waits on Graph or storage up to the request timeout.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

type DurationFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// The operator's metrics. Clones share the same registry and series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    graph: Arc<Counters>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: DurationFamily,
    consents: LabelledGauges<StateLabels>,
    tenants: LabelledGauges<HealthLabels>,
    leader: Gauge,
    funnel: funnel::Funnel,
    public: public::PublicRequests,
    notifications_sent: Family<KindLabels, Counter>,
    notifications_failed: Family<FailedLabels, Counter>,
    retention_sweeps: Family<ResultLabels, Counter>,
    retention_blobs: Family<OutcomeLabels, Counter>,
    retention_bytes: Counter,
    granted_checks_unwritten: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics with their own, fresh Graph counters (hand them to the Graph client with
    /// [`Metrics::graph_counters`]).
    fn default() -> Self {
        Metrics::new(Arc::new(Counters::default()))
    }
}

impl Metrics {
    /// Metrics exposing the given Graph/token request counters at scrape time.
    pub fn new(graph: Arc<Counters>) -> Self {
        let mut registry = Registry::default();

        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "recording_operator_reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "recording_operator_reconcile_errors",
            "Reconciles that ended in an error, by controller and reason",
            errors.clone(),
        );
        let durations: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register_with_unit(
            "recording_operator_reconcile_duration",
            "Time one reconcile took, by controller",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register_collector(Box::new(RequestCollector {
            counters: graph.clone(),
        }));
        let consents = LabelledGauges::new(|state| StateLabels { state });
        registry.register(
            "recording_operator_consents",
            "ConsentGrants by state",
            consents.family.clone(),
        );
        let tenants = LabelledGauges::new(|health| HealthLabels { health });
        registry.register(
            "recording_operator_tenants",
            "Tenants by health",
            tenants.family.clone(),
        );
        registry.register_collector(Box::new(HeapCollector));
        let leader = Gauge::default();
        registry.register(
            "recording_operator_leader",
            "1 while this replica holds the leader Lease and runs the controllers, else 0",
            leader.clone(),
        );
        let funnel = funnel::Funnel::register(&mut registry);
        let public = public::PublicRequests::register(&mut registry);
        let retention_sweeps = Family::<ResultLabels, Counter>::default();
        registry.register(
            "recording_operator_retention_sweeps",
            "Retention sweeps of a tenant, by result (completed, dry_run, failed, not_swept)",
            retention_sweeps.clone(),
        );
        let retention_blobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "recording_operator_retention_blobs",
            "Recordings the retention sweeps dealt with, by outcome (deleted, past_retention, \
             kept_for_hold, kept_unknown_age, refused)",
            retention_blobs.clone(),
        );
        let retention_bytes = Counter::default();
        registry.register_with_unit(
            "recording_operator_retention_deleted",
            "Bytes of recordings the retention sweeps deleted",
            Unit::Bytes,
            retention_bytes.clone(),
        );

        let granted_checks_unwritten = Counter::default();
        registry.register(
            "recording_operator_granted_checks_unwritten",
            "Re-checks of granted consents that found them still granted and were not written to the ConsentGrant's status (see polling.grantedStatusRefresh)",
            granted_checks_unwritten.clone(),
        );
        let notifications_sent = Family::<KindLabels, Counter>::default();
        registry.register(
            "recording_operator_notifications_sent",
            "E-mail notifications the mail transport accepted, by kind",
            notifications_sent.clone(),
        );
        let notifications_failed = Family::<FailedLabels, Counter>::default();
        registry.register(
            "recording_operator_notifications_failed",
            "E-mail notification attempts that failed, by kind and reason",
            notifications_failed.clone(),
        );

        Metrics {
            inner: Arc::new(Inner {
                registry,
                graph,
                reconciles,
                errors,
                durations,
                consents,
                tenants,
                leader,
                funnel,
                public,
                notifications_sent,
                notifications_failed,
                retention_sweeps,
                retention_blobs,
                retention_bytes,
                granted_checks_unwritten,
            }),
        }
    }

    /// The Graph/token request counters this registry exposes: hand them to the Graph client.
    pub fn graph_counters(&self) -> Arc<Counters> {
        self.inner.graph.clone()
    }

    /// Starts timing one reconcile of `controller` (e.g. `"tenant"`). The returned guard counts
    /// the reconcile and observes its duration when dropped; call [`ReconcileGuard::error`]
    /// first when it failed.
    pub fn reconcile_started(&self, controller: &str) -> ReconcileGuard {
        ReconcileGuard {
            inner: self.inner.clone(),
            controller: controller.to_owned(),
            started: Instant::now(),
        }
    }

    /// Sets `recording_operator_consents{state}` from a count per state. States counted before
    /// and absent now drop to 0 rather than keep a stale value.
    pub fn set_consents_by_state(&self, counts: &BTreeMap<String, i64>) {
        self.inner.consents.set(counts);
    }

    /// Sets `recording_operator_tenants{health}` from a count per health; like
    /// [`Metrics::set_consents_by_state`].
    pub fn set_tenants_by_health(&self, counts: &BTreeMap<String, i64>) {
        self.inner.tenants.set(counts);
    }

    /// Sets `recording_operator_leader` (1 while leading).
    pub fn set_leader(&self, leading: bool) {
        self.inner.leader.set(i64::from(leading));
    }

    /// After the Tenant controller wrote `new` over `old` as the Tenant's status: observes the
    /// first Ready in the funnel (when `new` sets `firstReadyAt`; see [`funnel::first_ready`]).
    pub fn tenant_status_written(
        &self,
        tenant: &Tenant,
        old: Option<&TenantStatus>,
        new: &TenantStatus,
    ) {
        self.inner.funnel.tenant_status_written(tenant, old, new);
    }

    /// Sets the per-Tenant gauges (`tenant_warning`, `tenant_storage_ready`) from the status
    /// the Tenant controller computed for `tenant`, written or not.
    pub fn tenant_status(&self, tenant: &str, status: &TenantStatus) {
        self.inner.funnel.tenant_status(tenant, status);
    }

    /// Drops the per-Tenant series of Tenants that are gone.
    pub fn retain_tenants(&self, live: &std::collections::HashSet<String>) {
        self.inner.funnel.retain_tenants(live);
    }

    /// After the consent controller wrote `new` over `old` as a grant's status: observes the
    /// first Granted in the funnel (once; see [`funnel::first_granted`]).
    pub fn consent_status_written(
        &self,
        grant: &ConsentGrant,
        old: Option<&ConsentGrantStatus>,
        new: &ConsentGrantStatus,
    ) {
        self.inner.funnel.consent_status_written(grant, old, new);
    }

    /// Sets the tenants waiting per consent and the revoked grants from one pass over the
    /// grants.
    pub fn set_consent_figures(&self, figures: &ConsentFigures) {
        self.inner.funnel.set_consent_figures(figures);
    }

    /// Records the app registration a RecordingService uses: its application id and when its
    /// soonest still-valid client secret expires; `None` when none is known. The series' `owner`
    /// label is the service's `namespace/name`.
    pub fn client_secret(&self, service: &RecordingService, secret: Option<(&str, Timestamp)>) {
        self.inner.funnel.client_secret(
            funnel::SecretKind::AppRegistration,
            &owner_label(service),
            secret,
        );
    }

    /// Records the soonest end of a platform application's valid client secrets (`None`: it
    /// has none left, or it is no longer watched), by its consent key.
    pub fn platform_client_secret(&self, key: &str, secret: Option<(&str, Timestamp)>) {
        self.inner
            .funnel
            .client_secret(funnel::SecretKind::PlatformApp, key, secret);
    }

    /// Forgets the client secrets of RecordingServices not among `live`.
    /// Forgets the client secret line of the service `namespace/name` (deleted).
    pub fn forget_client_secret(&self, namespace: &str, name: &str) {
        let owner = format!("{namespace}/{name}");
        self.inner
            .funnel
            .client_secret(funnel::SecretKind::AppRegistration, &owner, None);
    }

    /// Counts one request to the public listener (see [`count_public_request`]).
    pub fn public_request(&self, route: &str, status: axum::http::StatusCode) {
        self.inner.public.count(route, status);
    }

    /// Counts one re-check of a granted consent that changed nothing and was not written.
    pub fn granted_check_unwritten(&self) {
        self.inner.granted_checks_unwritten.inc();
    }

    /// Counts one notification of `kind` the mail transport accepted.
    pub fn notification_sent(&self, kind: &str) {
        self.inner
            .notifications_sent
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts one failed attempt to send a notification of `kind`; `reason` is a short,
    /// bounded label such as `"unreachable"` or `"auth"`.
    pub fn notification_failed(&self, kind: &str, reason: &str) {
        self.inner
            .notifications_failed
            .get_or_create(&FailedLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one retention sweep of a tenant: its result, its recordings by outcome, and the
    /// bytes it deleted.
    pub fn retention_swept(&self, result: &str, blobs: &[(&str, u64)], bytes_deleted: u64) {
        let inner = &self.inner;
        inner
            .retention_sweeps
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        for (outcome, n) in blobs {
            inner
                .retention_blobs
                .get_or_create(&OutcomeLabels {
                    outcome: (*outcome).to_owned(),
                })
                .inc_by(*n);
        }
        inner.retention_bytes.inc_by(bytes_deleted);
    }

    /// Every series in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing metrics into a String cannot fail");
        out
    }
}

/// `namespace/name` of a RecordingService, as the secret expiry series name it.
fn owner_label(service: &RecordingService) -> String {
    use kube::ResourceExt;
    format!(
        "{}/{}",
        service.namespace().unwrap_or_default(),
        service.name_any()
    )
}

/// Times one reconcile; see [`Metrics::reconcile_started`].
#[must_use = "the reconcile is measured when the guard is dropped"]
pub struct ReconcileGuard {
    inner: Arc<Inner>,
    controller: String,
    started: Instant,
}

impl ReconcileGuard {
    /// Counts an error of this reconcile. `reason` is a short, bounded label value such as
    /// `"kube"`, `"graph"` or `"invalid_spec"` — never an error message (unbounded series).
    pub fn error(&self, reason: &str) {
        self.inner
            .errors
            .get_or_create(&ErrorLabels {
                controller: self.controller.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        let labels = ControllerLabels {
            controller: std::mem::take(&mut self.controller),
        };
        self.inner.reconciles.get_or_create(&labels).inc();
        self.inner
            .durations
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// A gauge per label value, set as a whole from a map.
struct LabelledGauges<L> {
    family: Family<L, Gauge>,
    label: fn(String) -> L,
    seen: Mutex<BTreeSet<String>>,
}

impl<L> LabelledGauges<L>
where
    L: Clone + std::fmt::Debug + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    fn new(label: fn(String) -> L) -> Self {
        LabelledGauges {
            family: Family::default(),
            label,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    fn set(&self, counts: &BTreeMap<String, i64>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for gone in seen.iter().filter(|key| !counts.contains_key(*key)) {
            self.family
                .get_or_create(&(self.label)(gone.clone()))
                .set(0);
        }
        for (key, value) in counts {
            self.family
                .get_or_create(&(self.label)(key.clone()))
                .set(*value);
            seen.insert(key.clone());
        }
    }
}

/// Reads the allocator's figure of heap in use at scrape time (glibc's `mallinfo2`: bytes
/// handed out from the arenas plus those in their own mappings). It is the live memory the
/// resident set is made of, without the allocator's free pages and the binary's code, so it
/// moves with what the operator keeps per Tenant and little else.
#[derive(Debug)]
struct HeapCollector;

/// Bytes of heap in use, where the allocator can tell.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

impl Collector for HeapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(bytes) = heap_in_use() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(bytes as i64);
        let metric = encoder.encode_descriptor(
            "recording_operator_heap_in_use",
            "Heap memory the allocator has handed out and not had back",
            Some(&Unit::Bytes),
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Reads the Graph client's request counters at scrape time.
#[derive(Debug)]
struct RequestCollector {
    counters: Arc<Counters>,
}

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = [
            (
                "recording_operator_graph_requests",
                "Microsoft Graph HTTP requests by outcome (a $batch counts once)",
                self.counters.graph_requests(),
            ),
            (
                "recording_operator_token_requests",
                "Client-credentials token requests to the Microsoft identity platform by outcome",
                self.counters.token_requests(),
            ),
        ];
        for (name, help, counts) in series {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (outcome, value) in counts {
                let labels = [("outcome", outcome)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
