//! The service's status and spec checks: pure functions of what was observed.

use super::*;
use crate::config::REDUNDANT_RECORDING_CONSENT;
use crate::controller::rules;

// ---------------------------------------------------------------------------------------------
// Validation: the CRD's rules plus what only the reconciler can see
// ---------------------------------------------------------------------------------------------

/// The CRD's rules (its name among them: `<name>-hue-paired` must be a DNS label), plus: the
/// Tenant exists (and is not being deleted) and the service lives in the tenant's namespace.
pub fn validate(service: &RecordingService, tenant: Option<&Tenant>) -> Result<(), Violations> {
    let mut violations = validate_recording_service(service, None)
        .err()
        .map(|v| v.0)
        .unwrap_or_default();
    match tenant {
        None => violations.push(Violation {
            field: "spec.tenantRef".into(),
            message: format!("Tenant {:?} does not exist", service.spec.tenant_ref),
        }),
        // Its namespace, and the operator's rights there, go with it: nothing more is
        // provisioned or checked for the service.
        Some(t) if t.meta().deletion_timestamp.is_some() => violations.push(Violation {
            field: "spec.tenantRef".into(),
            message: format!("Tenant {:?} is being deleted", service.spec.tenant_ref),
        }),
        Some(t) => {
            let expected = t.namespace_name();
            if service.namespace().as_deref() != Some(expected.as_str()) {
                violations.push(Violation {
                    field: "metadata.namespace".into(),
                    message: format!(
                        "a RecordingService of Tenant {:?} must live in that tenant's namespace {expected:?}",
                        service.spec.tenant_ref
                    ),
                });
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Violations(violations))
    }
}

/// What the operator's `botPolicy` refuses in a service: its bot image (`default_image`, the
/// configured `bots.defaultImage`, when it names none), and the Secret its bots would mount
/// (`secret_labels`: that Secret's labels, `None` when it does not exist, which the credential
/// check reports instead).
pub fn policy_violations(
    service: &RecordingService,
    policy: &crate::bot_policy::BotPolicy,
    default_image: &str,
    secret_labels: Option<&BTreeMap<String, String>>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let image = service.spec.bot.image.as_deref().unwrap_or(default_image);
    violations.extend(policy.image_violation("spec.bot.image", image));
    if let (Some(registration), Some(labels)) = (&service.spec.app_registration, secret_labels) {
        violations.extend(policy.secret_violation(
            "spec.appRegistration.clientSecretRef.name",
            &registration.client_secret_ref.name,
            labels,
        ));
    }
    violations
}

/// The rules across services (SPEC §8), for a service whose spec is valid: its short name
/// is not an older sibling's, and its licensed users fit in what the Tenant's licence leaves.
/// `all` holds at least the services of the same Tenant in the same namespace (the service
/// included); the rules pick those out of whatever else it holds.
pub fn rule_blocker(
    service: &RecordingService,
    tenant: Option<&Tenant>,
    all: &[Arc<RecordingService>],
) -> Option<Blocker> {
    if let Some(conflict) = rules::service_conflict(service, all.iter().map(|s| s.as_ref())) {
        return Some(Blocker::Conflict(conflict));
    }
    let licence = rules::licence_use(tenant?, all.iter().map(|s| s.as_ref()));
    licence
        .refusal(&service.name_any())
        .map(Blocker::OverLicence)
}

// ---------------------------------------------------------------------------------------------
// The service's status: a pure function of what was observed
// ---------------------------------------------------------------------------------------------

/// Why a reconcile did not provision.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocker {
    /// The spec breaks a rule; nothing is provisioned until it is fixed.
    InvalidSpec(Violations),
    /// The Tenant does not know its Entra tenant id yet.
    TenantIdUnknown(String),
    /// An older service of the same Tenant has the same short name.
    Conflict(rules::Conflict),
    /// The service's licensed users do not fit in the Tenant's included users (the numbers).
    OverLicence(String),
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub service: &'a RecordingService,
    pub tenant: Option<&'a Tenant>,
    pub blocker: Option<Blocker>,
    /// Available/desired replicas per desired bot Deployment (empty when blocked).
    pub bots: Vec<BotStatus>,
    pub auth: AuthState,
    /// What the customer's admin must do for recording to start (absent while blocked).
    pub policy: Option<PolicySteps>,
    pub now: Timestamp,
}

