//! Protobuf bodies against the simulator: the real `kubectl`'s generators (which send built-in
//! kinds as `application/vnd.kubernetes.protobuf`), and raw requests for the negotiation and
//! the answers to bodies that cannot be read.

mod kube_support;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use kube_support::*;
use prost::Message;
use serde_json::{json, Value};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

#[tokio::test]
async fn kubectl_generators_label_and_annotate_work() {
    let sim = start().await;
    let k = Kubectl::new(&sim);
    assert_eq!(
        k.ok(&["create", "namespace", "ops"]).await.trim(),
        "namespace/ops created"
    );
    k.ok(&[
        "-n",
        "ops",
        "create",
        "secret",
        "generic",
        "entra",
        "--from-literal=client-secret=s3cr3t-value",
        "--from-literal=tenant=contoso",
    ])
    .await;
    k.ok(&[
        "-n",
        "ops",
        "create",
        "configmap",
        "settings",
        "--from-literal=region=westeurope",
    ])
    .await;
    k.ok(&["-n", "ops", "create", "serviceaccount", "bot"])
        .await;
    k.ok(&[
        "-n",
        "ops",
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=8080",
    ])
    .await;
    assert_eq!(
        k.ok(&["-n", "ops", "label", "configmap", "settings", "team=media"])
            .await
            .trim(),
        "configmap/settings labeled"
    );
    assert_eq!(
        k.ok(&["-n", "ops", "annotate", "secret", "entra", "owner=ops"])
            .await
            .trim(),
        "secret/entra annotated"
    );

    let ns = sim
        .get_json("v1", "Namespace", "", "ops")
        .expect("namespace stored");
    assert_eq!(ns["status"]["phase"], "Active");
    let secret = sim
        .get_json("v1", "Secret", "ops", "entra")
        .expect("secret stored");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["client-secret"], "czNjcjN0LXZhbHVl");
    assert_eq!(secret["data"]["tenant"], "Y29udG9zbw==");
    assert_eq!(secret["metadata"]["annotations"]["owner"], "ops");
    assert!(secret["metadata"].get("generateName").is_none(), "{secret}");
    let cm = sim.get_json("v1", "ConfigMap", "ops", "settings").unwrap();
    assert_eq!(cm["data"], json!({"region": "westeurope"}));
    assert_eq!(cm["metadata"]["labels"], json!({"team": "media"}));
    assert!(sim.get_json("v1", "ServiceAccount", "ops", "bot").is_some());
    let d = sim.get_json("apps/v1", "Deployment", "ops", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"][0]["containerPort"], 8080);

    // kubectl reads them back (its typed reads ask for protobuf first) and waits on them.
    let got = k
        .ok(&[
            "-n",
            "ops",
            "get",
            "secret",
            "entra",
            "-o",
            "jsonpath={.data.tenant}",
        ])
        .await;
    assert_eq!(got, "Y29udG9zbw==");
    k.ok(&[
        "-n",
        "ops",
        "wait",
        "deployment/web",
        "--for=condition=Available",
        "--timeout=20s",
    ])
    .await;
    assert_eq!(
        k.ok(&["auth", "can-i", "create", "secrets"]).await.trim(),
        "yes"
    );
    // A generated object that exists already: the API server's conflict, as kubectl prints it.
    let err = k
        .fails(&["-n", "ops", "create", "configmap", "settings"])
        .await;
    assert!(
        err.contains("configmaps \"settings\" already exists"),
        "{err}"
    );
    // The secret's value shows nowhere in what kubectl printed about the secret's writes.
    assert!(!err.contains("s3cr3t"));
    assert_eq!(
        k.ok(&["-n", "ops", "delete", "secret", "entra"])
            .await
            .trim(),
        "secret \"entra\" deleted"
    );
    sim.shutdown().await;
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat()
}

fn config_map(name: &str) -> Vec<u8> {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    envelope("v1", "ConfigMap", cm.encode_to_vec())
}

struct Reply {
    code: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The protobuf envelope's kind and message.
    fn protobuf(&self) -> (String, Vec<u8>) {
        assert_eq!(self.content_type, PROTOBUF);
        let rest = self
            .body
            .strip_prefix(b"k8s\0")
            .expect("the protobuf magic");
        let unknown = Unknown::decode(rest).expect("an envelope");
        (
            unknown.type_meta.unwrap().kind.unwrap(),
            unknown.raw.unwrap_or_default(),
        )
    }
}

