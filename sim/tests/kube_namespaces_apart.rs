//! Namespaces whose names sort next to each other (`team`, `team-b`, `teama`) stay apart:
//! quota admission counts only the namespace's own objects, lists and their pages cover
//! exactly one namespace (or all, in order), and deleting a namespace removes only its own.

mod kube_support;

use kube_support::*;
use serde_json::{json, Value};

const NAMESPACES: [&str; 3] = ["team", "team-b", "teama"];

fn service(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
}

fn config_map(name: &str) -> Value {
    json!({"metadata": {"name": name}, "data": {"k": "v"}})
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

async fn with_namespaces(raw: &Raw) {
    for ns in NAMESPACES {
        let (code, _) = raw
            .post("/api/v1/namespaces", &json!({"metadata": {"name": ns}}))
            .await;
        assert_eq!(code, 201, "namespace {ns}");
    }
}

#[tokio::test]
async fn quota_counts_only_the_objects_of_its_own_namespace() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    with_namespaces(&raw).await;
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"services": "2"}}});
    assert_eq!(
        raw.post("/api/v1/namespaces/team/resourcequotas", &quota)
            .await
            .0,
        201
    );
    // Neighbours fill up first: three services each, no quota of their own.
    for ns in ["team-b", "teama"] {
        for i in 0..3 {
            let path = format!("/api/v1/namespaces/{ns}/services");
            assert_eq!(raw.post(&path, &service(&format!("s{i}"))).await.0, 201);
        }
    }
    let team = "/api/v1/namespaces/team/services";
    assert_eq!(raw.post(team, &service("s0")).await.0, 201);
    assert_eq!(raw.post(team, &service("s1")).await.0, 201);
    let (code, status) = raw.post(team, &service("s2")).await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "services \"s2\" is forbidden: exceeded quota: q, requested: services=1, used: services=2, limited: services=2"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_cover_one_namespace_or_all_of_them_in_order() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    with_namespaces(&raw).await;
    for ns in NAMESPACES {
        for name in ["a", "b"] {
            let path = format!("/api/v1/namespaces/{ns}/configmaps");
            assert_eq!(raw.post(&path, &config_map(name)).await.0, 201);
        }
    }
    let (_, team) = raw.get("/api/v1/namespaces/team/configmaps").await;
    assert_eq!(names(&team), ["team/a", "team/b"]);

    // One namespace in pages of one: the second page ends it, without a continue token.
    let (_, first) = raw
        .get("/api/v1/namespaces/team-b/configmaps?limit=1")
        .await;
    assert_eq!(names(&first), ["team-b/a"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = raw
        .get(&format!(
            "/api/v1/namespaces/team-b/configmaps?limit=1&continue={token}"
        ))
        .await;
    assert_eq!(names(&second), ["team-b/b"]);
    assert!(second["metadata"]["continue"].is_null());

    // Every namespace in pages of four, across namespace boundaries.
    let mut seen = Vec::new();
    let mut query = "limit=4".to_string();
    loop {
        let (_, page) = raw.get(&format!("/api/v1/configmaps?{query}")).await;
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(token) => query = format!("limit=4&continue={token}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["team/a", "team/b", "team-b/a", "team-b/b", "teama/a", "teama/b"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_leaves_its_neighbours_alone() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    with_namespaces(&raw).await;
    for ns in NAMESPACES {
        let path = format!("/api/v1/namespaces/{ns}/configmaps");
        assert_eq!(raw.post(&path, &config_map("a")).await.0, 201);
    }
    assert_eq!(raw.delete("/api/v1/namespaces/team").await.0, 200);
    assert_eq!(raw.get("/api/v1/namespaces/team").await.0, 404);
    let (_, left) = raw.get("/api/v1/configmaps").await;
    assert_eq!(names(&left), ["team-b/a", "teama/a"]);
    let (_, accounts) = raw.get("/api/v1/serviceaccounts").await;
    let accounts = names(&accounts);
    assert!(
        accounts.contains(&"team-b/default".to_string()),
        "{accounts:?}"
    );
    assert!(
        !accounts.contains(&"team/default".to_string()),
        "{accounts:?}"
    );
    sim.shutdown().await;
}
