//! A whole simulated platform on loopback — the Kubernetes API simulator, the Microsoft
//! identity + Graph simulator, the CRDs, the platform applications and their secrets, and the
//! operator configuration that points at them — for `recording-operator demo` and the tests.
//! Compiled only with the `demo` feature; the production operator never links the simulators.

pub mod runner;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use sim::kube::{KubeSim, KubeSimConfig};
use sim::m365::{M365Sim, Seed};

use crate::config::{AccountConfig, BackendKind, StorageConfig};
use crate::config::{CloudConfig, KubeSecrets, OperatorConfig, SecretRef, SecretSource};
use crate::controller::{self, RunOptions};
use crate::crd::{ConsentGrant, RecordingService, Tenant, FIELD_MANAGER};
use crate::graph::ConsentChecker;
use crate::metrics::Metrics;
use crate::storage::backend_from_config;
use crate::storage::tenant::TenantStorage;

/// The platform's home tenant in the simulated directory.
pub const HOME_TENANT_ID: &str = "8c1d5e2a-0b7f-4c3e-9a61-2f4b6d8e0c1a";
/// Namespace of the operator and of the platform applications' client secrets.
pub const OPERATOR_NAMESPACE: &str = "recording-operator-system";
/// Secret holding one client secret per consent key.
pub const APP_SECRETS: &str = "platform-app-secrets";
/// Secret holding the Quick Start link signing keys (key `keys`, one per line).
pub const QUICKSTART_SECRET: &str = "quickstart-signing";
/// Secret holding the sign-in cookie key (key `cookieKey`), when sign-in is on.
pub const SIGNIN_SECRET: &str = "signin-cookie";

/// The administrators each simulated customer tenant has (user name before `@{domain}`),
/// matching the `adminUpns` of `deploy/examples/` and the tests; their password is
/// [`DEMO_PASSWORD`].
pub const CUSTOMER_ADMINS: &[&str] = &["admin", "globaladmin"];
/// Password of the simulated customers' users (a test value, not a secret).
pub const DEMO_PASSWORD: &str = "demo-password";

/// Customer tenants the simulated directory knows, matching `deploy/examples/`.
pub const CUSTOMERS: &[(&str, &str)] = &[
    (
        "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d",
        "contoso.onmicrosoft.com",
    ),
    (
        "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b",
        "fabrikam.onmicrosoft.com",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("Kubernetes simulator: {0}")]
    KubeSim(String),
    #[error("identity/Graph simulator: {0}")]
    M365Sim(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Other(String),
}

/// Options of the simulated platform.
#[derive(Clone, Debug)]
pub struct PlatformOptions {
    /// The operator's consent redirect URL (must be registered on the platform apps).
    pub redirect_uri: String,
    /// Poll timings; short by default so tenants onboard in seconds.
    pub polling: crate::config::PollingConfig,
    /// How long the simulated Deployments take to become available.
    pub deployment_ready_delay: Duration,
    /// Where tenants' storage goes.
    pub storage: StorageMode,
    /// Whether the simulated API server offers HTTP/2 (as a real one does) or plays one
    /// behind a proxy that speaks HTTP/1.1 only.
    pub kube_http2: bool,
    /// E-mail to the tenants' contacts; none by default.
    pub notifications: Option<crate::config::NotificationsConfig>,
    /// Start MailDev (installed by `scripts/install-test-deps.sh`) and send the contacts'
    /// e-mails to it, unless `notifications` says otherwise.
    pub maildev: bool,
    /// Sign-in with Microsoft in front of the Quick Start pages (the `login` app gets the
    /// public listener's `/signin/callback` as a redirect URI); off by default.
    pub sign_in: bool,
    /// How the bots run (`bots` of the configuration); the defaults when `None`.
    pub bots: Option<crate::config::BotsConfig>,
    /// Name the home tenant in the configuration (`homeTenantId`) and consent the directory
    /// app's `Application.Read.All` there, so the operator reads the platform apps' client
    /// secrets' expiry; off by default.
    pub platform_secrets: bool,
    /// The bots' calling webhook section of the configuration; none by default.
    pub webhook: Option<crate::config::WebhookConfig>,
    /// The platform's Teams app manifest id (`teamsAppId` of the configuration): the Tenants
    /// then report whether the customer's catalog has it; none by default.
    pub teams_app_id: Option<String>,
}

/// The storage backend of the simulated platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// PersistentVolumeClaims in the Kubernetes simulator (no outside dependency).
    Pvc,
    /// Azure Blob Storage on Azurite (installed by `scripts/install-test-deps.sh`), one storage
    /// account per region, plus a customer account for bring-your-own-storage.
    Azurite,
}

