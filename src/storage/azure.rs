//! Azure Blob Storage backend, on the official `azure_storage_blob` SDK.
//!
//! Each region has a storage account in the configuration (endpoint + where its SAS lives).
//! A tenant's location is one container in that account, named by
//! [`container_name`](super::container_name) and stamped with metadata: `tenant`, `role`,
//! `license`, `retentiondays` (days or `unlimited`) and `managedby=recording-operator` (metadata
//! names must be C# identifiers, so no hyphens and, as Azure returns them, lower case).
//!
//! - ensure: read the container's properties; missing (404) → create it (201; a 409
//!   `ContainerAlreadyExists` from a race is read again). An existing container's metadata
//!   decides: the operator's own for this tenant → adopt and bring the metadata up to date;
//!   no `managedby` stamp → adopt as is, and never delete it; another tenant's → refuse.
//!   So the steady state costs one request per location.
//! - delete: only a container stamped as the operator's for this tenant (202; 404 = gone).
//! - BYOS: list at most one blob with the customer's SAS URL; never create or delete.
//!
//! Credentials: SAS tokens or SAS URLs from Secrets. The SDK signs no Shared Key requests, and
//! SAS works the same against Azure and Azurite; Entra ID tokens (workload identity) would
//! plug into the SDK's `TokenCredential` but need HTTPS, which Azurite only offers with
//! certificates, so they are not wired up here. Messages and logs show URLs without their
//! query string, so no SAS token ever leaves this module.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Url};
use azure_core::time::OffsetDateTime;
use azure_storage_blob::models::{
    BlobContainerClientCreateOptions, BlobContainerClientGetPropertiesResultHeaders,
    BlobContainerClientListBlobsOptions,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt;
use secrecy::ExposeSecret;

use super::retention::{self, SweepFailure, SweepOutcome, SweepPlan};
use super::{
    container_name, redact_urls_in, ByosCredential, ByosLocation, DeleteOutcome, EnsureStorage,
    LocationReport, StorageBackend, StorageError, StorageRole,
};
use crate::config::{redact_url, AccountConfig, SecretSource, StorageConfig};
use crate::crd::FIELD_MANAGER;

const META_TENANT: &str = "tenant";
const META_ROLE: &str = "role";
const META_LICENSE: &str = "license";
const META_RETENTION: &str = "retentiondays";
const META_MANAGED_BY: &str = "managedby";
const META_TENANT_UID: &str = "tenantuid";

/// Blob containers in one storage account per region.
pub struct AzureBlobBackend {
    accounts: BTreeMap<String, AccountConfig>,
    secrets: Arc<dyn SecretSource>,
    sdk: Sdk,
}

/// How every SDK call is made: client options (retries) and a time limit per call.
#[derive(Clone)]
struct Sdk {
    timeout: Duration,
    client_options: BlobContainerClientOptions,
    /// For the retention sweep, which is in no hurry: more and longer retries, each waiting
    /// at least as long as a 429/503 answer's `Retry-After` asks.
    sweep_options: BlobContainerClientOptions,
}

impl Sdk {
    fn new(timeout: Duration) -> Self {
        // The SDK's HTTP client uses rustls without a built-in crypto provider; use ring, which
        // the Kubernetes client already brings. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let with_retry = |retry| BlobContainerClientOptions {
            client_options: ClientOptions {
                retry,
                ..Default::default()
            },
            ..Default::default()
        };
        // A few quick retries for blips; the controller's requeue backoff does the rest.
        let client_options = with_retry(RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 2,
            max_total_elapsed: azure_core::time::Duration::seconds(10),
            max_delay: azure_core::time::Duration::seconds(2),
        }));
        let sweep_options = with_retry(RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(500),
            max_retries: 5,
            max_total_elapsed: azure_core::time::Duration::seconds(120),
            max_delay: azure_core::time::Duration::seconds(60),
        }));
        Self {
            timeout,
            client_options,
            sweep_options,
        }
    }

    fn client(&self, url: Url, endpoint: &str) -> Result<BlobContainerClient, StorageError> {
        BlobContainerClient::new(url, None, Some(self.client_options.clone()))
            .map_err(|e| classify(e, endpoint))
    }

    /// Runs one SDK call under the time limit.
    async fn bounded<T>(
        &self,
        endpoint: &str,
        call: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<azure_core::Result<T>, StorageError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StorageError::Timeout {
                endpoint: endpoint.to_string(),
                seconds: self.timeout.as_secs(),
            })
    }
}

