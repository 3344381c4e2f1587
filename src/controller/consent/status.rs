//! A ConsentGrant's status and transitions: pure rules of what a check found and when to check again.

use super::*;

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
        // Not verified is not granted, and not known to be withdrawn either.
        CheckState::Unverified => S::Pending,
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
        administrators: previous.administrators,
        teams_app: previous.teams_app,
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
pub(super) fn status_changed(old: Option<&ConsentGrantStatus>, new: &ConsentGrantStatus) -> bool {
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

/// The check's spec of a grant; the `directory` consent's also names the Tenant's
/// administrators, whom its token looks up in the same `$batch`.
pub(super) fn spec_of(grant: &ConsentGrant, tenant: Option<&Tenant>) -> ConsentSpec {
    let administrators = match tenant {
        Some(t) if grant.spec.consent == DIRECTORY_CONSENT => t.spec.admin_upns.clone(),
        _ => vec![],
    };
    ConsentSpec {
        key: grant.spec.consent.clone(),
        app_id: grant.spec.app_id.clone(),
        application_permissions: grant.spec.application_permissions.clone(),
        delegated_scopes: grant.spec.delegated_scopes.clone(),
        administrators,
    }
}

/// The `directory` grant's administrators after a check: as found, unless the check could
/// not complete (the last known states stand).
pub fn administrators_after_check(
    previous: &[AdministratorStatus],
    check: &ConsentCheck,
    found: &[AdminCheck],
) -> Vec<AdministratorStatus> {
    if check.state == CheckState::Unknown && found.is_empty() {
        return previous.to_vec();
    }
    found
        .iter()
        .map(|a| AdministratorStatus {
            upn: a.upn.clone(),
            state: match a.state {
                AdminState::Verified => AdministratorState::Verified,
                AdminState::Missing => AdministratorState::Missing,
                AdminState::Disabled => AdministratorState::Disabled,
                AdminState::NotChecked => AdministratorState::NotChecked,
            },
            message: a.message.clone(),
        })
        .collect()
}

/// The catalog check as the grant's (and then the Tenant's) status shows it.
pub fn teams_app_status(found: &CatalogCheck) -> TeamsAppStatus {
    TeamsAppStatus {
        state: found.state.as_str().to_string(),
        message: found.message.clone(),
    }
}

/// Why `grant` must not be checked with the platform's tokens, if it must not: it is checked
/// only in its Tenant's namespace (where only the operator and the cluster's administrators
/// write), for a consent of the configuration, with that consent's application. Anything else
/// would let whoever can write a ConsentGrant anywhere make the operator ask Graph, as the
/// platform, about any application in any customer tenant.
pub fn not_trusted(grant: &ConsentGrant, config: &OperatorConfig) -> Option<String> {
    let spec = &grant.spec;
    let expected_namespace = crate::crd::tenant::tenant_namespace(&spec.tenant_ref);
    let namespace = grant.metadata.namespace.as_deref().unwrap_or_default();
    if namespace != expected_namespace {
        return Some(format!(
            "not checked: a ConsentGrant of Tenant {:?} is checked only in the Tenant's namespace \
             {expected_namespace:?}, and this one is in {namespace:?}",
            spec.tenant_ref
        ));
    }
    let Some(configured) = config.consents.get(&spec.consent) else {
        return Some(format!(
            "not checked: spec.consent {:?} is not a consent of the operator configuration",
            spec.consent
        ));
    };
    if !spec.app_id.eq_ignore_ascii_case(&configured.app_id) {
        return Some(format!(
            "not checked: spec.appId {:?} is not the application the operator configuration \
             names for consent {:?} ({:?})",
            spec.app_id, spec.consent, configured.app_id
        ));
    }
    None
}
