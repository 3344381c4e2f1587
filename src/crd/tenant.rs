//! `Tenant` (cluster-scoped, short name `tn`): one Microsoft 365 customer of the platform.
// Each `printcolumn(...)` of the derive repeats the keys `type_` and `priority`; that is its
// syntax, not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::CONSENT_KEY_RE;
use super::{
    ConsentState, DNS_NAME_RE, EMAIL_RE, GUID_RE, NAME_CHARS_RE, OBJECT_NAME_RE, REGION_RE, UPN_RE,
};

/// Desired state of one Microsoft 365 customer.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "recording.m365.io",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "tn",
    category = "recording",
    status = "TenantStatus",
    doc = "A Microsoft 365 customer tenant onboarded onto the Teams compliance-recording platform.",
    printcolumn(name = "Customer", type_ = "string", json_path = ".spec.customerName"),
    printcolumn(name = "License", type_ = "string", json_path = ".status.licenseType"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".spec.includedUsers"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.health"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Tenant ID",
        type_ = "string",
        json_path = ".status.tenantId",
        priority = 1
    ),
    printcolumn(
        name = "Users In Use",
        type_ = "integer",
        json_path = ".status.usersInUse",
        priority = 1
    ),
    printcolumn(
        name = "Alarm",
        type_ = "string",
        json_path = ".status.alarm",
        priority = 1
    )
)]
#[x_kube(validation = Rule::new("!has(oldSelf.tenantId) || (has(self.tenantId) && self.tenantId == oldSelf.tenantId)")
    .message("tenantId is immutable once set")
    .field_path(".tenantId")
    .reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The customer's unique name: 1-128 characters; none of \ / : * ? " < > |, no full stop,
    /// no white space; hyphens allowed but not first, not last and never two in a row. Immutable.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{NAME_CHARS_RE}')"))
        .message("customerName must not contain \\ / : * ? \" < > |, a full stop or white space, and may hold hyphens only between other characters (not first, not last, never two in a row)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("customerName is immutable"))]
    pub customer_name: String,

    /// The customer's unique Microsoft 365 domain, e.g. `contoso.onmicrosoft.com`. Immutable.
    #[schemars(length(min = 4, max = 256), pattern(DNS_NAME_RE))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("domain is immutable"))]
    pub domain: String,

    /// The Entra tenant id (GUID). When absent the operator resolves it from the domain and
    /// reports it in `status.tenantId`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36), pattern(GUID_RE))]
    pub tenant_id: Option<String>,

    /// Short company name: the same character rules as `customerName`, 1-32 characters.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{NAME_CHARS_RE}')"))
        .message("shortName must not contain \\ / : * ? \" < > |, a full stop or white space, and may hold hyphens only between other characters (not first, not last, never two in a row)"))]
    pub short_name: String,

    /// E-mail addresses that receive the platform's notifications (at least one).
    #[schemars(length(min = 1, max = 20), inner(length(max = 254), pattern(EMAIL_RE)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub contact_emails: Vec<String>,

    /// Default administrator User Principal Names, `prefix@domain` (at least one).
    #[schemars(length(min = 1, max = 20), inner(length(max = 256), pattern(UPN_RE)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub admin_upns: Vec<String>,

    /// `Essentials` (single recording) or `Pro` (double recording with a paired, redundant bot
    /// and a geo-redundant storage copy).
    pub license: License,

    /// Licensed users included in the contract.
    #[schemars(range(min = 1, max = 2147483647))]
    pub included_users: i32,

    /// Not in use: must be `false`.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == false").message("allowExceedIncludedUsers is not in use and must be false"))]
    pub allow_exceed_included_users: bool,

    /// Where the tenant's recordings are stored.
    pub storage: StorageSpec,

    /// How long recordings are kept.
    #[serde(default)]
    pub retention: RetentionSpec,

    /// Compliance switches of the customer.
    #[serde(default)]
    pub compliance: ComplianceSpec,

    /// Optional consents (keys of the operator configuration, e.g. `teamsApp`) this customer
    /// is offered besides the mandatory ones. They never hold back `OK`/`Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 63), pattern(CONSENT_KEY_RE))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub optional_consents: Vec<String>,

    /// Free text for the platform team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub notes: Option<String>,

    /// `Retain` (default): recordings outlive the Tenant object. `Delete`: deleting the Tenant
    /// deletes the storage the operator created (never bring-your-own storage).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Pause reconciliation of this tenant (nothing is changed or re-checked while true).
    #[serde(default)]
    pub suspend: bool,
}

/// The customer's contract.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum License {
    /// Single recording.
    Essentials,
    /// Double recording with a paired, redundant bot.
    Pro,
}

