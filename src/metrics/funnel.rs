//! The onboarding funnel and the per-object figures the alert rules read.
//!
//! | series | type | labels | cardinality |
//! |---|---|---|---|
//! | `recording_operator_tenant_time_to_ready_seconds` | histogram | `license` | 2 |
//! | `recording_operator_consent_time_to_granted_seconds` | histogram | `consent` | one per consent key |
//! | `recording_operator_consent_waiting_tenants` | gauge | `consent` | one per consent key |
//! | `recording_operator_tenant_warning` | gauge | `tenant` | **one per Tenant** |
//! | `recording_operator_tenant_storage_ready` | gauge | `tenant` | **one per Tenant** |
//! | `recording_operator_consent_revoked` | gauge | `tenant`, `consent` | one per *revoked* grant (normally none) |
//! | `recording_operator_client_secret_expiry_days` | gauge | `kind`, `owner`, `app_id` | one per known app registration and platform application |
//!
//! Each funnel event is observed once: at the status write that makes the transition (so a
//! restart, which finds the transition already in status, does not observe it again), from
//! status timestamps, and at most once per object in a process. A Tenant's first Ready is
//! the write that sets `status.firstReadyAt`, which the Tenant controller never moves again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::conditions;
use crate::crd::{ConsentGrant, ConsentGrantStatus, ConsentState, Tenant, TenantStatus};

/// Upper bounds (seconds) of the funnel buckets: from a consent given while the platform
/// engineer watches (a minute) to a customer who takes weeks.
const FUNNEL_BUCKETS: [f64; 14] = [
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    21_600.0,
    43_200.0,
    86_400.0,
    172_800.0,
    604_800.0,
    1_209_600.0,
    2_592_000.0,
];

