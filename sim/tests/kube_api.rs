//! API semantics of the simulator over HTTPS, as a client sees them: authentication,
//! Status errors, optimistic concurrency, generation and the status subresource, deletion
//! with finalizers, garbage collection, namespaces, patches, the Deployment loop, lists,
//! tables, fault injection and restarts.

mod kube_support;

use kube_support::*;
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

#[tokio::test]
async fn requests_without_the_token_are_401() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let anonymous = raw
        .http
        .get(format!("{}{CMS}", raw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    let wrong = raw
        .http
        .get(format!("{}{CMS}", raw.base))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let version = raw
        .http
        .get(format!("{}/version", raw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_are_status_objects_shaped_like_the_real_servers() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let (code, status) = raw
        .post("/api/v1/namespaces/nope/configmaps", &cm("a"))
        .await;
    assert_eq!(code, 404);
    assert_eq!(status["message"], "namespaces \"nope\" not found");
    assert_eq!(
        status["details"],
        json!({"name": "nope", "kind": "namespaces"})
    );

    assert_eq!(raw.post(CMS, &cm("a")).await.0, 201);
    let (code, status) = raw.post(CMS, &cm("a")).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(status["message"], "configmaps \"a\" already exists");

    let (code, status) = raw.get(&format!("{CMS}/missing")).await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(status["message"], "configmaps \"missing\" not found");

    let (code, status) = raw
        .post(CMS, &json!({"metadata": {"name": "Not_Valid"}}))
        .await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .starts_with("ConfigMap \"Not_Valid\" is invalid: metadata.name: Invalid value: \"Not_Valid\": a lowercase RFC 1123 subdomain"));
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_updates_conflict() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let (_, created) = raw.post(CMS, &cm("c")).await;
    let mut first = created.clone();
    first["data"]["k"] = json!("first");
    let (code, updated) = raw.put(&format!("{CMS}/c"), &first).await;
    assert_eq!(code, 200);
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let mut second = created.clone();
    second["data"]["k"] = json!("second");
    let (code, status) = raw.put(&format!("{CMS}/c"), &second).await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn generation_follows_spec_and_the_status_subresource_is_separate() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "g"}, "spec": {"size": 1}, "status": {"conditions": [{"type": "Ready"}]}});
    let (code, created) = raw.post(WIDGETS, &w).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created.get("status").is_none(),
        "status is dropped on create"
    );

    // Labels and status through the main endpoint: no new generation, status ignored.
    let mut o = created.clone();
    o["metadata"]["labels"] = json!({"a": "b"});
    o["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let (_, o) = raw.put(&format!("{WIDGETS}/g"), &o).await;
    assert_eq!(o["metadata"]["generation"], 1);
    assert!(o.get("status").is_none());

    // A spec change bumps it.
    let (_, o) = raw
        .patch(
            &format!("{WIDGETS}/g"),
            "application/merge-patch+json",
            &json!({"spec": {"size": 2}}),
        )
        .await;
    assert_eq!(o["metadata"]["generation"], 2);

    // Through /status only status changes.
    let mut s = o.clone();
    s["spec"]["size"] = json!(9);
    s["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let (code, s) = raw.put(&format!("{WIDGETS}/g/status"), &s).await;
    assert_eq!(code, 200);
    assert_eq!(s["spec"]["size"], 2);
    assert_eq!(s["status"]["conditions"][0]["status"], "True");
    assert_eq!(s["metadata"]["generation"], 2);

    // Custom resources need a resourceVersion to be replaced.
    let mut unconditional = s.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, status) = raw.put(&format!("{WIDGETS}/g"), &unconditional).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Widget.example.com \"g\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn schema_and_cel_violations_are_422_with_field_causes() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let bad_schema = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"tags": ["a", "b", "c"]}});
    let (code, status) = raw.post(WIDGETS, &bad_schema).await;
    assert_eq!(code, 422);
    let causes: Vec<(String, String)> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().into(),
                c["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        causes.contains(&("spec.size".into(), "FieldValueRequired".into())),
        "{causes:?}"
    );
    assert!(
        causes.contains(&("spec.tags".into(), "FieldValueTooMany".into())),
        "{causes:?}"
    );

    let bad_cel = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "c"}, "spec": {"size": 50}});
    let (code, status) = raw.post(WIDGETS, &bad_cel).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Widget.example.com \"c\" is invalid: spec: Invalid value: \"object\": big widgets must be red"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec");

    // A transition rule sees the old object on update.
    let ok = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {"size": 1, "color": "blue"}});
    assert_eq!(raw.post(WIDGETS, &ok).await.0, 201);
    let (code, status) = raw
        .patch(
            &format!("{WIDGETS}/t"),
            "application/merge-patch+json",
            &json!({"spec": {"color": "red"}}),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Invalid value: \"object\": color is immutable"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn owner_deletion_collects_dependents_including_across_scopes() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    // A cluster-scoped owner of namespaced objects.
    let (_, owner) = raw
        .post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({"metadata": {"name": "owner"}, "rules": []}),
        )
        .await;
    let owner_ref = json!([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": "owner", "uid": owner["metadata"]["uid"], "controller": true}]);
    for name in ["plain", "finalized"] {
        let mut o = cm(name);
        o["metadata"]["ownerReferences"] = owner_ref.clone();
        if name == "finalized" {
            o["metadata"]["finalizers"] = json!(["example.com/keep"]);
        }
        assert_eq!(raw.post(CMS, &o).await.0, 201);
    }
    let (code, status) = raw
        .delete("/apis/rbac.authorization.k8s.io/v1/clusterroles/owner")
        .await;
    assert_eq!(code, 200);
    assert_eq!(status["status"], "Success");
    assert_eq!(raw.get(&format!("{CMS}/plain")).await.0, 404);
    let (_, finalized) = raw.get(&format!("{CMS}/finalized")).await;
    assert!(finalized["metadata"]["deletionTimestamp"].is_string());

    // Orphaning keeps the dependent and drops its owner reference.
    let (_, owner) = raw
        .post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({"metadata": {"name": "owner2"}, "rules": []}),
        )
        .await;
    let mut o = cm("orphan");
    o["metadata"]["ownerReferences"] = json!([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": "owner2", "uid": owner["metadata"]["uid"]}]);
    raw.post(CMS, &o).await;
    raw.send(
        reqwest::Method::DELETE,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/owner2",
        "application/json",
        Some(json!({"propagationPolicy": "Orphan"}).to_string()),
    )
    .await;
    let (code, orphan) = raw.get(&format!("{CMS}/orphan")).await;
    assert_eq!(code, 200);
    assert_eq!(orphan["metadata"]["ownerReferences"], json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents_then_itself() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post("/api/v1/namespaces", &json!({"metadata": {"name": "t"}}))
        .await;
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    raw.post("/api/v1/namespaces/t/configmaps", &held).await;
    raw.post("/api/v1/namespaces/t/configmaps", &cm("free"))
        .await;

    let (code, ns) = raw.delete("/api/v1/namespaces/t").await;
    assert_eq!(code, 202);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(raw.get("/api/v1/namespaces/t/configmaps/free").await.0, 404);
    let (code, status) = raw
        .post("/api/v1/namespaces/t/configmaps", &cm("new"))
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "configmaps \"new\" is forbidden: unable to create new content in namespace t because it is being terminated"
    );
    // The namespace waits for its last object.
    assert_eq!(raw.get("/api/v1/namespaces/t").await.0, 200);
    raw.patch(
        "/api/v1/namespaces/t/configmaps/held",
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(raw.get("/api/v1/namespaces/t/configmaps/held").await.0, 404);
    assert_eq!(raw.get("/api/v1/namespaces/t").await.0, 404);
    sim.shutdown().await;
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "bot", "image": "bot:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "side:1"}]}}}})
}

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    assert_eq!(raw.post(DEPLOYS, &deployment("d")).await.0, 201);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "bot", "image": "bot:2", "env": [{"name": "B", "value": "2"}]}]}}}});
    let (code, d) = raw
        .patch(
            &format!("{DEPLOYS}/d"),
            "application/strategic-merge-patch+json",
            &patch,
        )
        .await;
    assert_eq!(code, 200, "{d}");
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2);
    assert_eq!(containers[0]["image"], "bot:2");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(containers[1]["image"], "side:1");
    assert_eq!(d["metadata"]["generation"], 2);

    // Custom resources take no strategic merge patches.
    install_widgets(&raw).await;
    raw.post(
        WIDGETS,
        &json!({"metadata": {"name": "w"}, "spec": {"size": 1}}),
    )
    .await;
    let (code, _) = raw
        .patch(
            &format!("{WIDGETS}/w"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"size": 2}}),
        )
        .await;
    assert_eq!(code, 415);

    // A selector that does not match the template is invalid.
    let mut bad = deployment("bad");
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (code, status) = raw.post(DEPLOYS, &bad).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.template.metadata.labels"
    );
    sim.shutdown().await;
}