impl AzureBlobBackend {
    pub fn new(
        config: &StorageConfig,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, StorageError> {
        super::validate_config(config)?;
        Ok(Self {
            accounts: config.accounts.clone(),
            secrets,
            sdk: Sdk::new(Duration::from_secs(config.request_timeout_seconds)),
        })
    }

    /// The container's client (its URL carrying the account SAS) and its URL without it.
    async fn container(
        &self,
        location: &str,
        container: &str,
    ) -> Result<(BlobContainerClient, String, Option<OffsetDateTime>), StorageError> {
        let account =
            self.accounts
                .get(location)
                .ok_or_else(|| StorageError::NoAccountForRegion {
                    region: location.to_string(),
                })?;
        let secret =
            self.secrets
                .get(&account.credential)
                .await
                .map_err(|e| StorageError::Secret {
                    reason: e.to_string(),
                })?;
        let sas = sas_query(secret.expose_secret()).map_err(|reason| {
            StorageError::InvalidCredential {
                reason: format!("{} {reason}", account.credential),
            }
        })?;
        let endpoint = format!("{}/{container}", account.endpoint.trim_end_matches('/'));
        let url = Url::parse(&format!("{endpoint}?{sas}")).map_err(|e| {
            StorageError::Config(format!(
                "storage.accounts.{location}.endpoint: not a URL ({e})"
            ))
        })?;
        let expiry = sas_expiry(&sas);
        Ok((self.sdk.client(url, &endpoint)?, endpoint, expiry))
    }

    async fn metadata_of(
        &self,
        client: &BlobContainerClient,
        endpoint: &str,
    ) -> Result<Option<HashMap<String, String>>, StorageError> {
        match self
            .sdk
            .bounded(endpoint, client.get_properties(None))
            .await?
        {
            Ok(response) => Ok(Some(lowercase_keys(
                response.metadata().map_err(|e| classify(e, endpoint))?,
            ))),
            Err(e) if error_code(&e).as_deref() == Some("ContainerNotFound") => Ok(None),
            Err(e) => Err(classify(e, endpoint)),
        }
    }

    /// Creates the container or adopts the existing one; says which.
    async fn ensure_container(
        &self,
        request: &EnsureStorage,
        client: &BlobContainerClient,
        endpoint: &str,
    ) -> Result<String, StorageError> {
        // Steady state is one read; creating is the exception. A container created by someone
        // else between the read and the create answers 409 and is looked at again.
        match self.metadata_of(client, endpoint).await? {
            Some(found) => self.adopt(request, client, endpoint, found).await,
            None => {
                let options = BlobContainerClientCreateOptions {
                    metadata: Some(desired_metadata(request)),
                    ..Default::default()
                };
                match self
                    .sdk
                    .bounded(endpoint, client.create(Some(options)))
                    .await?
                {
                    Ok(_) => {
                        tracing::info!(tenant = %request.tenant, %endpoint, "created storage container");
                        Ok("container created".to_string())
                    }
                    Err(e) if error_code(&e).as_deref() == Some("ContainerAlreadyExists") => {
                        let found = self.metadata_of(client, endpoint).await?.ok_or_else(|| {
                            // Deleted again in between; the next ensure creates it.
                            StorageError::ContainerNotFound {
                                endpoint: endpoint.to_string(),
                            }
                        })?;
                        self.adopt(request, client, endpoint, found).await
                    }
                    Err(e) => Err(classify(e, endpoint)),
                }
            }
        }
    }

    /// Deletes the container if it is the operator's for this tenant.
    async fn delete_container(
        &self,
        request: &EnsureStorage,
        client: &BlobContainerClient,
        endpoint: &str,
    ) -> Result<DeleteOutcome, StorageError> {
        let endpoint = endpoint.to_string();
        let Some(found) = self.metadata_of(client, &endpoint).await? else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        match ownership(&found, request) {
            Ownership::Ours => {}
            Ownership::OtherInstallation => {
                return Ok(DeleteOutcome::Kept {
                    reason: format!(
                        "container {endpoint} was created for another Tenant named \"{}\" (another uid: another cluster on the same storage account)",
                        request.tenant
                    ),
                })
            }
            Ownership::Unmanaged => {
                return Ok(DeleteOutcome::Kept {
                    reason: format!(
                        "container {endpoint} was adopted, not created by the operator"
                    ),
                })
            }
            Ownership::OtherTenant(owner) => {
                return Ok(DeleteOutcome::Kept {
                    reason: format!("container {endpoint} belongs to tenant \"{owner}\""),
                })
            }
        }
        match self.sdk.bounded(&endpoint, client.delete(None)).await? {
            Ok(_) => {
                tracing::info!(tenant = %request.tenant, %endpoint, "deleted storage container");
                Ok(DeleteOutcome::Deleted)
            }
            Err(e) if error_code(&e).as_deref() == Some("ContainerNotFound") => {
                Ok(DeleteOutcome::AlreadyGone)
            }
            Err(e) => Err(classify(e, &endpoint)),
        }
    }

    /// The container exists already with metadata `found`: decide whose it is.
    async fn adopt(
        &self,
        request: &EnsureStorage,
        client: &BlobContainerClient,
        endpoint: &str,
        found: HashMap<String, String>,
    ) -> Result<String, StorageError> {
        match ownership(&found, request) {
            Ownership::OtherInstallation => Ok(
                "container exists, created for a Tenant of the same name with another uid \
                 (another cluster on the same storage account); it is kept when this tenant is \
                 deleted"
                    .to_string(),
            ),
            Ownership::Ours => {
                let wanted = desired_metadata(request);
                if found == wanted {
                    Ok("container exists (created earlier by the operator)".to_string())
                } else {
                    self.sdk
                        .bounded(endpoint, client.set_metadata(&wanted, None))
                        .await?
                        .map_err(|e| classify(e, endpoint))?;
                    Ok("container exists; metadata updated (retention, license)".to_string())
                }
            }
            Ownership::Unmanaged => Ok(
                "adopted an existing container the operator did not create; it is kept when the \
                 tenant is deleted"
                    .to_string(),
            ),
            Ownership::OtherTenant(owner) => Err(StorageError::OwnedByAnotherTenant {
                endpoint: endpoint.to_string(),
                owner,
                tenant: request.tenant.clone(),
            }),
        }
    }
}

#[async_trait]
impl StorageBackend for AzureBlobBackend {
    fn endpoint(&self, request: &EnsureStorage) -> Option<String> {
        let account = self.accounts.get(&request.location)?;
        Some(format!(
            "{}/{}",
            account.endpoint.trim_end_matches('/'),
            container_name(&request.tenant, request.role)
        ))
    }

