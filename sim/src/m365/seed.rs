//! What the simulated directory starts with: tenants, the platform's multi-tenant
//! applications (with their client secrets and the permissions they ask for), consents
//! already given, and the simulator's knobs. Read from YAML (see `sim/README.md`) or built
//! in code, e.g. with [`Seed::platform_default`].

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::SimError;

/// The whole starting state of the simulator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub tenants: Vec<TenantSeed>,
    #[serde(default)]
    pub apps: Vec<AppSeed>,
    /// Consents already given when the simulator starts.
    #[serde(default)]
    pub consents: Vec<ConsentSeed>,
    /// User accounts (who can sign in; whom Graph's `/users` finds).
    #[serde(default)]
    pub users: Vec<super::users::UserSeed>,
    #[serde(default)]
    pub settings: Settings,
}

/// An Entra tenant (a Microsoft 365 customer, or the platform's own home tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSeed {
    /// Tenant id (a GUID).
    pub id: String,
    /// Organisation name; defaults to the first label of the first domain.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Verified domains. The first is the default domain; a `*.onmicrosoft.com` one is the
    /// initial domain (one is added from the display name when none is listed).
    pub domains: Vec<String>,
}

/// A multi-tenant application registered in its home tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSeed {
    /// Application (client) id, a GUID.
    pub app_id: String,
    pub display_name: String,
    /// Tenant id or domain of the tenant the app is registered in.
    pub home_tenant: String,
    #[serde(default)]
    pub secrets: Vec<SecretSeed>,
    /// Web redirect URIs registered on the app (admin consent only redirects to these).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Microsoft Graph application permissions the app requires (names, e.g. `User.Read.All`).
    #[serde(default)]
    pub application_permissions: Vec<String>,
    /// Microsoft Graph delegated scopes the app requires (e.g. `openid`).
    #[serde(default)]
    pub delegated_scopes: Vec<String>,
}

/// A client secret (password credential) of an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSeed {
    /// The secret text a client sends as `client_secret`.
    pub value: String,
    /// GUID identifying the credential; generated when absent.
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// RFC 3339; defaults to the simulator's start.
    #[serde(default)]
    pub start_date_time: Option<String>,
    /// RFC 3339 expiry, e.g. `2027-06-30T00:00:00Z`.
    pub end_date_time: String,
}

/// A consent the customer's admin has already given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSeed {
    /// Tenant id or domain.
    pub tenant: String,
    pub app_id: String,
    /// Only these application permissions (all the app requires when absent).
    #[serde(default)]
    pub application_permissions: Option<Vec<String>>,
    /// Only these delegated scopes (all the app requires when absent).
    #[serde(default)]
    pub delegated_scopes: Option<Vec<String>>,
    /// A user's own consent instead of an admin's: the user's object id (a GUID). It creates
    /// the app's service principal and a `consentType: Principal` grant of the app's
    /// delegated scopes for that user only, which is not admin consent.
    #[serde(default)]
    pub user: Option<String>,
}

/// A national cloud other than the one the simulator plays (the public cloud). A tenant of
/// one is found by OpenID discovery through the public authority, whose document names its
/// cloud, but the public token endpoint refuses client credentials for it (AADSTS900382).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NationalCloud {
    /// Azure Government (GCC High, DoD): `login.microsoftonline.us`.
    UsGov,
    /// Microsoft Azure operated by 21Vianet: `login.partner.microsoftonline.cn`.
    China,
}

impl NationalCloud {
    /// `cloud_instance_name` of the cloud's OpenID documents.
    pub fn instance_name(self) -> &'static str {
        match self {
            NationalCloud::UsGov => "microsoftonline.us",
            NationalCloud::China => "partner.microsoftonline.cn",
        }
    }

    /// `tenant_region_scope` of its tenants' OpenID documents.
    pub fn region_scope(self) -> &'static str {
        match self {
            NationalCloud::UsGov => "USGov",
            NationalCloud::China => "CN",
        }
    }

    /// The cloud's authority host.
    pub fn authority(self) -> &'static str {
        match self {
            NationalCloud::UsGov => "https://login.microsoftonline.us",
            NationalCloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The cloud's Microsoft Graph host.
    pub fn graph_host(self) -> &'static str {
        match self {
            NationalCloud::UsGov => "graph.microsoft.us",
            NationalCloud::China => "microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// Knobs of the simulator itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Items per Graph page when the client sends no `$top` (Graph itself uses 100; the
    /// simulator's default is small so clients must follow `@odata.nextLink`).
    pub graph_page_size: usize,
    /// Whether opening an admin-consent URL grants at once (the admin "accepts").
    pub auto_consent: bool,
    /// `expires_in` of access tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// Apply Graph's documented rule that listing `oauth2PermissionGrants` needs
    /// `Directory.Read.All` (or `Directory.ReadWrite.All`). On by default, as on the real
    /// service; off lets `Application.Read.All` read grants too (laxer than Graph).
    pub grants_require_directory_read: bool,
    /// How the token endpoint answers an app that has no service principal in the tenant:
    /// `7000229` (401 `invalid_client`, the usual answer) or `700016` (400
    /// `unauthorized_client`, which some tenants give). Clients must treat both as "no consent".
    pub missing_service_principal_aadsts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            graph_page_size: 2,
            auto_consent: true,
            token_lifetime_secs: 3599,
            grants_require_directory_read: true,
            missing_service_principal_aadsts: 7000229,
        }
    }
}