/// Storage accounts of the Azurite platform, by region.
pub const AZURITE_ACCOUNTS: &[(&str, &str)] =
    &[("westeurope", "recweu"), ("northeurope", "recneu")];
/// The customer's own storage account (BYOS) in the Azurite platform.
pub const BYOS_ACCOUNT: &str = "fabrikamarchive";
/// Secret with the platform accounts' SAS tokens, one key per region.
pub const STORAGE_SECRETS: &str = "storage-accounts";

impl Default for PlatformOptions {
    fn default() -> Self {
        let polling = crate::config::PollingConfig {
            pending_initial: Duration::from_secs(1),
            pending_max: Duration::from_secs(4),
            granted_interval: Duration::from_secs(3600),
            check_cache_ttl: Duration::from_millis(500),
            ..Default::default()
        };
        Self {
            redirect_uri: "http://127.0.0.1:9/consent/callback".into(),
            polling,
            deployment_ready_delay: Duration::from_millis(300),
            storage: StorageMode::Pvc,
            kube_http2: true,
            notifications: None,
            maildev: false,
            sign_in: false,
            bots: None,
            platform_secrets: false,
            webhook: None,
            teams_app_id: None,
        }
    }
}

/// Both simulators, configured as one platform.
pub struct Platform {
    pub kube: KubeSim,
    pub m365: M365Sim,
    pub seed: Seed,
    pub client: kube::Client,
    pub config: OperatorConfig,
    /// The storage emulator, when the platform stores in Azure Blob.
    pub azurite: Option<tokio::sync::Mutex<sim::azurite::Azurite>>,
    /// The SMTP server the contacts' e-mails go to, when started.
    pub maildev: Option<tokio::sync::Mutex<sim::maildev::MailDev>>,
    /// Sign-in in front of the Quick Start pages, when [`PlatformOptions::sign_in`].
    pub signin: Option<crate::signin::SignIn>,
}