fn available(d: &Value) -> Option<bool> {
    let cond = d["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Available")?
        .clone();
    Some(cond["status"] == "True")
}

#[tokio::test]
async fn deployments_become_available_unless_held() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post(DEPLOYS, &deployment("bot")).await;
    let ready = eventually("deployment available", || async {
        let (_, d) = raw.get(&format!("{DEPLOYS}/bot")).await;
        (available(&d) == Some(true)).then_some(d)
    })
    .await;
    assert_eq!(ready["status"]["observedGeneration"], 1);
    assert_eq!(ready["status"]["readyReplicas"], 2);
    assert_eq!(ready["status"]["availableReplicas"], 2);

    sim.hold_deployment_unavailable("default", "bot", true);
    raw.patch(
        &format!("{DEPLOYS}/bot"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 3}}),
    )
    .await;
    let held = eventually("new generation observed while held", || async {
        let (_, d) = raw.get(&format!("{DEPLOYS}/bot")).await;
        (d["status"]["observedGeneration"] == 2).then_some(d)
    })
    .await;
    assert_eq!(available(&held), Some(false));
    assert!(held["status"].get("availableReplicas").is_none());

    sim.hold_deployment_unavailable("default", "bot", false);
    let released = eventually("available after release", || async {
        let (_, d) = raw.get(&format!("{DEPLOYS}/bot")).await;
        (available(&d) == Some(true)).then_some(d)
    })
    .await;
    assert_eq!(released["status"]["availableReplicas"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_creates_and_conflicts_over_http() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let apply =
        |manager: &str, force: bool| format!("{CMS}/applied?fieldManager={manager}&force={force}");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let (_, list) = raw.get(CMS).await;
    let before = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, created) = raw
        .patch(
            &apply("operator", false),
            "application/apply-patch+yaml",
            &body,
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "operator"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );

    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "2", "b": "x"}});
    let (code, status) = raw
        .patch(
            &apply("someone", false),
            "application/apply-patch+yaml",
            &other,
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"operator\": .data.a"
    );
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"operator\"", "field": ".data.a"})
    );

    let (code, missing) = raw
        .patch(
            &format!("{CMS}/applied"),
            "application/apply-patch+yaml",
            &other,
        )
        .await;
    assert_eq!(code, 422, "{missing}");
    assert_eq!(missing["details"]["causes"][0]["field"], "fieldManager");

    // Creation through apply is one write, as on a real server: a watch from before it sees
    // one ADDED event, carrying the applier's managedFields, and nothing else.
    let (_, watched) = raw
        .get(&format!(
            "{CMS}?watch=true&timeoutSeconds=1&resourceVersion={before}"
        ))
        .await;
    let events: Vec<Value> = match &watched {
        Value::String(lines) => lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        one => vec![one.clone()],
    };
    let applied: Vec<&Value> = events
        .iter()
        .filter(|e| e["object"]["metadata"]["name"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{events:?}");
    assert_eq!(applied[0]["type"], "ADDED");
    assert_eq!(
        applied[0]["object"]["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(
        applied[0]["object"]["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );

    // Applying the same configuration twice changes nothing.
    let (_, again) = raw
        .patch(
            &apply("operator", false),
            "application/apply-patch+yaml",
            &body,
        )
        .await;
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_page_and_filter() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    for (i, tier) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        let mut o = cm(&format!("cm{i}"));
        o["metadata"]["labels"] = json!({"tier": tier});
        raw.post(CMS, &o).await;
    }
    let (_, page) = raw.get(&format!("{CMS}?limit=2")).await;
    assert_eq!(page["kind"], "ConfigMapList");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["metadata"]["remainingItemCount"], 3);
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().into())
        .collect();
    let mut token = page["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let (_, next) = raw.get(&format!("{CMS}?limit=2&continue={token}")).await;
        names.extend(
            next["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match next["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["cm0", "cm1", "cm2", "cm3", "cm4"]);

    // At resourceVersion 0 the list comes from the watch cache: no pages, `limit` ignored.
    for q in [
        "resourceVersion=0&limit=2",
        "resourceVersion=0&resourceVersionMatch=NotOlderThan&limit=2",
    ] {
        let (_, whole) = raw.get(&format!("{CMS}?{q}")).await;
        assert_eq!(whole["items"].as_array().unwrap().len(), 5, "{q}");
        assert!(whole["metadata"].get("continue").is_none(), "{q}");
    }

    let selected = |q: &str| {
        let q = q.to_string();
        let raw = &raw;
        async move {
            let (_, l) = raw.get(&format!("{CMS}?{q}")).await;
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        selected("labelSelector=tier%3Da").await,
        ["cm0", "cm2", "cm4"]
    );
    assert_eq!(
        selected("labelSelector=tier%20in%20(b,c)").await,
        ["cm1", "cm3"]
    );
    assert_eq!(selected("labelSelector=tier!%3Da").await, ["cm1", "cm3"]);
    assert_eq!(selected("fieldSelector=metadata.name%3Dcm3").await, ["cm3"]);

    // A continue token from before a compaction is too old.
    sim.compact();
    let (code, status) = raw.get(&format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!((code, status["reason"].as_str()), (410, Some("Expired")));
    sim.shutdown().await;
}

#[tokio::test]
async fn tables_for_built_in_kinds() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post(CMS, &cm("t")).await;
    let resp = raw
        .http
        .get(format!("{}{CMS}", raw.base))
        .bearer_auth(&raw.token)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap();
    let table: Value = resp.json().await.unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], 1);
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_failures_and_request_counts() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    sim.inject_failures(sim::kube::FaultSpec {
        resource: "configmaps".into(),
        verb: Some("create".into()),
        status: 429,
        count: 2,
    });
    let url = format!("{}{CMS}", raw.base);
    for _ in 0..2 {
        let r = raw
            .http
            .post(&url)
            .bearer_auth(&raw.token)
            .json(&cm("f"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "TooManyRequests");
    }
    // Other verbs are not affected, and the third create succeeds.
    assert_eq!(raw.get(CMS).await.0, 200);
    assert_eq!(raw.post(CMS, &cm("f")).await.0, 201);
    let counts = sim.request_counts();
    assert_eq!(counts[&("create".to_string(), "configmaps".to_string())], 3);
    assert_eq!(counts[&("list".to_string(), "configmaps".to_string())], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_or_wipes_the_state() {
    let sim = start().await;
    let client = sim.client().await;
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "default");
    let mut c = k8s_openapi::api::core::v1::ConfigMap::default();
    c.metadata.name = Some("kept".into());
    api.create(&Default::default(), &c).await.unwrap();
    sim.restart(true).await;
    let fresh: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sim.client().await, "default");
    assert!(fresh.get_opt("kept").await.unwrap().is_some());
    sim.restart(false).await;
    let fresh: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sim.client().await, "default");
    assert!(fresh.get_opt("kept").await.unwrap().is_none());
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(sim.client().await);
    assert!(namespaces.get_opt("default").await.unwrap().is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_crd_stops_serving_it_and_removes_its_objects() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let (_, crd) = raw
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
        .await;
    let conditions: Vec<(&str, &str)> = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [("NamesAccepted", "True"), ("Established", "True")]
    );
    raw.post(
        WIDGETS,
        &json!({"metadata": {"name": "w"}, "spec": {"size": 1}}),
    )
    .await;
    assert_eq!(
        raw.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
            .await
            .0,
        200
    );
    assert_eq!(raw.get(WIDGETS).await.0, 404);
    assert_eq!(raw.get("/apis/example.com/v1").await.0, 404);
    // Re-creating it serves an empty collection.
    install_widgets(&raw).await;
    let (_, list) = raw.get(WIDGETS).await;
    assert_eq!(list["items"], json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn crds_with_broken_rules_and_objects_with_bad_metadata_are_refused() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let mut crd: Value = serde_saphyr::from_str(WIDGET_CRD).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"][0]["rule"] = json!("self.size <=");
    let (code, status) = raw
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd,
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    );
    assert_eq!(
        raw.get(WIDGETS).await.0,
        404,
        "a refused CRD serves nothing"
    );

    let mut long_label = cm("labelled");
    long_label["metadata"]["labels"] = json!({"recording.m365.io/tenant": "x".repeat(64)});
    let (code, status) = raw.post(CMS, &long_label).await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.labels");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .ends_with("must be no more than 63 characters"));

    let mut two_controllers = cm("owned");
    two_controllers["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "2", "controller": true}
    ]);
    let (code, status) = raw.post(CMS, &two_controllers).await;
    assert_eq!(code, 422);
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("Only one reference can have Controller set to true"));
    sim.shutdown().await;
}

