//! Errors of the simulated API server, rendered as `meta/v1` `Status` objects exactly as the
//! real kube-apiserver shapes them (`reason`, `code`, `details`, `causes`).

use serde_json::{json, Value};

/// Starting or serving the simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the bound address: {0}")]
    LocalAddr(std::io::Error),
}

/// One field-level problem, the `field.Error` of the real server.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// `Invalid value: <value>: <detail>`
    Invalid { value: String, detail: String },
    /// `Required value[: <detail>]`
    Required { detail: String },
    /// `Unsupported value: <value>: supported values: "a", "b"`
    NotSupported {
        value: String,
        supported: Vec<String>,
    },
    /// `Too long: may not be more than N bytes`
    TooLong { max: u64 },
    /// `Too many: N: must have at most M items`
    TooMany { count: usize, max: u64 },
    /// `Invalid value: "string": <detail>` for a value of the wrong type
    TypeInvalid { value: String, detail: String },
    /// `Forbidden: <detail>`
    Forbidden { detail: String },
    /// `Duplicate value: <value>`
    Duplicate { value: String },
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid {
                value: go_value(value),
                detail: detail.into(),
            },
        }
    }

    /// Show the value as given (Go's rendering of maps and structs) instead of as JSON.
    pub fn with_raw_value(mut self, raw: &str) -> Self {
        if let FieldErrorKind::Invalid { value, .. } = &mut self.kind {
            *value = raw.to_string();
        }
        self
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required {
                detail: detail.into(),
            },
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden {
                detail: detail.into(),
            },
        }
    }

    /// The `reason` of the cause, as in `metav1.CauseType`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Invalid { .. } => "FieldValueInvalid",
            FieldErrorKind::Required { .. } => "FieldValueRequired",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
            FieldErrorKind::TooMany { .. } => "FieldValueTooMany",
            FieldErrorKind::TypeInvalid { .. } => "FieldValueTypeInvalid",
            FieldErrorKind::Forbidden { .. } => "FieldValueForbidden",
            FieldErrorKind::Duplicate { .. } => "FieldValueDuplicate",
        }
    }

    /// The message of the cause: the error without the field path in front.
    pub fn body(&self) -> String {
        match &self.kind {
            FieldErrorKind::Invalid { value, detail } => {
                if detail.is_empty() {
                    format!("Invalid value: {value}")
                } else {
                    format!("Invalid value: {value}: {detail}")
                }
            }
            FieldErrorKind::Required { detail } => {
                if detail.is_empty() {
                    "Required value".to_string()
                } else {
                    format!("Required value: {detail}")
                }
            }
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                )
            }
            FieldErrorKind::TooLong { max } => {
                format!("Too long: may not be more than {max} bytes")
            }
            FieldErrorKind::TooMany { count, max } => {
                format!("Too many: {count}: must have at most {max} items")
            }
            FieldErrorKind::TypeInvalid { value, detail } => {
                format!("Invalid value: {value}: {detail}")
            }
            FieldErrorKind::Forbidden { detail } => format!("Forbidden: {detail}"),
            FieldErrorKind::Duplicate { value } => format!("Duplicate value: {value}"),
        }
    }

    /// `field: body`, the way the aggregate message lists it.
    pub fn full(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// Render a JSON value the way Go's `%#v`-ish printing in field errors shows it.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        Value::Object(_) => "\"object\"".to_string(),
    }
}

/// Go's `%q`: JSON string quoting is close enough for the characters that occur here.
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// An error answered to the client as a `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429/503 and friends).
    pub retry_after: Option<u64>,
}

/// Identifies an object in error details: `{name, group, kind}` where `kind` is the resource
/// (plural) for most errors, as the real server fills it in.
pub struct Target<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({"name": self.name, "kind": self.plural});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(t: Target) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", t.qualified(), t.name),
        )
        .with_details(t.details())
    }

    pub fn already_exists(t: Target) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", t.qualified(), t.name),
        )
        .with_details(t.details())
    }

    pub fn conflict(t: Target, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                t.qualified(),
                t.name
            ),
        )
        .with_details(t.details())
    }

    pub fn stale(t: Target) -> Self {
        ApiError::conflict(
            t,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(t: Target, why: &str) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{}\" is forbidden: {why}", t.qualified(), t.name),
        )
        .with_details(t.details())
    }

    /// 422 Invalid, listing every field error like `errors.NewInvalid`.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let list = match errors {
            [one] => one.full(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(FieldError::full)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut details = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {list}"),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn not_found_path() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// The generic error for an injected status code.
    pub fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            409 => (
                "Conflict",
                "Operation cannot be fulfilled: injected conflict",
            ),
            429 => (
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            500 => ("InternalError", "Internal error occurred: injected failure"),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted",
            ),
            410 => ("Expired", "the resource version is too old"),
            403 => ("Forbidden", "forbidden: injected failure"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            401 => ("Unauthorized", "Unauthorized"),
            _ => ("InternalError", "injected failure"),
        };
        let mut e = ApiError::new(code, reason, message);
        if code == 429 || code == 503 {
            e.retry_after = Some(1);
            e.details = Some(json!({"retryAfterSeconds": 1}));
        }
        e
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_invalid_field_is_listed_without_brackets() {
        let e = ApiError::invalid(
            "Tenant",
            "recording.m365.io",
            "x",
            &[FieldError::invalid(
                "spec.customerName",
                &json!("a.b"),
                "must not contain a full stop",
            )],
        );
        assert_eq!(
            e.message,
            "Tenant.recording.m365.io \"x\" is invalid: spec.customerName: Invalid value: \"a.b\": must not contain a full stop"
        );
        assert_eq!(
            e.status()["details"]["causes"][0]["field"],
            "spec.customerName"
        );
        assert_eq!(
            e.status()["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
    }

    #[test]
    fn several_field_errors_are_bracketed() {
        let e = ApiError::invalid(
            "ConfigMap",
            "",
            "c",
            &[
                FieldError::required("metadata.name", ""),
                FieldError {
                    field: "data".into(),
                    kind: FieldErrorKind::TooMany { count: 4, max: 3 },
                },
            ],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"c\" is invalid: [metadata.name: Required value, data: Too many: 4: must have at most 3 items]"
        );
    }
}