impl Platform {
    /// Starts both simulators, installs the CRDs, registers the platform applications and
    /// stores their client secrets in a Kubernetes Secret.
    pub async fn start(options: PlatformOptions) -> Result<Platform, DemoError> {
        let kube = KubeSim::start(KubeSimConfig {
            deployment_ready_delay: options.deployment_ready_delay,
            http2: options.kube_http2,
            ..Default::default()
        })
        .await
        .map_err(|e| DemoError::KubeSim(e.to_string()))?;
        let mut seed = Seed::platform_default(
            "recording",
            HOME_TENANT_ID,
            "recordingplatform.onmicrosoft.com",
            &options.redirect_uri,
        );
        for (id, domain) in CUSTOMERS {
            seed.tenants.push(sim::m365::TenantSeed {
                id: id.to_string(),
                display_name: None,
                domains: vec![domain.to_string()],
            });
            for name in CUSTOMER_ADMINS {
                seed.users.push(sim::m365::UserSeed {
                    tenant: id.to_string(),
                    upn: format!("{name}@{domain}"),
                    password: DEMO_PASSWORD.to_string(),
                    display_name: None,
                    account_enabled: true,
                });
            }
        }
        if options.platform_secrets {
            let directory = seed
                .app("recording-aad")
                .map(|a| a.app_id.clone())
                .ok_or_else(|| DemoError::Other("the seed has no app recording-aad".into()))?;
            seed.consents.push(sim::m365::ConsentSeed {
                tenant: HOME_TENANT_ID.to_string(),
                app_id: directory,
                application_permissions: Some(vec!["Application.Read.All".into()]),
                delegated_scopes: Some(vec![]),
                user: None,
            });
        }
        let m365 = M365Sim::start(seed.clone())
            .await
            .map_err(|e| DemoError::M365Sim(e.to_string()))?;
        let client = kube.client().await;

        install_crds(&client).await?;
        let mut config = platform_config(&seed, &m365.url(), &options)?;
        store_app_secrets(&client, &seed, &config).await?;
        store_secret(
            &client,
            QUICKSTART_SECRET,
            BTreeMap::from([("keys".to_string(), random_key())]),
        )
        .await?;
        let azurite = match options.storage {
            StorageMode::Pvc => {
                config.storage = Some(StorageConfig {
                    backend: BackendKind::Pvc,
                    ..Default::default()
                });
                None
            }
            StorageMode::Azurite => {
                let (azurite, storage) = start_azurite(&client).await?;
                config.storage = Some(storage);
                Some(tokio::sync::Mutex::new(azurite))
            }
        };
        config.notifications = options.notifications.clone();
        config.webhook = options.webhook.clone();
        let maildev = match options.maildev {
            true => {
                let maildev = sim::maildev::MailDev::start()
                    .await
                    .map_err(|e| DemoError::Other(format!("MailDev: {e}")))?;
                if config.notifications.is_none() {
                    config.notifications = Some(maildev_notifications(maildev.smtp_port()));
                }
                Some(tokio::sync::Mutex::new(maildev))
            }
            false => None,
        };
        if options.sign_in {
            config.sign_in = Some(sign_in_config(&client, &m365, &config).await?);
        }
        config.validate()?;
        let secrets = KubeSecrets::new(client.clone());
        let signin = crate::signin::SignIn::from_config(&config, &secrets, client.clone())
            .await
            .map_err(|e| DemoError::Other(e.to_string()))?;
        Ok(Platform {
            kube,
            m365,
            seed,
            client,
            config,
            azurite,
            maildev,
            signin,
        })
    }

    /// Runs the operator's controllers in this process until `shutdown`.
    pub async fn run_operator(
        &self,
        metrics_sink: Option<tokio::sync::oneshot::Sender<Metrics>>,
        shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), DemoError> {
        let secrets: Arc<dyn SecretSource> = Arc::new(KubeSecrets::new(self.client.clone()));
        let checker = ConsentChecker::new(&self.config, secrets.clone())?;
        let metrics = Metrics::new(checker.counters());
        let storage = match &self.config.storage {
            Some(config) => {
                let backend = backend_from_config(config, self.client.clone(), secrets.clone())
                    .map_err(|e| DemoError::Other(format!("storage backend: {e}")))?;
                Some(TenantStorage::new(
                    config,
                    backend,
                    secrets,
                    OPERATOR_NAMESPACE,
                ))
            }
            None => None,
        };
        if let Some(sink) = metrics_sink {
            let _ = sink.send(metrics.clone());
        }
        let links = self.links();
        controller::run(
            controller::Parts {
                client: self.client.clone(),
                config: Arc::new(self.config.clone()),
                checker,
                metrics,
                storage,
                links,
            },
            RunOptions::default(),
            Arc::new(AtomicBool::new(false)),
            shutdown,
        )
        .await;
        Ok(())
    }

    /// The Quick Start links of the platform's configuration (keys read from the simulator).
    pub fn links(&self) -> Option<crate::links::QuickStartLinks> {
        let secrets: Arc<dyn SecretSource> = Arc::new(KubeSecrets::new(self.client.clone()));
        crate::links::QuickStartLinks::from_config(&self.config, secrets)
    }

