//! Two read-only sources the operator may use when the customer allows it: the directory
//! audit log's "Consent to application" records (`/auditLogs/directoryAudits`, application
//! permission `AuditLog.Read.All`) and the organisation's Teams app catalog
//! (`/appCatalogs/teamsApps`, application permission `AppCatalog.Read.All` or
//! `AppCatalog.ReadWrite.All`).
//!
//! The shapes are Graph v1.0's `directoryAudit` and `teamsApp` (with `appDefinitions` on
//! `$expand`); the filters are the ones Graph documents for these collections and the
//! operator sends: `activityDisplayName eq '…'`, `targetResources/any(t:t/id eq '…')`,
//! `externalId eq '…'`, `distributionMethod eq '…'`, `id eq '…'`, joined by `and`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::directory::{new_guid, Directory};
use super::odata::GraphError;
use super::SimError;

/// The activity Entra logs when someone consents to an application.
pub const CONSENT_ACTIVITY: &str = "Consent to application";

/// One directory audit record of a consent.
#[derive(Debug, Clone)]
pub(crate) struct ConsentAudit {
    pub id: String,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub user_upn: String,
    pub user_display_name: String,
    pub sp_id: String,
    pub sp_display_name: String,
    pub admin_consent: bool,
}

/// An app in the organisation's Teams app catalog.
#[derive(Debug, Clone)]
pub(crate) struct TeamsApp {
    pub id: String,
    pub external_id: String,
    pub display_name: String,
    /// `published`, `submitted` (awaiting an admin's review) or `rejected`.
    pub publishing_state: String,
}

impl Directory {
    /// Logs that `upn` (a user of `tenant`) consented to `app_id` for the whole organisation,
    /// as Entra does when an admin accepts a consent. The app must have its service principal
    /// in the tenant already.
    pub fn record_consent(
        &mut self,
        tenant: &str,
        app_id: &str,
        upn: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SimError> {
        let t = self
            .resolve_tenant(tenant)
            .ok_or_else(|| SimError::Harness(format!("unknown tenant `{tenant}`")))?;
        let tenant_id = t.id.clone();
        let user = t
            .user(upn)
            .cloned()
            .ok_or_else(|| SimError::Harness(format!("no user {upn} in tenant {tenant}")))?;
        let sp = t.sp_by_app_id(app_id).cloned().ok_or_else(|| {
            SimError::Harness(format!("app {app_id} has no service principal in {tenant}"))
        })?;
        let t = self.tenants.get_mut(&tenant_id).expect("resolved above");
        t.audits.push(ConsentAudit {
            id: format!("Directory_{}_{}", new_guid(), t.audits.len()),
            at: now,
            user_id: user.id,
            user_upn: user.upn,
            user_display_name: user.display_name,
            sp_id: sp.id,
            sp_display_name: sp.display_name,
            admin_consent: true,
        });
        Ok(())
    }

    /// Adds (or replaces, by external id) an app in the tenant's Teams app catalog.
    pub fn put_teams_app(
        &mut self,
        tenant: &str,
        external_id: &str,
        display_name: &str,
        publishing_state: &str,
    ) -> Result<(), SimError> {
        if !["published", "submitted", "rejected"].contains(&publishing_state) {
            return Err(SimError::Harness(format!(
                "publishing state `{publishing_state}` is not published, submitted or rejected"
            )));
        }
        let id = self
            .resolve_tenant(tenant)
            .map(|t| t.id.clone())
            .ok_or_else(|| SimError::Harness(format!("unknown tenant `{tenant}`")))?;
        let t = self.tenants.get_mut(&id).expect("resolved above");
        t.teams_apps
            .retain(|a| !a.external_id.eq_ignore_ascii_case(external_id));
        t.teams_apps.push(TeamsApp {
            id: new_guid(),
            external_id: external_id.to_string(),
            display_name: display_name.to_string(),
            publishing_state: publishing_state.to_string(),
        });
        Ok(())
    }
}

/// A `directoryAudit` of a consent, as Graph v1.0 shapes it.
pub(crate) fn consent_audit_json(a: &ConsentAudit) -> Value {
    let quoted = |s: &str| Value::String(format!("\"{s}\""));
    json!({
        "id": a.id,
        "category": "ApplicationManagement",
        "correlationId": new_guid(),
        "result": "success",
        "resultReason": "",
        "activityDisplayName": CONSENT_ACTIVITY,
        "activityDateTime": a.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "loggedByService": "Core Directory",
        "operationType": "Assign",
        "initiatedBy": {
            "app": null,
            "user": {
                "id": a.user_id,
                "displayName": a.user_display_name,
                "userPrincipalName": a.user_upn,
                "ipAddress": "203.0.113.7",
                "userType": "Member",
                "homeTenantId": null,
                "homeTenantName": null,
            }
        },
        "targetResources": [{
            "id": a.sp_id,
            "displayName": a.sp_display_name,
            "type": "ServicePrincipal",
            "userPrincipalName": null,
            "groupType": null,
            "modifiedProperties": [
                {"displayName": "ConsentContext.IsAdminConsent", "oldValue": null, "newValue": quoted(if a.admin_consent { "True" } else { "False" })},
                {"displayName": "ConsentContext.OnBehalfOfAll", "oldValue": null, "newValue": quoted(if a.admin_consent { "True" } else { "False" })},
                {"displayName": "TargetId.ServicePrincipalNames", "oldValue": null, "newValue": quoted(&a.sp_id)},
            ],
        }],
        "additionalDetails": [{"key": "User-Agent", "value": "Mozilla/5.0"}],
    })
}

/// A `teamsApp`, with its `appDefinitions` when expanded.
pub(crate) fn teams_app_json(app: &TeamsApp, expand: bool) -> Value {
    let mut body = json!({
        "id": app.id,
        "externalId": app.external_id,
        "displayName": app.display_name,
        "distributionMethod": "organization",
    });
    if expand {
        body["appDefinitions"] = json!([{
            "id": format!("{}-1.0.0", app.id),
            "teamsAppId": app.id,
            "azureADAppId": null,
            "displayName": app.display_name,
            "version": "1.0.0",
            "publishingState": app.publishing_state,
            "shortDescription": null,
            "description": null,
            "lastModifiedDateTime": null,
            "createdBy": null,
        }]);
    }
    body
}

/// One clause of the audit and catalog filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Clause {
    /// `prop eq 'value'`.
    Eq(String, String),
    /// `targetResources/any(t:t/id eq 'value')`.
    TargetId(String),
}

