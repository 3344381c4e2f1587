//! The field rules of the three resources, each at its edges, through the same validation the
//! reconcilers run (the CRD's own schema + CEL rules).

use kube::CustomResourceExt;
use recording_operator::crd::validation::{
    validate_consent_grant, validate_recording_service, validate_tenant, Violations,
};
use recording_operator::crd::{ConsentGrant, RecordingService, Tenant};
use serde_json::{json, Value};

fn tenant_json() -> Value {
    json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso"},
        "spec": {
            "customerName": "Contoso-Ltd",
            "domain": "contoso.onmicrosoft.com",
            "shortName": "Contoso",
            "contactEmails": ["ops@contoso.com"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"],
            "license": "Pro",
            "includedUsers": 250,
            "storage": {"location": "westeurope"}
        }
    })
}

fn tenant_with(path: &str, value: Value) -> Tenant {
    let mut t = tenant_json();
    set(&mut t, path, value);
    serde_json::from_value(t).expect("fixture deserializes")
}

fn set(doc: &mut Value, path: &str, value: Value) {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert(json!({}));
    }
    cur[parts[parts.len() - 1]] = value;
}

fn tenant_errors(path: &str, value: Value) -> Option<Violations> {
    validate_tenant(&tenant_with(path, value), None).err()
}

#[track_caller]
fn assert_rejected(path: &str, value: Value, field: &str) {
    let errs = tenant_errors(path, value.clone())
        .unwrap_or_else(|| panic!("{path}={value} was accepted, expected a violation on {field}"));
    assert!(
        errs.names_field(field),
        "{path}={value}: expected {field}, got {errs}"
    );
}

#[track_caller]
fn assert_accepted(path: &str, value: Value) {
    if let Some(errs) = tenant_errors(path, value.clone()) {
        panic!("{path}={value} was rejected: {errs}");
    }
}

#[test]
fn the_example_tenant_is_valid() {
    let t: Tenant = serde_json::from_value(tenant_json()).unwrap();
    validate_tenant(&t, None).unwrap();
    assert_eq!(t.spec.retention.days, None, "days has no schema default");
    assert_eq!(
        t.spec.retention.limit_days(),
        Some(365),
        "the operator applies 12 months"
    );
    assert!(!t.spec.allow_exceed_included_users);
}

#[test]
fn customer_name_is_1_to_128_characters() {
    assert_accepted("spec.customerName", json!("a".repeat(128)));
    assert_accepted("spec.customerName", json!("a"));
    assert_rejected(
        "spec.customerName",
        json!("a".repeat(129)),
        "spec.customerName",
    );
    assert_rejected("spec.customerName", json!(""), "spec.customerName");
    // Letters of any script and other special characters are allowed.
    assert_accepted("spec.customerName", json!("Müller&Söhne_(EU)#1"));
}

#[test]
fn customer_name_hyphens_only_between_characters() {
    assert_accepted("spec.customerName", json!("a-b-c"));
    assert_rejected("spec.customerName", json!("-ab"), "spec.customerName");
    assert_rejected("spec.customerName", json!("ab-"), "spec.customerName");
    assert_rejected("spec.customerName", json!("a--b"), "spec.customerName");
}

#[test]
fn customer_name_forbidden_characters_full_stop_and_white_space() {
    for c in ['\\', '/', ':', '*', '?', '"', '<', '>', '|', '.', ' ', '\t'] {
        assert_rejected(
            "spec.customerName",
            json!(format!("ab{c}cd")),
            "spec.customerName",
        );
    }
    let errs = tenant_errors("spec.customerName", json!("Contoso Ltd")).unwrap();
    assert!(
        errs.to_string().contains("white space"),
        "the message names the rule: {errs}"
    );
}

#[test]
fn customer_name_white_space_means_every_unicode_space() {
    // Vertical tab, next line, no-break space, en quad, ideographic space, line separator.
    for c in [
        '\u{b}', '\u{85}', '\u{a0}', '\u{2000}', '\u{3000}', '\u{2028}',
    ] {
        assert_rejected(
            "spec.customerName",
            json!(format!("Contoso{c}Ltd")),
            "spec.customerName",
        );
        assert_rejected("spec.shortName", json!(format!("a{c}b")), "spec.shortName");
    }
    // Letters and symbols near those code points are still allowed.
    assert_accepted(
        "spec.customerName",
        json!("Contoso\u{ff}\u{2010}\u{3001}Ltd"),
    );
}