    async fn ensure(&self, request: &EnsureStorage) -> Result<LocationReport, StorageError> {
        let name = container_name(&request.tenant, request.role);
        let (client, endpoint, expiry) = self.container(&request.location, &name).await?;
        let now = OffsetDateTime::now_utc();
        let message = self
            .ensure_container(request, &client, &endpoint)
            .await
            .map_err(|e| explain_expiry(e, expiry, now))?;
        Ok(LocationReport {
            location: request.location.clone(),
            role: request.role.into(),
            name: None,
            endpoint,
            ready: true,
            message: with_expiry_note(message, expiry, now),
        })
    }

    async fn check_byos(
        &self,
        byos: &ByosLocation,
        credential: &ByosCredential,
    ) -> Result<LocationReport, StorageError> {
        ByosProbe {
            sdk: self.sdk.clone(),
        }
        .check(byos, credential)
        .await
    }

    async fn delete(&self, request: &EnsureStorage) -> Result<DeleteOutcome, StorageError> {
        let name = container_name(&request.tenant, request.role);
        let (client, endpoint, expiry) = self.container(&request.location, &name).await?;
        let now = OffsetDateTime::now_utc();
        self.delete_container(request, &client, &endpoint)
            .await
            .map_err(|e| explain_expiry(e, expiry, now))
    }