async fn send(
    raw: &Raw,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) -> Reply {
    let resp = raw
        .http
        .request(method, format!("{}{path}", raw.base))
        .bearer_auth(&raw.token)
        .header("Content-Type", content_type)
        .header("Accept", accept)
        .body(body)
        .send()
        .await
        .expect("sent");
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Reply {
        code,
        content_type,
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn answers_protobuf_when_asked_first_and_json_otherwise() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let post = reqwest::Method::POST;
    let created = send(
        &raw,
        post,
        CONFIGMAPS,
        PROTOBUF,
        "application/vnd.kubernetes.protobuf, */*",
        config_map("a"),
    )
    .await;
    assert_eq!(created.code, 201);
    let (kind, message) = created.protobuf();
    assert_eq!(kind, "ConfigMap");
    let cm = core::ConfigMap::decode(&message[..]).unwrap();
    let metadata = cm.metadata.unwrap();
    assert_eq!(metadata.name.as_deref(), Some("a"));
    assert!(metadata.uid.is_some_and(|u| !u.is_empty()));
    assert_eq!(cm.data.get("k").map(String::as_str), Some("v"));

    let get = reqwest::Method::GET;
    let json_first = send(
        &raw,
        get.clone(),
        &format!("{CONFIGMAPS}/a"),
        "",
        "application/json, application/vnd.kubernetes.protobuf",
        vec![],
    )
    .await;
    assert_eq!(json_first.content_type, "application/json");
    assert_eq!(json_first.json()["data"], json!({"k": "v"}));

    let list = send(&raw, get.clone(), CONFIGMAPS, "", PROTOBUF, vec![]).await;
    let (kind, message) = list.protobuf();
    assert_eq!(kind, "ConfigMapList");
    let list = core::ConfigMapList::decode(&message[..]).unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.unwrap().resource_version.is_some());

    // An error is a protobuf Status too.
    let missing = send(
        &raw,
        get.clone(),
        &format!("{CONFIGMAPS}/nope"),
        "",
        PROTOBUF,
        vec![],
    )
    .await;
    assert_eq!(missing.code, 404);
    let (kind, message) = missing.protobuf();
    assert_eq!(kind, "Status");
    let status = meta::Status::decode(&message[..]).unwrap();
    assert_eq!(status.reason.as_deref(), Some("NotFound"));
    assert_eq!(status.code, Some(404));

    // A protobuf DeleteOptions body (what a typed client's delete sends) is read: dry run.
    let opts = meta::DeleteOptions {
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let deleted = send(
        &raw,
        reqwest::Method::DELETE,
        &format!("{CONFIGMAPS}/a"),
        PROTOBUF,
        PROTOBUF,
        envelope("v1", "DeleteOptions", opts.encode_to_vec()),
    )
    .await;
    assert_eq!(deleted.code, 200);
    assert!(
        sim.get_json("v1", "ConfigMap", "default", "a").is_some(),
        "a dry run deletes nothing"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bodies_that_cannot_be_read_get_the_servers_answer_and_create_nothing() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let post = reqwest::Method::POST;
    // No magic: a 400 Status, in JSON for a client that did not ask for protobuf.
    let r = send(
        &raw,
        post.clone(),
        CONFIGMAPS,
        PROTOBUF,
        "application/json",
        b"{\"metadata\":{\"name\":\"x\"}}".to_vec(),
    )
    .await;
    assert_eq!(r.code, 400);
    let status = r.json();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("BadRequest"))
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("does not appear to be a protobuf message"),
        "{status}"
    );

    // A message cut short.
    let mut cut = config_map("x");
    cut.truncate(cut.len() - 3);
    let r = send(
        &raw,
        post.clone(),
        CONFIGMAPS,
        PROTOBUF,
        "application/json",
        cut,
    )
    .await;
    assert_eq!(r.code, 400, "{}", String::from_utf8_lossy(&r.body));

    // Another kind than the URL's.
    let secret = envelope("v1", "Secret", core::Secret::default().encode_to_vec());
    let r = send(
        &raw,
        post.clone(),
        CONFIGMAPS,
        PROTOBUF,
        "application/json",
        secret,
    )
    .await;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.json()["message"],
        "the kind in the data (Secret) does not match the expected kind (ConfigMap)"
    );

    // CBOR is not spoken.
    let r = send(
        &raw,
        post.clone(),
        CONFIGMAPS,
        "application/cbor",
        "application/json",
        vec![0xa0],
    )
    .await;
    assert_eq!(r.code, 415);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");

    // Custom resources have no protobuf form: 415 listing JSON and YAML only.
    install_widgets(&raw).await;
    let r = send(
        &raw,
        post,
        "/apis/example.com/v1/namespaces/default/widgets",
        PROTOBUF,
        "application/json",
        envelope("example.com/v1", "Widget", vec![]),
    )
    .await;
    assert_eq!(r.code, 415);
    assert_eq!(
        r.json()["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
    let (_, list) = raw.get(CONFIGMAPS).await;
    assert_eq!(list["items"], json!([]), "nothing was created");
    sim.shutdown().await;
}

/// The field map of the protobuf messages is what the generator makes of the k8s-pb and
/// k8s-openapi versions in Cargo.lock.
#[test]
fn the_protobuf_field_map_is_generated_from_the_locked_crates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("python3")
        .args(["sim/tools/gen_protobuf_fields.py", "--check"])
        .current_dir(&root)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
