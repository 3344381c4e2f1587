//! The ConsentGrant controller: is this admin consent given?
//!
//! It runs per Tenant: a reconcile takes the Tenant's grants (those in its namespace that name
//! it) and reconciles each on its own rules; the Tenant comes back at the earliest wait any of
//! them asks for. Grants no Tenant covers (their Tenant missing, or made outside its
//! namespace) are [strays](reconcile_strays), reconciled one by one.
//!
//! One grant's reconcile: validate → refuse what the platform's tokens must not check
//! ([`not_trusted`]: outside its Tenant's namespace, or another application than the
//! configuration's for its consent) → find the Tenant and its Entra tenant id → build the
//! admin-consent URL → if a check is due (new object, spec change,
//! `recording.m365.io/recheck-at` changed, or `status.nextCheckAt` reached) ask the shared
//! [`ConsentChecker`](crate::graph::ConsentChecker) about *all* of the tenant's consents at
//! once (one `$batch` serves the tenant's every grant; a due grant takes any check of its
//! tenant started since the middle of its wait, so the grants of a tenant share one check per
//! poll and one schedule) → derive the state, with `Revoked` from history → write status and
//! an Event on each transition (a granted consent's check that changed nothing is not written:
//! see [`quiet`]) → come back at `nextCheckAt`.
//!
//! The redirect endpoint (`/consent/callback`, served on the public listener)
//! does what the annotation does: it stamps `recheck-at` on the grant
//! named by the redirect's `state`, so the check runs at once.
//! The state is signed ([`consent_state`]): the endpoint touches no grant it did not name
//! itself.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{earliest, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY};
use crate::config::{OperatorConfig, PollingConfig, DIRECTORY_CONSENT};
use crate::crd::validation::validate_consent_grant;
use crate::crd::{AdministratorState, AdministratorStatus, TeamsAppStatus};
use crate::crd::{
    ConsentGrant, ConsentGrantStatus, ConsentState, Tenant, FIELD_MANAGER, RECHECK_ANNOTATION,
};
use crate::graph::admins::{AdminCheck, AdminState};
use crate::graph::teams_catalog::CatalogCheck;
use crate::graph::{next_check_after, schedule_rng, CheckState, ConsentCheck, ConsentSpec};

pub use crate::conditions::GRANTED;

mod quiet;
mod status;

pub use quiet::*;
pub use status::*;

// ---------------------------------------------------------------------------------------------
// The async shell
// ---------------------------------------------------------------------------------------------

/// The admin-consent URL's `state` at `now`: the grant's namespace and name, signed with the
/// Quick Start keys ([`crate::consent_link`]) so the public callback can trust it. Without
/// Quick Start links configured the URL carries no state (the callback then re-checks nothing;
/// the grant is checked on its schedule). Keys that cannot be read keep the state of the URL
/// the status has, if any.
pub async fn consent_state(grant: &ConsentGrant, ctx: &Context, now: Timestamp) -> String {
    let Some(links) = &ctx.links else {
        return String::new();
    };
    match links.keys().await {
        Ok(keys) => crate::consent_link::sign(
            &keys,
            grant.metadata.namespace.as_deref().unwrap_or_default(),
            grant.metadata.name.as_deref().unwrap_or_default(),
            None,
            crate::consent_link::expiry(now, links.validity()),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign the admin-consent links' state");
            grant
                .status
                .as_ref()
                .and_then(|s| s.consent_url.as_deref())
                .and_then(crate::consent_link::state_of)
                .unwrap_or_default()
        }
    }
}

