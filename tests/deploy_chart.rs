//! The Helm chart under real Helm (v4, see deploy_support/helm.rs): lint, install, upgrade,
//! status and uninstall against the Kubernetes simulator; the objects of deploy/ with values for
//! what differs per install.

#[path = "deploy_support/helm.rs"]
mod helm;
#[path = "deploy_support/kubectl.rs"]
mod kubectl;

use std::path::{Path, PathBuf};

use helm::Helm;
use kubectl::Kubectl;
use serde_json::{json, Value};
use sim::kube::{KubeSim, KubeSimConfig};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/recording-operator")
}

async fn render(values: Value) -> Vec<Value> {
    helm::render(&chart(), "rec", "platform", values).await
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The objects of deploy/router.yaml, by kind.
fn deploy_router(kind: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/router.yaml")).unwrap();
    helm::split_documents(&text)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/router.yaml"))
}

fn deploy_deployment() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/deployment.yaml")).unwrap();
    helm::split_documents(&text).unwrap().remove(0)
}

#[tokio::test]
async fn default_values_render_the_objects_of_deploy() {
    let docs = render(json!({})).await;
    let mut objects: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    objects.sort();
    assert_eq!(
        objects,
        [
            "ClusterRole/rec",
            "ClusterRole/rec-router",
            "ClusterRole/rec-tenant",
            "ClusterRoleBinding/rec",
            "ClusterRoleBinding/rec-router",
            "ConfigMap/rec-config",
            "Deployment/rec",
            "Deployment/rec-router",
            "NetworkPolicy/rec",
            "PodDisruptionBudget/rec",
            "Role/rec-leader-election",
            "Role/rec-secrets",
            "RoleBinding/rec-leader-election",
            "RoleBinding/rec-secrets",
            "Service/rec-metrics",
            "Service/rec-public",
            "Service/rec-router",
            "ServiceAccount/rec",
            "ServiceAccount/rec-router",
        ],
        "the router ships by default, without an Ingress until a host is set"
    );
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/instance"], "rec", "{doc}");
        assert_eq!(labels["helm.sh/chart"], "recording-operator-0.1.0");
        if doc["kind"] != "ClusterRole" && doc["kind"] != "ClusterRoleBinding" {
            assert_eq!(doc["metadata"]["namespace"], "platform", "{doc}");
        }
    }

    let deployment = named(&docs, "Deployment", "rec").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        container["image"], "recording-operator:0.1.0",
        "appVersion by default"
    );
    assert_eq!(
        container["args"],
        json!([
            "run",
            "--config=/etc/recording-operator/config.yaml",
            "--leader-election=true",
            "--leader-election-lease=rec",
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-period=2s"
        ])
    );
    // Hardened exactly like deploy/.
    let plain = deploy_deployment();
    let plain_pod = &plain["spec"]["template"]["spec"];
    let plain_container = &plain_pod["containers"][0];
    assert_eq!(pod["securityContext"], plain_pod["securityContext"]);
    for key in [
        "securityContext",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "ports",
        "volumeMounts",
    ] {
        assert_eq!(container[key], plain_container[key], "{key}");
    }
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({
            "app.kubernetes.io/name": "recording-operator",
            "app.kubernetes.io/instance": "rec",
            "app.kubernetes.io/component": "controller"
        })
    );
    // The metrics Service selects the operator pods.
    let service = named(&docs, "Service", "rec-metrics").unwrap();
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    // The public Service exposes the public listener only, never /metrics or the probes.
    let public = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "rec-public")
        .unwrap();
    assert_eq!(
        public["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(public["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(public["spec"]["ports"][0]["targetPort"], "public");
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["containerPort"]
            .clone()
    };
    assert_eq!((port("http"), port("public")), (json!(8080), json!(8081)));
    let budget = find(&docs, "PodDisruptionBudget").unwrap();
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert!(find(&docs, "Secret").is_none() && find(&docs, "ServiceMonitor").is_none());
}

