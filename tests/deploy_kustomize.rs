//! `deploy/`: the kustomization builds, a Kubernetes API server (the simulator) accepts every
//! object, the CRDs are crdgen's and the shipped configuration is the operator's.

#[path = "deploy_support/helm.rs"]
mod helm;
#[path = "deploy_support/kubectl.rs"]
mod kubectl;

use std::path::Path;

use kubectl::Kubectl;
use recording_operator::config::{ConfigError, OperatorConfig, SecretRef};
use recording_operator::crd::{crd_file_name, crd_yaml, crds};
use serde_json::Value;
use sim::kube::{KubeSim, KubeSimConfig};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kind_and_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap(),
        doc["metadata"]["name"].as_str().unwrap()
    )
}

#[tokio::test]
async fn kubectl_applies_the_kustomization_dry_run_then_for_real() {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let kubectl = Kubectl::new(&sim, "deploy-kustomize");

    let built = helm::split_documents(&kubectl.ok(&["kustomize", "deploy/"]).await).unwrap();
    let mut objects: Vec<String> = built.iter().map(kind_and_name).collect();
    objects.sort();
    let config_map = objects
        .iter()
        .find(|o| o.starts_with("ConfigMap/recording-operator-config-"))
        .expect("the generated ConfigMap carries a content hash")
        .clone();
    let mut expected = vec![
        "ClusterRole/recording-operator".to_owned(),
        "ClusterRole/recording-operator-tenant".to_owned(),
        "NetworkPolicy/recording-operator".to_owned(),
        "Role/recording-operator-secrets".to_owned(),
        "RoleBinding/recording-operator-secrets".to_owned(),
        "ClusterRoleBinding/recording-operator".to_owned(),
        config_map.clone(),
        "CustomResourceDefinition/consentgrants.recording.m365.io".to_owned(),
        "CustomResourceDefinition/recordingservices.recording.m365.io".to_owned(),
        "CustomResourceDefinition/tenants.recording.m365.io".to_owned(),
        "Deployment/recording-operator".to_owned(),
        "Namespace/recording-operator-system".to_owned(),
        "PodDisruptionBudget/recording-operator".to_owned(),
        "Role/recording-operator-leader-election".to_owned(),
        "RoleBinding/recording-operator-leader-election".to_owned(),
        "Service/recording-operator-metrics".to_owned(),
        "Service/recording-operator-public".to_owned(),
        "ServiceAccount/recording-operator".to_owned(),
        "ServiceAccount/recording-router".to_owned(),
        "ClusterRole/recording-router".to_owned(),
        "ClusterRoleBinding/recording-router".to_owned(),
        "Deployment/recording-router".to_owned(),
        "Service/recording-router".to_owned(),
    ];
    expected.sort();
    assert_eq!(objects, expected);
    assert!(
        !objects.iter().any(|o| o.starts_with("Secret/")),
        "the Secret template is never applied with the base"
    );

    // The namespace must exist before a namespaced object can be (even in a dry run).
    kubectl.ok(&["apply", "-f", "deploy/namespace.yaml"]).await;
    let dry = kubectl
        .ok(&["apply", "-k", "deploy/", "--dry-run=server"])
        .await;
    assert!(
        dry.contains("deployment.apps/recording-operator created (server dry run)"),
        "{dry}"
    );
    assert!(
        dry.contains("customresourcedefinition.apiextensions.k8s.io/tenants.recording.m365.io created (server dry run)"),
        "{dry}"
    );
    assert!(
        sim.get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-operator"
        )
        .is_none(),
        "a dry run stores nothing"
    );

    kubectl.ok(&["apply", "-k", "deploy/"]).await;
    let deployment = sim
        .get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-operator",
        )
        .expect("stored");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["serviceAccountName"], "recording-operator");
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        config_map.trim_start_matches("ConfigMap/")
    );
    assert_eq!(pod["containers"][0]["image"], "recording-operator:0.1.0");
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!(["run", "--config=/etc/recording-operator/config.yaml"])
    );
    assert!(sim
        .get_json(
            "v1",
            "services",
            "recording-operator-system",
            "recording-operator-metrics"
        )
        .is_some());

    // The router: the same image running `router`, under its own ServiceAccount, behind its
    // Service; its Ingress (the host is the platform's) applies once an overlay adds it.
    let router = sim
        .get_json(
            "apps/v1",
            "deployments",
            "recording-operator-system",
            "recording-router",
        )
        .expect("the router is stored");
    let router_pod = &router["spec"]["template"]["spec"];
    assert_eq!(router_pod["serviceAccountName"], "recording-router");
    assert_eq!(
        router_pod["containers"][0]["image"],
        "recording-operator:0.1.0"
    );
    assert_eq!(router_pod["containers"][0]["args"][0], "router");
    let router_service = sim
        .get_json(
            "v1",
            "services",
            "recording-operator-system",
            "recording-router",
        )
        .expect("the router's Service is stored");
    assert_eq!(
        router_service["spec"]["selector"],
        router["spec"]["selector"]["matchLabels"]
    );
    let ingress = kubectl
        .ok(&[
            "apply",
            "-f",
            "deploy/router-ingress.yaml",
            "--dry-run=server",
        ])
        .await;
    assert!(
        ingress.contains("ingress.networking.k8s.io/recording-router created (server dry run)"),
        "{ingress}"
    );

    // Applying the same manifests again changes nothing.
    let again = kubectl.ok(&["apply", "-k", "deploy/"]).await;
    assert!(
        again.contains("deployment.apps/recording-operator unchanged"),
        "{again}"
    );
    let tenants = kubectl.ok(&["get", "tenants", "-A"]).await;
    assert!(
        tenants.is_empty() || tenants.contains("No resources"),
        "{tenants}"
    );
}

