//! The ValidatingAdmissionPolicies of docs/rules-across-objects.md, evaluated as the API server
//! would for one stored object as `params`: a duplicate is refused with a message naming the
//! field and the holder; distinct values, the object itself and updates that keep the value
//! pass. Each policy is the YAML block after a `<!-- policy: NAME -->` line.

use kube_cel::{AdmissionRequest, VapEvaluator, VapExpression};
use serde_json::{json, Value};

fn policy(name: &str) -> Vec<VapExpression> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/rules-across-objects.md"
    ))
    .unwrap();
    let marker = format!("<!-- policy: {name} -->");
    let after = &doc[doc.find(&marker).expect("the policy is in the docs") + marker.len()..];
    let block = after
        .split("```yaml")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let policy: Value = block
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .unwrap();
    policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| VapExpression {
            expression: v["expression"].as_str().unwrap().to_string(),
            message: None,
            message_expression: v["messageExpression"].as_str().map(str::to_string),
        })
        .collect()
}

/// The messages of the refused validations; empty when admitted.
fn refusals(
    rules: &[VapExpression],
    object: &Value,
    old: Option<&Value>,
    params: &Value,
) -> Vec<String> {
    let request = AdmissionRequest {
        operation: if old.is_some() { "UPDATE" } else { "CREATE" }.into(),
        name: object["metadata"]["name"].as_str().unwrap().into(),
        ..Default::default()
    };
    let mut evaluator = VapEvaluator::builder()
        .object(object.clone())
        .request(request)
        .params(params.clone());
    if let Some(old) = old {
        evaluator = evaluator.old_object(old.clone());
    }
    evaluator
        .build()
        .evaluate(rules)
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| r.message.unwrap_or_default())
        .collect()
}

fn tenant(name: &str, customer: &str, domain: &str, short: &str, id: Option<&str>) -> Value {
    let mut t = json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"customerName": customer, "domain": domain, "shortName": short}
    });
    if let Some(id) = id {
        t["spec"]["tenantId"] = json!(id);
    }
    t
}

const ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

#[test]
fn the_tenant_policy_refuses_each_duplicate_value_and_only_those() {
    let rules = policy("tenants");
    assert_eq!(rules.len(), 4);
    let stored = tenant(
        "contoso",
        "Contoso",
        "contoso.onmicrosoft.com",
        "cts",
        Some(ID),
    );

    let distinct = tenant(
        "fabrikam",
        "Fabrikam",
        "fabrikam.onmicrosoft.com",
        "fab",
        None,
    );
    assert_eq!(
        refusals(&rules, &distinct, None, &stored),
        Vec::<String>::new()
    );

    let copy = tenant(
        "contoso2",
        "CONTOSO",
        "contoso.onmicrosoft.com",
        "CTS",
        Some(&ID.to_uppercase()),
    );
    let refused = refusals(&rules, &copy, None, &stored);
    assert_eq!(
        refused,
        [
            "spec.customerName CONTOSO is already used by Tenant contoso",
            "spec.domain contoso.onmicrosoft.com is already used by Tenant contoso",
            "spec.shortName CTS is already used by Tenant contoso",
            &format!(
                "spec.tenantId {} is already the Entra tenant of Tenant contoso",
                ID.to_uppercase()
            ),
        ]
    );

    // A tenant id the other Tenant resolved (status only) is taken too.
    let mut resolved = tenant("resolved", "R", "r.example.com", "r", None);
    resolved["status"] = json!({"tenantId": ID});
    let same_id = tenant("other", "O", "o.example.com", "o", Some(ID));
    assert_eq!(refusals(&rules, &same_id, None, &resolved).len(), 1);

    // The object itself (an update evaluated against its own stored copy) passes.
    assert_eq!(
        refusals(&rules, &stored, Some(&stored), &stored),
        Vec::<String>::new()
    );
    // An update of an existing duplicate that leaves the values alone passes; renaming a
    // short name onto a taken one does not.
    let mut edited = copy.clone();
    edited["spec"]["notes"] = json!("edited");
    assert_eq!(
        refusals(&rules, &edited, Some(&copy), &stored),
        Vec::<String>::new()
    );
    let before = tenant(
        "fabrikam",
        "Fabrikam",
        "fabrikam.onmicrosoft.com",
        "fab",
        None,
    );
    let renamed = tenant(
        "fabrikam",
        "Fabrikam",
        "fabrikam.onmicrosoft.com",
        "cts",
        None,
    );
    assert_eq!(
        refusals(&rules, &renamed, Some(&before), &stored),
        ["spec.shortName cts is already used by Tenant contoso"]
    );
}

#[test]
fn the_service_policy_refuses_a_short_name_of_the_same_tenant_only() {
    let rules = policy("services");
    let service = |name: &str, tenant: &str, short: &str| {
        json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
            "metadata": {"name": name, "namespace": format!("tenant-{tenant}")},
            "spec": {"tenantRef": tenant, "shortName": short, "licensedUsers": 10}
        })
    };
    let stored = service("main", "contoso", "Rec");
    assert_eq!(
        refusals(&rules, &service("second", "contoso", "rec"), None, &stored),
        ["spec.shortName rec is already used by RecordingService main"]
    );
    assert!(refusals(
        &rules,
        &service("second", "contoso", "other"),
        None,
        &stored
    )
    .is_empty());
    assert!(refusals(&rules, &service("second", "fabrikam", "Rec"), None, &stored).is_empty());
    assert!(refusals(&rules, &stored, Some(&stored), &stored).is_empty());
}
