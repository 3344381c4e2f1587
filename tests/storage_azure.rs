//! The Azure Blob backend against a real Azurite started by each test: one storage account per
//! region (`westeurope`, `northeurope`) plus a customer's own account for BYOS, all with SAS
//! credentials read through a secret source as the operator reads them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use recording_operator::config::{
    default_region_pairs, AccountConfig, BackendKind, ConfigError, SecretRef, SecretSource,
    StorageConfig,
};
use recording_operator::crd::Tenant;
use recording_operator::storage::azure::AzureBlobBackend;
use recording_operator::storage::tenant::TenantStorage;
use recording_operator::storage::{
    plan_storage, ByosCredential, ByosLocation, DeleteOutcome, EnsureStorage, ManagedRole,
    StorageBackend, StorageError, StorageRole,
};
use secrecy::SecretString;
use sim::azurite::{Azurite, SasPermissions};

/// Validity of the SAS tokens handed out: long enough that no expiry note appears.
const VALID: Duration = Duration::from_secs(90 * 24 * 3600);
const X_MS_VERSION: &str = "2025-11-05";

/// Secrets held in memory, keyed like Kubernetes Secrets.
#[derive(Default)]
struct MemorySecrets(BTreeMap<String, String>);

impl MemorySecrets {
    fn reference(name: &str) -> SecretRef {
        SecretRef::SecretRef {
            namespace: "recording-operator".into(),
            name: name.into(),
            key: "sas".into(),
        }
    }
}

impl SecretSource for MemorySecrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move {
            let SecretRef::SecretRef { name, .. } = reference else {
                unreachable!("the tests use Secret references only")
            };
            self.0
                .get(name)
                .map(|v| SecretString::from(v.clone()))
                .ok_or_else(|| ConfigError::Secret {
                    reference: reference.to_string(),
                    reason: "the Secret does not exist".into(),
                })
        })
    }
}

/// An emulator with the platform's two regional accounts and a customer's account, and the
/// backend configured for the two regions.
struct Fixture {
    azurite: Azurite,
    backend: AzureBlobBackend,
    config: StorageConfig,
    secrets: Arc<MemorySecrets>,
    /// Every SAS handed out, to prove none of them leaks into a message.
    secrets_handed_out: Vec<String>,
}

impl Fixture {
    async fn start() -> Self {
        let azurite = Azurite::start_with_accounts(&["westeurope", "northeurope", "customer1"])
            .await
            .expect("Azurite starts (run scripts/install-test-deps.sh first)");
        let mut secrets = MemorySecrets::default();
        let mut accounts = BTreeMap::new();
        let mut handed_out = Vec::new();
        for region in ["westeurope", "northeurope"] {
            let sas = azurite
                .account_sas(region, SasPermissions::OPERATOR, VALID)
                .unwrap();
            handed_out.push(sas.clone());
            // One region gets a bare token, the other a full account SAS URL: both are accepted.
            let value = if region == "westeurope" {
                sas
            } else {
                format!("{}?{sas}", azurite.account_endpoint(region).unwrap())
            };
            secrets.0.insert(format!("storage-{region}"), value);
            accounts.insert(
                region.to_string(),
                AccountConfig {
                    endpoint: azurite.account_endpoint(region).unwrap(),
                    credential: MemorySecrets::reference(&format!("storage-{region}")),
                    signing_key: None,
                },
            );
        }
        let config = StorageConfig {
            backend: BackendKind::AzureBlob,
            accounts,
            request_timeout_seconds: 20,
            ..Default::default()
        };
        // A BYOS customer's Secret: a read-only SAS URL of their container.
        let byos = azurite
            .container_sas_url("customer1", "recordings", SasPermissions::READ_LIST, VALID)
            .unwrap();
        handed_out.push(byos.split_once('?').unwrap().1.to_string());
        secrets.0.insert("customer-archive".into(), byos);
        let secrets = Arc::new(secrets);
        let backend = AzureBlobBackend::new(&config, secrets.clone()).unwrap();
        Self {
            azurite,
            backend,
            config,
            secrets,
            secrets_handed_out: handed_out,
        }
    }

