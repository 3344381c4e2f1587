//! Every rule of the Tenant manifest, as the API server (here the Kubernetes simulator running
//! the CRD's own schema and CEL rules) enforces it at apply time: 422 Invalid, naming the field.

mod common;

use kube::api::{Api, Patch, PatchParams, PostParams};
use recording_operator::crd::Tenant;
use serde_json::{json, Value};

fn valid() -> Value {
    json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso"},
        "spec": {
            "customerName": "Contoso-Ltd",
            "domain": "contoso.onmicrosoft.com",
            "shortName": "Contoso",
            "contactEmails": ["ops@contoso.com"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"],
            "license": "Essentials",
            "includedUsers": 10,
            "storage": {"location": "westeurope"}
        }
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut doc = valid();
    let mut cur = &mut doc;
    for p in &path[..path.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert(json!({}));
    }
    cur[path[path.len() - 1]] = value;
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_is_refused_with_422_naming_the_field() {
    let h = common::Harness::start_simulators().await;
    let api: Api<Tenant> = Api::all(h.client());
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&["spec", "customerName"], json!("a".repeat(129))),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("-ab")),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("ab-")),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("a--b")),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("a.b")),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("a b")),
            "spec.customerName",
        ),
        (
            with(&["spec", "customerName"], json!("a|b")),
            "spec.customerName",
        ),
        (
            with(&["spec", "shortName"], json!("s".repeat(33))),
            "spec.shortName",
        ),
        (
            with(&["spec", "domain"], json!("not a domain")),
            "spec.domain",
        ),
        (
            with(&["spec", "tenantId"], json!("not-a-guid")),
            "spec.tenantId",
        ),
        (
            with(&["spec", "contactEmails"], json!(["ops"])),
            "spec.contactEmails[0]",
        ),
        (
            with(&["spec", "adminUpns"], json!(["admin"])),
            "spec.adminUpns[0]",
        ),
        (
            with(&["spec", "license"], json!("Enterprise")),
            "spec.license",
        ),
        (
            with(&["spec", "includedUsers"], json!(0)),
            "spec.includedUsers",
        ),
        (
            with(&["spec", "allowExceedIncludedUsers"], json!(true)),
            "spec.allowExceedIncludedUsers",
        ),
        (
            with(&["spec", "retention"], json!({"days": 731})),
            "spec.retention.days",
        ),
        (
            with(
                &["spec", "storage", "byos"],
                json!({"enabled": false, "locations": [{"name": "x", "secretRef": {"name": "s"}}]}),
            ),
            "spec.storage.byos.locations",
        ),
        (
            with(
                &["spec", "compliance"],
                json!({"controlRecordingNotifications": true}),
            ),
            "spec.compliance.legalWaiverRef",
        ),
        (
            with(&["spec", "storage", "location"], json!("West Europe")),
            "spec.storage.location",
        ),
        // The namespace tenant-<name> must be a DNS label of at most 63 characters.
        (
            with(&["metadata", "name"], json!("c".repeat(57))),
            "metadata.name",
        ),
        (
            with(&["metadata", "name"], json!("contoso.com")),
            "metadata.name",
        ),
        // Beyond int32: refused, not stored for every list of Tenants to fail on.
        (
            with(&["spec", "includedUsers"], json!(2_147_483_648u64)),
            "spec.includedUsers",
        ),
        (
            with(
                &["spec", "contactEmails"],
                json!(["ops@contoso.com", "ops@contoso.com"]),
            ),
            "spec.contactEmails[1]",
        ),
        (
            with(
                &["spec", "storage", "byos"],
                json!({"enabled": true, "locations": [
                    {"name": "archive", "secretRef": {"name": "a"}},
                    {"name": "archive", "secretRef": {"name": "b"}}
                ]}),
            ),
            "spec.storage.byos.locations[1]",
        ),
    ];
    let mut wrong = Vec::new();
    for (doc, field) in &cases {
        let tenant: Tenant = match serde_json::from_value(doc.clone()) {
            Ok(t) => t,
            Err(_) => {
                // Not even representable in the Rust type (e.g. an unknown license): send it raw.
                let r = api
                    .patch("contoso", &PatchParams::apply("test"), &Patch::Apply(doc))
                    .await;
                check(r.err(), field, &mut wrong);
                continue;
            }
        };
        let r = api.create(&PostParams::default(), &tenant).await;
        check(r.err(), field, &mut wrong);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Immutable fields, on update.
    api.create(
        &PostParams::default(),
        &serde_json::from_value(valid()).unwrap(),
    )
    .await
    .unwrap();
    for (path, value, field) in [
        (
            vec!["spec", "customerName"],
            json!("Other"),
            "spec.customerName",
        ),
        (
            vec!["spec", "domain"],
            json!("other.onmicrosoft.com"),
            "spec.domain",
        ),
        (
            vec!["spec", "storage", "location"],
            json!("northeurope"),
            "spec.storage.location",
        ),
    ] {
        let r = api
            .patch(
                "contoso",
                &PatchParams::apply("test").force(),
                &Patch::Apply(&with(&path, value)),
            )
            .await;
        check(r.err(), field, &mut wrong);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    h.stop().await;
}

fn check(err: Option<kube::Error>, field: &str, wrong: &mut Vec<String>) {
    match err {
        Some(kube::Error::Api(s))
            if s.code == 422 && s.reason == "Invalid" && s.message.contains(field) => {}
        other => wrong.push(format!("{field}: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_service_with_a_bad_quantity_or_name_is_refused() {
    use recording_operator::crd::RecordingService;
    let h = common::Harness::start_simulators().await;
    let api: Api<RecordingService> = Api::namespaced(h.client(), "default");
    let service = |name: &str, cpu: Value| -> Value {
        json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"tenantRef": "contoso", "shortName": "main", "licensedUsers": 10,
                     "bot": {"resources": {"limits": {"cpu": cpu}}}}
        })
    };
    let mut wrong = Vec::new();
    for (doc, field) in [
        (
            service("main", json!("1 core")),
            "spec.bot.resources.limits.cpu",
        ),
        (service(&"r".repeat(53), json!("2")), "metadata.name"),
        (service("1main", json!("2")), "metadata.name"),
    ] {
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let r = api
            .patch(&name, &PatchParams::apply("test"), &Patch::Apply(&doc))
            .await;
        check(r.err(), field, &mut wrong);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    for (name, cpu) in [("main", json!("500m")), ("paired", json!(2))] {
        api.patch(
            name,
            &PatchParams::apply("test"),
            &Patch::Apply(&service(name, cpu)),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_keep_the_shape_of_metav1_condition() {
    let h = common::Harness::start_simulators().await;
    let api: Api<Tenant> = Api::all(h.client());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(valid()).unwrap(),
    )
    .await
    .unwrap();
    let status = |condition: Value| {
        json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
            "status": {"conditions": [condition]}
        })
    };
    let condition = |status: &str, reason: &str| {
        json!({"type": "Ready", "status": status, "reason": reason, "message": "m",
               "lastTransitionTime": "2026-11-26T16:00:00Z", "observedGeneration": 1})
    };
    let mut wrong = Vec::new();
    for (doc, field) in [
        (
            status(condition("Maybe", "Ready")),
            "status.conditions[0].status",
        ),
        (
            status(condition("True", "not CamelCase")),
            "status.conditions[0].reason",
        ),
        (status(condition("True", "")), "status.conditions[0].reason"),
    ] {
        let r = api
            .patch_status(
                "contoso",
                &PatchParams::apply("test").force(),
                &Patch::Apply(&doc),
            )
            .await;
        check(r.err(), field, &mut wrong);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    api.patch_status(
        "contoso",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&status(condition("Unknown", "CheckingConsents"))),
    )
    .await
    .unwrap();
    h.stop().await;
}