#[test]
fn name_rules_spell_white_space_out_for_the_api_server() {
    // The API server's CEL runs RE2, where `\s` is ASCII white space only: a rule written with
    // `\s` would let a no-break space through there while the operator refuses the name.
    fn rules(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(rule)) = map.get("rule") {
                    out.push(rule.clone());
                }
                map.values().for_each(|v| rules(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
            _ => {}
        }
    }
    for (crd, wanted) in [
        (serde_json::to_value(Tenant::crd()).unwrap(), 2),
        (serde_json::to_value(RecordingService::crd()).unwrap(), 1),
    ] {
        let mut found = Vec::new();
        rules(&crd, &mut found);
        let matches: Vec<&String> = found.iter().filter(|r| r.contains("matches(")).collect();
        assert_eq!(matches.len(), wanted, "name rules: {matches:?}");
        for rule in matches {
            assert!(!rule.contains(r"\s"), "no \\s in {rule}");
            assert!(rule.contains(r"\p{Z}"), "separators named in {rule}");
        }
    }
}

#[test]
fn short_name_is_1_to_32_characters_with_the_same_rules() {
    assert_accepted("spec.shortName", json!("b".repeat(32)));
    assert_rejected("spec.shortName", json!("b".repeat(33)), "spec.shortName");
    assert_rejected("spec.shortName", json!("a--b"), "spec.shortName");
    assert_rejected("spec.shortName", json!("a.b"), "spec.shortName");
    assert_rejected("spec.shortName", json!("-a"), "spec.shortName");
}

#[test]
fn contact_emails_and_admin_upns_have_the_right_shape() {
    assert_accepted(
        "spec.contactEmails",
        json!(["first.last+tag@sub.contoso.com"]),
    );
    for bad in [
        "no-at-sign",
        "a@b",
        "a@@contoso.com",
        ".a@contoso.com",
        "a b@contoso.com",
        "a@-contoso.com",
    ] {
        assert_rejected("spec.contactEmails", json!([bad]), "spec.contactEmails[0]");
    }
    assert_rejected("spec.contactEmails", json!([]), "spec.contactEmails");
    assert_accepted(
        "spec.adminUpns",
        json!(["o'neil_admin@contoso.onmicrosoft.com"]),
    );
    for bad in [
        "admin",
        "admin@",
        "@contoso.com",
        "ad..min@contoso.com",
        "admin@contoso",
    ] {
        assert_rejected("spec.adminUpns", json!([bad]), "spec.adminUpns[0]");
    }
    assert_rejected("spec.adminUpns", json!([]), "spec.adminUpns");
}

#[test]
fn domain_is_a_dns_name() {
    assert_accepted("spec.domain", json!("fabrikam.com"));
    assert_rejected("spec.domain", json!("not a domain"), "spec.domain");
    assert_rejected("spec.domain", json!("nodot"), "spec.domain");
    let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
    assert_rejected("spec.domain", json!(long), "spec.domain");
}

#[test]
fn tenant_id_is_a_guid() {
    assert_accepted(
        "spec.tenantId",
        json!("72f988bf-86f1-41af-91ab-2d7cd011db47"),
    );
    assert_rejected(
        "spec.tenantId",
        json!("72f988bf86f141af91ab2d7cd011db47"),
        "spec.tenantId",
    );
    assert_rejected(
        "spec.tenantId",
        json!("72f988bf-86f1-41af-91ab-2d7cd011db4z"),
        "spec.tenantId",
    );
}

#[test]
fn license_is_essentials_or_pro() {
    let mut t = tenant_json();
    set(&mut t, "spec.license", json!("Enterprise"));
    assert!(
        serde_json::from_value::<Tenant>(t).is_err(),
        "unknown license does not parse"
    );
}

#[test]
fn included_users_at_least_one() {
    assert_accepted("spec.includedUsers", json!(1));
    assert_rejected("spec.includedUsers", json!(0), "spec.includedUsers");
}

#[test]
fn tenant_name_makes_a_valid_namespace_name() {
    // tenant-<name> is a DNS label: at most 63 characters, lower-case letters, digits, hyphens.
    assert_accepted("metadata.name", json!("c".repeat(56)));
    assert_accepted("metadata.name", json!("0contoso-ltd"));
    for bad in [
        "c".repeat(57),
        "contoso.com".into(),
        "Contoso".into(),
        "contoso-".into(),
    ] {
        assert_rejected("metadata.name", json!(bad), "metadata.name");
    }
}

#[test]
fn lists_hold_no_duplicates() {
    assert_rejected(
        "spec.contactEmails",
        json!(["ops@contoso.com", "ops@contoso.com"]),
        "spec.contactEmails[1]",
    );
    assert_rejected(
        "spec.adminUpns",
        json!(["a@contoso.com", "b@contoso.com", "a@contoso.com"]),
        "spec.adminUpns[2]",
    );
    assert_rejected(
        "spec.storage.byos",
        json!({"enabled": true, "locations": [
            {"name": "archive", "secretRef": {"name": "a"}},
            {"name": "archive", "secretRef": {"name": "b"}}
        ]}),
        "spec.storage.byos.locations[1]",
    );
    assert_accepted(
        "spec.storage.byos",
        json!({"enabled": true, "locations": [
            {"name": "archive", "secretRef": {"name": "a"}},
            {"name": "archive2", "secretRef": {"name": "a"}}
        ]}),
    );
}

