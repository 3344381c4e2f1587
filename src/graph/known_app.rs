//! A RecordingService's known app registration as the customer's directory describes it, read
//! with the platform's `directory` application (which holds `Application.Read.All` and
//! `Directory.Read.All` in the customer tenant once its consent is granted).
//!
//! One `$batch` answers everything a daily check needs:
//! - the app's service principal's `appRoleAssignments`
//!   (`/servicePrincipals(appId='…')/appRoleAssignments`), resolved to permission names
//!   through Microsoft Graph's own service principal's `appRoles`: the truth about the
//!   recording permissions, where the app's token `roles` claim is only a hint;
//! - the registration's client secrets and owners (`/applications(appId='…')`, `…/owners`):
//!   the app registration lives in the customer's tenant, so the directory application reads
//!   them there and the app itself needs no permission for it;
//! - the directory audit log's "Consent to application" records whose target is the app's
//!   service principal (`/auditLogs/directoryAudits`, `AuditLog.Read.All`, optional): who
//!   consented. Entra keeps these records 7 days (Entra ID Free) or 30 days (P1/P2), so an
//!   older consent has no record; Graph offers nothing else that names who consented to
//!   application permissions.

use serde_json::Value;

use super::application::{
    owners_path, parse_owners, parse_password_credentials, password_credentials_path, value_list,
    PasswordCredential,
};
use super::client::{encode_query_value, BatchItem, BatchRequest, GraphClient};
use super::consent::{urls, GraphResource};
use super::error::{GraphError, Service};
use super::token::AccessToken;

/// The audit activity Entra records when an administrator (or user) consents to an app.
pub const CONSENT_ACTIVITY: &str = "Consent to application";

/// The application permission that reads the directory audit log.
pub const AUDIT_PERMISSION: &str = "AuditLog.Read.All";

/// Who consented to the app, as far as the audit log tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentedBy {
    /// The users named by successful "Consent to application" records, newest first.
    Users(Vec<String>),
    /// Not known; the text says why (no record kept, or the log may not be read).
    Unknown(String),
}

/// What the directory application read about the known app registration.
#[derive(Clone, Debug)]
pub struct DirectoryView {
    /// Graph application permissions assigned to the app's service principal.
    pub roles: Result<Vec<String>, GraphError>,
    pub credentials: Result<Vec<PasswordCredential>, GraphError>,
    pub owners: Result<Vec<String>, GraphError>,
    pub consented_by: ConsentedBy,
    /// Graph refused the audit log to this token (403): a token issued after the customer
    /// grants `AuditLog.Read.All` may read it.
    pub audit_denied: bool,
}

/// The app role assignments of the service principal of application `app_id`.
pub fn assignments_path(app_id: &str) -> String {
    format!("/servicePrincipals(appId='{app_id}')/appRoleAssignments?$top=999")
}

/// The consent records of the service principal `sp_id` in the directory audit log.
pub fn consent_audits_path(sp_id: &str) -> String {
    let filter = format!(
        "activityDisplayName eq '{CONSENT_ACTIVITY}' and targetResources/any(t:t/id eq '{sp_id}')"
    );
    format!(
        "/auditLogs/directoryAudits?$filter={}",
        encode_query_value(&filter)
    )
}

/// The user principal names of the successful consents in a `directoryAudits` answer,
/// newest first, each once (records of apps acting, `initiatedBy.app`, name no person).
pub fn parse_consenters(body: &Value) -> Result<Vec<String>, GraphError> {
    let items = value_list(body, "audit log")?;
    let mut records: Vec<(&str, &str)> = items
        .iter()
        .filter(|r| r.get("activityDisplayName").and_then(Value::as_str) == Some(CONSENT_ACTIVITY))
        .filter(|r| r.get("result").and_then(Value::as_str) == Some("success"))
        .filter_map(|r| {
            let upn = r
                .pointer("/initiatedBy/user/userPrincipalName")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())?;
            let at = r
                .get("activityDateTime")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((at, upn))
        })
        .collect();
    // RFC 3339 instants in UTC sort as text.
    records.sort_by(|a, b| b.0.cmp(a.0));
    let mut users: Vec<String> = Vec::new();
    for (_, upn) in records {
        if !users.iter().any(|u| u.eq_ignore_ascii_case(upn)) {
            users.push(upn.to_string());
        }
    }
    Ok(users)
}

/// Judges the audit log's answer (or refusal).
pub fn consented_by(answer: Result<&Value, GraphError>) -> ConsentedBy {
    match answer.and_then(parse_consenters) {
        Ok(users) if users.is_empty() => ConsentedBy::Unknown(
            "the directory audit log has no record of the consent (Entra keeps them 7 days, 30 with Entra ID P1/P2)".into(),
        ),
        Ok(users) => ConsentedBy::Users(users),
        Err(GraphError::Graph { status: 403, .. }) => ConsentedBy::Unknown(format!(
            "the platform's directory application may not read the directory audit log ({AUDIT_PERMISSION} is not granted to it)"
        )),
        Err(e) => ConsentedBy::Unknown(format!("the directory audit log could not be read: {e}")),
    }
}

