//! Per-tenant storage: where a tenant's recordings live, and whether that place is usable.
//!
//! The Tenant controller asks a [`StorageBackend`] to *ensure* the storage the operator
//! provisions (the default location, and for Pro a copy in the Azure paired region), to *check*
//! bring-your-own-storage (BYOS) locations without touching them, and, when a Tenant with
//! `deletionPolicy: Delete` goes, to *delete* what the operator created. Every answer is a
//! [`LocationReport`], the line that goes into `Tenant.status.storage[]`.
//!
//! Two backends, chosen by [`StorageConfig::backend`]:
//! - [`azure::AzureBlobBackend`]: a blob container per tenant and location in the storage
//!   account configured for that region (Azure Storage, or Azurite in tests);
//! - [`pvc::PvcBackend`]: a PersistentVolumeClaim per location in the tenant's namespace, for
//!   clusters without Azure.
//!
//! [`tenant::TenantStorage`] is what the Tenant controller calls: it maps a Tenant to the
//! locations above and back to `status.storage[]` lines.
//!
//! This module holds what both share: the configuration, the request and status types, the
//! pure naming and region-pair rules, the one error type, and the scrubbing that keeps SAS
//! tokens out of every message.

pub mod azure;
pub mod pvc;
pub mod retention;
pub mod sas;
pub mod tenant;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{redact_url, BackendKind, SecretRef, SecretSource, StorageConfig};

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

/// A place for a tenant's recordings that the operator provisions itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsureStorage {
    /// The Tenant object's name.
    pub tenant: String,
    /// The Azure region of this location (for the paired copy: the paired region).
    pub location: String,
    pub role: ManagedRole,
    /// `None` means unlimited retention.
    pub retention_days: Option<u32>,
    /// `Essentials` or `Pro`, recorded with the storage for people looking at the account.
    pub license: String,
    /// The Tenant object's uid, stamped on what the operator creates: a Tenant of the same
    /// name elsewhere (another cluster on the same storage account) never deletes it.
    pub tenant_uid: Option<String>,
}

/// The two locations the operator provisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManagedRole {
    /// The tenant's default storage in `spec.storage.location`.
    Default,
    /// The geo-redundant copy in the paired region (Pro).
    Paired,
}

impl ManagedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedRole::Default => "default",
            ManagedRole::Paired => "paired",
        }
    }
}

impl From<ManagedRole> for StorageRole {
    fn from(role: ManagedRole) -> Self {
        match role {
            ManagedRole::Default => StorageRole::Default,
            ManagedRole::Paired => StorageRole::Paired,
        }
    }
}

/// A customer's own storage location, as named in `spec.storage.byos.locations[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByosLocation {
    /// The location's name, unique within the tenant.
    pub name: String,
    /// The Azure region of the customer's account, when known.
    pub location: Option<String>,
    /// The Secret key that holds the customer's container SAS URL.
    pub secret: SecretRef,
}

impl ByosLocation {
    /// The region for the status line: the one given, or else the location's name.
    pub fn region_or_name(&self) -> &str {
        self.location.as_deref().unwrap_or(&self.name)
    }
}

/// The customer's credential for a BYOS location: a container (or account) SAS URL such as
/// `https://account.blob.core.windows.net/recordings?sv=…&sig=…`. Read from the customer's
/// Secret with [`ByosCredential::read`]; never printed.
pub struct ByosCredential {
    sas_url: SecretString,
}

impl ByosCredential {
    pub fn new(sas_url: SecretString) -> Self {
        Self { sas_url }
    }

    /// Reads the credential of `byos` from its Secret.
    pub async fn read(
        secrets: &dyn SecretSource,
        byos: &ByosLocation,
    ) -> Result<Self, StorageError> {
        let value = secrets
            .get(&byos.secret)
            .await
            .map_err(|e| StorageError::Secret {
                reason: e.to_string(),
            })?;
        Ok(Self::new(value))
    }

