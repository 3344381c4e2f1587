//! The consents a tenant grants: keys, defaults and the rules of the `consents` section.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_guid, SecretRef};

// ---------------------------------------------------------------------------------------------
// Consents
// ---------------------------------------------------------------------------------------------

/// Key of the consent whose application (`Application.Read.All`, `Directory.Read.All`)
/// verifies every consent through Microsoft Graph.
pub const DIRECTORY_CONSENT: &str = "directory";
/// Key of the consent of the platform's recording bot application; its application
/// permissions are the recording permissions a known app registration must hold too.
pub const RECORDING_CONSENT: &str = "recording";
/// Key of the consent of the platform's paired (redundant) recording bot application.
pub const REDUNDANT_RECORDING_CONSENT: &str = "redundantRecording";

/// Whether a consent holds back a tenant's `OK` / `Ready`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mandatory {
    /// Every tenant needs it.
    #[default]
    Always,
    /// Only Pro tenants need it (the redundant, paired recording bot).
    ProOnly,
    /// Optional: never holds back `OK`.
    Never,
}

/// One platform application whose admin consent customers must give.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentConfig {
    /// The multi-tenant application's client id (a GUID). Default: empty, which `validate`
    /// rejects: every deployment names its own applications.
    pub app_id: String,
    /// Enterprise application name shown to admins (default `<server>-auth`, `<server>-aad`, ...).
    pub display_name: String,
    /// Where the application's client secret comes from; none for apps the operator never
    /// requests tokens for (delegated-only consents such as `login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// Microsoft Graph application permissions (app roles) the consent grants.
    #[serde(default)]
    pub application_permissions: Vec<String>,
    /// Microsoft Graph delegated scopes the consent grants (admin consent for all users).
    #[serde(default)]
    pub delegated_scopes: Vec<String>,
    /// Whether tenants must grant it.
    #[serde(default)]
    pub mandatory: Mandatory,
}

impl ConsentConfig {
    pub(super) fn check(&self, key: &str, problems: &mut Vec<String>) {
        let field = |name: &str| format!("consents.{key}.{name}");
        if !is_consent_key(key) {
            problems.push(format!(
                "consents.{key}: a consent key starts with a lowercase letter and has only letters and digits"
            ));
        }
        if !is_guid(&self.app_id) {
            problems.push(format!(
                "{}: {:?} is not an application (client) id GUID",
                field("appId"),
                self.app_id
            ));
        }
        if self.display_name.trim().is_empty() {
            problems.push(format!("{}: must not be empty", field("displayName")));
        }
        if self.application_permissions.is_empty() && self.delegated_scopes.is_empty() {
            problems.push(format!(
                "{}: a consent needs at least one application permission or delegated scope",
                field("applicationPermissions")
            ));
        }
        for (name, list) in [
            ("applicationPermissions", &self.application_permissions),
            ("delegatedScopes", &self.delegated_scopes),
        ] {
            for p in list {
                if p.is_empty() || p.chars().any(char::is_whitespace) {
                    problems.push(format!("{}: {p:?} is not a permission name", field(name)));
                }
            }
        }
        if !self.application_permissions.is_empty() && self.client_secret.is_none() {
            problems.push(format!(
                "{}: required to check application permissions",
                field("clientSecret")
            ));
        }
        if let Some(secret) = &self.client_secret {
            secret.check(&field("clientSecret"), problems);
        }
    }
}

/// The display name of a default consent's enterprise application.
pub(super) fn default_display_name(server: &str, key: &str) -> Option<String> {
    let suffix = match key {
        "login" => "auth",
        "directory" => "aad",
        "recording" => "hue",
        "redundantRecording" => "hue-paired",
        "instantMessages" => "im",
        "teamsApp" => "teams",
        _ => return None,
    };
    Some(format!("{server}-{suffix}"))
}

/// The consents of SPEC section 2, for a server name.
pub(super) fn default_consents(server: &str) -> BTreeMap<String, ConsentConfig> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let calls = [
        "Calls.AccessMedia.All",
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
    ];
    let table: [(&str, &[&str], &[&str], Mandatory); 6] = [
        (
            "login",
            &[],
            &["openid", "profile", "User.Read"],
            Mandatory::Always,
        ),
        (
            "directory",
            &[
                "User.Read.All",
                "Group.Read.All",
                "Application.Read.All",
                "Directory.Read.All",
            ],
            &[],
            Mandatory::Always,
        ),
        ("recording", &calls, &[], Mandatory::Always),
        ("redundantRecording", &calls, &[], Mandatory::ProOnly),
        (
            "instantMessages",
            &["Chat.Read.All", "ChannelMessage.Read.All"],
            &[],
            Mandatory::Always,
        ),
        ("teamsApp", &[], &["AppCatalog.Submit"], Mandatory::Never),
    ];
    table
        .into_iter()
        .map(|(key, app, delegated, mandatory)| {
            let consent = ConsentConfig {
                app_id: String::new(),
                display_name: default_display_name(server, key).unwrap_or_default(),
                client_secret: None,
                application_permissions: strings(app),
                delegated_scopes: strings(delegated),
                mandatory,
            };
            (key.to_owned(), consent)
        })
        .collect()
}

fn is_consent_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}
