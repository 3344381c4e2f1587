//! deploy/ and the Helm chart grant exactly the permissions of `recording_operator::rbac`: no
//! rule missing (the operator would fail with 403), none more (least privilege). And the
//! controllers, run on the simulators as the operator's ServiceAccount under deploy/rbac.yaml,
//! make no request those rules refuse and use every permission they grant.

mod common;
#[path = "deploy_support/helm.rs"]
mod helm;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{ready_status, service_yaml, wait_for, Harness};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, PostParams};
use recording_operator::config::{SecretSource, Secrets};
use recording_operator::controller::{self, RunOptions};
use recording_operator::crd::{RecordingService, Tenant};
use recording_operator::demo::{PlatformOptions, OPERATOR_NAMESPACE};
use recording_operator::graph::ConsentChecker;
use recording_operator::leader::LeaderElector;
use recording_operator::metrics::Metrics;
use recording_operator::rbac::{
    grants, Rule, NAMESPACED_RULES, OWN_SECRETS_RULES, ROUTER_RULES, RULES, TENANT_RULES,
};
use recording_operator::storage::backend_from_config;
use recording_operator::storage::tenant::TenantStorage;
use serde_json::{json, Value};
use sim::kube::FaultSpec;
use sim::m365::{AppSeed, SecretSeed};

type Grants = BTreeSet<(String, String, String)>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `(api group, resource, verb)` for every permission of a ClusterRole or Role object. The
/// one rule with `resourceNames` is the `bind` of the tenant ClusterRole, named `tenant_role`.
fn grants_of(role: &Value, tenant_role: &str) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_array().expect("a role has rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "unexpected rule shape: {rule}"
        );
        if let Some(names) = rule.get("resourceNames") {
            assert_eq!(
                (names, &rule["verbs"], &rule["resources"]),
                (
                    &json!([tenant_role]),
                    &json!(["bind"]),
                    &json!(["clusterroles"])
                ),
                "only the tenant ClusterRole's bind names its object: {rule}"
            );
        }
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcards grant more than the operator needs: {rule}"
                    );
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Every role of the manifests (`prefix` is the name they all start with, `namespace` the
/// operator's) grants exactly its rules of `recording_operator::rbac`, and each is bound to
/// the ServiceAccount but the tenant ClusterRole, which the operator binds itself.
fn assert_roles(docs: &[Value], prefix: &str, namespace: &str) {
    let tenant_role = format!("{prefix}-tenant");
    let roles = [
        ("ClusterRole", prefix.to_owned(), grants(RULES)),
        ("ClusterRole", tenant_role.clone(), grants(TENANT_RULES)),
        (
            "Role",
            format!("{prefix}-leader-election"),
            grants(NAMESPACED_RULES),
        ),
        (
            "Role",
            format!("{prefix}-secrets"),
            grants(OWN_SECRETS_RULES),
        ),
    ];
    for (kind, name, expected) in &roles {
        let role = named(docs, kind, name);
        if *kind == "Role" {
            assert_eq!(role["metadata"]["namespace"], namespace, "{name}");
        }
        assert_same(
            &format!("{kind} {name}"),
            &grants_of(role, &tenant_role),
            expected,
        );
    }
    let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
    assert_eq!((count("ClusterRole"), count("Role")), (2, 2));
    let subjects = json!([{"kind": "ServiceAccount", "name": prefix, "namespace": namespace}]);
    for (kind, role_kind, name) in [
        ("ClusterRoleBinding", "ClusterRole", prefix.to_owned()),
        ("RoleBinding", "Role", format!("{prefix}-leader-election")),
        ("RoleBinding", "Role", format!("{prefix}-secrets")),
    ] {
        let binding = named(docs, kind, &name);
        assert_eq!(binding["subjects"], subjects, "{kind} {name}");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name})
        );
    }
    assert_eq!(
        (count("ClusterRoleBinding"), count("RoleBinding")),
        (1, 2),
        "the tenant ClusterRole is bound by the operator, namespace by namespace"
    );
}