    /// The container's properties as Azure reports them: `None` when it does not exist.
    async fn container(&self, account: &str, container: &str) -> Option<HashMap<String, String>> {
        let sas = self
            .azurite
            .account_sas(account, SasPermissions::OPERATOR, VALID)
            .unwrap();
        let url = format!(
            "{}/{container}?restype=container&{sas}",
            self.azurite.account_endpoint(account).unwrap()
        );
        let response = reqwest::Client::new()
            .get(url)
            .header("x-ms-version", X_MS_VERSION)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => Some(
                response
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| {
                        k.as_str()
                            .strip_prefix("x-ms-meta-")
                            .map(|k| (k.to_string(), v.to_str().unwrap().to_string()))
                    })
                    .collect(),
            ),
            404 => None,
            other => panic!("unexpected status {other} reading {container}"),
        }
    }

    /// Creates a container behind the operator's back, with the given metadata.
    async fn create_foreign_container(
        &self,
        account: &str,
        container: &str,
        meta: &[(&str, &str)],
    ) {
        let sas = self
            .azurite
            .account_sas(account, SasPermissions::OPERATOR, VALID)
            .unwrap();
        let mut request = reqwest::Client::new()
            .put(format!(
                "{}/{container}?restype=container&{sas}",
                self.azurite.account_endpoint(account).unwrap()
            ))
            .header("x-ms-version", X_MS_VERSION);
        for (name, value) in meta {
            request = request.header(format!("x-ms-meta-{name}"), *value);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), 201);
    }

    fn assert_no_secret(&self, text: &str) {
        assert!(!text.contains("sig="), "a SAS signature leaked: {text}");
        assert!(!text.contains("sv="), "a SAS token leaked: {text}");
        for sas in &self.secrets_handed_out {
            let signature = url::form_urlencoded::parse(sas.as_bytes())
                .find(|(k, _)| k == "sig")
                .map(|(_, v)| v.into_owned())
                .unwrap();
            assert!(!text.contains(&signature), "a SAS signature leaked: {text}");
            assert!(!text.contains(sas.as_str()), "a SAS token leaked: {text}");
        }
    }
}

fn request(tenant: &str, location: &str, role: ManagedRole) -> EnsureStorage {
    EnsureStorage {
        tenant: tenant.into(),
        location: location.into(),
        role,
        retention_days: Some(365),
        license: "Essentials".into(),
        tenant_uid: None,
    }
}

#[tokio::test]
async fn essentials_gets_one_container_with_metadata_and_ensure_is_idempotent() {
    let fx = Fixture::start().await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Essentials",
        false,
        Some(365),
        &default_region_pairs(),
    )
    .unwrap();
    assert_eq!(plan.len(), 1);

    let started = Instant::now();
    let status = fx.backend.ensure(&plan[0]).await.unwrap();
    let first = started.elapsed();
    assert!(status.ready);
    assert_eq!(status.role, StorageRole::Default);
    assert_eq!(status.location, "westeurope");
    assert_eq!(
        status.endpoint,
        format!(
            "{}/contoso-default",
            fx.azurite.account_endpoint("westeurope").unwrap()
        )
    );
    assert_eq!(status.message, "container created");

    let metadata = fx.container("westeurope", "contoso-default").await.unwrap();
    assert_eq!(metadata["tenant"], "contoso");
    assert_eq!(metadata["role"], "default");
    assert_eq!(metadata["license"], "Essentials");
    assert_eq!(metadata["retentiondays"], "365");
    assert_eq!(metadata["managedby"], "recording-operator");
    // Nothing in the paired region for Essentials.
    assert_eq!(fx.container("northeurope", "contoso-paired").await, None);

    let started = Instant::now();
    let again = fx.backend.ensure(&plan[0]).await.unwrap();
    let second = started.elapsed();
    assert!(again.ready);
    assert_eq!(
        again.message,
        "container exists (created earlier by the operator)"
    );
    fx.assert_no_secret(&format!("{status:?} {again:?}"));
    eprintln!("ensure against Azurite: create {first:?}, idempotent re-ensure {second:?}");
}