#[tokio::test]
async fn foreground_deletion_deletecollection_and_watch_timeouts() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let (_, owner) = raw.post(CMS, &cm("owner")).await;
    let mut child = cm("child");
    child["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    raw.post(CMS, &child).await;
    let (code, _) = raw
        .send(
            reqwest::Method::DELETE,
            &format!("{CMS}/owner"),
            "application/json",
            Some(json!({"propagationPolicy": "Foreground"}).to_string()),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(raw.get(&format!("{CMS}/child")).await.0, 404);

    for (name, tier) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
        let mut o = cm(name);
        o["metadata"]["labels"] = json!({"tier": tier});
        raw.post(CMS, &o).await;
    }
    let (code, deleted) = raw.delete(&format!("{CMS}?labelSelector=tier%3Dx")).await;
    assert_eq!(code, 200);
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2);
    let (_, left) = raw.get(CMS).await;
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["y1"]);

    // A watch with timeoutSeconds ends by itself after its initial events.
    let (code, body) = raw.get(&format!("{CMS}?watch=true&timeoutSeconds=1")).await;
    assert_eq!(code, 200);
    assert_eq!(body["type"], "ADDED");
    assert_eq!(body["object"]["metadata"]["name"], "y1");
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_merges_keyed_lists_per_element() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let apply = |manager: &str, containers: Value| {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "multi"},
            "spec": {"selector": {"matchLabels": {"app": "m"}},
                "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": containers}}}});
        let path = format!("{DEPLOYS}/multi?fieldManager={manager}");
        let raw = &raw;
        async move {
            raw.patch(&path, "application/apply-patch+yaml", &body)
                .await
        }
    };
    let (code, _) = apply("operator", json!([{"name": "bot", "image": "bot:1"}])).await;
    assert_eq!(code, 201);
    // Another manager adds its own container: both stay.
    let (code, d) = apply("injector", json!([{"name": "sidecar", "image": "side:1"}])).await;
    assert_eq!(code, 200, "{d}");
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bot", "sidecar"]);
    // Changing the other manager's element conflicts on exactly that field.
    let (code, status) = apply(
        "injector",
        json!([{"name": "sidecar", "image": "side:1"}, {"name": "bot", "image": "bot:2"}]),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"operator\": .spec.template.spec.containers[name=\"bot\"].image"
    );
    // The owner updates its container without touching the sidecar.
    let (code, d) = apply("operator", json!([{"name": "bot", "image": "bot:2"}])).await;
    assert_eq!(code, 200);
    let images: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["bot:2", "side:1"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn service_accounts_are_authorized_by_the_rbac_objects() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let bot = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        sim.service_account_client("default", "bot").await,
        "default",
    );
    match bot.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "configmaps is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
            );
        }
        other => panic!("an unbound service account must be forbidden, got {other:?}"),
    }

    let role = json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]});
    raw.post(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        &role,
    )
    .await;
    let binding = json!({"metadata": {"name": "bot-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "default"}]});
    raw.post(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        &binding,
    )
    .await;
    assert!(bot.list(&Default::default()).await.is_ok());
    let mut c = k8s_openapi::api::core::v1::ConfigMap::default();
    c.metadata.name = Some("nope".into());
    match bot.create(&Default::default(), &c).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden")),
        other => panic!("create is not granted, got {other:?}"),
    }
    let elsewhere = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        sim.service_account_client("default", "bot").await,
        "kube-system",
    );
    assert!(
        elsewhere.list(&Default::default()).await.is_err(),
        "a RoleBinding grants only its namespace"
    );

    // kubectl auth can-i asks the server (SelfSubjectAccessReview), here impersonating.
    let k = Kubectl::new(&sim);
    let yes = k
        .run(&[
            "auth",
            "can-i",
            "list",
            "configmaps",
            "-n",
            "default",
            "--as=system:serviceaccount:default:bot",
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    let no = k
        .run(&[
            "auth",
            "can-i",
            "delete",
            "configmaps",
            "-n",
            "default",
            "--as=system:serviceaccount:default:bot",
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert!(!no.status.success());

    // Only the admin may impersonate.
    let sa_token = sim.service_account_token("default", "bot");
    let r = raw
        .http
        .get(format!("{}{CMS}", raw.base))
        .bearer_auth(sa_token)
        .header("Impersonate-User", "kube-sim-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    sim.shutdown().await;
}

/// The RBAC API's escalation check, as the real server runs it: a user who may write
/// RoleBindings may bind a role only with `bind` on that role or holding everything it grants;
/// and an apply that creates its object needs `create` as well as `patch`.
#[tokio::test]
async fn binding_a_role_needs_bind_or_its_permissions_and_an_apply_that_creates_needs_create() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::api::{Patch, PatchParams};
    let sim = start().await;
    let raw = Raw::new(&sim);
    raw.post(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        &json!({"metadata": {"name": "tenant"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
    )
    .await;

    // A ClusterRole of one rule, bound to the ServiceAccount `default/op`.
    let grant_op = |name: &'static str, rule: Value| {
        let raw = &raw;
        async move {
            raw.post(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                &json!({"metadata": {"name": name}, "rules": [rule]}),
            )
            .await;
            raw.post(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                &json!({"metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]}),
            )
            .await;
        }
    };
    grant_op(
        "binder",
        json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["patch"]}),
    )
    .await;
    let op = sim.service_account_client("default", "op").await;
    let bindings = kube::Api::<RoleBinding>::namespaced(op, "default");
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "op-tenant", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tenant"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]}))
    .unwrap();
    let (params, patch) = (PatchParams::apply("op"), Patch::Apply(&binding));
    let apply = || bindings.patch("op-tenant", &params, &patch);
    let refused = |result: Result<RoleBinding, kube::Error>| match result {
        Err(kube::Error::Api(s)) if s.code == 403 => s.message,
        other => panic!("refused expected, got {other:?}"),
    };
    assert_eq!(
        refused(apply().await),
        "rolebindings.rbac.authorization.k8s.io \"op-tenant\" is forbidden: User \"system:serviceaccount:default:op\" cannot create resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"default\""
    );
    grant_op(
        "binder-create",
        json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]}),
    )
    .await;
    let message = refused(apply().await);
    assert!(
        message.starts_with("rolebindings.rbac.authorization.k8s.io \"op-tenant\" is forbidden: user \"system:serviceaccount:default:op\"")
            && message.contains("is attempting to grant RBAC permissions not currently held")
            && message.contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}"),
        "{message}"
    );
    grant_op(
        "bind-tenant",
        json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["tenant"]}),
    )
    .await;
    apply()
        .await
        .expect("bind on the role lets the binding through");
    sim.shutdown().await;
}