impl License {
    /// Advanced storage (a geo-redundant copy in the paired region) comes with Pro.
    pub fn advanced_storage(self) -> bool {
        self == License::Pro
    }

    /// The license type shown to people.
    pub fn display_type(self) -> &'static str {
        match self {
            License::Pro => "Audio & Redundancy",
            License::Essentials => "Audio Recording",
        }
    }
}

/// Storage locations of a tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Azure region of the default system storage, e.g. `westeurope`. Immutable.
    #[schemars(length(min = 2, max = 40), pattern(REGION_RE))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.location is immutable"))]
    pub location: String,

    /// Bring-your-own-storage.
    #[serde(default)]
    pub byos: ByosSpec,
}

/// Bring-your-own-storage: storage accounts of the customer's own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.enabled || size(self.locations) == 0")
    .message("byos.locations may only be set when byos.enabled is true")
    .field_path(".locations"))]
#[serde(rename_all = "camelCase")]
pub struct ByosSpec {
    /// Whether the customer may bring their own storage.
    #[serde(default)]
    pub enabled: bool,

    /// The customer's storage locations; each names a Secret with the storage URL and credential.
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub locations: Vec<ByosLocation>,
}

/// One storage location of the customer's own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ByosLocation {
    /// A name for this location, unique within the tenant.
    #[schemars(length(min = 1, max = 63), pattern(OBJECT_NAME_RE))]
    pub name: String,

    /// Azure region of the customer's account, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 40), pattern(REGION_RE))]
    pub location: Option<String>,

    /// Secret in the operator's namespace holding the container SAS URL (`url` key by default).
    pub secret_ref: SecretKeyRef,
}

/// A key of a Kubernetes Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_RE))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// How long recordings are kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.unlimited || !has(self.days) || self.days <= 730")
    .message("retention.days must be at most 730 (24 months) unless retention.unlimited is true")
    .field_path(".days"))]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Allow retention beyond 24 months: `days` is then the customer's custom value (it may
    /// exceed 730), and without `days` recordings are kept without limit.
    #[serde(default)]
    pub unlimited: bool,
    /// Days recordings are kept: at most 730 unless `unlimited`; 365 when absent and not
    /// `unlimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub days: Option<i32>,
}

/// Days recordings are kept when the spec says nothing.
pub const DEFAULT_RETENTION_DAYS: i32 = 365;

impl RetentionSpec {
    /// The effective retention in days; `None` when recordings are kept without limit.
    ///
    /// - not `unlimited`: `days`, 365 when absent;
    /// - `unlimited` with `days`: the customer's custom value, except 365: until `days` lost
    ///   its schema default, the API server stored 365 in every Tenant that left it out, and
    ///   `unlimited` then meant without limit whatever `days` said. Such a Tenant keeps that
    ///   meaning; a 365-day limit is written without `unlimited`.
    /// - `unlimited` without `days`: without limit.
    pub fn limit_days(&self) -> Option<u32> {
        let days = match (self.unlimited, self.days) {
            (false, days) => days.unwrap_or(DEFAULT_RETENTION_DAYS),
            (true, Some(days)) if days != DEFAULT_RETENTION_DAYS => days,
            (true, _) => return None,
        };
        Some(u32::try_from(days).unwrap_or(0))
    }
}

/// Compliance switches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!self.controlRecordingNotifications || (has(self.legalWaiverRef) && size(self.legalWaiverRef) > 0)")
    .message("compliance.legalWaiverRef is required when controlRecordingNotifications is true")
    .field_path(".legalWaiverRef")
    .reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct ComplianceSpec {
    /// Whether the customer may control the Teams recording banner; needs `legalWaiverRef`.
    #[serde(default)]
    pub control_recording_notifications: bool,
    /// Reference of the signed legal waiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub legal_waiver_ref: Option<String>,
    /// Whether the customer may delete recordings.
    #[serde(default)]
    pub allow_delete_recordings: bool,
}

/// What happens to the tenant's storage when the Tenant object is deleted.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum DeletionPolicy {
    /// Recordings outlive the Tenant object.
    #[default]
    Retain,
    /// The storage the operator created is deleted with the Tenant.
    Delete,
}

/// The platform's one-word health of a tenant.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// A mandatory consent is missing or a part is failing; `status.alarm` says what to do.
    Warning,
    /// Everything mandatory is in place.
    #[serde(rename = "OK")]
    Ok,
}