/// Reads the known app registration `app_id` with the directory application's `token`.
/// `sp_id` is the app's service principal id when its own token named it (`oid`); without it
/// the audit log is asked in a second request once the assignments name it.
pub async fn read(
    graph: &GraphClient,
    token: &AccessToken,
    app_id: &str,
    sp_id: Option<&str>,
) -> Result<DirectoryView, GraphError> {
    // Both go into Graph paths: GUIDs only (an `oid` claim that is not one is not used).
    let sp_id = sp_id.filter(|id| crate::config::is_guid(id));
    if !crate::config::is_guid(app_id) {
        return Err(GraphError::Protocol {
            service: Service::Graph,
            reason: format!("{app_id:?} is not an application (client) id"),
        });
    }
    let mut requests = vec![
        BatchRequest::get("graph", urls::graph_resource(true)),
        // By object id when the app's token named it (the form every tenant answers), else
        // by the documented `appId` alternate key.
        BatchRequest::get(
            "ra",
            match sp_id {
                Some(sp) => urls::app_role_assignments(sp),
                None => assignments_path(app_id),
            },
        ),
        BatchRequest::get("creds", password_credentials_path(app_id)),
        BatchRequest::get("owners", owners_path(app_id)),
    ];
    if let Some(sp) = sp_id {
        requests.push(BatchRequest::get("audit", consent_audits_path(sp)));
    }
    let items = graph.batch(token, requests).await?;
    if let Some(refused) = items.iter().find(|it| it.status == 401) {
        return Err(refused.result().expect_err("a 401 is an error").clone());
    }
    let item = |id: &str| -> Result<&Value, GraphError> {
        items
            .iter()
            .find(|it| it.id == id)
            .map(BatchItem::result)
            .unwrap_or_else(|| {
                Err(GraphError::Protocol {
                    service: Service::Graph,
                    reason: format!("no answer for batch item {id}"),
                })
            })
    };
    let assignments = match item("ra") {
        Ok(body) => graph.rest_of_pages(token, body.clone()).await,
        Err(e) => Err(e),
    };
    let roles = match (item("graph"), &assignments) {
        (Ok(body), Ok(assignments)) => GraphResource::from_json(body, None)
            .filter(|g| !g.role_names.is_empty())
            .map(|g| g.assigned_roles(assignments))
            .ok_or_else(|| GraphError::Protocol {
                service: Service::Graph,
                reason: "Microsoft Graph's service principal lists no app roles".into(),
            }),
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e.clone()),
    };
    let audit: Option<Result<Value, GraphError>> = match sp_id {
        Some(_) => Some(item("audit").cloned()),
        None => {
            let principal = assignments.as_ref().ok().and_then(|a| {
                a.iter()
                    .find_map(|x| x.get("principalId").and_then(Value::as_str))
            });
            match principal {
                Some(sp) => Some(graph.get(token, &consent_audits_path(sp)).await),
                None => None,
            }
        }
    };
    let audit_denied = matches!(audit, Some(Err(GraphError::Graph { status: 403, .. })));
    let consented_by = match audit {
        Some(answer) => consented_by(answer.as_ref().map_err(Clone::clone)),
        None => ConsentedBy::Unknown(
            "the app's service principal holds no permission, so no consent to it is recorded"
                .into(),
        ),
    };
    Ok(DirectoryView {
        roles,
        credentials: item("creds").and_then(parse_password_credentials),
        owners: item("owners").and_then(parse_owners),
        consented_by,
        audit_denied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(at: &str, upn: Option<&str>, result: &str) -> Value {
        json!({
            "id": "Directory_1", "category": "ApplicationManagement", "result": result,
            "activityDisplayName": CONSENT_ACTIVITY, "activityDateTime": at,
            "loggedByService": "Core Directory", "operationType": "Assign",
            "initiatedBy": match upn {
                Some(u) => json!({"app": null, "user": {"id": "u1", "displayName": "Admin", "userPrincipalName": u, "ipAddress": "203.0.113.7"}}),
                None => json!({"app": {"appId": null, "displayName": "Automation", "servicePrincipalId": "s1"}, "user": null}),
            },
            "targetResources": [{"id": "sp-1", "displayName": "contoso-recording", "type": "ServicePrincipal", "modifiedProperties": []}],
            "additionalDetails": []
        })
    }

    #[test]
    fn consenting_people_are_named_newest_first_and_once() {
        let body = json!({"value": [
            record("2026-12-01T10:00:00.000Z", Some("first@contoso.example"), "success"),
            record("2026-12-03T10:00:00.000Z", Some("second@contoso.example"), "success"),
            record("2026-12-04T10:00:00.000Z", Some("declined@contoso.example"), "failure"),
            record("2026-12-05T10:00:00.000Z", None, "success"),
            record("2026-12-06T10:00:00.000Z", Some("FIRST@contoso.example"), "success"),
        ]});
        assert_eq!(
            parse_consenters(&body).unwrap(),
            ["FIRST@contoso.example", "second@contoso.example"]
        );
        assert!(matches!(
            consented_by(Ok(&json!({"value": []}))),
            ConsentedBy::Unknown(why) if why.contains("no record")
        ));
        let denied = GraphError::Graph {
            status: 403,
            code: "Authorization_RequestDenied".into(),
            message: "Insufficient privileges to complete the operation.".into(),
        };
        assert!(matches!(
            consented_by(Err(denied)),
            ConsentedBy::Unknown(why) if why.contains(AUDIT_PERMISSION)
        ));
    }

    #[test]
    fn the_audit_filter_names_the_service_principal() {
        let path = consent_audits_path("5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
        assert!(
            path.starts_with("/auditLogs/directoryAudits?$filter="),
            "{path}"
        );
        assert!(
            path.contains("5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"),
            "{path}"
        );
        assert!(!path.contains(' '), "the filter is encoded: {path}");
    }
}