#[tokio::test]
async fn immutable_fields_of_built_in_kinds_are_refused() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let pvc = json!({"metadata": {"name": "rec"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "westeurope",
        "resources": {"requests": {"storage": "1Gi"}}}});
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    let (code, created) = raw.post(pvcs, &pvc).await;
    assert_eq!(code, 201);
    assert_eq!(created["status"]["phase"], "Bound");
    let (code, status) = raw
        .patch(
            &format!("{pvcs}/rec"),
            "application/merge-patch+json",
            &json!({"spec": {"storageClassName": "northeurope"}}),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "PersistentVolumeClaim \"rec\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );
    let (code, _) = raw
        .patch(
            &format!("{pvcs}/rec"),
            "application/merge-patch+json",
            &json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
        )
        .await;
    assert_eq!(code, 200);

    let mut frozen = cm("frozen");
    frozen["immutable"] = json!(true);
    raw.post(CMS, &frozen).await;
    let (code, status) = raw
        .patch(
            &format!("{CMS}/frozen"),
            "application/merge-patch+json",
            &json!({"data": {"k": "changed"}}),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "data");
    sim.shutdown().await;
}

#[tokio::test]
async fn resource_quotas_limit_object_counts_and_storage() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let quota = json!({"metadata": {"name": "tenant-quota"}, "spec": {"hard": {"services": "1", "count/deployments.apps": "1", "requests.storage": "3Gi"}}});
    assert_eq!(
        raw.post("/api/v1/namespaces/default/resourcequotas", &quota)
            .await
            .0,
        201
    );
    let svc = |name: &str| json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        raw.post("/api/v1/namespaces/default/services", &svc("one"))
            .await
            .0,
        201
    );
    let (code, status) = raw
        .post("/api/v1/namespaces/default/services", &svc("two"))
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "services \"two\" is forbidden: exceeded quota: tenant-quota, requested: services=1, used: services=1, limited: services=1"
    );
    assert_eq!(raw.post(DEPLOYS, &deployment("a")).await.0, 201);
    let (code, status) = raw.post(DEPLOYS, &deployment("b")).await;
    assert_eq!(code, 403);
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("count/deployments.apps=1"));

    let pvc = |name: &str, size: &str| json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    assert_eq!(raw.post(pvcs, &pvc("p1", "2Gi")).await.0, 201);
    let (code, status) = raw.post(pvcs, &pvc("p2", "2Gi")).await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "persistentvolumeclaims \"p2\" is forbidden: exceeded quota: tenant-quota, requested: requests.storage=2Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi"
    );
    assert_eq!(raw.post(pvcs, &pvc("p3", "1Gi")).await.0, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn aggregated_and_legacy_discovery_describe_the_same_resources() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let client = sim.client().await;
    let aggregated = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let legacy = kube::Discovery::new(client)
        .run()
        .await
        .expect("legacy discovery");
    for d in [&aggregated, &legacy] {
        let group = d.get("example.com").expect("the CRD's group is discovered");
        let (widget, caps) = group.recommended_kind("Widget").expect("Widget served");
        assert_eq!(widget.plural, "widgets");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(caps
            .subresources
            .iter()
            .any(|(r, _)| r.plural == "widgets/status" || r.plural == "status"));
        let core = d.get("").expect("core group");
        assert!(core.recommended_kind("ConfigMap").is_some());
    }
    sim.shutdown().await;
}

