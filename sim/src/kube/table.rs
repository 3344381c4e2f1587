//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, built from a CRD's
//! `additionalPrinterColumns` (JSONPath through `jsonpath-rust`) or from the built-in columns
//! of the real server for the kinds simulated here.

use chrono::{DateTime, Utc};
use jsonpath_rust::JsonPath;
use serde_json::{json, Value};

use super::resources::ResourceType;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    source: Source,
}

enum Source {
    Name,
    Age,
    JsonPath(String),
    Builtin(fn(&Value) -> Value),
}

fn col(name: &str, kind: &str, priority: i64, source: Source) -> Column {
    Column {
        name: name.to_string(),
        kind: kind.to_string(),
        format: if matches!(source, Source::Name) {
            "name".into()
        } else {
            String::new()
        },
        description: String::new(),
        priority,
        source,
    }
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let name = col("Name", "string", 0, Source::Name);
    let age = col("Age", "date", 0, Source::Age);
    if let Some(crd) = &rt.crd {
        if crd.printer_columns.is_empty() {
            return vec![name, age];
        }
        let mut out = vec![Column {
            description: "Name must be unique within a namespace.".into(),
            ..name
        }];
        for c in &crd.printer_columns {
            out.push(Column {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                kind: c["type"].as_str().unwrap_or("string").to_string(),
                format: c["format"].as_str().unwrap_or_default().to_string(),
                description: c["description"].as_str().unwrap_or_default().to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
                source: Source::JsonPath(c["jsonPath"].as_str().unwrap_or_default().to_string()),
            });
        }
        return out;
    }
    let b = |n: &str, f: fn(&Value) -> Value| col(n, "string", 0, Source::Builtin(f));
    match rt.kind.as_str() {
        "Namespace" => vec![name, b("Status", |o| o["status"]["phase"].clone()), age],
        "ConfigMap" => vec![
            name,
            col(
                "Data",
                "integer",
                0,
                Source::Builtin(|o| json!(count(&o["data"]) + count(&o["binaryData"]))),
            ),
            age,
        ],
        "Secret" => vec![
            name,
            b("Type", |o| o["type"].clone()),
            col(
                "Data",
                "integer",
                0,
                Source::Builtin(|o| json!(count(&o["data"]))),
            ),
            age,
        ],
        "Deployment" => vec![
            name,
            b("Ready", |o| {
                json!(format!(
                    "{}/{}",
                    o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                ))
            }),
            col(
                "Up-to-date",
                "integer",
                0,
                Source::Builtin(|o| json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0))),
            ),
            col(
                "Available",
                "integer",
                0,
                Source::Builtin(|o| json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0))),
            ),
            age,
        ],
        "Service" => vec![
            name,
            b("Type", |o| o["spec"]["type"].clone()),
            b("Cluster-IP", |o| o["spec"]["clusterIP"].clone()),
            b("Ports", |o| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                    .collect();
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                })
            }),
            age,
        ],
        "PersistentVolumeClaim" => vec![name, b("Status", |o| o["status"]["phase"].clone()), age],
        "Lease" => vec![
            name,
            b("Holder", |o| o["spec"]["holderIdentity"].clone()),
            age,
        ],
        // Served shapes differ (core: involvedObject/message, events.k8s.io: regarding/note).
        "Event" => vec![
            b("Last Seen", |o| {
                let seen = [
                    &o["series"]["lastObservedTime"],
                    &o["lastTimestamp"],
                    &o["deprecatedLastTimestamp"],
                    &o["eventTime"],
                    &o["metadata"]["creationTimestamp"],
                ]
                .into_iter()
                .find(|t| t.is_string())
                .cloned()
                .unwrap_or(Value::Null);
                age_of(&seen, Utc::now())
            }),
            b("Type", |o| o["type"].clone()),
            b("Reason", |o| o["reason"].clone()),
            b("Object", |o| {
                let r = if o["regarding"].is_object() {
                    &o["regarding"]
                } else {
                    &o["involvedObject"]
                };
                json!(format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or_default().to_lowercase(),
                    r["name"].as_str().unwrap_or_default()
                ))
            }),
            b("Message", |o| {
                if o["note"].is_string() {
                    o["note"].clone()
                } else {
                    o["message"].clone()
                }
            }),
        ],
        "CustomResourceDefinition" => vec![
            name,
            col(
                "Created At",
                "date",
                0,
                Source::Builtin(|o| o["metadata"]["creationTimestamp"].clone()),
            ),
        ],
        _ => vec![name, age],
    }
}

fn count(v: &Value) -> usize {
    v.as_object().map(|m| m.len()).unwrap_or(0)
}

/// The real server's `duration.HumanDuration` as `kubectl` shows ages.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{y}y")
    }
}

fn age_of(timestamp: &Value, now: DateTime<Utc>) -> Value {
    match timestamp
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        Some(t) => json!(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
        None => json!("<unknown>"),
    }
}

/// Evaluate a printer column's Kubernetes JSONPath (`.status.conditions[?(@.type=="Ready")].status`).
fn jsonpath(object: &Value, path: &str) -> Value {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let full = if path.starts_with('$') {
        path.to_string()
    } else {
        format!("${path}")
    };
    // Like the real table convertor, only the first result is shown.
    match object.query(&full) {
        Ok(found) => found.first().map(|v| (*v).clone()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn cell(c: &Column, object: &Value, now: DateTime<Utc>) -> Value {
    let raw = match &c.source {
        Source::Name => object["metadata"]["name"].clone(),
        Source::Age => return age_of(&object["metadata"]["creationTimestamp"], now),
        // Built-in columns are already formatted the way the real printers do.
        Source::Builtin(f) => return f(object),
        Source::JsonPath(p) => jsonpath(object, p),
    };
    if raw.is_null() {
        return raw;
    }
    match c.kind.as_str() {
        "date" => age_of(&raw, now),
        "integer" => raw.as_i64().map(Value::from).unwrap_or(raw),
        "number" => raw.as_f64().map(Value::from).unwrap_or(raw),
        "boolean" => raw.as_bool().map(Value::from).unwrap_or(raw),
        _ => match raw {
            Value::String(_) => raw,
            Value::Array(_) | Value::Object(_) => json!(raw.to_string()),
            other => json!(other.to_string()),
        },
    }
}

fn row(cols: &[Column], object: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let cells: Vec<Value> = cols.iter().map(|c| cell(c, object, now)).collect();
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => r["object"] = object.clone(),
        IncludeObject::Metadata => r["object"] = partial_metadata(object),
    }
    r
}

pub fn partial_metadata(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// A Table of `objects`, with list metadata (`resourceVersion`, `continue`).
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    with_headers: bool,
) -> Value {
    let now = Utc::now();
    let cols = columns(rt);
    let defs: Vec<Value> = if with_headers {
        cols.iter()
            .map(|c| {
                json!({"name": c.name, "type": c.kind, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(&cols, o, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3 * 60 * 60 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(20 * 86400), "20d");
    }

    #[test]
    fn jsonpath_filters_conditions() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            json!("True")
        );
        assert_eq!(jsonpath(&o, ".status.missing"), Value::Null);
    }
}
