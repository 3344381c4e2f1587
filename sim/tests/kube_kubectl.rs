//! The real `kubectl` against the simulator: apply (client- and server-side), printer
//! columns, YAML and JSONPath output, wait, delete with a finalizer, watch, discovery,
//! server-side dry run, and the project's own CRDs and examples.

mod kube_support;

use std::process::Stdio;
use std::time::Duration;

use kube_support::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Collapse runs of spaces so table lines compare independently of column widths.
fn squash(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn lines(out: &str) -> Vec<String> {
    out.lines().map(squash).collect()
}

#[tokio::test]
async fn apply_crd_and_custom_resource_then_get_shows_printer_columns() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let crd = k.write("crd.yaml", WIDGET_CRD);
    let out = k.ok(&["apply", "-f", &crd]).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    );
    let w = k.write("w.yaml", &widget_yaml("small", 3));
    assert_eq!(
        k.ok(&["apply", "-f", &w]).await.trim(),
        "widget.example.com/small created"
    );

    let table = lines(&k.ok(&["get", "widgets"]).await);
    assert_eq!(table[0], "NAME SIZE READY AGE");
    assert!(table[1].starts_with("small 3 "), "{table:?}");

    // The priority-1 column only with -o wide; the short name and category resolve.
    let wide = lines(&k.ok(&["get", "wd", "-o", "wide"]).await);
    assert_eq!(wide[0], "NAME SIZE READY COLOR AGE");
    assert!(wide[1].starts_with("small 3 blue "), "{wide:?}");
    let by_category = lines(&k.ok(&["get", "gadgets"]).await);
    assert_eq!(by_category[0], "NAME SIZE READY AGE");

    // -o yaml shows the stored object with its defaults; -o jsonpath reads fields.
    let yaml = k.ok(&["get", "widget", "small", "-o", "yaml"]).await;
    assert!(yaml.contains("color: blue"), "{yaml}");
    assert!(yaml.contains("generation: 1"), "{yaml}");
    let jp = k
        .ok(&[
            "get",
            "widget",
            "small",
            "-o",
            "jsonpath={.spec.size}/{.metadata.namespace}",
        ])
        .await;
    assert_eq!(jp, "3/default");

    // Re-applying a change is a patch of the live object.
    let w = k.write("w.yaml", &widget_yaml("small", 4));
    assert_eq!(
        k.ok(&["apply", "-f", &w]).await.trim(),
        "widget.example.com/small configured"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "wd",
            "small",
            "-o",
            "jsonpath={.spec.size} {.metadata.generation}"
        ])
        .await,
        "4 2"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn api_resources_lists_the_crd_with_short_name_and_category() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let crd = k.write("crd.yaml", WIDGET_CRD);
    k.ok(&["apply", "-f", &crd]).await;
    let out = lines(
        &k.ok(&["api-resources", "--api-group=example.com", "-o", "wide"])
            .await,
    );
    assert_eq!(
        out[0],
        "NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS CATEGORIES"
    );
    assert_eq!(
        out[1],
        "widgets wd example.com/v1 true Widget create,delete,deletecollection,get,list,patch,update,watch gadgets"
    );
    let core = k.ok(&["api-resources"]).await;
    for needed in [
        "deployments",
        "leases",
        "customresourcedefinitions",
        "poddisruptionbudgets",
    ] {
        assert!(core.contains(needed), "{needed} missing from {core}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_reports_conflicts() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n  level: \"1\"\n",
    );
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", &cm]).await.trim(),
        "configmap/settings serverside-applied"
    );
    // Another manager changes a field kubectl owns.
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ])
    .await;
    let err = k.fails(&["apply", "--server-side", "-f", &cm]).await;
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.mode"#
        ),
        "{err}"
    );
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &cm])
        .await;
    assert_eq!(
        k.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
            .await,
        "fast"
    );

    // Fields the applier stops sending are removed.
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
    );
    k.ok(&["apply", "--server-side", "-f", &cm]).await;
    assert_eq!(
        k.ok(&["get", "cm", "settings", "-o", "jsonpath={.data}"])
            .await,
        r#"{"mode":"fast"}"#
    );
    let managers = k
        .ok(&[
            "get",
            "cm",
            "settings",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "kubectl");
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_for_a_condition_set_through_the_status_subresource() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let w = k.write("w.yaml", &widget_yaml("w", 2));
    k.ok(&["apply", "-f", &w]).await;

    let waiter = k
        .command(&["wait", "--for=condition=Ready", "widget/w", "--timeout=30s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Done", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let (code, body) = raw
        .patch(
            &format!("{WIDGETS}/w/status"),
            "application/merge-patch+json",
            &status,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let out = waiter.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "widget.example.com/w condition met"
    );
    // The READY column follows the condition; a status write does not bump generation.
    let table = lines(&k.ok(&["get", "widgets"]).await);
    assert!(table[1].starts_with("w 2 True "), "{table:?}");
    assert_eq!(
        k.ok(&["get", "wd", "w", "-o", "jsonpath={.metadata.generation}"])
            .await,
        "1"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_waits_until_the_last_finalizer_is_removed() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let w = k.write(
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: held\n  finalizers: [example.com/cleanup]\nspec:\n  size: 1\n",
    );
    k.ok(&["apply", "-f", &w]).await;
    let mut deleting = k
        .command(&["delete", "widget", "held", "--timeout=60s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let marked = eventually("deletionTimestamp set", || async {
        let (_, o) = raw.get(&format!("{WIDGETS}/held")).await;
        o["metadata"]["deletionTimestamp"]
            .as_str()
            .map(|_| o.clone())
    })
    .await;
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["example.com/cleanup"])
    );
    assert!(
        deleting.try_wait().unwrap().is_none(),
        "kubectl delete returned while the finalizer was still there"
    );

    let (code, _) = raw
        .patch(
            &format!("{WIDGETS}/held"),
            "application/json-patch+json",
            &json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        .await;
    assert_eq!(code, 200);
    let out = deleting.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "widget.example.com \"held\" deleted"
    );
    let err = k.fails(&["get", "widget", "held"]).await;
    assert!(
        err.contains(r#"widgets.example.com "held" not found"#),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_watch_prints_an_update() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let w = k.write("w.yaml", &widget_yaml("watched", 1));
    k.ok(&["apply", "-f", &w]).await;
    let mut watching = k
        .command(&["get", "widgets", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(watching.stdout.take().unwrap()).lines();
    let header = out.next_line().await.unwrap().unwrap();
    assert_eq!(squash(&header), "NAME SIZE READY AGE");
    let first = out.next_line().await.unwrap().unwrap();
    assert!(squash(&first).starts_with("watched 1 "), "{first}");

    let (code, _) = raw
        .patch(
            &format!("{WIDGETS}/watched"),
            "application/merge-patch+json",
            &json!({"spec": {"size": 7}}),
        )
        .await;
    assert_eq!(code, 200);
    let update = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("kubectl printed the update")
        .unwrap()
        .unwrap();
    assert!(squash(&update).starts_with("watched 7 "), "{update}");
    watching.kill().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_dry_run_of_a_kustomization_persists_nothing() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    k.write(
        "kust/kustomization.yaml",
        "resources:\n  - a.yaml\n  - b.yaml\n",
    );
    k.write("kust/a.yaml", &widget_yaml("a", 1));
    k.write("kust/b.yaml", &widget_yaml("b", 2));
    let dir = k.dir.path().join("kust");
    let out = k
        .ok(&["apply", "-k", dir.to_str().unwrap(), "--dry-run=server"])
        .await;
    assert_eq!(
        lines(&out),
        [
            "widget.example.com/a created (server dry run)",
            "widget.example.com/b created (server dry run)"
        ]
    );
    let (_, list) = raw.get(WIDGETS).await;
    assert_eq!(list["items"], json!([]));
    // A rejected object fails the dry run just as it would fail for real.
    k.write("kust/b.yaml", &widget_yaml("b", 20));
    let err = k
        .fails(&["apply", "-k", dir.to_str().unwrap(), "--dry-run=server"])
        .await;
    assert!(
        err.contains("spec: Invalid value: \"object\": big widgets must be red"),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_objects_are_rejected_naming_the_field() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let bad = k.write(
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: 0\n  color: green\n  label: TOO-LONG-AND-UPPER\n",
    );
    let err = k.fails(&["apply", "-f", &bad]).await;
    for expected in [
        r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#,
        "spec.label: Too long: may not be more than 8 bytes",
        r#"spec.label: Invalid value: "TOO-LONG-AND-UPPER": spec.label in body should match '^[a-z]+$'"#,
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    let unknown = k.write("unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: u\nspec:\n  size: 1\n  extra: 1\n");
    let err = k.fails(&["apply", "-f", &unknown]).await;
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.extra""#),
        "{err}"
    );
    sim.shutdown().await;
}

fn project_dir(sub: &str) -> String {
    format!("{}/../{sub}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_project_crds_and_examples_apply_and_a_bad_tenant_is_rejected() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let out = k.ok(&["apply", "-f", &project_dir("crds")]).await;
    for crd in ["tenants", "consentgrants", "recordingservices"] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd}.recording.m365.io created"
            )),
            "{out}"
        );
    }
    let example = project_dir("deploy/examples/tenant-essentials.yaml");
    assert_eq!(
        k.ok(&["apply", "-f", &example]).await.trim(),
        "tenant.recording.m365.io/contoso created"
    );
    let table = lines(&k.ok(&["get", "tenants"]).await);
    assert!(
        table[0].starts_with("NAME CUSTOMER LICENSE USERS STATUS READY AGE"),
        "{table:?}"
    );
    assert!(table[1].starts_with("contoso Contoso-Ltd "), "{table:?}");
    assert!(k
        .ok(&["get", "tn", "contoso", "-o", "yaml"])
        .await
        .contains("customerName: Contoso-Ltd"));

    let source = std::fs::read_to_string(&example).unwrap();
    let bad = source
        .replace("name: contoso", "name: broken")
        .replace("customerName: Contoso-Ltd", "customerName: Contoso--Ltd.");
    let bad = k.write("bad-tenant.yaml", &bad);
    let err = k.fails(&["apply", "-f", &bad]).await;
    assert!(err.contains("The Tenant \"broken\" is invalid"), "{err}");
    assert!(err.contains("spec.customerName"), "{err}");

    // The same through the API: 422 Invalid with the field in details.causes.
    let raw = Raw::new(&sim);
    let mut tenant: serde_json::Value = serde_saphyr::from_str(&source).unwrap();
    tenant["metadata"]["name"] = json!("broken");
    tenant["spec"]["customerName"] = json!("a/b");
    let (code, status) = raw
        .post("/apis/recording.m365.io/v1alpha1/tenants", &tenant)
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "Tenant");
    assert_eq!(status["details"]["group"], "recording.m365.io");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.customerName");
    assert!(status["message"].as_str().unwrap().starts_with(
        "Tenant.recording.m365.io \"broken\" is invalid: spec.customerName: Invalid value: "
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn switching_from_client_side_to_server_side_apply_moves_ownership_to_kubectl() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata:\n  a: \"1\"\n",
    );
    k.ok(&["apply", "-f", &cm]).await;
    // After a successful server-side apply kubectl rewrites managedFields, handing the
    // client-side apply ownership to its own manager; the server takes that rewrite.
    k.ok(&["apply", "--server-side", "-f", &cm]).await;
    let managers = k
        .ok(&[
            "get",
            "cm",
            "moved",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    // (kubectl-last-applied keeps the last-applied annotation current.)
    assert_eq!(managers, "kubectl kubectl-last-applied");
    // So a later change through server-side apply does not conflict.
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata:\n  a: \"2\"\n",
    );
    k.ok(&["apply", "--server-side", "-f", &cm]).await;
    assert_eq!(
        k.ok(&["get", "cm", "moved", "-o", "jsonpath={.data.a}"])
            .await,
        "2"
    );
    sim.shutdown().await;
}
