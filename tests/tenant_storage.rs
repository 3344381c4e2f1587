//! A Tenant's storage on Azure Blob (Azurite, started by the test): containers per location,
//! bring-your-own-storage checks, Retain vs Delete, an outage of the storage service, and a
//! deletion while storage is down.

mod common;

use std::time::Duration;

use common::{tenant_yaml, Harness};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use recording_operator::crd::{Health, Tenant};
use recording_operator::demo::{PlatformOptions, StorageMode, AZURITE_ACCOUNTS};

const T: Duration = Duration::from_secs(40);

async fn harness() -> Harness {
    Harness::start_with(PlatformOptions {
        storage: StorageMode::Azurite,
        ..Default::default()
    })
    .await
}

/// Contoso's Essentials Tenant in westeurope whose storage outlives it (`deletionPolicy:
/// Retain`).
fn keep_tenant_yaml() -> String {
    tenant_yaml(
        "keep",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "  deletionPolicy: Retain\n",
    )
}

/// Fabrikam's Essentials Tenant in westeurope whose storage goes with it (`deletionPolicy:
/// Delete`).
fn drop_tenant_yaml() -> String {
    tenant_yaml(
        "drop",
        "fabrikam.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "  deletionPolicy: Delete\n",
    )
}

/// Deletes the Tenants `names` and waits until no Tenant is left.
async fn delete_all(h: &Harness, names: &[&str]) {
    let api: Api<Tenant> = Api::all(h.client());
    for name in names {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    common::wait_for(
        T,
        || async { Some(api.list(&Default::default()).await.unwrap().items.len()) },
        |n| *n == 0,
        "tenants gone",
    )
    .await;
}

/// Container names in an Azurite account, through the blob service's List Containers call.
async fn containers(h: &Harness, region: &str) -> Vec<String> {
    let account = AZURITE_ACCOUNTS
        .iter()
        .find(|(r, _)| *r == region)
        .unwrap()
        .1;
    let azurite = h.platform.azurite.as_ref().unwrap().lock().await;
    let sas = azurite
        .account_sas(
            account,
            sim::azurite::SasPermissions::READ_LIST,
            Duration::from_secs(600),
        )
        .unwrap();
    let url = format!(
        "{}/?comp=list&{sas}",
        azurite.account_endpoint(account).unwrap()
    );
    let body = reqwest::Client::new()
        .get(&url)
        .header("x-ms-version", sim::azurite::SAS_VERSION)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.split("<Name>")
        .skip(1)
        .map(|s| s.split("</Name>").next().unwrap().to_string())
        .collect()
}

fn storage_ready(t: &Tenant) -> Option<String> {
    t.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "StorageReady")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essentials_gets_one_container_pro_gets_a_paired_copy() {
    let h = harness().await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "",
    ))
    .await;
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Pro",
        "northeurope",
        "",
    ))
    .await;
    let contoso = h
        .wait_tenant("contoso", T, |t| {
            storage_ready(t).as_deref() == Some("True")
        })
        .await;
    let lines = contoso.status.unwrap().storage;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (lines[0].role.as_str(), lines[0].location.as_str()),
        ("default", "westeurope")
    );
    let endpoint = lines[0].endpoint.clone().unwrap();
    assert!(
        !endpoint.contains("sig="),
        "no credential in status: {endpoint}"
    );

    let fabrikam = h
        .wait_tenant("fabrikam", T, |t| {
            storage_ready(t).as_deref() == Some("True")
        })
        .await;
    let lines = fabrikam.status.unwrap().storage;
    let roles: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.role.as_str(), l.location.as_str()))
        .collect();
    assert_eq!(
        roles,
        [("default", "northeurope"), ("paired", "westeurope")]
    );

    let weu = containers(&h, "westeurope").await;
    let neu = containers(&h, "northeurope").await;
    assert_eq!(
        weu.len(),
        2,
        "contoso's default and fabrikam's paired copy: {weu:?}"
    );
    assert_eq!(neu.len(), 1, "fabrikam's default: {neu:?}");

    // Storage ready and every consent granted: OK.
    assert_eq!(h.accept_consents("contoso").await, 4);
    h.wait_health("contoso", T, Health::Ok).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byos_reachable_and_unreachable_locations_are_reported() {
    let h = harness().await;
    let byos = |secret: &str| {
        format!(
            "    byos:\n      enabled: true\n      locations:\n        - name: archive\n          secretRef:\n            name: {secret}\n            key: url\n"
        )
    };
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
        "northeurope",
        &byos("fabrikam-byos-archive"),
    ))
    .await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        &byos("no-such-secret"),
    ))
    .await;

    let ok = h
        .wait_tenant("fabrikam", T, |t| {
            storage_ready(t).as_deref() == Some("True")
        })
        .await;
    let line = ok
        .status
        .unwrap()
        .storage
        .into_iter()
        .find(|l| l.role == "byos")
        .unwrap();
    assert!(
        line.ready && line.name.as_deref() == Some("archive"),
        "{line:?}"
    );
    assert!(!line.endpoint.unwrap_or_default().contains("sig="));

    let bad = h
        .wait_tenant("contoso", T, |t| {
            storage_ready(t).as_deref() == Some("False")
        })
        .await;
    let status = bad.status.unwrap();
    let line = status.storage.iter().find(|l| l.role == "byos").unwrap();
    assert!(!line.ready);
    assert!(
        line.message
            .as_deref()
            .unwrap_or_default()
            .contains("no-such-secret"),
        "{line:?}"
    );
    assert_eq!(status.health, Some(Health::Warning));
    assert!(status.alarm.unwrap().contains("Storage"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_container_delete_removes_it() {
    let h = harness().await;
    h.apply(&keep_tenant_yaml()).await;
    h.apply(&drop_tenant_yaml()).await;
    h.wait_tenant("keep", T, |t| storage_ready(t).as_deref() == Some("True"))
        .await;
    let drop = h
        .wait_tenant("drop", T, |t| storage_ready(t).as_deref() == Some("True"))
        .await;
    assert!(drop
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"recording.m365.io/storage-cleanup".to_string()));
    assert_eq!(containers(&h, "westeurope").await.len(), 2);

    delete_all(&h, &["keep", "drop"]).await;
    let left = containers(&h, "westeurope").await;
    assert_eq!(
        left.len(),
        1,
        "only the Retain tenant's container is left: {left:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_claims_retain_keeps_the_namespace_and_its_claims_delete_removes_them() {
    let h = Harness::start_with(PlatformOptions {
        storage: StorageMode::Pvc,
        ..Default::default()
    })
    .await;
    h.apply(&keep_tenant_yaml()).await;
    h.apply(&drop_tenant_yaml()).await;
    for name in ["keep", "drop"] {
        h.wait_tenant(name, T, |t| storage_ready(t).as_deref() == Some("True"))
            .await;
    }
    let namespaces: Api<Namespace> = Api::all(h.client());
    let keep_ns = namespaces.get("tenant-keep").await.unwrap();
    assert_eq!(
        keep_ns.owner_references(),
        [],
        "the claims' namespace is not the Tenant's to take along"
    );
    let drop_ns = namespaces.get("tenant-drop").await.unwrap();
    assert_eq!(drop_ns.owner_references()[0].name, "drop");

    delete_all(&h, &["keep", "drop"]).await;
    let claims = |ns: &str| {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(h.client(), ns);
        async move {
            api.list(&Default::default())
                .await
                .map(|l| l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>())
                .unwrap_or_default()
        }
    };
    // Retain: the namespace and the recordings' claim stay.
    assert_eq!(claims("tenant-keep").await, ["recordings-default"]);
    assert!(namespaces.get_opt("tenant-keep").await.unwrap().is_some());
    // Delete: the claim and, through its owner, the namespace go.
    common::wait_for(
        T,
        || async { Some(namespaces.get_opt("tenant-drop").await.unwrap().is_none()) },
        |gone| *gone,
        "tenant-drop deleted",
    )
    .await;
    assert_eq!(claims("tenant-drop").await, Vec::<String>::new());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_paired_copy_of_a_tenant_once_pro() {
    let h = harness().await;
    let pro = tenant_yaml(
        "drop",
        "fabrikam.onmicrosoft.com",
        "Pro",
        "northeurope",
        "  deletionPolicy: Delete\n",
    );
    h.apply(&pro).await;
    h.wait_tenant("drop", T, |t| storage_ready(t).as_deref() == Some("True"))
        .await;
    assert_eq!(
        containers(&h, "westeurope").await.len(),
        1,
        "the paired copy"
    );

    // Down to Essentials: the paired copy (with its recordings) stays while the Tenant lives.
    h.apply(&pro.replace("license: Pro", "license: Essentials"))
        .await;
    h.wait_tenant("drop", T, |t| {
        t.status.as_ref().is_some_and(|s| s.storage.len() == 1)
    })
    .await;
    assert_eq!(containers(&h, "westeurope").await.len(), 1);

    // Deleted: both copies go.
    delete_all(&h, &["drop"]).await;
    assert_eq!(containers(&h, "northeurope").await, Vec::<String>::new());
    assert_eq!(containers(&h, "westeurope").await, Vec::<String>::new());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_is_reported_and_recovers() {
    let h = harness().await;
    h.platform
        .azurite
        .as_ref()
        .unwrap()
        .lock()
        .await
        .stop()
        .await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "",
    ))
    .await;
    let down = h
        .wait_tenant("contoso", T, |t| {
            storage_ready(t).as_deref() == Some("False")
        })
        .await;
    let status = down.status.unwrap();
    let cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "StorageReady")
        .unwrap();
    assert_eq!(cond.reason, "StorageNotReady");
    assert!(!cond.message.contains("sig="), "{}", cond.message);
    // The line keeps where the location is: what the bots are configured with does not
    // change over an outage.
    let line = &status.storage[0];
    assert!(!line.ready);
    let endpoint = line.endpoint.as_deref().unwrap_or_default();
    assert!(
        endpoint.ends_with("/recweu/contoso-default"),
        "{endpoint:?}"
    );
    h.platform
        .azurite
        .as_ref()
        .unwrap()
        .lock()
        .await
        .start_again()
        .await
        .unwrap();
    h.wait_tenant("contoso", Duration::from_secs(90), |t| {
        storage_ready(t).as_deref() == Some("True")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cleanup_keeps_the_tenant_with_its_status_until_storage_is_back() {
    let h = harness().await;
    h.apply(&drop_tenant_yaml()).await;
    let before = h
        .wait_tenant("drop", T, |t| {
            storage_ready(t).as_deref() == Some("True")
                && t.status.as_ref().is_some_and(|s| !s.consents.is_empty())
        })
        .await;
    let consents = before.status.unwrap().consents;
    assert_eq!(containers(&h, "westeurope").await.len(), 1);

    // Storage is down when the platform engineer deletes the Tenant.
    let azurite = h.platform.azurite.as_ref().unwrap();
    azurite.lock().await.stop().await;
    let api: Api<Tenant> = Api::all(h.client());
    api.delete("drop", &DeleteParams::default()).await.unwrap();
    let kept = h.wait_ready_reason("drop", T, "CleanupFailed").await;
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert!(kept
        .finalizers()
        .contains(&"recording.m365.io/storage-cleanup".to_string()));
    let status = kept.status.unwrap();
    assert_eq!(status.health, Some(Health::Warning));
    let alarm = status.alarm.clone().expect("an alarm");
    assert!(
        alarm.starts_with(
            "deleting the tenant's storage failed, the Tenant is kept until it succeeds: "
        ),
        "{alarm}"
    );
    assert!(
        !alarm.contains("sig="),
        "no SAS signature in the alarm: {alarm}"
    );
    // Written from the stored status, not the operator's slimmed copy (which keeps no
    // consent lines): the consent lines and the other conditions are still there.
    assert_eq!(status.consents, consents);
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "StorageReady" && !c.message.is_empty()));
    // The Event is published after the status write that the wait above saw.
    let warning = common::wait_for(
        T,
        || async {
            Some(
                h.events("default", "Tenant", "drop")
                    .await
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("CleanupFailed")),
            )
        },
        Option::is_some,
        "a CleanupFailed Event",
    )
    .await
    .expect("a CleanupFailed Event");
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // Storage is back: the retry deletes the container and lets the Tenant go.
    azurite.lock().await.start_again().await.unwrap();
    common::wait_for(
        Duration::from_secs(90),
        || async { Some(api.get_opt("drop").await.unwrap().is_none()) },
        |gone| *gone,
        "tenant gone",
    )
    .await;
    assert!(containers(&h, "westeurope").await.is_empty());
    h.stop().await;
}