/// Reconciles the ConsentGrants of one Tenant: those in its namespace that name it.
///
/// The controller runs per Tenant, not per grant: one queue entry and one timer per tenant
/// whatever its number of consents, and the grants that share a tenant's check are looked at
/// together. Each grant is reconciled on its own rules ([`reconcile_grant`]); the Tenant comes
/// back at the earliest wait any of them asks for. Grants no Tenant covers are
/// [strays](reconcile_strays).
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches_synced().await;
    let timer = ctx.metrics.reconcile_started("consentgrant");
    let grants = ctx.grants_of(&tenant.namespace_name(), &tenant.name_any());
    let results = futures::future::join_all(
        grants
            .iter()
            .map(|g| reconcile_grant(g.clone(), &grants, Some(&tenant), &ctx)),
    )
    .await;
    let mut next: Option<Duration> = None;
    let mut failed = None;
    for result in results {
        match result {
            Ok(wait) => next = earliest(next, wait),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        timer.error(e.metric_label());
        return Err(e);
    }
    ctx.backoff
        .succeeded(&super::object_key(tenant.as_ref()), Retried::Consents);
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Reconciles one ConsentGrant (as the API server sent it: unpacked), among `siblings`, the
/// grants of the same tenant (itself included) as the reconcile found them, for `tenant`, the
/// Tenant it names (`None`: there is none); `Ok(Some(wait))` to come back after `wait`,
/// `Ok(None)` to wait for a change.
pub async fn reconcile_grant(
    grant: Arc<ConsentGrant>,
    siblings: &[Arc<ConsentGrant>],
    tenant: Option<&Tenant>,
    ctx: &Context,
) -> Result<Option<Duration>> {
    if grant.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let now = Timestamp::now();
    // A granted consent's checks that changed nothing are not written (see `quiet`): its
    // schedule is the written one carried on by the checks since.
    let written = grant.status.clone();
    let grant = ctx.caches.checks.effective(&grant, &ctx.config.polling);

    if let Err(violations) = validate_consent_grant(&grant, None) {
        let status = blocked_status(
            &grant,
            None,
            reason::INVALID_SPEC,
            format!("the spec breaks these rules: {violations}"),
            now,
        );
        write_status(&grant, status, ctx).await?;
        return Ok(None);
    }

    if let Some(why) = not_trusted(&grant, &ctx.config) {
        write_status(
            &grant,
            blocked_status(&grant, None, reason::NOT_CHECKED, why, now),
            ctx,
        )
        .await?;
        return Ok(None);
    }

    let tenant_id = tenant.and_then(|t| {
        t.entra_tenant_id()
            .or_else(|| ctx.caches.resolved_tenant_ids.get(t))
    });
    let Some(tenant_id) = tenant_id else {
        let message = match tenant {
            None => format!("Tenant {:?} does not exist", grant.spec.tenant_ref),
            Some(_) => format!(
                "waiting for Tenant {:?} to learn its Entra tenant id",
                grant.spec.tenant_ref
            ),
        };
        write_status(
            &grant,
            blocked_status(&grant, None, reason::TENANT_NOT_READY, message, now),
            ctx,
        )
        .await?;
        return Ok(Some(Duration::from_secs(5)));
    };

    let state = consent_state(&grant, ctx, now).await;
    let url = Some(
        ctx.checker
            .consent_url(&tenant_id, &grant.spec.app_id, &state),
    );
    if !check_due(&grant, now) {
        // Nothing to ask Graph yet; keep the URL current and come back when the check is due.
        let mut status = grant.status.clone().unwrap_or_default();
        if status.consent_url != url {
            status.consent_url = url;
            write_status(&grant, status, ctx).await?;
        }
        let next = grant
            .status
            .as_ref()
            .and_then(|s| s.next_check_at.as_ref())
            .map(|t| t.0.duration_since(now));
        let wait = next
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::from_secs(1));
        return Ok(come_back(
            grant.status.as_ref(),
            tenant,
            wait.max(Duration::from_millis(200)),
        ));
    }

    // One check answers for every consent of the tenant; a due grant joins any check of its
    // tenant started since the middle of its wait (see `share_from`).
    let mut specs: Vec<ConsentSpec> = siblings
        .iter()
        .filter(|g| not_trusted(g, &ctx.config).is_none())
        .map(|g| spec_of(g, tenant))
        .collect();
    if !specs.iter().any(|s| s.key == grant.spec.consent) {
        specs.push(spec_of(&grant, tenant));
    }
    let joinable = grant
        .status
        .as_ref()
        .and_then(share_from)
        .map(std::time::SystemTime::from);
    let result = if recheck_requested(&grant) {
        ctx.checker.check_now(&tenant_id, &specs).await
    } else if let Some(joinable) = joinable {
        ctx.checker.check_due(&tenant_id, &specs, joinable).await
    } else {
        ctx.checker.check(&tenant_id, &specs).await
    };
    let check = result.get(&grant.spec.consent).cloned().ok_or_else(|| {
        Error::UnexpectedGraphAnswer(format!(
            "the check of tenant {tenant_id} returned no result for consent {}",
            grant.spec.consent
        ))
    })?;

    let checked_at = Timestamp::try_from(result.checked_at).unwrap_or(now);
    let wait = wait_after_check(
        &grant,
        siblings,
        &check,
        &tenant_id,
        checked_at,
        now,
        &ctx.config.polling,
    );
    let mut status = status_after_check(&grant, url, &check, now, wait);
    if grant.spec.consent == DIRECTORY_CONSENT {
        status.administrators =
            administrators_after_check(&status.administrators, &check, &result.administrators);
        status.teams_app = match &result.teams_app {
            _ if ctx.config.teams_app_id.is_none() => None,
            Some(found) => Some(teams_app_status(found)),
            // Not asked this time (throttled): the last answer stands.
            None => status.teams_app.take(),
        };
    }
    let action = come_back(Some(&status), tenant, wait);
    let refresh = ctx.config.polling.granted_status_refresh;
    if unchanged_check(written.as_ref(), &status, refresh, now) {
        ctx.caches.checks.record(&grant, now);
        ctx.metrics.granted_check_unwritten();
        return Ok(action);
    }
    write_status(&grant, status, ctx).await?;
    ctx.caches.checks.forget(&grant);
    Ok(action)
}