    pub(crate) fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.sas_url)
    }
}

impl std::fmt::Debug for ByosCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByosCredential([REDACTED])")
    }
}

/// What ensuring or checking one storage location found; it becomes one line of
/// `Tenant.status.storage[]` ([`crate::crd::tenant::StorageLocationStatus`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationReport {
    /// Azure region (for a BYOS location without a region: its name).
    pub location: String,
    pub role: StorageRole,
    /// The BYOS location's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the recordings go: the container URL without any credential, or `pvc://ns/name`.
    pub endpoint: String,
    pub ready: bool,
    /// For people: what was done or found, or what is wrong.
    pub message: String,
}

impl LocationReport {
    /// The line for a location whose ensure or check failed with `error`.
    pub fn failed(
        location: &str,
        role: StorageRole,
        name: Option<&str>,
        endpoint: &str,
        error: &StorageError,
    ) -> Self {
        Self {
            location: location.to_string(),
            role,
            name: name.map(str::to_string),
            endpoint: redact_url(endpoint),
            ready: false,
            message: error.to_string(),
        }
    }
}

/// What a storage location is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageRole {
    Default,
    Paired,
    Byos,
}

/// What [`StorageBackend::delete`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The operator's container or claim was deleted.
    Deleted,
    /// There was nothing to delete.
    AlreadyGone,
    /// Something exists under that name, but the operator did not create it for this tenant
    /// (an adopted container, another tenant's, someone else's): it is left alone.
    Kept { reason: String },
}

impl std::fmt::Display for DeleteOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeleteOutcome::Deleted => f.write_str("deleted"),
            DeleteOutcome::AlreadyGone => f.write_str("already gone"),
            DeleteOutcome::Kept { reason } => write!(f, "kept: {reason}"),
        }
    }
}

/// A storage backend. Every method is safe to call again: `ensure` converges, `check_byos`
/// only reads, `delete` of something gone succeeds.
#[async_trait]
pub trait StorageBackend: Send + Sync {
    /// Makes sure the location exists, and says where it is.
    async fn ensure(&self, request: &EnsureStorage) -> Result<LocationReport, StorageError>;

    /// Checks that a customer's own location is reachable with the customer's credential; never
    /// writes. Findings (reachable, bad credential, missing container, unreachable host) are a
    /// status with `ready` true or false; `Err` only when the check could not be made at all.
    async fn check_byos(
        &self,
        byos: &ByosLocation,
        credential: &ByosCredential,
    ) -> Result<LocationReport, StorageError>;

    /// Deletes what the operator created for this request, and nothing else.
    async fn delete(&self, request: &EnsureStorage) -> Result<DeleteOutcome, StorageError>;

    /// Where the location of `request` is (without credentials), known without asking the
    /// storage service; `None` when the configuration names no place for it. A location that
    /// fails a check keeps its endpoint in the status, so the bots' configuration does not
    /// change (and roll the bots) over a passing outage.
    fn endpoint(&self, request: &EnsureStorage) -> Option<String>;

    /// Deletes the recordings of `request`'s location that `plan` finds past retention, if
    /// the location is the operator's for this tenant. Backends without blob ages
    /// (PersistentVolumeClaims) leave retention to the recording bots.
    async fn sweep(
        &self,
        request: &EnsureStorage,
        plan: &retention::SweepPlan,
    ) -> Result<retention::SweepOutcome, retention::SweepFailure> {
        let _ = (request, plan);
        Ok(retention::SweepOutcome::Unsupported {
            reason: "volumes have no per-recording ages; the recording bots apply the retention \
                     of their configuration"
                .to_string(),
        })
    }
}

/// Every problem of the `storage` section at once, as the storage error of a bad configuration.
pub fn validate_config(config: &StorageConfig) -> Result<(), StorageError> {
    let problems = config.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StorageError::Config(problems.join("; ")))
    }
}

