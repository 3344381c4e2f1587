//! deploy/ and the Helm chart grant exactly the permissions of `recording_operator::rbac`: no
//! rule missing (the operator would fail with 403), none more (least privilege).

#[path = "deploy_support/helm.rs"]
mod helm;

use std::collections::BTreeSet;
use std::path::Path;

use recording_operator::rbac::{grants, NAMESPACED_RULES, RULES};
use serde_json::{json, Value};

type Grants = BTreeSet<(String, String, String)>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `(api group, resource, verb)` for every permission of a ClusterRole or Role object.
fn grants_of(role: &Value) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_array().expect("a role has rules") {
        assert!(
            rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(),
            "unexpected rule shape: {rule}"
        );
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcards grant more than the operator needs: {rule}"
                    );
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn assert_same(place: &str, actual: &Grants, expected: &Grants) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{place}: missing {missing:?}, more than needed {extra:?}"
    );
}

#[test]
fn deploy_grants_exactly_the_rules() {
    let text = std::fs::read_to_string(root().join("deploy/rbac.yaml")).unwrap();
    let docs = helm::split_documents(&text).unwrap();
    assert_same(
        "deploy/rbac.yaml ClusterRole",
        &grants_of(only(&docs, "ClusterRole")),
        &grants(RULES),
    );
    let role = only(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"], "recording-operator-system");
    assert_same(
        "deploy/rbac.yaml Role",
        &grants_of(role),
        &grants(NAMESPACED_RULES),
    );

    // Both are bound to the operator's ServiceAccount.
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let binding = only(&docs, kind);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "recording-operator", "namespace": "recording-operator-system"}]),
            "{kind}"
        );
    }
    assert_eq!(
        only(&docs, "ClusterRoleBinding")["roleRef"]["name"],
        "recording-operator"
    );
    assert_eq!(
        only(&docs, "RoleBinding")["roleRef"]["name"],
        "recording-operator-leader-election"
    );
}

#[test]
fn chart_grants_exactly_the_rules() {
    let release = helm::Release {
        name: "rec",
        namespace: "platform",
    };
    let rendered = helm::render(
        &root().join("charts/recording-operator"),
        &release,
        json!({}),
    )
    .unwrap();
    let docs: Vec<Value> = rendered.into_iter().flat_map(|r| r.documents).collect();
    assert_same(
        "chart ClusterRole",
        &grants_of(only(&docs, "ClusterRole")),
        &grants(RULES),
    );
    let role = only(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"], "platform");
    assert_same("chart Role", &grants_of(role), &grants(NAMESPACED_RULES));
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        assert_eq!(
            only(&docs, kind)["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rec", "namespace": "platform"}]),
            "{kind}"
        );
    }
    assert_eq!(only(&docs, "ServiceAccount")["metadata"]["name"], "rec");
}

#[test]
fn the_rules_cover_what_the_spec_names() {
    let all = grants(RULES);
    let has = |group: &str, resource: &str, verb: &str| {
        all.contains(&(group.to_owned(), resource.to_owned(), verb.to_owned()))
    };
    for resource in ["tenants", "consentgrants", "recordingservices"] {
        for verb in ["get", "list", "watch", "patch"] {
            assert!(
                has("recording.m365.io", resource, verb),
                "{resource} {verb}"
            );
        }
        assert!(has(
            "recording.m365.io",
            &format!("{resource}/status"),
            "patch"
        ));
        assert!(has(
            "recording.m365.io",
            &format!("{resource}/finalizers"),
            "update"
        ));
    }
    assert!(
        !has("", "secrets", "create") && !has("", "secrets", "patch"),
        "secrets are read only"
    );
    assert!(
        !has("recording.m365.io", "tenants", "create"),
        "tenants are the users' to create"
    );
    assert!(
        !has("coordination.k8s.io", "leases", "get"),
        "leases only in the Role"
    );
}