    /// The operator's public routes (`/consent/callback`, the Quick Start pages) on this
    /// platform, for a listener at the redirect URI's address.
    pub fn public_router(&self) -> axum::Router {
        crate::http::public::router(crate::http::public::PublicState {
            client: self.client.clone(),
            config: Arc::new(self.config.clone()),
            links: self.links(),
            signin: self.signin.clone(),
        })
    }

    /// Stops the child processes of the platform — Azurite, given time to write its state to
    /// disk. The simulators in this process stop when the platform is dropped.
    pub async fn stop(&self) {
        if let Some(azurite) = &self.azurite {
            azurite.lock().await.stop().await;
        }
        if let Some(maildev) = &self.maildev {
            maildev.lock().await.stop().await;
        }
    }

    /// The customer tenant id the simulated directory gave a domain.
    pub fn tenant_id(&self, domain: &str) -> Option<String> {
        self.m365.tenant_id(domain)
    }

    /// Applies a multi-document YAML manifest (Tenants, RecordingServices, Secrets) with
    /// server-side apply, as `kubectl apply --server-side` would.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<String>, DemoError> {
        apply_yaml(&self.client, yaml).await
    }

    /// Plays the customer's Global admin: accepts every admin-consent URL of a tenant's
    /// ConsentGrants (as a browser would: GET, following the redirect to the operator).
    pub async fn accept_all_consents(
        &self,
        tenant: &str,
        http: &reqwest::Client,
    ) -> Result<usize, DemoError> {
        let grants: Api<ConsentGrant> =
            Api::namespaced(self.client.clone(), &format!("tenant-{tenant}"));
        let mut accepted = 0;
        for grant in grants.list(&Default::default()).await? {
            if let Some(url) = grant.status.as_ref().and_then(|s| s.consent_url.clone()) {
                let _ = http.get(&url).send().await; // the redirect target may be down; the grant happened
                accepted += 1;
            }
        }
        Ok(accepted)
    }
}

/// Applies the CRDs and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) -> Result<(), DemoError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crd::crds() {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    for crd in crate::crd::crds() {
        let name = crd.name_any();
        let mut established = false;
        for _ in 0..100 {
            let got = api.get(&name).await?;
            established = got
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !established {
            return Err(DemoError::Other(format!("CRD {name} was not established")));
        }
    }
    Ok(())
}

/// The operator configuration for the simulated cloud: both hosts are the simulator, the app
/// ids are the seed's, and client secrets come from the `platform-app-secrets` Secret.
fn platform_config(
    seed: &Seed,
    m365_url: &str,
    options: &PlatformOptions,
) -> Result<OperatorConfig, DemoError> {
    let mut config = OperatorConfig {
        cloud: CloudConfig {
            authority_host: Some(m365_url.to_string()),
            graph_endpoint: Some(m365_url.to_string()),
            ..Default::default()
        },
        consent_redirect_uri: Some(options.redirect_uri.clone()),
        polling: options.polling.clone(),
        operator_namespace: OPERATOR_NAMESPACE.into(),
        // The public listener serves the callback and the Quick Start pages at one origin.
        public_url: Some(
            options
                .redirect_uri
                .trim_end_matches("/consent/callback")
                .to_string(),
        ),
        quick_start: crate::config::QuickStartConfig {
            signing_keys: Some(SecretRef::SecretRef {
                namespace: OPERATOR_NAMESPACE.into(),
                name: QUICKSTART_SECRET.into(),
                key: "keys".into(),
            }),
            ..Default::default()
        },
        bots: options.bots.clone().unwrap_or_default(),
        teams_app_id: options.teams_app_id.clone(),
        ..Default::default()
    };
    for (key, consent) in config.consents.iter_mut() {
        let app = seed.app(&consent.display_name).ok_or_else(|| {
            DemoError::Other(format!("the seed has no app {}", consent.display_name))
        })?;
        consent.app_id = app.app_id.clone();
        consent.client_secret = Some(SecretRef::SecretRef {
            namespace: OPERATOR_NAMESPACE.into(),
            name: APP_SECRETS.into(),
            key: key.clone(),
        });
    }
    if options.platform_secrets {
        config.home_tenant_id = Some(HOME_TENANT_ID.into());
    }
    config.validate()?;
    Ok(config)
}