/// Builds the backend the configuration asks for.
pub fn backend_from_config(
    config: &StorageConfig,
    client: kube::Client,
    secrets: Arc<dyn SecretSource>,
) -> Result<Arc<dyn StorageBackend>, StorageError> {
    validate_config(config)?;
    Ok(match config.backend {
        BackendKind::AzureBlob => Arc::new(azure::AzureBlobBackend::new(config, secrets)?),
        BackendKind::Pvc => Arc::new(pvc::PvcBackend::new(config, client)),
    })
}

// ---------------------------------------------------------------------------------------------
// Pure rules
// ---------------------------------------------------------------------------------------------

/// The region holding the geo-redundant copy of `location`'s recordings.
pub fn paired_region(
    location: &str,
    pairs: &BTreeMap<String, String>,
) -> Result<String, StorageError> {
    pairs
        .get(location)
        .cloned()
        .ok_or_else(|| StorageError::NoPairedRegion {
            region: location.to_string(),
        })
}

/// The locations the operator provisions for a tenant: the default one, and for Pro
/// (`geo_redundant`) the paired region's.
pub fn plan_storage(
    tenant: &str,
    location: &str,
    license: &str,
    geo_redundant: bool,
    retention_days: Option<u32>,
    pairs: &BTreeMap<String, String>,
) -> Result<Vec<EnsureStorage>, StorageError> {
    let request = |location: String, role| EnsureStorage {
        tenant_uid: None,
        tenant: tenant.to_string(),
        location,
        role,
        retention_days,
        license: license.to_string(),
    };
    let mut plan = vec![request(location.to_string(), ManagedRole::Default)];
    if geo_redundant {
        plan.push(request(
            paired_region(location, pairs)?,
            ManagedRole::Paired,
        ));
    }
    Ok(plan)
}

/// Longest tenant part of a container name: 63 minus the longest role suffix (`-default`).
const NAME_BUDGET: usize = 63 - "-default".len();
/// Hex digits of the SHA-256 of the tenant name appended when the name had to change.
const HASH_DIGITS: usize = 10;

/// The blob container of `tenant`'s recordings in its `role` location, by Azure's rules:
/// 3–63 characters of lowercase letters, digits and hyphens, starting with a letter or digit,
/// no two hyphens in a row, none at the end.
///
/// A tenant name that already fits is kept as it is (`contoso` → `contoso-default`). Otherwise
/// it is lowercased, every other character becomes a hyphen, runs of hyphens shrink to one, and
/// a short hash of the original name is appended, so two names that sanitise alike still get
/// different containers (`Contoso.EU` → `contoso-eu-<hash>-default`). The result depends on
/// nothing but the name and the role. The operator also stamps the tenant into the container's
/// metadata and refuses to adopt a container stamped for another tenant.
pub fn container_name(tenant: &str, role: ManagedRole) -> String {
    let sanitized = sanitize(tenant);
    let base = if sanitized == tenant && sanitized.len() <= NAME_BUDGET {
        sanitized
    } else {
        let digest = Sha256::digest(tenant.as_bytes());
        let hash: String = digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..HASH_DIGITS]
            .to_string();
        let keep = NAME_BUDGET - 1 - HASH_DIGITS;
        let mut prefix: String = sanitized.chars().take(keep).collect();
        while prefix.ends_with('-') {
            prefix.pop();
        }
        if prefix.is_empty() {
            hash
        } else {
            format!("{prefix}-{hash}")
        }
    };
    format!("{base}-{}", role.as_str())
}

/// Lowercase letters and digits kept, anything else a single hyphen, none at either end.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Whether `name` follows Azure's container naming rules.
pub fn is_valid_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