/// The router's objects (all named `name`): a ClusterRole granting exactly
/// [`ROUTER_RULES`], bound to the router's own ServiceAccount, which its Deployment runs as.
fn assert_router_role(docs: &[Value], name: &str, namespace: &str) {
    let role = named(docs, "ClusterRole", name);
    assert_same(
        &format!("ClusterRole {name}"),
        &grants_of(role, "none"),
        &grants(ROUTER_RULES),
    );
    let binding = named(docs, "ClusterRoleBinding", name);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}])
    );
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name})
    );
    assert_eq!(
        named(docs, "ServiceAccount", name)["metadata"]["namespace"],
        namespace
    );
    let deployment = named(docs, "Deployment", name);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        name
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "router"
    );
}

/// The documents but the router's (named `router`).
fn without(docs: Vec<Value>, router: &str) -> Vec<Value> {
    docs.into_iter()
        .filter(|d| d["metadata"]["name"] != router)
        .collect()
}

fn assert_same(place: &str, actual: &Grants, expected: &Grants) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{place}: missing {missing:?}, more than needed {extra:?}"
    );
}

#[test]
fn deploy_grants_exactly_the_rules() {
    let text = std::fs::read_to_string(root().join("deploy/rbac.yaml")).unwrap();
    let docs = helm::split_documents(&text).unwrap();
    assert_roles(&docs, "recording-operator", "recording-operator-system");
    let text = std::fs::read_to_string(root().join("deploy/router.yaml")).unwrap();
    let router = helm::split_documents(&text).unwrap();
    assert_router_role(&router, "recording-router", "recording-operator-system");
    // The operator binds the ClusterRole its configuration names by default.
    assert_eq!(
        recording_operator::rbac::TENANT_CLUSTER_ROLE,
        "recording-operator-tenant"
    );
}

#[tokio::test]
async fn chart_grants_exactly_the_rules() {
    let docs = helm::render(
        &root().join("charts/recording-operator"),
        "rec",
        "platform",
        json!({}),
    )
    .await;
    assert_router_role(&docs, "rec-router", "platform");
    let docs = without(docs, "rec-router");
    assert_roles(&docs, "rec", "platform");
    assert_eq!(only(&docs, "ServiceAccount")["metadata"]["name"], "rec");
    // The pod tells the operator which ServiceAccount and ClusterRole to bind.
    let env = &only(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {env}"))
            .clone()
    };
    assert_eq!(
        value("POD_SERVICE_ACCOUNT")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.serviceAccountName"
    );
    assert_eq!(value("TENANT_CLUSTER_ROLE")["value"], "rec-tenant");
}

#[test]
fn the_rules_cover_what_the_spec_names() {
    let cluster_wide = grants(RULES);
    let all: Grants = cluster_wide.union(&grants(TENANT_RULES)).cloned().collect();
    let has = |group: &str, resource: &str, verb: &str| {
        all.contains(&(group.to_owned(), resource.to_owned(), verb.to_owned()))
    };
    for resource in ["tenants", "consentgrants", "recordingservices"] {
        for verb in ["list", "watch"] {
            assert!(
                has("recording.m365.io", resource, verb),
                "{resource} {verb}"
            );
        }
        assert!(has(
            "recording.m365.io",
            &format!("{resource}/status"),
            "patch"
        ));
    }
    // A server-side apply that creates an object is authorized as `create` as well as
    // `patch`: every kind the operator applies needs both.
    for (group, resource) in [
        ("recording.m365.io", "consentgrants"),
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("", "services"),
        ("", "persistentvolumeclaims"),
        ("networking.k8s.io", "networkpolicies"),
        ("apps", "statefulsets"),
        ("", "secrets"),
        ("policy", "poddisruptionbudgets"),
    ] {
        assert!(
            has(group, resource, "create") && has(group, resource, "patch"),
            "{resource} are applied: create and patch"
        );
    }
    assert!(
        !has("", "secrets", "delete") && !has("", "secrets", "update"),
        "secrets: only the bots' credentials Secret is applied, none is deleted or replaced"
    );
    assert!(
        !has("apps", "deployments", "create") && !has("apps", "deployments", "patch"),
        "bot Deployments of earlier versions are only retired"
    );
    for verb in ["get", "list", "watch"] {
        assert!(
            !cluster_wide.contains(&("".into(), "secrets".into(), verb.into())),
            "no Secret is readable cluster-wide ({verb})"
        );
        // A ConfigMap's data is as readable as its metadata: anyone's settings, often
        // credentials too.
        assert!(
            !cluster_wide.contains(&("".into(), "configmaps".into(), verb.into())),
            "no ConfigMap is readable cluster-wide ({verb})"
        );
    }
    for verb in ["list", "watch"] {
        assert!(
            grants(TENANT_RULES).contains(&("".into(), "configmaps".into(), verb.into())),
            "the service's ConfigMaps are watched in each tenant namespace ({verb})"
        );
    }
    assert!(
        !grants(OWN_SECRETS_RULES).contains(&("".into(), "secrets".into(), "list".into())),
        "the operator's own Secrets are read one by one"
    );
    assert!(
        !has("recording.m365.io", "tenants", "create"),
        "tenants are the users' to create"
    );
    for (group, resource) in [
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        // (Services: an instance's media Service goes when its instance does.)
        ("networking.k8s.io", "networkpolicies"),
    ] {
        assert!(
            !has(group, resource, "delete"),
            "{resource} go with their owner through garbage collection"
        );
    }
    assert!(
        !has("", "events", "create"),
        "Events are events.k8s.io/v1 only"
    );
    assert!(
        !has("coordination.k8s.io", "leases", "get"),
        "leases only in the Role"
    );
}