/// Computes the service's status.
pub fn compute_status(o: &Observed<'_>) -> RecordingServiceStatus {
    let service = o.service;
    let generation = service.meta().generation;
    let previous = service.status.clone().unwrap_or_default();
    let mut conditions: Vec<Desired> = Vec::new();
    let mut expires_in_days = None;
    let mut registered_by: Vec<String> = Vec::new();
    let mut permissions_source = None;
    let mut consenters: Vec<String> = Vec::new();

    // The app registration.
    let app = service
        .spec
        .app_registration
        .as_ref()
        .map(|r| r.client_id.as_str())
        .unwrap_or_default();
    let auth_problem: Option<(String, String)> = match &o.auth {
        AuthState::NotUsed => None,
        AuthState::NotChecked(why) => {
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::Unknown,
                reason::NOT_CHECKED,
                why.clone(),
            ));
            Some((reason::AUTHENTICATION_PENDING.into(), why.clone()))
        }
        AuthState::Unavailable(why) => {
            let message = format!("the credentials could not be checked: {why}");
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::Unknown,
                reason::CHECK_FAILED,
                message.clone(),
            ));
            Some((reason::AUTHENTICATION_PENDING.into(), message))
        }
        AuthState::Checked(AuthOutcome::Rejected { reason, message }) => {
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::False,
                *reason,
                message.clone(),
            ));
            Some((reason.to_string(), message.clone()))
        }
        AuthState::Checked(AuthOutcome::Authenticated {
            expiry,
            owners,
            permissions,
            consented_by,
        }) => {
            registered_by = owners.clone().unwrap_or_default();
            permissions_source = Some(permissions.as_str().to_string());
            let consent = match consented_by {
                ConsentedBy::Users(users) => {
                    consenters = users.clone();
                    format!("; consented by {}", users.join(", "))
                }
                // Only worth saying when no owner names anyone.
                ConsentedBy::Unknown(why) if registered_by.is_empty() => {
                    format!("; who consented is not known: {why}")
                }
                ConsentedBy::Unknown(_) => String::new(),
            };
            let tenant = service
                .spec
                .app_registration
                .as_ref()
                .map(|r| r.tenant_id.as_str())
                .unwrap_or_default();
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::True,
                "Authenticated",
                format!(
                    "Entra issued a client-credentials token for application {app} in tenant {tenant}; its recording permissions were {}{}{consent}",
                    permissions.describe(),
                    match owners.as_deref() {
                        Some([]) => "; the registration has no user owner".to_string(),
                        Some(owners) => format!("; registered by {}", owners.join(", ")),
                        None => String::new(),
                    }
                ),
            ));
            conditions.push(match expiry {
                Expiry::At(end) => {
                    let days = crate::graph::application::days_until(*end, o.now);
                    expires_in_days = Some(days);
                    let when = format!("expires in {days} day(s), on {}", end.strftime("%Y-%m-%d"));
                    if days < SECRET_WARNING_DAYS {
                        Desired::new(
                            SECRET_EXPIRY,
                            Status::False,
                            reason::CLIENT_SECRET_EXPIRING,
                            format!("the soonest client secret of application {app} {when}: add a new secret, update the Secret, then remove the old one"),
                        )
                    } else {
                        Desired::new(SECRET_EXPIRY, Status::True, reason::CLIENT_SECRET_VALID, format!("the soonest client secret of application {app} {when}"))
                    }
                }
                Expiry::NoneValid => Desired::new(
                    SECRET_EXPIRY,
                    Status::Unknown,
                    reason::EXPIRY_UNKNOWN,
                    format!("Graph lists no unexpired client secret of application {app}"),
                ),
                Expiry::Unreadable(why) => Desired::new(SECRET_EXPIRY, Status::Unknown, reason::EXPIRY_UNKNOWN, why.clone()),
            });
            None
        }
    };

    // The bots.
    let provisioned = o.blocker.is_none();
    let not_ready: Vec<String> = o
        .bots
        .iter()
        .filter(|b| b.ready < b.desired)
        .map(|b| format!("{} {}/{}", b.name, b.ready, b.desired))
        .collect();
    let bots_ok = provisioned && not_ready.is_empty();
    let ready_total: i32 = o.bots.iter().map(|b| b.ready.min(b.desired)).sum();
    let desired_total: i32 = o.bots.iter().map(|b| b.desired).sum();
    conditions.push(if !provisioned {
        Desired::new(
            BOTS_READY,
            Status::Unknown,
            reason::NOT_PROVISIONED,
            "the bots are provisioned once the service is valid and its tenant id known",
        )
    } else if bots_ok {
        Desired::new(
            BOTS_READY,
            Status::True,
            "BotsReady",
            format!("{ready_total}/{desired_total} bot replicas available"),
        )
    } else {
        Desired::new(
            BOTS_READY,
            Status::False,
            reason::BOTS_NOT_READY,
            format!("bot replicas available: {}", not_ready.join(", ")),
        )
    });

    // The customer's recording policy.
    let policy = o
        .policy
        .as_ref()
        .filter(|_| provisioned)
        .map(PolicySteps::condition);
    let policy_pending = policy.as_ref().is_some_and(|c| c.status != Status::True);
    conditions.extend(policy);

    // The aggregate.
    let tenant_ready = o.tenant.and_then(|t| tenant_readiness(service, t));
    let (ready, reason, message) = match (&o.blocker, auth_problem) {
        (Some(Blocker::InvalidSpec(v)), _) => (false, reason::INVALID_SPEC.to_string(), format!("the spec breaks these rules: {v}")),
        (Some(Blocker::TenantIdUnknown(m)), _) => (false, reason::TENANT_NOT_READY.to_string(), m.clone()),
        (Some(Blocker::Conflict(c)), _) => (false, reason::CONFLICT.to_string(), format!("{c}: rename this service; nothing is provisioned until then")),
        (Some(Blocker::OverLicence(m)), _) => (false, reason::LICENSED_USERS_EXCEEDED.to_string(), format!("{m}: lower licensedUsers here or elsewhere, or raise the Tenant's includedUsers; nothing is provisioned until then")),
        (None, Some((reason, message))) => (false, reason, message),
        (None, None) => match tenant_ready {
            Some((true, _)) if bots_ok && policy_pending => (true, "Ready".to_string(), format!("deployed, waiting for the customer's recording policy (see RecordingPolicy): the tenant is ready and {ready_total}/{desired_total} bot replicas are available")),
            Some((true, _)) if bots_ok => (true, "Ready".to_string(), format!("the tenant is ready and {ready_total}/{desired_total} bot replicas are available")),
            Some((true, _)) => (false, reason::BOTS_NOT_READY.to_string(), format!("bot replicas available: {}", not_ready.join(", "))),
            Some((false, why)) => (false, reason::TENANT_NOT_READY.to_string(), format!("Tenant {:?} is not ready: {why}", service.spec.tenant_ref)),
            None => (false, reason::TENANT_NOT_READY.to_string(), format!("Tenant {:?} has not reported its status yet", service.spec.tenant_ref)),
        },
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
            CONFLICT,
            Status::True,
            reason::ALREADY_IN_USE,
            c.to_string(),
        ));
    }

    RecordingServiceStatus {
        observed_generation: generation,
        bots: o.bots.clone(),
        bots_ready: provisioned.then(|| format!("{ready_total}/{desired_total}")),
        client_secret_expires_in_days: expires_in_days,
        app_registration_owners: registered_by,
        recording_permissions_source: permissions_source,
        app_registration_consented_by: consenters,
        // The report endpoint's field: carried as it is.
        first_policy_invite: previous.first_policy_invite.clone(),
        // The shell's, after it applied the objects: carried as it is until then.
        applied_hash: previous.applied_hash.clone(),
        conditions: conditions::merge(&previous.conditions, conditions, generation, o.now),
    }
}

