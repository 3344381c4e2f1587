//! The commands docs/operations.md tells a user to type, run verbatim against the Kubernetes
//! simulator, so the docs cannot drift from what works. Each tested block of commands is the
//! fenced block after a `<!-- tested: NAME -->` line; it runs in bash with `KUBECONFIG` set, from
//! a folder where `deploy/` and `charts/` are the repository's and `helm` is real Helm (through
//! deploy_support/helm_cli.py). What the docs leave to the operator (a Tenant's status) the test
//! does in between.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use sim::kube::{KubeSim, KubeSimConfig};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tested blocks of a Markdown file, by name.
fn tested_blocks(markdown: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- tested: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "a fenced block follows the marker {name}"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.insert(name.to_string(), body.join("\n") + "\n");
    }
    blocks
}

fn operations_blocks() -> BTreeMap<String, String> {
    tested_blocks(&std::fs::read_to_string(root().join("docs/operations.md")).unwrap())
}

/// A user's shell: a folder with the repository's `deploy/` and `charts/`, a kubeconfig for the
/// simulator, and `helm` on the PATH.
struct Shell {
    dir: PathBuf,
}

impl Shell {
    fn new(sim: &KubeSim, test: &str) -> Shell {
        let dir = std::env::temp_dir().join(format!(
            "recording-operator-docs-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        for linked in ["deploy", "charts"] {
            std::os::unix::fs::symlink(root().join(linked), dir.join(linked)).unwrap();
        }
        let helm = dir.join("bin/helm");
        let cli = root().join("tests/deploy_support/helm_cli.py");
        std::fs::write(
            &helm,
            format!("#!/bin/sh\nexec python3 {} \"$@\"\n", cli.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
        sim.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Shell { dir }
    }

    async fn run(&self, script: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .env("PATH", path)
            .kill_on_drop(true)
            .output()
            .await
            .expect("bash runs")
    }

    /// Runs and expects success; returns standard output.
    async fn ok(&self, script: &str) -> String {
        let out = self.run(script).await;
        assert!(
            out.status.success(),
            "{script}\nfailed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const READY: &str = r#"{"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Onboarded", "message": "ok", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}"#;

#[test]
fn the_tested_blocks_are_found() {
    let blocks = operations_blocks();
    assert_eq!(
        blocks.keys().map(String::as_str).collect::<Vec<_>>(),
        ["finalizer", "helm", "kustomize", "secret", "watch"]
    );
    assert!(blocks["kustomize"].contains("kubectl apply -k deploy/"));
}

#[tokio::test]
async fn installing_with_kustomize_watching_and_the_finalizer_escape_hatch_work_as_documented() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let shell = Shell::new(&sim, "kustomize");
    let blocks = operations_blocks();

    shell.ok(&blocks["secret"]).await;
    let secret = sim
        .get_json(
            "v1",
            "secrets",
            "recording-operator-system",
            "recording-operator-entra-apps",
        )
        .expect("the documented Secret");
    let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "directory",
            "instantMessages",
            "recording",
            "redundantRecording"
        ]
    );
    let applied = shell.ok(&blocks["kustomize"]).await;
    assert!(
        applied.contains("deployment.apps/recording-operator created"),
        "{applied}"
    );
    assert!(sim
        .get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-operator"
        )
        .is_some());

    // A tenant, and what the operator would report once onboarded.
    shell
        .ok("kubectl apply -f deploy/examples/tenant-essentials.yaml")
        .await;
    shell
        .ok(&format!(
            "kubectl patch tenant contoso --subresource=status --type=merge -p '{READY}'"
        ))
        .await;
    shell
        .ok("kubectl create namespace tenant-contoso && kubectl -n tenant-contoso apply -f - <<'EOF'
apiVersion: recording.m365.io/v1alpha1
kind: ConsentGrant
metadata: {name: contoso-directory}
spec: {tenantRef: contoso, consent: directory, appId: 11111111-1111-4111-8111-111111111111}
EOF")
        .await;
    shell
        .ok(&format!(
            "kubectl -n tenant-contoso patch consentgrant contoso-directory --subresource=status --type=merge -p '{READY}'"
        ))
        .await;

    let watched = shell.ok(&blocks["watch"]).await;
    assert!(
        watched.contains("tenant.recording.m365.io/contoso condition met"),
        "{watched}"
    );
    assert!(
        watched.contains("consentgrant.recording.m365.io/contoso-directory condition met"),
        "{watched}"
    );
    assert!(
        watched
            .lines()
            .any(|l| l.starts_with("tenant-contoso") && l.contains("contoso-directory")),
        "{watched}"
    );
    assert!(
        watched
            .lines()
            .any(|l| l.starts_with("Name:") && l.ends_with("contoso")),
        "{watched}"
    );

    // A deletion held by a finalizer nobody will remove: the escape hatch frees it.
    shell
        .ok(r#"kubectl patch tenant contoso --type merge -p '{"metadata":{"finalizers":["recording.m365.io/storage-cleanup"]}}' && kubectl delete tenant contoso --wait=false"#)
        .await;
    assert!(sim
        .get_json("recording.m365.io/v1alpha1", "tenants", "", "contoso")
        .is_some());
    shell.ok(&blocks["finalizer"]).await;
    assert!(sim
        .get_json("recording.m365.io/v1alpha1", "tenants", "", "contoso")
        .is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn installing_with_helm_works_as_documented() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let shell = Shell::new(&sim, "helm");
    let blocks = operations_blocks();
    std::fs::write(
        shell.dir.join("my-values.yaml"),
        "replicas: 1\nlogFormat: text\n",
    )
    .unwrap();

    shell.ok(&blocks["secret"]).await;
    let installed = shell.ok(&blocks["helm"]).await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let deployment = sim
        .get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-operator",
        )
        .expect("the release's Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1, "my-values.yaml was read");
    assert!(sim
        .get_json(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "",
            "tenants.recording.m365.io"
        )
        .is_some());
    let status = shell
        .ok("helm status recording-operator -n recording-operator-system")
        .await;
    assert!(status.contains("REVISION: 1"), "{status}");
    let upgraded = shell
        .ok("helm upgrade recording-operator charts/recording-operator -n recording-operator-system -f my-values.yaml --set replicas=2")
        .await;
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    shell
        .ok("helm uninstall recording-operator -n recording-operator-system")
        .await;
    assert!(sim
        .get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-operator"
        )
        .is_none());
    sim.shutdown().await;
}