#[tokio::test]
async fn pro_adds_a_container_in_the_paired_regions_account() {
    let fx = Fixture::start().await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Pro",
        true,
        None,
        &default_region_pairs(),
    )
    .unwrap();
    let mut statuses = Vec::new();
    for location in &plan {
        statuses.push(fx.backend.ensure(location).await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .map(|s| (s.location.as_str(), s.role, s.ready))
            .collect::<Vec<_>>(),
        [
            ("westeurope", StorageRole::Default, true),
            ("northeurope", StorageRole::Paired, true)
        ]
    );
    assert_eq!(
        statuses[1].endpoint,
        format!(
            "{}/contoso-paired",
            fx.azurite.account_endpoint("northeurope").unwrap()
        )
    );
    let paired = fx.container("northeurope", "contoso-paired").await.unwrap();
    assert_eq!(paired["role"], "paired");
    assert_eq!(paired["license"], "Pro");
    assert_eq!(paired["retentiondays"], "unlimited");
    // Each copy lives only in its own region's account.
    assert_eq!(fx.container("westeurope", "contoso-paired").await, None);
    assert_eq!(fx.container("northeurope", "contoso-default").await, None);
}

#[tokio::test]
async fn a_region_without_pair_or_account_is_a_clear_error() {
    let fx = Fixture::start().await;
    let no_pair = plan_storage(
        "contoso",
        "israelcentral",
        "Pro",
        true,
        None,
        &default_region_pairs(),
    )
    .unwrap_err();
    assert_eq!(no_pair.reason(), "NoPairedRegion");
    assert!(no_pair
        .to_string()
        .starts_with("region \"israelcentral\" has no paired region"));

    let no_account = fx
        .backend
        .ensure(&request("contoso", "eastus", ManagedRole::Default))
        .await
        .unwrap_err();
    assert_eq!(
        no_account.to_string(),
        "no storage account is configured for region \"eastus\"; add it to storage.accounts"
    );
}

#[tokio::test]
async fn changed_retention_or_license_updates_the_metadata() {
    let fx = Fixture::start().await;
    let mut wanted = request("contoso", "westeurope", ManagedRole::Default);
    fx.backend.ensure(&wanted).await.unwrap();
    wanted.retention_days = Some(730);
    wanted.license = "Pro".into();
    let status = fx.backend.ensure(&wanted).await.unwrap();
    assert_eq!(
        status.message,
        "container exists; metadata updated (retention, license)"
    );
    let metadata = fx.container("westeurope", "contoso-default").await.unwrap();
    assert_eq!(metadata["retentiondays"], "730");
    assert_eq!(metadata["license"], "Pro");
    assert_eq!(metadata["managedby"], "recording-operator");
}

#[tokio::test]
async fn an_existing_container_is_adopted_and_never_deleted() {
    let fx = Fixture::start().await;
    fx.create_foreign_container("westeurope", "fabrikam-default", &[("owner", "legacy")])
        .await;
    let fabrikam = request("fabrikam", "westeurope", ManagedRole::Default);
    let status = fx.backend.ensure(&fabrikam).await.unwrap();
    assert!(status.ready);
    assert_eq!(
        status.message,
        "adopted an existing container the operator did not create; it is kept when the tenant \
         is deleted"
    );
    // Adopting changes nothing on the container.
    let metadata = fx
        .container("westeurope", "fabrikam-default")
        .await
        .unwrap();
    assert_eq!(
        metadata,
        HashMap::from([("owner".to_string(), "legacy".to_string())])
    );

    let outcome = fx.backend.delete(&fabrikam).await.unwrap();
    assert!(matches!(outcome, DeleteOutcome::Kept { .. }), "{outcome:?}");
    assert!(fx
        .container("westeurope", "fabrikam-default")
        .await
        .is_some());
}