pub use crate::crd::tenant::tenant_namespace;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Everything that can go wrong with storage. Messages are meant for platform engineers and
/// never contain a credential: URLs are shown without their query string.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error(
        "region \"{region}\" has no paired region configured, so the Pro geo-redundant copy has \
         nowhere to go; add \"{region}\" to storage.regionPairs"
    )]
    NoPairedRegion { region: String },
    #[error(
        "no storage account is configured for region \"{region}\"; add it to storage.accounts"
    )]
    NoAccountForRegion { region: String },
    #[error("cannot read the storage credential: {reason}")]
    Secret { reason: String },
    #[error("the storage credential is not usable: {reason}")]
    InvalidCredential { reason: String },
    #[error(
        "storage at {endpoint} rejected the credential (HTTP 403 {code}): the SAS token is \
         invalid, expired, or signed for another account{}",
        network_hint(code)
    )]
    AuthenticationFailed { endpoint: String, code: String },
    #[error(
        "storage at {endpoint} rejected the credential (HTTP 403 {code}): the SAS token expired \
         on {expired_on}; renew it"
    )]
    CredentialExpired {
        endpoint: String,
        code: String,
        expired_on: String,
    },
    #[error(
        "storage at {endpoint} refused the operation (HTTP 403 {code}): the SAS token lacks a \
         permission or resource type it needs"
    )]
    PermissionDenied { endpoint: String, code: String },
    #[error(
        "storage at {endpoint} refused a key-signed SAS (HTTP 403 {code}): the storage account \
         does not allow shared key authorization; allow it, or give the operator a user \
         delegation SAS"
    )]
    SharedKeyDisabled { endpoint: String, code: String },
    #[error("container {endpoint} does not exist (HTTP 404 ContainerNotFound)")]
    ContainerNotFound { endpoint: String },
    #[error(
        "container {endpoint} belongs to tenant \"{owner}\", not to \"{tenant}\"; it is left alone"
    )]
    OwnedByAnotherTenant {
        endpoint: String,
        owner: String,
        tenant: String,
    },
    #[error(
        "claim {endpoint} was made for another Tenant named \"{tenant}\" (uid {owner_uid}); it \
         is left alone"
    )]
    ClaimOfAnotherTenant {
        endpoint: String,
        tenant: String,
        owner_uid: String,
    },
    #[error("storage endpoint {endpoint} is unreachable: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("storage endpoint {endpoint} did not answer within {seconds} s")]
    Timeout { endpoint: String, seconds: u64 },
    #[error("storage at {endpoint} answered HTTP {status} {code}")]
    Service {
        endpoint: String,
        status: u16,
        code: String,
    },
    #[error("{action} failed: {detail}")]
    Kubernetes { action: String, detail: String },
}

/// `AuthorizationFailure` is also what Azure Storage answers when its network rules
/// (firewall, private endpoint) do not admit the caller, whatever the credential.
fn network_hint(code: &str) -> &'static str {
    if code == "AuthorizationFailure" {
        ", or the storage account's network rules (firewall, private endpoint) do not admit \
         the operator's network"
    } else {
        ""
    }
}

impl StorageError {
    /// A CamelCase reason for a `StorageReady=False` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            StorageError::Config(_) => "InvalidStorageConfig",
            StorageError::NoPairedRegion { .. } => "NoPairedRegion",
            StorageError::NoAccountForRegion { .. } => "NoStorageAccountForRegion",
            StorageError::Secret { .. } => "StorageCredentialUnavailable",
            StorageError::InvalidCredential { .. } => "StorageCredentialInvalid",
            StorageError::AuthenticationFailed { .. } => "StorageAuthenticationFailed",
            StorageError::CredentialExpired { .. } => "StorageCredentialExpired",
            StorageError::PermissionDenied { .. } => "StoragePermissionDenied",
            StorageError::SharedKeyDisabled { .. } => "StorageSharedKeyDisabled",
            StorageError::ContainerNotFound { .. } => "ContainerNotFound",
            StorageError::OwnedByAnotherTenant { .. } => "ContainerOwnedByAnotherTenant",
            StorageError::ClaimOfAnotherTenant { .. } => "ClaimOwnedByAnotherTenant",
            StorageError::Unreachable { .. } => "StorageUnreachable",
            StorageError::Timeout { .. } => "StorageTimeout",
            StorageError::Service { .. } => "StorageServiceError",
            StorageError::Kubernetes { .. } => "KubernetesError",
        }
    }

    /// Whether trying again later may help without anyone changing anything (outages,
    /// throttling), as opposed to configuration or credential problems.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unreachable { .. } | StorageError::Timeout { .. } => true,
            StorageError::Service { status, code, .. } => {
                *status == 429 || *status >= 500 || code == "ContainerBeingDeleted"
            }
            StorageError::Kubernetes { .. } => true,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keeping credentials out of messages
