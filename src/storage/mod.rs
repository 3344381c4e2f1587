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
//! This module holds what both share: the request and status types, the one error type, and
//! the scrubbing that keeps SAS tokens out of every message; `naming.rs` the pure naming
//! and region-pair rules. The configuration is [`crate::config::StorageConfig`].

pub mod azure;
mod naming;
pub mod pvc;
pub mod retention;
pub mod sas;
pub mod tenant;

pub use crate::crd::tenant::tenant_namespace;
pub use naming::{container_name, is_valid_container_name, paired_region, plan_storage};

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

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