#[tokio::test]
async fn a_container_stamped_for_another_tenant_is_refused_and_kept() {
    let fx = Fixture::start().await;
    fx.create_foreign_container(
        "westeurope",
        "globex-default",
        &[("managedby", "recording-operator"), ("tenant", "initech")],
    )
    .await;
    let globex = request("globex", "westeurope", ManagedRole::Default);
    let err = fx.backend.ensure(&globex).await.unwrap_err();
    assert_eq!(err.reason(), "ContainerOwnedByAnotherTenant");
    assert_eq!(
        err.to_string(),
        format!(
            "container {}/globex-default belongs to tenant \"initech\", not to \"globex\"; it is \
             left alone",
            fx.azurite.account_endpoint("westeurope").unwrap()
        )
    );
    assert_eq!(
        fx.backend.delete(&globex).await.unwrap(),
        DeleteOutcome::Kept {
            reason: format!(
                "container {}/globex-default belongs to tenant \"initech\"",
                fx.azurite.account_endpoint("westeurope").unwrap()
            )
        }
    );
    assert!(fx.container("westeurope", "globex-default").await.is_some());
}

#[tokio::test]
async fn delete_removes_the_operators_containers_and_tolerates_gone_ones() {
    let fx = Fixture::start().await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Pro",
        true,
        Some(365),
        &default_region_pairs(),
    )
    .unwrap();
    for location in &plan {
        fx.backend.ensure(location).await.unwrap();
    }
    for location in &plan {
        assert_eq!(
            fx.backend.delete(location).await.unwrap(),
            DeleteOutcome::Deleted
        );
    }
    assert_eq!(fx.container("westeurope", "contoso-default").await, None);
    assert_eq!(fx.container("northeurope", "contoso-paired").await, None);
    assert_eq!(
        fx.backend.delete(&plan[0]).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn a_tenant_of_the_same_name_in_another_cluster_never_deletes_the_container() {
    let fx = Fixture::start().await;
    let in_cluster = |uid: &str| EnsureStorage {
        tenant_uid: Some(uid.into()),
        ..request("contoso", "westeurope", ManagedRole::Default)
    };
    let (first, second) = (in_cluster("uid-first"), in_cluster("uid-second"));
    fx.backend.ensure(&first).await.unwrap();

    // A second cluster on the same storage account with its own Tenant "contoso".
    let line = fx.backend.ensure(&second).await.unwrap();
    assert!(line.ready);
    assert!(line.message.contains("another uid"), "{}", line.message);
    assert!(matches!(
        fx.backend.delete(&second).await.unwrap(),
        DeleteOutcome::Kept { .. }
    ));
    let metadata = fx.container("westeurope", "contoso-default").await.unwrap();
    assert_eq!(
        metadata["tenantuid"], "uid-first",
        "the stamp is not taken over"
    );

    // The Tenant that created it deletes it.
    assert_eq!(
        fx.backend.delete(&first).await.unwrap(),
        DeleteOutcome::Deleted
    );
}

#[tokio::test]
async fn byos_locations_are_checked_with_the_customers_credential_and_never_written() {
    let fx = Fixture::start().await;
    fx.create_foreign_container("customer1", "recordings", &[])
        .await;
    let location = ByosLocation {
        name: "archive".into(),
        location: Some("westeurope".into()),
        secret: MemorySecrets::reference("customer-byos"),
    };
    let customer = fx.azurite.account_endpoint("customer1").unwrap();
    let check = |sas_url: String| {
        let credential = ByosCredential::new(SecretString::from(sas_url));
        let backend = &fx.backend;
        let location = &location;
        async move { backend.check_byos(location, &credential).await.unwrap() }
    };

    // Reachable with a read-only container SAS.
    let good = fx
        .azurite
        .container_sas_url("customer1", "recordings", SasPermissions::READ_LIST, VALID)
        .unwrap();
    let status = check(good.clone()).await;
    assert_eq!(status.role, StorageRole::Byos);
    assert_eq!(status.name.as_deref(), Some("archive"));
    assert!(status.ready, "{status:?}");
    assert_eq!(status.endpoint, format!("{customer}/recordings"));
    assert_eq!(
        status.message,
        "reachable: the customer's credential lists the container"
    );

    // Bad credential: a signature made with the wrong key.
    let forged = fx
        .azurite
        .container_sas_url("westeurope", "recordings", SasPermissions::READ_LIST, VALID)
        .unwrap()
        .replace("/westeurope/", "/customer1/");
    let status = check(forged.clone()).await;
    assert!(!status.ready);
    assert_eq!(
        status.message,
        format!(
            "storage at {customer}/recordings rejected the credential (HTTP 403 \
             AuthorizationFailure): the SAS token is invalid, expired, or signed for another \
             account, or the storage account's network rules (firewall, private endpoint) do \
             not admit the operator's network"
        )
    );
    assert_eq!(status.endpoint, format!("{customer}/recordings"));

    // Missing container: the credential is fine, the container is not there.
    let missing = fx
        .azurite
        .container_sas_url("customer1", "archive", SasPermissions::READ_LIST, VALID)
        .unwrap();
    let status = check(missing.clone()).await;
    assert!(!status.ready);
    assert_eq!(
        status.message,
        format!("container {customer}/archive does not exist (HTTP 404 ContainerNotFound)")
    );

    // Unreachable host: nothing listens on that port.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = good.replace(
        &format!(":{}/", fx.azurite.port()),
        &format!(":{closed_port}/"),
    );
    let status = check(unreachable.clone()).await;
    assert!(!status.ready);
    assert!(
        status.message.starts_with(&format!(
            "storage endpoint http://127.0.0.1:{closed_port}/customer1/recordings is unreachable: "
        )),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("Connection refused"),
        "{}",
        status.message
    );

    // A Secret holding something else than a SAS URL is an error of its own.
    let err = fx
        .backend
        .check_byos(
            &location,
            &ByosCredential::new(SecretString::from(format!("{customer}/recordings"))),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "StorageCredentialInvalid");

    // Never written: the customer's account still has exactly its one container, untouched.
    assert_eq!(fx.container("customer1", "archive").await, None);
    assert_eq!(
        fx.container("customer1", "recordings").await,
        Some(HashMap::new())
    );

    for sas_url in [good, forged, missing, unreachable] {
        let sas = sas_url.split_once('?').unwrap().1.to_string();
        let status = check(sas_url).await;
        assert!(!status.message.contains(&sas) && !status.endpoint.contains(&sas));
        fx.assert_no_secret(&format!("{status:?}"));
    }
}

