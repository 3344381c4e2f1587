//! The Tenant's status and its transitions: pure functions of what was observed.

use super::*;

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
    /// `tenant-<name>` exists and is not stamped for this Tenant: nothing is applied there.
    NamespaceNotOwned(String),
    /// Older Tenants hold values this one must not share; nothing new is provisioned.
    Conflict(Vec<rules::Conflict>),
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
    /// How the tenant's included users are shared among its RecordingServices.
    pub licence: rules::LicenceUse,
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

    // Administrators: a warning for people, a blocker only when none of them exists.
    let administrators = administrators_of(o);
    let admin_alarm = administrators_alarm(&administrators);
    let nobody = !administrators.is_empty()
        && administrators
            .iter()
            .all(|a| a.state == AdministratorState::Missing);
    if let Some(a) = &admin_alarm {
        alarms.push(a.clone());
    }

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
        Some(Blocker::NamespaceNotOwned(m)) => {
            alarms.insert(0, format!("Namespace not adopted: {m}"));
            (false, reason::NAMESPACE_NOT_OWNED, m.clone())
        }
        Some(Blocker::Conflict(c)) => {
            let what = rules::describe(c);
            alarms.insert(
                0,
                format!("Conflict: {what}. Nothing is provisioned for this tenant until the other one goes or the value changes."),
            );
            (false, reason::CONFLICT, what)
        }
        None if nobody && consents_ok => (
            false,
            reason::NO_ADMINISTRATOR,
            "none of spec.adminUpns exists in the customer's directory".to_string(),
        ),
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
    if let Some(Blocker::Conflict(c)) = &o.blocker {
        conditions.push(Desired::new(
            conditions::CONFLICT,
            Status::True,
            reason::ALREADY_IN_USE,
            rules::describe(c),
        ));
    }

    let conditions = conditions::merge(&previous.conditions, conditions, generation, o.now);
    let first_ready_at = first_ready_at(previous.first_ready_at, &conditions);
    TenantStatus {
        observed_generation: generation,
        health: Some(if ready { Health::Ok } else { Health::Warning }),
        alarm: if ready {
            admin_alarm
        } else {
            Some(alarms.join(" ")).filter(|a| !a.is_empty())
        },
        license_type: Some(license.display_type().to_string()),
        advanced_storage: Some(license.advanced_storage()),
        tenant_id: o.tenant_id.clone().or(previous.tenant_id),
        namespace: Some(tenant.namespace_name()),
        storage: o.storage.clone().unwrap_or_default(),
        consents,
        // Signed by the shell ([`crate::links::QuickStartLinks::for_tenant`]).
        quick_start_url: None,
        administrators,
        teams_app: teams_app_of(o),
        users_in_use: Some(o.licence.in_use),
        first_ready_at,
        conditions,
        // `notifications` and `retention` have field managers of their own.
        ..Default::default()
    }
}

/// `status.firstReadyAt`: kept once set; else the `Ready` condition's `lastTransitionTime`
/// when it is `True` (the transition just made, or, for a Tenant that was Ready before the
/// field existed, when it became Ready).
pub fn first_ready_at(
    previous: Option<Time>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<Time> {
    previous.or_else(|| {
        conditions::find(conditions, READY)
            .filter(|c| c.status == "True")
            .map(|c| c.last_transition_time.clone())
    })
}

/// The platform's Teams app in the customer's catalog, as the `directory` grant found it.
fn teams_app_of(o: &Observed<'_>) -> Option<TeamsAppStatus> {
    o.consents
        .iter()
        .find(|(required, _)| required.key == DIRECTORY_CONSENT)
        .and_then(|(_, grant)| grant.and_then(|g| g.status.as_ref()))
        .and_then(|s| s.teams_app.clone())
}

/// The administrators as the `directory` grant found them; each `NotChecked` until then.
fn administrators_of(o: &Observed<'_>) -> Vec<AdministratorStatus> {
    let found = o
        .consents
        .iter()
        .find(|(required, _)| required.key == DIRECTORY_CONSENT)
        .and_then(|(_, grant)| grant.and_then(|g| g.status.as_ref()))
        .map(|s| s.administrators.as_slice())
        .unwrap_or_default();
    o.tenant
        .spec
        .admin_upns
        .iter()
        .map(|upn| {
            found
                .iter()
                .find(|a| a.upn.eq_ignore_ascii_case(upn))
                .cloned()
                .unwrap_or_else(|| AdministratorStatus {
                    upn: upn.clone(),
                    state: AdministratorState::NotChecked,
                    message: Some(format!(
                        "looked up once the {DIRECTORY_CONSENT} consent is granted"
                    )),
                })
        })
        .collect()
}

/// The UPNs of the tenant's administrators its directory knows and lets sign in.
pub fn verified_administrators(tenant: &Tenant) -> Vec<String> {
    tenant
        .status
        .as_ref()
        .map(|s| s.administrators.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|a| a.state == AdministratorState::Verified)
        .map(|a| a.upn.clone())
        .collect()
}

/// The alarm words for administrators missing from the directory or blocked, if any.
fn administrators_alarm(admins: &[AdministratorStatus]) -> Option<String> {
    let named = |state| {
        admins
            .iter()
            .filter(|a| a.state == state)
            .map(|a| a.upn.as_str())
            .collect::<Vec<_>>()
    };
    let missing = named(AdministratorState::Missing);
    let disabled = named(AdministratorState::Disabled);
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "not found in the customer's directory: {}",
            missing.join(", ")
        ));
    }
    if !disabled.is_empty() {
        parts.push(format!("blocked from signing in: {}", disabled.join(", ")));
    }
    (!parts.is_empty()).then(|| format!("Administrators {}.", parts.join("; ")))
}

/// `(all mandatory granted, reason, message)` of the ConsentsGranted condition; the message
/// names what the customer (or the platform team) must still do.
pub(super) fn consent_condition(
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
        // A change in what others write is no reason for this controller to write.
        drop_fields_of_other_managers(&mut timeless);
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

/// Clears the status fields other field managers own (`notifications`: crate::notify,
/// `retention`: crate::retention), so that the Tenant controller's status write never takes
/// them over and their changes never count as its own.
pub fn drop_fields_of_other_managers(status: &mut TenantStatus) {
    status.notifications.clear();
    status.retention = None;
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
