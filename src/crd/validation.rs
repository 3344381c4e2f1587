//! The reconcilers' copy of the API server's admission checks — not a second set of rules, but
//! the CRD's own schema evaluated in-process: OpenAPI constraints (type, required, pattern,
//! lengths, enum, bounds, item counts) by a small walker, and the `x-kubernetes-validations`
//! CEL rules (including transition rules against the previous object) by `kube-cel`.
//!
//! Clusters without CEL, objects stored before a rule existed, or objects written with
//! validation turned off all reach the reconcilers through here, and get `InvalidSpec` with
//! every violation and its field path instead of being acted on.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{LazyLock, Mutex, OnceLock};

use kube::core::object::HasSpec;
use kube::CustomResourceExt;
use kube_cel::{compile_schema, CompiledSchema, Validator};
use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use super::{ConsentGrant, RecordingService, Tenant};

/// One broken rule, with the path of the field that breaks it (e.g. `spec.retention.days`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path, dot-separated, list items as `[i]`.
    pub field: String,
    /// The rule, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every violation of one object, in schema order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl Violations {
    /// Whether any violation names this field.
    pub fn names_field(&self, field: &str) -> bool {
        self.0.iter().any(|v| v.field == field)
    }
}

/// Validates a Tenant (and, on update, the transition from `old`).
pub fn validate_tenant(obj: &Tenant, old: Option<&Tenant>) -> Result<(), Violations> {
    validate(obj, old)
}

/// Validates a ConsentGrant (and, on update, the transition from `old`).
pub fn validate_consent_grant(
    obj: &ConsentGrant,
    old: Option<&ConsentGrant>,
) -> Result<(), Violations> {
    validate(obj, old)
}

/// Validates a RecordingService (and, on update, the transition from `old`).
pub fn validate_recording_service(
    obj: &RecordingService,
    old: Option<&RecordingService>,
) -> Result<(), Violations> {
    validate(obj, old)
}

/// Validates the `spec` (and `metadata.name`) of any of the operator's resources against its
/// own CRD schema.
pub fn validate<K>(obj: &K, old: Option<&K>) -> Result<(), Violations>
where
    K: CustomResourceExt + HasSpec + kube::Resource,
    K::Spec: Serialize,
{
    let object = spec_only(obj);
    // A spec already seen valid needs no second walk: a reconcile of an unchanged object
    // would otherwise run the schema walk and the CEL rules (whose `matches()` compiles its
    // regex on every call) each time. Transition rules depend on the old object as well:
    // those calls are never remembered, nor are failures.
    let key = old.is_none().then(|| spec_key(K::crd_name(), &object));
    if key.is_some_and(|k| PASSED.contains(k)) {
        return Ok(());
    }
    let verdict = validate_value::<K>(object, old);
    if let (Some(k), Ok(())) = (key, &verdict) {
        PASSED.remember(k);
    }
    verdict
}

/// The specs (by digest of kind and content) that passed the rules.
struct Passed {
    digests: Mutex<HashSet<[u8; 16]>>,
}

/// Entries beyond which the memo starts afresh (a few MiB; 10,000 tenants hold ~55,000
/// objects).
const PASSED_LIMIT: usize = 100_000;

static PASSED: LazyLock<Passed> = LazyLock::new(|| Passed {
    digests: Mutex::new(HashSet::new()),
});

impl Passed {
    fn contains(&self, key: [u8; 16]) -> bool {
        self.digests.lock().expect("memo lock").contains(&key)
    }

    fn remember(&self, key: [u8; 16]) {
        let mut set = self.digests.lock().expect("memo lock");
        if set.len() >= PASSED_LIMIT {
            set.clear();
        }
        set.insert(key);
    }
}

/// SHA-256 of the kind and the spec's JSON, cut to 128 bits.
fn spec_key(kind: &str, object: &Value) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(object.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

fn validate_value<K>(object: Value, old: Option<&K>) -> Result<(), Violations>
where
    K: CustomResourceExt + HasSpec + kube::Resource,
    K::Spec: Serialize,
{
    let compiled = compiled_crd::<K>();
    let old = old.map(spec_only);

    let mut found = Vec::new();
    if let (Some(schema), Some(metadata)) = (
        compiled.schema.pointer("/properties/metadata"),
        object.get("metadata"),
    ) {
        check_schema(schema, metadata, "metadata", &mut found);
    }
    if let Some(spec_schema) = compiled.schema.pointer("/properties/spec") {
        check_schema(
            spec_schema,
            object.get("spec").unwrap_or(&Value::Null),
            "spec",
            &mut found,
        );
    }
    // The CEL rules only make sense on a structurally valid object.
    if found.is_empty() {
        let result =
            CEL_VALIDATOR.with(|v| v.validate_compiled(&compiled.cel, &object, old.as_ref()));
        if let Err(errors) = result {
            found.extend(errors.iter().map(|e| Violation {
                field: e.field_path.trim_start_matches('.').to_string(),
                message: e.message.clone(),
            }));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(Violations(found))
    }
}

thread_local! {
    static CEL_VALIDATOR: Validator = Validator::new();
}

struct CompiledCrd {
    schema: Value,
    cel: CompiledSchema,
}

/// The CRD schema of `K`, with its CEL rules compiled once per process.
fn compiled_crd<K: CustomResourceExt>() -> &'static CompiledCrd {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static CompiledCrd>>> = OnceLock::new();
    let kind = K::crd_name();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("cache lock");
    cache.entry(kind.to_string()).or_insert_with(|| {
        let crd = super::crds()
            .into_iter()
            .find(|crd| crd.metadata.name.as_deref() == Some(kind))
            .expect("every resource of the operator has its CRD in crds()");
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).expect("schema serializes"))
            .expect("derived CRDs carry an openAPIV3Schema");
        let cel = compile_schema(&schema);
        Box::leak(Box::new(CompiledCrd { schema, cel }))
    })
}

