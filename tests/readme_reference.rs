//! The README's resource reference stays in step with the CRD schemas: every spec field and
//! every top-level status field of each kind is named there.

use recording_operator::crd::crds;
use serde_json::Value;

/// Objects documented as a whole rather than field by field.
const OPAQUE: &[&str] = &["spec.bot.resources", "spec.appRegistration.clientSecretRef"];

fn paths(schema: &Value, prefix: &str, out: &mut Vec<String>, descend: bool) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, sub) in props {
        let path = format!("{prefix}.{name}");
        let is_object = sub.get("type").and_then(Value::as_str) == Some("object");
        if descend
            && is_object
            && !OPAQUE.contains(&path.as_str())
            && sub.get("properties").is_some()
        {
            paths(sub, &path, out, descend);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn readme_names_every_field_of_every_kind() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for crd in crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut fields = Vec::new();
        paths(&schema["properties"]["spec"], "spec", &mut fields, true);
        paths(
            &schema["properties"]["status"],
            "status",
            &mut fields,
            false,
        );
        for field in fields {
            if !readme.contains(&format!("`{field}`")) {
                missing.push(format!("{}: {field}", crd.spec.names.kind));
            }
        }
        for column in crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
        {
            if !readme.contains(&column.name.to_uppercase()) {
                missing.push(format!("{}: column {}", crd.spec.names.kind, column.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md does not document: {missing:#?}"
    );
}
