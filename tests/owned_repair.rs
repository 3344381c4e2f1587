//! What the operator owns is repaired as soon as someone else changes or deletes it (the
//! operator watches what it owns; before, a change waited for the 10-minute re-apply), and
//! nothing it owns is sent again while nothing changed, however often its owner is
//! reconciled.

mod common;

use std::time::Duration;

use common::{service_yaml, wait_for, Harness};
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use recording_operator::crd::{ConsentGrant, RecordingService, Tenant};
use serde_json::json;

const T: Duration = Duration::from_secs(30);
/// Well under the Tenant's and the service's 10-minute resync.
const PROMPTLY: Duration = Duration::from_secs(15);
const NS: &str = "tenant-contoso";

/// The kinds the operator applies for a Tenant and a RecordingService, as the simulator
/// counts requests.
const OWNED: &[&str] = &[
    "namespaces",
    "rolebindings",
    "resourcequotas",
    "networkpolicies",
    "consentgrants",
    "serviceaccounts",
    "configmaps",
    "secrets",
    "services",
    "statefulsets",
    "poddisruptionbudgets",
];

/// Polls `get` until it returns something.
async fn until<T: std::fmt::Debug, F, Fut>(timeout: Duration, what: &str, get: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for(timeout, get, |_| true, what).await
}

/// Write requests on the owned kinds so far, by verb and resource.
fn owned_writes(h: &Harness) -> Vec<((String, String), u64)> {
    h.platform
        .kube
        .request_counts()
        .into_iter()
        .filter(|((verb, resource), _)| {
            !matches!(verb.as_str(), "get" | "list" | "watch") && OWNED.contains(&resource.as_str())
        })
        .collect()
}

async fn service_ready(h: &Harness) {
    let api: Api<RecordingService> = Api::namespaced(h.client(), NS);
    until(T, "the service Ready", || async {
        api.get_opt("main").await.unwrap().filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| common::ready_status(&st.conditions).as_deref() == Some("True"))
        })
    })
    .await;
}

/// Merges an annotation into an object: a change its controller sees (a reconcile), of
/// nothing it reads.
async fn poke<K>(api: &Api<K>, name: &str, n: usize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {"example.com/poke": n.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_objects_are_sent_once_and_repaired_at_once_when_someone_else_touches_them() {
    let h = Harness::start().await;
    let tenant = common::tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "",
    );
    common::onboard_applied(&h, &tenant, "contoso", "Essentials", T).await;
    h.apply(&service_yaml("main", "contoso", "Contoso-Rec", 10, ""))
        .await;
    service_ready(&h).await;

    // Nothing changes: reconciles of the Tenant and the service send nothing they own.
    let before = owned_writes(&h);
    let tenants: Api<Tenant> = Api::all(h.client());
    let services: Api<RecordingService> = Api::namespaced(h.client(), NS);
    for n in 0..3 {
        poke(&tenants, "contoso", n).await;
        poke(&services, "main", n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        owned_writes(&h),
        before,
        "the operator sent again what it owns while nothing changed"
    );

    // The tenant's quota deleted: applied again.
    let quotas: Api<ResourceQuota> = Api::namespaced(h.client(), NS);
    quotas
        .delete("tenant-quota", &DeleteParams::default())
        .await
        .unwrap();
    until(PROMPTLY, "the quota back", || async {
        quotas.get_opt("tenant-quota").await.unwrap()
    })
    .await;

    // The tenant's default-deny policy edited to let egress out: put back.
    let policies: Api<NetworkPolicy> = Api::namespaced(h.client(), NS);
    let opened = json!({"spec": {"policyTypes": ["Ingress"]}});
    policies
        .patch(
            "default-deny",
            &PatchParams::default(),
            &Patch::Merge(&opened),
        )
        .await
        .unwrap();
    until(PROMPTLY, "default-deny denying egress again", || async {
        let policy = policies.get("default-deny").await.unwrap();
        let types = policy.spec.and_then(|s| s.policy_types).unwrap_or_default();
        (types == ["Ingress", "Egress"]).then_some(())
    })
    .await;

    // A consent's grant deleted: made again.
    let grants: Api<ConsentGrant> = Api::namespaced(h.client(), NS);
    let grant = grants.list(&ListParams::default()).await.unwrap().items[0].name_any();
    grants
        .delete(&grant, &DeleteParams::default())
        .await
        .unwrap();
    until(PROMPTLY, "the grant back", || async {
        grants.get_opt(&grant).await.unwrap()
    })
    .await;

    // The grant's check changes the Tenant's status, which reconciles the service too: let
    // it settle, so that what brings the service's objects back below is their own watch.
    h.wait_tenant("contoso", T, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| common::ready_status(&s.conditions).as_deref() == Some("True"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The service's own objects: each of its ConfigMaps deleted, and edited.
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client(), NS);
    let owned = ListParams::default().labels("app.kubernetes.io/managed-by=recording-operator");
    let maps = config_maps.list(&owned).await.unwrap().items;
    assert!(!maps.is_empty(), "the service has its configuration");
    for map in &maps {
        let name = map.name_any();
        config_maps
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        until(PROMPTLY, "the ConfigMap back", || async {
            config_maps.get_opt(&name).await.unwrap()
        })
        .await;
        let original = config_maps.get(&name).await.unwrap().data;
        let edited = json!({"data": {"injected": "by hand"}});
        config_maps
            .patch(&name, &PatchParams::default(), &Patch::Merge(&edited))
            .await
            .unwrap();
        // The operator's fields are put back; a field it does not own stays (server-side
        // apply: another manager's field is theirs).
        until(PROMPTLY, "the ConfigMap's data as applied", || async {
            let data = config_maps
                .get(&name)
                .await
                .unwrap()
                .data
                .unwrap_or_default();
            original
                .iter()
                .flatten()
                .all(|(k, v)| data.get(k) == Some(v))
                .then_some(())
        })
        .await;
    }

    // The bots' credentials Secret (the platform applications' client secrets), watched in
    // the tenant namespace only: deleted, it is back at once; edited, its data is put back.
    let secrets: Api<Secret> = Api::namespaced(h.client(), NS);
    let owned_secrets = secrets.list(&owned).await.unwrap().items;
    let [credentials] = owned_secrets.as_slice() else {
        panic!("one credentials Secret, not {}", owned_secrets.len());
    };
    let name = credentials.name_any();
    let original = credentials.data.clone().expect("the credentials");
    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    until(PROMPTLY, "the credentials Secret back", || async {
        secrets.get_opt(&name).await.unwrap()
    })
    .await;
    let emptied: serde_json::Map<String, serde_json::Value> =
        original.keys().map(|k| (k.clone(), json!(""))).collect();
    let emptied = json!({ "data": emptied });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&emptied))
        .await
        .unwrap();
    until(PROMPTLY, "the credentials as applied", || async {
        let data = secrets.get(&name).await.unwrap().data.unwrap_or_default();
        (data == original).then_some(())
    })
    .await;

    // Then quiet again: nothing sent while nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = owned_writes(&h);
    for n in 3..5 {
        poke(&tenants, "contoso", n).await;
        poke(&services, "main", n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(owned_writes(&h), settled, "quiet after the repairs");
    h.stop().await;
}