/// Whether the grant's next check is left to its Tenant's reconcile ([`woken_by_tenant`]) or
/// needs a timer of its own.
fn come_back(
    status: Option<&ConsentGrantStatus>,
    tenant: Option<&Tenant>,
    wait: Duration,
) -> Option<Duration> {
    let tenant_alive = tenant.is_some_and(|t| t.meta().deletion_timestamp.is_none());
    if tenant_alive && status.is_some_and(woken_by_tenant) {
        None
    } else {
        Some(wait)
    }
}

/// What a grant's reconcile reads of its Tenant, in eight bytes: which Tenant object it is,
/// its Entra tenant id (spec or status), whether it is being deleted and its administrators
/// (which the `directory` consent's check looks up). A Tenant's change wakes its grants only when this changes; its condition and consent lines, which it writes
/// twice on every onboarding, are the Tenant's own business.
pub fn tenant_facts(tenant: &Tenant) -> u64 {
    crate::hash64(&(
        tenant.meta().uid.as_deref(),
        tenant.spec.tenant_id.as_deref(),
        tenant.status.as_ref().and_then(|s| s.tenant_id.as_deref()),
        tenant.meta().deletion_timestamp.is_some(),
        &tenant.spec.admin_upns,
    ))
}

/// Whether the grant's next check is woken by its Tenant's reconcile (see
/// the Tenant controller's `wake_due_grants`) instead of a timer of the grant's own: a
/// granted consent is only re-checked every few hours to notice a revocation, and the Tenant
/// comes back every few minutes anyway.
///
/// A fully granted tenant thereby has no timer in the consent controller's queue at all, only
/// the Tenant controller's. Grants that are pending, failing or not checked yet keep their
/// tenant's consent timer (seconds to minutes).
pub fn woken_by_tenant(status: &ConsentGrantStatus) -> bool {
    status.state == Some(ConsentState::Granted) && status.next_check_at.is_some()
}

/// How long after `now` the grant's next check is due, once a check of its tenant that
/// started at `checked_at` answered it. Siblings answered by one check share one schedule, so
/// they come due together and share the next check too: counted from the check's start, with
/// the same doubling (from the earliest change among siblings in the same state) and the same
/// jitter.
pub fn wait_after_check(
    grant: &ConsentGrant,
    siblings: &[Arc<ConsentGrant>],
    check: &ConsentCheck,
    tenant_id: &str,
    checked_at: Timestamp,
    now: Timestamp,
    polling: &PollingConfig,
) -> Duration {
    let since = shared_since(grant, siblings).unwrap_or(now);
    let next_in = next_check_after(
        check.state,
        consecutive_pending(since, checked_at, polling.pending_initial),
        polling,
        check.retry_after,
        &mut schedule_rng(tenant_id, checked_at.into()),
    );
    next_wait(checked_at, next_in, now)
}

/// When the consent last changed state, for the doubling pending interval: the earliest
/// change among the siblings in the same state as `grant` (the grant's own when alone), so
/// siblings created or changed together count the same number of pending checks.
pub fn shared_since(grant: &ConsentGrant, siblings: &[Arc<ConsentGrant>]) -> Option<Timestamp> {
    let state = |g: &ConsentGrant| g.status.as_ref().and_then(|s| s.state);
    let changed = |g: &ConsentGrant| {
        g.status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, GRANTED))
            .map(|c| c.last_transition_time.0)
            .or(g.meta().creation_timestamp.as_ref().map(|t| t.0))
    };
    siblings
        .iter()
        .map(|g| g.as_ref())
        .filter(|g| state(g) == state(grant))
        .chain(std::iter::once(grant))
        .filter_map(changed)
        .min()
}

/// The earliest start of a tenant check that may answer this grant when it comes due: the
/// middle of the interval it was waiting (`lastCheckedAt` → `nextCheckAt`).
///
/// Siblings that drifted apart (checked at different instants after a restart, a recheck, a
/// busy queue) thereby join the latest check of their tenant instead of each starting their
/// own, and take its schedule from then on; a granted sibling of a pending tenant (hours
/// between its checks) is answered by the pending siblings' checks (minutes apart) instead of
/// asking Graph for itself. No grant takes an answer older than half its interval.
pub fn share_from(status: &ConsentGrantStatus) -> Option<Timestamp> {
    let due = status.next_check_at.as_ref()?.0;
    let waited = status
        .last_checked_at
        .as_ref()
        .map(|last| due.duration_since(last.0))
        .filter(|waited| waited.is_positive())
        .unwrap_or(SignedDuration::ZERO);
    Some(due - waited / 2)
}