// ---------------------------------------------------------------------------------------------

/// `text` with the query string of every `http://` or `https://` URL in it removed.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url_start(rest) {
        out.push_str(&rest[..start]);
        let url_part = &rest[start..];
        let end = url_part
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<'))
            .unwrap_or(url_part.len());
        out.push_str(&redact_url(&url_part[..end]));
        rest = &url_part[end..];
    }
    out.push_str(rest);
    out
}

fn find_url_start(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_region_pairs;

    #[test]
    fn a_name_that_fits_is_kept() {
        assert_eq!(
            container_name("contoso", ManagedRole::Default),
            "contoso-default"
        );
        assert_eq!(
            container_name("contoso", ManagedRole::Paired),
            "contoso-paired"
        );
        assert_eq!(container_name("a", ManagedRole::Default), "a-default");
        assert_eq!(
            container_name("7-eleven", ManagedRole::Paired),
            "7-eleven-paired"
        );
    }

    #[test]
    fn names_that_need_changing_get_a_hash_of_the_original() {
        let dotted = container_name("contoso.eu", ManagedRole::Default);
        let hyphened = container_name("contoso-eu", ManagedRole::Default);
        assert_eq!(hyphened, "contoso-eu-default");
        assert!(dotted.starts_with("contoso-eu-"), "{dotted}");
        assert_ne!(
            dotted, hyphened,
            "names that sanitise alike must not share a container"
        );
        assert_eq!(
            dotted.len(),
            "contoso-eu-".len() + HASH_DIGITS + "-default".len()
        );
        // Stable: the same name always gives the same container.
        assert_eq!(dotted, container_name("contoso.eu", ManagedRole::Default));
        // Upper case, runs of odd characters and odd ends.
        let odd = container_name("--Contoso..__Ltd--", ManagedRole::Paired);
        assert!(odd.starts_with("contoso-ltd-"), "{odd}");
        assert!(is_valid_container_name(&odd), "{odd}");
    }

    #[test]
    fn long_names_are_cut_to_63_characters_and_stay_distinct() {
        let long_a = format!("{}a", "x".repeat(250));
        let long_b = format!("{}b", "x".repeat(250));
        for role in [ManagedRole::Default, ManagedRole::Paired] {
            let a = container_name(&long_a, role);
            let b = container_name(&long_b, role);
            assert!(a.len() <= 63 && is_valid_container_name(&a), "{a}");
            assert_ne!(a, b);
        }
        // Exactly at the budget: kept; one more: hashed.
        let at_budget = "y".repeat(NAME_BUDGET);
        assert_eq!(
            container_name(&at_budget, ManagedRole::Default),
            format!("{at_budget}-default")
        );
        assert_eq!(container_name(&at_budget, ManagedRole::Default).len(), 63);
        let over = "y".repeat(NAME_BUDGET + 1);
        let hashed = container_name(&over, ManagedRole::Default);
        assert_eq!(hashed.len(), 63);
        assert!(is_valid_container_name(&hashed));
    }

    #[test]
    fn a_name_without_letters_or_digits_still_gets_a_valid_container() {
        let name = container_name("...", ManagedRole::Default);
        assert!(is_valid_container_name(&name), "{name}");
        assert_eq!(name.len(), HASH_DIGITS + "-default".len());
        assert_ne!(name, container_name("..", ManagedRole::Default));
    }

    #[test]
    fn every_generated_name_follows_azure_rules() {
        for tenant in [
            "a",
            "ab",
            "a.b",
            "A_B",
            "x-",
            "-x",
            "ä-ö",
            "tenant.with.dots.example.com",
        ] {
            for role in [ManagedRole::Default, ManagedRole::Paired] {
                let name = container_name(tenant, role);
                assert!(is_valid_container_name(&name), "{tenant} → {name}");
            }
        }
    }

    #[test]
    fn container_rules_at_the_edges() {
        assert!(is_valid_container_name("abc"));
        assert!(!is_valid_container_name("ab"));
        assert!(is_valid_container_name(&"a".repeat(63)));
        assert!(!is_valid_container_name(&"a".repeat(64)));
        assert!(!is_valid_container_name("-abc"));
        assert!(!is_valid_container_name("abc-"));
        assert!(!is_valid_container_name("a--b"));
        assert!(!is_valid_container_name("Abc"));
        assert!(is_valid_container_name("1ab"));
    }

    #[test]
    fn pairs_follow_azure_including_one_way_pairs() {
        let pairs = default_region_pairs();
        assert_eq!(paired_region("westeurope", &pairs).unwrap(), "northeurope");
        assert_eq!(paired_region("northeurope", &pairs).unwrap(), "westeurope");
        assert_eq!(paired_region("westus3", &pairs).unwrap(), "eastus");
        // eastus pairs with westus, not back with westus3.
        assert_eq!(paired_region("eastus", &pairs).unwrap(), "westus");
        assert_eq!(
            paired_region("brazilsouth", &pairs).unwrap(),
            "southcentralus"
        );
        assert_eq!(
            paired_region("southcentralus", &pairs).unwrap(),
            "northcentralus"
        );
        assert_eq!(paired_region("westindia", &pairs).unwrap(), "southindia");
    }

    #[test]
    fn a_region_without_pair_is_a_clear_error() {
        let err = paired_region("israelcentral", &default_region_pairs()).unwrap_err();
        assert_eq!(err.reason(), "NoPairedRegion");
        assert_eq!(
            err.to_string(),
            "region \"israelcentral\" has no paired region configured, so the Pro geo-redundant \
             copy has nowhere to go; add \"israelcentral\" to storage.regionPairs"
        );
    }

    #[test]
    fn plan_has_the_paired_copy_only_for_pro() {
        let pairs = default_region_pairs();
        let essentials = plan_storage(
            "contoso",
            "westeurope",
            "Essentials",
            false,
            Some(365),
            &pairs,
        )
        .unwrap();
        assert_eq!(essentials.len(), 1);
        assert_eq!(essentials[0].role, ManagedRole::Default);
        let pro = plan_storage("contoso", "westeurope", "Pro", true, None, &pairs).unwrap();
        assert_eq!(
            pro.iter()
                .map(|r| (r.location.as_str(), r.role))
                .collect::<Vec<_>>(),
            [
                ("westeurope", ManagedRole::Default),
                ("northeurope", ManagedRole::Paired)
            ]
        );
        assert!(plan_storage("contoso", "israelcentral", "Pro", true, None, &pairs).is_err());
    }

    #[test]
    fn configuration_reads_from_yaml_with_defaults() {
        let config: StorageConfig = serde_saphyr::from_str(
            "backend: azureBlob\n\
             accounts:\n  westeurope:\n    endpoint: https://recweu.blob.core.windows.net\n    \
             credential: { secretRef: { namespace: ops, name: weu, key: sas } }\n",
        )
        .unwrap();
        assert_eq!(config.backend, BackendKind::AzureBlob);
        assert_eq!(config.region_pairs, default_region_pairs());
        assert_eq!(config.request_timeout_seconds, 30);
        assert_eq!(config.pvc.size, "10Gi");
        assert_eq!(
            config.accounts["westeurope"].credential,
            SecretRef::SecretRef {
                namespace: "ops".into(),
                name: "weu".into(),
                key: "sas".into()
            }
        );
        validate_config(&config).unwrap();
    }

    #[test]
    fn validation_names_each_problem() {
        let config: StorageConfig = serde_saphyr::from_str(
            "accounts:\n  westeurope:\n    endpoint: https://x.blob.core.windows.net/?sv=1&sig=2\n    \
             credential: { env: SAS }\n\
             regionPairs: { westeurope: westeurope }\n",
        )
        .unwrap();
        let message = validate_config(&config).unwrap_err().to_string();
        assert!(
            message.contains(
                "storage.accounts.westeurope.endpoint: must be an http(s) URL without a query"
            ),
            "{message}"
        );
        assert!(
            message.contains("storage.regionPairs.westeurope: a region cannot pair with itself"),
            "{message}"
        );
        assert!(!message.contains("sig=2"), "{message}");
        let with_password: StorageConfig = serde_saphyr::from_str(
            "accounts:\n  westeurope:\n    endpoint: https://ops:hunter2@x.blob.core.windows.net\n    \
             credential: { env: SAS }\n",
        )
        .unwrap();
        let message = validate_config(&with_password).unwrap_err().to_string();
        assert!(
            message.contains(
                "\"https://x.blob.core.windows.net\" must not carry a user name or password"
            ),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(
            redact_urls_in("failed at https://u:p@x.blob.core.windows.net/c?sig=s: boom"),
            "failed at https://x.blob.core.windows.net/c boom"
        );
        assert!(
            validate_config(&StorageConfig::default()).is_err(),
            "azureBlob without accounts"
        );
    }

    #[test]
    fn outages_and_throttling_are_transient_configuration_is_not() {
        let service = |status, code: &str| StorageError::Service {
            endpoint: "https://a.blob.core.windows.net/c".into(),
            status,
            code: code.into(),
        };
        assert!(service(503, "ServerBusy").is_transient());
        assert!(service(429, "TooManyRequests").is_transient());
        assert!(service(409, "ContainerBeingDeleted").is_transient());
        assert!(!service(400, "InvalidMetadata").is_transient());
        assert!(!StorageError::NoPairedRegion { region: "x".into() }.is_transient());
        assert!(!StorageError::AuthenticationFailed {
            endpoint: "e".into(),
            code: "AuthenticationFailed".into()
        }
        .is_transient());
    }

    #[test]
    fn delete_outcomes_read_well_in_events() {
        assert_eq!(DeleteOutcome::Deleted.to_string(), "deleted");
        assert_eq!(DeleteOutcome::AlreadyGone.to_string(), "already gone");
        let kept = DeleteOutcome::Kept {
            reason: "adopted".into(),
        };
        assert_eq!(kept.to_string(), "kept: adopted");
    }

    #[test]
    fn query_strings_never_survive_redaction() {
        assert_eq!(
            redact_url("https://a.blob.core.windows.net/c?sv=2025&sig=abc%3D"),
            "https://a.blob.core.windows.net/c"
        );
        assert_eq!(
            redact_urls_in(
                "error sending request for url (http://127.0.0.1:1/acct/c?restype=container&sig=x): refused; see https://h/p?q=1 now"
            ),
            "error sending request for url (http://127.0.0.1:1/acct/c): refused; see https://h/p now"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
    }

    #[test]
    fn status_lines_serialize_in_camel_case() {
        let line = LocationReport {
            location: "westeurope".into(),
            role: StorageRole::Byos,
            name: Some("archive".into()),
            endpoint: "https://a.blob.core.windows.net/c".into(),
            ready: true,
            message: "reachable".into(),
        };
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            serde_json::json!({"location": "westeurope", "role": "byos", "name": "archive",
                "endpoint": "https://a.blob.core.windows.net/c", "ready": true, "message": "reachable"})
        );
    }
}
