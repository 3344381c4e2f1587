//! The client secrets of an application registration, as Microsoft Graph describes them.
//!
//! `GET /v1.0/applications(appId='{appId}')?$select=id,appId,passwordCredentials`, asked in the
//! application's **home** tenant with an app-only token of that application (it needs
//! `Application.Read.All`, or ownership with `Application.ReadWrite.OwnedBy`). Graph never
//! returns a secret's value (`secretText` is always null): only its id, hint and validity. The
//! operator reports how many days remain until the soonest of them expires, so the platform
//! team rotates it in time.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::Value;

use super::client::GraphClient;
use super::error::{GraphError, Service};
use super::token::AccessToken;

/// One client secret (password credential) of an application, without its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordCredential {
    pub key_id: Option<String>,
    pub display_name: Option<String>,
    /// When the secret stops working; `None` when Graph gives no (readable) end.
    pub end: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationBody {
    #[serde(default)]
    password_credentials: Vec<CredentialBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialBody {
    key_id: Option<String>,
    display_name: Option<String>,
    end_date_time: Option<String>,
}

/// The Graph path (relative to the version root) of an application's password credentials.
pub fn password_credentials_path(app_id: &str) -> String {
    format!("/applications(appId='{app_id}')?$select=id,appId,passwordCredentials")
}

/// Reads the `passwordCredentials` of an application object.
pub fn parse_password_credentials(body: &Value) -> Result<Vec<PasswordCredential>, GraphError> {
    let app: ApplicationBody =
        serde_json::from_value(body.clone()).map_err(|e| GraphError::Protocol {
            service: Service::Graph,
            reason: format!("the application object is not valid: {e}"),
        })?;
    Ok(app
        .password_credentials
        .into_iter()
        .map(|c| PasswordCredential {
            key_id: c.key_id,
            display_name: c.display_name,
            end: c.end_date_time.as_deref().and_then(|t| t.parse().ok()),
        })
        .collect())
}

/// The soonest end of a secret that still works at `now`: the one to rotate first.
pub fn soonest_future_expiry(
    credentials: &[PasswordCredential],
    now: Timestamp,
) -> Option<Timestamp> {
    credentials
        .iter()
        .filter_map(|c| c.end)
        .filter(|end| *end > now)
        .min()
}

/// Whole days from `now` until `end` (rounded down; negative once past).
pub fn days_until(end: Timestamp, now: Timestamp) -> i64 {
    let left: SignedDuration = end.duration_since(now);
    left.as_secs().div_euclid(86_400)
}

/// Asks Graph for the password credentials of `app_id`, with a token of that application in
/// its home tenant.
pub async fn password_credentials(
    graph: &GraphClient,
    token: &AccessToken,
    app_id: &str,
) -> Result<Vec<PasswordCredential>, GraphError> {
    let body = graph
        .get(token, &password_credentials_path(checked_app_id(app_id)?))
        .await?;
    parse_password_credentials(&body)
}

/// `app_id` when it is an application (client) id: it goes into a Graph path.
fn checked_app_id(app_id: &str) -> Result<&str, GraphError> {
    if crate::config::is_guid(app_id) {
        Ok(app_id)
    } else {
        Err(GraphError::Protocol {
            service: Service::Graph,
            reason: format!("{app_id:?} is not an application (client) id"),
        })
    }
}

/// The Graph path of an application's owners: the users of its home tenant who registered it
/// or were made owners since (`Application.Read.All` reads them).
pub fn owners_path(app_id: &str) -> String {
    format!("/applications(appId='{app_id}')/owners")
}

/// The `value` list of a Graph collection answer (`what` names it in the error).
pub fn value_list<'a>(body: &'a Value, what: &str) -> Result<&'a Vec<Value>, GraphError> {
    body.get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| GraphError::Protocol {
            service: Service::Graph,
            reason: format!("the {what} answer has no `value` list"),
        })
}

/// The user principal names of an application's owners (other kinds of owner, such as
/// service principals, are left out).
pub fn parse_owners(body: &Value) -> Result<Vec<String>, GraphError> {
    let items = value_list(body, "owners")?;
    Ok(items
        .iter()
        .filter(|o| {
            o.get("@odata.type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "#microsoft.graph.user")
        })
        .filter_map(|o| o.get("userPrincipalName").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// Asks Graph who owns application `app_id`, with a token of its home tenant.
pub async fn owners(
    graph: &GraphClient,
    token: &AccessToken,
    app_id: &str,
) -> Result<Vec<String>, GraphError> {
    parse_owners(
        &graph
            .get(token, &owners_path(checked_app_id(app_id)?))
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_soonest_secret_still_valid_counts() {
        let body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications(id,appId,passwordCredentials)/$entity",
            "id": "0c5e7a19-0000-4000-8000-000000000001",
            "appId": "5b1f0a2c-0000-4000-8000-0000000000aa",
            "passwordCredentials": [
                {"customKeyIdentifier": null, "displayName": "old", "endDateTime": "2026-01-01T00:00:00Z",
                 "hint": "abc", "keyId": "k-old", "secretText": null, "startDateTime": "2025-01-01T00:00:00Z"},
                {"customKeyIdentifier": null, "displayName": "current", "endDateTime": "2027-03-01T12:00:00.000Z",
                 "hint": "def", "keyId": "k-cur", "secretText": null, "startDateTime": "2026-03-01T00:00:00Z"},
                {"customKeyIdentifier": null, "displayName": "next", "endDateTime": "2028-03-01T00:00:00Z",
                 "hint": "ghi", "keyId": "k-next", "secretText": null, "startDateTime": "2026-09-01T00:00:00Z"}
            ]
        });
        let credentials = parse_password_credentials(&body).unwrap();
        assert_eq!(credentials.len(), 3);
        assert_eq!(credentials[1].key_id.as_deref(), Some("k-cur"));
        let now = at("2026-11-23T15:00:00Z");
        let soonest = soonest_future_expiry(&credentials, now).unwrap();
        assert_eq!(
            soonest,
            at("2027-03-01T12:00:00Z"),
            "the expired one is skipped"
        );
        assert_eq!(days_until(soonest, now), 97, "98 days less 3 hours");
    }

    #[test]
    fn days_round_down_and_go_negative_once_past() {
        let now = at("2026-11-23T15:00:00Z");
        assert_eq!(days_until(at("2026-12-03T14:59:59Z"), now), 9);
        assert_eq!(days_until(at("2026-12-03T15:00:00Z"), now), 10);
        assert_eq!(days_until(at("2026-11-23T14:00:00Z"), now), -1);
    }

    #[test]
    fn no_secret_or_only_expired_ones_give_no_expiry() {
        let now = at("2026-11-23T15:00:00Z");
        assert_eq!(soonest_future_expiry(&[], now), None);
        let expired = parse_password_credentials(&json!({"passwordCredentials": [
            {"keyId": "k", "displayName": null, "endDateTime": "2026-11-01T00:00:00Z"}
        ]}))
        .unwrap();
        assert_eq!(soonest_future_expiry(&expired, now), None);
        assert!(parse_password_credentials(&json!({"passwordCredentials": "nope"})).is_err());
        assert_eq!(
            password_credentials_path("5b1f0a2c-0000-4000-8000-0000000000aa"),
            "/applications(appId='5b1f0a2c-0000-4000-8000-0000000000aa')?$select=id,appId,passwordCredentials"
        );
    }
}