#[tokio::test]
async fn azurite_stopped_mid_reconcile_is_a_clear_transient_error_and_recovers() {
    let mut fx = Fixture::start().await;
    let contoso = request("contoso", "westeurope", ManagedRole::Default);
    fx.backend.ensure(&contoso).await.unwrap();

    fx.azurite.stop().await;
    let err = fx.backend.ensure(&contoso).await.unwrap_err();
    assert_eq!(err.reason(), "StorageUnreachable");
    assert!(err.is_transient());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "storage endpoint http://127.0.0.1:{}/westeurope/contoso-default is unreachable: ",
            fx.azurite.port()
        )),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    fx.assert_no_secret(&message);
    fx.assert_no_secret(&format!("{err:?}"));

    fx.azurite.start_again().await.unwrap();
    let status = fx.backend.ensure(&contoso).await.unwrap();
    assert!(status.ready);
    assert_eq!(
        status.message,
        "container exists (created earlier by the operator)"
    );
}

#[tokio::test]
async fn an_unreadable_or_malformed_account_credential_is_reported_without_its_value() {
    let azurite = Azurite::start_with_accounts(&["westeurope"]).await.unwrap();
    let mut secrets = MemorySecrets::default();
    secrets.0.insert(
        "storage-westeurope".into(),
        "sv=2025-11-05&sp=rl&se=2030-01-01".into(),
    );
    let config = StorageConfig {
        accounts: BTreeMap::from([
            (
                "westeurope".to_string(),
                AccountConfig {
                    endpoint: azurite.account_endpoint("westeurope").unwrap(),
                    credential: MemorySecrets::reference("storage-westeurope"),
                    signing_key: None,
                },
            ),
            (
                "northeurope".to_string(),
                AccountConfig {
                    endpoint: azurite.account_endpoint("westeurope").unwrap(),
                    credential: MemorySecrets::reference("missing"),
                    signing_key: None,
                },
            ),
        ]),
        ..Default::default()
    };
    let backend = AzureBlobBackend::new(&config, Arc::new(secrets)).unwrap();

    let malformed = backend
        .ensure(&request("contoso", "westeurope", ManagedRole::Default))
        .await
        .unwrap_err();
    assert!(matches!(malformed, StorageError::InvalidCredential { .. }));
    assert_eq!(
        malformed.to_string(),
        "the storage credential is not usable: Secret recording-operator/storage-westeurope key \
         sas holds no SAS token (no sig= parameter)"
    );

    let missing = backend
        .ensure(&request("contoso", "northeurope", ManagedRole::Paired))
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "cannot read the storage credential: cannot read secret Secret recording-operator/missing \
         key sas: the Secret does not exist"
    );
}