/// The Tenant condition the funnel ends at.
const READY: &str = "Ready";
/// The Tenant condition storage readiness is reported in.
const STORAGE_READY: &str = "StorageReady";

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct LicenseLabels {
    license: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ConsentLabels {
    consent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct GrantLabels {
    tenant: String,
    consent: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the gauge loop counts over the grant cache in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentFigures {
    /// Grants not `Granted`, by consent key: tenants waiting on that consent.
    pub waiting: BTreeMap<String, i64>,
    /// `(tenant, consent key)` of every `Revoked` grant.
    pub revoked: BTreeSet<(String, String)>,
}

impl ConsentFigures {
    /// Counts one grant: of `tenant`, for the consent `key`, in `state` (`None`: no status).
    pub fn add(&mut self, tenant: &str, key: &str, state: Option<ConsentState>) {
        let waiting = self.waiting.entry(key.to_owned()).or_insert(0);
        if state != Some(ConsentState::Granted) {
            *waiting += 1;
        }
        if state == Some(ConsentState::Revoked) {
            self.revoked.insert((tenant.to_owned(), key.to_owned()));
        }
    }
}

/// Seconds from the Tenant's creation to its `status.firstReadyAt`, when the write of `new`
/// over `old` is the one that sets `firstReadyAt` for a Tenant onboarded now: `old` has no
/// `firstReadyAt`, `new` has one, and `old` was not already Ready. A Tenant Ready in `old`
/// without `firstReadyAt` was onboarded before the operator kept the field: its
/// `firstReadyAt` is filled in from the Ready condition, and it is not observed (its
/// onboarding lies before this operator; counting it at the upgrade would flood the funnel).
pub fn first_ready(
    created: Option<Timestamp>,
    old: Option<&TenantStatus>,
    new: &TenantStatus,
) -> Option<f64> {
    let set_now = new.first_ready_at.as_ref()?;
    if let Some(old) = old {
        if old.first_ready_at.is_some() || conditions::is_true(&old.conditions, READY) {
            return None;
        }
    }
    seconds_between(created?, set_now.0)
}

/// Seconds from the grant's creation to its `grantedAt`, when the write of `new` over `old` is
/// its first grant: `Granted` now, and before neither granted nor revoked (a consent given
/// again after a revocation is not onboarding).
pub fn first_granted(
    created: Option<Timestamp>,
    old: Option<&ConsentGrantStatus>,
    new: &ConsentGrantStatus,
) -> Option<f64> {
    if new.state != Some(ConsentState::Granted) {
        return None;
    }
    let before = old.and_then(|s| s.state);
    if matches!(before, Some(ConsentState::Granted | ConsentState::Revoked)) {
        return None;
    }
    seconds_between(created?, new.granted_at.as_ref()?.0)
}

fn seconds_between(from: Timestamp, to: Timestamp) -> Option<f64> {
    let seconds = to.duration_since(from).as_secs_f64();
    (seconds >= 0.0).then_some(seconds)
}

/// Days (fractional) from `now` until `end`; negative once past.
pub fn days_left(end: Timestamp, now: Timestamp) -> f64 {
    end.duration_since(now).as_secs_f64() / 86_400.0
}

/// The funnel series and the per-object gauges; registered by [`Funnel::register`].
pub(super) struct Funnel {
    time_to_ready: HistogramFamily<LicenseLabels>,
    time_to_granted: HistogramFamily<ConsentLabels>,
    waiting: Series<ConsentLabels>,
    tenant_warning: Series<TenantLabels>,
    tenant_storage_ready: Series<TenantLabels>,
    revoked: Series<GrantLabels>,
    secrets: SecretExpiries,
    /// Objects (by uid) whose funnel event this process observed.
    observed: Mutex<HashSet<String>>,
}

impl Funnel {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let time_to_ready: HistogramFamily<LicenseLabels> =
            Family::new_with_constructor(|| Histogram::new(FUNNEL_BUCKETS));
        registry.register_with_unit(
            "recording_operator_tenant_time_to_ready",
            "Time from a Tenant's creation to its first Ready, by license",
            Unit::Seconds,
            time_to_ready.clone(),
        );
        let time_to_granted: HistogramFamily<ConsentLabels> =
            Family::new_with_constructor(|| Histogram::new(FUNNEL_BUCKETS));
        registry.register_with_unit(
            "recording_operator_consent_time_to_granted",
            "Time from a ConsentGrant's creation to its first Granted, by consent key",
            Unit::Seconds,
            time_to_granted.clone(),
        );
        let waiting = Series::default();
        registry.register(
            "recording_operator_consent_waiting_tenants",
            "Tenants whose grant of this consent is not Granted, by consent key",
            waiting.family.clone(),
        );
        let tenant_warning = Series::default();
        registry.register(
            "recording_operator_tenant_warning",
            "1 while the Tenant's health is Warning, else 0 (one series per Tenant)",
            tenant_warning.family.clone(),
        );
        let tenant_storage_ready = Series::default();
        registry.register(
            "recording_operator_tenant_storage_ready",
            "1 while every storage location of the Tenant is ready, else 0 (one series per Tenant)",
            tenant_storage_ready.family.clone(),
        );
        let revoked = Series::default();
        registry.register(
            "recording_operator_consent_revoked",
            "1 for each ConsentGrant in state Revoked (no series for the others)",
            revoked.family.clone(),
        );
        let secrets = SecretExpiries::default();
        registry.register_collector(Box::new(secrets.clone()));
        Funnel {
            time_to_ready,
            time_to_granted,
            waiting,
            tenant_warning,
            tenant_storage_ready,
            revoked,
            secrets,
            observed: Mutex::new(HashSet::new()),
        }
    }

    /// After `new` was written over `old` as the Tenant's status.
    pub(super) fn tenant_status_written(
        &self,
        tenant: &Tenant,
        old: Option<&TenantStatus>,
        new: &TenantStatus,
    ) {
        let created = tenant.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(seconds) = first_ready(created, old, new) {
            if self.first_time(tenant.uid()) {
                let license = format!("{:?}", tenant.spec.license);
                self.time_to_ready
                    .get_or_create(&LicenseLabels { license })
                    .observe(seconds);
            }
        }
    }

    /// After `new` was written over `old` as the grant's status.
    pub(super) fn consent_status_written(
        &self,
        grant: &ConsentGrant,
        old: Option<&ConsentGrantStatus>,
        new: &ConsentGrantStatus,
    ) {
        let created = grant.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(seconds) = first_granted(created, old, new) {
            if self.first_time(grant.uid()) {
                let consent = grant.spec.consent.clone();
                self.time_to_granted
                    .get_or_create(&ConsentLabels { consent })
                    .observe(seconds);
            }
        }
    }

    fn first_time(&self, uid: Option<String>) -> bool {
        let Some(uid) = uid else { return true };
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid)
    }

    /// The per-Tenant gauges from the status the Tenant controller computed.
    pub(super) fn tenant_status(&self, tenant: &str, status: &TenantStatus) {
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        let warning = status.health == Some(crate::crd::Health::Warning);
        let storage_ready =
            conditions::find(&status.conditions, STORAGE_READY).is_none_or(|c| c.status == "True");
        self.tenant_warning
            .set_one(labels.clone(), i64::from(warning));
        self.tenant_storage_ready
            .set_one(labels, i64::from(storage_ready));
    }

    /// Drops the per-Tenant series of Tenants not in `live`.
    pub(super) fn retain_tenants(&self, live: &HashSet<String>) {
        let keep = |l: &TenantLabels| live.contains(&l.tenant);
        self.tenant_warning.retain(keep);
        self.tenant_storage_ready.retain(keep);
    }

    pub(super) fn set_consent_figures(&self, figures: &ConsentFigures) {
        self.waiting.replace(
            figures
                .waiting
                .iter()
                .map(|(consent, n)| {
                    (
                        ConsentLabels {
                            consent: consent.clone(),
                        },
                        *n,
                    )
                })
                .collect(),
        );
        self.revoked.replace(
            figures
                .revoked
                .iter()
                .map(|(tenant, consent)| {
                    (
                        GrantLabels {
                            tenant: tenant.clone(),
                            consent: consent.clone(),
                        },
                        1,
                    )
                })
                .collect(),
        );
    }

    pub(super) fn client_secret(
        &self,
        kind: SecretKind,
        owner: &str,
        secret: Option<(&str, Timestamp)>,
    ) {
        let mut ends = self.secrets.ends.lock().unwrap_or_else(|e| e.into_inner());
        let key = (kind, owner.to_owned());
        match secret {
            Some((app_id, end)) => ends.insert(key, (app_id.to_owned(), end)),
            None => ends.remove(&key),
        };
    }
}

/// Gauges of a family whose label sets come and go: a series absent from the latest figures
/// is removed, not left at its last value.
struct Series<L> {
    family: Family<L, Gauge>,
    present: Mutex<HashSet<L>>,
}

impl<L> Default for Series<L>
where
    L: Clone + Hash + Eq,
{
    fn default() -> Self {
        Series {
            family: Family::default(),
            present: Mutex::new(HashSet::new()),
        }
    }
}

impl<L> Series<L>
where
    L: Clone + std::fmt::Debug + Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    fn replace(&self, values: HashMap<L, i64>) {
        let mut present = self.present.lock().unwrap_or_else(|e| e.into_inner());
        for gone in present.iter().filter(|l| !values.contains_key(*l)) {
            self.family.remove(gone);
        }
        for (labels, value) in &values {
            self.family.get_or_create(labels).set(*value);
        }
        *present = values.into_keys().collect();
    }

    fn set_one(&self, labels: L, value: i64) {
        let mut present = self.present.lock().unwrap_or_else(|e| e.into_inner());
        self.family.get_or_create(&labels).set(value);
        present.insert(labels);
    }

    fn retain(&self, keep: impl Fn(&L) -> bool) {
        let mut present = self.present.lock().unwrap_or_else(|e| e.into_inner());
        present.retain(|l| {
            let kept = keep(l);
            if !kept {
                self.family.remove(l);
            }
            kept
        });
    }
}

