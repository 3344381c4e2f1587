//! `ConsentGrant` (namespaced, short name `cg`): one admin consent a customer must give.
// Each `printcolumn(...)` of the derive repeats the keys `type_` and `priority`; that is its
// syntax, not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{CONSENT_KEY_RE, GUID_RE, OBJECT_NAME_RE, PERMISSION_RE};

/// One admin consent of one customer tenant, created by the Tenant controller.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "recording.m365.io",
    version = "v1alpha1",
    kind = "ConsentGrant",
    namespaced,
    shortname = "cg",
    category = "recording",
    status = "ConsentGrantStatus",
    doc = "An admin consent a customer's Global admin must grant to one of the platform's applications.",
    printcolumn(name = "Consent", type_ = "string", json_path = ".spec.consent"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenantRef",
        priority = 1
    ),
    printcolumn(
        name = "Missing",
        type_ = "string",
        json_path = ".status.missingPermissions",
        priority = 1
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.consentUrl",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConsentGrantSpec {
    /// Name of the Tenant this consent belongs to.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_RE))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenantRef is immutable"))]
    pub tenant_ref: String,

    /// Consent key from the operator configuration, e.g. `recording`.
    #[schemars(length(min = 1, max = 63), pattern(CONSENT_KEY_RE))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("consent is immutable"))]
    pub consent: String,

    /// Client id of the platform application the consent is for.
    #[schemars(length(max = 36), pattern(GUID_RE))]
    pub app_id: String,

    /// Display name of the enterprise application the customer sees, e.g. `recording-hue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 120))]
    pub display_name: Option<String>,

    /// Microsoft Graph application permissions the consent must grant.
    #[serde(default)]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 128), pattern(PERMISSION_RE))
    )]
    pub application_permissions: Vec<String>,

    /// Microsoft Graph delegated scopes the consent must grant.
    #[serde(default)]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 128), pattern(PERMISSION_RE))
    )]
    pub delegated_scopes: Vec<String>,

    /// An optional consent never holds back the tenant's `OK`/`Ready`.
    #[serde(default)]
    pub optional: bool,
}

/// Where a consent stands.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum ConsentState {
    /// Not granted yet.
    Pending,
    /// Every required permission is granted.
    Granted,
    /// Granted, but some permissions are missing.
    Partial,
    /// Was granted and no longer is.
    Revoked,
    /// The check itself failed (platform misconfiguration, unknown tenant, …).
    Error,
}

impl ConsentState {
    /// The state's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Pending => "Pending",
            ConsentState::Granted => "Granted",
            ConsentState::Partial => "Partial",
            ConsentState::Revoked => "Revoked",
            ConsentState::Error => "Error",
        }
    }
}

impl std::fmt::Display for ConsentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a consent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsentGrantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Granted`, `Partial`, `Revoked` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ConsentState>,
    /// The admin-consent link to hand the customer's Global admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_url: Option<String>,
    /// Permissions and scopes found granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_permissions: Vec<String>,
    /// Permissions and scopes still missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_permissions: Vec<String>,
    /// When the consent was first seen granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Time>,
    /// When the consent was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<Time>,
    /// When the next check is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<Time>,
    /// The `recording.m365.io/recheck-at` annotation value the last check answered (a value
    /// longer than 64 characters as its SHA-256 in hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub last_recheck_request: Option<String>,
    /// Human-readable detail of the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On the `directory` consent only: the Tenant's administrators as its token found them in
    /// the customer's directory (the Tenant shows them in its own status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub administrators: Vec<super::tenant::AdministratorStatus>,
    /// On the `directory` consent only: the platform's Teams app in the customer's
    /// organisation catalog, as its token found it (the Tenant shows it in its own status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_app: Option<super::tenant::TeamsAppStatus>,
    /// `Granted`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
