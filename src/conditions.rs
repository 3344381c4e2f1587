//! Status conditions in the `metav1.Condition` shape, shared by every controller.
//!
//! The rules kept here: one condition per `type`; `lastTransitionTime` moves only when
//! `status` changes; every condition carries the `observedGeneration` it was computed for;
//! `Ready` is the aggregate that `kubectl wait --for=condition=Ready`, Flux kstatus and
//! Argo CD health read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

// Condition types, every controller's in one place (as Flux keeps them in
// `condition_types.go`).

/// The aggregate condition.
pub const READY: &str = "Ready";
/// Present only when true: the spec must change before anything can progress.
pub const STALLED: &str = "Stalled";
/// Tenant: every mandatory consent is granted.
pub const CONSENTS_GRANTED: &str = "ConsentsGranted";
/// Tenant: every storage location is usable.
pub const STORAGE_READY: &str = "StorageReady";
/// ConsentGrant: the consent is granted.
pub const GRANTED: &str = "Granted";
/// RecordingService: the known app registration's credentials are accepted by Entra.
pub const AUTHENTICATED: &str = "Authenticated";
/// RecordingService: the app registration's soonest client secret is not about to expire.
pub const SECRET_EXPIRY: &str = "SecretExpiry";
/// RecordingService: every bot Deployment has all its replicas available.
pub const BOTS_READY: &str = "BotsReady";

/// Condition reasons (and the reasons of the Events about the same transitions) used in more
/// than one place.
pub mod reason {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NOT_CHECKED: &str = "NotChecked";
    pub const NOT_IMPLEMENTED: &str = "NotImplemented";
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound";
    pub const TENANT_NOT_READY: &str = "TenantNotReady";
    pub const TENANT_ID_UNAVAILABLE: &str = "TenantIdUnavailable";
    /// The Tenant's namespace exists and was not made by the operator for this Tenant.
    pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
    /// ConsentsGranted and Ready while the grants' first checks are still running.
    pub const CHECKING_CONSENTS: &str = "CheckingConsents";
    pub const CONSENTS_MISSING: &str = "ConsentsMissing";
    pub const CONSENT_REVOKED: &str = "ConsentRevoked";
    pub const CONSENT_PARTIAL: &str = "ConsentPartial";
    pub const CONSENT_PENDING: &str = "ConsentPending";
    pub const CONSENT_GRANTED: &str = "ConsentGranted";
    pub const CONSENT_CHECK_FAILED: &str = "ConsentCheckFailed";
    pub const STORAGE_NOT_READY: &str = "StorageNotReady";
    /// None of the Tenant's `spec.adminUpns` exists in the customer's directory.
    pub const NO_ADMINISTRATOR: &str = "NoAdministrator";
    pub const CLEANUP_FAILED: &str = "CleanupFailed";
    pub const BOTS_NOT_READY: &str = "BotsNotReady";
    pub const NOT_PROVISIONED: &str = "NotProvisioned";
    pub const AUTHENTICATION_PENDING: &str = "AuthenticationPending";
    pub const INVALID_CLIENT_SECRET: &str = "InvalidClientSecret";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const APP_NOT_FOUND: &str = "AppNotFound";
    pub const CHECK_FAILED: &str = "CheckFailed";
    pub const TOKEN_REJECTED: &str = "TokenRejected";
    pub const CLIENT_SECRET_VALID: &str = "ClientSecretValid";
    pub const CLIENT_SECRET_EXPIRING: &str = "ClientSecretExpiring";
    pub const CLIENT_SECRET_EXPIRED: &str = "ClientSecretExpired";
    pub const EXPIRY_UNKNOWN: &str = "ExpiryUnknown";
}

/// A condition's three-valued status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    pub fn from_bool(b: bool) -> Self {
        if b {
            Status::True
        } else {
            Status::False
        }
    }
}

/// A condition as a controller computes it, before timestamps are merged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges the desired conditions into the previous ones: keeps `lastTransitionTime` where the
/// status did not change, stamps `now` where it did, and drops conditions no longer desired.
pub fn merge(
    previous: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let last_transition_time = match find(previous, d.type_) {
                Some(old) if old.status == d.status.as_str() => old.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason,
                message: truncate(&d.message, 32_768),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of a type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The same conditions with timestamps ignored: used to decide whether a status write is due.
pub fn same_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge(
            &[],
            vec![Desired::new(READY, Status::False, "Pending", "waiting")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, Time(at(100)));
        let same = merge(
            &first,
            vec![Desired::new(READY, Status::False, "Other", "new text")],
            Some(2),
            at(200),
        );
        assert_eq!(
            same[0].last_transition_time,
            Time(at(100)),
            "reason/message changes keep the time"
        );
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            vec![Desired::new(READY, Status::True, "Ready", "ok")],
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
        assert!(is_true(&flipped, READY));
    }

    #[test]
    fn comparison_ignores_only_timestamps() {
        let a = merge(
            &[],
            vec![Desired::new(READY, Status::True, "Ready", "ok")],
            Some(1),
            at(1),
        );
        let b = merge(
            &[],
            vec![Desired::new(READY, Status::True, "Ready", "ok")],
            Some(1),
            at(9),
        );
        assert!(same_ignoring_time(&a, &b));
        let c = merge(
            &[],
            vec![Desired::new(READY, Status::True, "Ready", "ok")],
            Some(2),
            at(1),
        );
        assert!(!same_ignoring_time(&a, &c));
    }
}