/// Whose client secret a line of `recording_operator_client_secret_expiry_days` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    /// A customer's known app registration; the owner is its RecordingService.
    AppRegistration,
    /// One of the platform's own applications; the owner is its consent key.
    PlatformApp,
}

impl SecretKind {
    fn label(self) -> &'static str {
        match self {
            SecretKind::AppRegistration => "app_registration",
            SecretKind::PlatformApp => "platform_app",
        }
    }
}

/// The end of the soonest-expiring client secret of each known app registration and each
/// platform application, turned into days left at scrape time (so the figure moves although
/// nothing is re-checked).
#[derive(Clone, Debug, Default)]
struct SecretExpiries {
    /// (kind, owner) → (app id, end). The owner is the object that names the registration
    /// (`namespace/name` of a RecordingService) or the platform app's consent key.
    ends: std::sync::Arc<Mutex<SecretEnds>>,
}

/// (kind, owner) → (app id, end of the soonest-expiring secret).
type SecretEnds = BTreeMap<(SecretKind, String), (String, Timestamp)>;

impl Collector for SecretExpiries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Timestamp::now();
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut family = encoder.encode_descriptor(
            "recording_operator_client_secret_expiry_days",
            "Days until the soonest still-valid client secret of an app registration expires",
            None,
            MetricType::Gauge,
        )?;
        for ((kind, owner), (app_id, end)) in ends {
            let labels = [
                ("kind", kind.label()),
                ("owner", owner.as_str()),
                ("app_id", app_id.as_str()),
            ];
            ConstGauge::new(days_left(end, now)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn condition(type_: &str, status: &str, when: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(when)),
        }
    }

    fn tenant_status(ready: &str, when: &str) -> TenantStatus {
        TenantStatus {
            conditions: vec![condition(READY, ready, when)],
            ..TenantStatus::default()
        }
    }

    fn with_first_ready(mut status: TenantStatus, at_: &str) -> TenantStatus {
        status.first_ready_at = Some(Time(at(at_)));
        status
    }

    #[test]
    fn the_first_ready_is_measured_from_creation_to_first_ready_at() {
        let created = Some(at("2026-01-01T00:00:00Z"));
        let before = tenant_status("False", "2026-01-01T00:00:05Z");
        let after = with_first_ready(
            tenant_status("True", "2026-01-01T01:30:00Z"),
            "2026-01-01T01:30:00Z",
        );
        assert_eq!(first_ready(created, Some(&before), &after), Some(5400.0));
        assert_eq!(first_ready(created, None, &after), Some(5400.0));
        // Already set (a restart re-writing the same status): not again.
        assert_eq!(first_ready(created, Some(&after), &after), None);
        // Not Ready, nothing set: nothing.
        assert_eq!(first_ready(created, None, &before), None);
        assert_eq!(first_ready(None, Some(&before), &after), None);
    }

    #[test]
    fn ready_again_after_any_trouble_is_not_a_second_first_ready() {
        let created = Some(at("2026-01-01T00:00:00Z"));
        // Ready, then storage trouble (firstReadyAt stays), then Ready again.
        let troubled = with_first_ready(
            tenant_status("False", "2026-02-01T00:00:00Z"),
            "2026-01-01T01:00:00Z",
        );
        let again = with_first_ready(
            tenant_status("True", "2026-02-02T00:00:00Z"),
            "2026-01-01T01:00:00Z",
        );
        assert_eq!(first_ready(created, Some(&troubled), &again), None);
    }

    #[test]
    fn a_tenant_ready_before_the_field_existed_is_filled_in_but_not_observed() {
        let created = Some(at("2026-01-01T00:00:00Z"));
        let old = tenant_status("True", "2026-01-01T01:00:00Z");
        let new = with_first_ready(old.clone(), "2026-01-01T01:00:00Z");
        assert_eq!(first_ready(created, Some(&old), &new), None);
    }

    fn grant_status(state: ConsentState, granted_at: Option<&str>) -> ConsentGrantStatus {
        ConsentGrantStatus {
            state: Some(state),
            granted_at: granted_at.map(|t| Time(at(t))),
            ..ConsentGrantStatus::default()
        }
    }

    #[test]
    fn the_first_grant_is_measured_and_a_regrant_is_not() {
        let created = Some(at("2026-01-01T00:00:00Z"));
        let pending = grant_status(ConsentState::Pending, None);
        let granted = grant_status(ConsentState::Granted, Some("2026-01-01T00:10:00Z"));
        let revoked = grant_status(ConsentState::Revoked, None);
        assert_eq!(
            first_granted(created, Some(&pending), &granted),
            Some(600.0)
        );
        assert_eq!(first_granted(created, None, &granted), Some(600.0));
        assert_eq!(first_granted(created, Some(&granted), &granted), None);
        assert_eq!(first_granted(created, Some(&revoked), &granted), None);
        assert_eq!(first_granted(created, Some(&granted), &revoked), None);
    }

    #[test]
    fn consent_figures_count_waiting_per_key_and_name_revoked_grants() {
        let mut f = ConsentFigures::default();
        f.add("contoso", "directory", Some(ConsentState::Granted));
        f.add("fabrikam", "directory", Some(ConsentState::Pending));
        f.add("fabrikam", "recording", None);
        f.add("contoso", "recording", Some(ConsentState::Revoked));
        assert_eq!(f.waiting.get("directory"), Some(&1));
        assert_eq!(f.waiting.get("recording"), Some(&2));
        assert_eq!(
            f.revoked,
            BTreeSet::from([("contoso".to_string(), "recording".to_string())])
        );
    }

    #[test]
    fn days_left_is_fractional_and_negative_once_past() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(days_left(at("2026-01-08T12:00:00Z"), now), 7.5);
        assert!(days_left(at("2025-12-31T00:00:00Z"), now) < 0.0);
    }
}