    /// Sweeps the container only when it is stamped as the operator's for this tenant.
    async fn sweep(
        &self,
        request: &EnsureStorage,
        plan: &SweepPlan,
    ) -> Result<SweepOutcome, SweepFailure> {
        let failed = |error| SweepFailure {
            tally: Default::default(),
            error,
        };
        let name = container_name(&request.tenant, request.role);
        let (client, endpoint, expiry) = self
            .container(&request.location, &name)
            .await
            .map_err(failed)?;
        let now = OffsetDateTime::now_utc();
        let Some(found) = self
            .metadata_of(&client, &endpoint)
            .await
            .map_err(|e| failed(explain_expiry(e, expiry, now)))?
        else {
            return Ok(SweepOutcome::Skipped {
                reason: format!("container {endpoint} does not exist"),
            });
        };
        match ownership(&found, request) {
            Ownership::Ours => {}
            other => {
                return Ok(SweepOutcome::Skipped {
                    reason: format!(
                        "container {endpoint} is not the operator's for this tenant ({})",
                        match other {
                            Ownership::Unmanaged => "adopted".to_string(),
                            Ownership::OtherInstallation => "another cluster's".to_string(),
                            Ownership::OtherTenant(owner) => format!("tenant {owner:?}'s"),
                            Ownership::Ours => unreachable!(),
                        }
                    ),
                })
            }
        }
        let client = BlobContainerClient::new(
            client.url().clone(),
            None,
            Some(self.sdk.sweep_options.clone()),
        )
        .map_err(|e| failed(classify(e, &endpoint)))?;
        // Each request may wait out throttling: up to the retries' own budget and a bit more.
        let timeout = self.sdk.timeout.max(Duration::from_secs(150));
        retention::sweep_container(&client, &endpoint, plan, timeout, classify)
            .await
            .map(SweepOutcome::Swept)
            .map_err(|mut failure| {
                failure.error = explain_expiry(failure.error, expiry, now);
                failure
            })
    }
}

/// Checks a customer's own container with the customer's SAS URL: lists at most one blob,
/// which a read-only container SAS (`sp=rl`, `sr=c`) allows. Used by both backends, since BYOS
/// is Azure storage whichever backend the platform itself uses.
pub struct ByosProbe {
    sdk: Sdk,
}

impl ByosProbe {
    pub fn new(request_timeout: Duration) -> Self {
        Self {
            sdk: Sdk::new(request_timeout),
        }
    }

    /// The finding, as a status line; `Err` only when the credential is not a SAS URL.
    pub async fn check(
        &self,
        byos: &ByosLocation,
        credential: &ByosCredential,
    ) -> Result<LocationReport, StorageError> {
        let (client, endpoint, expiry) = self.container(credential)?;
        let now = OffsetDateTime::now_utc();
        let options = BlobContainerClientListBlobsOptions {
            maxresults: Some(1),
            ..Default::default()
        };
        let listing = async {
            let mut pages = client.list_blobs(Some(options))?.into_pages();
            pages.try_next().await.map(|_| ())
        };
        let finding = match self.sdk.bounded(&endpoint, listing).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(explain_expiry(classify(e, &endpoint), expiry, now)),
            Err(timeout) => Err(timeout),
        };
        Ok(match finding {
            Ok(()) => LocationReport {
                location: byos.region_or_name().to_string(),
                role: StorageRole::Byos,
                name: Some(byos.name.clone()),
                endpoint,
                ready: true,
                message: with_expiry_note(
                    "reachable: the customer's credential lists the container".to_string(),
                    expiry,
                    now,
                ),
            },
            Err(e) => LocationReport::failed(
                byos.region_or_name(),
                StorageRole::Byos,
                Some(&byos.name),
                &endpoint,
                &e,
            ),
        })
    }

