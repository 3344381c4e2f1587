//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Field sets are tracked as leaf paths, like structured-merge-diff's: maps are recursed,
//! `listType: map` lists are recursed per element (`k:{"type":"Ready"}`), `listType: set`
//! lists own each value (`v:"x"`), other lists and scalars are atomic leaves. Ownership moves,
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

/// How a list merges, from the schema (`x-kubernetes-list-type`) or the built-in types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    /// Elements identified by these key fields.
    Map(Vec<String>),
    Set,
}

/// Knows the list type at a field path (field names only, no element segments).
pub trait ListTypes {
    fn list_type(&self, path: &[String]) -> ListType;
}

/// Who writes, where, and how the object's lists behave.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub scope: Scope,
    pub lists: &'a dyn ListTypes,
    pub now: &'a str,
}

fn is_element(segment: &str) -> bool {
    segment.starts_with("k:") || segment.starts_with("v:")
}

/// The field names of a path, without list element segments.
fn schema_path(path: &[String]) -> Vec<String> {
    path.iter().filter(|s| !is_element(s)).cloned().collect()
}

fn element_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut id = Map::new();
    for k in keys {
        id.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(id)))
}

/// The leaf paths an object sets, within a scope.
pub fn fields_of(object: &Value, scope: Scope, lists: &dyn ListTypes) -> BTreeSet<FieldPath> {
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
                        let mut path = vec!["metadata".to_string(), mk.clone()];
                        collect(mv, &mut path, lists, &mut out);
                    }
                }
            }
        } else {
            collect(value, &mut vec![key.clone()], lists, &mut out);
        }
    }
    out
}

/// `path` is the value's path; children extend it and put it back as it was, so that only
/// the leaves are copied.
fn collect(
    value: &Value,
    path: &mut FieldPath,
    lists: &dyn ListTypes,
    out: &mut BTreeSet<FieldPath>,
) {
    match value {
        // An empty map sets nothing by itself.
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                collect(v, path, lists, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match lists.list_type(&schema_path(path)) {
            ListType::Map(keys) => {
                for item in items {
                    match element_key(item, &keys) {
                        Some(id) => {
                            path.push(id);
                            collect(item, path, lists, out);
                            path.pop();
                        }
                        // An element without its keys: the list is owned as a whole.
                        None => {
                            out.insert(path.clone());
                        }
                    }
                }
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("v:{item}"));
                    out.insert(p);
                }
            }
            ListType::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Find the element a `k:`/`v:` segment names in a list.
fn element_index(list: &[Value], segment: &str) -> Option<usize> {
    if let Some(id) = segment.strip_prefix("k:") {
        let id: Map<String, Value> = serde_json::from_str(id).ok()?;
        list.iter()
            .position(|item| id.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else {
        let value: Value = serde_json::from_str(segment.strip_prefix("v:")?).ok()?;
        list.iter().position(|item| *item == value)
    }
}

fn step<'a>(v: &'a Value, segment: &str) -> Option<&'a Value> {
    if is_element(segment) {
        let list = v.as_array()?;
        list.get(element_index(list, segment)?)
    } else {
        v.get(segment)
    }
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| step(v, k))
}

/// Remove what a path names; an element left with nothing but its key fields goes too.
fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some((parent_last, _)) = parents.split_last() {
        if let Some(id) = parent_last.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(id).unwrap_or_default();
            if keys.contains_key(last) {
                // Key fields live and die with their element.
                return;
            }
        }
    }
    let mut cur = &mut *object;
    for k in parents {
        let next = if is_element(k) {
            match cur.as_array_mut() {
                Some(list) => match element_index(list, k) {
                    Some(i) => &mut list[i],
                    None => return,
                },
                None => return,
            }
        } else {
            match cur.get_mut(k) {
                Some(n) => n,
                None => return,
            }
        };
        cur = next;
    }
    if is_element(last) {
        if let Some(list) = cur.as_array_mut() {
            if let Some(i) = element_index(list, last) {
                list.remove(i);
            }
        }
    } else if let Some(map) = cur.as_object_mut() {
        map.remove(last);
        // A map left empty goes with its last field, as structured-merge-diff drops a map
        // whose fields the applier no longer sends (elements are handled below).
        if map.is_empty() && parents.last().is_some_and(|p| !is_element(p)) {
            remove_at(object, parents);
            return;
        }
    }
    // Drop a keyed element that now holds only its keys.
    if let Some((parent_last, grand)) = parents.split_last() {
        if let Some(id) = parent_last.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(id).unwrap_or_default();
            let only_keys = value_at(object, parents)
                .and_then(Value::as_object)
                .is_some_and(|m| m.keys().all(|k| keys.contains_key(k)));
            if only_keys {
                let mut element_path = grand.to_vec();
                element_path.push(parent_last.clone());
                remove_at(object, &element_path);
            }
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `.spec.replicas`, `.status.conditions[type="Ready"].status`, `.metadata.finalizers[="x"]`
pub fn path_string(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if let Some(id) = p.strip_prefix("k:") {
                let keys: Map<String, Value> = serde_json::from_str(id).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            } else if let Some(v) = p.strip_prefix("v:") {
                format!("[={v}]")
            } else {
                format!(".{p}")
            }
        })
        .collect()
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
    /// The entry's place in the `managedFields` it was read from, as long as that JSON is
    /// exactly what [`Entry::to_json`] would write for it (so it can be kept as it is).
    kept: Option<usize>,
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
    let paths: Vec<&FieldPath> = fields.iter().collect();
    encode_level(&paths, 0)
}

