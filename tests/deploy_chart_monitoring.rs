//! The chart's PrometheusRule and dashboard ConfigMap, rendered by real Helm
//! (deploy_support/helm.rs): off by default, one value turns each on, and they carry the files
//! of the chart unchanged but for the Warning hold time.

#[path = "deploy_support/helm.rs"]
mod helm;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/recording-operator")
}

async fn render(values: Value) -> Vec<Value> {
    helm::render(&chart(), "rec", "platform", values).await
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn rules_file() -> Value {
    let text = std::fs::read_to_string(chart().join("files/recording-operator.rules.yaml"));
    serde_saphyr::from_str(&text.unwrap()).unwrap()
}

#[tokio::test]
async fn rules_and_dashboard_are_off_by_default() {
    let docs = render(json!({})).await;
    assert!(find(&docs, "PrometheusRule").is_none());
    assert!(docs
        .iter()
        .all(|d| d["metadata"]["labels"]["grafana_dashboard"].is_null()));
}

#[tokio::test]
async fn one_value_renders_the_prometheus_rule_with_the_rules_file() {
    let docs = render(json!({"metrics": {"prometheusRule": {"enabled": true}}})).await;
    let rule = find(&docs, "PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["name"], "rec");
    assert_eq!(rule["metadata"]["namespace"], "platform");
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/instance"],
        "rec"
    );
    assert_eq!(rule["spec"], rules_file(), "the rules file, unchanged");
}

#[tokio::test]
async fn the_warning_hold_time_and_extra_labels_are_values() {
    let docs = render(json!({"metrics": {"prometheusRule": {
        "enabled": true,
        "tenantWarningFor": "2h",
        "labels": {"release": "kube-prometheus-stack"},
    }}}))
    .await;
    let rule = find(&docs, "PrometheusRule").unwrap();
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let mut expected = rules_file();
    let mut changed = 0;
    for group in expected["groups"].as_array_mut().unwrap() {
        for r in group["rules"].as_array_mut().unwrap() {
            if r["alert"] == "RecordingOperatorTenantWarning" {
                r["for"] = json!("2h");
                changed += 1;
            }
        }
    }
    assert_eq!(changed, 1);
    assert_eq!(
        rule["spec"], expected,
        "only the Warning alert's hold time moves"
    );
}

#[tokio::test]
async fn one_value_renders_the_dashboard_for_the_grafana_sidecar() {
    let docs = render(json!({"metrics": {"dashboard": {"enabled": true}}})).await;
    let map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a ConfigMap the Grafana sidecar picks up");
    assert_eq!(map["metadata"]["name"], "rec-dashboard");
    let json_text = map["data"]["recording-operator.json"].as_str().unwrap();
    let file = std::fs::read_to_string(chart().join("files/recording-operator-dashboard.json"));
    assert_eq!(
        serde_json::from_str::<Value>(json_text).unwrap(),
        serde_json::from_str::<Value>(&file.unwrap()).unwrap()
    );
}
