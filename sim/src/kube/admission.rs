//! What the real server's per-kind strategies do on every write of a built-in object:
//! metadata validation (names, labels, owner references) and the defaults and rules of the
//! built-in kinds the operator uses.

use base64::Engine;
use serde_json::{json, Value};

use super::error::{go_quote, FieldError, FieldErrorKind};
use super::resources::ResourceType;
use super::schema;
use super::selectors::{label_selector_object_matches, labels_of};

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

pub fn validate_name(rt: &ResourceType, name: &str) -> Option<FieldError> {
    let label = matches!(rt.kind.as_str(), "Namespace" | "Service");
    let (re, max, what) = if label {
        (DNS1123_LABEL, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    } else {
        (DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    };
    if name.len() > max {
        return Some(FieldError::invalid(
            "metadata.name",
            &json!(name),
            format!("must be no more than {max} characters"),
        ));
    }
    let ok = schema::regex(re).map(|r| r.is_match(name)).unwrap_or(false);
    (!ok).then(|| FieldError::invalid("metadata.name", &json!(name), what))
}

const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
const QUALIFIED_NAME: &str = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$";

/// Labels and owner references, as `ValidateObjectMeta` checks them.
pub fn validate_metadata(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let value_re = schema::regex(LABEL_VALUE).expect("valid regex");
    let name_re = schema::regex(QUALIFIED_NAME).expect("valid regex");
    for (key, value) in object["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        if name.len() > 63
            || !name_re.is_match(name)
            || prefix.is_some_and(|p| p.is_empty() || p.len() > 253)
        {
            errors.push(FieldError::invalid(
                "metadata.labels",
                &json!(key),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let v = value.as_str().unwrap_or_default();
        if v.len() > 63 {
            errors.push(FieldError::invalid(
                "metadata.labels",
                value,
                "must be no more than 63 characters",
            ));
        } else if !value_re.is_match(v) {
            errors.push(FieldError::invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
    let refs = object["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in &refs {
        for (field, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if r[field].as_str().unwrap_or_default().is_empty() {
                errors.push(FieldError::invalid(
                    format!("metadata.ownerReferences.{field}"),
                    &json!(""),
                    format!("{what} must not be empty"),
                ));
            }
        }
    }
    if refs
        .iter()
        .filter(|r| r["controller"] == json!(true))
        .count()
        > 1
    {
        errors.push(FieldError::invalid(
            "metadata.ownerReferences",
            &json!(refs),
            "Only one reference can have Controller set to true",
        ));
    }
    errors
}

/// Defaults and validation of the built-in kinds, after their real strategies.
pub fn builtin_admission(
    rt: &ResourceType,
    old: Option<&Value>,
    o: &mut Value,
    errors: &mut Vec<FieldError>,
) {
    let creating = old.is_none();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = meta_str(o, "name").to_string();
            o["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            if o["spec"]["finalizers"].is_null() {
                o["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if o["status"]["phase"].is_null() {
                o["status"]["phase"] = json!("Active");
            }
        }
        ("", "Secret") => {
            if o["type"].is_null() {
                o["type"] = json!("Opaque");
            }
            if let Some(string_data) = o
                .get("stringData")
                .cloned()
                .and_then(|s| s.as_object().cloned())
            {
                for (k, v) in string_data {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    o["data"][k] = json!(encoded);
                }
                o.as_object_mut().expect("object").remove("stringData");
            }
            if let (Some(old), false) = (old, creating) {
                if old["type"] != o["type"] {
                    errors.push(FieldError::invalid(
                        "type",
                        &o["type"],
                        "field is immutable",
                    ));
                }
            }
            immutable_data(old, o, errors);
        }
        ("", "ConfigMap") => immutable_data(old, o, errors),
        ("", "Service") => {
            let spec = &mut o["spec"];
            if spec["type"].is_null() {
                spec["type"] = json!("ClusterIP");
            }
            if spec["sessionAffinity"].is_null() {
                spec["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                    if p["targetPort"].is_null() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            let ip = match old {
                Some(old) => old["spec"]["clusterIP"].clone(),
                None if spec["clusterIP"] == "None" => json!("None"),
                None => {
                    let b = uuid::Uuid::new_v4();
                    let b = b.as_bytes();
                    json!(format!("10.96.{}.{}", b[0], b[1].max(1)))
                }
            };
            spec["clusterIP"] = ip.clone();
            spec["clusterIPs"] = json!([ip]);
            if spec["ipFamilies"].is_null() {
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
            if spec["internalTrafficPolicy"].is_null() {
                spec["internalTrafficPolicy"] = json!("Cluster");
            }
            if o["status"].is_null() {
                o["status"] = json!({"loadBalancer": {}});
            }
        }
        ("", "PersistentVolumeClaim") => {
            if o["spec"]["volumeMode"].is_null() {
                o["spec"]["volumeMode"] = json!("Filesystem");
            }
            if let Some(old) = old {
                // Only the requested resources may change once a claim exists.
                let frozen = |v: &Value| {
                    let mut spec = v["spec"].clone();
                    if let Some(m) = spec.as_object_mut() {
                        m.remove("resources");
                        m.remove("volumeAttributesClassName");
                    }
                    spec
                };
                if frozen(old) != frozen(o) {
                    errors.push(FieldError::forbidden(
                        "spec",
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    ));
                }
            }
            if creating {
                let storage = o["spec"]["resources"]["requests"]["storage"].clone();
                o["status"] = json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"], "capacity": {"storage": storage}});
            }
        }
        ("", "ResourceQuota") if o["status"].is_null() || creating => {
            let hard = o["spec"]["hard"].clone();
            let used: serde_json::Map<String, Value> = hard
                .as_object()
                .map(|m| m.keys().map(|k| (k.clone(), json!("0"))).collect())
                .unwrap_or_default();
            o["status"] = json!({"hard": hard, "used": used});
        }
        ("events.k8s.io", "Event") => {
            for field in [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
            ] {
                if o[field].is_null() || o[field] == "" {
                    errors.push(FieldError::required(field, ""));
                }
            }
            for (field, max) in [("note", 1024), ("reason", 128), ("action", 128)] {
                if o[field].as_str().is_some_and(|v| v.len() > max) {
                    errors.push(FieldError {
                        field: field.into(),
                        kind: FieldErrorKind::TooLong { max: max as u64 },
                    });
                }
            }
            if !matches!(o["type"].as_str(), Some("Normal") | Some("Warning")) {
                errors.push(FieldError {
                    field: "type".into(),
                    kind: FieldErrorKind::NotSupported {
                        value: super::error::go_value(&o["type"]),
                        supported: vec!["Normal".into(), "Warning".into()],
                    },
                });
            }
        }
        ("apps", "Deployment") => deployment_admission(old, o, errors),
        ("apps", "StatefulSet") => super::workloads::stateful_set_admission(old, o, errors),
        ("", "Pod") => super::workloads::pod_os_rules(&o["spec"], "spec", errors),
        _ => {}
    }
    if rt.kind == "Service" {
        super::workloads::service_node_ports(old, o);
    }
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data, and stay immutable.
fn immutable_data(old: Option<&Value>, o: &Value, errors: &mut Vec<FieldError>) {
    let Some(old) = old else {
        return;
    };
    if old["immutable"] != json!(true) {
        return;
    }
    if o["immutable"] != json!(true) {
        errors.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in ["data", "binaryData"] {
        if old[field] != o[field] {
            errors.push(FieldError::forbidden(
                field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

fn deployment_admission(old: Option<&Value>, o: &mut Value, errors: &mut Vec<FieldError>) {
    let spec = &mut o["spec"];
    if spec["replicas"].is_null() {
        spec["replicas"] = json!(1);
    }
    if spec["revisionHistoryLimit"].is_null() {
        spec["revisionHistoryLimit"] = json!(10);
    }
    if spec["progressDeadlineSeconds"].is_null() {
        spec["progressDeadlineSeconds"] = json!(600);
    }
    if spec["strategy"].is_null() {
        spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
    }
    template_admission(old, o, errors);
}

/// The pod template of a workload (Deployment, StatefulSet): the pod defaults, the selector
/// matching the template's labels (and immutable), containers named with an image, and the
/// rules of the pod's OS.
pub(super) fn template_admission(old: Option<&Value>, o: &mut Value, errors: &mut Vec<FieldError>) {
    let pod = &mut o["spec"]["template"]["spec"];
    for (field, default) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        if pod[field].is_null() {
            pod[field] = default;
        }
    }
    if let Some(containers) = pod["containers"].as_array_mut() {
        for c in containers {
            if c["terminationMessagePath"].is_null() {
                c["terminationMessagePath"] = json!("/dev/termination-log");
            }
            if c["terminationMessagePolicy"].is_null() {
                c["terminationMessagePolicy"] = json!("File");
            }
            if c["imagePullPolicy"].is_null() {
                let image = c["image"].as_str().unwrap_or_default();
                let tag_latest = !image.rsplit('/').next().unwrap_or_default().contains(':')
                    || image.ends_with(":latest");
                c["imagePullPolicy"] = json!(if tag_latest { "Always" } else { "IfNotPresent" });
            }
            if let Some(ports) = c["ports"].as_array_mut() {
                for p in ports {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                }
            }
            if c["resources"].is_null() {
                c["resources"] = json!({});
            }
        }
    }
    let spec = &o["spec"];
    if spec["selector"].is_null() {
        errors.push(FieldError::required("spec.selector", ""));
    } else {
        let labels = labels_of(&json!({"metadata": spec["template"]["metadata"]}));
        if !label_selector_object_matches(&spec["selector"], &labels) {
            let shown: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            errors.push(
                FieldError::invalid(
                    "spec.template.metadata.labels",
                    &Value::Null,
                    "`selector` does not match template `labels`",
                )
                .with_raw_value(&format!("map[string]string{{{}}}", shown.join(", "))),
            );
        }
        if let Some(old) = old {
            if old["spec"]["selector"] != spec["selector"] {
                errors.push(
                    FieldError::invalid("spec.selector", &Value::Null, "field is immutable")
                        .with_raw_value("v1.LabelSelector{...}"),
                );
            }
        }
    }
    match spec["template"]["spec"]["containers"].as_array() {
        Some(c) if !c.is_empty() => {
            for (i, c) in c.iter().enumerate() {
                if c["name"].as_str().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required(
                        format!("spec.template.spec.containers[{i}].name"),
                        "",
                    ));
                }
                if c["image"].as_str().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required(
                        format!("spec.template.spec.containers[{i}].image"),
                        "",
                    ));
                }
            }
        }
        _ => errors.push(FieldError::required("spec.template.spec.containers", "")),
    }
    super::workloads::pod_os_rules(&spec["template"]["spec"], "spec.template.spec", errors);
}