/// Observed state of a tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Warning` or `OK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// What the customer or the platform team must still do (empty when OK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    /// License type shown to people: `Audio & Redundancy` (Pro) or `Audio Recording` (Essentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<String>,
    /// Whether a geo-redundant copy is kept in the paired region (Pro).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced_storage: Option<bool>,
    /// The Entra tenant id, from the spec or resolved from the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The tenant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One line per storage location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<StorageLocationStatus>,
    /// One line per consent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<ConsentSummary>,
    /// The customer's Quick Start page: a signed link that expires, renewed before it does
    /// (absent when the operator has no `publicUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_start_url: Option<String>,
    /// The default administrators (`spec.adminUpns`) as the customer's directory knows them,
    /// once the `directory` consent is granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub administrators: Vec<AdministratorStatus>,
    /// Whether the platform's Teams app (the configuration's `teamsAppId`) is published in
    /// the customer's organisation catalog, as the `directory` consent read it; absent when
    /// the configuration names no Teams app. Informational: it never holds back `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_app: Option<TeamsAppStatus>,
    /// Licensed users of the tenant's RecordingServices that fit in `spec.includedUsers`
    /// (a service that would exceed it is refused and not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_in_use: Option<i64>,
    /// When `Ready` first turned `True` (RFC 3339); set once by the operator and never changed
    /// or cleared afterwards. A Tenant already Ready when an operator that knows this field
    /// first sees it gets its `Ready` condition's `lastTransitionTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ready_at: Option<Time>,
    /// `ConsentsGranted`, `StorageReady`, `Ready`, and `Conflict` while an older Tenant holds
    /// a value this one must not share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The e-mails sent to `spec.contactEmails`, one line per occurrence (written by the
    /// operator before it sends, so nothing is sent twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub notifications: Vec<NotificationRecord>,
    /// The retention sweep (written by the sweep alone, under its own field manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionStatus>,
    /// A digest (128 bits of SHA-256, hex) of the namespace, ResourceQuota, NetworkPolicy and
    /// ConsentGrants as the operator last applied them. A restarted operator whose desired
    /// objects have this digest sends none of them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
}

/// What the retention sweep applies and what its last sweep did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionStatus {
    /// Days after which recordings are deleted now; absent when they are kept without limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_days: Option<i32>,
    /// Recordings are kept without limit: nothing is deleted.
    #[serde(default)]
    pub unlimited: bool,
    /// The sweep only counts (the operator's configuration says `dryRun`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// When the last sweep that went through every location finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sweep_time: Option<Time>,
    /// When the last sweep, finished or not, ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// `Completed`, `DryRun`, `Failed` or `NotSwept` (nothing to sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// Of the last sweep: recordings deleted.
    #[serde(default)]
    pub blobs_deleted: i64,
    /// Of the last sweep: bytes deleted.
    #[serde(default)]
    pub bytes_deleted: i64,
    /// Of the last sweep: recordings past retention (in a dry run: what would be deleted).
    #[serde(default)]
    pub blobs_past_retention: i64,
    /// Of the last sweep: recordings past retention kept for a legal hold or an immutability
    /// policy.
    #[serde(default)]
    pub kept_for_hold: i64,
    /// Of the last sweep: recordings kept because their age could not be read.
    #[serde(default)]
    pub kept_unknown_age: i64,
    /// Of the last sweep: deletions refused (lease, changed meanwhile) and locations that failed.
    #[serde(default)]
    pub errors: i64,
    /// For people: what the last sweep did, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A shortened retention waiting for its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingRetention>,
}

/// A shortened retention, announced and not yet applied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingRetention {
    /// The new retention in days.
    pub days: i32,
    /// When the shortening was first seen and announced.
    pub announced_time: Time,
    /// From when recordings older than `days` are deleted.
    pub applies_time: Time,
    /// Recordings the new retention will delete that the current one keeps, as of the last
    /// sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_affected: Option<i64>,
}

/// What a notification is about.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
pub enum NotificationKind {
    /// The tenant was created: the Quick Start link and each consent link.
    OnboardingStarted,
    /// Every mandatory consent is granted and the tenant is `OK`.
    TenantLive,
    /// A consent the customer had granted was revoked, or lacks permissions.
    ConsentRevoked,
    /// The tenant's storage has been failing for longer than the grace period.
    StorageFailing,
    /// A recording service's client secret expires within 30 days.
    SecretExpiring30Days,
    /// A recording service's client secret expires within 7 days.
    SecretExpiring7Days,
    /// A recording service's client secret has expired.
    SecretExpired,
    /// A shortened retention was announced: what will be deleted, and from when.
    RetentionShortened,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 8] = [
        NotificationKind::OnboardingStarted,
        NotificationKind::TenantLive,
        NotificationKind::ConsentRevoked,
        NotificationKind::StorageFailing,
        NotificationKind::SecretExpiring30Days,
        NotificationKind::SecretExpiring7Days,
        NotificationKind::SecretExpired,
        NotificationKind::RetentionShortened,
    ];

    /// The name in status, metrics and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::OnboardingStarted => "OnboardingStarted",
            NotificationKind::TenantLive => "TenantLive",
            NotificationKind::ConsentRevoked => "ConsentRevoked",
            NotificationKind::StorageFailing => "StorageFailing",
            NotificationKind::SecretExpiring30Days => "SecretExpiring30Days",
            NotificationKind::SecretExpiring7Days => "SecretExpiring7Days",
            NotificationKind::SecretExpired => "SecretExpired",
            NotificationKind::RetentionShortened => "RetentionShortened",
        }
    }
}

