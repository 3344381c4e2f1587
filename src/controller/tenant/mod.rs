//! The Tenant controller: from a Tenant to everything the customer needs, and the Tenant's
//! health.
//!
//! One reconcile: validate the spec (the CRD's own rules) → know the Entra tenant id (spec, or
//! resolved from the domain once and kept in status) → apply the namespace `tenant-<name>`
//! (unless it exists and is not the Tenant's), the RoleBinding that lets the operator work in
//! it, its ResourceQuota and default-deny NetworkPolicy, and one ConsentGrant per consent the license
//! needs (deleting the ones it no longer needs) → read the grants' states → compute the status
//! (`health`, `alarm`, conditions) → write it only when it changed, with an Event on each
//! transition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::{apply, apply_in, forget, owner_reference};
use super::consent::woken_by_tenant;
use super::{earliest, owned_labels, rules, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY};
use crate::config::{ConsentConfig, Mandatory, OperatorConfig, DIRECTORY_CONSENT};
use crate::crd::tenant::DeletionPolicy;
use crate::crd::tenant::{
    AdministratorState, AdministratorStatus, ConsentSummary, StorageLocationStatus, TeamsAppStatus,
};
use crate::crd::validation::{validate_tenant, Violations};
use crate::crd::{
    ConsentGrant, ConsentGrantSpec, ConsentState, Health, Tenant, TenantStatus, FIELD_MANAGER,
    RECHECK_ANNOTATION, TENANT_UID_LABEL,
};
use crate::graph::GraphError;

pub use crate::conditions::reason::CHECKING_CONSENTS;
pub use crate::conditions::{CONSENTS_GRANTED, STALLED, STORAGE_READY};
const CHECKING_MESSAGE: &str =
    "Waiting for the first check of the tenant's consents with Microsoft Graph.";

/// How often a healthy tenant is looked at again even when nothing changed.
const RESYNC: Duration = Duration::from_secs(600);

mod desired;
mod finalizer;
mod status;

pub use desired::*;
pub use finalizer::*;
pub use status::*;

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
    let grants: Vec<_> = super::grants::naming(&tenant.name_any(), in_namespace)
        .iter()
        .map(|g| ctx.caches.checks.effective(g, &ctx.config.polling))
        .collect();
    let (due, next) = grants_to_wake(&grants, now);
    // Come back shortly after a due grant was woken: a check that finds the consent still
    // granted writes nothing (see `consent::quiet`), so no grant event brings the Tenant back
    // to learn the next due time; the wait also covers a wake-up that was lost.
    let next = if due.is_empty() {
        next
    } else {
        ctx.wake_consents(ObjectRef::from_obj(tenant));
        earliest(next, Some(Duration::from_secs(1)))
    };
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
        ctx.caches.resolved_tenant_ids.forget(&tenant);
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

    // 2. The values that must be unique across Tenants, as far as known, then the Entra
    // tenant id (and it too).
    let conflicts = |id: Option<&str>| {
        let sharing: Vec<Arc<Tenant>> = (ctx.caches.unique.sharing(&tenant, id).iter())
            .filter_map(|name| ctx.caches.tenant(name))
            .collect();
        rules::tenant_conflicts(&tenant, id, sharing.iter().map(|t| t.as_ref()))
    };
    let blocker = blocker.or_else(|| {
        let conflicts = conflicts(tenant.entra_tenant_id().as_deref());
        (!conflicts.is_empty()).then_some(Blocker::Conflict(conflicts))
    });
    let (tenant_id, blocker) = match blocker {
        Some(b) => (None, Some(b)),
        None => match tenant_id(&tenant, ctx).await {
            Ok(id) => {
                let conflicts = conflicts(Some(&id));
                (
                    Some(id),
                    (!conflicts.is_empty()).then_some(Blocker::Conflict(conflicts)),
                )
            }
            Err(GraphError::TenantNotFound { tenant: t }) => (
                None,
                Some(Blocker::TenantNotFound(format!(
                    "no Entra tenant answers for {t:?}: check spec.domain (or set spec.tenantId)"
                ))),
            ),
            Err(e) => (None, Some(Blocker::TenantIdUnavailable(e.to_string()))),
        },
    };

    // 3. Children, only for a valid tenant with a known tenant id, in a namespace that is its
    // own.
    let children = desired_children(&tenant, config);
    let mut applied_hash = tenant.status.as_ref().and_then(|s| s.applied_hash.clone());
    let blocker = match blocker {
        None => namespace_refusal(&children.namespace, &tenant, ctx)
            .await?
            .map(Blocker::NamespaceNotOwned),
        some => some,
    };
    if blocker.is_none() {
        ensure_finalizer(&tenant, ctx).await?;
        let digest = children.digest();
        if applied_hash.as_ref() == Some(&digest) {
            // Applied as they are desired now (by this process or one before it).
            children.assume_applied(&ctx.caches.applied);
        }
        provision(&tenant, &children, grants, ctx).await?;
        applied_hash = Some(digest);
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
    let services = ctx
        .caches
        .services_of(&tenant.namespace_name(), &tenant.name_any());
    let licence = rules::licence_use(&tenant, services.iter().map(|s| s.as_ref()));
    let observed = Observed {
        licence,
        tenant: &tenant,
        tenant_id,
        blocker: blocker.clone(),
        consents,
        storage,
        now,
    };
    let mut status = compute_status(&observed);
    let link = match &ctx.links {
        Some(links) => links.for_tenant(&tenant, now).await,
        None => None,
    };
    status.quick_start_url = link.as_ref().map(|(url, _)| url.clone());
    status.applied_hash = applied_hash;
    write_status(&tenant, &status, ctx).await?;
    let notify_wait = match ctx.notifier.as_deref() {
        Some(notifier) => {
            let handles = crate::notify::Handles {
                client: &ctx.client,
                config: &ctx.config,
                events: &ctx.events,
            };
            crate::notify::reconcile(&tenant, &status, grants, notifier, &handles).await?
        }
        None => None,
    };

    ctx.backoff.succeeded(&key, Retried::Reconcile);
    let renew_link = link.and_then(|(_, renew)| renew);
    let requeue = match blocker {
        // The Tenant watch brings a Tenant in conflict back when another Tenant changes.
        Some(Blocker::InvalidSpec(_) | Blocker::Conflict(_)) => None,
        Some(_) => Some(ctx.backoff.failed(&key, Retried::TenantId)),
        None if !storage_ready => Some(ctx.backoff.failed(&key, Retried::Storage)),
        None => {
            ctx.backoff.succeeded(&key, Retried::TenantId);
            ctx.backoff.succeeded(&key, Retried::Storage);
            Some(super::jittered(RESYNC, 0.1))
        }
    };
    Ok(earliest(earliest(requeue, notify_wait), renew_link))
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
            ctx.caches.resolved_tenant_ids.forget(tenant);
        }
        return Ok(id);
    }
    if let Some(id) = ctx.caches.resolved_tenant_ids.get(tenant) {
        return Ok(id);
    }
    let id = ctx.checker.resolve_tenant_id(&tenant.spec.domain).await?;
    ctx.caches.resolved_tenant_ids.remember(tenant, &id);
    Ok(id)
}