/// Parses `clause [and clause …]`.
pub(crate) fn parse_filter(text: &str) -> Result<Vec<Clause>, GraphError> {
    let invalid = || GraphError::bad_request(format!("Invalid filter clause: '{text}'."));
    let mut clauses = Vec::new();
    for part in split_and(text) {
        let part = part.trim();
        if let Some(inner) = part
            .strip_prefix("targetResources/any(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let (var, body) = inner.split_once(':').ok_or_else(invalid)?;
            let body = body
                .trim()
                .strip_prefix(&format!("{}/id", var.trim()))
                .ok_or_else(invalid)?;
            let value = quoted_eq(body).ok_or_else(invalid)?;
            clauses.push(Clause::TargetId(value));
        } else {
            let (prop, rest) = part.split_once(' ').ok_or_else(invalid)?;
            let value = quoted_eq(rest).ok_or_else(invalid)?;
            clauses.push(Clause::Eq(prop.to_string(), value));
        }
    }
    Ok(clauses)
}

/// The parts of a filter between top-level ` and ` (not inside quotes or parentheses).
fn split_and(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !quoted && depth == 0 && rest.starts_with(" and ") {
            parts.push(std::mem::take(&mut current));
            rest = &rest[5..];
            continue;
        }
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            _ => {}
        }
        current.push(c);
        rest = &rest[c.len_utf8()..];
    }
    parts.push(current);
    parts
}

/// `eq 'value'` → the value.
fn quoted_eq(text: &str) -> Option<String> {
    let value = text.trim().strip_prefix("eq")?.trim();
    let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(value.replace("''", "'"))
}

/// Whether an audit record matches every clause; an unsupported property is an error.
pub(crate) fn audit_matches(a: &ConsentAudit, clauses: &[Clause]) -> Result<bool, GraphError> {
    let mut all = true;
    for clause in clauses {
        all &= match clause {
            Clause::Eq(prop, value) if prop == "activityDisplayName" => value == CONSENT_ACTIVITY,
            Clause::Eq(prop, value) if prop == "category" => value == "ApplicationManagement",
            Clause::Eq(prop, _) => return Err(unsupported(prop, "DirectoryAudit")),
            Clause::TargetId(id) => a.sp_id.eq_ignore_ascii_case(id),
        };
    }
    Ok(all)
}

/// Whether a catalog app matches every clause.
pub(crate) fn teams_app_matches(app: &TeamsApp, clauses: &[Clause]) -> Result<bool, GraphError> {
    let mut all = true;
    for clause in clauses {
        all &= match clause {
            Clause::Eq(prop, value) => match prop.as_str() {
                "externalId" => app.external_id.eq_ignore_ascii_case(value),
                "id" => app.id.eq_ignore_ascii_case(value),
                "displayName" => app.display_name == *value,
                "distributionMethod" => value == "organization",
                other => return Err(unsupported(other, "TeamsApp")),
            },
            Clause::TargetId(_) => return Err(unsupported("targetResources", "TeamsApp")),
        };
    }
    Ok(all)
}

fn unsupported(prop: &str, resource: &str) -> GraphError {
    GraphError::new(400, "Request_UnsupportedQuery", format!(
        "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_of_consents_and_catalog_apps_parse() {
        assert_eq!(
            parse_filter("activityDisplayName eq 'Consent to application' and targetResources/any(t:t/id eq 'abc')").unwrap(),
            [
                Clause::Eq("activityDisplayName".into(), CONSENT_ACTIVITY.into()),
                Clause::TargetId("abc".into())
            ]
        );
        assert_eq!(
            parse_filter("externalId eq 'it''s'").unwrap(),
            [Clause::Eq("externalId".into(), "it's".into())]
        );
        assert!(parse_filter("externalId ne 'x'").is_err());
        assert!(parse_filter("targetResources/any(t:t/displayName eq 'x')").is_err());
    }
}