/// Sign-in at the public listener: a fresh cookie key in the [`SIGNIN_SECRET`] Secret, and
/// `{publicUrl}/signin/callback` registered on the `login` app.
async fn sign_in_config(
    client: &kube::Client,
    m365: &M365Sim,
    config: &OperatorConfig,
) -> Result<crate::config::SignInConfig, DemoError> {
    let public_url = config
        .public_url
        .as_deref()
        .ok_or_else(|| DemoError::Other("sign-in needs the public URL".into()))?;
    let redirect_uri = format!("{public_url}/signin/callback");
    let login = config
        .consents
        .get(crate::signin::LOGIN_CONSENT)
        .ok_or_else(|| DemoError::Other("sign-in needs the login app".into()))?;
    m365.add_redirect_uri(&login.app_id, &redirect_uri);
    store_secret(
        client,
        SIGNIN_SECRET,
        BTreeMap::from([("cookieKey".to_string(), random_key())]),
    )
    .await?;
    Ok(crate::config::SignInConfig {
        enabled: true,
        redirect_uri,
        cookie_key: SecretRef::SecretRef {
            namespace: OPERATOR_NAMESPACE.into(),
            name: SIGNIN_SECRET.into(),
            key: "cookieKey".into(),
        },
        session_ttl: Duration::from_secs(30 * 60),
    })
}

/// Stores the platform apps' client secrets where the configuration says they are.
async fn store_app_secrets(
    client: &kube::Client,
    seed: &Seed,
    config: &OperatorConfig,
) -> Result<(), DemoError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}}))
        .expect("namespace");
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let mut data = BTreeMap::new();
    for (key, consent) in &config.consents {
        if let Some(app) = seed.app(&consent.display_name) {
            if let Some(secret) = app.secrets.first() {
                data.insert(key.clone(), secret.value.clone());
            }
        }
    }
    store_secret(client, APP_SECRETS, data).await
}

/// Applies each document of a YAML stream by its kind; returns `kind/name` per document.
pub async fn apply_yaml(client: &kube::Client, yaml: &str) -> Result<Vec<String>, DemoError> {
    let mut applied = Vec::new();
    for doc in yaml.split("\n---") {
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
        {
            continue;
        }
        let value: Value =
            serde_saphyr::from_str(doc).map_err(|e| DemoError::Other(format!("not YAML: {e}")))?;
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
        let params = PatchParams::apply("kubectl").force();
        match kind.as_str() {
            "Tenant" => {
                Api::<Tenant>::all(client.clone())
                    .patch(&name, &params, &Patch::Apply(&value))
                    .await?;
            }
            "RecordingService" => {
                let ns = namespace.unwrap_or_else(|| "default".into());
                Api::<RecordingService>::namespaced(client.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&value))
                    .await?;
            }
            "Secret" => {
                let ns = namespace.unwrap_or_else(|| "default".into());
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&value))
                    .await?;
            }
            "Namespace" => {
                Api::<Namespace>::all(client.clone())
                    .patch(&name, &params, &Patch::Apply(&value))
                    .await?;
            }
            other => return Err(DemoError::Other(format!("cannot apply kind {other:?}"))),
        }
        applied.push(format!("{kind}/{name}"));
    }
    Ok(applied)
}

