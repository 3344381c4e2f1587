//! Events are one resource served in two shapes, as on the real server: `core/v1` (what
//! `kubectl get events` and `kubectl describe` read) and `events.k8s.io/v1` (what kube-rs's
//! recorder writes). They are stored in the core shape and converted on the way in and out.

use serde_json::{Map, Value};

/// core/v1 field ↔ events.k8s.io/v1 field.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(object: Value, from_core: bool) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let out: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            let renamed = RENAMES.iter().find_map(|(core, v1)| {
                if from_core && k == *core {
                    Some(v1.to_string())
                } else if !from_core && k == *v1 {
                    Some(core.to_string())
                } else {
                    None
                }
            });
            (renamed.unwrap_or(k), v)
        })
        .collect();
    Value::Object(out)
}

/// A stored (core/v1) Event as events.k8s.io/v1 serves it.
pub fn event_to_v1(core: Value) -> Value {
    rename(core, true)
}

/// An events.k8s.io/v1 Event in its stored (core/v1) shape.
pub fn event_to_core(v1: Value) -> Value {
    rename(v1, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_renames_fields() {
        let v1 = json!({"regarding": {"name": "t"}, "note": "hi", "reportingController": "op", "reason": "R"});
        let core = event_to_core(v1.clone());
        assert_eq!(
            core,
            json!({"involvedObject": {"name": "t"}, "message": "hi", "reportingComponent": "op", "reason": "R"})
        );
        assert_eq!(event_to_v1(core), v1);
    }
}
