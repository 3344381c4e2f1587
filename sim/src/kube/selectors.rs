//! Label and field selectors from list/watch query strings.
//!
//! Matching uses kube-core's `Selector`/`Expression` (the same model kube-rs clients build);
//! only the text form (`a=b,c!=d,e in (f,g),!h`) is parsed here, since no crate parses it.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};
use serde_json::Value;

use super::error::ApiError;

/// Parse a label selector (`labelSelector=`) into kube-core's model.
pub fn parse_label_selector(text: &str) -> Result<Selector, ApiError> {
    let mut exprs = Vec::new();
    for term in split_terms(text) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        exprs.push(parse_term(term).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{term}', expected: valid label selector"
            ))
        })?);
    }
    Ok(exprs.into_iter().collect())
}

/// Split on commas that are not inside `( … )`.
fn split_terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse_term(term: &str) -> Option<Expression> {
    if let Some(key) = term.strip_prefix('!') {
        return valid_key(key.trim()).then(|| Expression::DoesNotExist(key.trim().to_string()));
    }
    for (op, set_based) in [(" notin ", true), (" in ", true)] {
        if let Some((key, rest)) = term.split_once(op) {
            let key = key.trim();
            let rest = rest.trim();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            let values: BTreeSet<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if !valid_key(key) || !set_based {
                return None;
            }
            return Some(if op == " in " {
                Expression::In(key.to_string(), values)
            } else {
                Expression::NotIn(key.to_string(), values)
            });
        }
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = term.split_once(op) {
            let (key, value) = (key.trim(), value.trim());
            if !valid_key(key) {
                return None;
            }
            return Some(if op == "!=" {
                Expression::NotEqual(key.to_string(), value.to_string())
            } else {
                Expression::Equal(key.to_string(), value.to_string())
            });
        }
    }
    valid_key(term).then(|| Expression::Exists(term.to_string()))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A field selector: `metadata.name` and `metadata.namespace` everywhere, plus the fields a
/// kind supports (`involvedObject.name` for Events, a CRD's `selectableFields`, …), with
/// `=`, `==` and `!=`.
#[derive(Debug, Default, Clone)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>, // (field, equal?, value)
}

impl FieldSelector {
    pub fn parse(text: &str, extra_fields: &[String]) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let known = field == "metadata.name"
                || field == "metadata.namespace"
                || extra_fields.iter().any(|f| f == field);
            if !known {
                let mut all = vec![
                    "\"metadata.name\"".to_string(),
                    "\"metadata.namespace\"".to_string(),
                ];
                all.extend(extra_fields.iter().map(|f| format!("\"{f}\"")));
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only {}",
                    all.join(", ")
                )));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let found = field.split('.').try_fold(object, |v, k| v.get(k));
            let actual = match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// Both selectors of one list/watch request.
#[derive(Debug, Clone)]
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(
        label: Option<&str>,
        field: Option<&str>,
        extra_fields: &[String],
    ) -> Result<Self, ApiError> {
        Ok(Filter {
            labels: parse_label_selector(label.unwrap_or_default())?,
            fields: FieldSelector::parse(field.unwrap_or_default(), extra_fields)?,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(&labels_of(object)) && self.fields.matches(object)
    }

    /// No label or field terms: every object matches, without looking at it.
    pub fn selects_all(&self) -> bool {
        self.labels.selects_all() && self.fields.terms.is_empty()
    }
}

/// Does a `metav1.LabelSelector` object (matchLabels/matchExpressions) select these labels?
pub fn label_selector_object_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let parsed: Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector, _> =
        serde_json::from_value(selector.clone());
    match parsed.ok().map(Selector::try_from) {
        Some(Ok(sel)) => sel.matches(labels),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "n", "labels": labels}})
    }

    #[test]
    fn no_terms_select_everything() {
        let f = Filter::parse(None, None, &[]).unwrap();
        assert!(f.selects_all());
        assert!(f.matches(&obj(json!({}))));
        assert!(!Filter::parse(Some("app=web"), None, &[])
            .unwrap()
            .selects_all());
    }

    #[test]
    fn equality_and_set_based_terms() {
        let f = Filter::parse(Some("app=web,tier in (front, back),!legacy"), None, &[]).unwrap();
        assert!(f.matches(&obj(json!({"app": "web", "tier": "front"}))));
        assert!(!f.matches(&obj(json!({"app": "web", "tier": "db"}))));
        assert!(!f.matches(&obj(json!({"app": "web", "tier": "front", "legacy": "1"}))));
        let f = Filter::parse(Some("app!=web,env notin (prod),team"), None, &[]).unwrap();
        assert!(f.matches(&obj(json!({"app": "api", "team": "x"}))));
        assert!(!f.matches(&obj(json!({"app": "api", "team": "x", "env": "prod"}))));
    }

    #[test]
    fn field_selectors_name_and_namespace() {
        let f = Filter::parse(None, Some("metadata.name=a,metadata.namespace!=m"), &[]).unwrap();
        assert!(f.matches(&obj(json!({}))));
        assert!(!f.selects_all());
        let f = Filter::parse(None, Some("metadata.name==b"), &[]).unwrap();
        assert!(!f.matches(&obj(json!({}))));
        let e = Filter::parse(None, Some("spec.x=1"), &[]).unwrap_err();
        assert_eq!(e.code, 400);
        let f = Filter::parse(None, Some("spec.x=1"), &["spec.x".to_string()]).unwrap();
        assert!(f.matches(&json!({"spec": {"x": 1}})));
        assert!(!f.matches(&json!({"spec": {"x": 2}})));
    }
}
