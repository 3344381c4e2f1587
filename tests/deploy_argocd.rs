//! The Argo CD health check documented in docs/operations.md, run by a real Lua 5.1 interpreter
//! (Argo CD's Lua is 5.1) against Tenant objects in every state.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// The Lua script of the `resource.customizations.health.recording.m365.io_Tenant` key.
fn script() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let key = "resource.customizations.health.recording.m365.io_Tenant: |\n";
    let start = doc.find(key).expect("the health check is documented") + key.len();
    let block = &doc[start..doc[start..].find("```").unwrap() + start];
    block
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Lua table constructor for a JSON value.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).unwrap(),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", serde_json::to_string(k).unwrap(), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `(status, message)` the health check gives `obj`.
fn health(obj: Value) -> (String, String) {
    let program = format!(
        "local obj = {}\nlocal function check()\n{}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(&obj),
        script()
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 runs (scripts/install-test-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{program}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

fn tenant(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso", "generation": generation},
        "status": {"observedGeneration": observed, "conditions": conditions}
    })
}

fn condition(kind: &str, status: &str, generation: i64, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": "R", "message": message, "observedGeneration": generation})
}

#[test]
fn a_new_tenant_is_progressing() {
    let obj = json!({"kind": "Tenant", "metadata": {"name": "contoso", "generation": 1}});
    assert_eq!(
        health(obj),
        ("Progressing".into(), "Waiting for the operator".into())
    );
}

#[test]
fn a_tenant_waiting_for_consent_is_progressing_with_the_alarm() {
    let obj = tenant(
        1,
        1,
        json!([
            condition(
                "ConsentsGranted",
                "False",
                1,
                "consent missing: directory, recording"
            ),
            condition("Ready", "False", 1, "consent missing: directory, recording"),
        ]),
    );
    assert_eq!(
        health(obj),
        (
            "Progressing".into(),
            "consent missing: directory, recording".into()
        )
    );
}

#[test]
fn a_suspended_tenant_is_suspended_whatever_its_status() {
    // Suspending bumps the generation; the operator then leaves the status alone.
    let mut obj = tenant(
        4,
        3,
        json!([condition(
            "Ready",
            "True",
            3,
            "all mandatory consents granted"
        )]),
    );
    obj["spec"] = json!({"suspend": true});
    assert_eq!(
        health(obj),
        (
            "Suspended".into(),
            "Reconciling is suspended (spec.suspend)".into()
        )
    );
}

#[test]
fn a_ready_tenant_on_its_current_generation_is_healthy() {
    let obj = tenant(
        3,
        3,
        json!([condition(
            "Ready",
            "True",
            3,
            "all mandatory consents granted"
        )]),
    );
    assert_eq!(
        health(obj),
        ("Healthy".into(), "all mandatory consents granted".into())
    );
}

#[test]
fn a_spec_change_not_yet_observed_is_progressing_even_when_ready() {
    let obj = tenant(4, 3, json!([condition("Ready", "True", 3, "ok")]));
    assert_eq!(
        health(obj),
        (
            "Progressing".into(),
            "Waiting for the operator to observe generation 4".into()
        )
    );
    let stale_condition = tenant(4, 4, json!([condition("Ready", "True", 3, "ok")]));
    assert_eq!(health(stale_condition).0, "Progressing");
}

#[test]
fn a_stalled_tenant_is_degraded() {
    let obj = tenant(
        2,
        2,
        json!([
            condition("Ready", "False", 2, "spec.retention.days: at most 730"),
            condition("Stalled", "True", 2, "spec.retention.days: at most 730"),
        ]),
    );
    assert_eq!(
        health(obj),
        ("Degraded".into(), "spec.retention.days: at most 730".into())
    );
}
