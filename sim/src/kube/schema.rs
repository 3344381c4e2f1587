//! Structural-schema handling of custom resources, in the order the real server applies it:
//! prune unknown fields, apply defaults, validate against the OpenAPI v3 schema, then run the
//! `x-kubernetes-validations` CEL rules (with the old object for transition rules).

use std::collections::HashMap;
use std::sync::Mutex;

use kube_cel::CompiledSchema;
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
            if let Some(s) = schema.pointer(&format!("/properties/{}", escape(key))) {
                prune_node(s, child, &format!(".{key}"), &mut pruned);
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

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn prune_node(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
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
            for (key, child) in map.iter_mut() {
                let child_path = format!("{path}.{key}");
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    prune_node(s, child, &child_path, pruned);
                } else if let Some(s) = additional {
                    prune_node(s, child, &child_path, pruned);
                } else if !preserve && !additional_any {
                    remove.push(key.clone());
                    pruned.push(child_path);
                }
            }
            for key in remove {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(s, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fill in `default`s (kube-cel's implementation of the server's defaulting pass).
pub fn apply_defaults(schema: &Value, value: &Value) -> Value {
    kube_cel::apply_defaults(schema, value)
}

/// Compile a pattern once per process: schemas and name rules are checked on every write.
pub fn regex(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// Validate a value against an OpenAPI v3 structural schema.
pub fn validate(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // The root's apiVersion/kind/metadata are the server's business, not the schema's.
    if let (Some(props), Value::Object(map)) = (schema["properties"].as_object(), value) {
        for (key, s) in props {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = map.get(key) {
                validate_node(s, child, key, &mut errors);
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

fn validate_node(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    // null is fine where the schema says nullable; elsewhere it is a type error below.
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError {
                field: path.to_string(),
                kind: FieldErrorKind::TypeInvalid {
                    value: format!("\"{}\"", type_name(value)),
                    detail: format!(
                        "{path} in body must be of type integer,string: \"{}\"",
                        type_name(value)
                    ),
                },
            });
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        if !type_matches(expected, value) {
            errors.push(FieldError {
                field: path.to_string(),
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
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            errors.push(FieldError {
                field: path.to_string(),
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
    match value {
        Value::String(s) => validate_string(schema, s, value, path, errors),
        Value::Number(n) => {
            validate_number(schema, n.as_f64().unwrap_or_default(), value, path, errors)
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    errors.push(FieldError {
                        field: path.to_string(),
                        kind: FieldErrorKind::TooMany {
                            count: items.len(),
                            max,
                        },
                    });
                }
            }
            if let Some(min) = schema["minItems"].as_u64() {
                if (items.len() as u64) < min {
                    errors.push(FieldError::invalid(
                        path,
                        &Value::from(items.len()),
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
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
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_node(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = schema["maxProperties"].as_u64() {
                if map.len() as u64 > max {
                    errors.push(FieldError {
                        field: path.to_string(),
                        kind: FieldErrorKind::TooMany {
                            count: map.len(),
                            max,
                        },
                    });
                }
            }
            if let Some(min) = schema["minProperties"].as_u64() {
                if (map.len() as u64) < min {
                    errors.push(FieldError::invalid(
                        path,
                        value,
                        format!("{path} in body should have at least {min} properties"),
                    ));
                }
            }
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_path = join(path, key);
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    validate_node(s, child, &child_path, errors);
                } else if let Some(s) = additional {
                    validate_node(s, child, &child_path, errors);
                }
            }
            required(schema, map, path, errors);
        }
        _ => {}
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

/// Run the CEL rules of a CRD version (compiled once when the CRD was registered).
pub fn validate_cel(crd: &CrdVersion, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(compiled) = crd.compiled.as_ref().filter(|c| has_rules(c)) else {
        return Vec::new();
    };
    let Some(fields) = rule_fields(compiled) else {
        return cel_errors(compiled, object, old, object);
    };
    let new_view = only_fields(object, &fields);
    let old_view = old.map(|o| only_fields(o, &fields));
    let input = format!(
        "{new_view}\n{}",
        old_view.as_ref().map(Value::to_string).unwrap_or_default()
    );
    if let Some(known) = crd.cel_verdicts.get(&input) {
        return known;
    }
    let errors = cel_errors(compiled, &new_view, old_view.as_ref(), object);
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
    fn reports_each_violation_with_its_path_and_reason() {
        let v =
            json!({"spec": {"name": "ABCDEFG", "tier": "C", "count": 9, "tags": ["a", "b", "c"]}});
        let errs = validate(&schema(), &v);
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
        let missing = validate(&schema(), &json!({"spec": {}}));
        assert_eq!(missing[0].full(), "spec.name: Required value");
    }

    fn crd_version(schema: Value) -> CrdVersion {
        CrdVersion {
            compiled: Some(kube_cel::compile_schema(&schema)),
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
        assert_eq!(crd.cel_verdicts.0.lock().unwrap().len(), 4);
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
        let v = apply_defaults(&schema(), &json!({"spec": {"name": "a"}}));
        assert_eq!(v["spec"]["tier"], "A");
    }
}
