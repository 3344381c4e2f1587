//! The ConsentGrant controller: is this admin consent given?
//!
//! It runs per Tenant: a reconcile takes the Tenant's grants (those in its namespace that name
//! it) and reconciles each on its own rules; the Tenant comes back at the earliest wait any of
//! them asks for. Grants no Tenant covers (their Tenant missing, or made outside its
//! namespace) are [strays](reconcile_strays), reconciled one by one.
//!
//! One grant's reconcile: validate → find the Tenant and its Entra tenant id → build the
//! admin-consent URL → if a check is due (new object, spec change,
//! `recording.m365.io/recheck-at` changed, or `status.nextCheckAt` reached) ask the shared
//! [`ConsentChecker`](crate::graph::ConsentChecker) about *all* of the tenant's consents at
//! once (one `$batch` serves the tenant's every grant; a due grant takes any check of its
//! tenant started since the middle of its wait, so the grants of a tenant share one check per
//! poll and one schedule) → derive the state, with `Revoked` from history → write status and
//! an Event on each transition → come back at `nextCheckAt`.
//!
//! The redirect endpoint (`/consent/callback`) does what the annotation does: it stamps
//! `recheck-at` on the grant named by the redirect's `state`, so the check runs at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use super::{earliest, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY};
use crate::config::PollingConfig;
use crate::crd::validation::validate_consent_grant;
use crate::crd::{
    ConsentGrant, ConsentGrantStatus, ConsentState, Tenant, FIELD_MANAGER, RECHECK_ANNOTATION,
};
use crate::graph::{next_check_after, schedule_rng, CheckState, ConsentCheck, ConsentSpec};

pub use crate::conditions::GRANTED;

// ---------------------------------------------------------------------------------------------
// Pure rules
// ---------------------------------------------------------------------------------------------

/// The state a check result means, given the state before it: a consent that was granted and
/// is no longer there is `Revoked`; a check that could not complete keeps the previous state.
pub fn next_state(previous: Option<ConsentState>, found: CheckState) -> ConsentState {
    use ConsentState as S;
    match found {
        CheckState::Granted => S::Granted,
        CheckState::Partial => S::Partial,
        CheckState::Error => S::Error,
        CheckState::Pending => match previous {
            Some(S::Granted | S::Partial | S::Revoked) => S::Revoked,
            _ => S::Pending,
        },
        CheckState::Unknown => previous.unwrap_or(S::Pending),
    }
}

/// Whether a check is due now.
pub fn check_due(grant: &ConsentGrant, now: Timestamp) -> bool {
    let Some(status) = &grant.status else {
        return true;
    };
    status.state.is_none()
        || status.observed_generation != grant.meta().generation
        || recheck_requested(grant)
        || status.next_check_at.as_ref().is_none_or(|t| t.0 <= now)
}

/// Whether the recheck annotation names a request no check has answered yet.
pub fn recheck_requested(grant: &ConsentGrant) -> bool {
    let requested = recheck_request(grant);
    requested.is_some()
        && requested.as_ref()
            != grant
                .status
                .as_ref()
                .and_then(|s| s.last_recheck_request.as_ref())
}