fn tenant(license: &str, deletion_policy: &str) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso"},
        "spec": {
            "customerName": "Contoso", "domain": "contoso.onmicrosoft.com",
            "shortName": "contoso", "contactEmails": ["it@contoso.com"],
            "adminUpns": ["admin@contoso.com"], "license": license, "includedUsers": 10,
            "retention": {"days": 90},
            "deletionPolicy": deletion_policy,
            "storage": {"location": "westeurope", "byos": {"enabled": true, "locations": [
                {"name": "archive", "location": "westus", "secretRef": {"name": "customer-archive"}},
                {"name": "legal", "secretRef": {"name": "customer-legal", "key": "sasUrl"}},
            ]}},
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_pro_tenant_with_byos_gets_one_status_line_per_location() {
    let fx = Fixture::start().await;
    fx.create_foreign_container("customer1", "recordings", &[])
        .await;
    let backend = Arc::new(AzureBlobBackend::new(&fx.config, fx.secrets.clone()).unwrap());
    let storage = TenantStorage::new(
        &fx.config,
        backend,
        fx.secrets.clone(),
        "recording-operator",
    );

    let lines = storage.reconcile(&tenant("Pro", "Delete")).await;
    let summary: Vec<(&str, &str, Option<&str>, bool)> = lines
        .iter()
        .map(|l| {
            (
                l.role.as_str(),
                l.location.as_str(),
                l.name.as_deref(),
                l.ready,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("default", "westeurope", None, true),
            ("paired", "northeurope", None, true),
            ("byos", "westus", Some("archive"), true),
            ("byos", "legal", Some("legal"), false),
        ]
    );
    assert_eq!(
        lines[3].message.as_deref(),
        Some(
            "cannot read the storage credential: cannot read secret Secret \
             recording-operator/customer-legal key sasUrl: the Secret does not exist"
        )
    );
    assert_eq!(
        fx.container("westeurope", "contoso-default").await.unwrap()["retentiondays"],
        "90"
    );
    fx.assert_no_secret(&format!("{lines:?}"));

    // deletionPolicy: Delete removes both operator containers, never the customer's.
    let done = storage.cleanup(&tenant("Pro", "Delete")).await.unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(fx.container("westeurope", "contoso-default").await, None);
    assert_eq!(fx.container("northeurope", "contoso-paired").await, None);
    assert!(fx.container("customer1", "recordings").await.is_some());
}

#[tokio::test]
async fn retain_keeps_everything_and_a_missing_pair_is_its_own_line() {
    let fx = Fixture::start().await;
    let mut config = fx.config.clone();
    config.region_pairs.remove("westeurope");
    let backend = Arc::new(AzureBlobBackend::new(&config, fx.secrets.clone()).unwrap());
    let storage = TenantStorage::new(&config, backend, fx.secrets.clone(), "recording-operator");

    let mut retained = tenant("Pro", "Retain");
    retained.spec.storage.byos.enabled = false;
    retained.spec.storage.byos.locations.clear();
    let lines = storage.reconcile(&retained).await;
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ready && lines[0].role == "default");
    assert_eq!(lines[1].role, "paired");
    assert!(!lines[1].ready);
    assert_eq!(
        lines[1].message.as_deref(),
        Some(
            "region \"westeurope\" has no paired region configured, so the Pro geo-redundant \
             copy has nowhere to go; add \"westeurope\" to storage.regionPairs"
        )
    );

    assert!(storage.cleanup(&retained).await.unwrap().is_empty());
    assert!(fx
        .container("westeurope", "contoso-default")
        .await
        .is_some());
}

#[tokio::test]
async fn credentials_about_to_expire_are_noted_and_expired_ones_named() {
    let fx = Fixture::start().await;
    fx.create_foreign_container("customer1", "recordings", &[])
        .await;
    let location = ByosLocation {
        name: "archive".into(),
        location: Some("westus".into()),
        secret: MemorySecrets::reference("customer-archive"),
    };
    let day = Duration::from_secs(24 * 3600);
    let check = |expiry: SystemTime| {
        let url = fx
            .azurite
            .container_sas_url_until("customer1", "recordings", SasPermissions::READ_LIST, expiry)
            .unwrap();
        let credential = ByosCredential::new(SecretString::from(url));
        let backend = &fx.backend;
        let location = &location;
        async move { backend.check_byos(location, &credential).await.unwrap() }
    };
    let date = |at: SystemTime| sim::azurite::sas_time(at)[..10].to_string();

    // Expires in ten days: works, and the status says it will stop working.
    let soon = SystemTime::now() + 10 * day + Duration::from_secs(3600);
    let status = check(soon).await;
    assert!(status.ready);
    assert_eq!(
        status.message,
        format!(
            "reachable: the customer's credential lists the container; the SAS token expires in \
             10 days ({}); renew it before then",
            date(soon)
        )
    );

    // Expired yesterday: rejected, and the message names the cause (Azurite's code for it is
    // AuthorizationFailure).
    let yesterday = SystemTime::now() - day;
    let status = check(yesterday).await;
    assert!(!status.ready);
    assert_eq!(
        status.message,
        format!(
            "storage at {}/recordings rejected the credential (HTTP 403 AuthorizationFailure): \
             the SAS token expired on {}; renew it",
            fx.azurite.account_endpoint("customer1").unwrap(),
            date(yesterday)
        )
    );

    // The platform's own account SAS gets the same treatment.
    let mut secrets = MemorySecrets::default();
    let short = SystemTime::now() + 3 * day + Duration::from_secs(3600);
    secrets.0.insert(
        "storage-westeurope".into(),
        fx.azurite
            .account_sas_until("westeurope", SasPermissions::OPERATOR, short)
            .unwrap(),
    );
    let mut config = fx.config.clone();
    config.accounts.remove("northeurope");
    let backend = AzureBlobBackend::new(&config, Arc::new(secrets)).unwrap();
    let status = backend
        .ensure(&request("contoso", "westeurope", ManagedRole::Default))
        .await
        .unwrap();
    assert_eq!(
        status.message,
        format!(
            "container created; the SAS token expires in 3 days ({}); renew it before then",
            date(short)
        )
    );
}
