//! `POST /v1.0/users/{id | userPrincipalName}/sendMail` with a MIME message, as Graph takes
//! it from an app with the `Mail.Send` application permission: the body is the MIME message
//! in base64 with `Content-Type: text/plain`. The simulator keeps what it accepted, for the
//! tests to read ([`super::M365Sim::sent_mail`]); it serves the MIME form only.

use base64::Engine as _;

use super::directory::Tenant;
use super::graph::{Caller, GraphError};

/// An e-mail the simulator accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMail {
    /// The tenant of the sending app.
    pub tenant_id: String,
    /// The mailbox it was sent as, as the URL named it.
    pub sender: String,
    /// The `To` header's value.
    pub to: String,
    /// The `Subject` header's value (encoded words left as they are).
    pub subject: String,
    /// The whole MIME message.
    pub mime: String,
}

const SEND: &[&str] = &["Mail.Send"];

/// Checks a sendMail request and returns the mail to keep.
pub(crate) fn send_mail(
    tenant: &Tenant,
    caller: &Caller,
    sender: &str,
    content_type: &str,
    body: &[u8],
) -> Result<SentMail, GraphError> {
    if !caller.roles.iter().any(|r| SEND.contains(&r.as_str())) {
        return Err(GraphError::new(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        ));
    }
    // The mailbox must be a user of the caller's tenant: a principal name in one of its domains.
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if !tenant
        .domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        return Err(GraphError::new(
            404,
            "ErrorInvalidUser",
            format!("The requested user '{sender}' is invalid."),
        ));
    }
    if !content_type.starts_with("text/plain") {
        return Err(GraphError::new(
            400,
            "ErrorInvalidRequest",
            "The simulator accepts sendMail in MIME format only (Content-Type: text/plain, base64 body).",
        ));
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mime = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            GraphError::new(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })?;
    let header = |name: &str| {
        let head = mime.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line.trim_start());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    };
    let to = header("To").filter(|t| !t.is_empty()).ok_or_else(|| {
        GraphError::new(
            400,
            "ErrorMimeContentInvalid",
            "The MIME content has no recipient (To).",
        )
    })?;
    Ok(SentMail {
        tenant_id: tenant.id.clone(),
        sender: sender.to_string(),
        to,
        subject: header("Subject").unwrap_or_default(),
        mime,
    })
}
