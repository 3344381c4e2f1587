//! Structural-schema handling of custom resources, in the order the real server applies it:
//! prune unknown fields, apply defaults, validate against the OpenAPI v3 schema, then run the
//! `x-kubernetes-validations` CEL rules (with the old object for transition rules).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use kube_cel::{CompilationResult, CompiledSchema};
use regex::Regex;
use serde_json::{Map, Value};

use super::error::{go_value, FieldError, FieldErrorKind};
use super::resources::CrdVersion;

/// Remove fields the schema does not declare; returns their paths (`.spec.foo`) for the
/// `unknown field` warning or the strict-validation error.
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(map) = value {
        // apiVersion, kind and metadata are always kept at the root.
        for (key, child) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = schema.get("properties").and_then(|p| p.get(key)) {
                let mut path = format!(".{key}");
                prune_node(s, child, &mut path, &mut pruned);
            }
        }
        let declared = schema.get("properties").and_then(Value::as_object);
        let keep_all = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
        if !keep_all {
            map.retain(|k, _| {
                let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    || declared.is_some_and(|d| d.contains_key(k));
                if !keep {
                    pruned.push(format!(".{k}"));
                }
                keep
            });
        }
    }
    pruned
}

/// `path` is the value's path; children extend it and put it back as it was.
fn prune_node(schema: &Value, value: &mut Value, path: &mut String, pruned: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    if schema["x-kubernetes-embedded-resource"] == Value::Bool(true) && preserve {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let additional_any = schema.get("additionalProperties") == Some(&Value::Bool(true));
            let mut remove = Vec::new();
            let at = path.len();
            for (key, child) in map.iter_mut() {
                path.push('.');
                path.push_str(key);
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    prune_node(s, child, path, pruned);
                } else if let Some(s) = additional {
                    prune_node(s, child, path, pruned);
                } else if !preserve && !additional_any {
                    remove.push(key.clone());
                    pruned.push(path.clone());
                }
                path.truncate(at);
            }
            for key in remove {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                let at = path.len();
                for (i, item) in items.iter_mut().enumerate() {
                    let _ = write!(path, "[{i}]");
                    prune_node(s, item, path, pruned);
                    path.truncate(at);
                }
            }
        }
        _ => {}
    }
}

/// How deep defaulting goes (kube-cel's limit, shared with its validators).
const MAX_DEFAULT_DEPTH: usize = 64;

/// Fill in `default`s in place, as kube-cel's `apply_defaults` does (the server's defaulting
/// pass): a missing declared property gets its default, existing children (declared ones, or
/// map values under `additionalProperties` unless unknown fields are preserved) and array
/// items are defaulted in turn, an inserted default is taken as it is. In place rather than
/// kube-cel's copy of every level, which copied the whole object once per level of depth.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    default_node(schema, value, 0);
}

