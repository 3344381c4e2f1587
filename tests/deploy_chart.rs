//! The Helm chart, rendered by the test renderer (`helm` is not among Debian's packages; see
//! deploy_support/helm.rs): the objects of deploy/ with values for what differs per install,
//! accepted by a Kubernetes API server (the simulator).

#[path = "deploy_support/helm.rs"]
mod helm;
#[path = "deploy_support/kubectl.rs"]
mod kubectl;

use std::path::{Path, PathBuf};

use kubectl::Kubectl;
use serde_json::{json, Value};
use sim::kube::{KubeSim, KubeSimConfig};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/recording-operator")
}

const RELEASE: helm::Release = helm::Release {
    name: "rec",
    namespace: "platform",
};

fn render(overrides: Value) -> Vec<Value> {
    helm::render(&chart(), &RELEASE, overrides)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.documents)
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn deploy_deployment() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/deployment.yaml")).unwrap();
    helm::split_documents(&text).unwrap().remove(0)
}

#[test]
fn default_values_render_the_objects_of_deploy() {
    let docs = render(json!({}));
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
            "ClusterRoleBinding/rec",
            "ConfigMap/rec-config",
            "Deployment/rec",
            "PodDisruptionBudget/rec",
            "Role/rec-leader-election",
            "RoleBinding/rec-leader-election",
            "Service/rec-metrics",
            "Service/rec-public",
            "ServiceAccount/rec",
        ]
    );
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/instance"], "rec", "{doc}");
        assert_eq!(labels["helm.sh/chart"], "recording-operator-0.1.0");
        if doc["kind"] != "ClusterRole" && doc["kind"] != "ClusterRoleBinding" {
            assert_eq!(doc["metadata"]["namespace"], "platform", "{doc}");
        }
    }

    let deployment = find(&docs, "Deployment").unwrap();
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
    let service = find(&docs, "Service").unwrap();
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

#[test]
fn values_change_what_they_document() {
    let docs = render(json!({
        "image": {"repository": "registry.example/recording-operator", "tag": "1.2.3"},
        "replicas": 3,
        "logFormat": "text",
        "leaderElection": {"enabled": false},
        "secrets": {"create": true, "values": {"directory": "dir-secret"}},
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "fullnameOverride": "recorder",
    }));
    let deployment = find(&docs, "Deployment").unwrap();
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
        find(&docs, "Service").unwrap()["spec"]["ports"][0]["name"],
        "http-metrics"
    );
}

#[test]
fn a_configuration_change_rolls_the_pods() {
    let checksum = |docs: &[Value]| {
        find(docs, "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .clone()
    };
    let before = checksum(&render(json!({})));
    let after = checksum(&render(json!({"config": {"serverName": "rec2"}})));
    assert_eq!(before.as_str().unwrap().len(), 64);
    assert_ne!(before, after);
    assert_eq!(
        before,
        checksum(&render(json!({"replicas": 5}))),
        "other values do not"
    );
}

#[test]
fn the_renderer_refuses_what_it_cannot_render_faithfully() {
    let dir = std::env::temp_dir().join(format!("recording-operator-chart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "name: c\nversion: 0.1.0\nappVersion: \"1\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "a: 1\n").unwrap();
    let attempt = |template: &str| {
        std::fs::write(dir.join("templates/t.yaml"), template).unwrap();
        helm::render(&dir, &RELEASE, json!({})).err()
    };
    let typo = attempt("x: {{ .Values.b }}\n").unwrap();
    assert!(typo.contains("the value does not exist"), "{typo}");
    let range = attempt("{{ range .Values.a }}{{ end }}\n").unwrap();
    assert!(
        range.contains("not supported by the test renderer"),
        "{range}"
    );
    assert!(attempt("x: {{- if .Values.a }} {{ .Values.a }}{{ end }}\n").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn kubectl_applies_the_rendered_chart() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let kubectl = Kubectl::new(&sim, "deploy-chart");
    let mut stream = String::new();
    for entry in std::fs::read_dir(chart().join("crds")).unwrap() {
        stream.push_str("---\n");
        stream.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for doc in render(json!({"secrets": {"create": true, "values": {"directory": "x"}}})) {
        stream.push_str("---\n");
        stream.push_str(&serde_json::to_string(&doc).unwrap());
        stream.push('\n');
    }
    let manifest = kubectl.dir().join("chart.yaml");
    std::fs::write(&manifest, stream).unwrap();
    let manifest = manifest.to_str().unwrap();

    // (`kubectl create namespace` would send protobuf, which the simulator does not speak.)
    let namespace = kubectl.dir().join("namespace.yaml");
    std::fs::write(
        &namespace,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: platform}\n",
    )
    .unwrap();
    kubectl
        .ok(&["apply", "-f", namespace.to_str().unwrap()])
        .await;
    let dry = kubectl
        .ok(&["apply", "-f", manifest, "--dry-run=server"])
        .await;
    assert!(
        dry.contains("deployment.apps/rec created (server dry run)"),
        "{dry}"
    );
    assert!(sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .is_none());

    let applied = kubectl
        .ok(&["apply", "--server-side", "-f", manifest])
        .await;
    assert!(
        applied.contains("deployment.apps/rec serverside-applied"),
        "{applied}"
    );
    let deployment = sim
        .get_json("apps/v1", "deployments", "platform", "rec")
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "rec"
    );
    assert!(sim
        .get_json("v1", "secrets", "platform", "recording-operator-entra-apps")
        .is_some());
    assert!(sim
        .get_json("v1", "configmaps", "platform", "rec-config")
        .is_some());
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

#[test]
fn the_operator_reads_the_arguments_and_values_the_manifests_pass() {
    use clap::{Parser, ValueEnum};
    use recording_operator::telemetry::LogFormat;
    use std::time::Duration;

    let docs = render(json!({"leaderElection": {"leaseDuration": "30s", "renewPeriod": "5s"}}));
    let container =
        &find(&docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0];
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