/// No `update` on the owners' `finalizers` subresource is granted: that holds only while the
/// operator's owner references leave `blockOwnerDeletion` unset (with it true, the
/// OwnerReferencesPermissionEnforcement admission plugin asks for that permission).
#[test]
fn owner_references_do_not_block_owner_deletion() {
    let text =
        std::fs::read_to_string(root().join("deploy/examples/tenant-essentials.yaml")).unwrap();
    let mut doc: Value = serde_saphyr::from_str(&text).unwrap();
    doc["metadata"]["uid"] = json!("0f5c2a9e-7d41-4b8a-9c3e-1a2b3c4d5e6f");
    let tenant: Tenant = serde_json::from_value(doc).unwrap();
    let owner = recording_operator::controller::apply::owner_reference(&tenant);
    assert_eq!(owner.controller, Some(true));
    assert_ne!(
        owner.block_owner_deletion,
        Some(true),
        "blockOwnerDeletion needs update on */finalizers in src/rbac.rs"
    );
    for (_, resource, verb) in grants(RULES) {
        assert!(
            !resource.ends_with("/finalizers"),
            "{verb} {resource} granted but not needed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The controllers under the shipped RBAC
// ---------------------------------------------------------------------------------------------

/// One request the operator's client made, and the status it got.
#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    path: String,
    query: String,
    status: u16,
}

impl Seen {
    /// The namespace the request was made in (`""` at the cluster scope).
    fn namespace(&self) -> String {
        let segments: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        segments
            .windows(2)
            .find(|w| w[0] == "namespaces" && segments.len() > 4)
            .map(|w| w[1].to_owned())
            .unwrap_or_default()
    }

    /// `(api group, resource, verb)` the API server authorizes the request as: a server-side
    /// apply that creates the object (201) as `create` too. `None` for non-resource paths.
    fn grants(&self) -> Vec<(String, String, String)> {
        let segments: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return Vec::new(),
        };
        let (resource, name, subresource) = match rest {
            ["namespaces", _namespace, resource, tail @ ..] => {
                (*resource, tail.first(), tail.get(1))
            }
            [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
            [] => return Vec::new(),
        };
        let resource = match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        let watching = self
            .query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let verbs: &[&str] = match (self.method.as_str(), name.is_some()) {
            ("GET", _) if watching => &["watch"],
            ("GET", true) => &["get"],
            ("GET", false) => &["list"],
            ("POST", _) => &["create"],
            ("PUT", _) => &["update"],
            ("PATCH", _) if self.status == 201 => &["patch", "create"],
            ("PATCH", _) => &["patch"],
            ("DELETE", true) => &["delete"],
            ("DELETE", false) => &["deletecollection"],
            _ => &[],
        };
        let mut used: Vec<_> = verbs
            .iter()
            .map(|v| (group.to_owned(), resource.clone(), (*v).to_owned()))
            .collect();
        // Writing a RoleBinding that grants what the writer does not hold passes the API
        // server's escalation check through `bind` on the role it refers to.
        if resource == "rolebindings" && (200..300).contains(&self.status) && !verbs.is_empty() {
            used.push((group.to_owned(), "clusterroles".into(), "bind".into()));
        }
        used
    }
}

/// A layer of the operator's client stack that notes every request and its response status.
struct Recording<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl<S, B> tower::Service<http::Request<kube::client::Body>> for Recording<S>
where
    S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let seen = self.seen.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let Ok(r) = &response {
                seen.lock().unwrap().push(Seen {
                    method,
                    path,
                    query,
                    status: r.status().as_u16(),
                });
            }
            response
        })
    }
}

