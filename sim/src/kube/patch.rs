//! PATCH bodies other than server-side apply: JSON patch (RFC 6902) and JSON merge patch
//! (RFC 7386) through the `json-patch` crate, and strategic merge patch for built-in kinds.

use serde_json::{Map, Value};

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let ct = content_type.split(';').next().unwrap_or_default().trim();
        match ct {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = current.clone();
    // The real server's JSON patch treats a missing member as null in a "test" operation
    // (kube-runtime's finalizer helper relies on it); json-patch reports a bad pointer instead.
    let patch = json_patch::Patch(
        patch
            .0
            .into_iter()
            .filter(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    !(t.value.is_null() && current.pointer(t.path.as_str()).is_none())
                }
                _ => true,
            })
            .collect(),
    );
    json_patch::patch(&mut doc, &patch).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })?;
    Ok(doc)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = current.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

/// Strategic merge patch: like a merge patch, except that lists with a merge key are merged
/// element by element, primitive "merge" lists are unioned, and the `$patch`,
/// `$deleteFromPrimitiveList/…`, `$setElementOrder/…` and `$retainKeys` directives apply.
pub fn strategic_merge_patch(current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("patch must be a JSON object"));
    }
    let mut doc = current.clone();
    merge_value(&mut doc, &patch, &[]);
    Ok(doc)
}

/// The merge key of a list field, from the Go types' `patchMergeKey` tags.
pub fn merge_key(path: &[String], field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases" => match field {
            "hostAliases" => "ip",
            _ => "name",
        },
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "ports" => {
            if path
                .iter()
                .any(|p| p == "containers" || p == "initContainers")
            {
                "containerPort"
            } else {
                "port"
            }
        }
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Primitive lists that the real types merge as sets.
fn is_merge_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

fn merge_value(doc: &mut Value, patch: &Value, path: &[String]) {
    let Value::Object(patch_map) = patch else {
        *doc = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *doc = Value::Object(strip_directives(replaced));
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let doc_map = doc.as_object_mut().expect("object");
    // `$retainKeys`: fields of the live object not listed are cleared (e.g. a strategy's
    // `rollingUpdate` when the type becomes `Recreate`).
    if let Some(keep) = patch_map.get("$retainKeys").and_then(Value::as_array) {
        doc_map.retain(|k, _| keep.iter().any(|r| r == k));
    }
    for (key, pv) in patch_map {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (doc_map.get_mut(field), pv.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        let mut child_path = path.to_vec();
        child_path.push(key.clone());
        match pv {
            Value::Null => {
                doc_map.remove(key);
            }
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                doc_map.remove(key);
            }
            Value::Object(_) => {
                let entry = doc_map.entry(key.clone()).or_insert(Value::Null);
                merge_value(entry, pv, &child_path);
            }
            Value::Array(items) => {
                let merged = match (merge_key(path, key), doc_map.get(key)) {
                    (Some(mk), Some(Value::Array(existing))) => {
                        merge_keyed_list(existing, items, mk, &child_path)
                    }
                    (None, Some(Value::Array(existing))) if is_merge_primitive_list(key) => {
                        let mut out = existing.clone();
                        for item in items {
                            if !out.contains(item) {
                                out.push(item.clone());
                            }
                        }
                        out
                    }
                    _ => items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .map(strip)
                        .collect(),
                };
                doc_map.insert(key.clone(), Value::Array(merged));
            }
            other => {
                doc_map.insert(key.clone(), other.clone());
            }
        }
    }
}

fn strip(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        other => other,
    }
}

fn strip_directives(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k, strip(v)))
        .collect()
}

fn merge_keyed_list(existing: &[Value], patch: &[Value], key: &str, path: &[String]) -> Vec<Value> {
    let mut out: Vec<Value> = existing.to_vec();
    for item in patch {
        let Some(id) = item.get(key) else {
            continue;
        };
        let position = out.iter().position(|e| e.get(key) == Some(id));
        let directive = item.get("$patch").and_then(Value::as_str);
        match (position, directive) {
            (Some(i), Some("delete")) => {
                out.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => merge_value(&mut out[i], item, path),
            (None, _) => out.push(strip(item.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let current = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:2", "ports": [{"containerPort": 9090, "name": "metrics"}]},
            {"name": "b", "$patch": "delete"}
        ]}}}});
        let out = strategic_merge_patch(&current, patch.to_string().as_bytes()).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 1);
        assert_eq!(containers[0]["image"], "a:2");
        assert_eq!(containers[0]["ports"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let current = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = strategic_merge_patch(&current, patch.to_string().as_bytes()).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let current = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic_merge_patch(&current, patch.to_string().as_bytes()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn json_patch_test_for_null_passes_on_a_missing_member() {
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                        {"op":"add","path":"/metadata/finalizers","value":["f"]}]"#;
        let out = json_patch(&json!({"metadata": {}}), body).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["f"]));
        let err = json_patch(&json!({"metadata": {"finalizers": ["x"]}}), body).unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let out = merge_patch(
            &json!({"a": 1, "b": {"c": 2}}),
            br#"{"b": {"c": null}, "d": 3}"#,
        )
        .unwrap();
        assert_eq!(out, json!({"a": 1, "b": {}, "d": 3}));
    }
}