#[test]
fn allow_exceed_included_users_must_be_false() {
    let errs = tenant_errors("spec.allowExceedIncludedUsers", json!(true)).unwrap();
    assert!(errs.names_field("spec.allowExceedIncludedUsers"), "{errs}");
    assert!(errs.to_string().contains("must be false"), "{errs}");
}

#[test]
fn retention_at_most_730_days_unless_unlimited() {
    assert_accepted("spec.retention", json!({"days": 730}));
    let errs = tenant_errors("spec.retention", json!({"days": 731})).unwrap();
    assert!(errs.names_field("spec.retention.days"), "{errs}");
    assert!(errs.to_string().contains("730"), "{errs}");
    assert_accepted("spec.retention", json!({"days": 3650, "unlimited": true}));
    // Without days: 365 applied by the operator, or without limit.
    assert_accepted("spec.retention", json!({}));
    assert_accepted("spec.retention", json!({"unlimited": true}));
    assert_accepted("spec.retention", json!({"unlimited": false}));
}

#[test]
fn byos_locations_only_when_enabled() {
    let loc = json!([{"name": "eu-archive", "secretRef": {"name": "contoso-byos"}}]);
    assert_accepted(
        "spec.storage.byos",
        json!({"enabled": true, "locations": loc.clone()}),
    );
    let errs = tenant_errors(
        "spec.storage.byos",
        json!({"enabled": false, "locations": loc}),
    )
    .unwrap();
    assert!(errs.names_field("spec.storage.byos.locations"), "{errs}");
}

#[test]
fn recording_notification_control_needs_a_legal_waiver() {
    let errs = tenant_errors(
        "spec.compliance",
        json!({"controlRecordingNotifications": true}),
    )
    .unwrap();
    assert!(errs.names_field("spec.compliance.legalWaiverRef"), "{errs}");
    assert_accepted(
        "spec.compliance",
        json!({"controlRecordingNotifications": true, "legalWaiverRef": "LW-2026-001"}),
    );
}

#[test]
fn storage_location_is_a_region_name() {
    assert_rejected(
        "spec.storage.location",
        json!("West Europe"),
        "spec.storage.location",
    );
}

#[test]
fn immutable_fields_cannot_change() {
    let old = tenant_with(
        "spec.tenantId",
        json!("72f988bf-86f1-41af-91ab-2d7cd011db47"),
    );
    for (path, value, field) in [
        ("spec.customerName", json!("Other"), "spec.customerName"),
        ("spec.domain", json!("other.onmicrosoft.com"), "spec.domain"),
        (
            "spec.storage.location",
            json!("northeurope"),
            "spec.storage.location",
        ),
        (
            "spec.tenantId",
            json!("00000000-86f1-41af-91ab-2d7cd011db47"),
            "spec.tenantId",
        ),
    ] {
        let mut new = serde_json::to_value(&old).unwrap();
        set(&mut new, path, value);
        let new: Tenant = serde_json::from_value(new).unwrap();
        let errs = validate_tenant(&new, Some(&old)).expect_err(path);
        assert!(errs.names_field(field), "{path}: {errs}");
        assert!(errs.to_string().contains("immutable"), "{path}: {errs}");
    }
    // Removing a tenant id once set is a change too.
    let mut new = old.clone();
    new.spec.tenant_id = None;
    assert!(validate_tenant(&new, Some(&old)).is_err());
    // Setting it for the first time is allowed, and so are mutable fields.
    let unset = tenant_with("spec.includedUsers", json!(10));
    validate_tenant(&old, Some(&unset)).unwrap();
}

#[test]
fn every_violation_is_reported_at_once() {
    let mut t = tenant_json();
    set(&mut t, "spec.customerName", json!("a--b"));
    set(&mut t, "spec.shortName", json!("x".repeat(40)));
    set(&mut t, "spec.includedUsers", json!(0));
    let t: Tenant = serde_json::from_value(t).unwrap();
    let errs = validate_tenant(&t, None).unwrap_err();
    assert!(
        errs.names_field("spec.shortName") && errs.names_field("spec.includedUsers"),
        "{errs}"
    );
}

fn service(short_name: &str, users: i64) -> RecordingService {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
        "metadata": {"name": "main", "namespace": "tenant-contoso"},
        "spec": {"tenantRef": "contoso", "shortName": short_name, "licensedUsers": users}
    }))
    .unwrap()
}