/// Why the tenant's namespace must not be adopted ([`adoption_refusal`]), read from the API
/// unless this process applied it already (then it is the operator's).
async fn namespace_refusal(
    namespace: &Namespace,
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Option<String>> {
    if ctx.caches.applied.knows(namespace) {
        return Ok(None);
    }
    let existing = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&namespace.name_any())
        .await?;
    Ok(existing.and_then(|existing| adoption_refusal(&existing, tenant)))
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
        &ctx.caches.applied,
    )
    .await?;
    // The operator's rights in the namespace, before anything that needs them.
    apply_in(&client, &children.role_binding, &ctx.caches.applied).await?;
    // Everything else lives in the namespace and depends on nothing but it: applied side by
    // side, so a new tenant waits for three round trips instead of one per object.
    let grants: Api<ConsentGrant> = Api::namespaced(client.clone(), &ns);
    futures::try_join!(
        apply_in(&client, &children.quota, &ctx.caches.applied),
        apply_in(&client, &children.network_policy, &ctx.caches.applied),
        futures::future::try_join_all(children.grants.iter().map(|grant| apply(
            &grants,
            grant,
            &ctx.caches.applied
        ))),
    )?;

    // A consent the tenant no longer needs (Pro → Essentials drops the paired bot's).
    let wanted: BTreeSet<String> = children.grants.iter().map(|g| g.name_any()).collect();
    for stale in super::grants::naming(&tenant.name_any(), in_namespace)
        .into_iter()
        .filter(|g| !wanted.contains(&g.name_any()))
    {
        // Only a grant the operator made for this Tenant: one made by hand stays.
        let Some(uid) = made_for(&grants, &stale.name_any(), tenant).await? else {
            continue;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match grants.delete(&stale.name_any(), &params).await {
            Ok(_) => {
                forget(&ctx.caches.applied, stale.as_ref());
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

/// The uid of ConsentGrant `name` if the operator made it for `tenant` (its controller owner
/// reference names the Tenant's uid); `None` for one made by hand, or gone. (The grants' cache
/// keeps no owner references, so the grant is read.)
async fn made_for(
    grants: &Api<ConsentGrant>,
    name: &str,
    tenant: &Tenant,
) -> Result<Option<String>> {
    let Some(grant) = grants.get_opt(name).await? else {
        return Ok(None);
    };
    let ours = grant
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == tenant.meta().uid.as_ref());
    Ok(ours.then(|| grant.uid()).flatten())
}

/// Writes the status when it changed, with an Event on each transition.
async fn write_status(tenant: &Tenant, status: &TenantStatus, ctx: &Context) -> Result<()> {
    let old = tenant.status.as_ref();
    ctx.metrics.tenant_status(&tenant.name_any(), status);
    let seen = old.map(StatusDigest::of);
    let new = StatusDigest::of(status);
    if !status_changed(seen.as_ref(), &new) || may_wait_for_first_checks(seen.as_ref(), &new) {
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "status": status,
    });
    let writing = ctx.caches.own_writes.writing(&tenant.name_any());
    let answer = api
        .patch_status(
            &tenant.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    writing.answered(&answer);
    ctx.metrics.tenant_status_written(tenant, old, status);
    if let Some((warning, reason, note)) = transition_event(old, status) {
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
pub(crate) mod tests;