/// The `fieldsV1` node of `paths` (sorted, sharing their first `depth` segments): one member
/// per distinct segment at `depth`, each built once from the run of paths that share it.
fn encode_level(paths: &[&FieldPath], depth: usize) -> Value {
    let mut node = Map::new();
    let mut rest = paths;
    while let Some(first) = rest.first() {
        let Some(segment) = first.get(depth) else {
            rest = &rest[1..];
            continue;
        };
        let run = rest
            .iter()
            .take_while(|p| p.get(depth) == Some(segment))
            .count();
        let key = if is_element(segment) {
            segment.clone()
        } else {
            format!("f:{segment}")
        };
        // Paths are sorted, so the ones sharing this segment follow each other, and
        // distinct segments give distinct members (`k:`/`v:` stay, the rest gain `f:`).
        node.insert(key, encode_level(&rest[..run], depth + 1));
        rest = &rest[run..];
    }
    Value::Object(node)
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
                .enumerate()
                .map(|(i, e)| {
                    let mut fields = BTreeSet::new();
                    decode(&e["fieldsV1"], Vec::new(), &mut fields);
                    Entry {
                        kept: canonical_entry(e).then_some(i),
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

/// Is this `managedFields` entry what [`Entry::to_json`] writes for what it decodes to?
fn canonical_entry(e: &Value) -> bool {
    let Some(map) = e.as_object() else {
        return false;
    };
    let strings = ["manager", "operation", "apiVersion", "time"]
        .iter()
        .all(|k| map.get(*k).is_some_and(Value::is_string));
    strings
        && map.get("subresource").is_none_or(Value::is_string)
        && map.len() == 6 + usize::from(map.contains_key("subresource"))
        && map.get("fieldsType").and_then(Value::as_str) == Some("FieldsV1")
        && map.get("fieldsV1").is_some_and(canonical_fields)
}

/// Is this `fieldsV1` node what `encode` writes for what `decode` reads from it: objects all
/// the way down, members named `f:<field>` or by a list element (`k:…`, `v:…`)?
fn canonical_fields(node: &Value) -> bool {
    node.as_object().is_some_and(|members| {
        members.iter().all(|(k, v)| {
            let field = k.strip_prefix("f:").is_some_and(|name| !is_element(name));
            (field || is_element(k)) && canonical_fields(v)
        })
    })
}

/// Write the entries as the object's `managedFields`. `originals` is the list they were read
/// from, when the caller has it to give away: entries unchanged since keep their JSON
/// instead of being encoded again.
fn store_entries(object: &mut Value, entries: Vec<Entry>, mut originals: Vec<Value>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| match e.kept.and_then(|i| originals.get_mut(i)) {
            Some(original) if original["manager"].as_str() == Some(e.manager.as_str()) => {
                original.take()
            }
            _ => e.to_json(),
        })
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
                kept: None,
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.kept = None;
    e.time = now.to_string();
    e.api_version = api_version.to_string();
    e
}

/// Record a non-apply write (create, update, patch): the writer takes over every field it
/// changed, and the other managers lose those.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let new_fields = fields_of(new, w.scope, w.lists);
    let old_fields = old
        .map(|o| fields_of(o, w.scope, w.lists))
        .unwrap_or_default();
    // Without an old object every field the new one sets is a change (each path is found in
    // the object it was collected from).
    let changed: BTreeSet<FieldPath> = match old {
        None => new_fields.clone(),
        Some(o) => new_fields
            .iter()
            .filter(|p| value_at(o, p) != value_at(new, p))
            .cloned()
            .collect(),
    };
    let removed: BTreeSet<FieldPath> = old_fields.difference(&new_fields).cloned().collect();
    for e in entries.iter_mut() {
        let had = e.fields.len();
        e.fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| overlaps(c, f)));
        if e.fields.len() != had {
            e.kept = None;
        }
    }
    if !changed.is_empty() {
        let sub = w.scope.subresource();
        let entry = entry_mut(&mut entries, w.manager, "Update", w.api_version, sub, w.now);
        entry.fields.extend(changed);
    }
    store_entries(new, entries, Vec::new());
}

