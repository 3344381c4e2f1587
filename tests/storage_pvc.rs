//! The PersistentVolumeClaim backend against the project's Kubernetes API simulator (through a
//! real `kube::Client` and a kubeconfig), and its BYOS check against a real Azurite.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use recording_operator::config::{default_region_pairs, BackendKind, PvcConfig, StorageConfig};
use recording_operator::storage::pvc::PvcBackend;
use recording_operator::storage::{
    plan_storage, ByosCredential, ByosLocation, DeleteOutcome, StorageBackend, StorageRole,
};
use secrecy::SecretString;
use sim::azurite::{Azurite, SasPermissions};
use sim::kube::{KubeSim, KubeSimConfig};

async fn cluster() -> (KubeSim, kube::Client, PvcBackend) {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let client = sim.client().await;
    let config = StorageConfig {
        backend: BackendKind::Pvc,
        pvc: PvcConfig {
            storage_class_by_region: BTreeMap::from([(
                "westeurope".to_string(),
                "managed-csi".to_string(),
            )]),
            size: "20Gi".into(),
        },
        ..Default::default()
    };
    let backend = PvcBackend::new(&config, client.clone());
    (sim, client, backend)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_changed_class_or_size_leaves_an_existing_claim_as_it_is() {
    let (_sim, client, backend) = cluster().await;
    create_namespace(&client, "tenant-contoso").await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Essentials",
        false,
        Some(365),
        &default_region_pairs(),
    )
    .unwrap();
    backend.ensure(&plan[0]).await.unwrap();

    // The platform team changes the class and size of the region's claims.
    let changed = PvcBackend::new(
        &StorageConfig {
            backend: BackendKind::Pvc,
            pvc: PvcConfig {
                storage_class_by_region: BTreeMap::from([(
                    "westeurope".to_string(),
                    "premium-csi".to_string(),
                )]),
                size: "40Gi".into(),
            },
            ..Default::default()
        },
        client.clone(),
    );
    let line = changed.ensure(&plan[0]).await.unwrap();
    assert!(line.ready);
    assert!(
        line.message.ends_with("the claim keeps its StorageClass managed-csi (configured: premium-csi) and size 20Gi (configured: 40Gi): a claim's class and size do not change once it exists"),
        "{}",
        line.message
    );
    let claim = Api::<PersistentVolumeClaim>::namespaced(client, "tenant-contoso")
        .get("recordings-default")
        .await
        .unwrap();
    let spec = claim.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("managed-csi"));
}

#[tokio::test]
async fn pro_gets_a_claim_per_location_with_class_size_and_labels() {
    let (_sim, client, backend) = cluster().await;
    create_namespace(&client, "tenant-contoso").await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Pro",
        true,
        Some(365),
        &default_region_pairs(),
    )
    .unwrap();

    let mut statuses = Vec::new();
    for location in &plan {
        statuses.push(backend.ensure(location).await.unwrap());
    }
    assert_eq!(statuses[0].role, StorageRole::Default);
    assert_eq!(
        statuses[0].endpoint,
        "pvc://tenant-contoso/recordings-default"
    );
    assert!(statuses[0].ready);
    // The simulator, like a cluster with an immediate-binding class, binds the claim at once.
    assert_eq!(
        statuses[0].message,
        "claim bound to a volume (StorageClass managed-csi)"
    );
    assert_eq!(statuses[1].role, StorageRole::Paired);
    assert_eq!(statuses[1].location, "northeurope");
    assert_eq!(
        statuses[1].endpoint,
        "pvc://tenant-contoso/recordings-paired"
    );
    assert!(statuses[1]
        .message
        .contains("the cluster's default StorageClass"));

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "tenant-contoso");
    let default = claims.get("recordings-default").await.unwrap();
    let labels = default.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "recording-operator");
    assert_eq!(labels["recording.m365.io/tenant"], "contoso");
    assert_eq!(labels["recording.m365.io/storage-role"], "default");
    let spec = default.spec.clone().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("managed-csi"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "20Gi"
    );
    let managers: Vec<String> = default
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["recording-operator"]);
    let paired = claims.get("recordings-paired").await.unwrap();
    assert_eq!(paired.spec.unwrap().storage_class_name, None);

    // Idempotent: applying again changes nothing.
    let version = default.metadata.resource_version.clone();
    let again = backend.ensure(&plan[0]).await.unwrap();
    assert_eq!(again, statuses[0]);
    assert_eq!(
        claims
            .get("recordings-default")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version
    );
}

#[tokio::test]
async fn readiness_follows_the_claims_phase() {
    let (_sim, client, backend) = cluster().await;
    create_namespace(&client, "tenant-contoso").await;
    let plan = plan_storage(
        "contoso",
        "westeurope",
        "Essentials",
        false,
        None,
        &default_region_pairs(),
    )
    .unwrap();
    backend.ensure(&plan[0]).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "tenant-contoso");
    let set_phase = |phase: &'static str| {
        let claims = claims.clone();
        async move {
            claims
                .patch_status(
                    "recordings-default",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": {"phase": phase}})),
                )
                .await
                .unwrap();
        }
    };

    // Pending, as with a WaitForFirstConsumer class before the bot mounts it: usable.
    set_phase("Pending").await;
    let status = backend.ensure(&plan[0]).await.unwrap();
    assert!(status.ready);
    assert_eq!(
        status.message,
        "claim created (StorageClass managed-csi), Pending: the volume is bound when it is \
         provisioned or when the recording bot first mounts it"
    );

    // Lost: the volume is gone, recordings cannot be written.
    set_phase("Lost").await;
    let status = backend.ensure(&plan[0]).await.unwrap();
    assert!(!status.ready);
    assert_eq!(
        status.message,
        "claim lost its volume (StorageClass managed-csi); recordings cannot be written"
    );
}

