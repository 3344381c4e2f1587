//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Field sets are tracked as leaf paths (maps are recursed, lists and scalars are atomic
//! leaves); that is the simplification of structured-merge-diff used here. Ownership moves,
//! conflicts and the removal of fields an applier stops sending follow the real server.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::error::ApiError;

pub type FieldPath = Vec<String>;

/// Which part of an object a request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main endpoint; `status` is excluded when the resource has a status subresource.
    Main { exclude_status: bool },
    /// The `/status` subresource.
    Status,
}

impl Scope {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::Main { .. } => None,
        }
    }
}

const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The leaf paths an object sets, within a scope.
pub fn fields_of(object: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        let included = match scope {
            Scope::Status => key == "status",
            Scope::Main { exclude_status } => {
                !(key == "apiVersion" || key == "kind" || (exclude_status && key == "status"))
            }
        };
        if !included {
            continue;
        }
        if key == "metadata" {
            if let Some(meta) = value.as_object() {
                for (mk, mv) in meta {
                    if !SYSTEM_METADATA.contains(&mk.as_str()) {
                        collect(mv, vec!["metadata".into(), mk.clone()], &mut out);
                    }
                }
            }
        } else {
            collect(value, vec![key.clone()], &mut out);
        }
    }
    out
}

fn collect(value: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        // An empty map sets nothing by itself.
        Value::Object(map) => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(v, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| v.get(k))
}

fn remove_at(object: &mut Value, path: &[String]) {
    if let Some((last, parents)) = path.split_last() {
        let mut cur = object;
        for k in parents {
            match cur.get_mut(k) {
                Some(next) => cur = next,
                None => return,
            }
        }
        if let Some(map) = cur.as_object_mut() {
            map.remove(last);
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `.spec.replicas`
pub fn path_string(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: BTreeSet<FieldPath>,
}

impl Entry {
    fn identity(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            e["subresource"] = json!(sub);
        }
        e
    }
}

fn encode(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for k in path {
            node = node
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
        }
    }
    Value::Object(root)
}

fn decode(node: &Value, prefix: FieldPath, out: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&String, &Value)> = node
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect())
        .unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    for (k, v) in children {
        let name = k.strip_prefix("f:").unwrap_or(k).to_string();
        let mut p = prefix.clone();
        p.push(name);
        decode(v, p, out);
    }
}

fn entries_of(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let mut fields = BTreeSet::new();
                    decode(&e["fieldsV1"], Vec::new(), &mut fields);
                    Entry {
                        manager: e["manager"].as_str().unwrap_or_default().to_string(),
                        operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                        time: e["time"].as_str().unwrap_or_default().to_string(),
                        subresource: e["subresource"].as_str().map(String::from),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_entries(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| e.to_json())
        .collect();
    if list.is_empty() {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn entry_mut<'a>(
    entries: &'a mut Vec<Entry>,
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) -> &'a mut Entry {
    let i = match entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.subresource.as_deref() == subresource
    }) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(String::from),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.time = now.to_string();
    e.api_version = api_version.to_string();
    e
}

/// Record a non-apply write (create, update, patch) by `manager`: it takes over every field
/// it changed, and the other managers lose those.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    scope: Scope,
    now: &str,
) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let new_fields = fields_of(new, scope);
    let old_fields = old.map(|o| fields_of(o, scope)).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_fields
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<FieldPath> = old_fields.difference(&new_fields).cloned().collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| overlaps(c, f)));
    }
    if !changed.is_empty() {
        let sub = scope.subresource();
        let entry = entry_mut(&mut entries, manager, "Update", api_version, sub, now);
        entry.fields.extend(changed);
    }
    store_entries(new, entries);
}

/// Deep-merge an applied configuration into the live object: maps merge, everything else is
/// replaced by the applied value.
fn merge(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                match l.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (absent: the object is created).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    scope: Scope,
    now: &str,
) -> Result<Value, ApiError> {
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = live.map(entries_of).unwrap_or_default();
    let applied_fields = fields_of(applied, scope);
    let mut candidate = base.clone();
    merge(&mut candidate, &strip_system(applied, scope));

    let sub = scope.subresource();
    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        let mut lost = Vec::new();
        for owned in &e.fields {
            let touched = applied_fields.iter().any(|p| overlaps(p, owned));
            if touched && value_at(&base, owned) != value_at(&candidate, owned) {
                conflicts.push((e.identity(), owned.clone()));
                lost.push(owned.clone());
            }
        }
        if force {
            for l in lost {
                e.fields.remove(&l);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }

    let previously_applied: BTreeSet<FieldPath> = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for gone in previously_applied.difference(&applied_fields) {
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == manager && e.operation == "Apply")
                && e.fields.iter().any(|f| overlaps(f, gone))
        });
        let still_applied = applied_fields.iter().any(|p| p.starts_with(gone));
        if !owned_elsewhere && !still_applied {
            remove_at(&mut candidate, gone);
        }
    }
    let entry = entry_mut(&mut entries, manager, "Apply", api_version, sub, now);
    entry.fields = applied_fields;
    store_entries(&mut candidate, entries);
    Ok(candidate)
}

fn strip_system(applied: &Value, scope: Scope) -> Value {
    let mut v = applied.clone();
    if let Some(map) = v.as_object_mut() {
        match scope {
            Scope::Status => map
                .retain(|k, _| matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata")),
            Scope::Main {
                exclude_status: true,
            } => {
                map.remove("status");
            }
            Scope::Main { .. } => {}
        }
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| {
                !SYSTEM_METADATA.contains(&k.as_str()) || k == "name" || k == "namespace"
            });
            if scope == Scope::Status {
                meta.retain(|k, _| k == "name" || k == "namespace");
            }
        }
    }
    v
}

fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let message = if let [(who, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            path_string(path)
        )
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for (_, p) in conflicts.iter().filter(|(w, _)| w == m) {
                lines.push(format!("- {}", path_string(p)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": path_string(p)})
        })
        .collect();
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(json!({"causes": causes}));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main {
        exclude_status: true,
    };
    const T: &str = "2026-01-01T00:00:00Z";

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let mut live = cm(json!({"a": "1"}));
        record_update(None, &mut live, "kubectl-edit", "v1", MAIN, T);
        let err = apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            "op",
            false,
            "v1",
            MAIN,
            T,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        let forced = apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            "op",
            true,
            "v1",
            MAIN,
            T,
        )
        .unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["op"]);
    }

    #[test]
    fn same_value_is_shared_and_dropped_fields_are_removed() {
        let first = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            "op",
            false,
            "v1",
            MAIN,
            T,
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &cm(json!({"a": "1"})),
            "other",
            false,
            "v1",
            MAIN,
            T,
        )
        .unwrap();
        let third = apply(Some(&second), &cm(json!({})), "op", false, "v1", MAIN, T).unwrap();
        // "a" is still owned by "other"; "b" was only op's and goes away.
        assert_eq!(third["data"], json!({"a": "1"}));
    }
}
