//! Is the platform's Teams app published in the customer's organisation catalog? The rules
//! (pure functions); the consent check asks in the same `$batch` as for the consents, with
//! the `directory` consent's token, so the answer costs no request of its own.
//!
//! `GET /appCatalogs/teamsApps?$filter=externalId eq '{manifest id}'&$expand=appDefinitions`
//! lists the catalog's copy of the app (`distributionMethod: organization`) with its
//! definitions' `publishingState`: `published` (approved by the customer's Teams admin),
//! `submitted` (awaiting review) or `rejected`. Graph answers it to applications holding
//! `AppCatalog.Read.All` (or `AppCatalog.ReadWrite.All`); `Directory.Read.All` is accepted for
//! delegated calls only. The permission is optional: without it the catalog is not checked and
//! the Tenant says so.

use serde_json::Value;

use super::client::encode_query_value;
use super::error::GraphError;

/// The application permission that reads the catalog.
pub const CATALOG_PERMISSION: &str = "AppCatalog.Read.All";

/// What the customer's catalog says about the platform's Teams app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CatalogState {
    /// Published: the customer's users can add it.
    Published,
    /// Submitted, awaiting the customer's Teams admin's approval.
    Submitted,
    /// The customer's Teams admin rejected it.
    Rejected,
    /// Not in the organisation catalog.
    Missing,
    /// Not looked at: the `directory` consent cannot read the catalog (see the message).
    NotChecked,
}

impl CatalogState {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogState::Published => "Published",
            CatalogState::Submitted => "Submitted",
            CatalogState::Rejected => "Rejected",
            CatalogState::Missing => "NotInCatalog",
            CatalogState::NotChecked => "NotChecked",
        }
    }
}

/// The catalog's answer about the app, in words.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CatalogCheck {
    pub state: CatalogState,
    pub message: String,
}

impl CatalogCheck {
    pub fn not_checked(why: impl Into<String>) -> Self {
        CatalogCheck {
            state: CatalogState::NotChecked,
            message: why.into(),
        }
    }
}

/// The catalog request for the app with manifest id `external_id`.
pub fn catalog_url(external_id: &str) -> String {
    format!(
        "/appCatalogs/teamsApps?$filter={}&$expand=appDefinitions",
        encode_query_value(&format!("externalId eq '{external_id}'"))
    )
}

/// Judges Graph's answer; `previous` stands while Graph cannot answer for now.
pub fn judge(
    external_id: &str,
    answer: Result<&Value, GraphError>,
    previous: Option<&CatalogCheck>,
) -> CatalogCheck {
    let check = |state, message: String| CatalogCheck { state, message };
    match answer {
        Ok(body) => {
            let states: Vec<&str> = body
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|app| {
                    app.get("distributionMethod").and_then(Value::as_str) == Some("organization")
                })
                .flat_map(|app| {
                    app.get("appDefinitions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.get("publishingState").and_then(Value::as_str))
                })
                .collect();
            let has = |s: &str| states.iter().any(|x| x.eq_ignore_ascii_case(s));
            if has("published") {
                check(
                    CatalogState::Published,
                    format!("the Teams app {external_id} is published in the customer's organisation catalog"),
                )
            } else if has("submitted") {
                check(
                    CatalogState::Submitted,
                    format!("the Teams app {external_id} is submitted to the customer's organisation catalog and awaits their Teams admin's approval"),
                )
            } else if has("rejected") {
                check(
                    CatalogState::Rejected,
                    format!("the customer's Teams admin rejected the Teams app {external_id}"),
                )
            } else {
                check(
                    CatalogState::Missing,
                    format!("the customer's organisation catalog has no Teams app {external_id}: their Teams admin uploads it (or approves its submission)"),
                )
            }
        }
        Err(GraphError::Graph { status: 403, .. }) => CatalogCheck::not_checked(format!(
            "not checked: the directory consent does not hold {CATALOG_PERMISSION} (optional), so the customer's Teams app catalog cannot be read"
        )),
        Err(e) if e.is_transient() => previous.cloned().unwrap_or_else(|| {
            CatalogCheck::not_checked(format!("not checked yet: {e}"))
        }),
        Err(e) => CatalogCheck::not_checked(format!("not checked: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: &str = "f31b1263-ba99-435a-a679-911d24850d7c";

    fn answer(state: &str) -> Value {
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#appCatalogs/teamsApps(appDefinitions())",
            "value": [{"id": "b1c5353a-7aca-41b3-830f-27d5218fe0e5", "externalId": APP,
                "displayName": "Recording", "distributionMethod": "organization",
                "appDefinitions": [{"id": "x", "teamsAppId": "b1c5353a-7aca-41b3-830f-27d5218fe0e5",
                    "displayName": "Recording", "version": "1.0.0", "publishingState": state}]}]})
    }

    #[test]
    fn the_catalog_answer_becomes_a_state() {
        assert_eq!(
            judge(APP, Ok(&answer("published")), None).state,
            CatalogState::Published
        );
        assert_eq!(
            judge(APP, Ok(&answer("submitted")), None).state,
            CatalogState::Submitted
        );
        assert_eq!(
            judge(APP, Ok(&answer("rejected")), None).state,
            CatalogState::Rejected
        );
        assert_eq!(
            judge(APP, Ok(&json!({"value": []})), None).state,
            CatalogState::Missing
        );
        let denied = GraphError::Graph {
            status: 403,
            code: "Forbidden".into(),
            message: "Missing role permissions on the request.".into(),
        };
        let check = judge(APP, Err(denied), None);
        assert_eq!(check.state, CatalogState::NotChecked);
        assert!(
            check.message.contains(CATALOG_PERMISSION),
            "{}",
            check.message
        );
        assert!(catalog_url(APP).contains("externalId%20eq%20'f31b1263"));
    }
}