fn default_node(schema: &Value, value: &mut Value, depth: usize) {
    if depth > MAX_DEFAULT_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let additional = if preserve {
                None
            } else {
                schema.get("additionalProperties").filter(|a| a.is_object())
            };
            if props.is_none_or(Map::is_empty) && additional.is_none() {
                return;
            }
            // Existing children first, so that defaults inserted below are not walked.
            for (key, child) in map.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    default_node(s, child, depth + 1);
                } else if let Some(s) = additional {
                    default_node(s, child, depth + 1);
                }
            }
            for (key, s) in props.into_iter().flatten() {
                if !map.contains_key(key) {
                    if let Some(default) = s.get("default") {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default_node(s, item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Compile a pattern once per process: schemas and name rules are checked on every write.
/// Shared rather than cloned: a cloned `Regex` starts with an empty pool of match caches,
/// which its first match then has to build.
pub fn regex(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    static CACHE: std::sync::LazyLock<Mutex<HashMap<String, Arc<Regex>>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Arc::new(Regex::new(pattern)?);
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// What a value being validated is known to have been before the write, for validation
/// ratcheting (Kubernetes ≥ 1.30: on an update, errors on values the update left unchanged
/// are not reported).
#[derive(Clone, Copy)]
enum Before<'a> {
    /// Nothing to compare with: a create, or a value new at this place.
    Nothing,
    /// The value at the same place in the stored object (map properties, and the element with
    /// the same keys of a `listType: map` list).
    Was(&'a Value),
    /// Deep-equal to the stored value (so is everything below).
    Unchanged,
}

/// Validate a value against an OpenAPI v3 structural schema; `old` (an update) ratchets: the
/// value checks (enum, pattern, lengths, bounds, item and property counts) are skipped on
/// values deep-equal to the stored ones. Types, required fields and duplicates in sets are
/// checked everywhere.
pub fn validate(schema: &Value, value: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // The root's apiVersion/kind/metadata are the server's business, not the schema's — except
    // `metadata.name` and `metadata.generateName`, the two fields of metadata a CRD's schema
    // may restrict (structural schemas allow nothing else there).
    if let (Some(props), Value::Object(map)) = (schema["properties"].as_object(), value) {
        let mut path = String::new();
        for (key, s) in props {
            if key == "metadata" {
                for field in ["name", "generateName"] {
                    let (Some(rule), Some(child)) = (
                        s["properties"].get(field),
                        map.get("metadata").and_then(|m| m.get(field)),
                    ) else {
                        continue;
                    };
                    path.clear();
                    path.push_str("metadata.");
                    path.push_str(field);
                    let before = old
                        .and_then(|o| o["metadata"].get(field))
                        .map_or(Before::Nothing, Before::Was);
                    validate_node(rule, child, before, &mut path, &mut errors);
                }
                continue;
            }
            if matches!(key.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if let Some(child) = map.get(key) {
                path.clear();
                path.push_str(key);
                let before = old
                    .and_then(|o| o.get(key))
                    .map_or(Before::Nothing, Before::Was);
                validate_node(s, child, before, &mut path, &mut errors);
            }
        }
        required(schema, map, "", &mut errors);
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(r) = req.as_str() {
            if !map.contains_key(r)
                || map[r].is_null() && schema["properties"][r]["nullable"] != Value::Bool(true)
            {
                errors.push(FieldError::required(join(path, r), ""));
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

/// The stored element a `listType: map` list element corresponds to (same key values).
fn keyed_element<'a>(schema: &Value, old: &'a Value, item: &Value) -> Option<&'a Value> {
    if schema["x-kubernetes-list-type"] != "map" {
        return None;
    }
    let keys = schema["x-kubernetes-list-map-keys"].as_array()?;
    old.as_array()?.iter().find(|o| {
        keys.iter()
            .all(|k| k.as_str().is_some_and(|k| o.get(k) == item.get(k)))
    })
}

/// `path` is the value's field path; children extend it and put it back as it was.
fn validate_node(
    schema: &Value,
    value: &Value,
    before: Before,
    path: &mut String,
    errors: &mut Vec<FieldError>,
) {
    let before = match before {
        Before::Was(old) if old == value => Before::Unchanged,
        other => other,
    };
    let ratcheted = matches!(before, Before::Unchanged);
    // null is fine where the schema says nullable; elsewhere it is a type error below.
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError {
                field: path.clone(),
                kind: FieldErrorKind::TypeInvalid {
                    value: format!("\"{}\"", type_name(value)),
                    detail: format!(
                        "{path} in body must be of type integer,string: \"{}\"",
                        type_name(value)
                    ),
                },
            });
        } else if let (Value::String(s), false) = (value, ratcheted) {
            // The string form still obeys the value validations (a quantity's pattern).
            validate_string(schema, s, value, path, errors);
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        if !type_matches(expected, value) {
            errors.push(FieldError {
                field: path.clone(),
                kind: FieldErrorKind::TypeInvalid {
                    value: format!("\"{}\"", type_name(value)),
                    detail: format!(
                        "{path} in body must be of type {expected}: \"{}\"",
                        type_name(value)
                    ),
                },
            });
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array().filter(|_| !ratcheted) {
        if !options.contains(value) {
            errors.push(FieldError {
                field: path.clone(),
                kind: FieldErrorKind::NotSupported {
                    value: go_value(value),
                    supported: options
                        .iter()
                        .map(|o| {
                            o.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| o.to_string())
                        })
                        .collect(),
                },
            });
        }
    }
    let at = path.len();
    match value {
        Value::String(s) if !ratcheted => validate_string(schema, s, value, path, errors),
        Value::Number(n) if !ratcheted => {
            validate_number(schema, n.as_f64().unwrap_or_default(), value, path, errors)
        }
        Value::Array(items) => {
            if !ratcheted {
                let count = Value::from(items.len());
                validate_count(schema, Counted::Items, items.len(), &count, path, errors);
            }
            if schema["x-kubernetes-list-type"] == "set"
                || schema["uniqueItems"] == Value::Bool(true)
            {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errors.push(FieldError {
                            field: format!("{path}[{i}]"),
                            kind: FieldErrorKind::Duplicate {
                                value: go_value(item),
                            },
                        });
                    }
                }
            }
            if schema["x-kubernetes-list-type"] == "map" {
                // Two items with the same keys: the API server names the second with its keys.
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let key_of = |item: &Value| -> Map<String, Value> {
                    keys.iter()
                        .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect()
                };
                let seen: Vec<Map<String, Value>> = items.iter().map(key_of).collect();
                for (i, key) in seen.iter().enumerate() {
                    if seen[..i].contains(key) {
                        errors.push(FieldError {
                            field: format!("{path}[{i}]"),
                            kind: FieldErrorKind::Duplicate {
                                value: go_value(&Value::Object(key.clone())),
                            },
                        });
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let item_before = match before {
                        Before::Unchanged => Before::Unchanged,
                        Before::Was(old) => {
                            keyed_element(schema, old, item).map_or(Before::Nothing, Before::Was)
                        }
                        Before::Nothing => Before::Nothing,
                    };
                    let _ = write!(path, "[{i}]");
                    validate_node(item_schema, item, item_before, path, errors);
                    path.truncate(at);
                }
            }
        }
        Value::Object(map) => {
            if !ratcheted {
                validate_count(schema, Counted::Properties, map.len(), value, path, errors);
            }
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let Some(s) = props.and_then(|p| p.get(key)).or(additional) else {
                    continue;
                };
                let child_before = match before {
                    Before::Unchanged => Before::Unchanged,
                    Before::Was(old) => old.get(key).map_or(Before::Nothing, Before::Was),
                    Before::Nothing => Before::Nothing,
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                validate_node(s, child, child_before, path, errors);
                path.truncate(at);
            }
            required(schema, map, path, errors);
        }
        _ => {}
    }
}

/// What `maxItems`/`minItems` or `maxProperties`/`minProperties` count.
#[derive(Clone, Copy)]
enum Counted {
    Items,
    Properties,
}

/// The bounds on how many items an array (or properties an object) has: too many is
/// TooMany, too few is Invalid with `shown` as the value (the count for an array, the object
/// itself for an object, as the real server reports them).
fn validate_count(
    schema: &Value,
    counted: Counted,
    len: usize,
    shown: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let (max_key, min_key, noun) = match counted {
        Counted::Items => ("maxItems", "minItems", "items"),
        Counted::Properties => ("maxProperties", "minProperties", "properties"),
    };
    if let Some(max) = schema[max_key].as_u64() {
        if len as u64 > max {
            errors.push(FieldError {
                field: path.to_string(),
                kind: FieldErrorKind::TooMany { count: len, max },
            });
        }
    }
    if let Some(min) = schema[min_key].as_u64() {
        if (len as u64) < min {
            errors.push(FieldError::invalid(
                path,
                shown,
                format!("{path} in body should have at least {min} {noun}"),
            ));
        }
    }
}

fn validate_string(
    schema: &Value,
    s: &str,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64() {
        if chars > max {
            errors.push(FieldError {
                field: path.to_string(),
                kind: FieldErrorKind::TooLong { max },
            });
        }
    }
    if let Some(min) = schema["minLength"].as_u64() {
        if chars < min {
            errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match regex(pattern) {
            Ok(re) if !re.is_match(s) => errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            )),
            Ok(_) => {}
            Err(_) => errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} has a pattern the server cannot compile: '{pattern}'"),
            )),
        }
    }
}

fn validate_number(
    schema: &Value,
    n: f64,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let limit = |v: &Value| v.as_f64();
    if let Some(min) = limit(&schema["minimum"]) {
        let exclusive = schema["exclusiveMinimum"] == Value::Bool(true);
        if n < min || (exclusive && n == min) {
            let word = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be {word} {}", schema["minimum"]),
            ));
        }
    }
    if let Some(max) = limit(&schema["maximum"]) {
        let exclusive = schema["exclusiveMaximum"] == Value::Bool(true);
        if n > max || (exclusive && n == max) {
            let word = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be {word} {}", schema["maximum"]),
            ));
        }
    }
}