/// Where a notification stands.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationState {
    /// Recorded, and being handed to the mail transport. A send interrupted by a restart
    /// stays here: it is never repeated.
    Sending,
    /// The mail transport accepted the message for every recipient.
    Sent,
    /// The last attempt failed; retried at `nextAttemptAt`.
    Failed,
    /// Failed too many times; not tried again.
    GaveUp,
}

/// One notification: what it is about, to how many, and how it went.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// What the notification is about.
    pub kind: NotificationKind,
    /// Which occurrence of it (e.g. the time a consent was revoked); one e-mail per occurrence.
    #[schemars(length(max = 512))]
    pub occurrence: String,
    /// Where it stands.
    pub state: NotificationState,
    /// How many addresses it went (or goes) to.
    pub recipients: i32,
    /// Attempts so far.
    pub attempts: i32,
    /// When the last attempt started.
    pub last_attempt_at: Time,
    /// When the transport accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    /// When a failed notification is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// Why the last attempt failed (never a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// One storage location of a tenant, as observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocationStatus {
    /// Azure region.
    pub location: String,
    /// `default`, `paired` or `byos`.
    pub role: String,
    /// BYOS location name, when `role` is `byos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where recordings go (no credential in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether the location is usable.
    pub ready: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One consent of a tenant, as observed through its ConsentGrant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsentSummary {
    /// Consent key, e.g. `recording`.
    pub name: String,
    /// State of the consent.
    pub state: ConsentState,
    /// Whether the consent is optional (never holds back `OK`).
    #[serde(default)]
    pub optional: bool,
    /// The admin-consent link to hand the customer's Global admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_url: Option<String>,
}

/// The platform's Teams app in the customer's organisation catalog.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TeamsAppStatus {
    /// `Published`, `Submitted` (awaiting the customer's Teams admin's approval), `Rejected`,
    /// `NotInCatalog`, or `NotChecked` (the `directory` consent cannot read the catalog: it
    /// needs the optional `AppCatalog.Read.All`; the message says why).
    pub state: String,
    /// In words.
    pub message: String,
}

/// One default administrator, looked up in the customer's directory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdministratorStatus {
    /// User principal name, from `spec.adminUpns`.
    pub upn: String,
    /// `Verified`, `Missing`, `Disabled` or `NotChecked`.
    pub state: AdministratorState,
    /// Why, when not `Verified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the customer's directory says about an administrator.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdministratorState {
    /// The user exists and may sign in.
    Verified,
    /// No such user in the customer's directory.
    Missing,
    /// The user exists, but is blocked from signing in.
    Disabled,
    /// Not looked up yet (the `directory` consent is missing, or Graph could not answer).
    NotChecked,
}

impl Tenant {
    /// Name of the namespace the operator creates for this tenant.
    pub fn namespace_name(&self) -> String {
        tenant_namespace(&kube::ResourceExt::name_any(self))
    }

    /// The customer's Entra tenant id: from the spec (lowercased), else as the Tenant
    /// controller resolved it and wrote it in status.
    pub fn entra_tenant_id(&self) -> Option<String> {
        self.spec
            .tenant_id
            .as_ref()
            .map(|id| id.to_ascii_lowercase())
            .or_else(|| self.status.as_ref().and_then(|s| s.tenant_id.clone()))
    }
}

/// Name of the namespace the operator creates for the Tenant named `tenant`.
pub fn tenant_namespace(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(unlimited: bool, days: Option<i32>) -> Option<u32> {
        RetentionSpec { unlimited, days }.limit_days()
    }

    #[test]
    fn effective_retention_of_each_variant() {
        assert_eq!(retention(false, None), Some(365), "the operator's default");
        assert_eq!(retention(false, Some(30)), Some(30));
        assert_eq!(retention(false, Some(730)), Some(730));
        assert_eq!(retention(true, None), None, "unlimited without days");
        assert_eq!(retention(true, Some(1000)), Some(1000), "a custom value");
        assert_eq!(retention(true, Some(90)), Some(90));
        // Stored by the old schema default next to `unlimited: true`: still without limit.
        assert_eq!(retention(true, Some(365)), None);
        let absent: RetentionSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.days, None);
        assert_eq!(absent.limit_days(), Some(365));
    }
}