/// Starts Azurite with one account per region and the customer's BYOS account; stores the
/// platform accounts' SAS tokens in a Secret and hands the customer's container SAS URL over
/// the way a BYOS customer would (a Secret named in the Tenant's spec).
async fn start_azurite(
    client: &kube::Client,
) -> Result<(sim::azurite::Azurite, StorageConfig), DemoError> {
    use sim::azurite::{Azurite, SasPermissions};
    let other = |e: sim::azurite::AzuriteError| DemoError::Other(format!("Azurite: {e}"));
    let mut names: Vec<&str> = AZURITE_ACCOUNTS.iter().map(|(_, a)| *a).collect();
    names.push(BYOS_ACCOUNT);
    let azurite = Azurite::start_with_accounts(&names).await.map_err(other)?;
    let year = Duration::from_secs(365 * 24 * 3600);

    let mut accounts = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    for (region, account) in AZURITE_ACCOUNTS {
        tokens.insert(
            region.to_string(),
            azurite
                .account_sas(account, SasPermissions::OPERATOR, year)
                .map_err(other)?,
        );
        accounts.insert(
            region.to_string(),
            AccountConfig {
                endpoint: azurite.account_endpoint(account).map_err(other)?,
                credential: SecretRef::SecretRef {
                    namespace: OPERATOR_NAMESPACE.into(),
                    name: STORAGE_SECRETS.into(),
                    key: region.to_string(),
                },
                signing_key: None,
            },
        );
    }
    store_secret(client, STORAGE_SECRETS, tokens).await?;

    // The customer's archive container exists already; the customer hands over a SAS URL.
    let container = "recordings-archive";
    let account_sas = azurite
        .account_sas(BYOS_ACCOUNT, SasPermissions::OPERATOR, year)
        .map_err(other)?;
    let create = format!(
        "{}/{container}?restype=container&{account_sas}",
        azurite.account_endpoint(BYOS_ACCOUNT).map_err(other)?
    );
    let response = reqwest::Client::new()
        .put(&create)
        .header("x-ms-version", sim::azurite::SAS_VERSION)
        .header("content-length", "0")
        .send()
        .await
        .map_err(|e| {
            DemoError::Other(format!(
                "creating the customer's container: {}",
                crate::storage::redact_urls_in(&e.to_string())
            ))
        })?;
    if !(response.status().is_success() || response.status().as_u16() == 409) {
        return Err(DemoError::Other(format!(
            "creating the customer's container: HTTP {}",
            response.status()
        )));
    }
    let url = azurite
        .container_sas_url(BYOS_ACCOUNT, container, SasPermissions::READ_LIST, year)
        .map_err(other)?;
    store_secret(
        client,
        "fabrikam-byos-archive",
        BTreeMap::from([("url".to_string(), url)]),
    )
    .await?;

    let storage = StorageConfig {
        backend: BackendKind::AzureBlob,
        accounts,
        ..Default::default()
    };
    Ok((azurite, storage))
}

/// A fresh signing key: 32 random bytes, hexadecimal.
fn random_key() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates or replaces a Secret in the operator's namespace.
async fn store_secret(
    client: &kube::Client,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<(), DemoError> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(OPERATOR_NAMESPACE.into()),
            ..Default::default()
        },
        string_data: Some(data),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    secrets
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// The contacts' e-mails by SMTP to MailDev on loopback.
pub fn maildev_notifications(smtp_port: u16) -> crate::config::NotificationsConfig {
    crate::config::NotificationsConfig {
        from: "Recording Platform <notifications@recordingplatform.example>".into(),
        reply_to: None,
        smtp: Some(crate::config::SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(smtp_port),
            tls: crate::config::SmtpTls::None,
            username: None,
            password: None,
        }),
        graph: None,
        storage_grace: Duration::from_secs(3600),
        max_per_hour: 10,
        retry_initial: Duration::from_secs(5),
        send_timeout: Duration::from_secs(10),
    }
}