/// The router: the operator's image running `router` under its own ServiceAccount, hardened
/// like deploy/router.yaml, behind a Service selecting its pods only; the Ingress and its
/// class and TLS come from the values, and `router.enabled: false` leaves it all out.
#[tokio::test]
async fn the_router_ships_with_its_service_and_an_ingress_for_a_host() {
    let docs = render(json!({})).await;
    let router = named(&docs, "Deployment", "rec-router").unwrap();
    let pod = &router["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["serviceAccountName"], "rec-router");
    assert_eq!(container["image"], "recording-operator:0.1.0");
    assert_eq!(
        container["args"],
        json!([
            "router",
            "--addr=0.0.0.0:8443",
            "--cluster-domain=cluster.local"
        ])
    );
    let plain = deploy_router("Deployment");
    let plain_pod = &plain["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"], plain_pod["securityContext"]);
    for key in [
        "args",
        "securityContext",
        "readinessProbe",
        "resources",
        "ports",
    ] {
        assert_eq!(container[key], plain_pod["containers"][0][key], "{key}");
    }
    assert!(
        container.get("livenessProbe").is_none(),
        "no restart mid-call"
    );
    let selector = &router["spec"]["selector"]["matchLabels"];
    assert_eq!(selector["app.kubernetes.io/component"], "router");
    let operator = named(&docs, "Deployment", "rec").unwrap();
    assert_ne!(selector, &operator["spec"]["selector"]["matchLabels"]);
    let service = named(&docs, "Service", "rec-router").unwrap();
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let binding = named(&docs, "ClusterRoleBinding", "rec-router").unwrap();
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "rec-router", "namespace": "platform"}])
    );
    assert!(find(&docs, "Ingress").is_none(), "no host, no Ingress");

    let docs = render(json!({"router": {"ingress": {
        "host": "calls.recording.example.com",
        "className": "nginx",
        "tlsSecretName": "calls-tls"
    }}}))
    .await;
    let ingress = named(&docs, "Ingress", "rec-router").unwrap();
    assert_eq!(ingress["metadata"]["namespace"], "platform");
    assert_eq!(
        ingress["spec"],
        json!({
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["calls.recording.example.com"], "secretName": "calls-tls"}],
            "rules": [{"host": "calls.recording.example.com", "http": {"paths": [{
                "path": "/api/calling", "pathType": "Prefix",
                "backend": {"service": {"name": "rec-router", "port": {"name": "http"}}}
            }]}}]
        })
    );
    // The same route as deploy/router-ingress.yaml (there the Service is recording-router).
    let route = |ingress: &Value| {
        let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
        (
            path["path"].clone(),
            path["pathType"].clone(),
            path["backend"]["service"]["port"].clone(),
        )
    };
    let plain = deploy_router_ingress();
    assert_eq!(route(ingress), route(&plain));
    assert_eq!(
        plain["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        deploy_router("Service")["metadata"]["name"]
    );
    // Without class or TLS Secret, the cluster's default class and no tls section.
    let docs = render(json!({"router": {"ingress": {"host": "calls.example.com"}}})).await;
    let ingress = named(&docs, "Ingress", "rec-router").unwrap();
    assert!(ingress["spec"].get("ingressClassName").is_none());
    assert!(ingress["spec"].get("tls").is_none());

    let docs =
        render(json!({"router": {"enabled": false, "ingress": {"host": "calls.example.com"}}}))
            .await;
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"].as_str().unwrap().ends_with("-router")),
        "router.enabled: false renders none of the router's objects"
    );
}

fn deploy_router_ingress() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/router-ingress.yaml")).unwrap();
    helm::split_documents(&text).unwrap().remove(0)
}