/// A client authenticated as the operator's ServiceAccount (authorized by the RBAC objects in
/// the cluster), recording its requests into `seen`.
async fn service_account_client(h: &Harness, seen: &Arc<Mutex<Vec<Seen>>>) -> kube::Client {
    account_client(h, "recording-operator", seen).await
}

/// A client authenticated as the ServiceAccount `name` of the operator's namespace, recording
/// its requests into `seen`.
async fn account_client(h: &Harness, name: &str, seen: &Arc<Mutex<Vec<Seen>>>) -> kube::Client {
    let yaml = h
        .platform
        .kube
        .service_account_kubeconfig_yaml(OPERATOR_NAMESPACE, name);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let seen = seen.clone();
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&tower::layer::layer_fn(move |inner| Recording {
            inner,
            seen: seen.clone(),
        }))
        .build()
}

/// Installs deploy/rbac.yaml's ClusterRole, Role and their bindings, as an admin would.
async fn install_rbac(admin: &kube::Client) {
    install_roles(admin, "deploy/rbac.yaml").await;
}

/// Installs the ClusterRoles, Roles and their bindings of the manifest `file`.
async fn install_roles(admin: &kube::Client, file: &str) {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let post = PostParams::default();
    for doc in helm::split_documents(&text).unwrap() {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
        match doc["kind"].as_str().unwrap() {
            "ClusterRole" => {
                let o: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
                Api::all(admin.clone()).create(&post, &o).await.unwrap();
            }
            "ClusterRoleBinding" => {
                let o: ClusterRoleBinding = serde_json::from_value(doc.clone()).unwrap();
                Api::all(admin.clone()).create(&post, &o).await.unwrap();
            }
            "Role" => {
                let o: Role = serde_json::from_value(doc.clone()).unwrap();
                Api::namespaced(admin.clone(), ns)
                    .create(&post, &o)
                    .await
                    .unwrap();
            }
            "RoleBinding" => {
                let o: RoleBinding = serde_json::from_value(doc.clone()).unwrap();
                Api::namespaced(admin.clone(), ns)
                    .create(&post, &o)
                    .await
                    .unwrap();
            }
            "ServiceAccount" | "Deployment" | "Service" => {}
            other => panic!("unexpected kind {other} in {file}"),
        }
    }
}

/// cert-manager's Certificate API, as installing cert-manager registers it.
async fn install_certificate_api(admin: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "names": {"kind": "Certificate", "listKind": "CertificateList", "plural": "certificates", "singular": "certificate"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    wait_for(
        T,
        || async { crds.get("certificates.cert-manager.io").await.ok() },
        |crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
        "the Certificate API established",
    )
    .await;
}

const T: Duration = Duration::from_secs(30);
const CONTOSO_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";
const CUSTOMER_APP: &str = "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7";
const CUSTOMER_SECRET: &str = "Cu5t~0mer.Secret-Valid-Value";

fn tenant_yaml(license: &str) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: contoso
spec:
  customerName: contoso-customer
  domain: contoso.onmicrosoft.com
  shortName: contoso
  contactEmails: [ops@example.com]
  adminUpns: [admin@contoso.onmicrosoft.com]
  license: {license}
  includedUsers: 100
  storage:
    location: westeurope
  deletionPolicy: Delete
"#
    )
}

