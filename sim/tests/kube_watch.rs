//! kube-runtime's `watcher` + `reflector` against the simulator: the cache follows creates,
//! updates and deletes, and recovers from a dropped watch and from 410 Gone.

mod kube_support;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use kube_support::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(group = "test.example.com", version = "v1", kind = "Gizmo", namespaced)]
struct GizmoSpec {
    size: i64,
}

fn gizmo(name: &str, size: i64) -> Gizmo {
    Gizmo::new(name, GizmoSpec { size })
}

async fn cache_is(reader: &reflector::Store<Gizmo>, want: &[(&str, i64)]) -> Option<()> {
    let mut got: Vec<(String, i64)> = reader
        .state()
        .iter()
        .map(|g| (g.name_any(), g.spec.size))
        .collect();
    got.sort();
    let want: Vec<(String, i64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    (got == want).then_some(())
}

#[tokio::test]
async fn reflector_stays_in_sync_through_changes_dropped_watches_and_410() {
    let sim = start().await;
    let client = sim.client().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(&PostParams::default(), &Gizmo::crd())
        .await
        .expect("CRD created");
    let api: Api<Gizmo> = Api::namespaced(client.clone(), "default");

    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            // Errors (a 410 among them) are retried by the watcher itself.
            let _ = item;
        }
    });

    api.create(&PostParams::default(), &gizmo("a", 1))
        .await
        .unwrap();
    api.create(&PostParams::default(), &gizmo("b", 2))
        .await
        .unwrap();
    eventually("two gizmos cached", || {
        cache_is(&reader, &[("a", 1), ("b", 2)])
    })
    .await;

    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"size": 10}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    eventually("update and delete seen", || cache_is(&reader, &[("a", 10)])).await;

    // The server closes every watch: the watcher re-watches from its last resourceVersion.
    sim.drop_watches();
    api.create(&PostParams::default(), &gizmo("c", 3))
        .await
        .unwrap();
    eventually("create after a dropped watch", || {
        cache_is(&reader, &[("a", 10), ("c", 3)])
    })
    .await;

    // History is compacted and the watch cut: re-watching from the last resourceVersion gets
    // 410 Gone, so the watcher lists again, and must not miss what happened meanwhile.
    let lists_before = sim
        .request_counts()
        .get(&("list".to_string(), "gizmos".to_string()))
        .copied()
        .unwrap_or(0);
    sim.compact();
    sim.drop_watches();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &gizmo("d", 4))
        .await
        .unwrap();
    eventually("relisted after 410", || {
        cache_is(&reader, &[("c", 3), ("d", 4)])
    })
    .await;
    let lists_after = sim.request_counts()[&("list".to_string(), "gizmos".to_string())];
    assert!(
        lists_after > lists_before,
        "a 410 makes the watcher list again ({lists_before} -> {lists_after})"
    );

    driver.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_expired() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let (_, list) = raw.get("/api/v1/namespaces/default/configmaps").await;
    let old_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let cm =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    raw.post("/api/v1/namespaces/default/configmaps", &cm).await;
    sim.compact();
    let (code, body) = raw
        .get(&format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"
        ))
        .await;
    assert_eq!(code, 200);
    // One ERROR event carrying a 410 Expired Status, then the stream ends.
    assert_eq!(body["type"], "ERROR");
    assert_eq!(body["object"]["code"], 410);
    assert_eq!(body["object"]["reason"], "Expired");
    assert!(body["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {old_rv} (")));
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_list_sends_initial_events_then_the_end_bookmark() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    for name in ["one", "two"] {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"pick": "yes"}}});
        raw.post("/api/v1/namespaces/default/configmaps", &cm).await;
    }
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=pick%3Dyes",
        raw.base
    );
    let mut resp = raw
        .http
        .get(url)
        .bearer_auth(&raw.token)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let events: Vec<serde_json::Value> = loop {
        buf.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().expect("more events"),
        ));
        let lines: Vec<serde_json::Value> = buf
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
    };
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(events[0]["object"]["metadata"]["name"], "one");
    sim.shutdown().await;
}