/// The consents of the platform (SPEC section 2): key, app name suffix, application
/// permissions, delegated scopes.
pub const PLATFORM_CONSENTS: &[(&str, &str, &[&str], &[&str])] = &[
    ("login", "auth", &[], &["openid", "profile", "User.Read"]),
    (
        "directory",
        "aad",
        &[
            "User.Read.All",
            "Group.Read.All",
            "Application.Read.All",
            "Directory.Read.All",
        ],
        &[],
    ),
    (
        "recording",
        "hue",
        &[
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All",
        ],
        &[],
    ),
    (
        "redundantRecording",
        "hue-paired",
        &[
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All",
        ],
        &[],
    ),
    (
        "instantMessages",
        "im",
        &["Chat.Read.All", "ChannelMessage.Read.All"],
        &[],
    ),
    ("teamsApp", "teams", &[], &["AppCatalog.Submit"]),
];

impl Seed {
    /// Parses a YAML seed document.
    pub fn from_yaml(text: &str) -> Result<Seed, SimError> {
        // Without the source snippet: a snippet could quote a secret's line.
        serde_saphyr::from_str(text)
            .map_err(|e| SimError::SeedYaml(e.without_snippet().to_string()))
    }

    /// Reads and parses a YAML seed file.
    pub fn load(path: &std::path::Path) -> Result<Seed, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::SeedRead {
            path: path.display().to_string(),
            source,
        })?;
        Seed::from_yaml(&text)
    }

    /// The platform's home tenant plus one multi-tenant app per consent of SPEC section 2:
    /// `<server>-auth`, `-aad`, `-hue`, `-hue-paired`, `-im` and `-teams`, each with one
    /// client secret valid for a year and `redirect_uri` registered. App ids and secrets
    /// are derived from `server` so the same name always gives the same seed.
    pub fn platform_default(
        server: &str,
        home_tenant_id: &str,
        home_domain: &str,
        redirect_uri: &str,
    ) -> Seed {
        let prefix = fnv32(server);
        let end = (Utc::now() + Duration::days(365)).to_rfc3339();
        let apps = PLATFORM_CONSENTS
            .iter()
            .enumerate()
            .map(|(i, (_, suffix, app_perms, scopes))| AppSeed {
                app_id: format!("{prefix:08x}-0000-4000-8000-{:012x}", i + 1),
                display_name: format!("{server}-{suffix}"),
                home_tenant: home_tenant_id.to_string(),
                secrets: vec![SecretSeed {
                    value: format!("{suffix}8Q~{prefix:08x}sim{:02}Secret", i + 1),
                    key_id: Some(format!("{prefix:08x}-5ec0-4000-8000-{:012x}", i + 1)),
                    display_name: Some("platform".to_string()),
                    start_date_time: None,
                    end_date_time: end.clone(),
                }],
                redirect_uris: vec![redirect_uri.to_string()],
                application_permissions: app_perms.iter().map(|s| s.to_string()).collect(),
                delegated_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        Seed {
            tenants: vec![TenantSeed {
                id: home_tenant_id.to_string(),
                display_name: None,
                domains: vec![home_domain.to_string()],
            }],
            apps,
            consents: Vec::new(),
            users: Vec::new(),
            settings: Settings::default(),
        }
    }

    /// The app of this seed whose display name is `display_name`.
    pub fn app(&self, display_name: &str) -> Option<&AppSeed> {
        self.apps.iter().find(|a| a.display_name == display_name)
    }
}

/// Parses an RFC 3339 instant of the seed.
pub(crate) fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, SimError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| SimError::Seed(format!("{field} `{text}` is not an RFC 3339 instant: {e}")))
}

/// FNV-1a, 32 bits: a stable, dependency-free way to turn a server name into GUID digits.
fn fnv32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_default_has_one_app_per_consent_with_stable_ids() {
        let a = Seed::platform_default(
            "rec",
            "11111111-1111-1111-1111-111111111111",
            "platform.onmicrosoft.com",
            "https://x/cb",
        );
        let b = Seed::platform_default(
            "rec",
            "11111111-1111-1111-1111-111111111111",
            "platform.onmicrosoft.com",
            "https://x/cb",
        );
        assert_eq!(a.apps.len(), 6);
        let names: Vec<_> = a.apps.iter().map(|x| x.display_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rec-auth",
                "rec-aad",
                "rec-hue",
                "rec-hue-paired",
                "rec-im",
                "rec-teams"
            ]
        );
        assert_eq!(a.apps[1].app_id, b.apps[1].app_id);
        assert_eq!(
            a.app("rec-aad").unwrap().application_permissions,
            [
                "User.Read.All",
                "Group.Read.All",
                "Application.Read.All",
                "Directory.Read.All"
            ]
        );
    }

    #[test]
    fn yaml_errors_do_not_quote_the_seed() {
        let text = "apps:\n  - app_id: 1\n    display_name: x\n    home_tenant: y\n    secrets:\n      - value: [Q~very-secret]\n        end_date_time: z\n";
        let err = Seed::from_yaml(text).unwrap_err().to_string();
        assert!(!err.contains("very-secret"), "{err}");
    }

    #[test]
    fn yaml_seed_rejects_unknown_fields() {
        let err = Seed::from_yaml("tenants: []\nbogus: 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
