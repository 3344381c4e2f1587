//! The Tenant controller: from a Tenant to everything the customer needs, and the Tenant's
//! health.
//!
//! One reconcile: validate the spec (the CRD's own rules) → know the Entra tenant id (spec, or
//! resolved from the domain once and kept in status) → apply the namespace `tenant-<name>`, its
//! ResourceQuota and default-deny NetworkPolicy, and one ConsentGrant per consent the license
//! needs (deleting the ones it no longer needs) → read the grants' states → compute the status
//! (`health`, `alarm`, conditions) → write it only when it changed, with an Event on each
//! transition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::{apply, apply_in, forget, owner_reference};
use super::consent::woken_by_tenant;
use super::{earliest, owned_labels, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY};
use crate::config::{ConsentConfig, Mandatory, OperatorConfig};
use crate::crd::tenant::DeletionPolicy;
use crate::crd::tenant::{ConsentSummary, StorageLocationStatus};
use crate::crd::validation::{validate_tenant, Violations};
use crate::crd::{
    ConsentGrant, ConsentGrantSpec, ConsentState, Health, Tenant, TenantStatus, FIELD_MANAGER,
    RECHECK_ANNOTATION,
};
use crate::graph::GraphError;

pub use crate::conditions::reason::CHECKING_CONSENTS;
pub use crate::conditions::{CONSENTS_GRANTED, STALLED, STORAGE_READY};
const CHECKING_MESSAGE: &str =
    "Waiting for the first check of the tenant's consents with Microsoft Graph.";

/// How often a healthy tenant is looked at again even when nothing changed.
const RESYNC: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// What the tenant needs: pure functions of the spec and the configuration
// ---------------------------------------------------------------------------------------------

/// One consent a tenant must (or may) grant.
#[derive(Clone, Debug, PartialEq)]
pub struct RequiredConsent<'a> {
    pub key: &'a str,
    pub config: &'a ConsentConfig,
    pub optional: bool,
}

/// The consents a tenant needs: the mandatory ones for its license, plus the optional ones its
/// spec asks for. Unknown optional keys are reported by the caller, not silently dropped.
pub fn required_consents<'a>(
    tenant: &'a Tenant,
    config: &'a OperatorConfig,
) -> Vec<RequiredConsent<'a>> {
    let pro = tenant.spec.license.advanced_storage();
    config
        .consents
        .iter()
        .filter_map(|(key, c)| {
            let wanted = match c.mandatory {
                Mandatory::Always => Some(false),
                Mandatory::ProOnly => pro.then_some(false),
                Mandatory::Never => tenant
                    .spec
                    .optional_consents
                    .iter()
                    .any(|k| k == key)
                    .then_some(true),
            };
            wanted.map(|optional| RequiredConsent {
                key: key.as_str(),
                config: c,
                optional,
            })
        })
        .collect()
}

/// Optional consents the spec names that the configuration does not know.
pub fn unknown_optional_consents(tenant: &Tenant, config: &OperatorConfig) -> Vec<String> {
    tenant
        .spec
        .optional_consents
        .iter()
        .filter(|k| !config.consents.contains_key(k.as_str()))
        .cloned()
        .collect()
}

/// Object name of a consent's ConsentGrant: the key in kebab case (`redundantRecording` →
/// `redundant-recording`), since object names are lowercase.
pub fn consent_grant_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The objects a tenant owns in the cluster.
#[derive(Clone, Debug)]
pub struct Children {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub network_policy: NetworkPolicy,
    pub grants: Vec<ConsentGrant>,
}

/// Whether the tenant's recordings are claims in its namespace that must outlive the Tenant
/// (the PVC backend with `deletionPolicy: Retain`).
pub fn keeps_claims_in_namespace(tenant: &Tenant, config: &OperatorConfig) -> bool {
    tenant.spec.deletion_policy == DeletionPolicy::Retain
        && config
            .storage
            .as_ref()
            .is_some_and(|s| s.backend == crate::storage::BackendKind::Pvc)
}