/// `{"metadata": {"name": …}, "spec": …}`, all the rules look at: the rest of metadata belongs
/// to the API server and status to the operator, and neither is serialised (a reconcile
/// validates its object every time; most find the spec remembered).
fn spec_only<K>(obj: &K) -> Value
where
    K: HasSpec + kube::Resource,
    K::Spec: Serialize,
{
    let spec = serde_json::to_value(obj.spec()).expect("a spec serializes");
    let mut object = serde_json::Map::from_iter([("spec".to_string(), spec)]);
    if let Some(name) = &obj.meta().name {
        object.insert("metadata".into(), serde_json::json!({ "name": name }));
    }
    Value::Object(object)
}

/// Walks one schema node and the value at `path`, recording every broken OpenAPI constraint.
fn check_schema(schema: &Value, value: &Value, path: &str, found: &mut Vec<Violation>) {
    let mut violation = |message: String| {
        found.push(Violation {
            field: path.to_string(),
            message,
        })
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            violation("Required value".into());
        }
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = value.as_object() else {
                return violation(format!("must be an object, got {}", type_name(value)));
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = required.as_str() {
                    if !map.contains_key(name) {
                        found.push(Violation {
                            field: format!("{path}.{name}"),
                            message: "Required value".into(),
                        });
                    }
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (name, sub) in props {
                    if let Some(v) = map.get(name) {
                        check_schema(sub, v, &format!("{path}.{name}"), found);
                    }
                }
            }
            if let Some(max) = schema["maxProperties"].as_u64() {
                if map.len() as u64 > max {
                    found.push(Violation {
                        field: path.to_string(),
                        message: format!("must have at most {max} entries, has {}", map.len()),
                    });
                }
            }
            if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (name, v) in map {
                    check_schema(sub, v, &format!("{path}.{name}"), found);
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return violation(format!("must be a list, got {}", type_name(value)));
            };
            if let Some(min) = schema["minItems"].as_u64() {
                if (items.len() as u64) < min {
                    violation(format!("must have at least {min} item(s)"));
                }
            }
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    violation(format!(
                        "must have at most {max} items, has {}",
                        items.len()
                    ));
                }
            }
            // Duplicates: a set's equal items, a map's items with equal keys.
            let list_type = schema["x-kubernetes-list-type"].as_str();
            if matches!(list_type, Some("set" | "map")) {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let key_of = |item: &Value| match list_type {
                    Some("set") => item.clone(),
                    _ => Value::Array(keys.iter().map(|k| item[*k].clone()).collect()),
                };
                let seen: Vec<Value> = items.iter().map(key_of).collect();
                for (i, key) in seen.iter().enumerate() {
                    if seen[..i].contains(key) {
                        found.push(Violation {
                            field: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {key}"),
                        });
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        Some("string") => {
            let Some(s) = value.as_str() else {
                return violation(format!("must be a string, got {}", type_name(value)));
            };
            check_string(schema, s, &mut violation);
            check_enum(schema, value, &mut violation);
        }
        Some("integer") | Some("number") => {
            let Some(n) = value.as_f64() else {
                return violation(format!("must be a number, got {}", type_name(value)));
            };
            if let Some(min) = schema["minimum"].as_f64() {
                if n < min {
                    violation(format!("must be greater than or equal to {min}"));
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                if n > max {
                    violation(format!("must be less than or equal to {max}"));
                }
            }
        }
        Some("boolean") if !value.is_boolean() => {
            violation(format!("must be a boolean, got {}", type_name(value)))
        }
        // An int-or-string (a quantity): its pattern applies to the string form.
        None if schema["x-kubernetes-int-or-string"] == Value::Bool(true) => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            Value::String(s) => check_string(schema, s, &mut violation),
            other => violation(format!(
                "must be an integer or a string, got {}",
                type_name(other)
            )),
        },
        _ => {}
    }
}

/// A string's lengths and pattern.
fn check_string(schema: &Value, s: &str, violation: &mut impl FnMut(String)) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64() {
        if chars < min {
            violation(format!("must be at least {min} character(s) long"));
        }
    }
    if let Some(max) = schema["maxLength"].as_u64() {
        if chars > max {
            violation(format!("must be at most {max} characters long, is {chars}"));
        }
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        if !pattern_regex(pattern).is_match(s) {
            violation(format!(
                "Invalid value {s:?}: must match the pattern {pattern}"
            ));
        }
    }
}

fn check_enum(schema: &Value, value: &Value, violation: &mut impl FnMut(String)) {
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            violation(format!(
                "Unsupported value {value}: supported values: {}",
                names.join(", ")
            ));
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Compiled patterns of the schema, kept for the process lifetime.
/// The same `Regex` is handed out every time: a clone would start an empty matching cache of
/// its own on every call.
fn pattern_regex(pattern: &str) -> &'static Regex {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static Regex>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("regex cache lock");
    cache.entry(pattern.to_string()).or_insert_with(|| {
        Box::leak(Box::new(
            Regex::new(pattern).expect("CRD patterns are valid RE2"),
        ))
    })
}