/// The wait from `now` until `checked_at + next_in`, at least 200 ms.
pub fn next_wait(checked_at: Timestamp, next_in: Duration, now: Timestamp) -> Duration {
    let due =
        checked_at + SignedDuration::try_from(next_in).unwrap_or(SignedDuration::from_hours(6));
    Duration::try_from(due.duration_since(now))
        .unwrap_or_default()
        .max(Duration::from_millis(200))
}

/// Writes the status when it changed, with an Event on each state transition.
async fn write_status(
    grant: &ConsentGrant,
    status: ConsentGrantStatus,
    ctx: &Context,
) -> Result<()> {
    let old = grant.status.as_ref();
    if !status_changed(old, &status) {
        return Ok(());
    }
    let api: Api<ConsentGrant> =
        Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "ConsentGrant",
        "status": status,
    });
    api.patch_status(
        &grant.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.consent_status_written(grant, old, &status);
    if let Some((warning, reason, note)) =
        transition_event(grant, old.and_then(|s| s.state), &status)
    {
        ctx.events
            .publish(grant, warning, reason, "CheckConsent", note)
            .await;
    }
    Ok(())
}

/// After a failed reconcile of a Tenant's grants: retry with per-tenant exponential backoff.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx
        .backoff
        .failed(&super::object_key(tenant.as_ref()), Retried::Consents);
    tracing::warn!(tenant = %tenant.name_any(), error = %error, retry_in = ?delay, "consent reconcile failed");
    Action::requeue(delay)
}

// ---------------------------------------------------------------------------------------------
// Strays: grants no Tenant's reconcile covers
// ---------------------------------------------------------------------------------------------

/// How often the grants no Tenant covers are looked at again.
pub const STRAY_INTERVAL: Duration = Duration::from_secs(5);

/// Whether the consent reconcile of a Tenant covers a grant in `namespace` naming `tenant`:
/// that Tenant exists and the grant is in its namespace.
pub fn covered(tenants: &Store<Tenant>, namespace: &str, tenant: &str) -> bool {
    tenants
        .get(&ObjectRef::<Tenant>::new(tenant))
        .is_some_and(|t| t.namespace_name() == namespace)
}

fn grant_covered(grant: &ConsentGrant, ctx: &Context) -> bool {
    covered(
        &ctx.caches.tenants,
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        &grant.spec.tenant_ref,
    )
}

/// Reconciles the grants no Tenant covers, one at a time, when the grant watch reports one
/// and every [`STRAY_INTERVAL`]: a grant whose Tenant does not exist (not yet, or no more)
/// says so in its status, and so does one made by hand outside its Tenant's namespace, which
/// is never checked ([`not_trusted`]). A stray whose Tenant appears is handed to that Tenant's
/// reconcile.
pub async fn reconcile_strays(
    ctx: Arc<Context>,
    mut found: futures::channel::mpsc::UnboundedReceiver<super::grants::Touched>,
) {
    ctx.caches_synced().await;
    let mut strays = std::collections::BTreeSet::new();
    ctx.caches.grants.for_each(|g| {
        if !grant_covered(g, &ctx) {
            strays.insert((g.namespace().unwrap_or_default(), g.name_any()));
        }
    });
    let mut tick = tokio::time::interval(STRAY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Runs as long as the controllers do, whether or not the watches still report.
    let mut reported = true;
    loop {
        tokio::select! {
            next = futures::StreamExt::next(&mut found), if reported => match next {
                Some(t) => { strays.insert((t.namespace, t.name)); }
                None => reported = false,
            },
            _ = tick.tick() => {}
        }
        while let Ok(t) = found.try_recv() {
            strays.insert((t.namespace, t.name));
        }
        for key in strays.clone() {
            let Some(grant) = ctx.caches.grants.get(&key.0, &key.1) else {
                strays.remove(&key);
                continue;
            };
            if grant_covered(&grant, &ctx) {
                strays.remove(&key);
                ctx.wake_consents(ObjectRef::new(&grant.spec.tenant_ref));
                continue;
            }
            let timer = ctx.metrics.reconcile_started("consentgrant");
            let siblings = ctx.grants_of(&key.0, &grant.spec.tenant_ref);
            let tenant = ctx.tenant(&grant.spec.tenant_ref);
            if let Err(error) = reconcile_grant(grant, &siblings, tenant.as_deref(), &ctx).await {
                timer.error(error.metric_label());
                tracing::warn!(grant = %key.1, namespace = %key.0, error = %error, retry_in = ?STRAY_INTERVAL, "reconcile failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
