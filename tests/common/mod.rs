//! Shared harness of the integration tests: both simulators, the CRDs, the platform apps, and
//! the operator's controllers running in this process.
#![allow(dead_code)]

pub mod browser;
pub mod consent_world;
pub mod secrets;

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::api::Api;
use recording_operator::crd::{ConsentGrant, Health, Tenant};
use recording_operator::demo::{Platform, PlatformOptions};
use recording_operator::metrics::Metrics;
use tokio::sync::oneshot;

/// Everything the operator logged in this test binary (all tests share one subscriber).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).to_string()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,hyper=info,h2=info,rustls=info,tower=info,reqwest=info",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    })
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Harness {
    pub platform: Arc<Platform>,
    pub metrics: Metrics,
    /// A browser: follows redirects.
    pub browser: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(PlatformOptions::default()).await
    }

    pub async fn start_with(options: PlatformOptions) -> Harness {
        log_buffer();
        let platform = Arc::new(
            Platform::start(options)
                .await
                .expect("simulated platform starts"),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let (metrics_tx, metrics_rx) = oneshot::channel();
        let runner = platform.clone();
        tokio::spawn(async move {
            runner
                .run_operator(Some(metrics_tx), async {
                    let _ = stopped.await;
                })
                .await
                .expect("operator runs");
        });
        let metrics = metrics_rx.await.expect("operator started");
        Harness {
            platform,
            metrics,
            browser: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    /// Both simulators and the platform's configuration, but no operator: for tests that run
    /// the operator binary themselves.
    pub async fn start_simulators() -> Harness {
        Self::start_simulators_with(PlatformOptions::default()).await
    }

    /// [`Harness::start_simulators`] with other platform options.
    pub async fn start_simulators_with(options: PlatformOptions) -> Harness {
        log_buffer();
        let platform = Arc::new(
            Platform::start(options)
                .await
                .expect("simulated platform starts"),
        );
        let (stop, _stopped) = oneshot::channel::<()>();
        Harness {
            platform,
            metrics: Metrics::default(),
            browser: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    pub fn client(&self) -> kube::Client {
        self.platform.client.clone()
    }

    pub async fn apply(&self, yaml: &str) {
        self.platform
            .apply_yaml(yaml)
            .await
            .expect("manifest applies");
    }

    /// Waits until the Tenant satisfies `pred`; panics with its last status after `timeout`.
    pub async fn wait_tenant(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Tenant) -> bool,
    ) -> Tenant {
        let api: Api<Tenant> = Api::all(self.client());
        wait_for(
            timeout,
            || async { api.get_opt(name).await.ok().flatten() },
            pred,
            &format!("tenant {name}"),
        )
        .await
    }

    /// Waits until the RecordingService satisfies `pred`; panics with it after 30 s.
    pub async fn wait_service(
        &self,
        namespace: &str,
        name: &str,
        pred: impl Fn(&recording_operator::crd::RecordingService) -> bool,
    ) -> recording_operator::crd::RecordingService {
        let api: Api<recording_operator::crd::RecordingService> =
            Api::namespaced(self.client(), namespace);
        wait_for(
            Duration::from_secs(30),
            || async { api.get_opt(name).await.ok().flatten() },
            pred,
            &format!("recordingservice {namespace}/{name}"),
        )
        .await
    }

    /// Waits until the Tenant's `status.health` is `health`.
    pub async fn wait_health(&self, name: &str, timeout: Duration, health: Health) -> Tenant {
        self.wait_tenant(name, timeout, |t| {
            t.status.as_ref().is_some_and(|s| s.health == Some(health))
        })
        .await
    }

    /// Waits until the Tenant's Ready condition has `reason`.
    pub async fn wait_ready_reason(&self, name: &str, timeout: Duration, reason: &str) -> Tenant {
        self.wait_tenant(name, timeout, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == reason)
            })
        })
        .await
    }

    /// Waits until the ConsentGrant satisfies `pred`.
    pub async fn wait_grant(
        &self,
        tenant: &str,
        grant: &str,
        timeout: Duration,
        pred: impl Fn(&ConsentGrant) -> bool,
    ) -> ConsentGrant {
        let api: Api<ConsentGrant> = Api::namespaced(self.client(), &format!("tenant-{tenant}"));
        wait_for(
            timeout,
            || async { api.get_opt(grant).await.ok().flatten() },
            pred,
            &format!("consentgrant {grant} of {tenant}"),
        )
        .await
    }

    pub async fn grants(&self, tenant: &str) -> Vec<ConsentGrant> {
        let api: Api<ConsentGrant> = Api::namespaced(self.client(), &format!("tenant-{tenant}"));
        api.list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Plays the customer's Global admin once every ConsentGrant of the tenant shows its link.
    pub async fn accept_consents(&self, tenant: &str) -> usize {
        self.wait_consent_links(tenant, Duration::from_secs(30))
            .await;
        self.platform
            .accept_all_consents(tenant, &self.browser)
            .await
            .expect("consent links open")
    }

    /// Waits until the Tenant's status lists its consents, each with its consent link.
    pub async fn wait_consent_links(&self, tenant: &str, timeout: Duration) -> Tenant {
        self.wait_tenant(tenant, timeout, |t| {
            t.status.as_ref().is_some_and(|s| {
                !s.consents.is_empty() && s.consents.iter().all(|c| c.consent_url.is_some())
            })
        })
        .await
    }

    /// The Events about one object (`kubectl describe`'s list): cluster-scoped objects' Events
    /// are in `default`.
    pub async fn events(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Vec<k8s_openapi::api::core::v1::Event> {
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client(), namespace);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `get` until `pred` holds.
pub async fn wait_for<T: std::fmt::Debug, F, Fut>(
    timeout: Duration,
    get: F,
    pred: impl Fn(&T) -> bool,
    what: &str,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(v) = get().await {
            if pred(&v) {
                return v;
            }
            last = Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what} did not reach the expected state within {timeout:?}; last seen: {last:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ready_status(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<String> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// A RecordingService `name` in `tenant-<tenant>`, with `extra` appended to its spec
/// (indented two spaces, ending in a newline), or `""`.
pub fn service_yaml(name: &str, tenant: &str, short_name: &str, users: i32, extra: &str) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: RecordingService
metadata:
  name: {name}
  namespace: tenant-{tenant}
spec:
  tenantRef: {tenant}
  shortName: "{short_name}"
  licensedUsers: {users}
{extra}"#
    )
}

/// A Tenant manifest with the fields every test needs; `extra` adds spec lines (indented by
/// two spaces).
pub fn tenant_yaml(name: &str, domain: &str, license: &str, location: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: {name}
spec:
  customerName: {name}-customer
  domain: {domain}
  shortName: {name}
  contactEmails: [ops@example.com]
  adminUpns: [admin@{domain}]
  license: {license}
  includedUsers: 10
  storage:
    location: {location}
{extra}"#
    )
}

/// The real `kubectl` against the Kubernetes simulator, with a kubeconfig of its own.
pub struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    pub fn new(h: &Harness, test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kubectl-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        h.platform.kube.write_kubeconfig(&kubeconfig).unwrap();
        Self { kubeconfig }
    }

    /// Runs kubectl with `args` (and `stdin`); `(success, stdout, stderr)`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }

    pub fn apply(&self, yaml: &str) {
        self.ok(&["apply", "-f", "-"], Some(yaml));
    }
}

/// The application permissions the recording bots need to take calls, which the platform's
/// `recording` consent asks for and a customer's known app registration must hold too.
pub const RECORDING_PERMISSIONS: [&str; 3] = [
    "Calls.AccessMedia.All",
    "Calls.JoinGroupCall.All",
    "Calls.JoinGroupCallAsGuest.All",
];

/// A customer app's application permissions: `Application.Read.All` (to read its own secrets'
/// expiry) and the recording permissions.
pub fn customer_app_permissions() -> Vec<String> {
    std::iter::once("Application.Read.All")
        .chain(RECORDING_PERMISSIONS)
        .map(String::from)
        .collect()
}

/// The names of the bots (StatefulSets) in `namespace`, sorted.
pub async fn bot_names(h: &Harness, namespace: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(h.client(), namespace);
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    names.sort();
    names
}

/// Applies `yaml` (the Tenant `tenant`), waits for every consent link (five for Pro, four
/// otherwise), plays the customer's Global admin accepting them all, and waits for the Tenant
/// to be Ready, each wait up to `timeout`.
pub async fn onboard_applied(
    h: &Harness,
    yaml: &str,
    tenant: &str,
    license: &str,
    timeout: Duration,
) {
    h.apply(yaml).await;
    let consents = if license == "Pro" { 5 } else { 4 };
    h.wait_tenant(tenant, timeout, |t| {
        t.status.as_ref().is_some_and(|s| {
            s.consents.len() == consents && s.consents.iter().all(|c| c.consent_url.is_some())
        })
    })
    .await;
    h.platform
        .accept_all_consents(tenant, &h.browser)
        .await
        .unwrap();
    h.wait_tenant(tenant, timeout, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| ready_status(&s.conditions).as_deref() == Some("True"))
    })
    .await;
}
