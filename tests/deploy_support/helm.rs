#![allow(dead_code)]

//! Real Helm against the Kubernetes simulator: Helm v4's own Go code, shipped as a shared
//! library by the helm-sdkpy package (scripts/install-test-deps.sh installs it), driven by
//! deploy_support/helm_driver.py, one action per run.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sim::kube::{KubeSim, KubeSimConfig};

pub struct Helm {
    dir: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
}

impl Helm {
    /// Helm with a kubeconfig of its own for `sim`, acting in `namespace`.
    pub fn new(sim: &KubeSim, test: &str, namespace: &str) -> Helm {
        let dir = std::env::temp_dir().join(format!(
            "recording-operator-helm-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Helm {
            dir,
            kubeconfig,
            namespace: namespace.to_string(),
        }
    }

    /// Runs one action; its JSON result, or Helm's error message.
    pub async fn run(&self, action: &str, args: &[&str]) -> Result<Value, String> {
        let driver =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy_support/helm_driver.py");
        let out = tokio::process::Command::new("python3")
            .arg(driver)
            .arg(action)
            .arg(&self.kubeconfig)
            .arg(&self.namespace)
            .args(args)
            .env("HOME", &self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("config"))
            .env("HELM_DATA_HOME", self.dir.join("data"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("python3 runs (scripts/install-test-deps.sh installs helm-sdkpy)");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("helm {action} printed no JSON: {e}"))
    }

    pub async fn lint(&self, chart: &Path) -> Result<Value, String> {
        self.run("lint", &[chart.to_str().unwrap()]).await
    }

    pub async fn install(
        &self,
        release: &str,
        chart: &Path,
        values: &Value,
        wait: bool,
    ) -> Result<Value, String> {
        self.release_action("install", release, chart, values, wait)
            .await
    }

    pub async fn upgrade(
        &self,
        release: &str,
        chart: &Path,
        values: &Value,
        wait: bool,
    ) -> Result<Value, String> {
        self.release_action("upgrade", release, chart, values, wait)
            .await
    }

    /// An install or upgrade of `release` from `chart` with `values`, waiting for readiness or not.
    async fn release_action(
        &self,
        action: &str,
        release: &str,
        chart: &Path,
        values: &Value,
        wait: bool,
    ) -> Result<Value, String> {
        let values = values.to_string();
        let wait = if wait { "wait" } else { "no-wait" };
        self.run(action, &[chart.to_str().unwrap(), release, &values, wait])
            .await
    }

    pub async fn status(&self, release: &str) -> Result<Value, String> {
        self.run("status", &[release]).await
    }

    pub async fn uninstall(&self, release: &str) -> Result<Value, String> {
        self.run("uninstall", &[release]).await
    }
}

impl Drop for Helm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The chart as Helm renders it with `values`: installed (without waiting) on a simulator of
/// its own, the documents of the release's manifest.
pub async fn render(chart: &Path, release: &str, namespace: &str, values: Value) -> Vec<Value> {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    install_prometheus_operator_crds(&sim).await;
    let helm = Helm::new(
        &sim,
        &format!("render-{release}-{}", uuid_like()),
        namespace,
    );
    let installed = helm.install(release, chart, &values, false).await.unwrap();
    sim.shutdown().await;
    split_documents(installed["manifest"].as_str().expect("a release manifest")).unwrap()
}

/// The Prometheus Operator's ServiceMonitor and PrometheusRule kinds (their schemas left open),
/// as a cluster that runs it has: Helm refuses a manifest with a kind the cluster does not serve.
pub async fn install_prometheus_operator_crds(sim: &KubeSim) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api = kube::Api::<CustomResourceDefinition>::all(sim.client().await);
    for (plural, kind) in [
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true
                }}}]
            }
        }))
        .unwrap();
        api.create(&Default::default(), &crd).await.unwrap();
    }
}

/// A name part that differs between renders running at once in one test binary.
fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The YAML documents of a multi-document stream, skipping empty ones.
pub fn split_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| -> Result<(), String> {
        let meaningful = current
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            docs.push(serde_saphyr::from_str::<Value>(current).map_err(|e| e.to_string())?);
        }
        current.clear();
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current)?;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current)?;
    Ok(docs)
}