#[tokio::test]
async fn a_missing_namespace_is_reported() {
    let (_sim, _client, backend) = cluster().await;
    let plan = plan_storage(
        "ghost",
        "westeurope",
        "Essentials",
        false,
        None,
        &default_region_pairs(),
    )
    .unwrap();
    let err = backend.ensure(&plan[0]).await.unwrap_err();
    assert_eq!(err.reason(), "KubernetesError");
    assert!(
        err.to_string().starts_with(
            "applying PersistentVolumeClaim tenant-ghost/recordings-default failed: namespace \
             tenant-ghost does not exist (yet)"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn delete_removes_only_the_operators_claims() {
    let (_sim, client, backend) = cluster().await;
    create_namespace(&client, "tenant-contoso").await;
    create_namespace(&client, "tenant-fabrikam").await;
    let pairs = default_region_pairs();
    let contoso = plan_storage("contoso", "westeurope", "Essentials", false, None, &pairs).unwrap();
    backend.ensure(&contoso[0]).await.unwrap();

    // A claim with the operator's name that someone else made.
    let foreign: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "recordings-default", "namespace": "tenant-fabrikam"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "tenant-fabrikam")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let fabrikam =
        plan_storage("fabrikam", "westeurope", "Essentials", false, None, &pairs).unwrap();
    assert_eq!(
        backend.delete(&fabrikam[0]).await.unwrap(),
        DeleteOutcome::Kept {
            reason: "PersistentVolumeClaim tenant-fabrikam/recordings-default is not labelled as \
                     the operator's for tenant fabrikam"
                .into()
        }
    );
    assert!(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "tenant-fabrikam")
            .get_opt("recordings-default")
            .await
            .unwrap()
            .is_some()
    );

    assert_eq!(
        backend.delete(&contoso[0]).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let gone = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "tenant-contoso")
        .get_opt("recordings-default")
        .await
        .unwrap();
    assert!(gone.is_none(), "the claim is still there: {gone:?}");
    assert_eq!(
        backend.delete(&contoso[0]).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
}

/// A claim left by an earlier Tenant of the same name (`deletionPolicy: Retain`, then a new
/// Tenant) carries the earlier uid: the new Tenant neither takes it over nor deletes it.
#[tokio::test]
async fn a_claim_of_an_earlier_tenant_of_the_same_name_is_left_alone() {
    let (_sim, client, backend) = cluster().await;
    create_namespace(&client, "tenant-contoso").await;
    let pairs = default_region_pairs();
    let mut earlier =
        plan_storage("contoso", "westeurope", "Essentials", false, None, &pairs).unwrap();
    earlier[0].tenant_uid = Some("uid-of-the-earlier-tenant".into());
    backend.ensure(&earlier[0]).await.unwrap();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "tenant-contoso");
    let stamped = claims.get("recordings-default").await.unwrap();
    assert_eq!(
        stamped.metadata.labels.unwrap()["recording.m365.io/tenant-uid"],
        "uid-of-the-earlier-tenant"
    );

    let mut now = earlier.clone();
    now[0].tenant_uid = Some("uid-of-the-new-tenant".into());
    let refused = backend.ensure(&now[0]).await.unwrap_err();
    assert_eq!(refused.reason(), "ClaimOwnedByAnotherTenant");
    assert_eq!(
        refused.to_string(),
        "claim pvc://tenant-contoso/recordings-default was made for another Tenant named \
         \"contoso\" (uid uid-of-the-earlier-tenant); it is left alone"
    );
    assert!(matches!(
        backend.delete(&now[0]).await.unwrap(),
        DeleteOutcome::Kept { .. }
    ));
    let kept = claims.get("recordings-default").await.unwrap();
    assert_eq!(
        kept.metadata.labels.unwrap()["recording.m365.io/tenant-uid"],
        "uid-of-the-earlier-tenant",
        "not relabelled"
    );
}

#[tokio::test]
async fn byos_is_checked_against_azure_storage_on_the_pvc_backend_too() {
    let (_sim, _client, backend) = cluster().await;
    let azurite = Azurite::start_with_accounts(&["customer1"]).await.unwrap();
    let sas = azurite
        .account_sas(
            "customer1",
            SasPermissions::OPERATOR,
            Duration::from_secs(600),
        )
        .unwrap();
    let created = reqwest::Client::new()
        .put(format!(
            "{}/recordings?restype=container&{sas}",
            azurite.account_endpoint("customer1").unwrap()
        ))
        .header("x-ms-version", "2025-11-05")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = ByosLocation {
        name: "archive".into(),
        location: Some("westeurope".into()),
        secret: recording_operator::config::SecretRef::Env("UNUSED".into()),
    };
    let url = azurite
        .container_sas_url(
            "customer1",
            "recordings",
            SasPermissions::READ_LIST,
            Duration::from_secs(600),
        )
        .unwrap();
    let status = backend
        .check_byos(&location, &ByosCredential::new(SecretString::from(url)))
        .await
        .unwrap();
    assert!(status.ready, "{status:?}");
    assert_eq!(status.role, StorageRole::Byos);
}