    fn container(
        &self,
        credential: &ByosCredential,
    ) -> Result<(BlobContainerClient, String, Option<OffsetDateTime>), StorageError> {
        let invalid = |reason: &str| StorageError::InvalidCredential {
            reason: format!("the customer's Secret {reason}"),
        };
        let url = Url::parse(credential.expose().trim())
            .map_err(|_| invalid("does not hold a URL (expected a container SAS URL)"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("does not hold an http(s) URL"));
        }
        let endpoint = redact_url(url.as_str());
        if !url.query_pairs().any(|(k, v)| k == "sig" && !v.is_empty()) {
            return Err(StorageError::InvalidCredential {
                reason: format!("the URL {endpoint} carries no SAS token (no sig= parameter)"),
            });
        }
        let expiry = url.query().and_then(sas_expiry);
        Ok((self.sdk.client(url, &endpoint)?, endpoint, expiry))
    }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/// The container metadata the operator wants for `request`.
fn desired_metadata(request: &EnsureStorage) -> HashMap<String, String> {
    let retention = request
        .retention_days
        .map_or_else(|| "unlimited".to_string(), |days| days.to_string());
    let mut metadata = HashMap::from([
        (META_TENANT.to_string(), request.tenant.clone()),
        (META_ROLE.to_string(), request.role.as_str().to_string()),
        (META_LICENSE.to_string(), request.license.clone()),
        (META_RETENTION.to_string(), retention),
        (META_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
    ]);
    if let Some(uid) = &request.tenant_uid {
        metadata.insert(META_TENANT_UID.to_string(), uid.clone());
    }
    metadata
}

#[derive(Debug, PartialEq, Eq)]
enum Ownership {
    /// Created by the operator for this tenant.
    Ours,
    /// No operator stamp: someone else made it.
    Unmanaged,
    /// Created by the operator for another tenant.
    OtherTenant(String),
    /// Created by the operator for a Tenant of this name with another uid: another cluster
    /// on the same storage account, whose recordings these are.
    OtherInstallation,
}

/// Whose the container stamped `metadata` is. A stamp without a uid (from before uids were
/// stamped) counts as this tenant's, and gets the uid at the next ensure.
fn ownership(metadata: &HashMap<String, String>, request: &EnsureStorage) -> Ownership {
    if metadata.get(META_MANAGED_BY).map(String::as_str) != Some(FIELD_MANAGER) {
        return Ownership::Unmanaged;
    }
    match metadata.get(META_TENANT) {
        Some(owner) if *owner == request.tenant => {
            match (metadata.get(META_TENANT_UID), &request.tenant_uid) {
                (Some(stamped), Some(uid)) if stamped != uid => Ownership::OtherInstallation,
                _ => Ownership::Ours,
            }
        }
        Some(owner) => Ownership::OtherTenant(owner.clone()),
        None => Ownership::OtherTenant("(unknown)".to_string()),
    }
}

fn lowercase_keys(metadata: HashMap<String, String>) -> HashMap<String, String> {
    metadata
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The query string of an account SAS given as a token (`sv=…&sig=…`, `?sv=…`) or as a URL.
/// The error names what is wrong, never the value.
fn sas_query(value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    let query = if value.starts_with("http://") || value.starts_with("https://") {
        let url = Url::parse(value).map_err(|_| "holds a URL that does not parse")?;
        url.query()
            .ok_or("holds a URL without a SAS token")?
            .to_string()
    } else {
        value.trim_start_matches('?').to_string()
    };
    if !url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "sig" && !v.is_empty()) {
        return Err("holds no SAS token (no sig= parameter)");
    }
    Ok(query)
}

/// Days before a SAS expires from which status messages say so.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// When the SAS in `query` stops working (its `se`), if it says; date-only values mean the
/// start of that day, UTC.
fn sas_expiry(query: &str) -> Option<OffsetDateTime> {
    let se = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "se")?
        .1
        .into_owned();
    azure_core::time::parse_rfc3339(&se)
        .or_else(|_| azure_core::time::parse_rfc3339(&format!("{se}T00:00:00Z")))
        .ok()
}

/// A note for a working credential that expires soon.
fn expiry_note(expiry: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<String> {
    let expiry = expiry?;
    let days = (expiry - now).whole_days();
    let within = match days {
        0 => "less than a day".to_string(),
        1 => "1 day".to_string(),
        days => format!("{days} days"),
    };
    (expiry > now && days < EXPIRY_WARNING_DAYS).then(|| {
        format!(
            "the SAS token expires in {within} ({}); renew it before then",
            expiry.date()
        )
    })
}

fn with_expiry_note(
    message: String,
    expiry: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> String {
    match expiry_note(expiry, now) {
        Some(note) => format!("{message}; {note}"),
        None => message,
    }
}

/// A rejected credential whose SAS has expired says so instead of guessing.
fn explain_expiry(
    error: StorageError,
    expiry: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> StorageError {
    match (error, expiry) {
        (StorageError::AuthenticationFailed { endpoint, code }, Some(expiry)) if expiry <= now => {
            StorageError::CredentialExpired {
                endpoint,
                code,
                expired_on: expiry.date().to_string(),
            }
        }
        (error, _) => error,
    }
}

fn error_code(error: &azure_core::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

/// Turns an SDK error into one a platform engineer can act on, without credentials.
fn classify(error: azure_core::Error, endpoint: &str) -> StorageError {
    let endpoint = redact_url(endpoint);
    match error.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            let code = error_code
                .clone()
                .unwrap_or_else(|| "(no error code)".to_string());
            match (status, code.as_str()) {
                (
                    403,
                    "AuthorizationPermissionMismatch"
                    | "AuthorizationResourceTypeMismatch"
                    | "AuthorizationServiceMismatch"
                    | "AuthorizationProtocolMismatch"
                    | "AuthorizationSourceIPMismatch",
                ) => StorageError::PermissionDenied { endpoint, code },
                (403, "KeyBasedAuthenticationNotPermitted") => {
                    StorageError::SharedKeyDisabled { endpoint, code }
                }
                (403, _) => StorageError::AuthenticationFailed { endpoint, code },
                (404, "ContainerNotFound") => StorageError::ContainerNotFound { endpoint },
                _ => StorageError::Service {
                    endpoint,
                    status,
                    code,
                },
            }
        }
        ErrorKind::Connection | ErrorKind::Io => StorageError::Unreachable {
            endpoint,
            detail: error_chain(&error),
        },
        _ => StorageError::Service {
            endpoint,
            status: 0,
            code: error_chain(&error),
        },
    }
}

/// Every distinct message down the error's source chain, URLs without query strings.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let message = redact_urls_in(&e.to_string());
        if !parts.iter().any(|seen| seen.contains(&message)) {
            parts.push(message);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ManagedRole;

    fn request() -> EnsureStorage {
        EnsureStorage {
            tenant: "contoso".into(),
            location: "westeurope".into(),
            role: ManagedRole::Default,
            retention_days: Some(365),
            license: "Essentials".into(),
            tenant_uid: Some("uid-1".into()),
        }
    }

    #[test]
    fn forbidden_answers_name_their_cause() {
        let forbidden = |code: &str| {
            let kind = ErrorKind::HttpResponse {
                status: azure_core::http::StatusCode::Forbidden,
                error_code: Some(code.to_string()),
                raw_response: None,
            };
            let endpoint = "https://recweu.blob.core.windows.net/contoso-default?sv=1&sig=secret";
            classify(azure_core::Error::with_message(kind, "refused"), endpoint)
        };
        // Ambiguous: a bad SAS or the account's network rules. Both are named.
        let network = forbidden("AuthorizationFailure");
        assert_eq!(network.reason(), "StorageAuthenticationFailed");
        assert!(network.to_string().contains("the SAS token is invalid, expired, or signed for another account, or the storage account's network rules"), "{network}");
        let shared_key = forbidden("KeyBasedAuthenticationNotPermitted");
        assert_eq!(shared_key.reason(), "StorageSharedKeyDisabled");
        assert!(
            shared_key.to_string().contains("user delegation SAS"),
            "{shared_key}"
        );
        assert_eq!(
            forbidden("AuthenticationFailed").reason(),
            "StorageAuthenticationFailed"
        );
        for e in [network, shared_key] {
            assert!(!e.is_transient());
            assert!(!e.to_string().contains("sig="), "{e}");
        }
    }

    #[test]
    fn sas_tokens_are_accepted_as_token_query_or_url() {
        let token = "sv=2025-11-05&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00%3A00%3A00Z&sig=abc%3D";
        assert_eq!(sas_query(token).unwrap(), token);
        assert_eq!(sas_query(&format!(" ?{token}\n")).unwrap(), token);
        assert_eq!(
            sas_query(&format!("https://a.blob.core.windows.net/?{token}")).unwrap(),
            token
        );
        assert_eq!(
            sas_query("sv=2025-11-05&sp=r").unwrap_err(),
            "holds no SAS token (no sig= parameter)"
        );
        assert_eq!(
            sas_query("https://a.blob.core.windows.net/").unwrap_err(),
            "holds a URL without a SAS token"
        );
    }

    #[test]
    fn metadata_records_tenant_role_license_retention_and_manager() {
        let mut unlimited = request();
        unlimited.retention_days = None;
        unlimited.role = ManagedRole::Paired;
        let metadata = desired_metadata(&unlimited);
        assert_eq!(metadata["tenant"], "contoso");
        assert_eq!(metadata["role"], "paired");
        assert_eq!(metadata["license"], "Essentials");
        assert_eq!(metadata["retentiondays"], "unlimited");
        assert_eq!(metadata["managedby"], "recording-operator");
        assert_eq!(desired_metadata(&request())["retentiondays"], "365");
    }

    #[test]
    fn sas_expiry_is_read_from_se_in_both_forms() {
        let at = |s: &str| azure_core::time::parse_rfc3339(s).unwrap();
        assert_eq!(
            sas_expiry("sv=1&se=2030-01-02T03%3A04%3A05Z&sig=x"),
            Some(at("2030-01-02T03:04:05Z"))
        );
        assert_eq!(
            sas_expiry("se=2030-01-02&sig=x"),
            Some(at("2030-01-02T00:00:00Z"))
        );
        assert_eq!(sas_expiry("sv=1&sig=x"), None);
        assert_eq!(sas_expiry("se=soon&sig=x"), None);
    }

    #[test]
    fn soon_expiring_credentials_are_noted_and_expired_ones_named() {
        let now = azure_core::time::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        let in_days = |d: i64| Some(now + azure_core::time::Duration::days(d));
        assert_eq!(
            expiry_note(in_days(12), now).as_deref(),
            Some("the SAS token expires in 12 days (2026-12-05); renew it before then")
        );
        assert_eq!(
            expiry_note(in_days(1), now).as_deref(),
            Some("the SAS token expires in 1 day (2026-11-24); renew it before then")
        );
        assert_eq!(
            expiry_note(Some(now + azure_core::time::Duration::hours(5)), now).as_deref(),
            Some("the SAS token expires in less than a day (2026-11-23); renew it before then")
        );
        assert_eq!(expiry_note(in_days(30), now), None);
        assert_eq!(expiry_note(None, now), None);
        assert_eq!(
            expiry_note(in_days(-1), now),
            None,
            "expired is an error, not a note"
        );

        let rejected = || StorageError::AuthenticationFailed {
            endpoint: "https://a.blob.core.windows.net/c".into(),
            code: "AuthenticationFailed".into(),
        };
        let expired = explain_expiry(rejected(), in_days(-2), now);
        assert_eq!(expired.reason(), "StorageCredentialExpired");
        assert_eq!(
            expired.to_string(),
            "storage at https://a.blob.core.windows.net/c rejected the credential (HTTP 403 \
             AuthenticationFailed): the SAS token expired on 2026-11-21; renew it"
        );
        let still_valid = explain_expiry(rejected(), in_days(2), now);
        assert_eq!(still_valid.reason(), "StorageAuthenticationFailed");
    }

    #[test]
    fn ownership_comes_from_the_stamp() {
        let ours = desired_metadata(&request());
        assert_eq!(ours["tenantuid"], "uid-1");
        assert_eq!(ownership(&ours, &request()), Ownership::Ours);
        let fabrikam = EnsureStorage {
            tenant: "fabrikam".into(),
            ..request()
        };
        assert_eq!(
            ownership(&ours, &fabrikam),
            Ownership::OtherTenant("contoso".into())
        );
        assert_eq!(ownership(&HashMap::new(), &request()), Ownership::Unmanaged);
        let foreign = HashMap::from([("tenant".to_string(), "contoso".to_string())]);
        assert_eq!(ownership(&foreign, &request()), Ownership::Unmanaged);
        // The same name in another cluster: not this Tenant's to delete.
        let elsewhere = EnsureStorage {
            tenant_uid: Some("uid-2".into()),
            ..request()
        };
        assert_eq!(ownership(&ours, &elsewhere), Ownership::OtherInstallation);
        // A stamp from before uids: this tenant's.
        let mut legacy = ours.clone();
        legacy.remove("tenantuid");
        assert_eq!(ownership(&legacy, &elsewhere), Ownership::Ours);
    }
}