/// Computes the desired namespace, quota, network policy and ConsentGrants of a tenant.
pub fn desired_children(tenant: &Tenant, config: &OperatorConfig) -> Children {
    let name = tenant.name_any();
    let ns = tenant.namespace_name();
    let owner = owner_reference(tenant);
    let meta = |object_name: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(object_name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(owned_labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let mut ns_meta = meta(&ns, None);
    if keeps_claims_in_namespace(tenant, config) {
        // The recordings' claims live in this namespace: owned by the Tenant, it would be
        // deleted with it, and every claim in it. `Retain` keeps the namespace instead.
        ns_meta.owner_references = None;
    }
    // Pods of the tenant run under the restricted Pod Security Standard.
    let labels = ns_meta.labels.get_or_insert_with(Default::default);
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    let namespace = Namespace {
        metadata: ns_meta,
        ..Default::default()
    };

    let hard: BTreeMap<String, Quantity> = [
        ("pods", "40"),
        ("requests.cpu", "16"),
        ("requests.memory", "32Gi"),
        ("limits.cpu", "32"),
        ("limits.memory", "64Gi"),
        ("persistentvolumeclaims", "10"),
        ("services", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect();
    let quota = ResourceQuota {
        metadata: meta("tenant-quota", Some(&ns)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    };

    let network_policy = NetworkPolicy {
        metadata: meta("default-deny", Some(&ns)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        }),
    };

    let grants = required_consents(tenant, config)
        .into_iter()
        .map(|c| ConsentGrant {
            metadata: meta(&consent_grant_name(c.key), Some(&ns)),
            spec: ConsentGrantSpec {
                tenant_ref: name.clone(),
                consent: c.key.to_string(),
                app_id: c.config.app_id.clone(),
                display_name: Some(c.config.display_name.clone()),
                application_permissions: c.config.application_permissions.clone(),
                delegated_scopes: c.config.delegated_scopes.clone(),
                optional: c.optional,
            },
            status: None,
        })
        .collect();

    Children {
        namespace,
        quota,
        network_policy,
        grants,
    }
}

// ---------------------------------------------------------------------------------------------
// The tenant's status: a pure function of what was observed
// ---------------------------------------------------------------------------------------------

/// Why a reconcile could not go all the way.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocker {
    /// The spec breaks a rule; nothing is provisioned until it is fixed.
    InvalidSpec(Violations),
    /// The domain has no Entra tenant.
    TenantNotFound(String),
    /// The tenant id could not be resolved right now (throttling, outage).
    TenantIdUnavailable(String),
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub tenant: &'a Tenant,
    pub tenant_id: Option<String>,
    pub blocker: Option<Blocker>,
    /// The ConsentGrants the tenant needs, with the grant observed for each (if any).
    pub consents: Vec<(RequiredConsent<'a>, Option<&'a ConsentGrant>)>,
    /// Storage locations, when a storage backend is configured.
    pub storage: Option<Vec<StorageLocationStatus>>,
    pub now: Timestamp,
}

/// Computes the tenant's status.
pub fn compute_status(o: &Observed<'_>) -> TenantStatus {
    let tenant = o.tenant;
    let generation = tenant.meta().generation;
    let previous = tenant.status.clone().unwrap_or_default();
    let license = tenant.spec.license;

    let consents: Vec<ConsentSummary> = o
        .consents
        .iter()
        .map(|(required, grant)| {
            let status = grant.and_then(|g| g.status.as_ref());
            ConsentSummary {
                name: required.key.to_string(),
                state: status
                    .and_then(|s| s.state)
                    .unwrap_or(ConsentState::Pending),
                optional: required.optional,
                consent_url: status.and_then(|s| s.consent_url.clone()),
            }
        })
        .collect();

    let mut alarms: Vec<String> = Vec::new();
    let mut conditions: Vec<Desired> = Vec::new();

    // Consents.
    let (consents_ok, consent_reason, consent_message) = consent_condition(o, &consents);
    if !consents_ok && o.blocker.is_none() {
        alarms.push(consent_message.clone());
    }
    conditions.push(Desired::new(
        CONSENTS_GRANTED,
        if o.blocker.is_some() || consent_reason == CHECKING_CONSENTS {
            Status::Unknown
        } else {
            Status::from_bool(consents_ok)
        },
        if o.blocker.is_some() {
            reason::NOT_CHECKED
        } else {
            consent_reason
        },
        if o.blocker.is_some() {
            "consents are checked once the tenant is valid and its tenant id known".to_string()
        } else {
            consent_message
        },
    ));

    // Storage.
    let (storage_ok, storage_gates) = match &o.storage {
        Some(_) if o.blocker.is_some() => {
            conditions.push(Desired::new(
                STORAGE_READY,
                Status::Unknown,
                reason::NOT_CHECKED,
                "storage is checked once the tenant is valid and its tenant id known",
            ));
            (false, true)
        }
        None => {
            conditions.push(Desired::new(
                STORAGE_READY,
                Status::Unknown,
                reason::NOT_IMPLEMENTED,
                "no storage backend is configured for this operator",
            ));
            (true, false)
        }
        Some(locations) => {
            let failing: Vec<String> = locations
                .iter()
                .filter(|l| !l.ready)
                .map(|l| {
                    format!(
                        "{} storage in {}{}: {}",
                        l.role,
                        l.location,
                        l.name
                            .as_ref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default(),
                        l.message.as_deref().unwrap_or("not ready")
                    )
                })
                .collect();
            if failing.is_empty() {
                conditions.push(Desired::new(
                    STORAGE_READY,
                    Status::True,
                    "StorageReady",
                    format!("{} storage location(s) ready", locations.len()),
                ));
            } else {
                let message = failing.join("; ");
                alarms.push(format!("Storage: {message}"));
                conditions.push(Desired::new(
                    STORAGE_READY,
                    Status::False,
                    reason::STORAGE_NOT_READY,
                    message,
                ));
            }
            (failing.is_empty(), true)
        }
    };

    // The aggregate.
    let (ready, reason, message) = match &o.blocker {
        Some(Blocker::InvalidSpec(v)) => {
            alarms.insert(0, format!("Invalid spec: {v}"));
            (
                false,
                reason::INVALID_SPEC,
                format!("the spec breaks these rules: {v}"),
            )
        }
        Some(Blocker::TenantNotFound(m)) => {
            alarms.insert(0, format!("Tenant not found: {m}"));
            (false, reason::TENANT_NOT_FOUND, m.clone())
        }
        Some(Blocker::TenantIdUnavailable(m)) => {
            alarms.insert(0, format!("Tenant id not resolved yet: {m}"));
            (false, reason::TENANT_ID_UNAVAILABLE, m.clone())
        }
        None if consents_ok && (storage_ok || !storage_gates) => (
            true,
            "Ready",
            "all mandatory consents are granted and storage is ready".to_string(),
        ),
        None if !consents_ok => (false, consent_reason, alarms.join(" ")),
        None => (false, reason::STORAGE_NOT_READY, alarms.join(" ")),
    };
    conditions.push(Desired::new(
        READY,
        Status::from_bool(ready),
        reason,
        message,
    ));
    if matches!(o.blocker, Some(Blocker::InvalidSpec(_))) {
        conditions.push(Desired::new(
            STALLED,
            Status::True,
            reason::INVALID_SPEC,
            "fix the spec; nothing is provisioned until then",
        ));
    }

    TenantStatus {
        observed_generation: generation,
        health: Some(if ready { Health::Ok } else { Health::Warning }),
        alarm: (!ready).then(|| alarms.join(" ")).filter(|a| !a.is_empty()),
        license_type: Some(license.display_type().to_string()),
        advanced_storage: Some(license.advanced_storage()),
        tenant_id: o.tenant_id.clone().or(previous.tenant_id),
        namespace: Some(tenant.namespace_name()),
        storage: o.storage.clone().unwrap_or_default(),
        consents,
        conditions: conditions::merge(&previous.conditions, conditions, generation, o.now),
    }
}

/// `(all mandatory granted, reason, message)` of the ConsentsGranted condition; the message
/// names what the customer (or the platform team) must still do.
fn consent_condition(
    o: &Observed<'_>,
    consents: &[ConsentSummary],
) -> (bool, &'static str, String) {
    let mandatory = |state: ConsentState| -> Vec<String> {
        o.consents
            .iter()
            .zip(consents)
            .filter(|((r, _), s)| !r.optional && s.state == state)
            .map(|((r, _), _)| format!("{} ({})", r.key, r.config.display_name))
            .collect()
    };
    let errors: Vec<String> = o
        .consents
        .iter()
        .zip(consents)
        .filter(|((r, _), s)| !r.optional && s.state == ConsentState::Error)
        .map(|((r, g), _)| {
            let why = g
                .and_then(|g| g.status.as_ref())
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| "check failed".into());
            format!("{}: {why}", r.key)
        })
        .collect();
    let revoked = mandatory(ConsentState::Revoked);
    let partial = mandatory(ConsentState::Partial);
    let pending = mandatory(ConsentState::Pending);
    // Before a grant's first check its Pending is a guess, not news: while every mandatory
    // consent is either granted or not checked yet, the tenant says so instead of sending the
    // customer's admin to grant what may be granted already.
    let unchecked = o
        .consents
        .iter()
        .filter(|(r, g)| !r.optional && !first_check_done(*g))
        .count();
    if unchecked > 0
        && errors.is_empty()
        && revoked.is_empty()
        && partial.is_empty()
        && pending.len() == unchecked
    {
        return (false, CHECKING_CONSENTS, CHECKING_MESSAGE.to_string());
    }

    let mut parts = Vec::new();
    if !revoked.is_empty() {
        parts.push(format!(
            "The customer's Global admin revoked consent for {}; it must be granted again.",
            revoked.join(", ")
        ));
    }
    if !pending.is_empty() {
        parts.push(format!(
            "The customer's Global admin must grant consent for {}.",
            pending.join(", ")
        ));
    }
    if !partial.is_empty() {
        parts.push(format!(
            "Consent for {} lacks permissions; the Global admin must grant it again.",
            partial.join(", ")
        ));
    }
    if !errors.is_empty() {
        parts.push(format!(
            "Consent checks failing (platform team): {}.",
            errors.join("; ")
        ));
    }
    let reason = if !errors.is_empty() {
        reason::CONSENT_CHECK_FAILED
    } else if !revoked.is_empty() {
        reason::CONSENT_REVOKED
    } else if !partial.is_empty() {
        reason::CONSENT_PARTIAL
    } else if !pending.is_empty() {
        reason::CONSENTS_MISSING
    } else {
        "ConsentsGranted"
    };
    if parts.is_empty() {
        (
            true,
            reason,
            "all mandatory consents are granted".to_string(),
        )
    } else {
        (false, reason, parts.join(" "))
    }
}

/// Whether the grant has answered at least once: its first check ran, or it failed for a
/// reason of its own (an invalid spec).
pub fn first_check_done(grant: Option<&ConsentGrant>) -> bool {
    grant
        .and_then(|g| g.status.as_ref())
        .is_some_and(|s| s.last_checked_at.is_some() || s.state == Some(ConsentState::Error))
}

/// Whether a status change may wait: the grants' first checks are still coming in (the
/// ConsentsGranted reason is [`CHECKING_CONSENTS`] before and after) and nothing but their
/// lines in `status.consents` moved. Each grant's answer re-triggers the reconcile, so the
/// status is written once they have all answered (or anything else changes) instead of once
/// per grant.
pub fn may_wait_for_first_checks(old: Option<&StatusDigest>, new: &StatusDigest) -> bool {
    old.is_some_and(|old| {
        old.checking && new.checking && old.without_consents == new.without_consents
    })
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn status_changed(old: Option<&StatusDigest>, new: &StatusDigest) -> bool {
    old.is_none_or(|old| old.whole != new.whole)
}

/// What decides whether a Tenant's status must be written: digests of the status with
/// condition timestamps left out, with and without `status.consents`, and whether its
/// consents are still being checked for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusDigest {
    whole: u64,
    without_consents: u64,
    checking: bool,
}

impl StatusDigest {
    pub fn of(status: &TenantStatus) -> Self {
        let digest =
            |s: &TenantStatus| crate::hash64(&serde_json::to_vec(s).expect("a status serialises"));
        // One copy with the condition times left out, hashed with and without the consents.
        let mut timeless = status.clone();
        for c in &mut timeless.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        let whole = digest(&timeless);
        timeless.consents.clear();
        StatusDigest {
            whole,
            without_consents: digest(&timeless),
            checking: conditions::find(&status.conditions, CONSENTS_GRANTED)
                .is_some_and(|c| c.reason == CHECKING_CONSENTS),
        }
    }
}

/// The Event a status change deserves, if any: `(warning, reason, note)`.
pub fn transition_event(
    old: Option<&TenantStatus>,
    new: &TenantStatus,
) -> Option<(bool, String, String)> {
    let ready = |s: &TenantStatus| {
        conditions::find(&s.conditions, READY).map(|c| (c.status.clone(), c.reason.clone()))
    };
    let before = old.and_then(ready);
    let after = ready(new)?;
    if before.as_ref() == Some(&after) && old.and_then(|o| o.health) == new.health {
        return None;
    }
    // Waiting for the grants' first checks is progress, not an alarm: the state they lead to
    // (consents missing, or Ready) has the Event.
    if after.1 == CHECKING_CONSENTS {
        return None;
    }
    if after.0 == "True" {
        Some((
            false,
            "Ready".into(),
            "Tenant is OK: every mandatory consent is granted and storage is ready".into(),
        ))
    } else {
        Some((
            true,
            after.1,
            new.alarm
                .clone()
                .unwrap_or_else(|| "tenant is not ready".into()),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The async shell
// ---------------------------------------------------------------------------------------------

/// Reconciles one Tenant.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches_synced().await;
    let timer = ctx.metrics.reconcile_started("tenant");
    // The grants in the tenant's namespace, read from the cache once for the whole reconcile
    // (each read unpacks them): the stale ones to delete, the consent lines of the status and
    // the re-checks due. A grant event during the reconcile queues another one.
    let grants = if tenant.meta().deletion_timestamp.is_none() {
        ctx.grants_in(&tenant.namespace_name())
    } else {
        Vec::new()
    };
    let result = reconcile_inner(tenant.clone(), &grants, &ctx).await;
    if let Err(e) = &result {
        timer.error(e.metric_label());
    }
    let requeue = result?;
    // The granted consents' re-checks ride on the Tenant's own wake-ups.
    let grants_due = if tenant.meta().deletion_timestamp.is_none() {
        wake_due_grants(&tenant, &grants, &ctx, Timestamp::now())
    } else {
        None
    };
    Ok(match earliest(requeue, grants_due) {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// Among a tenant's grants whose re-check its Tenant wakes
/// ([`woken_by_tenant`](super::consent::woken_by_tenant)): the ones due at `now`, and the wait
/// until the next one is due.
pub fn grants_to_wake(
    grants: &[Arc<ConsentGrant>],
    now: Timestamp,
) -> (Vec<ObjectRef<ConsentGrant>>, Option<Duration>) {
    let mut due = Vec::new();
    let mut next: Option<Duration> = None;
    for grant in grants {
        let Some(status) = grant.status.as_ref().filter(|s| woken_by_tenant(s)) else {
            continue;
        };
        let Some(at) = status.next_check_at.as_ref().map(|t| t.0) else {
            continue;
        };
        match Duration::try_from(at.duration_since(now)) {
            Ok(wait) if !wait.is_zero() => {
                next = earliest(next, Some(wait));
            }
            _ => due.push(ObjectRef::from_obj(grant.as_ref())),
        }
    }
    (due, next)
}

/// Asks the ConsentGrant controller to re-check the tenant's granted consents that are due,
/// and returns when the next one is (the Tenant comes back then at the latest). `in_namespace`
/// are the grants in the tenant's namespace; those naming another Tenant are not its own.
fn wake_due_grants(
    tenant: &Tenant,
    in_namespace: &[Arc<ConsentGrant>],
    ctx: &Context,
    now: Timestamp,
) -> Option<Duration> {
    let grants = super::grants::naming(&tenant.name_any(), in_namespace);
    let (due, next) = grants_to_wake(&grants, now);
    if !due.is_empty() {
        ctx.wake_consents(ObjectRef::from_obj(tenant));
    }
    // Come back shortly after a due grant was woken: its check writes a new `nextCheckAt`
    // (which triggers this reconcile anyway); the wait covers a wake-up that was lost.
    next.map(|n| n.max(Duration::from_secs(1)))
}

/// One reconcile, given the grants in the tenant's namespace as last seen; `Ok(Some(wait))`
/// to come back after `wait`, `Ok(None)` to wait for a change.
async fn reconcile_inner(
    tenant: Arc<Tenant>,
    grants: &[Arc<ConsentGrant>],
    ctx: &Arc<Context>,
) -> Result<Option<Duration>> {
    let ctx = ctx.as_ref();
    let key = super::object_key(tenant.as_ref());
    if tenant.meta().deletion_timestamp.is_some() {
        ctx.resolved_tenant_ids.forget(&tenant);
        // Owned objects go with the Tenant through garbage collection; storage outside the
        // cluster goes here, before the finalizer is released.
        return finalize(&tenant, ctx).await;
    }
    if tenant.spec.suspend {
        tracing::info!(tenant = %tenant.name_any(), "suspended; not reconciling");
        return Ok(None);
    }
    let config = ctx.config.as_ref();
    let now = Timestamp::now();

    // 1. The spec, by the CRD's own rules (plus what only status remembers).
    let blocker = validate(&tenant, config).err().map(Blocker::InvalidSpec);

    // 2. The Entra tenant id.
    let (tenant_id, blocker) = match blocker {
        Some(b) => (None, Some(b)),
        None => match tenant_id(&tenant, ctx).await {
            Ok(id) => (Some(id), None),
            Err(GraphError::TenantNotFound { tenant: t }) => (
                None,
                Some(Blocker::TenantNotFound(format!(
                    "no Entra tenant answers for {t:?}: check spec.domain (or set spec.tenantId)"
                ))),
            ),
            Err(e) => (None, Some(Blocker::TenantIdUnavailable(e.to_string()))),
        },
    };

    // 3. Children, only for a valid tenant with a known tenant id.
    let children = desired_children(&tenant, config);
    if blocker.is_none() {
        ensure_finalizer(&tenant, ctx).await?;
        provision(&tenant, &children, grants, ctx).await?;
        forward_recheck(&tenant, grants, ctx).await?;
    }

    // 4. Status.
    let grants_by_name: BTreeMap<String, &ConsentGrant> =
        grants.iter().map(|g| (g.name_any(), g.as_ref())).collect();
    let required = required_consents(&tenant, config);
    let consents = required
        .into_iter()
        .map(|r| {
            let grant = grants_by_name.get(&consent_grant_name(r.key)).copied();
            (r, grant)
        })
        .collect();
    // Storage: every location ensured or checked; failures are status lines, not errors.
    let storage = match (&ctx.storage, &blocker) {
        (Some(storage), None) => Some(storage.reconcile(&tenant).await),
        // Not checked while blocked: the lines of the last check stand (the bots read their
        // endpoints from them).
        (Some(_), Some(_)) => Some(
            tenant
                .status
                .as_ref()
                .map(|s| s.storage.clone())
                .unwrap_or_default(),
        ),
        (None, _) => None,
    };
    let storage_ready = storage
        .as_ref()
        .is_none_or(|lines| lines.iter().all(|l| l.ready));
    let observed = Observed {
        tenant: &tenant,
        tenant_id,
        blocker: blocker.clone(),
        consents,
        storage,
        now,
    };
    let status = compute_status(&observed);
    write_status(&tenant, status, ctx).await?;

    ctx.backoff.succeeded(&key, Retried::Reconcile);
    Ok(match blocker {
        Some(Blocker::InvalidSpec(_)) => None,
        Some(_) => Some(ctx.backoff.failed(&key, Retried::TenantId)),
        None if !storage_ready => Some(ctx.backoff.failed(&key, Retried::Storage)),
        None => {
            ctx.backoff.succeeded(&key, Retried::TenantId);
            ctx.backoff.succeeded(&key, Retried::Storage);
            Some(super::jittered(RESYNC, 0.1))
        }
    })
}

/// Finalizer that holds a `deletionPolicy: Delete` Tenant until its storage is deleted.
pub const STORAGE_FINALIZER: &str = "recording.m365.io/storage-cleanup";

/// Whether the tenant needs the storage finalizer: only when deleting it must delete storage
/// outside the cluster.
fn needs_finalizer(tenant: &Tenant, ctx: &Context) -> bool {
    ctx.storage.is_some() && tenant.spec.deletion_policy == DeletionPolicy::Delete
}

/// Adds or removes the storage finalizer to match the deletion policy.
async fn ensure_finalizer(tenant: &Tenant, ctx: &Context) -> Result<()> {
    let has = tenant.finalizers().iter().any(|f| f == STORAGE_FINALIZER);
    let needs = needs_finalizer(tenant, ctx);
    if has == needs {
        return Ok(());
    }
    let mut finalizers: Vec<String> = tenant
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != STORAGE_FINALIZER)
        .cloned()
        .collect();
    if needs {
        finalizers.push(STORAGE_FINALIZER.to_string());
    }
    set_finalizers(tenant, finalizers, ctx).await
}

/// Replaces the finalizer list, guarded by the resourceVersion it was read at (a concurrent
/// change by someone else is a conflict and a retry, never a lost finalizer).
async fn set_finalizers(tenant: &Tenant, finalizers: Vec<String>, ctx: &Context) -> Result<()> {
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": tenant.resource_version()}});
    api.patch(
        &tenant.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A Tenant being deleted: with `deletionPolicy: Delete` its storage is deleted first; a
/// failure keeps the finalizer, says why on the Tenant, and is retried with backoff.
async fn finalize(tenant: &Tenant, ctx: &Context) -> Result<Option<Duration>> {
    if !tenant.finalizers().iter().any(|f| f == STORAGE_FINALIZER) {
        return Ok(None);
    }
    let key = super::object_key(tenant);
    let outcome = match &ctx.storage {
        Some(storage) => storage.cleanup(tenant).await,
        None => Ok(Vec::new()),
    };
    match outcome {
        Ok(done) => {
            let note = if done.is_empty() {
                "nothing to delete".to_string()
            } else {
                done.iter()
                    .map(|(request, outcome)| {
                        format!(
                            "{} storage in {}: {outcome}",
                            request.role.as_str(),
                            request.location
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            ctx.events
                .publish(
                    tenant,
                    false,
                    "StorageDeleted",
                    "Cleanup",
                    format!("deletionPolicy Delete: {note}"),
                )
                .await;
            let rest = tenant
                .finalizers()
                .iter()
                .filter(|f| f.as_str() != STORAGE_FINALIZER)
                .cloned()
                .collect();
            set_finalizers(tenant, rest, ctx).await?;
            ctx.backoff.succeeded(&key, Retried::Cleanup);
            Ok(None)
        }
        Err(error) => {
            let message = format!(
                "deleting the tenant's storage failed, the Tenant is kept until it succeeds: {error}"
            );
            let mut status = tenant.status.clone().unwrap_or_default();
            let generation = tenant.meta().generation;
            // Only Ready changes; the other conditions stay as last computed.
            let ready = conditions::merge(
                &status.conditions,
                vec![Desired::new(
                    READY,
                    Status::False,
                    reason::CLEANUP_FAILED,
                    message.clone(),
                )],
                generation,
                Timestamp::now(),
            );
            status.conditions.retain(|c| c.type_ != READY);
            for c in &mut status.conditions {
                c.observed_generation = generation;
            }
            status.conditions.extend(ready);
            status.health = Some(Health::Warning);
            status.alarm = Some(message.clone());
            write_status(tenant, status, ctx).await?;
            ctx.events
                .publish(tenant, true, reason::CLEANUP_FAILED, "Cleanup", message)
                .await;
            Ok(Some(ctx.backoff.failed(&key, Retried::Cleanup)))
        }
    }
}

/// The CRD's rules, plus the immutability rules only status can check (the API server checks
/// them against the previous object, which a reconcile does not have).
fn validate(tenant: &Tenant, config: &OperatorConfig) -> Result<(), Violations> {
    let mut violations = validate_tenant(tenant, None)
        .err()
        .map(|v| v.0)
        .unwrap_or_default();
    let known = tenant.status.as_ref().and_then(|s| s.tenant_id.as_deref());
    if let (Some(spec_id), Some(known)) = (tenant.spec.tenant_id.as_deref(), known) {
        if !spec_id.eq_ignore_ascii_case(known) {
            violations.push(crate::crd::validation::Violation {
                field: "spec.tenantId".into(),
                message: format!(
                    "tenantId is immutable once set (the tenant was onboarded as {known})"
                ),
            });
        }
    }
    for key in unknown_optional_consents(tenant, config) {
        violations.push(crate::crd::validation::Violation {
            field: "spec.optionalConsents".into(),
            message: format!(
                "{key:?} is not a consent of the operator configuration (known: {})",
                config
                    .consents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Violations(violations))
    }
}

/// The tenant id: from the spec, from status once resolved, or from the domain's OpenID
/// configuration.
async fn tenant_id(tenant: &Tenant, ctx: &Context) -> Result<String, GraphError> {
    if let Some(id) = tenant.entra_tenant_id() {
        if tenant.spec.tenant_id.is_none() {
            ctx.resolved_tenant_ids.forget(tenant);
        }
        return Ok(id);
    }
    if let Some(id) = ctx.resolved_tenant_ids.get(tenant) {
        return Ok(id);
    }
    let id = ctx.checker.resolve_tenant_id(&tenant.spec.domain).await?;
    ctx.resolved_tenant_ids.remember(tenant, &id);
    Ok(id)
}

/// Applies the tenant's children and deletes the ConsentGrants it no longer needs.
async fn provision(
    tenant: &Tenant,
    children: &Children,
    in_namespace: &[Arc<ConsentGrant>],
    ctx: &Context,
) -> Result<()> {
    let client = ctx.client.clone();
    let ns = tenant.namespace_name();
    apply(
        &Api::<Namespace>::all(client.clone()),
        &children.namespace,
        &ctx.applied,
    )
    .await?;
    // Everything else lives in the namespace and depends on nothing but it: applied side by
    // side, so a new tenant waits for two round trips instead of one per object.
    let grants: Api<ConsentGrant> = Api::namespaced(client.clone(), &ns);
    futures::try_join!(
        apply_in(&client, &children.quota, &ctx.applied),
        apply_in(&client, &children.network_policy, &ctx.applied),
        futures::future::try_join_all(children.grants.iter().map(|grant| apply(
            &grants,
            grant,
            &ctx.applied
        ))),
    )?;

    // A consent the tenant no longer needs (Pro → Essentials drops the paired bot's).
    let wanted: BTreeSet<String> = children.grants.iter().map(|g| g.name_any()).collect();
    for stale in super::grants::naming(&tenant.name_any(), in_namespace)
        .into_iter()
        .filter(|g| !wanted.contains(&g.name_any()))
    {
        match grants
            .delete(&stale.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {
                forget(&ctx.applied, stale.as_ref());
                ctx.events
                    .publish(
                        tenant,
                        false,
                        "ConsentRemoved",
                        "Reconcile",
                        format!(
                            "consent {} is no longer needed by license {:?}",
                            stale.spec.consent, tenant.spec.license
                        ),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes the status when it changed, with an Event on each transition.
async fn write_status(tenant: &Tenant, status: TenantStatus, ctx: &Context) -> Result<()> {
    let old = tenant.status.as_ref();
    let seen = old.map(StatusDigest::of);
    let new = StatusDigest::of(&status);
    if !status_changed(seen.as_ref(), &new) || may_wait_for_first_checks(seen.as_ref(), &new) {
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "status": status,
    });
    api.patch_status(
        &tenant.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    if let Some((warning, reason, note)) = transition_event(old, &status) {
        ctx.events
            .publish(tenant, warning, &reason, "Reconcile", note)
            .await;
    }
    Ok(())
}

/// Asks every ConsentGrant of the tenant for an immediate re-check, when the Tenant's
/// `recording.m365.io/recheck-at` annotation names a request its grants have not seen.
pub async fn forward_recheck(
    tenant: &Tenant,
    in_namespace: &[Arc<ConsentGrant>],
    ctx: &Context,
) -> Result<()> {
    let Some(requested) = tenant.annotations().get(RECHECK_ANNOTATION) else {
        return Ok(());
    };
    let ns = tenant.namespace_name();
    let api: Api<ConsentGrant> = Api::namespaced(ctx.client.clone(), &ns);
    for grant in in_namespace {
        if grant.annotations().get(RECHECK_ANNOTATION) != Some(requested) {
            let patch = json!({"metadata": {"annotations": {RECHECK_ANNOTATION: requested}}});
            api.patch(
                &grant.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
    }
    Ok(())
}

/// What to do after a failed reconcile: retry with per-tenant exponential backoff.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx
        .backoff
        .failed(&super::object_key(tenant.as_ref()), Retried::Reconcile);
    tracing::warn!(tenant = %tenant.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::ConsentGrantStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A valid Tenant of the given license, for tests in this and neighbouring modules.
    pub(crate) fn tenant(license: &str) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "contoso", "generation": 1,
                         "uid": "0b7c4e1a-2f3d-4c5b-8a9e-1d2c3b4a5f60"},
            "spec": {
                "customerName": "Contoso", "domain": "contoso.onmicrosoft.com",
                "shortName": "Contoso", "contactEmails": ["ops@contoso.com"],
                "adminUpns": ["admin@contoso.onmicrosoft.com"], "license": license,
                "includedUsers": 10, "storage": {"location": "westeurope"}
            }
        }))
        .unwrap()
    }

    /// The tenant's grants, each `None` (never checked) or checked with a state.
    fn grants(
        config: &OperatorConfig,
        t: &Tenant,
        states: &[Option<ConsentState>],
    ) -> Vec<ConsentGrant> {
        let children = desired_children(t, config);
        assert_eq!(children.grants.len(), states.len());
        children
            .grants
            .into_iter()
            .zip(states)
            .map(|(mut g, state)| {
                g.status = state.map(|state| ConsentGrantStatus {
                    state: Some(state),
                    last_checked_at: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
                    ..Default::default()
                });
                g
            })
            .collect()
    }

    fn status(t: &Tenant, config: &OperatorConfig, grants: &[ConsentGrant]) -> TenantStatus {
        let consents = required_consents(t, config)
            .into_iter()
            .map(|r| {
                let name = consent_grant_name(r.key);
                (r, grants.iter().find(|g| g.name_any() == name))
            })
            .collect();
        compute_status(&Observed {
            tenant: t,
            tenant_id: Some("00000000-0000-0000-0000-0000000000c1".into()),
            blocker: None,
            consents,
            storage: None,
            now: Timestamp::from_second(1_000_100).unwrap(),
        })
    }

    fn reason(s: &TenantStatus, type_: &str) -> (String, String) {
        let c = conditions::find(&s.conditions, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_blocked_tenant_keeps_its_storage_lines_and_says_storage_was_not_checked() {
        let config = OperatorConfig::default();
        let t = tenant("Essentials");
        let line = StorageLocationStatus {
            location: "westeurope".into(),
            role: "default".into(),
            name: None,
            endpoint: Some("https://recweu.blob.core.windows.net/contoso-default".into()),
            ready: true,
            message: None,
        };
        let s = compute_status(&Observed {
            tenant: &t,
            tenant_id: None,
            blocker: Some(Blocker::TenantIdUnavailable("throttled".into())),
            consents: required_consents(&t, &config)
                .into_iter()
                .map(|r| (r, None))
                .collect(),
            storage: Some(vec![line.clone()]),
            now: Timestamp::from_second(1_000_100).unwrap(),
        });
        assert_eq!(s.storage, [line]);
        assert_eq!(
            reason(&s, STORAGE_READY),
            ("Unknown".into(), reason::NOT_CHECKED.into())
        );
        assert_eq!(reason(&s, READY).0, "False");
    }

    #[test]
    fn before_the_first_checks_the_tenant_is_checking_not_missing_consents() {
        let config = OperatorConfig::default();
        let mut t = tenant("Essentials");
        let n = required_consents(&t, &config).len();
        let s = status(&t, &config, &grants(&config, &t, &vec![None; n]));
        assert_eq!(s.health, Some(Health::Warning));
        assert_eq!(
            reason(&s, READY),
            ("False".into(), CHECKING_CONSENTS.into())
        );
        assert_eq!(
            reason(&s, CONSENTS_GRANTED),
            ("Unknown".into(), CHECKING_CONSENTS.into())
        );
        assert_eq!(s.alarm.as_deref(), Some(CHECKING_MESSAGE));
        assert_eq!(transition_event(None, &s), None, "progress, not an alarm");

        // One grant answers Granted: the rest are still unchecked, the write may wait.
        let mut states = vec![None; n];
        states[0] = Some(ConsentState::Granted);
        let one = status(&t, &config, &grants(&config, &t, &states));
        t.status = Some(s.clone());
        let d = StatusDigest::of;
        assert!(status_changed(Some(&d(&s)), &d(&one)));
        assert!(may_wait_for_first_checks(Some(&d(&s)), &d(&one)));

        // One answers Pending: that is news for the customer, written with a Warning Event.
        states[0] = Some(ConsentState::Pending);
        let missing = status(&t, &config, &grants(&config, &t, &states));
        assert_eq!(reason(&missing, READY).1, reason::CONSENTS_MISSING);
        assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&missing)));
        let (warning, event_reason, note) = transition_event(Some(&s), &missing).unwrap();
        assert!(warning);
        assert_eq!(event_reason, reason::CONSENTS_MISSING);
        assert!(note.contains("must grant consent for"), "{note}");

        // All granted: Ready, written, with the Ready Event.
        let ready = status(
            &t,
            &config,
            &grants(&config, &t, &vec![Some(ConsentState::Granted); n]),
        );
        assert_eq!(ready.health, Some(Health::Ok));
        assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&ready)));
        assert_eq!(transition_event(Some(&s), &ready).unwrap().1, "Ready");
    }

    #[test]
    fn the_write_decision_ignores_condition_times_and_a_status_recomputed_from_the_cache() {
        let config = OperatorConfig::default();
        let mut t = tenant("Pro");
        let n = required_consents(&t, &config).len();
        let granted = grants(&config, &t, &vec![Some(ConsentState::Granted); n]);
        let ready = status(&t, &config, &granted);

        // The same status computed a minute later: only condition times differ.
        let mut later = ready.clone();
        for c in &mut later.conditions {
            c.last_transition_time = Time(Timestamp::from_second(1_900_000_000).unwrap());
        }
        assert_eq!(StatusDigest::of(&ready), StatusDigest::of(&later));

        // A consent line that changes is a write, even while nothing else does.
        let mut other_url = ready.clone();
        other_url.consents[0].consent_url = Some("https://login.example/other".into());
        assert!(status_changed(
            Some(&StatusDigest::of(&ready)),
            &StatusDigest::of(&other_url)
        ));

        // The cached Tenant keeps its whole status (only metadata no reconcile reads is
        // dropped).
        t.status = Some(ready.clone());
        let mut cached = t.clone();
        crate::controller::slim(&mut cached);
        let kept = cached.status.as_ref().unwrap();
        assert_eq!(kept, &ready);
        assert_eq!(kept.tenant_id, ready.tenant_id);
        assert_eq!(kept.health, ready.health);
        assert_eq!(kept.storage, ready.storage);
        assert_eq!(
            conditions::find(&kept.conditions, READY),
            conditions::find(&ready.conditions, READY)
        );
        // A status recomputed from the cached Tenant is the status last written: no write.
        let again = status(&cached, &config, &granted);
        assert!(!status_changed(
            Some(&StatusDigest::of(&ready)),
            &StatusDigest::of(&again)
        ));
        assert_eq!(transition_event(cached.status.as_ref(), &again), None);
    }

    #[test]
    fn a_status_change_beyond_the_consent_lines_is_written_while_checking() {
        let config = OperatorConfig::default();
        let t = tenant("Pro");
        let n = required_consents(&t, &config).len();
        let s = status(&t, &config, &grants(&config, &t, &vec![None; n]));
        let mut newer = s.clone();
        newer.observed_generation = Some(2);
        let d = StatusDigest::of;
        assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&newer)));
        assert!(
            !may_wait_for_first_checks(None, &d(&s)),
            "the first status is always written"
        );
    }
}
