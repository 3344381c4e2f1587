//! Garbage collection follows ownerReferences as they are now: references added or removed
//! by later writes count, and a dependent with another living owner survives its first
//! owner, losing only that reference.

mod kube_support;

use kube_support::*;
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const MERGE: &str = "application/merge-patch+json";

fn cm(name: &str) -> Value {
    json!({"metadata": {"name": name}, "data": {"k": "v"}})
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]})
}

async fn create(raw: &Raw, body: Value) -> Value {
    let (code, created) = raw.post(CMS, &body).await;
    assert_eq!(code, 201, "{created}");
    created
}

#[tokio::test]
async fn a_dependent_outlives_one_owner_and_goes_with_the_last() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let a = create(&raw, cm("owner-a")).await;
    let b = create(&raw, cm("owner-b")).await;
    let mut shared = cm("shared");
    shared["metadata"]["ownerReferences"] = json!([owner_ref(&a), owner_ref(&b)]);
    create(&raw, shared).await;

    assert_eq!(raw.delete(&format!("{CMS}/owner-a")).await.0, 200);
    let (code, kept) = raw.get(&format!("{CMS}/shared")).await;
    assert_eq!(code, 200);
    assert_eq!(kept["metadata"]["ownerReferences"], json!([owner_ref(&b)]));

    assert_eq!(raw.delete(&format!("{CMS}/owner-b")).await.0, 200);
    assert_eq!(raw.get(&format!("{CMS}/shared")).await.0, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn references_added_or_removed_by_later_writes_decide() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let owner = create(&raw, cm("owner")).await;
    create(&raw, cm("adopted")).await;
    let mut released = cm("released");
    released["metadata"]["ownerReferences"] = json!([owner_ref(&owner)]);
    create(&raw, released).await;

    let adopt = json!({"metadata": {"ownerReferences": [owner_ref(&owner)]}});
    assert_eq!(
        raw.patch(&format!("{CMS}/adopted"), MERGE, &adopt).await.0,
        200
    );
    let release = json!({"metadata": {"ownerReferences": null}});
    assert_eq!(
        raw.patch(&format!("{CMS}/released"), MERGE, &release)
            .await
            .0,
        200
    );

    assert_eq!(raw.delete(&format!("{CMS}/owner")).await.0, 200);
    assert_eq!(raw.get(&format!("{CMS}/adopted")).await.0, 404);
    assert_eq!(raw.get(&format!("{CMS}/released")).await.0, 200);
    sim.shutdown().await;
}