#[tokio::test]
async fn values_change_what_they_document() {
    let docs = render(json!({
        "image": {"repository": "registry.example/recording-operator", "tag": "1.2.3"},
        "replicas": 3,
        "logFormat": "text",
        "leaderElection": {"enabled": false},
        "secrets": {"create": true, "values": {"directory": "dir-secret"}},
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "fullnameOverride": "recorder",
    }))
    .await;
    let deployment = named(&docs, "Deployment", "recorder").unwrap();
    assert_eq!(deployment["metadata"]["name"], "recorder");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example/recording-operator:1.2.3"
    );
    assert_eq!(container["args"][2], "--leader-election=false");
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap()["value"].clone();
    assert_eq!(var("RECORDING_OPERATOR_LOG_FORMAT"), "text");
    assert_eq!(var("RECORDING_OPERATOR_HTTP_ADDR"), "0.0.0.0:9090");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));

    let secret = find(&docs, "Secret").unwrap();
    assert_eq!(secret["metadata"]["name"], "recording-operator-entra-apps");
    assert_eq!(secret["stringData"], json!({"directory": "dir-secret"}));
    let monitor = find(&docs, "ServiceMonitor").unwrap();
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(
        named(&docs, "Service", "recorder-metrics").unwrap()["spec"]["ports"][0]["name"],
        "http-metrics"
    );
}

#[tokio::test]
async fn helm_lints_the_chart_and_flags_a_broken_one() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let helm = Helm::new(&sim, "lint", "platform");
    let lint = helm.lint(&chart()).await.unwrap();
    assert_eq!(lint["TotalChartsLinted"], 1);
    let serious: Vec<&Value> = lint["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Severity"].as_i64().unwrap() >= WARNING)
        .collect();
    assert!(serious.is_empty(), "{lint}");

    // A copy with a template that does not parse fails the lint.
    let broken = std::env::temp_dir().join(format!(
        "recording-operator-broken-chart-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&broken);
    copy_dir(&chart(), &broken);
    std::fs::write(
        broken.join("templates/broken.yaml"),
        "x: {{ .Values.image.tag\n",
    )
    .unwrap();
    let failed = match helm.lint(&broken).await {
        Ok(result) => result["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Severity"].as_i64().unwrap() >= ERROR),
        Err(_) => true,
    };
    std::fs::remove_dir_all(&broken).unwrap();
    assert!(failed, "a template that does not parse must fail the lint");
    sim.shutdown().await;
}

/// Helm's lint severities (helm's `support` package).
const WARNING: i64 = 2;
const ERROR: i64 = 3;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn template_checksum(sim: &KubeSim) -> Value {
    let deployment = sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .unwrap();
    deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
}

/// The rules of the one object of `kind` in a deploy/ file.
fn deploy_rules(file: &str, kind: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy").join(file)).unwrap();
    let docs = helm::split_documents(&text).unwrap();
    docs.into_iter().find(|d| d["kind"] == kind).unwrap()["rules"].clone()
}