/// The CEL rules of a CRD version as two kinds of writes need them, compiled once with the
/// CRD (kube-cel evaluates every rule it is given; leaving out the ones whose verdict is known
/// spares the conversion of the values they would see).
pub struct RuleVariants {
    /// What a create runs: transition rules (those using `oldSelf`) do not run without an old
    /// object, unless `optionalOldSelf` asks for them.
    on_create: CompiledSchema,
    /// What still answers for a value an update leaves deep-equal (validation ratcheting,
    /// Kubernetes ≥ 1.30): transition rules, which are never ratcheted, except
    /// `self == oldSelf`, which holds there.
    on_unchanged: CompiledSchema,
}

impl RuleVariants {
    /// The variants of a schema whose full set of rules is `compiled`.
    pub fn of(schema: &Value, compiled: &CompiledSchema) -> RuleVariants {
        let runs_on_create =
            |r: &CompilationResult| !r.is_transition_rule || r.rule.optional_old_self == Some(true);
        let answers_unchanged = |r: &CompilationResult| r.is_transition_rule && !holds_on_equal(r);
        RuleVariants {
            on_create: kube_cel::compile_schema(&rules_where(schema, compiled, &runs_on_create)),
            on_unchanged: kube_cel::compile_schema(&rules_where(
                schema,
                compiled,
                &answers_unchanged,
            )),
        }
    }
}