/// Change the schema of the Widgets' spec in their CRD.
async fn tighten_widget_spec(raw: &Raw, change: impl Fn(&mut Value)) {
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com";
    let (_, mut crd) = raw.get(path).await;
    change(&mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]);
    let (code, body) = raw.put(path, &crd).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn validation_ratchets_values_an_update_leaves_unchanged() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    install_widgets(&raw).await;
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "r"},
        "spec": {"size": 20, "color": "red", "label": "abcdefg"}});
    assert_eq!(raw.post(WIDGETS, &w).await.0, 201);
    let status =
        |ready: &str| json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}});
    let merge = "application/merge-patch+json";
    let widget = format!("{WIDGETS}/r");

    // Stricter schema: the stored size and label no longer pass.
    tighten_widget_spec(&raw, |spec| {
        spec["properties"]["size"]["maximum"] = json!(10);
        spec["properties"]["label"]["maxLength"] = json!(4);
    })
    .await;
    let (code, body) = raw
        .patch(&format!("{widget}/status"), merge, &status("True"))
        .await;
    assert_eq!(
        code, 200,
        "a status write leaves the spec as it was: {body}"
    );
    let (code, body) = raw
        .patch(&widget, merge, &json!({"spec": {"tags": ["x"]}}))
        .await;
    assert_eq!(code, 200, "another spec field changes: {body}");
    let (code, body) = raw
        .patch(&widget, merge, &json!({"spec": {"label": "abcdefgh"}}))
        .await;
    assert_eq!(code, 422, "a changed value is checked: {body}");
    assert_eq!(
        body["message"],
        "Widget.example.com \"r\" is invalid: spec.label: Too long: may not be more than 4 bytes"
    );

    // A stricter CEL rule: writes leaving the spec alone pass, changing it runs the rule.
    tighten_widget_spec(&raw, |spec| {
        spec["x-kubernetes-validations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"rule": "self.size <= 10", "message": "at most 10"}));
    })
    .await;
    let (code, body) = raw
        .patch(&format!("{widget}/status"), merge, &status("False"))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = raw
        .patch(&widget, merge, &json!({"metadata": {"labels": {"a": "b"}}}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = raw
        .patch(&widget, merge, &json!({"spec": {"tags": ["y"]}}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Widget.example.com \"r\" is invalid: spec: Invalid value: \"object\": at most 10"
    );
    sim.shutdown().await;
}