#[tokio::test]
async fn helm_installs_upgrades_reports_and_uninstalls_the_chart() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let kubectl = Kubectl::new(&sim, "deploy-chart");
    // As docs/operations.md has it: the namespace and the Secret first, with kubectl's
    // generators (protobuf bodies).
    kubectl.ok(&["create", "namespace", "platform"]).await;
    kubectl
        .ok(&[
            "-n",
            "platform",
            "create",
            "secret",
            "generic",
            "recording-operator-entra-apps",
            "--from-literal=directory=dir-secret",
        ])
        .await;

    let helm = Helm::new(&sim, "lifecycle", "platform");
    let installed = helm
        .install("rec", &chart(), &json!({}), true)
        .await
        .unwrap();
    assert_eq!(installed["info"]["status"], "deployed");
    assert_eq!(installed["version"], 1);
    // The CRDs of crds/ come first, then the templates' objects, which match deploy/'s.
    for crd in [
        "tenants.recording.m365.io",
        "recordingservices.recording.m365.io",
    ] {
        assert!(
            sim.get_json(
                "apiextensions.k8s.io/v1",
                "customresourcedefinitions",
                "",
                crd
            )
            .is_some(),
            "{crd}"
        );
    }
    let cluster_role = sim
        .get_json("rbac.authorization.k8s.io/v1", "clusterroles", "", "rec")
        .unwrap();
    // deploy/'s rules, with the tenant ClusterRole's name the release gives it.
    let deploy_rules_named = |kind: &str, name: &str| -> Value {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("deploy/rbac.yaml")).unwrap();
        let rules = helm::split_documents(&text)
            .unwrap()
            .into_iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap()["rules"]
            .to_string()
            .replace("recording-operator-tenant", "rec-tenant");
        serde_json::from_str(&rules).unwrap()
    };
    assert_eq!(
        cluster_role["rules"],
        deploy_rules_named("ClusterRole", "recording-operator")
    );
    let tenant_role = sim
        .get_json(
            "rbac.authorization.k8s.io/v1",
            "clusterroles",
            "",
            "rec-tenant",
        )
        .unwrap();
    assert_eq!(
        tenant_role["rules"],
        deploy_rules_named("ClusterRole", "recording-operator-tenant")
    );
    let secrets_role = sim
        .get_json(
            "rbac.authorization.k8s.io/v1",
            "roles",
            "platform",
            "rec-secrets",
        )
        .unwrap();
    assert_eq!(
        secrets_role["rules"],
        deploy_rules_named("Role", "recording-operator-secrets")
    );
    let role = sim
        .get_json(
            "rbac.authorization.k8s.io/v1",
            "roles",
            "platform",
            "rec-leader-election",
        )
        .unwrap();
    assert_eq!(role["rules"], deploy_rules("rbac.yaml", "Role"));
    let binding = sim
        .get_json(
            "rbac.authorization.k8s.io/v1",
            "clusterrolebindings",
            "",
            "rec",
        )
        .unwrap();
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "rec", "namespace": "platform"}])
    );
    let deployment = sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "rec"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "rec"
    );
    for (kind, name) in [
        ("serviceaccounts", "rec"),
        ("configmaps", "rec-config"),
        ("services", "rec-metrics"),
    ] {
        assert!(
            sim.get_json("v1", kind, "platform", name).is_some(),
            "{kind}/{name}"
        );
    }
    assert!(sim
        .get_json("policy/v1", "poddisruptionbudgets", "platform", "rec")
        .is_some());
    // Helm keeps its release in a Secret.
    assert!(sim
        .get_json("v1", "secrets", "platform", "sh.helm.release.v1.rec.v1")
        .is_some());

    let status = helm.status("rec").await.unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 1);

    // A configuration change rolls the pods: the template's checksum changes.
    let before = template_checksum(&sim);
    assert_eq!(before.as_str().unwrap().len(), 64);
    let upgraded = helm
        .upgrade(
            "rec",
            &chart(),
            &json!({"config": {"serverName": "rec2"}}),
            true,
        )
        .await
        .unwrap();
    assert_eq!(upgraded["version"], 2);
    assert_eq!(upgraded["info"]["status"], "deployed");
    let after = template_checksum(&sim);
    assert_ne!(before, after);
    let config = sim
        .get_json("v1", "configmaps", "platform", "rec-config")
        .unwrap();
    assert!(config["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .contains("serverName: rec2"));
    // Other values leave the pods' template alone.
    helm.upgrade(
        "rec",
        &chart(),
        &json!({"config": {"serverName": "rec2"}, "replicas": 3}),
        true,
    )
    .await
    .unwrap();
    assert_eq!(template_checksum(&sim), after);
    let deployment = sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(helm.status("rec").await.unwrap()["version"], 3);

    helm.uninstall("rec").await.unwrap();
    assert!(sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .is_none());
    assert!(sim
        .get_json("rbac.authorization.k8s.io/v1", "clusterroles", "", "rec")
        .is_none());
    assert!(sim
        .get_json("v1", "secrets", "platform", "sh.helm.release.v1.rec.v1")
        .is_none());
    // The Secret the user made stays, and so do the CRDs (Helm never deletes crds/).
    assert!(sim
        .get_json("v1", "secrets", "platform", "recording-operator-entra-apps")
        .is_some());
    assert!(sim
        .get_json(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "",
            "tenants.recording.m365.io"
        )
        .is_some());
    let gone = helm.status("rec").await.unwrap_err();
    assert!(gone.contains("not found"), "{gone}");
    sim.shutdown().await;
}

/// The command line the operator's own flag definitions read from the chart's arguments.
#[derive(clap::Parser, Debug)]
struct RunFlags {
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    http: recording_operator::http::HttpArgs,
    #[command(flatten)]
    leader: recording_operator::leader::LeaderArgs,
    #[command(flatten)]
    log: recording_operator::telemetry::LogArgs,
}

#[tokio::test]
async fn the_operator_reads_the_arguments_and_values_the_manifests_pass() {
    use clap::{Parser, ValueEnum};
    use recording_operator::telemetry::LogFormat;
    use std::time::Duration;

    let docs =
        render(json!({"leaderElection": {"leaseDuration": "30s", "renewPeriod": "5s"}})).await;
    let container =
        &named(&docs, "Deployment", "rec").unwrap()["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    let flags = RunFlags::try_parse_from(["recording-operator"].iter().chain(&args[1..])).unwrap();
    assert_eq!(
        flags.config,
        PathBuf::from("/etc/recording-operator/config.yaml")
    );
    assert!(flags.leader.enabled);
    assert_eq!(flags.leader.lease_name, "rec");
    assert_eq!(flags.leader.lease_duration, Duration::from_secs(30));
    assert_eq!(flags.leader.renew_period, Duration::from_secs(5));

    let env = container["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter().find(|e| e["name"] == name).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        LogFormat::from_str(&var("RECORDING_OPERATOR_LOG_FORMAT"), false),
        Ok(LogFormat::Json)
    );
    assert_eq!(
        var("RECORDING_OPERATOR_HTTP_ADDR")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .port(),
        8080
    );
    recording_operator::telemetry::filter(Some(&var("RUST_LOG"))).unwrap();

    let plain = deploy_deployment();
    let plain_args: Vec<&str> = plain["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let flags =
        RunFlags::try_parse_from(["recording-operator"].iter().chain(&plain_args[1..])).unwrap();
    assert_eq!(
        flags.config,
        PathBuf::from("/etc/recording-operator/config.yaml")
    );
}

/// The NetworkPolicy of deploy/ and of the chart selects the operator's pods and lets in the
/// ports they listen on, by the names their container gives them; the chart can leave it out.
#[tokio::test]
async fn the_network_policy_selects_the_operator_and_admits_its_listeners() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/networkpolicy.yaml")).unwrap();
    let deploy_policy = helm::split_documents(&text).unwrap().remove(0);
    let chart = render(json!({})).await;
    for (policy, deployment) in [
        (&deploy_policy, &deploy_deployment()),
        (
            find(&chart, "NetworkPolicy").unwrap(),
            named(&chart, "Deployment", "rec").unwrap(),
        ),
    ] {
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (key, value) in policy["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(&pod_labels[key], value, "{key}");
        }
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let container_ports: Vec<&Value> = deployment["spec"]["template"]["spec"]["containers"][0]
            ["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        let admitted: Vec<&Value> = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap())
            .map(|p| &p["port"])
            .collect();
        assert_eq!(
            admitted.len(),
            container_ports.len(),
            "every listener and nothing else"
        );
        for port in admitted {
            assert!(
                container_ports.contains(&port),
                "{port} is a container port"
            );
        }
    }
    let without = render(json!({"networkPolicy": {"enabled": false}})).await;
    assert!(find(&without, "NetworkPolicy").is_none());
}
