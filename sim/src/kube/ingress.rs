//! `networking.k8s.io/v1` Ingress: the rules the real server's validation applies on every
//! write (hosts, paths and path types, backends, TLS hosts), and the empty status it stores.

use serde_json::{json, Value};

use super::error::{go_quote, FieldError, FieldErrorKind};
use super::schema;

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const PATH_TYPES: [&str; 3] = ["Exact", "Prefix", "ImplementationSpecific"];

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253
        && schema::regex(DNS1123_SUBDOMAIN)
            .map(|r| r.is_match(s))
            .unwrap_or(false)
}

/// A rule's or a TLS entry's host: a DNS name, optionally `*.`-prefixed, never an IP address.
fn check_host(field: &str, host: &Value, errors: &mut Vec<FieldError>) {
    let Some(h) = host.as_str() else { return };
    if h.parse::<std::net::IpAddr>().is_ok() {
        errors.push(FieldError::invalid(
            field,
            host,
            "must be a DNS name, not an IP address",
        ));
        return;
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    if !is_subdomain(name) {
        errors.push(FieldError::invalid(field, host, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"));
    }
}

fn check_backend(field: &str, backend: &Value, errors: &mut Vec<FieldError>) {
    let service = &backend["service"];
    match (service.is_null(), backend["resource"].is_null()) {
        (true, true) => errors.push(FieldError::required(
            field,
            "one backend (`service` or `resource`) must be specified",
        )),
        (false, false) => errors.push(FieldError::invalid(
            field,
            backend,
            "cannot set both `service` and `resource` backends",
        )),
        _ => {}
    }
    if service.is_null() {
        return;
    }
    if service["name"].as_str().is_none_or(|n| n.is_empty()) {
        errors.push(FieldError::required(format!("{field}.service.name"), ""));
    }
    let port = &service["port"];
    match (port["name"].as_str(), port["number"].as_i64()) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            format!("{field}.service.port"),
            port,
            "cannot set both port name & port number",
        )),
        (None, None) => errors.push(FieldError::required(
            format!("{field}.service.port"),
            "port name or number is required",
        )),
        (None, Some(n)) if !(1..=65535).contains(&n) => errors.push(FieldError::invalid(
            format!("{field}.service.port.number"),
            &port["number"],
            "must be between 1 and 65535, inclusive",
        )),
        _ => {}
    }
}

/// Validates an Ingress and fills its defaults, as the API server does.
pub fn admission(o: &mut Value, errors: &mut Vec<FieldError>) {
    let spec = &o["spec"];
    if let Some(class) = spec["ingressClassName"].as_str() {
        if !is_subdomain(class) {
            errors.push(FieldError::invalid(
                "spec.ingressClassName",
                &spec["ingressClassName"],
                "a lowercase RFC 1123 subdomain",
            ));
        }
    }
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        errors.push(FieldError::invalid(
            "spec.rules",
            &json!([]),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !spec["defaultBackend"].is_null() {
        check_backend("spec.defaultBackend", &spec["defaultBackend"], errors);
    }
    for (i, rule) in rules.iter().enumerate() {
        check_host(&format!("spec.rules[{i}].host"), &rule["host"], errors);
        let paths = rule["http"]["paths"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !rule["http"].is_null() && paths.is_empty() {
            errors.push(FieldError::required(
                format!("spec.rules[{i}].http.paths"),
                "",
            ));
        }
        for (j, path) in paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path_type = path["pathType"].as_str();
            match path_type {
                None => errors.push(FieldError::required(
                    format!("{field}.pathType"),
                    "pathType must be specified",
                )),
                Some(t) if !PATH_TYPES.contains(&t) => errors.push(FieldError {
                    field: format!("{field}.pathType"),
                    kind: FieldErrorKind::NotSupported {
                        value: go_quote(t),
                        supported: PATH_TYPES.iter().map(|s| go_quote(s)).collect(),
                    },
                }),
                _ => {}
            }
            let p = path["path"].as_str().unwrap_or_default();
            if matches!(path_type, Some("Exact") | Some("Prefix")) {
                if !p.starts_with('/') {
                    errors.push(FieldError::invalid(
                        format!("{field}.path"),
                        &path["path"],
                        "must be an absolute path",
                    ));
                }
                for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                    if p.contains(bad) {
                        errors.push(FieldError::invalid(
                            format!("{field}.path"),
                            &path["path"],
                            format!("must not contain '{bad}'"),
                        ));
                    }
                }
                if p.ends_with("/..") || p.ends_with("/.") {
                    errors.push(FieldError::invalid(
                        format!("{field}.path"),
                        &path["path"],
                        "must not end with '/..' or '/.'",
                    ));
                }
            }
            check_backend(&format!("{field}.backend"), &path["backend"], errors);
        }
    }
    for (i, tls) in spec["tls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for (j, host) in tls["hosts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            check_host(&format!("spec.tls[{i}].hosts[{j}]"), host, errors);
        }
        if let Some(secret) = tls["secretName"].as_str() {
            if !is_subdomain(secret) {
                errors.push(FieldError::invalid(
                    format!("spec.tls[{i}].secretName"),
                    &tls["secretName"],
                    "a lowercase RFC 1123 subdomain",
                ));
            }
        }
    }
    if o["status"].is_null() {
        o["status"] = json!({"loadBalancer": {}});
    }
}