#[test]
fn deploy_crds_are_crdgens_output() {
    for crd in crds() {
        let path = root().join("deploy/crds").join(crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert!(
            on_disk == crd_yaml(&crd),
            "{} drifted from the Rust types; run `cargo run -- crdgen --out-dir deploy/crds`",
            path.display()
        );
    }
}

#[test]
fn the_deployment_runs_hardened() {
    let text = std::fs::read_to_string(root().join("deploy/deployment.yaml")).unwrap();
    let deployment = &helm::split_documents(&text).unwrap()[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in ["POD_NAME", "POD_NAMESPACE", "RECORDING_OPERATOR_LOG_FORMAT"] {
        assert!(env.contains(&name), "{name} in {env:?}");
    }
}

#[tokio::test]
async fn the_shipped_configuration_is_read_by_the_operator_and_only_lacks_ids_and_the_redirect() {
    let text = std::fs::read_to_string(root().join("deploy/operator-config.yaml")).unwrap();
    let config = OperatorConfig::from_yaml(&text).unwrap();
    assert_eq!(
        config,
        chart_config().await,
        "deploy/ and the chart ship the same configuration"
    );
    assert_eq!(
        config.consents["directory"].client_secret,
        Some(SecretRef::File(
            "/var/run/secrets/recording-operator/entra-apps/directory".into()
        ))
    );
    let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
        panic!("expected the missing application ids and redirect URI")
    };
    let (redirect, app_ids): (Vec<_>, Vec<_>) = problems
        .iter()
        .partition(|p| p.starts_with("consentRedirectUri: required"));
    assert_eq!(redirect.len(), 1, "{problems:?}");
    assert_eq!(app_ids.len(), config.consents.len(), "{problems:?}");
    assert!(
        app_ids
            .iter()
            .all(|p| p.ends_with(".appId: \"\" is not an application (client) id GUID")),
        "{problems:?}"
    );
}

/// The configuration the chart renders with its default values.
async fn chart_config() -> OperatorConfig {
    let rendered = helm::render(
        &root().join("charts/recording-operator"),
        "recording-operator",
        "recording-operator-system",
        serde_json::json!({}),
    )
    .await;
    let config_map = rendered.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    OperatorConfig::from_yaml(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap()
}

/// The storage examples commented in deploy/operator-config.yaml, uncommented, are
/// configurations the operator accepts.
#[test]
fn the_commented_storage_examples_are_valid() {
    let text = std::fs::read_to_string(root().join("deploy/operator-config.yaml")).unwrap();
    let commented: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# ")).collect();
    let examples: Vec<String> = commented
        .split(|l| !l.starts_with("storage:") && !l.starts_with("  "))
        .filter(|block| block.first().is_some_and(|l| l.starts_with("storage:")))
        .map(|block| block.join("\n"))
        .collect();
    assert_eq!(examples.len(), 2, "{examples:#?}");
    for example in &examples {
        let config =
            OperatorConfig::from_yaml(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
        let storage = config.storage.expect("a storage section");
        recording_operator::storage::validate_config(&storage)
            .unwrap_or_else(|e| panic!("{e}\n{example}"));
    }
}
