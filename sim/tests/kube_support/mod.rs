//! Shared helpers of the Kubernetes API simulator tests: a started simulator, the real
//! `kubectl` pointed at it, raw HTTP access for asserting exact Status bodies, and a small
//! CRD of the tests' own.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sim::kube::{KubeSim, KubeSimConfig};

pub async fn start() -> KubeSim {
    KubeSim::start(KubeSimConfig {
        deployment_ready_delay: Duration::from_millis(100),
        ..KubeSimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// Poll `check` until it returns `Some`, failing the test with `what` after a generous bound.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// The real `kubectl`, with its own kubeconfig and discovery cache.
pub struct Kubectl {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(sim: &KubeSim) -> Kubectl {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Kubectl { dir, kubeconfig }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        c
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("kubectl runs")
    }

    /// Run and expect success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and expect failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&path, content).expect("file written");
        path.to_string_lossy().into_owned()
    }
}

/// Raw HTTPS access with the simulator's token and CA, for exact status codes and bodies.
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Raw {
    pub fn new(sim: &KubeSim) -> Raw {
        let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).expect("CA parses");
        Raw {
            http: reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .expect("client"),
            base: sim.url(),
            token: sim.token().to_string(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", content_type);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request sent");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, "application/json", None)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::PATCH,
            path,
            content_type,
            Some(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, "application/json", None)
            .await
    }
}

/// A namespaced CRD of the tests' own: printer columns, a status subresource, schema rules,
/// a default, and CEL rules (one a transition rule).
pub const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [gadgets]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - rule: "self.size <= 10 || self.color == 'red'"
              message: big widgets must be red
            - rule: "!has(oldSelf.color) || self.color == oldSelf.color"
              message: color is immutable
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue], default: blue}
              label: {type: string, pattern: '^[a-z]+$', maxLength: 8}
              tags: {type: array, maxItems: 2, items: {type: string}}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
"#;

pub fn widget_yaml(name: &str, size: i64) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  size: {size}\n")
}

/// Install the Widget CRD through the API (as `kubectl apply -f` would).
pub async fn install_widgets(raw: &Raw) {
    let crd: Value = serde_saphyr::from_str(WIDGET_CRD).expect("CRD YAML");
    let (code, body) = raw
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd,
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

pub const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";