/// Does the rule hold whenever `self` equals `oldSelf`? True of the immutability rule
/// `self == oldSelf`; any other rule counts as needing evaluation.
fn holds_on_equal(rule: &CompilationResult) -> bool {
    let text: String = rule.rule.rule.split_whitespace().collect();
    rule.is_transition_rule
        && rule.rule.optional_old_self != Some(true)
        && (text == "self==oldSelf" || text == "oldSelf==self")
}

/// The schema with only the `x-kubernetes-validations` entries whose compiled rule `keep`s
/// (rules that did not compile are kept); `compiled` is `schema` compiled, node for node.
fn rules_where(
    schema: &Value,
    compiled: &CompiledSchema,
    keep: &dyn Fn(&CompilationResult) -> bool,
) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let value = match (key.as_str(), value) {
            ("x-kubernetes-validations", Value::Array(rules)) => Value::Array(
                rules
                    .iter()
                    .zip(&compiled.validations)
                    .filter(|(_, c)| c.as_ref().map_or(true, keep))
                    .map(|(r, _)| r.clone())
                    .collect(),
            ),
            ("properties", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, s)| {
                        let s = match compiled.properties.get(name) {
                            Some(c) => rules_where(s, c, keep),
                            None => s.clone(),
                        };
                        (name.clone(), s)
                    })
                    .collect(),
            ),
            ("items", s) => match compiled.items.as_deref() {
                Some(c) => rules_where(s, c, keep),
                None => s.clone(),
            },
            ("additionalProperties", s) if s.is_object() => {
                match compiled.additional_properties.as_deref() {
                    Some(c) => rules_where(s, c, keep),
                    None => s.clone(),
                }
            }
            ("allOf" | "oneOf" | "anyOf", Value::Array(branches)) => {
                let compiled_branches = match key.as_str() {
                    "allOf" => &compiled.all_of,
                    "oneOf" => &compiled.one_of,
                    _ => &compiled.any_of,
                };
                Value::Array(
                    branches
                        .iter()
                        .zip(compiled_branches)
                        .map(|(s, c)| rules_where(s, c, keep))
                        .collect(),
                )
            }
            (_, v) => v.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

/// Run the CEL rules of a CRD version (compiled once when the CRD was registered).
///
/// A create runs the rules that need no old object. An update ratchets as the real server
/// does (Kubernetes ≥ 1.30), by top-level field: a field the update leaves deep-equal runs
/// only its transition rules other than `self == oldSelf` (so a status write usually runs
/// nothing of an unchanged spec), a changed one runs all of its rules. Finer than the real
/// server's per-node ratcheting it is not: a rule on an unchanged value below a changed
/// top-level field still answers.
pub fn validate_cel(crd: &CrdVersion, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(compiled) = crd.compiled.as_ref().filter(|c| has_rules(c)) else {
        return Vec::new();
    };
    let variants = crd.variants.as_ref();
    let Some(old) = old else {
        let rules = variants.map_or(compiled, |v| &v.on_create);
        return match rule_fields(rules) {
            None => cel_errors(rules, object, None, object),
            Some(fields) => remembered(crd, "create", rules, &fields, object, None),
        };
    };
    let Some(fields) = rule_fields(compiled) else {
        return cel_errors(compiled, object, Some(old), object);
    };
    let mut changed = Vec::with_capacity(fields.len());
    let mut unchanged = Vec::new();
    for field in fields {
        let same = old
            .get(field)
            .is_some_and(|was| object.get(field) == Some(was));
        match variants {
            Some(_) if same => unchanged.push(field),
            _ => changed.push(field),
        }
    }
    let mut errors = remembered(crd, "update", compiled, &changed, object, Some(old));
    if let Some(v) = variants {
        errors.extend(remembered(
            crd,
            "unchanged",
            &v.on_unchanged,
            &unchanged,
            object,
            Some(old),
        ));
    }
    errors
}