/// Whether the service counts its Tenant as ready, with the Tenant's word for it: the Tenant
/// is Ready, or the service signs in with its own app registration and all the Tenant lacks
/// are the platform's recording consents (`recording`, `redundantRecording`), which such a
/// service does not use. `None` before the Tenant reported a status.
pub fn tenant_readiness(service: &RecordingService, tenant: &Tenant) -> Option<(bool, String)> {
    let status = tenant.status.as_ref()?;
    let ready = conditions::find(&status.conditions, READY)?;
    if ready.status == "True" {
        return Some((true, ready.message.clone()));
    }
    let only_recording_consents_missing = [
        reason::CONSENTS_MISSING,
        reason::CONSENT_REVOKED,
        reason::CONSENT_PARTIAL,
    ]
    .contains(&ready.reason.as_str())
        && status
            .consents
            .iter()
            .filter(|c| !c.optional && c.state != crate::crd::ConsentState::Granted)
            .all(|c| c.name == RECORDING_CONSENT || c.name == REDUNDANT_RECORDING_CONSENT)
        && conditions::find(&status.conditions, crate::conditions::STORAGE_READY)
            .is_none_or(|c| c.status != "False");
    if service.spec.app_registration.is_some() && only_recording_consents_missing {
        return Some((
            true,
            "the tenant lacks only the platform's recording consents, which a service with its own app registration does not use".into(),
        ));
    }
    Some((false, ready.message.clone()))
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn status_changed(old: Option<&RecordingServiceStatus>, new: &RecordingServiceStatus) -> bool {
    let Some(old) = old else { return true };
    let (mut a, mut b) = (old.clone(), new.clone());
    let same_conditions = conditions::same_ignoring_time(&a.conditions, &b.conditions);
    a.conditions.clear();
    b.conditions.clear();
    a != b || !same_conditions
}

/// The Events a status change deserves, one per condition whose status or reason changed:
/// `(warning, reason, note)`. Conditions that became `True` are Normal, the others Warnings.
pub fn transition_events(
    old: Option<&RecordingServiceStatus>,
    new: &RecordingServiceStatus,
) -> Vec<(bool, String, String)> {
    let before = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    [
        AUTHENTICATED,
        SECRET_EXPIRY,
        BOTS_READY,
        RECORDING_POLICY,
        READY,
    ]
    .into_iter()
    .filter_map(|type_| {
        let now = conditions::find(&new.conditions, type_)?;
        let was = conditions::find(before, type_);
        if was.is_some_and(|w| w.status == now.status && w.reason == now.reason) {
            return None;
        }
        Some((
            now.status != "True",
            now.reason.clone(),
            now.message.clone(),
        ))
    })
    .collect()
}

/// The instances of a StatefulSet that run its current revision and are available: the rules
/// kstatus applies. Nothing while the StatefulSet controller has not seen the latest spec;
/// otherwise the available instances minus those of an older revision still running (a
/// rolling update replaces one instance at a time, each draining its calls first). So a
/// rollout that cannot finish (a bad image, an unschedulable pod) never counts as ready,
/// though the old instances keep recording.
pub fn rolled_out_and_available(stateful_set: &StatefulSet) -> i32 {
    let Some(status) = stateful_set.status.as_ref() else {
        return 0;
    };
    if status.observed_generation < stateful_set.metadata.generation {
        return 0;
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let old = status.replicas.saturating_sub(updated).max(0);
    status
        .available_replicas
        .unwrap_or(0)
        .saturating_sub(old)
        .clamp(0, updated)
}

/// Ready/desired instances of each desired StatefulSet, from the observed StatefulSets.
pub fn observe_bots(
    desired: &[StatefulSet],
    observed: impl Fn(&str) -> Option<Arc<StatefulSet>>,
) -> Vec<BotStatus> {
    desired
        .iter()
        .map(|d| {
            let name = d.name_any();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            BotStatus {
                name,
                ready: observed(&d.name_any()).map_or(0, |o| rolled_out_and_available(&o)),
                desired: want,
            }
        })
        .collect()
}