/// The recheck request of `grant` as `status.lastRecheckRequest` records it: the annotation's
/// value, or for a value longer than the field's 64 characters, its SHA-256 in hex (the
/// annotation is the user's, of any length; a longer value in the status would have the API
/// server refuse every status write of the grant).
pub fn recheck_request(grant: &ConsentGrant) -> Option<String> {
    use sha2::{Digest, Sha256};
    let value = grant.annotations().get(RECHECK_ANNOTATION)?;
    if value.chars().count() <= 64 {
        return Some(value.clone());
    }
    let digest = Sha256::digest(value.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// How many pending checks have happened since the consent last changed, for the doubling
/// poll interval: with intervals `initial · 2^i`, `n` checks take `initial · (2^n − 1)`.
pub fn consecutive_pending(since: Timestamp, now: Timestamp, initial: Duration) -> u32 {
    let elapsed = now.duration_since(since).as_secs_f64().max(0.0);
    let initial = initial.as_secs_f64().max(1.0);
    (elapsed / initial + 1.0).log2().floor().max(0.0) as u32
}

/// The grant's status after a check.
pub fn status_after_check(
    grant: &ConsentGrant,
    url: Option<String>,
    check: &ConsentCheck,
    now: Timestamp,
    next_in: Duration,
) -> ConsentGrantStatus {
    let previous = grant.status.clone().unwrap_or_default();
    let state = next_state(previous.state, check.state);
    let unknown = check.state == CheckState::Unknown;
    let granted_at = match state {
        ConsentState::Granted => previous
            .granted_at
            .clone()
            .filter(|_| previous.state == Some(ConsentState::Granted))
            .or(Some(Time(now))),
        ConsentState::Partial => previous.granted_at.clone(),
        _ => None,
    };
    let message = if unknown {
        format!("{} (last known state kept)", check.message)
    } else if state == ConsentState::Revoked {
        format!(
            "consent was granted before and is gone now: {}",
            check.message
        )
    } else {
        check.message.clone()
    };
    let generation = grant.meta().generation;
    let desired = vec![
        Desired::new(
            GRANTED,
            Status::from_bool(state == ConsentState::Granted),
            state.as_str(),
            message.clone(),
        ),
        Desired::new(
            READY,
            Status::from_bool(state == ConsentState::Granted),
            state.as_str(),
            message.clone(),
        ),
    ];
    ConsentGrantStatus {
        observed_generation: generation,
        state: Some(state),
        consent_url: url,
        granted_permissions: if unknown {
            previous.granted_permissions
        } else {
            check.granted.clone()
        },
        missing_permissions: if unknown {
            previous.missing_permissions
        } else {
            check.missing.clone()
        },
        granted_at,
        last_checked_at: Some(Time(now)),
        next_check_at: Some(Time(
            now + SignedDuration::try_from(next_in).unwrap_or(SignedDuration::from_hours(6)),
        )),
        last_recheck_request: recheck_request(grant),
        message: Some(message),
        conditions: conditions::merge(&previous.conditions, desired, generation, now),
    }
}

/// A status for a grant that cannot be checked (invalid spec, missing tenant).
pub fn blocked_status(
    grant: &ConsentGrant,
    url: Option<String>,
    reason: &str,
    message: String,
    now: Timestamp,
) -> ConsentGrantStatus {
    let previous = grant.status.clone().unwrap_or_default();
    let state = if reason == reason::INVALID_SPEC {
        ConsentState::Error
    } else {
        previous.state.unwrap_or(ConsentState::Pending)
    };
    let generation = grant.meta().generation;
    let desired = vec![
        Desired::new(GRANTED, Status::Unknown, reason, message.clone()),
        Desired::new(READY, Status::False, reason, message.clone()),
    ];
    ConsentGrantStatus {
        observed_generation: generation,
        state: Some(state),
        consent_url: url.or(previous.consent_url),
        message: Some(message),
        conditions: conditions::merge(&previous.conditions, desired, generation, now),
        ..previous
    }
}

/// Whether a status write is due: anything but condition timestamps changed.
fn status_changed(old: Option<&ConsentGrantStatus>, new: &ConsentGrantStatus) -> bool {
    let Some(old) = old else { return true };
    let (mut a, mut b) = (old.clone(), new.clone());
    let same = conditions::same_ignoring_time(&a.conditions, &b.conditions);
    a.conditions.clear();
    b.conditions.clear();
    a != b || !same
}

/// The Event a state change deserves: `(warning, reason, note)`.
pub fn transition_event(
    grant: &ConsentGrant,
    old: Option<ConsentState>,
    new: &ConsentGrantStatus,
) -> Option<(bool, &'static str, String)> {
    let state = new.state?;
    // A grant's first check records where the consent stands; Pending or Granted there is
    // not a change the consent went through, and the Tenant's own Event (consents missing, or
    // Ready) tells the customer's story. A first check that finds a problem (Partial, Error)
    // has its Event.
    if old == Some(state)
        || (old.is_none() && matches!(state, ConsentState::Pending | ConsentState::Granted))
    {
        return None;
    }
    let consent = &grant.spec.consent;
    let detail = new.message.clone().unwrap_or_default();
    Some(match state {
        ConsentState::Granted => (
            false,
            reason::CONSENT_GRANTED,
            format!("consent {consent} is granted"),
        ),
        ConsentState::Pending => (
            false,
            reason::CONSENT_PENDING,
            format!("waiting for the customer's Global admin to grant consent {consent}"),
        ),
        ConsentState::Partial => (
            true,
            reason::CONSENT_PARTIAL,
            format!(
                "consent {consent} lacks: {}",
                new.missing_permissions.join(", ")
            ),
        ),
        ConsentState::Revoked => (
            true,
            reason::CONSENT_REVOKED,
            format!("consent {consent} was revoked: {detail}"),
        ),
        ConsentState::Error => (
            true,
            reason::CONSENT_CHECK_FAILED,
            format!("consent {consent}: {detail}"),
        ),
    })
}

fn spec_of(grant: &ConsentGrant) -> ConsentSpec {
    ConsentSpec {
        key: grant.spec.consent.clone(),
        app_id: grant.spec.app_id.clone(),
        application_permissions: grant.spec.application_permissions.clone(),
        delegated_scopes: grant.spec.delegated_scopes.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The async shell
// ---------------------------------------------------------------------------------------------

/// The admin-consent URL's `state`: the grant's `namespace/name`.
pub fn consent_state(grant: &ConsentGrant) -> String {
    format!(
        "{}/{}",
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        grant.metadata.name.as_deref().unwrap_or_default()
    )
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

    let tenant_id = tenant.and_then(|t| {
        t.entra_tenant_id()
            .or_else(|| ctx.resolved_tenant_ids.get(t))
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

    let state = consent_state(&grant);
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
    let mut specs: Vec<ConsentSpec> = siblings.iter().map(|g| spec_of(g)).collect();
    if !specs.iter().any(|s| s.key == grant.spec.consent) {
        specs.push(spec_of(&grant));
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
    let status = status_after_check(&grant, url, &check, now, wait);
    let action = come_back(Some(&status), tenant, wait);
    write_status(&grant, status, ctx).await?;
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
/// its Entra tenant id (spec or status) and whether it is being deleted. A Tenant's change
/// wakes its grants only when this changes; its condition and consent lines, which it writes
/// twice on every onboarding, are the Tenant's own business.
pub fn tenant_facts(tenant: &Tenant) -> u64 {
    crate::hash64(&(
        tenant.meta().uid.as_deref(),
        tenant.spec.tenant_id.as_deref(),
        tenant.status.as_ref().and_then(|s| s.tenant_id.as_deref()),
        tenant.meta().deletion_timestamp.is_some(),
    ))
}

/// Whether the grant's next check is woken by its Tenant's reconcile (see
/// [`crate::controller::tenant::wake_due_grants`]) instead of a timer of the grant's own: a
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
        &ctx.tenants,
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        &grant.spec.tenant_ref,
    )
}

/// Reconciles the grants no Tenant covers, one at a time, when the grant watch reports one
/// and every [`STRAY_INTERVAL`]: a grant whose Tenant does not exist (not yet, or no more)
/// says so in its status, and one made by hand outside its Tenant's namespace is checked
/// like any other. A stray whose Tenant appears is handed to that Tenant's reconcile.
pub async fn reconcile_strays(
    ctx: Arc<Context>,
    mut found: futures::channel::mpsc::UnboundedReceiver<super::grants::Touched>,
) {
    ctx.caches_synced().await;
    let mut strays = std::collections::BTreeSet::new();
    ctx.grants.for_each(|g| {
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
            let Some(grant) = ctx.grants.get(&key.0, &key.1) else {
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

// ---------------------------------------------------------------------------------------------
// The consent redirect endpoint
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

/// The `/consent/callback` route: the customer's browser lands here after the admin-consent page.
pub fn callback_router(client: kube::Client) -> Router {
    Router::new()
        .route("/consent/callback", get(callback))
        .with_state(client)
}

async fn callback(
    State(client): State<kube::Client>,
    Query(q): Query<Callback>,
) -> impl IntoResponse {
    let Some((namespace, name)) = q.state.as_deref().and_then(|s| s.split_once('/')) else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The consent link is missing its state parameter.</p>".to_string()),
        );
    };
    if let Some(error) = &q.error {
        tracing::info!(namespace, name, error, description = ?q.error_description, "admin consent was not granted");
        return (
            StatusCode::OK,
            Html(format!("<p>Consent was not granted ({}). You can close this page and open the consent link again.</p>", html_escape(error))),
        );
    }
    if !q
        .admin_consent
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The redirect does not say that consent was granted.</p>".to_string()),
        );
    }
    let api: Api<ConsentGrant> = Api::namespaced(client, namespace);
    let patch =
        json!({"metadata": {"annotations": {RECHECK_ANNOTATION: recheck_stamp(Timestamp::now())}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, name, tenant = ?q.tenant, "admin consent redirect: re-checking now");
            (StatusCode::OK, Html("<p>Thank you. Consent was recorded; the platform is verifying it now. You can close this page.</p>".to_string()))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => (
            StatusCode::NOT_FOUND,
            Html("<p>This consent link is no longer valid.</p>".to_string()),
        ),
        Err(e) => {
            tracing::warn!(namespace, name, error = %e, "could not request a consent re-check");
            (StatusCode::SERVICE_UNAVAILABLE, Html("<p>The platform could not record the consent right now; it will notice it on its next check.</p>".to_string()))
        }
    }
}

/// How often the redirect can have a grant re-checked: the endpoint needs no credential
/// (Entra's redirect carries none), and its `state` is no secret, so repeated hits within
/// one window write the same annotation value — a write that changes nothing and wakes
/// nothing.
const CALLBACK_WINDOW_SECS: i64 = 10;

/// The recheck annotation the redirect writes at `now`: the start of its window.
pub fn recheck_stamp(now: Timestamp) -> String {
    let second = now.as_second();
    Timestamp::from_second(second - second.rem_euclid(CALLBACK_WINDOW_SECS))
        .unwrap_or(now)
        .to_string()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_within_ten_seconds_ask_for_one_recheck() {
        let at = |s: i64| recheck_stamp(Timestamp::from_second(s).unwrap());
        assert_eq!(at(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(at(1_800_000_009), at(1_800_000_000));
        assert_ne!(at(1_800_000_010), at(1_800_000_009));
    }

    #[test]
    fn a_recheck_request_of_any_length_fits_the_status() {
        let grant_with = |value: &str| -> ConsentGrant {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
                "metadata": {"name": "recording", "namespace": "tenant-contoso",
                             "annotations": {RECHECK_ANNOTATION: value}},
                "spec": {"tenantRef": "contoso", "consent": "recording",
                         "appId": "8b0f7a52-0000-4000-8000-000000000003"}
            }))
            .unwrap()
        };
        let short = grant_with("2026-11-26T15:00:00Z");
        assert_eq!(
            recheck_request(&short).as_deref(),
            Some("2026-11-26T15:00:00Z")
        );

        let long_value = format!("after the admin's call: {}", "x".repeat(100));
        let mut long = grant_with(&long_value);
        let recorded = recheck_request(&long).unwrap();
        assert_eq!(recorded.len(), 64, "{recorded}");
        assert!(recorded.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(recheck_requested(&long));
        long.status = Some(ConsentGrantStatus {
            last_recheck_request: Some(recorded),
            ..Default::default()
        });
        assert!(!recheck_requested(&long), "answered once, not again");
    }

    #[test]
    fn a_tenant_wakes_its_grants_only_when_what_they_read_of_it_changes() {
        use crate::crd::TenantStatus;
        let tenant = crate::controller::tenant::tests::tenant("Pro");
        let before = tenant_facts(&tenant);

        // Its own conditions and consent lines, written twice per onboarding: not news.
        let mut checking = tenant.clone();
        checking.status = Some(TenantStatus {
            conditions: conditions::merge(
                &[],
                vec![Desired::new(READY, Status::False, "CheckingConsents", "x")],
                Some(1),
                Timestamp::from_second(1_800_000_000).unwrap(),
            ),
            ..Default::default()
        });
        assert_eq!(tenant_facts(&checking), before);

        // Its Entra tenant id, from the status or the spec, its deletion, another object.
        let mut resolved = checking.clone();
        resolved.status.as_mut().unwrap().tenant_id =
            Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b".into());
        assert_ne!(tenant_facts(&resolved), before);
        let mut pinned = tenant.clone();
        pinned.spec.tenant_id = Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b".into());
        assert_ne!(tenant_facts(&pinned), before);
        let mut deleting = tenant.clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_ne!(tenant_facts(&deleting), before);
        let mut again = tenant.clone();
        again.metadata.uid = Some("9d1e0c55-7a31-4f62-b0a8-5e4c3d2b1a09".into());
        assert_ne!(tenant_facts(&again), before);
    }

    #[test]
    fn a_consent_that_disappears_is_revoked_not_pending() {
        assert_eq!(next_state(None, CheckState::Pending), ConsentState::Pending);
        assert_eq!(
            next_state(Some(ConsentState::Pending), CheckState::Pending),
            ConsentState::Pending
        );
        assert_eq!(
            next_state(Some(ConsentState::Granted), CheckState::Pending),
            ConsentState::Revoked
        );
        assert_eq!(
            next_state(Some(ConsentState::Partial), CheckState::Pending),
            ConsentState::Revoked
        );
        assert_eq!(
            next_state(Some(ConsentState::Revoked), CheckState::Granted),
            ConsentState::Granted
        );
        assert_eq!(
            next_state(Some(ConsentState::Granted), CheckState::Unknown),
            ConsentState::Granted,
            "throttling keeps the state"
        );
        assert_eq!(next_state(None, CheckState::Unknown), ConsentState::Pending);
    }

    fn grant_at(name: &str, created: i64, state: Option<ConsentState>) -> Arc<ConsentGrant> {
        let mut g: ConsentGrant = serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "ConsentGrant",
            "metadata": {"name": name, "namespace": "tenant-a"},
            "spec": {"tenantRef": "a", "consent": name, "appId": "00000000-0000-0000-0000-000000000001"}
        }))
        .unwrap();
        g.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        g.status = state.map(|state| ConsentGrantStatus {
            state: Some(state),
            ..Default::default()
        });
        Arc::new(g)
    }

    #[test]
    fn siblings_in_the_same_state_count_pending_checks_from_the_same_instant() {
        let a = grant_at("login", 1_000_001, None);
        let b = grant_at("directory", 1_000_000, None);
        let c = grant_at("recording", 999_000, Some(ConsentState::Granted));
        let siblings = vec![a.clone(), b.clone(), c.clone()];
        let earliest = Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(shared_since(&a, &siblings), Some(earliest));
        assert_eq!(shared_since(&b, &siblings), Some(earliest));
        assert_eq!(
            shared_since(&c, &siblings),
            Some(Timestamp::from_second(999_000).unwrap()),
            "a sibling in another state keeps its own"
        );
    }

    #[test]
    fn the_next_check_counts_from_the_shared_check_not_from_each_reconcile() {
        let checked = Timestamp::from_second(1_000_000).unwrap();
        let later = Timestamp::from_second(1_000_002).unwrap();
        assert_eq!(
            next_wait(checked, Duration::from_secs(30), later),
            Duration::from_secs(28)
        );
        assert_eq!(
            next_wait(checked, Duration::from_secs(1), later),
            Duration::from_millis(200),
            "never in the past"
        );
    }

    #[test]
    fn a_first_check_pending_or_granted_has_no_event_but_every_change_has_one() {
        let grant: ConsentGrant = serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
            "metadata": {"name": "recording", "namespace": "tenant-contoso"},
            "spec": {"tenantRef": "contoso", "consent": "recording",
                     "appId": "1b4e29c8-1111-4a7b-9c3e-5f6a7b8c9d0e"}
        }))
        .unwrap();
        let status = |state| ConsentGrantStatus {
            state: Some(state),
            ..Default::default()
        };
        assert_eq!(
            transition_event(&grant, None, &status(ConsentState::Pending)),
            None
        );
        assert_eq!(
            transition_event(&grant, None, &status(ConsentState::Granted)),
            None,
            "granted before the operator first looked: the Tenant's Ready Event says it"
        );
        assert_eq!(
            transition_event(&grant, None, &status(ConsentState::Partial)).map(|e| e.1),
            Some(reason::CONSENT_PARTIAL),
            "a problem found by the first check is news"
        );
        assert_eq!(
            transition_event(
                &grant,
                Some(ConsentState::Pending),
                &status(ConsentState::Granted)
            )
            .map(|e| e.1),
            Some(reason::CONSENT_GRANTED)
        );
        assert_eq!(
            transition_event(
                &grant,
                Some(ConsentState::Error),
                &status(ConsentState::Pending)
            )
            .map(|e| e.1),
            Some(reason::CONSENT_PENDING),
            "recovering from an error to pending is news"
        );
        assert_eq!(
            transition_event(
                &grant,
                Some(ConsentState::Granted),
                &status(ConsentState::Granted)
            ),
            None
        );
    }

    #[test]
    fn pending_checks_double_the_interval() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
        let initial = Duration::from_secs(30);
        assert_eq!(consecutive_pending(t0, t0, initial), 0);
        assert_eq!(consecutive_pending(t0, at(30), initial), 1);
        assert_eq!(consecutive_pending(t0, at(90), initial), 2);
        assert_eq!(consecutive_pending(t0, at(210), initial), 3);
    }

    #[test]
    fn a_due_grant_takes_checks_started_since_the_middle_of_its_wait() {
        let at = |s: i64| Some(Time(Timestamp::from_second(1_000_000 + s).unwrap()));
        let status = |last, next| ConsentGrantStatus {
            last_checked_at: last,
            next_check_at: next,
            ..Default::default()
        };
        assert_eq!(
            share_from(&status(at(0), at(300))),
            at(150).map(|t| t.0),
            "a pending grant waiting 5 minutes takes a check up to 2.5 minutes old"
        );
        assert_eq!(
            share_from(&status(at(0), at(6 * 3600))),
            at(3 * 3600).map(|t| t.0)
        );
        assert_eq!(
            share_from(&status(None, at(30))),
            at(30).map(|t| t.0),
            "without a last check only a check since the due instant"
        );
        assert_eq!(share_from(&status(at(40), at(30))), at(30).map(|t| t.0));
        assert_eq!(share_from(&status(at(0), None)), None);
    }

    const TENANT: &str = "00000013-0000-4000-8000-00000000beef";

    /// A grant last checked at `last` and due at `due` (seconds from the start of
    /// [`play`]), in `state`, created long before.
    #[test]
    fn granted_grants_leave_their_wake_up_to_the_tenant_and_the_rest_keep_their_own() {
        let tenant = crate::controller::tenant::tests::tenant("Essentials");
        let wait = Duration::from_secs(6 * 3600);
        let granted = scheduled("login", ConsentState::Granted, 0, 21_600);
        let pending = scheduled("recording", ConsentState::Pending, 0, 300);
        let status = |g: &Arc<ConsentGrant>| g.status.clone();

        // A granted consent hands its next check to its (living) Tenant…
        assert_eq!(
            come_back(status(&granted).as_ref(), Some(&tenant), wait),
            None
        );
        // …but keeps its own timer when there is no Tenant to wake it, or it is going away.
        assert_eq!(come_back(status(&granted).as_ref(), None, wait), Some(wait));
        let mut leaving = tenant.clone();
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        assert_eq!(
            come_back(status(&granted).as_ref(), Some(&leaving), wait),
            Some(wait)
        );
        // Pending consents are polled by their own timers (seconds to minutes).
        let short = Duration::from_secs(300);
        assert_eq!(
            come_back(status(&pending).as_ref(), Some(&tenant), short),
            Some(short)
        );

        // The Tenant wakes the granted grants that are due and comes back for the next one;
        // pending grants are not its business.
        let later = scheduled("directory", ConsentState::Granted, 0, 30_000);
        let grants = [granted.clone(), pending, later.clone()];
        let at = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
        let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(100));
        assert!(due.is_empty());
        assert_eq!(next, Some(Duration::from_secs(21_500)));
        let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(21_600));
        assert_eq!(due, [ObjectRef::from_obj(granted.as_ref())]);
        assert_eq!(next, Some(Duration::from_secs(8_400)));
        let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(40_000));
        assert_eq!(due.len(), 2);
        assert_eq!(next, None);
    }

    fn scheduled(name: &str, state: ConsentState, last: i64, due: i64) -> Arc<ConsentGrant> {
        let mut g = (*grant_at(name, 1_000_000 - 86_400, Some(state))).clone();
        let status = g.status.as_mut().unwrap();
        status.last_checked_at = Some(Time(Timestamp::from_second(1_000_000 + last).unwrap()));
        status.next_check_at = Some(Time(Timestamp::from_second(1_000_000 + due).unwrap()));
        Arc::new(g)
    }

    /// Plays the controller's scheduling rules for one tenant over `hours`: the grant due
    /// first is reconciled at its `nextCheckAt`; it takes the tenant's last check when that
    /// started since [`share_from`], else it starts a check; then its status is written as
    /// the reconcile writes it ([`wait_after_check`], [`status_after_check`]) (through JSON, so times keep whole seconds as on the API
    /// server). Each grant finds the state given beside it. Returns the tenant's checks and
    /// the first grant's polls (new `lastCheckedAt`s).
    fn play(grants: &mut [(Arc<ConsentGrant>, CheckState)], hours: i64) -> (u32, u32) {
        let polling = crate::config::PollingConfig::default();
        let start = Timestamp::from_second(1_000_000).unwrap();
        let end = start + SignedDuration::from_hours(hours);
        let due = |g: &ConsentGrant| g.status.as_ref().unwrap().next_check_at.clone().unwrap().0;
        let (mut last_check, mut checks, mut polls) = (None::<Timestamp>, 0, 0);
        loop {
            let i = (0..grants.len())
                .min_by_key(|i| due(&grants[*i].0))
                .unwrap();
            let (grant, found) = grants[i].clone();
            let now = due(&grant);
            if now > end {
                return (checks, polls);
            }
            let joinable = share_from(grant.status.as_ref().unwrap()).unwrap();
            let checked_at = match last_check {
                Some(started) if started >= joinable => started,
                _ => {
                    checks += 1;
                    last_check = Some(now);
                    now
                }
            };
            let siblings: Vec<_> = grants.iter().map(|(g, _)| g.clone()).collect();
            let check = ConsentCheck {
                key: grant.spec.consent.clone(),
                app_id: grant.spec.app_id.clone(),
                state: found,
                granted: vec![],
                missing: vec![],
                message: String::new(),
                retry_after: None,
            };
            let wait =
                wait_after_check(&grant, &siblings, &check, TENANT, checked_at, now, &polling);
            let status = status_after_check(&grant, None, &check, now, wait);
            let mut next = (*grant).clone();
            next.status =
                Some(serde_json::from_value(serde_json::to_value(status).unwrap()).unwrap());
            if i == 0
                && next.status.as_ref().unwrap().last_checked_at
                    != grant.status.as_ref().unwrap().last_checked_at
            {
                polls += 1;
            }
            grants[i].0 = Arc::new(next);
        }
    }

    #[test]
    fn drifted_siblings_of_a_pending_tenant_join_one_check_per_poll() {
        use ConsentState::{Granted, Pending};
        // Directory granted, the rest pending at the longest interval (5 min); login drifted
        // 2.5 minutes - 1 s away from recording, instantMessages 20 s, the directory grant on
        // its own six-hour schedule.
        let mut grants = [
            (
                scheduled("recording", Pending, -297, 3),
                CheckState::Pending,
            ),
            (scheduled("login", Pending, -150, 152), CheckState::Pending),
            (
                scheduled("instantMessages", Pending, -280, 23),
                CheckState::Pending,
            ),
            (
                scheduled("directory", Granted, -4 * 3600, 2 * 3600),
                CheckState::Granted,
            ),
        ];
        let (checks, polls) = play(&mut grants, 24);
        assert!(
            (270..=320).contains(&polls),
            "{polls} polls of 5 min ± 10 % in a day"
        );
        assert_eq!(
            checks, polls,
            "one tenant check per poll, the directory grant's included"
        );
        let dues: std::collections::BTreeSet<_> = grants[..3]
            .iter()
            .map(|(g, _)| g.status.as_ref().unwrap().next_check_at.clone())
            .collect();
        assert_eq!(
            dues.len(),
            1,
            "the pending grants are on one schedule: {dues:?}"
        );
    }

    #[test]
    fn granted_siblings_on_different_schedules_realign_to_four_checks_a_day() {
        use ConsentState::Granted;
        let mut grants = [
            (
                scheduled("recording", Granted, -3600, 5 * 3600),
                CheckState::Granted,
            ),
            (
                scheduled("login", Granted, -2 * 3600, 4 * 3600),
                CheckState::Granted,
            ),
            (
                scheduled("directory", Granted, -5 * 3600, 3600),
                CheckState::Granted,
            ),
            (
                scheduled("instantMessages", Granted, -100, 21_000),
                CheckState::Granted,
            ),
        ];
        let (checks, _) = play(&mut grants, 30 * 24);
        // 30 days of six hours ± 10 % (jitter): 109–133 checks.
        assert!((109..=134).contains(&checks), "{checks} checks in 30 days");
    }
}
