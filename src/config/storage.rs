//! The `storage` section of the operator's configuration: backend, storage accounts, PVC
//! defaults, region pairs and retention. The storage module acts on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{redact_url, RetentionConfig, SecretRef};

/// The `storage` section of the operator's configuration.
///
/// ```yaml
/// backend: azureBlob            # azureBlob | pvc
/// accounts:                     # one storage account per region
///   westeurope:
///     endpoint: https://recweu.blob.core.windows.net
///     credential: { secretRef: { namespace: recording-operator, name: storage-weu, key: sas } }
/// pvc:
///   storageClassByRegion: { westeurope: managed-csi }
///   size: 100Gi
/// regionPairs: { westeurope: northeurope, northeurope: westeurope }   # replaces the defaults
/// requestTimeoutSeconds: 30
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub backend: BackendKind,
    /// Region → the storage account serving it (Azure Blob backend).
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
    #[serde(default)]
    pub pvc: PvcConfig,
    /// Region → its paired region, one direction per entry (Azure's pairs by default; a
    /// one-way pair such as `westus3 → eastus` has one entry). Replaces the defaults when given.
    #[serde(default = "default_region_pairs")]
    pub region_pairs: BTreeMap<String, String>,
    /// Upper bound for one storage call including the SDK's own retries.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// The daily sweep of recordings past the tenants' retention.
    #[serde(default)]
    pub retention: RetentionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::default(),
            accounts: BTreeMap::new(),
            pvc: PvcConfig::default(),
            region_pairs: default_region_pairs(),
            request_timeout_seconds: default_request_timeout_seconds(),
            retention: RetentionConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BackendKind {
    #[default]
    AzureBlob,
    Pvc,
}

/// A storage account: its blob endpoint and where its credential is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountConfig {
    /// `https://{account}.blob.core.windows.net` (path style for emulators:
    /// `http://127.0.0.1:10000/{account}`).
    pub endpoint: String,
    /// A Secret (or file, or variable) holding an account SAS token (`sv=…&sig=…`, with or
    /// without the leading `?`) or an account SAS URL; it needs the permissions read, write,
    /// delete, list, add, create on containers (`ss=b`, `srt` with `c`).
    pub credential: SecretRef,
    /// The account's key (base64), only to sign each recording bot a SAS for its own
    /// container (see `storage::sas`); without it the bots get no SAS from the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcConfig {
    /// Region → StorageClass. A region not listed gets no `storageClassName`, i.e. the
    /// cluster's default StorageClass.
    #[serde(default)]
    pub storage_class_by_region: BTreeMap<String, String>,
    /// Requested size of each claim (a Kubernetes quantity).
    #[serde(default = "default_pvc_size")]
    pub size: String,
}

impl Default for PvcConfig {
    fn default() -> Self {
        Self {
            storage_class_by_region: BTreeMap::new(),
            size: default_pvc_size(),
        }
    }
}

fn default_pvc_size() -> String {
    "10Gi".to_string()
}

fn default_request_timeout_seconds() -> u64 {
    30
}

/// Azure's published region pairs. Two-way pairs give two entries; `westus3 → eastus`,
/// `brazilsouth → southcentralus` and `westindia → southindia` are one-way.
pub fn default_region_pairs() -> BTreeMap<String, String> {
    const TWO_WAY: &[(&str, &str)] = &[
        ("eastus", "westus"),
        ("eastus2", "centralus"),
        ("northcentralus", "southcentralus"),
        ("westus2", "westcentralus"),
        ("canadacentral", "canadaeast"),
        ("northeurope", "westeurope"),
        ("uksouth", "ukwest"),
        ("francecentral", "francesouth"),
        ("germanywestcentral", "germanynorth"),
        ("switzerlandnorth", "switzerlandwest"),
        ("norwayeast", "norwaywest"),
        ("swedencentral", "swedensouth"),
        ("australiaeast", "australiasoutheast"),
        ("australiacentral", "australiacentral2"),
        ("japaneast", "japanwest"),
        ("koreacentral", "koreasouth"),
        ("southeastasia", "eastasia"),
        ("centralindia", "southindia"),
        ("southafricanorth", "southafricawest"),
        ("uaenorth", "uaecentral"),
    ];
    const ONE_WAY: &[(&str, &str)] = &[
        ("westus3", "eastus"),
        ("brazilsouth", "southcentralus"),
        ("westindia", "southindia"),
    ];
    let mut pairs = BTreeMap::new();
    for (a, b) in TWO_WAY {
        pairs.insert(a.to_string(), b.to_string());
        pairs.insert(b.to_string(), a.to_string());
    }
    for (from, to) in ONE_WAY {
        pairs.insert(from.to_string(), to.to_string());
    }
    pairs
}

impl StorageConfig {
    /// Every broken rule of the section, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.backend == BackendKind::AzureBlob && self.accounts.is_empty() {
            problems.push(
                "storage.accounts: the azureBlob backend needs at least one account".to_string(),
            );
        }
        for (region, account) in &self.accounts {
            match url::Url::parse(&account.endpoint) {
                Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                    problems.push(format!(
                        "storage.accounts.{region}.endpoint: {:?} must not carry a user name or \
                         password (the credential's Secret holds the SAS token)",
                        redact_url(&account.endpoint)
                    ))
                }
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.query().is_none() => {}
                Ok(_) => problems.push(format!(
                    "storage.accounts.{region}.endpoint: must be an http(s) URL without a query \
                     (put SAS tokens in the credential's Secret)"
                )),
                Err(e) => problems.push(format!(
                    "storage.accounts.{region}.endpoint: not a URL ({e})"
                )),
            }
        }
        for (from, to) in &self.region_pairs {
            if from == to {
                problems.push(format!(
                    "storage.regionPairs.{from}: a region cannot pair with itself"
                ));
            }
        }
        if self.request_timeout_seconds == 0 {
            problems.push("storage.requestTimeoutSeconds: must be at least 1".to_string());
        }
        problems.extend(self.retention.problems());
        problems
    }
}
