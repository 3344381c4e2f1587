use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
}

/// JSON → protobuf → JSON gives the object back.
fn round_trip(value: &serde_json::Value) -> serde_json::Value {
    let bytes = encode(value).expect("encodes");
    let expected = (
        value["apiVersion"].as_str().unwrap(),
        value["kind"].as_str().unwrap(),
    );
    decode(&bytes, expected).expect("decodes")
}

#[test]
fn a_secret_round_trips_with_its_bytes_in_base64() {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "ops", "labels": {"a": "b"},
                     "creationTimestamp": "2026-01-02T03:04:05Z", "resourceVersion": "7"},
        "type": "Opaque",
        "data": {"password": "aHVudGVyMg==", "empty": ""},
        "immutable": false,
    });
    assert_eq!(round_trip(&secret), secret);
}

#[test]
fn a_deployment_keeps_unions_quantities_embedded_structs_and_a_zero_pointer() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ops"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"checksum/config": "abc"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "app", "image": "nginx:1.27", "args": ["--x", ""],
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                        "env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": false}}}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}],
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
                }
            }
        }
    });
    assert_eq!(round_trip(&deployment), deployment);
}

#[test]
fn a_crd_schema_keeps_its_json_schema_unions_and_raw_defaults() {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {
                        "spec": {"type": "object", "default": {"size": 1},
                                 "additionalProperties": {"type": "string"},
                                 "x-kubernetes-validations": [{"rule": "self.size > 0"}]},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "open": {"type": "object", "additionalProperties": false},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                    }
                }}
            }]
        }
    });
    assert_eq!(round_trip(&crd), crd);
}

#[test]
fn lists_status_and_micro_times_round_trip() {
    let list = json!({
        "apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "12", "continue": "abc", "remainingItemCount": 3},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}],
    });
    assert_eq!(round_trip(&list), list);
    let status = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "secrets \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "secrets"}, "code": 404,
    });
    assert_eq!(round_trip(&status), status);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                 "renewTime": "2026-01-02T03:04:05.123456Z"},
    });
    assert_eq!(round_trip(&lease), lease);
}

#[test]
fn go_zero_values_are_left_out_like_omitempty() {
    // What Go writes for an empty ObjectMeta: empty strings and the zero time.
    let meta = meta::ObjectMeta {
        name: Some("n".into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        creation_timestamp: Some(meta::Time {
            seconds: Some(-62_135_596_800),
            nanos: Some(0),
        }),
        ..Default::default()
    };
    let config_map = api::core::v1::ConfigMap {
        metadata: Some(meta),
        ..Default::default()
    };
    let body = envelope("v1", "ConfigMap", config_map.encode_to_vec());
    let value = decode(&body, ("v1", "ConfigMap")).unwrap();
    assert_eq!(
        value,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}})
    );
}

#[test]
fn a_body_that_is_not_protobuf_or_not_the_kind_is_a_bad_request() {
    let e = decode(b"{\"kind\":\"Secret\"}", ("v1", "Secret")).unwrap_err();
    assert_eq!(e.code, 400);
    assert!(
        e.message
            .contains("does not appear to be a protobuf message"),
        "{}",
        e.message
    );

    let truncated = &envelope("v1", "Secret", vec![0x0a, 0x20, 1])[..];
    let e = decode(truncated, ("v1", "Secret")).unwrap_err();
    assert_eq!(e.code, 400, "{}", e.message);

    let e = decode(&envelope("v1", "ConfigMap", vec![]), ("v1", "Secret")).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            400,
            "the kind in the data (ConfigMap) does not match the expected kind (Secret)"
        )
    );
    let e = decode(&envelope("apps/v1", "Secret", vec![]), ("v1", "Secret")).unwrap_err();
    assert_eq!(
        e.message,
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
}

#[test]
fn a_bad_value_names_the_field() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "hunter2!"}});
    let e = encode(&secret).unwrap_err();
    assert_eq!(e.code, 500);
    assert!(
        e.message.ends_with("data[k]: illegal base64 data"),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("hunter") && !e.message.contains('!'),
        "the value stays out: {}",
        e.message
    );
    let deployment =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "two"}});
    let e = encode(&deployment).unwrap_err();
    assert!(
        e.message
            .contains("spec.replicas: expected a 32-bit integer"),
        "{}",
        e.message
    );
}

#[test]
fn custom_kinds_have_no_protobuf_form() {
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    assert!(!encodable(&widget));
    assert_eq!(encode(&widget).unwrap_err().code, 406);
}

#[test]
fn negotiation_reads_the_first_accepted_type() {
    assert!(wanted("application/vnd.kubernetes.protobuf, */*"));
    assert!(wanted(
        "application/vnd.kubernetes.protobuf;q=1,application/json"
    ));
    assert!(!wanted(
        "application/json, application/vnd.kubernetes.protobuf"
    ));
    assert!(!wanted(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
    ));
    assert!(!wanted(""));
}

#[test]
fn durations_read_and_write_go_text() {
    for (text, nanos) in [
        ("1h2m3s", 3_723_000_000_000i64),
        ("1.5s", 1_500_000_000),
        ("-2m0s", -120_000_000_000),
        ("0s", 0),
    ] {
        let d = meta::Duration::from_json(&json!(text), "d").unwrap();
        assert_eq!(d.duration, Some(nanos), "{text}");
        assert_eq!(d.to_json("d").unwrap(), json!(text));
    }
    assert!(meta::Duration::from_json(&json!("soon"), "d").is_err());
}