/// The verdict of `rules` (one of the CRD version's sets, named by `set`) on the top-level
/// `fields` of the object (and of the old one), remembered by that input.
fn remembered(
    crd: &CrdVersion,
    set: &str,
    rules: &CompiledSchema,
    fields: &[&str],
    object: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let fields: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| rules.properties.get(*f).is_some_and(has_rules))
        .collect();
    if fields.is_empty() {
        return Vec::new();
    }
    let new_view = only_fields(object, &fields);
    let old_view = old.map(|o| only_fields(o, &fields));
    let input = format!(
        "{set}\n{new_view}\n{}",
        old_view.as_ref().map(Value::to_string).unwrap_or_default()
    );
    if let Some(known) = crd.cel_verdicts.get(&input) {
        return known;
    }
    let errors = cel_errors(rules, &new_view, old_view.as_ref(), object);
    crd.cel_verdicts.remember(input, errors.clone());
    errors
}

/// Verdicts of one CRD version's CEL rules by their input (what the rules see of the new and
/// the old object). The rules are a pure function of that input (CEL in Kubernetes has no
/// clock and no randomness), and most writes hand them the same input again: every status
/// write and every repeated apply leaves the spec as it was. Lives and dies with the
/// compiled rules it remembers verdicts of.
#[derive(Default)]
pub struct CelVerdicts(Mutex<HashMap<String, Vec<FieldError>>>);

/// Inputs remembered before the memo starts afresh.
const CEL_VERDICTS_LIMIT: usize = 4096;

impl CelVerdicts {
    fn get(&self, input: &str) -> Option<Vec<FieldError>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(input)
            .cloned()
    }

    fn remember(&self, input: String, errors: Vec<FieldError>) {
        let mut verdicts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if verdicts.len() >= CEL_VERDICTS_LIMIT {
            verdicts.clear();
        }
        verdicts.insert(input, errors);
    }
}

/// kube-cel's verdict on `new` (and `old`), as field errors; values are typed from `object`.
fn cel_errors(
    compiled: &CompiledSchema,
    new: &Value,
    old: Option<&Value>,
    object: &Value,
) -> Vec<FieldError> {
    match kube_cel::validate_compiled(compiled, new, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = e.field_path.trim_start_matches('.').to_string();
                let at = if field.is_empty() {
                    object.clone()
                } else {
                    object
                        .pointer(&format!("/{}", field.replace('.', "/")))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                let value = format!("\"{}\"", type_name(&at));
                match e.reason.as_deref() {
                    Some("FieldValueRequired") => FieldError::required(field, e.message),
                    Some("FieldValueForbidden") => FieldError::forbidden(field, e.message),
                    Some("FieldValueDuplicate") => FieldError {
                        field,
                        kind: FieldErrorKind::Duplicate { value },
                    },
                    _ => FieldError {
                        field,
                        kind: FieldErrorKind::Invalid {
                            value,
                            detail: e.message,
                        },
                    },
                }
            })
            .collect(),
    }
}

/// Does a CRD version have any CEL rule (that the old object is needed for)?
pub fn has_cel_rules(crd: &CrdVersion) -> bool {
    crd.compiled.as_ref().is_some_and(has_rules)
}

/// Is there a CEL rule at this schema node or anywhere below it?
fn has_rules(node: &CompiledSchema) -> bool {
    !node.validations.is_empty()
        || node.properties.values().any(has_rules)
        || node.items.as_deref().is_some_and(has_rules)
        || node.additional_properties.as_deref().is_some_and(has_rules)
        || node
            .all_of
            .iter()
            .chain(&node.one_of)
            .chain(&node.any_of)
            .any(has_rules)
}