#[test]
fn service_short_name_is_3_to_15_characters() {
    validate_recording_service(&service("abc", 1), None).unwrap();
    validate_recording_service(&service(&"a".repeat(15), 1), None).unwrap();
    for bad in [
        "ab",
        &"a".repeat(16),
        "rec.main",
        "rec main",
        "rec/main",
        "rec|x",
    ] {
        let errs = validate_recording_service(&service(bad, 1), None).expect_err(bad);
        assert!(errs.names_field("spec.shortName"), "{bad}: {errs}");
    }
}

#[test]
fn service_name_makes_valid_bot_object_names() {
    // <name>-hue-paired names a Deployment and a Service: a DNS-1035 label (63).
    let named = |name: &str| {
        let mut s = service("main", 1);
        s.metadata.name = Some(name.into());
        s
    };
    validate_recording_service(&named(&"r".repeat(52)), None).unwrap();
    for bad in [
        "r".repeat(53),
        "1rec".into(),
        "rec.main".into(),
        "Rec".into(),
    ] {
        let errs = validate_recording_service(&named(&bad), None).expect_err(&bad);
        assert!(errs.names_field("metadata.name"), "{bad}: {errs}");
    }
}

#[test]
fn bot_resources_are_quantities() {
    let with_resources = |resources: Value| -> RecordingService {
        let mut s = serde_json::to_value(service("main", 1)).unwrap();
        s["spec"]["bot"] = json!({ "resources": resources });
        serde_json::from_value(s).unwrap()
    };
    validate_recording_service(
        &with_resources(json!({"requests": {"cpu": "500m", "memory": "1Gi"},
                               "limits": {"cpu": 2, "memory": "1.5e9"}})),
        None,
    )
    .unwrap();
    for (bad, field) in [
        (
            json!({"limits": {"cpu": "1 core"}}),
            "spec.bot.resources.limits.cpu",
        ),
        (
            json!({"requests": {"memory": "1GB"}}),
            "spec.bot.resources.requests.memory",
        ),
    ] {
        let errs = validate_recording_service(&with_resources(bad.clone()), None)
            .expect_err("a bad quantity");
        assert!(errs.names_field(field), "{bad}: {errs}");
    }
}

#[test]
fn service_licensed_users_1_to_500() {
    validate_recording_service(&service("main", 500), None).unwrap();
    validate_recording_service(&service("main", 1), None).unwrap();
    for bad in [0, 501] {
        let errs = validate_recording_service(&service("main", bad), None).expect_err("bound");
        assert!(errs.names_field("spec.licensedUsers"), "{bad}: {errs}");
    }
}

#[test]
fn consent_grant_app_id_is_a_guid_and_keys_are_immutable() {
    let grant = |consent: &str, app_id: &str| -> ConsentGrant {
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
            "metadata": {"name": "recording", "namespace": "tenant-contoso"},
            "spec": {"tenantRef": "contoso", "consent": consent, "appId": app_id,
                     "applicationPermissions": ["Calls.AccessMedia.All"]}
        }))
        .unwrap()
    };
    let ok = grant("recording", "1b4e29c8-1111-4a7b-9c3e-5f6a7b8c9d0e");
    validate_consent_grant(&ok, None).unwrap();
    let errs = validate_consent_grant(&grant("recording", "not-a-guid"), None).unwrap_err();
    assert!(errs.names_field("spec.appId"), "{errs}");
    let errs = validate_consent_grant(
        &grant("directory", "1b4e29c8-1111-4a7b-9c3e-5f6a7b8c9d0e"),
        Some(&ok),
    )
    .unwrap_err();
    assert!(errs.names_field("spec.consent"), "{errs}");
}

/// The examples a platform engineer reads first must be valid.
#[test]
fn deploy_examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "kustomization.yaml" || !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap();
        match doc["kind"].as_str() {
            Some("Tenant") => {
                let t: Tenant = serde_json::from_value(doc).unwrap();
                validate_tenant(&t, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some("RecordingService") => {
                let s: RecordingService = serde_json::from_value(doc).unwrap();
                validate_recording_service(&s, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            other => panic!("{name}: unexpected kind {other:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn a_changed_spec_is_validated_again_even_after_the_object_passed() {
    // The reconcilers validate on every pass; a spec seen valid may skip the rules, but any
    // change to it — even one written without a new generation — is checked in full.
    let mut t = tenant_with(
        "metadata.uid",
        json!("5b0d6a52-0d4e-4b7e-a8f6-9a1c2b3d4e5f"),
    );
    t.metadata.generation = Some(1);
    validate_tenant(&t, None).expect("valid");
    validate_tenant(&t, None).expect("and stays valid");

    t.spec.retention.days = Some(731);
    let errs = validate_tenant(&t, None).expect_err("the changed spec breaks the retention rule");
    assert!(errs.names_field("spec.retention.days"), "{errs}");
    let again = validate_tenant(&t, None).expect_err("a failed verdict is never remembered");
    assert_eq!(again, errs);
}
