//! What an operator built on kube-rs does, end to end against the simulator: server-side
//! apply of spec and status with one field manager, kube-runtime's finalizer helper, the
//! event recorder, and lease updates with optimistic concurrency.

mod kube_support;

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use kube_support::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.example.com",
    version = "v1",
    kind = "Account",
    status = "AccountStatus"
)]
struct AccountSpec {
    owner: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Default)]
struct AccountStatus {
    phase: String,
}

async fn accounts(sim: &sim::kube::KubeSim) -> Api<Account> {
    let client = sim.client().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "accounts.test.example.com",
        &PatchParams::apply("test").force(),
        &Patch::Apply(Account::crd()),
    )
    .await
    .expect("CRD applied");
    Api::all(client)
}

#[tokio::test]
async fn apply_spec_and_status_with_one_field_manager() {
    let sim = start().await;
    let api = accounts(&sim).await;
    let pp = PatchParams::apply("recording-operator");
    let applied = api
        .patch("acme", &pp, &Patch::Apply(json!({"apiVersion": "test.example.com/v1", "kind": "Account", "spec": {"owner": "ann"}})))
        .await
        .expect("created by apply");
    assert_eq!(applied.metadata.generation, Some(1));
    let status = json!({"apiVersion": "test.example.com/v1", "kind": "Account", "status": {"phase": "Ready"}});
    let with_status = api
        .patch_status("acme", &pp, &Patch::Apply(status))
        .await
        .unwrap();
    assert_eq!(
        with_status.status,
        Some(AccountStatus {
            phase: "Ready".into()
        })
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status does not bump generation"
    );

    let managed = with_status.metadata.managed_fields.unwrap();
    let entries: Vec<(String, String, Option<String>)> = managed
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap(),
                m.operation.clone().unwrap(),
                m.subresource.clone(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("recording-operator".to_string(), "Apply".to_string(), None),
            (
                "recording-operator".to_string(),
                "Apply".to_string(),
                Some("status".to_string())
            ),
        ]
    );
    let changed = api
        .patch("acme", &pp, &Patch::Apply(json!({"apiVersion": "test.example.com/v1", "kind": "Account", "spec": {"owner": "bob"}})))
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.status,
        Some(AccountStatus {
            phase: "Ready".into()
        }),
        "main-endpoint apply keeps status"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_finalizer_helper_adds_and_removes_its_finalizer() {
    let sim = start().await;
    let api = accounts(&sim).await;
    api.create(
        &PostParams::default(),
        &Account::new(
            "acme",
            AccountSpec {
                owner: "ann".into(),
            },
        ),
    )
    .await
    .unwrap();
    let obj = Arc::new(api.get("acme").await.unwrap());
    finalizer(&api, "test.example.com/cleanup", obj, |_| async {
        Ok::<_, std::io::Error>(Action::await_change())
    })
    .await
    .expect("finalizer added");
    let obj = api.get("acme").await.unwrap();
    assert_eq!(obj.finalizers(), ["test.example.com/cleanup"]);
    // Apply again now that the finalizer is there: the reconcile runs.
    let applied = std::sync::atomic::AtomicBool::new(false);
    finalizer(&api, "test.example.com/cleanup", Arc::new(obj), |e| {
        applied.store(
            matches!(e, Finalizer::Apply(_)),
            std::sync::atomic::Ordering::SeqCst,
        );
        async { Ok::<_, std::io::Error>(Action::await_change()) }
    })
    .await
    .unwrap();
    assert!(applied.into_inner());

    api.delete("acme", &DeleteParams::default()).await.unwrap();
    let deleting = api.get("acme").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let cleaned = std::sync::atomic::AtomicBool::new(false);
    finalizer(&api, "test.example.com/cleanup", Arc::new(deleting), |e| {
        cleaned.store(
            matches!(e, Finalizer::Cleanup(_)),
            std::sync::atomic::Ordering::SeqCst,
        );
        async { Ok::<_, std::io::Error>(Action::await_change()) }
    })
    .await
    .unwrap();
    assert!(cleaned.into_inner());
    assert!(
        api.get_opt("acme").await.unwrap().is_none(),
        "gone once the finalizer is removed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_event_recorder_publishes_and_updates_series() {
    let sim = start().await;
    let api = accounts(&sim).await;
    let account = api
        .create(
            &PostParams::default(),
            &Account::new(
                "acme",
                AccountSpec {
                    owner: "ann".into(),
                },
            ),
        )
        .await
        .unwrap();
    let client = sim.client().await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "recording-operator".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ConsentMissing".into(),
        note: Some("the recording consent is missing".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &account.object_ref(&()))
        .await
        .expect("event created");
    recorder
        .publish(&event, &account.object_ref(&()))
        .await
        .expect("series updated");
    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let listed = events
        .list(&ListParams::default().fields("regarding.name=acme"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let e = &listed.items[0];
    assert_eq!(e.reason.as_deref(), Some("ConsentMissing"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.kind.as_deref()),
        Some("Account")
    );

    // An event without its required fields is refused like the real server does.
    let mut bare = K8sEvent::default();
    bare.metadata.name = Some("bare".into());
    let err = events
        .create(&PostParams::default(), &bare)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("reportingController: Required value"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn lease_updates_are_optimistic() {
    let sim = start().await;
    let leases: Api<Lease> = Api::namespaced(sim.client().await, "default");
    let mut lease = Lease::default();
    lease.metadata.name = Some("recording-operator".into());
    lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
        holder_identity: Some("pod-a".into()),
        lease_duration_seconds: Some(15),
        ..Default::default()
    });
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut a = created.clone();
    a.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases
        .replace("recording-operator", &PostParams::default(), &a)
        .await
        .unwrap();
    let mut stale = created;
    stale.spec.as_mut().unwrap().holder_identity = Some("pod-c".into());
    match leases
        .replace("recording-operator", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("a stale lease update must conflict, got {other:?}"),
    }
    let now = leases.get("recording-operator").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("pod-b"));
    sim.shutdown().await;
}

#[tokio::test]
async fn recorded_events_show_in_kubectl_get_events_and_the_core_api() {
    let sim = start().await;
    let api = accounts(&sim).await;
    let account = api
        .create(
            &PostParams::default(),
            &Account::new(
                "acme",
                AccountSpec {
                    owner: "ann".into(),
                },
            ),
        )
        .await
        .unwrap();
    let client = sim.client().await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "recording-operator".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ConsentMissing".into(),
        note: Some("grant the recording consent".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &account.object_ref(&()))
        .await
        .unwrap();

    // The same event through core/v1, with the fields kubectl describe searches by.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=acme,involvedObject.kind=Account"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        found.items[0].message.as_deref(),
        Some("grant the recording consent")
    );
    assert_eq!(
        found.items[0].reporting_component.as_deref(),
        Some("recording-operator")
    );

    let k = Kubectl::new(&sim);
    let out = k.ok(&["get", "events"]).await;
    let line = out.lines().nth(1).expect("one event row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cells[1..],
        [
            "Warning",
            "ConsentMissing",
            "account/acme",
            "grant",
            "the",
            "recording",
            "consent"
        ]
    );
    sim.shutdown().await;
}