/// The top-level fields the rules need to see, when the root itself has none.
///
/// kube-cel converts every node it visits into a CEL value, starting with the whole object
/// (metadata with its managedFields, status and all) at the root, whether or not that node
/// has rules. A top-level field without a rule at or below it yields no error, so leaving it
/// out gives the same errors in the same order; a rule at the root (or in a root-level
/// branch or `additionalProperties`) sees the whole object, so then nothing is left out.
fn rule_fields(root: &CompiledSchema) -> Option<Vec<&str>> {
    let whole = !root.validations.is_empty()
        || root.additional_properties.as_deref().is_some_and(has_rules)
        || root
            .all_of
            .iter()
            .chain(&root.one_of)
            .chain(&root.any_of)
            .any(has_rules);
    (!whole).then(|| {
        root.properties
            .iter()
            .filter(|(_, node)| has_rules(node))
            .map(|(name, _)| name.as_str())
            .collect()
    })
}

fn only_fields(object: &Value, fields: &[&str]) -> Value {
    let kept = fields
        .iter()
        .filter_map(|f| Some((f.to_string(), object.get(*f)?.clone())))
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 1},
                "tier": {"type": "string", "enum": ["A", "B"], "default": "A"},
                "count": {"type": "integer", "minimum": 1, "maximum": 3},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}
        }})
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"name": "a", "bogus": 1, "free": {"anything": {"goes": true}}}, "extra": 1});
        let pruned = prune(&schema(), &mut v);
        assert_eq!(
            pruned,
            vec![".spec.bogus".to_string(), ".extra".to_string()]
        );
        assert_eq!(v["spec"]["free"]["anything"]["goes"], json!(true));
        assert!(v.get("extra").is_none());
    }

    #[test]
    fn counts_of_items_and_properties_are_bounded_both_ways() {
        let bounded = json!({"type": "object", "properties": {
            "list": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "string"}},
            "map": {"type": "object", "minProperties": 1, "maxProperties": 2,
                    "additionalProperties": {"type": "string"}}
        }});
        let ok = json!({"list": ["a", "b"], "map": {"k": "v"}});
        assert!(validate(&bounded, &ok, None).is_empty());

        let few = json!({"list": ["a"], "map": {}});
        let errs = validate(&bounded, &few, None);
        let got: Vec<(String, &str)> = errs.iter().map(|e| (e.field.clone(), e.reason())).collect();
        assert_eq!(
            got,
            vec![
                ("list".to_string(), "FieldValueInvalid"),
                ("map".to_string(), "FieldValueInvalid"),
            ]
        );

        let many = json!({"list": ["a", "b", "c", "d"], "map": {"a": "1", "b": "2", "c": "3"}});
        let errs = validate(&bounded, &many, None);
        let got: Vec<(String, &str)> = errs.iter().map(|e| (e.field.clone(), e.reason())).collect();
        assert_eq!(
            got,
            vec![
                ("list".to_string(), "FieldValueTooMany"),
                ("map".to_string(), "FieldValueTooMany"),
            ]
        );
    }

    #[test]
    fn reports_each_violation_with_its_path_and_reason() {
        let v =
            json!({"spec": {"name": "ABCDEFG", "tier": "C", "count": 9, "tags": ["a", "b", "c"]}});
        let errs = validate(&schema(), &v, None);
        let got: Vec<(String, &str)> = errs.iter().map(|e| (e.field.clone(), e.reason())).collect();
        assert_eq!(
            got,
            vec![
                ("spec.count".to_string(), "FieldValueInvalid"),
                ("spec.name".to_string(), "FieldValueTooLong"),
                ("spec.name".to_string(), "FieldValueInvalid"),
                ("spec.tags".to_string(), "FieldValueTooMany"),
                ("spec.tier".to_string(), "FieldValueNotSupported"),
            ]
        );
        assert_eq!(
            errs[2].full(),
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
        );
        let missing = validate(&schema(), &json!({"spec": {}}), None);
        assert_eq!(missing[0].full(), "spec.name: Required value");
    }

    fn crd_version(schema: Value) -> CrdVersion {
        let compiled = kube_cel::compile_schema(&schema);
        CrdVersion {
            variants: Some(RuleVariants::of(&schema, &compiled)),
            compiled: Some(compiled),
            schema: Some(schema),
            printer_columns: Vec::new(),
            cel_verdicts: CelVerdicts::default(),
        }
    }

    fn cel_errors(crd: &CrdVersion, object: &Value, old: Option<&Value>) -> Vec<String> {
        validate_cel(crd, object, old)
            .iter()
            .map(FieldError::full)
            .collect()
    }

    #[test]
    fn cel_rules_below_the_root_see_only_their_fields() {
        let crd = crd_version(json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "name": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self.matches('^[a-z]+$')", "message": "lower case only"}]},
                "id": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "id is immutable"}]}
            }},
            "status": {"type": "object", "properties": {"note": {"type": "string"}}}
        }}));
        let root = crd.compiled.as_ref().unwrap();
        assert_eq!(rule_fields(root), Some(vec!["spec"]));
        let object = |name: &str, id: &str| {
            json!({"apiVersion": "x/v1", "kind": "K",
                "metadata": {"name": "a", "managedFields": [{"manager": "m"}]},
                "spec": {"name": name, "id": id}, "status": {"note": "anything"}})
        };
        assert!(cel_errors(&crd, &object("ok", "1"), None).is_empty());
        assert_eq!(
            cel_errors(&crd, &object("NO", "1"), None),
            ["spec.name: Invalid value: \"string\": lower case only"]
        );
        assert_eq!(
            cel_errors(&crd, &object("ok", "2"), Some(&object("ok", "1"))),
            ["spec.id: Invalid value: \"string\": id is immutable"]
        );
        assert!(cel_errors(&crd, &object("ok", "1"), Some(&object("ok", "1"))).is_empty());
        // The same spec under another status and resourceVersion: the same verdict, remembered.
        let mut again = object("NO", "1");
        again["status"]["note"] = json!("other");
        again["metadata"]["resourceVersion"] = json!("9");
        assert_eq!(
            cel_errors(&crd, &again, None),
            ["spec.name: Invalid value: \"string\": lower case only"]
        );
        // The unchanged spec of the fourth write was ratcheted, not evaluated: three inputs.
        assert_eq!(crd.cel_verdicts.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_cel_rule_at_the_root_sees_the_whole_object() {
        let crd = crd_version(json!({"type": "object",
        "x-kubernetes-validations": [
            {"rule": "!has(self.status) || self.status.size <= self.spec.size",
             "message": "status beyond spec"}],
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"size": {"type": "integer"}}}
        }}));
        assert_eq!(rule_fields(crd.compiled.as_ref().unwrap()), None);
        let object =
            |spec: i64, status: i64| json!({"spec": {"size": spec}, "status": {"size": status}});
        assert!(cel_errors(&crd, &object(2, 1), None).is_empty());
        assert_eq!(
            cel_errors(&crd, &object(1, 2), None),
            [": Invalid value: \"object\": status beyond spec"]
        );
    }

    #[test]
    fn a_schema_without_cel_rules_checks_nothing() {
        let crd = crd_version(schema());
        assert!(!has_cel_rules(&crd));
        assert!(cel_errors(&crd, &json!({"spec": {"name": "ABCDEFG"}}), None).is_empty());
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let mut v = json!({"spec": {"name": "a"}});
        apply_defaults(&schema(), &mut v);
        assert_eq!(v["spec"]["tier"], "A");
    }

    #[test]
    fn defaults_in_place_are_kube_cels_defaults() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "mode": {"type": "string", "default": "fast"},
                "nested": {"type": "object", "default": {"inner": {}},
                    "properties": {"inner": {"type": "object",
                        "properties": {"x": {"type": "integer", "default": 1}}}}},
                "list": {"type": "array", "items": {"type": "object",
                    "properties": {"on": {"type": "boolean", "default": true}}}},
                "byName": {"type": "object", "additionalProperties": {"type": "object",
                    "properties": {"weight": {"type": "integer", "default": 5}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "additionalProperties": {"type": "object",
                        "properties": {"weight": {"type": "integer", "default": 5}}},
                    "properties": {"kept": {"type": "string", "default": "k"}}}
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string", "default": "New"}}}
        }});
        for object in [
            json!({"metadata": {"name": "a"}}),
            json!({"spec": {}}),
            json!({"spec": {"mode": "slow", "nested": {}, "list": [{}, {"on": false}, 3],
                "byName": {"a": {}, "b": {"weight": 2}}, "free": {"a": {}}}, "status": {}}),
            json!({"spec": {"nested": {"inner": {"x": 7}}, "list": "not a list", "byName": null}}),
        ] {
            let mut in_place = object.clone();
            apply_defaults(&schema, &mut in_place);
            assert_eq!(
                in_place,
                kube_cel::apply_defaults(&schema, &object),
                "{object}"
            );
        }
    }

    #[test]
    fn an_update_ratchets_value_checks_on_unchanged_values() {
        // Stored under a laxer schema: a name too long and upper case, a tier since removed.
        let old =
            json!({"spec": {"name": "ABCDEFG", "tier": "C", "count": 2, "tags": ["a", "b", "c"]}});
        // Only count changes, to another bad value: only it is reported.
        let mut new = old.clone();
        new["spec"]["count"] = json!(9);
        let got: Vec<String> = validate(&schema(), &new, Some(&old))
            .iter()
            .map(FieldError::full)
            .collect();
        assert_eq!(
            got,
            ["spec.count: Invalid value: 9: spec.count in body should be less than or equal to 3"]
        );
        assert!(validate(&schema(), &old, Some(&old)).is_empty());
        // A changed value is checked again, and a create checks everything.
        new["spec"]["name"] = json!("ABCDEFGH");
        assert_eq!(validate(&schema(), &new, Some(&old)).len(), 3);
        assert_eq!(validate(&schema(), &old, None).len(), 4);
        // Missing required fields and wrong types are reported unchanged or not.
        let untyped = json!({"spec": {"count": "two"}});
        let got: Vec<&str> = validate(&schema(), &untyped, Some(&untyped))
            .iter()
            .map(FieldError::reason)
            .collect();
        assert_eq!(got, ["FieldValueTypeInvalid", "FieldValueRequired"]);
    }

    #[test]
    fn keyed_list_elements_ratchet_against_the_element_with_the_same_keys() {
        let schema = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {
                    "type": {"type": "string"},
                    "reason": {"type": "string", "pattern": "^[A-Z][A-Za-z]*$"}}}}}}}});
        let old = json!({"status": {"conditions": [
            {"type": "A", "reason": "bad reason"}, {"type": "B", "reason": "Fine"}]}});
        // B changes and moves first; A keeps its (bad) reason.
        let new = json!({"status": {"conditions": [
            {"type": "B", "reason": "also bad"}, {"type": "A", "reason": "bad reason"}]}});
        let got: Vec<String> = validate(&schema, &new, Some(&old))
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(got, ["status.conditions[0].reason"]);
    }

    #[test]
    fn cel_rules_ratchet_on_an_unchanged_top_level_field() {
        let crd = crd_version(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "x-kubernetes-validations": [
                    {"rule": "self <= 3", "message": "too big"}]},
                "id": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "id is immutable"}]}
            }},
            "status": {"type": "object", "properties": {"note": {"type": "string"}}}
        }}));
        let object = |size: i64, note: &str| json!({"spec": {"size": size, "id": "1"}, "status": {"note": note}});
        // Stored before the rule existed: a status write passes without evaluating anything.
        assert!(cel_errors(&crd, &object(9, "b"), Some(&object(9, "a"))).is_empty());
        assert!(crd.cel_verdicts.0.lock().unwrap().is_empty());
        // Changing the spec evaluates it again, and a create always does.
        assert_eq!(
            cel_errors(&crd, &object(10, "a"), Some(&object(9, "a"))),
            ["spec.size: Invalid value: \"integer\": too big"]
        );
        assert_eq!(
            cel_errors(&crd, &object(9, "a"), None),
            ["spec.size: Invalid value: \"integer\": too big"]
        );
    }

    #[test]
    fn a_create_hands_transition_rules_nothing() {
        let crd = crd_version(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "id": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "id is immutable"}]}
            }}
        }}));
        let object = |id: &str| json!({"spec": {"id": id}});
        assert!(cel_errors(&crd, &object("1"), None).is_empty());
        assert!(cel_errors(&crd, &object("1"), Some(&object("1"))).is_empty());
        assert!(crd.cel_verdicts.0.lock().unwrap().is_empty());
        assert_eq!(
            cel_errors(&crd, &object("2"), Some(&object("1"))),
            ["spec.id: Invalid value: \"string\": id is immutable"]
        );
    }

    #[test]
    fn transition_rules_are_not_ratcheted() {
        let crd = crd_version(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "x-kubernetes-validations": [
                    {"rule": "self <= 3", "message": "too big"},
                    {"rule": "self > oldSelf", "message": "must grow"}]}
            }}
        }}));
        let object = |size: i64| json!({"spec": {"size": size}});
        // Unchanged: the plain rule is ratcheted, the transition rule still answers.
        assert_eq!(
            cel_errors(&crd, &object(9), Some(&object(9))),
            ["spec.size: Invalid value: \"integer\": must grow"]
        );
        assert_eq!(
            cel_errors(&crd, &object(8), Some(&object(9))),
            [
                "spec.size: Invalid value: \"integer\": too big",
                "spec.size: Invalid value: \"integer\": must grow"
            ]
        );
    }
}