/// Deep-merge an applied configuration into the live object: maps merge, keyed lists merge
/// per element, sets are unioned, everything else is replaced by the applied value.
fn merge(live: &mut Value, applied: &Value, path: &mut FieldPath, lists: &dyn ListTypes) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                path.push(k.clone());
                match l.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge(existing, v, path, lists)
                    }
                    Some(existing) if existing.is_array() && v.is_array() => {
                        merge(existing, v, path, lists)
                    }
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(a)) => match lists.list_type(&schema_path(path)) {
            ListType::Map(keys) => {
                for item in a {
                    let found = element_key(item, &keys).and_then(|id| element_index(l, &id));
                    match found {
                        Some(i) => {
                            let id = element_key(item, &keys).unwrap_or_default();
                            path.push(id);
                            merge(&mut l[i], item, path, lists);
                            path.pop();
                        }
                        None => l.push(item.clone()),
                    }
                }
            }
            ListType::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListType::Atomic => *l = a.clone(),
        },
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply of `applied` onto `live` (absent: the object is created).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    w: &Writer,
) -> Result<Value, ApiError> {
    let (manager, scope) = (w.manager, w.scope);
    let empty = json!({});
    let base: &Value = live.unwrap_or(&empty);
    let mut entries = live.map(entries_of).unwrap_or_default();
    let applied_fields = fields_of(applied, scope, w.lists);
    let mut candidate = base.clone();
    merge(
        &mut candidate,
        &strip_system(applied, scope),
        &mut Vec::new(),
        w.lists,
    );

    let sub = scope.subresource();
    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        let mut lost = Vec::new();
        for owned in &e.fields {
            let touched = applied_fields.iter().any(|p| overlaps(p, owned));
            if touched && value_at(base, owned) != value_at(&candidate, owned) {
                conflicts.push((e.identity(), owned.clone()));
                lost.push(owned.clone());
            }
        }
        if force {
            for l in lost {
                if e.fields.remove(&l) {
                    e.kept = None;
                }
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
    let entry = entry_mut(&mut entries, manager, "Apply", w.api_version, sub, w.now);
    entry.fields = applied_fields;
    // The candidate is a copy of the live object: its managedFields are the ones the entries
    // were read from.
    let originals = match candidate
        .get_mut("metadata")
        .and_then(|m| m.get_mut("managedFields"))
    {
        Some(Value::Array(list)) => std::mem::take(list),
        _ => Vec::new(),
    };
    store_entries(&mut candidate, entries, originals);
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

    /// `status.conditions` is a map keyed by `type`, `metadata.finalizers` a set.
    struct TestLists;

    impl ListTypes for TestLists {
        fn list_type(&self, path: &[String]) -> ListType {
            match path.last().map(String::as_str) {
                Some("conditions") => ListType::Map(vec!["type".into()]),
                Some("finalizers") => ListType::Set,
                _ => ListType::Atomic,
            }
        }
    }

    fn by(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            scope: MAIN,
            lists: &TestLists,
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
    }

    fn managers(o: &Value) -> Vec<&str> {
        o["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let mut live = cm(json!({"a": "1"}));
        record_update(None, &mut live, &by("kubectl-edit"));
        let err = apply(Some(&live), &cm(json!({"a": "2"})), false, &by("op")).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        let forced = apply(Some(&live), &cm(json!({"a": "2"})), true, &by("op")).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        assert_eq!(managers(&forced), vec!["op"]);
    }

    #[test]
    fn same_value_is_shared_and_dropped_fields_are_removed() {
        let first = apply(None, &cm(json!({"a": "1", "b": "2"})), false, &by("op")).unwrap();
        let second = apply(Some(&first), &cm(json!({"a": "1"})), false, &by("other")).unwrap();
        let third = apply(Some(&second), &cm(json!({})), false, &by("op")).unwrap();
        // "a" is still owned by "other"; "b" was only op's and goes away.
        assert_eq!(third["data"], json!({"a": "1"}));
    }

    #[test]
    fn a_map_whose_fields_are_no_longer_applied_goes_too() {
        let obj = |spec: Value| json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": spec});
        let first = apply(
            None,
            &obj(json!({"keep": "1", "pending": {"days": 30, "at": "t"}})),
            false,
            &by("op"),
        )
        .unwrap();
        let second = apply(Some(&first), &obj(json!({"keep": "1"})), false, &by("op")).unwrap();
        assert_eq!(
            second["spec"],
            json!({"keep": "1"}),
            "no empty `pending: {{}}` is left"
        );
    }

    fn with_conditions(conditions: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"conditions": conditions}})
    }

    #[test]
    fn keyed_list_elements_are_owned_merged_and_removed_one_by_one() {
        let a = apply(
            None,
            &with_conditions(json!([{"type": "A", "status": "True"}])),
            false,
            &by("one"),
        )
        .unwrap();
        let ab = apply(
            Some(&a),
            &with_conditions(json!([{"type": "B", "status": "False"}])),
            false,
            &by("two"),
        )
        .unwrap();
        assert_eq!(
            ab["spec"]["conditions"],
            json!([{"type": "A", "status": "True"}, {"type": "B", "status": "False"}])
        );
        assert_eq!(
            ab["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:spec": {"f:conditions": {"k:{\"type\":\"B\"}": {"f:status": {}, "f:type": {}}}}})
        );
        // Manager two changing A's status conflicts on that element only.
        let err = apply(
            Some(&ab),
            &with_conditions(json!([{"type": "A", "status": "False"}])),
            false,
            &by("two"),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\": .spec.conditions[type=\"A\"].status"
        );
        // Manager one stops sending A: the element goes, B stays.
        let b = apply(Some(&ab), &with_conditions(json!([])), false, &by("one")).unwrap();
        assert_eq!(
            b["spec"]["conditions"],
            json!([{"type": "B", "status": "False"}])
        );
    }

    #[test]
    fn fields_encode_as_built_path_by_path() {
        let paths: BTreeSet<FieldPath> = [
            vec!["spec"],
            vec!["spec", "a"],
            vec!["spec", "b", "c"],
            vec!["spec", "b", "d"],
            vec!["status", "conditions", "k:{\"type\":\"A\"}", "status"],
            vec!["status", "conditions", "k:{\"type\":\"A\"}", "type"],
            vec!["status", "conditions", "k:{\"type\":\"B\"}", "type"],
            vec!["metadata", "finalizers", "v:\"x\""],
            vec!["metadata", "labels", "app"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        // The tree as it used to be built: one path at a time from the root.
        let mut root = Map::new();
        for path in &paths {
            let mut node = &mut root;
            for k in path {
                let segment = if is_element(k) {
                    k.clone()
                } else {
                    format!("f:{k}")
                };
                node = node
                    .entry(segment)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
            }
        }
        assert_eq!(encode(&paths), Value::Object(root));
        let mut back = BTreeSet::new();
        decode(&encode(&paths), Vec::new(), &mut back);
        // A path that is a prefix of another is not a leaf of the tree.
        let leaves: BTreeSet<FieldPath> = paths
            .iter()
            .filter(|p| !paths.iter().any(|q| q.len() > p.len() && q.starts_with(p)))
            .cloned()
            .collect();
        assert_eq!(back, leaves);
    }

    #[test]
    fn entries_an_apply_leaves_alone_keep_their_json_and_odd_ones_are_rewritten() {
        let first = apply(None, &cm(json!({"a": "1"})), false, &by("one")).unwrap();
        let mut live = first.clone();
        // An entry as some clients write it, with a "." member.
        live["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"manager": "odd", "operation": "Update", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:b": {}}}}),
            );
        live["data"]["b"] = json!("2");
        let second = apply(Some(&live), &cm(json!({"c": "3"})), false, &by("two")).unwrap();
        let entries = second["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries[0], first["metadata"]["managedFields"][0]);
        assert_eq!(entries[1]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
        assert_eq!(entries[2]["manager"], "two");
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn set_lists_are_unioned() {
        let f = |v: Value| json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x", "finalizers": v}});
        let one = apply(None, &f(json!(["a"])), false, &by("one")).unwrap();
        let both = apply(Some(&one), &f(json!(["b"])), false, &by("two")).unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["a", "b"]));
        let only_b = apply(Some(&both), &f(json!([])), false, &by("one")).unwrap();
        assert_eq!(only_b["metadata"]["finalizers"], json!(["b"]));
    }
}
