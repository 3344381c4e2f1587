//! What wakes the Tenant controller: every change someone else makes to a Tenant, and none of
//! the controller's own writes. (Its own status write used to come back through the watch and
//! start a reconcile that computed the same and wrote nothing.)

mod common;

use std::time::Duration;

use common::{onboard_applied, tenant_yaml, wait_for, Harness};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use recording_operator::crd::{Health, Tenant, RECHECK_ANNOTATION};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// Tenant reconciles the operator has run so far.
fn reconciles(h: &Harness) -> f64 {
    let prefix = "recording_operator_reconciles_total{controller=\"tenant\"} ";
    h.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The reconcile count once it has not moved for two seconds (the controller's debounce is
/// 200 ms).
async fn quiet(h: &Harness) -> f64 {
    let deadline = tokio::time::Instant::now() + T;
    let mut last = reconciles(h);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = reconciles(h);
        if now == last {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Tenant controller never came to rest"
        );
        last = now;
    }
}

/// Makes `change` and waits until the Tenant controller has reconciled again.
async fn wakes(h: &Harness, what: &str, change: Patch<serde_json::Value>) {
    let api: Api<Tenant> = Api::all(h.client());
    let before = quiet(h).await;
    api.patch("fabrikam", &PatchParams::default(), &change)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    woken(h, before, &format!("a {what} change by someone else")).await;
}

/// Waits until the Tenant controller has run more than `before` reconciles.
async fn woken(h: &Harness, before: f64, what: &str) {
    let what = format!("the Tenant controller's reconciles after {what}");
    wait_for(
        Duration::from_secs(10),
        || async { Some(reconciles(h)) },
        |n| *n > before,
        &what,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_wake_nothing_and_every_change_by_someone_else_wakes_the_tenant() {
    let h = Harness::start().await;
    let yaml = tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Pro",
        "westeurope",
        "",
    );
    onboard_applied(&h, &yaml, "fabrikam", "Pro", T).await;
    let api: Api<Tenant> = Api::all(h.client());

    // Someone edits the status: the controller writes it back once, and that write of its own
    // wakes it no more.
    let before = quiet(&h).await;
    api.patch_status(
        "fabrikam",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"health": "Warning"}})),
    )
    .await
    .unwrap();
    h.wait_tenant("fabrikam", T, |t| {
        t.status.as_ref().and_then(|s| s.health) == Some(Health::Ok)
    })
    .await;
    assert_eq!(
        quiet(&h).await - before,
        1.0,
        "one reconcile for the edit, none for the write that undid it"
    );

    // Every other change wakes it, though the Tenant's last state was the controller's own.
    let merge = |v: serde_json::Value| Patch::Merge(v);
    wakes(
        &h,
        "label",
        merge(json!({"metadata": {"labels": {"team": "blue"}}})),
    )
    .await;
    wakes(
        &h,
        "annotation",
        merge(json!({"metadata": {"annotations": {"example.com/owner": "ops"}}})),
    )
    .await;
    wakes(
        &h,
        "re-check annotation",
        merge(json!({"metadata": {"annotations": {RECHECK_ANNOTATION: "2026-12-07T16:00:00Z"}}})),
    )
    .await;
    wakes(&h, "spec", merge(json!({"spec": {"includedUsers": 12}}))).await;
    let mut finalizers = api.get("fabrikam").await.unwrap().finalizers().to_vec();
    finalizers.push("example.com/hold".into());
    wakes(
        &h,
        "finalizer",
        merge(json!({"metadata": {"finalizers": finalizers}})),
    )
    .await;
    let t = api.get("fabrikam").await.unwrap();
    assert!(t.finalizers().iter().any(|f| f == "example.com/hold"));

    // A deletion (held by the finalizer above) wakes it too.
    let before = quiet(&h).await;
    api.delete("fabrikam", &Default::default()).await.unwrap();
    woken(&h, before, "the deletion").await;
    h.stop().await;
}
