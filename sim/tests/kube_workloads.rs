//! StatefulSets, Windows pods and LoadBalancer Services on the simulator, as the API server,
//! the StatefulSet controller and a cloud's load-balancer controller treat them.

mod kube_support;

use kube_support::*;
use serde_json::{json, Value};

const STS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const SVC: &str = "/api/v1/namespaces/default/services";

fn sts(name: &str, replicas: i64, pod: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "serviceName": format!("{name}-pods"),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "partition": 0}},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}
        }
    })
}

fn windows_pod(extra: Value) -> Value {
    let mut pod = json!({
        "os": {"name": "windows"},
        "securityContext": {"windowsOptions": {"runAsUserName": "ContainerAdministrator"}},
        "containers": [{"name": "bot", "image": "bot:1"}]
    });
    merge(&mut pod, extra);
    pod
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_windows_pod_may_not_carry_linux_fields_nor_a_linux_pod_windows_ones() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let (code, _) = raw.post(STS, &sts("ok", 1, windows_pod(json!({})))).await;
    assert_eq!(code, 201);

    let linux_fields = windows_pod(json!({
        "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "bot", "image": "bot:1", "securityContext": {
            "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": false}}]
    }));
    let (code, status) = raw.post(STS, &sts("bad", 1, linux_fields)).await;
    assert_eq!(code, 422, "{status}");
    let found = causes(&status);
    for field in [
        "spec.template.spec.securityContext.runAsUser",
        "spec.template.spec.securityContext.seccompProfile",
        "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
        "spec.template.spec.containers[0].securityContext.capabilities",
        "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
    ] {
        assert!(
            found.contains(&format!(
                "{field}: Forbidden: cannot be set for a windows pod"
            )),
            "{field} in {found:?}"
        );
    }

    // A bare Pod is checked the same way, and windowsOptions are refused on a Linux pod.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "linux"},
        "spec": {"os": {"name": "linux"}, "securityContext": {"windowsOptions": {"runAsUserName": "x"}},
            "containers": [{"name": "c", "image": "i"}]}});
    let (code, status) = raw.post("/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        causes(&status),
        ["spec.securityContext.windowsOptions: Forbidden: cannot be set for a linux pod"]
    );
    let (code, status) = raw
        .post(
            STS,
            &sts(
                "mac",
                1,
                json!({"os": {"name": "darwin"}, "containers": [{"name": "c", "image": "i"}]}),
            ),
        )
        .await;
    assert_eq!(code, 422);
    assert!(
        causes(&status)[0].starts_with("spec.template.spec.os.name: Unsupported value: \"darwin\"")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stateful_set_reports_its_instances_and_keeps_its_fixed_fields() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post(STS, &sts("bot", 2, windows_pod(json!({})))).await;
    let status = eventually("both instances ready", || async {
        let (_, s) = raw.get(&format!("{STS}/bot")).await;
        (s["status"]["readyReplicas"] == 2).then(|| s["status"].clone())
    })
    .await;
    assert_eq!(status["updatedReplicas"], 2);
    assert_eq!(status["currentRevision"], status["updateRevision"]);

    // serviceName cannot change; replicas can.
    let (_, mut current) = raw.get(&format!("{STS}/bot")).await;
    current["spec"]["serviceName"] = json!("other");
    let (code, status) = raw.put(&format!("{STS}/bot"), &current).await;
    assert_eq!(code, 422, "{status}");
    assert!(causes(&status)[0].starts_with(
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
    ));

    sim.hold_stateful_set_unavailable("default", "bot", true);
    eventually("held unavailable", || async {
        let (_, s) = raw.get(&format!("{STS}/bot")).await;
        (s["status"]["readyReplicas"] == 0).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rollout_replaces_one_instance_at_a_time_and_waits_for_calls_to_end() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post(STS, &sts("bot", 3, windows_pod(json!({})))).await;
    eventually("ready", || async {
        let (_, s) = raw.get(&format!("{STS}/bot")).await;
        (s["status"]["readyReplicas"] == 3).then_some(())
    })
    .await;
    // The highest ordinal goes first; it has calls in progress.
    sim.set_instance_busy("default", "bot-2", true);
    let (_, mut current) = raw.get(&format!("{STS}/bot")).await;
    current["spec"]["template"]["metadata"]["annotations"] = json!({"config": "2"});
    let (code, _) = raw.put(&format!("{STS}/bot"), &current).await;
    assert_eq!(code, 200);
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (_, s) = raw.get(&format!("{STS}/bot")).await;
        seen.push((
            s["status"]["readyReplicas"].clone(),
            s["status"]["updatedReplicas"].clone(),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter().skip(5).all(|s| s == &(json!(2), json!(0))),
        "one instance draining, the others untouched: {seen:?}"
    );
    sim.set_instance_busy("default", "bot-2", false);
    let mut lowest_ready = 3;
    let mut done = false;
    for _ in 0..400 {
        let (_, s) = raw.get(&format!("{STS}/bot")).await;
        lowest_ready = lowest_ready.min(s["status"]["readyReplicas"].as_i64().unwrap());
        if s["status"]["updatedReplicas"] == 3 && s["status"]["readyReplicas"] == 3 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done, "the rollout finishes once the calls ended");
    assert_eq!(lowest_ready, 2, "never more than one instance down");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_load_balancer_service_gets_node_ports_and_an_address() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let service = |name: &str, ip: Option<&str>| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": ip, "externalTrafficPolicy": "Local",
                "selector": {"statefulset.kubernetes.io/pod-name": "bot-0"},
                "ports": [{"name": "media", "port": 20100, "targetPort": 8445}]}})
    };
    let (code, created) = raw
        .post(SVC, &service("static", Some("203.0.113.77")))
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["spec"]["ports"][0]["nodePort"].as_i64().unwrap() >= 30000);
    assert!(created["spec"]["healthCheckNodePort"].is_number());
    raw.post(SVC, &service("assigned", None)).await;
    for (name, check) in [("static", Some("203.0.113.77")), ("assigned", None)] {
        let ip = eventually("an address", || async {
            let (_, s) = raw.get(&format!("{SVC}/{name}")).await;
            s["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string)
        })
        .await;
        if let Some(expected) = check {
            assert_eq!(ip, expected);
        } else {
            assert!(ip.starts_with("203.0.113."), "{ip}");
        }
    }
    sim.shutdown().await;
}
