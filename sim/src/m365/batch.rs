//! JSON batching (`POST /v1.0/$batch`): up to 20 requests with relative URLs, run in an
//! order that respects `dependsOn`; an item whose dependency failed is not run and answers
//! 424. The batch itself answers 200 whatever its items answered; a malformed batch, or
//! one of more than 20 requests, answers 400 as a whole.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::graph::GraphError;

/// The most requests one batch may carry.
pub const MAX_BATCH_REQUESTS: usize = 20;

/// One request of a batch body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchItem {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<Value>,
}

/// One response of a batch body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemReply {
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body: Value,
}

/// Parses and validates a batch body; the items come back in an order where every item
/// follows the items it depends on.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<BatchItem>, GraphError> {
    let invalid = |m: &str| GraphError::new(400, "BadRequest", m.to_string());
    let parsed: BatchBody =
        serde_json::from_slice(body).map_err(|_| invalid("Invalid batch payload format."))?;
    if parsed.requests.len() > MAX_BATCH_REQUESTS {
        return Err(invalid(&format!(
            "The number of requests in the batch ({}) exceeds the maximum of {MAX_BATCH_REQUESTS}.",
            parsed.requests.len()
        )));
    }
    let mut items = Vec::new();
    for raw in parsed.requests {
        let item: BatchItem = serde_json::from_value(raw).map_err(|e| {
            invalid(&format!(
                "Invalid batch request: every request needs a string id, method and url ({e})."
            ))
        })?;
        if items
            .iter()
            .any(|i: &BatchItem| i.id.eq_ignore_ascii_case(&item.id))
        {
            return Err(invalid(&format!(
                "Batch request contains a duplicate id '{}'.",
                item.id
            )));
        }
        items.push(item);
    }
    for item in &items {
        for dep in &item.depends_on {
            if !items.iter().any(|i| i.id.eq_ignore_ascii_case(dep)) {
                return Err(invalid(&format!(
                    "Request '{}' depends on a request id '{dep}' that is not in the batch.",
                    item.id
                )));
            }
        }
    }
    order(items).ok_or_else(|| invalid("The dependsOn references of the batch form a cycle."))
}

/// A dependency-respecting order (stable for independent items), or `None` on a cycle.
fn order(mut pending: Vec<BatchItem>) -> Option<Vec<BatchItem>> {
    let mut done: HashSet<String> = HashSet::new();
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|i| {
            i.depends_on
                .iter()
                .all(|d| done.contains(&d.to_ascii_lowercase()))
        })?;
        let item = pending.remove(ready);
        done.insert(item.id.to_ascii_lowercase());
        ordered.push(item);
    }
    Some(ordered)
}

/// Runs the items in order through `run`; an item whose dependency did not succeed (2xx)
/// gets 424 instead. Responses are returned in the reverse of the execution order: Graph
/// promises no order, and clients that pair responses by position must fail in tests.
pub(crate) fn execute(items: &[BatchItem], mut run: impl FnMut(&BatchItem) -> ItemReply) -> Value {
    let mut statuses: Vec<(String, u16)> = Vec::new();
    let mut responses = Vec::new();
    for item in items {
        let failed_dependency = item.depends_on.iter().any(|d| {
            statuses
                .iter()
                .any(|(id, status)| id.eq_ignore_ascii_case(d) && !(200..300).contains(status))
        });
        let reply = if failed_dependency {
            ItemReply {
                status: 424,
                headers: json_headers(),
                body: json!({"error": {"code": "FailedDependency", "message": "The request was not run because a request it depends on failed."}}),
            }
        } else {
            run(item)
        };
        statuses.push((item.id.clone(), reply.status));
        responses.push(json!({
            "id": item.id,
            "status": reply.status,
            "headers": reply.headers,
            "body": reply.body,
        }));
    }
    responses.reverse();
    json!({ "responses": responses })
}

/// The headers every item response carries.
pub(crate) fn json_headers() -> Map<String, Value> {
    let mut h = Map::new();
    h.insert(
        "Content-Type".into(),
        Value::String("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".into()),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Vec<u8> {
        let requests: Vec<Value> = (1..=n)
            .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/organization"}))
            .collect();
        serde_json::to_vec(&json!({ "requests": requests })).unwrap()
    }

    #[test]
    fn at_most_twenty_requests() {
        assert_eq!(parse(&body(20)).unwrap().len(), 20);
        let err = parse(&body(21)).unwrap_err();
        assert_eq!((err.status, err.code), (400, "BadRequest"));
    }

    #[test]
    fn dependencies_run_first_and_failures_cascade() {
        let raw = json!({"requests": [
            {"id": "b", "method": "GET", "url": "/x", "dependsOn": ["a"]},
            {"id": "c", "method": "GET", "url": "/y", "dependsOn": ["b"]},
            {"id": "a", "method": "GET", "url": "/z"},
        ]});
        let items = parse(&serde_json::to_vec(&raw).unwrap()).unwrap();
        let ids: Vec<_> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let out = execute(&items, |i| ItemReply {
            status: if i.id == "a" { 404 } else { 200 },
            headers: json_headers(),
            body: json!({}),
        });
        let statuses: Vec<_> = out["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            [
                ("c".to_string(), 424),
                ("b".to_string(), 424),
                ("a".to_string(), 404)
            ]
        );
    }

    #[test]
    fn cycles_and_unknown_dependencies_are_rejected() {
        let cycle = json!({"requests": [
            {"id": "a", "method": "GET", "url": "/x", "dependsOn": ["b"]},
            {"id": "b", "method": "GET", "url": "/y", "dependsOn": ["a"]},
        ]});
        assert!(parse(&serde_json::to_vec(&cycle).unwrap()).is_err());
        let dangling =
            json!({"requests": [{"id": "a", "method": "GET", "url": "/x", "dependsOn": ["z"]}]});
        assert!(parse(&serde_json::to_vec(&dangling).unwrap()).is_err());
    }
}