fn service_condition(service: &RecordingService, type_: &str, status: &str) -> bool {
    service.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}

/// The whole life of a Pro tenant and its recording service, with the operator's client
/// authenticated as its ServiceAccount: onboarding through the consent redirect, a service
/// with the customer's own app registration, Pro → Essentials (a ConsentGrant, the paired bot
/// and its budget deleted), and deletion with `deletionPolicy: Delete` whose first storage
/// cleanup fails. Leader election runs in the operator's namespace under the Role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_work_under_the_shipped_rbac_and_use_all_of_it() {
    // The consent redirect is served by the operator, with its own client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let options = PlatformOptions {
        redirect_uri: format!("{public}/consent/callback"),
        // The webhook of a service with its own app registration: Ingress and Certificate.
        webhook: Some(recording_operator::config::WebhookConfig {
            service_host: Some("{service}.{tenant}.bots.example.com".into()),
            tls: recording_operator::config::WebhookTls {
                secret_name: None,
                issuer_ref: Some(recording_operator::config::IssuerRef {
                    name: "letsencrypt".into(),
                    kind: "ClusterIssuer".into(),
                    group: "cert-manager.io".into(),
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let h = Harness::start_simulators_with(options).await;
    let admin = h.client();
    install_rbac(&admin).await;
    install_certificate_api(&admin).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = service_account_client(&h, &seen).await;

    // The operator's process (src/main.rs) with the ServiceAccount's client.
    let config = Arc::new(h.platform.config.clone());
    let secrets: Arc<dyn SecretSource> = Arc::new(Secrets::with_kube(client.clone()));
    let checker = ConsentChecker::new(&config, secrets.clone()).unwrap();
    let metrics = Metrics::new(checker.counters());
    let storage_config = config.storage.clone().expect("the platform stores in PVCs");
    let backend = backend_from_config(&storage_config, client.clone(), secrets.clone()).unwrap();
    let links = recording_operator::links::QuickStartLinks::from_config(&config, secrets.clone());
    let storage = TenantStorage::new(&storage_config, backend, secrets, OPERATOR_NAMESPACE);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let callback =
        recording_operator::http::public::router(recording_operator::http::public::PublicState {
            client: client.clone(),
            config: config.clone(),
            links: links.clone(),
            signin: None,
        });
    tokio::spawn(recording_operator::http::public::serve(
        listener,
        callback,
        std::future::pending(),
    ));
    let controllers = controller::run(
        controller::Parts {
            client: client.clone(),
            config: config.clone(),
            checker,
            metrics,
            storage: Some(storage),
            links,
        },
        RunOptions::default(),
        Arc::new(AtomicBool::new(false)),
        until_stopped(),
    );
    let elector = LeaderElector::new(
        client.clone(),
        OPERATOR_NAMESPACE,
        "recording-operator",
        "rbac-test",
        Duration::from_secs(4),
        Duration::from_secs(1),
    )
    .unwrap();
    let operator = tokio::spawn(elector.run_as_leader(controllers, until_stopped()));

    // Onboarding: consent links, the admin accepts them (redirected to the operator), Ready.
    h.apply(&tenant_yaml("Pro")).await;
    assert_eq!(h.accept_consents("contoso").await, 5);
    let ready = h
        .wait_tenant("contoso", T, |t| {
            t.status
                .as_ref()
                .is_some_and(|s| ready_status(&s.conditions).as_deref() == Some("True"))
        })
        .await;
    // The customer's admin opens the Quick Start page: the public listener reads the Tenant.
    let page = ready
        .status
        .and_then(|s| s.quick_start_url)
        .expect("the Tenant has its Quick Start link");
    let answer = reqwest::get(&page)
        .await
        .expect("the public listener answers");
    assert_eq!(answer.status(), 200, "{page}");

    // A Pro service with the customer's own app registration and its client secret.
    h.platform.m365.add_app(AppSeed {
        app_id: CUSTOMER_APP.into(),
        display_name: "contoso-recording".into(),
        home_tenant: CONTOSO_ID.into(),
        secrets: vec![SecretSeed {
            value: CUSTOMER_SECRET.into(),
            key_id: None,
            display_name: Some("bots".into()),
            start_date_time: None,
            end_date_time: (Timestamp::now() + SignedDuration::from_hours(90 * 24)).to_string(),
        }],
        redirect_uris: vec![],
        // Its secrets' expiry, and the recording permissions its bots need.
        application_permissions: common::customer_app_permissions(),
        delegated_scopes: vec![],
    });
    h.platform.m365.grant_consent(CONTOSO_ID, CUSTOMER_APP);
    let ns = "tenant-contoso";
    h.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bot-credentials\n  namespace: {ns}\n  labels:\n    recording.m365.io/bot-secret: \"true\"\nstringData:\n  value: \"{CUSTOMER_SECRET}\"\n"
    ))
    .await;
    h.apply(&service_yaml(
        "main",
        "contoso",
        "contoso-main",
        50,
        &format!(
            "  appRegistration:\n    tenantId: {CONTOSO_ID}\n    clientId: {CUSTOMER_APP}\n    clientSecretRef:\n      name: bot-credentials\n      key: value\n"
        ),
    ))
    .await;
    let services: Api<RecordingService> = Api::namespaced(admin.clone(), ns);
    let deployments: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    let service_where = |pred: fn(&RecordingService) -> bool, what: &'static str| {
        let services = services.clone();
        async move {
            wait_for(
                T,
                || async { services.get_opt("main").await.ok().flatten() },
                pred,
                what,
            )
            .await
        }
    };
    service_where(
        |s| service_condition(s, "Ready", "True") && service_condition(s, "Authenticated", "True"),
        "the Pro service Ready and authenticated",
    )
    .await;
    let names = |list: Vec<StatefulSet>| -> Vec<String> {
        let mut names: Vec<String> = list.into_iter().filter_map(|d| d.metadata.name).collect();
        names.sort();
        names
    };
    assert_eq!(
        names(deployments.list(&Default::default()).await.unwrap().items),
        ["main-hue", "main-hue-paired"]
    );

    // Pro → Essentials: the paired bot's consent, Deployment and budget are deleted.
    h.apply(&tenant_yaml("Essentials")).await;
    wait_for(
        T,
        || async {
            Some((
                names(deployments.list(&Default::default()).await.unwrap().items),
                h.grants("contoso").await.len(),
            ))
        },
        |(bots, grants)| bots == &["main-hue".to_string()] && *grants == 4,
        "the paired bot and its consent gone",
    )
    .await;

    // The bots report the tenant's first policy invite with their ServiceAccount's token
    // (reviewed by the operator); the public listener reads the service and writes its status.
    let token = h
        .platform
        .kube
        .audience_token(ns, "main-bot", "recording-operator");
    let report = reqwest::Client::new()
        .post(format!(
            "{public}/bots/v1/namespaces/{ns}/recordingservices/main/policy-invite"
        ))
        .bearer_auth(token)
        .json(&json!({"tenantId": CONTOSO_ID}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 204);
    // No longer its own app registration: the webhook Ingress goes (read, then deleted).
    h.apply(&service_yaml("main", "contoso", "contoso-main", 50, ""))
        .await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(admin.clone(), ns);
    wait_for(
        T,
        || async { Some(ingresses.get_opt("main-webhook").await.unwrap().is_none()) },
        |gone| *gone,
        "the webhook Ingress gone",
    )
    .await;

    // Deleted with deletionPolicy Delete: the first deletion of a storage claim fails, the
    // Tenant says so, the retry deletes it and lets the Tenant go.
    h.platform.kube.inject_failures(FaultSpec {
        resource: "persistentvolumeclaims".into(),
        verb: Some("delete".into()),
        status: 500,
        count: 1,
    });
    let tenants: Api<Tenant> = Api::all(admin.clone());
    tenants
        .delete("contoso", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_ready_reason("contoso", T, "CleanupFailed").await;
    wait_for(
        Duration::from_secs(60),
        || async { Some(tenants.get_opt("contoso").await.unwrap().is_none()) },
        |gone| *gone,
        "the Tenant gone after its storage",
    )
    .await;

    // The Lease is the operator's; stopping hands it back.
    let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get("recording-operator")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("rbac-test")
    );
    stop.send(true).unwrap();
    tokio::time::timeout(T, operator)
        .await
        .expect("the operator stops")
        .unwrap()
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    let refused: Vec<String> = seen
        .iter()
        .filter(|r| r.status == 401 || r.status == 403)
        .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
    // Granted for what this run does not meet: host-networking media (an instance's pod and
    // node) and a bot Deployment left by an earlier version. None is used here.
    let elsewhere: Grants = [
        ("", "pods", "get"),
        ("", "nodes", "get"),
        ("apps", "deployments", "delete"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    // Each request counted against the narrowest role that allows it where it was made: every
    // role's every permission is used, and each where that role applies.
    let roles: [(&str, &[Rule]); 4] = [
        ("tenant ClusterRole, in tenant namespaces", TENANT_RULES),
        ("Role recording-operator-secrets", OWN_SECRETS_RULES),
        ("Role recording-operator-leader-election", NAMESPACED_RULES),
        ("ClusterRole recording-operator", RULES),
    ];
    let mut used: Vec<Grants> = vec![Grants::new(); roles.len()];
    for request in &seen {
        let namespace = request.namespace();
        for grant in request.grants() {
            let applies = |i: usize| match i {
                0 => namespace.starts_with("tenant-"),
                1 | 2 => namespace == OPERATOR_NAMESPACE,
                _ => true,
            };
            let role = (0..roles.len())
                .find(|&i| applies(i) && grants(roles[i].1).contains(&grant))
                .unwrap_or_else(|| panic!("{grant:?} in {namespace:?} is granted by no role"));
            used[role].insert(grant);
        }
    }
    for ((name, rules), used) in roles.iter().zip(&used) {
        let granted: Grants = grants(rules)
            .into_iter()
            .filter(|g| !elsewhere.contains(g))
            .collect();
        assert_same(
            &format!("what the operator used against what {name} grants"),
            used,
            &granted,
        );
    }
}

/// The router (src/router.rs), run as its ServiceAccount under deploy/router.yaml's
/// ClusterRole: its watches fill with the Tenants and RecordingServices an admin creates, no
/// request is refused, it uses every permission granted, and it can read nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_works_under_its_shipped_rbac_and_uses_all_of_it() {
    let h = Harness::start_simulators().await;
    let admin = h.client();
    install_roles(&admin, "deploy/router.yaml").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = account_client(&h, "recording-router", &seen).await;

    let (tenants, services, watches) = recording_operator::router::watch(client.clone());
    let watching = tokio::spawn(watches);
    h.apply(&tenant_yaml("Essentials")).await;
    h.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant-contoso\n")
        .await;
    h.apply(&service_yaml("main", "contoso", "contoso-main", 50, ""))
        .await;
    tenants.wait_until_ready().await.unwrap();
    services.wait_until_ready().await.unwrap();
    wait_for(
        T,
        || {
            let (t, s) = (tenants.state(), services.state());
            async move { Some((t.len(), s.len())) }
        },
        |counts| *counts == (1, 1),
        "the router's stores hold the Tenant and the RecordingService",
    )
    .await;
    // The stores fill from the first list; the watches that follow it are requested a moment
    // later.
    wait_for(
        T,
        || {
            let seen = seen.clone();
            async move {
                let seen = seen.lock().unwrap().clone();
                Some(seen.iter().flat_map(Seen::grants).collect::<Grants>())
            }
        },
        |used| used.is_superset(&grants(ROUTER_RULES)),
        "the router watches both kinds",
    )
    .await;
    watching.abort();

    let seen = seen.lock().unwrap().clone();
    let refused: Vec<_> = seen.iter().filter(|r| r.status >= 400).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let used: Grants = seen.iter().flat_map(Seen::grants).collect();
    assert_same("the router's requests", &used, &grants(ROUTER_RULES));

    // Least privilege: no Secret, no write, no read of the tenant's objects.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    assert_forbidden(secrets.list(&Default::default()).await);
    let tenant_api: Api<Tenant> = Api::all(client.clone());
    assert_forbidden(tenant_api.get("contoso").await);
    assert_forbidden(
        tenant_api
            .patch(
                "contoso",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
    );
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}
