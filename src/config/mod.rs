//! Operator configuration: one YAML file (optional) plus a few environment overrides.
//!
//! ```yaml
//! serverName: recording            # platform server name; enterprise apps are "<server>-auth", ...
//! cloud:
//!   preset: public                 # public | usGov | usGovDoD | china
//!   # authorityHost: https://login.microsoftonline.com   # overrides the preset
//!   # graphEndpoint: https://graph.microsoft.com          # overrides the preset
//! consentRedirectUri: https://operator.example.com/consent/callback
//! consents:                        # merged key by key over the defaults of SPEC section 2
//!   directory:
//!     appId: 8b0f7a52-0000-4000-8000-000000000002
//!     clientSecret: { secretRef: { namespace: recording-operator, name: entra-apps, key: directory } }
//!   teamsApp:
//!     mandatory: never
//! polling:
//!   pendingInitial: 30s
//!   pendingMax: 5m
//!   grantedInterval: 6h
//!   jitter: 0.1
//!   tokenRenewBefore: 5m
//!   checkCacheTtl: 5s
//!   requestTimeout: 15s
//! ```
//!
//! Every field has a default ([`OperatorConfig::default`] is the configuration of an empty
//! file), [`OperatorConfig::load`] reads the file and applies the environment overrides, and
//! [`OperatorConfig::validate`] names every offending field. Secret values are never part of
//! the configuration: it holds [`SecretRef`]s, resolved at run time by a [`SecretSource`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

mod bots;
mod cloud;
mod consents;
mod links;
mod notify;
mod polling;
mod quota;
mod retention;
mod secrets;
mod storage;
mod webhook;
pub use bots::*;
use cloud::https_unless_loopback;
pub use cloud::*;
pub use consents::*;
use consents::{default_consents, default_display_name};
pub use links::*;
pub use notify::*;
pub use polling::*;
pub use quota::*;
pub use retention::*;
pub use secrets::*;
pub use storage::*;
pub use webhook::*;

/// Environment variable overriding [`CloudConfig::authority_host`].
pub const ENV_AUTHORITY_HOST: &str = "RECORDING_OPERATOR_AUTHORITY_HOST";
/// Environment variable overriding [`CloudConfig::graph_endpoint`].
pub const ENV_GRAPH_ENDPOINT: &str = "RECORDING_OPERATOR_GRAPH_ENDPOINT";
/// Environment variable overriding [`OperatorConfig::server_name`].
pub const ENV_SERVER_NAME: &str = "RECORDING_OPERATOR_SERVER_NAME";

/// Errors of loading, validating and resolving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("cannot read secret {reference}: {reason}")]
    Secret { reference: String, reason: String },
}

// ---------------------------------------------------------------------------------------------
// The configuration as a whole
// ---------------------------------------------------------------------------------------------

/// The operator's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "OperatorConfigFile")]
pub struct OperatorConfig {
    /// Platform server name (default `recording`): the enterprise applications are named
    /// `<server>-auth`, `<server>-aad`, `<server>-hue`, `<server>-hue-paired`, `<server>-im`.
    pub server_name: String,
    /// Which Microsoft cloud the customer tenants live in.
    pub cloud: CloudConfig,
    /// Public URL of the operator's `/consent/callback` endpoint, registered on every platform
    /// application as a Web redirect URI. Required: the admin-consent link must carry a
    /// `redirect_uri` registered on the application, where Entra sends the admin back.
    pub consent_redirect_uri: Option<String>,
    /// Consents by key (defaults: SPEC section 2, merged key by key with the file).
    pub consents: BTreeMap<String, ConsentConfig>,
    /// Poll timings.
    pub polling: PollingConfig,
    /// Per-tenant storage (Azure Blob accounts per region, or PersistentVolumeClaims); without
    /// it the operator provisions no storage and reports `StorageReady` as `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// E-mail to the customers' contacts (SMTP or Graph `sendMail`); without it no e-mail is
    /// sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsConfig>,
    /// Namespace the operator runs in: where its Lease and the customers' BYOS Secrets live
    /// (default: `POD_NAMESPACE`, else `recording-operator-system`).
    pub operator_namespace: String,
    /// Public base URL of the operator's public listener (behind the Ingress), e.g.
    /// `https://onboarding.example.com`: the Quick Start links start with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The customers' Quick Start page: its link signing keys and how long a link lasts.
    #[serde(default)]
    pub quick_start: QuickStartConfig,
    /// Sign-in with Microsoft for the customers' administrators (off unless `enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignInConfig>,
    /// How the recording bots run: Windows nodes, sizing, media exposure, lifecycle.
    #[serde(default)]
    pub bots: BotsConfig,
    /// Who the RoleBinding the operator makes in each tenant namespace binds to what.
    #[serde(default)]
    pub tenant_access: crate::rbac::TenantAccess,
    /// The hard limits of every tenant namespace's ResourceQuota, over the defaults.
    #[serde(default)]
    pub tenant_quota: TenantQuotaConfig,
    /// What a RecordingService may ask its bots to run (image registries/repositories, digest
    /// pinning) and mount (Secrets carrying a label).
    #[serde(default)]
    pub bot_policy: crate::bot_policy::BotPolicy,
    /// The platform's own Entra tenant (GUID), where its applications are registered: when
    /// set, the operator reads their client secrets' expiry there (with the `directory`
    /// application, which then needs `Application.Read.All` consented in that tenant) for the
    /// `recording_operator_client_secret_expiry_days` gauge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_tenant_id: Option<String>,
    /// The bots' calling webhook: Ingress class, hosts and certificate (see `src/webhook.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// The id in the platform's Teams app manifest (a GUID; Graph's `teamsApp.externalId`).
    /// When set, each Tenant's status tells whether the customer's organisation catalog has
    /// the app published (`status.teamsApp`), read with the `directory` application when the
    /// customer granted it the optional `AppCatalog.Read.All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_app_id: Option<String>,
}

/// Sign-in with Microsoft through the `login` application (see `src/signin.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInConfig {
    /// Turns sign-in on.
    #[serde(default)]
    pub enabled: bool,
    /// Public URL of the operator's `/signin/callback`, registered on the `login` application
    /// as a Web redirect URI.
    pub redirect_uri: String,
    /// Key the sign-in cookies are signed with (at least 32 characters).
    pub cookie_key: SecretRef,
    /// How long a sign-in lasts (default 30 minutes).
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfigFile::default().into()
    }
}

impl OperatorConfig {
    /// Reads the YAML file at `path` (all defaults when `None`) and applies the environment
    /// overrides. Does not validate: call [`OperatorConfig::validate`].
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            None => OperatorConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_yaml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
        };
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Parses a YAML document; an empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(OperatorConfig::default());
        }
        serde_saphyr::from_str::<OperatorConfig>(text).map_err(|e| e.to_string())
    }

    /// Applies the environment overrides read through `var` (injected for tests).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(host) = set(ENV_AUTHORITY_HOST) {
            self.cloud.authority_host = Some(host);
        }
        if let Some(graph) = set(ENV_GRAPH_ENDPOINT) {
            self.cloud.graph_endpoint = Some(graph);
        }
        if let Some(server) = set(ENV_SERVER_NAME) {
            let old = std::mem::replace(&mut self.server_name, server);
            // Display names still following the old server name follow the new one.
            for (key, consent) in self.consents.iter_mut() {
                if let Some(old_name) = default_display_name(&old, key) {
                    if consent.display_name == old_name {
                        consent.display_name =
                            default_display_name(&self.server_name, key).unwrap_or(old_name);
                    }
                }
            }
        }
    }

    /// Checks every field; the error lists each problem with the field's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.server_name.trim().is_empty() {
            problems.push("serverName: must not be empty".to_owned());
        }
        if let Err(e) = self.cloud.authority_host() {
            problems.push(e);
        }
        if let Err(e) = self.cloud.graph_endpoint() {
            problems.push(e);
        }
        match self.consent_redirect_uri.as_deref() {
            None | Some("") => problems.push(
                "consentRedirectUri: required: the admin-consent link carries it, and it must be a Web redirect URI registered on every platform application (the operator's public /consent/callback)".to_owned(),
            ),
            Some(uri) => match Url::parse(uri) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                    if let Err(why) = https_unless_loopback(&u) {
                        problems.push(format!(
                            "consentRedirectUri: {:?} {why}",
                            strip_userinfo(uri)
                        ));
                    }
                }
                _ => problems.push(format!(
                    "consentRedirectUri: {:?} is not an absolute http(s) URL",
                    strip_userinfo(uri)
                )),
            },
        }
        for (key, consent) in &self.consents {
            consent.check(key, &mut problems);
        }
        if let Some(id) = self.teams_app_id.as_deref().filter(|id| !is_guid(id)) {
            problems.push(format!(
                "teamsAppId: {id:?} is not a Teams app manifest id GUID"
            ));
        }
        if let Some(id) = self.home_tenant_id.as_deref().filter(|id| !is_guid(id)) {
            problems.push(format!(
                "homeTenantId: {id:?} is not an Entra tenant id GUID"
            ));
        }
        self.polling.check(&mut problems);
        self.bot_policy.check(&mut problems);
        // The default image runs wherever a service names none: the policy holds for it too.
        if let Some(refused) = self
            .bot_policy
            .image_violation("bots.defaultImage", &self.bots.default_image)
        {
            problems.push(refused.to_string());
        }
        self.quick_start
            .check(self.public_url.as_deref(), &mut problems);
        if let Some(storage) = &self.storage {
            let found = storage.problems();
            if !found.is_empty() {
                problems.push(format!(
                    "storage: invalid storage configuration: {}",
                    found.join("; ")
                ));
            }
        }
        if let Some(notifications) = &self.notifications {
            notifications.check(&mut problems);
        }
        self.bots.check(&mut problems);
        problems.extend(self.tenant_quota.problems());
        for (path, reference) in self.secret_refs() {
            if let SecretRef::SecretRef { namespace, .. } = reference {
                if *namespace != self.operator_namespace {
                    problems.push(format!(
                        "{path}.secretRef.namespace: {namespace:?} is not the operator's \
                         namespace {:?}, the only one whose Secrets it may read (its RBAC)",
                        self.operator_namespace
                    ));
                }
            }
        }
        if let Some(webhook) = &self.webhook {
            webhook.check(&mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every secret reference of the configuration, with its path.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut refs: Vec<(String, &SecretRef)> = Vec::new();
        for (key, consent) in &self.consents {
            if let Some(r) = &consent.client_secret {
                refs.push((format!("consents.{key}.clientSecret"), r));
            }
        }
        if let Some(r) = &self.quick_start.signing_keys {
            refs.push(("quickStart.signingKeys".into(), r));
        }
        if let Some(sign_in) = &self.sign_in {
            refs.push(("signIn.cookieKey".into(), &sign_in.cookie_key));
        }
        if let Some(storage) = &self.storage {
            for (region, account) in &storage.accounts {
                refs.push((
                    format!("storage.accounts.{region}.credential"),
                    &account.credential,
                ));
            }
        }
        if let Some(notifications) = &self.notifications {
            if let Some(r) = notifications
                .smtp
                .as_ref()
                .and_then(|s| s.password.as_ref())
            {
                refs.push(("notifications.smtp.password".into(), r));
            }
            if let Some(graph) = &notifications.graph {
                refs.push((
                    "notifications.graph.clientSecret".into(),
                    &graph.client_secret,
                ));
            }
        }
        refs
    }

    /// The consents a tenant with the given license must grant (mandatory ones), plus the
    /// optional ones, in key order.
    pub fn consents_for(&self, pro: bool) -> Vec<(&str, &ConsentConfig)> {
        self.consents
            .iter()
            .filter(|(_, c)| c.mandatory != Mandatory::ProOnly || pro)
            .map(|(k, c)| (k.as_str(), c))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Small syntax checks
// ---------------------------------------------------------------------------------------------

/// `8-4-4-4-12` hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// The file as written: everything optional, merged over the defaults
// ---------------------------------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OperatorConfigFile {
    server_name: Option<String>,
    #[serde(default)]
    cloud: CloudConfig,
    consent_redirect_uri: Option<String>,
    #[serde(default)]
    consents: BTreeMap<String, ConsentFile>,
    #[serde(default)]
    polling: PollingConfig,
    #[serde(default)]
    storage: Option<StorageConfig>,
    #[serde(default)]
    notifications: Option<NotificationsConfig>,
    operator_namespace: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    quick_start: QuickStartConfig,
    #[serde(default)]
    sign_in: Option<SignInConfig>,
    #[serde(default)]
    bots: BotsConfig,
    #[serde(default)]
    tenant_access: crate::rbac::TenantAccessFile,
    #[serde(default)]
    tenant_quota: TenantQuotaConfig,
    #[serde(default)]
    bot_policy: crate::bot_policy::BotPolicy,
    home_tenant_id: Option<String>,
    webhook: Option<WebhookConfig>,
    teams_app_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsentFile {
    app_id: Option<String>,
    display_name: Option<String>,
    client_secret: Option<SecretRef>,
    application_permissions: Option<Vec<String>>,
    delegated_scopes: Option<Vec<String>>,
    mandatory: Option<Mandatory>,
}

impl From<OperatorConfigFile> for OperatorConfig {
    fn from(file: OperatorConfigFile) -> Self {
        let server_name = file.server_name.unwrap_or_else(|| "recording".to_owned());
        let mut consents = default_consents(&server_name);
        for (key, given) in file.consents {
            let base = consents.remove(&key);
            let (display_name, app, delegated, mandatory) = match base {
                Some(b) => (
                    b.display_name,
                    b.application_permissions,
                    b.delegated_scopes,
                    b.mandatory,
                ),
                // A consent of the tenant's own: optional unless said otherwise.
                None => (
                    format!("{server_name}-{key}"),
                    vec![],
                    vec![],
                    Mandatory::Never,
                ),
            };
            let consent = ConsentConfig {
                app_id: given.app_id.unwrap_or_default(),
                display_name: given.display_name.unwrap_or(display_name),
                client_secret: given.client_secret,
                application_permissions: given.application_permissions.unwrap_or(app),
                delegated_scopes: given.delegated_scopes.unwrap_or(delegated),
                mandatory: given.mandatory.unwrap_or(mandatory),
            };
            consents.insert(key, consent);
        }
        OperatorConfig {
            server_name,
            cloud: file.cloud,
            consent_redirect_uri: file.consent_redirect_uri,
            consents,
            polling: file.polling,
            storage: file.storage,
            notifications: file.notifications,
            sign_in: file.sign_in,
            home_tenant_id: file.home_tenant_id,
            teams_app_id: file.teams_app_id,
            operator_namespace: file
                .operator_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "recording-operator-system".to_owned()),
            public_url: file.public_url,
            quick_start: file.quick_start,
            bots: file.bots,
            tenant_access: file.tenant_access.resolve(),
            tenant_quota: file.tenant_quota,
            bot_policy: file.bot_policy,
            webhook: file.webhook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "11111111-2222-4333-8444-555555555555";

    fn with_app_ids(mut config: OperatorConfig) -> OperatorConfig {
        config.consent_redirect_uri = Some("https://operator.example.com/consent/callback".into());
        for consent in config.consents.values_mut() {
            consent.app_id = GUID.to_owned();
            if !consent.application_permissions.is_empty() {
                consent.client_secret = Some(SecretRef::Env("X".into()));
            }
        }
        config
    }

    #[test]
    fn a_teams_app_id_must_be_a_manifest_guid() {
        let mut config = with_app_ids(OperatorConfig::default());
        config.consent_redirect_uri =
            Some("https://onboarding.example.com/consent/callback".into());
        config.teams_app_id = Some("f31b1263-ba99-435a-a679-911d24850d7c".into());
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        config.teams_app_id = Some("recording-teams-app".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains(
                "teamsAppId: \"recording-teams-app\" is not a Teams app manifest id GUID"
            ),
            "{error}"
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = OperatorConfig::default();
        assert_eq!(config.server_name, "recording");
        let keys: Vec<_> = config.consents.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "directory",
                "instantMessages",
                "login",
                "recording",
                "redundantRecording",
                "teamsApp"
            ]
        );
        let paired = &config.consents["redundantRecording"];
        assert_eq!(paired.display_name, "recording-hue-paired");
        assert_eq!(paired.mandatory, Mandatory::ProOnly);
        assert_eq!(
            paired.application_permissions,
            [
                "Calls.AccessMedia.All",
                "Calls.JoinGroupCall.All",
                "Calls.JoinGroupCallAsGuest.All"
            ]
        );
        assert_eq!(
            config.consents["login"].delegated_scopes,
            ["openid", "profile", "User.Read"]
        );
        assert_eq!(config.consents["teamsApp"].mandatory, Mandatory::Never);
        assert_eq!(config.polling.pending_initial, Duration::from_secs(30));
        assert_eq!(config.polling.granted_interval, Duration::from_secs(21600));
        assert_eq!(config.consents_for(false).len(), 5);
        assert_eq!(config.consents_for(true).len(), 6);
    }

    #[test]
    fn file_merges_over_defaults() {
        let yaml = r#"
serverName: acme
cloud: { preset: usGovDoD }
consents:
  directory:
    appId: 11111111-2222-4333-8444-555555555555
    clientSecret: { secretRef: { namespace: ops, name: apps, key: directory } }
  recording:
    applicationPermissions: [Calls.AccessMedia.All]
    clientSecret: { file: /var/run/secrets/recording }
  archive:
    delegatedScopes: [Files.Read.All]
polling: { pendingInitial: 10s, grantedInterval: 1h 30m }
"#;
        let config = OperatorConfig::from_yaml(yaml).unwrap();
        assert_eq!(
            config.cloud.authority_host().unwrap().as_str(),
            "https://login.microsoftonline.us/"
        );
        assert_eq!(
            config.cloud.graph_scope().unwrap(),
            "https://dod-graph.microsoft.us/.default"
        );
        let directory = &config.consents["directory"];
        assert_eq!(directory.display_name, "acme-aad");
        assert_eq!(directory.application_permissions.len(), 4);
        assert_eq!(
            directory.client_secret,
            Some(SecretRef::SecretRef {
                namespace: "ops".into(),
                name: "apps".into(),
                key: "directory".into()
            })
        );
        assert_eq!(
            config.consents["recording"].application_permissions,
            ["Calls.AccessMedia.All"]
        );
        assert_eq!(config.consents["archive"].mandatory, Mandatory::Never);
        assert_eq!(config.consents["archive"].display_name, "acme-archive");
        assert_eq!(config.polling.pending_initial, Duration::from_secs(10));
        assert_eq!(config.polling.granted_interval, Duration::from_secs(5400));
        assert_eq!(config.polling.pending_max, Duration::from_secs(300));
    }

    #[test]
    fn sign_in_is_off_unless_enabled_and_its_session_lasts_thirty_minutes_by_default() {
        assert_eq!(OperatorConfig::from_yaml("{}").unwrap().sign_in, None);
        let config = OperatorConfig::from_yaml(
            "signIn:\n  enabled: true\n  redirectUri: https://rec.example/signin/callback\n  cookieKey: {env: COOKIE_KEY}\n",
        )
        .unwrap();
        let sign_in = config.sign_in.unwrap();
        assert!(sign_in.enabled);
        assert_eq!(sign_in.session_ttl, Duration::from_secs(1800));
        assert_eq!(sign_in.cookie_key, SecretRef::Env("COOKIE_KEY".into()));
        let err = OperatorConfig::from_yaml(
            "signIn:\n  redirectUri: https://rec.example/cb\n  cookieKey: {env: K}\n  sessionTTL: 5m\n",
        )
        .unwrap_err();
        assert!(err.contains("sessionTTL"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = OperatorConfig::from_yaml("serverNmae: x\n").unwrap_err();
        assert!(err.contains("serverNmae"), "{err}");
    }

    #[test]
    fn env_overrides_hosts_and_server_name() {
        let mut config = OperatorConfig::default();
        config.apply_env(|name| match name {
            ENV_AUTHORITY_HOST => Some("http://127.0.0.1:4000/".into()),
            ENV_GRAPH_ENDPOINT => Some("http://127.0.0.1:4001".into()),
            ENV_SERVER_NAME => Some("rec2".into()),
            _ => None,
        });
        assert_eq!(
            config.cloud.authority_host().unwrap().as_str(),
            "http://127.0.0.1:4000/"
        );
        assert_eq!(
            config.cloud.graph_scope().unwrap(),
            "http://127.0.0.1:4001/.default"
        );
        assert_eq!(config.server_name, "rec2");
        assert_eq!(config.consents["login"].display_name, "rec2-auth");
    }

    #[test]
    fn plain_http_only_to_loopback_and_never_a_password_in_the_error() {
        let mut config = with_app_ids(OperatorConfig::default());
        config.cloud.authority_host = Some("http://login.example.com".into());
        config.consent_redirect_uri = Some("http://operator.example.com/consent/callback".into());
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("invalid")
        };
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("cloud.authorityHost: \"http://login.example.com/\" must be https://"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("consentRedirectUri: \"http://operator.example.com/consent/callback\" must be https://"),
            "{problems:#?}"
        );
        // The demo's loopback simulators stay usable.
        config.cloud.authority_host = Some("http://127.0.0.1:4000".into());
        config.consent_redirect_uri = Some("http://localhost:8080/consent/callback".into());
        config.validate().unwrap();

        config.cloud.authority_host = Some("https://admin:hunter2@login.example.com".into());
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("must not carry a user name or password"),
            "{message}"
        );
        assert!(
            !message.contains("hunter2") && !message.contains("admin:"),
            "{message}"
        );
        assert_eq!(
            strip_userinfo("https://u:p@acct.blob.core.windows.net/c?sig=x"),
            "https://acct.blob.core.windows.net/c?sig=x"
        );
        assert_eq!(strip_userinfo("https://host/p@th"), "https://host/p@th");
    }

    #[test]
    fn secret_refs_outside_the_operators_namespace_are_refused_by_path() {
        let mut config = with_app_ids(OperatorConfig::default());
        config.operator_namespace = "platform".into();
        config.consents.get_mut("directory").unwrap().client_secret = Some(SecretRef::SecretRef {
            namespace: "kube-system".into(),
            name: "apps".into(),
            key: "directory".into(),
        });
        config.consents.get_mut("login").unwrap().client_secret = Some(SecretRef::SecretRef {
            namespace: "platform".into(),
            name: "apps".into(),
            key: "login".into(),
        });
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("invalid")
        };
        assert_eq!(
            problems,
            ["consents.directory.clientSecret.secretRef.namespace: \"kube-system\" is not the operator's namespace \"platform\", the only one whose Secrets it may read (its RBAC)"]
        );
    }

    #[test]
    fn a_default_bot_image_outside_the_bot_policy_is_refused_by_path() {
        let mut config = with_app_ids(OperatorConfig::default());
        config
            .validate()
            .expect("the shipped default image is allowed");
        config.bots.default_image = "docker.io/someone/bot:1".into();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("invalid")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("bots.defaultImage: image \"docker.io/someone/bot:1\""),
            "{problems:?}"
        );
    }

    #[test]
    fn graph_scope_keeps_a_path_prefix() {
        let cloud = CloudConfig {
            graph_endpoint: Some("http://127.0.0.1:9000/graph/".into()),
            ..CloudConfig::default()
        };
        assert_eq!(
            cloud.graph_scope().unwrap(),
            "http://127.0.0.1:9000/graph/.default"
        );
    }

    #[test]
    fn a_bad_tenant_quota_limit_is_refused_with_its_path() {
        let mut config = OperatorConfig::default();
        config
            .tenant_quota
            .hard
            .insert("limits.memory".into(), "lots".into());
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("tenantQuota.hard.limits.memory: \"lots\"")),
            "{problems:?}"
        );
    }

    #[test]
    fn validate_names_every_bad_field() {
        let mut config = OperatorConfig::default();
        config.cloud.graph_endpoint = Some("graph.example".into());
        config.polling.jitter = 1.5;
        config.polling.pending_max = Duration::from_secs(1);
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        let text = problems.join("\n");
        assert!(
            text.contains("cloud.graphEndpoint: \"graph.example\" is not an absolute URL"),
            "{text}"
        );
        assert!(
            text.contains("consents.directory.appId: \"\" is not an application (client) id GUID"),
            "{text}"
        );
        assert!(
            text.contains(
                "consents.recording.clientSecret: required to check application permissions"
            ),
            "{text}"
        );
        assert!(
            text.contains("polling.jitter: 1.5 is not a fraction in [0, 1)"),
            "{text}"
        );
        assert!(
            text.contains("polling.pendingMax: 1s is shorter than polling.pendingInitial 30s"),
            "{text}"
        );
        assert!(
            !text.contains("consents.login.clientSecret"),
            "delegated-only consents need no secret: {text}"
        );
    }

    #[test]
    fn complete_configuration_validates() {
        with_app_ids(OperatorConfig::default()).validate().unwrap();
    }

    #[test]
    fn serialized_configuration_reads_back_the_same() {
        let config = with_app_ids(OperatorConfig::default());
        let yaml = serde_saphyr::to_string(&config).unwrap();
        assert_eq!(OperatorConfig::from_yaml(&yaml).unwrap(), config);
    }

    #[tokio::test]
    async fn secrets_from_env_and_file_never_print() {
        let dir = std::env::temp_dir().join(format!("ro-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let value = Secrets::local()
            .get(&SecretRef::File(path.clone()))
            .await
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&value), "s3cr3t-value");
        assert!(!format!("{value:?}").contains("s3cr3t"));

        let missing = SecretRef::Env("RECORDING_OPERATOR_TEST_UNSET_VARIABLE".into());
        let err = Secrets::local().get(&missing).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read secret environment variable RECORDING_OPERATOR_TEST_UNSET_VARIABLE: the variable is not set"
        );
        let kube_ref = SecretRef::SecretRef {
            namespace: "ops".into(),
            name: "apps".into(),
            key: "k".into(),
        };
        let err = Secrets::local().get(&kube_ref).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read secret Secret ops/apps key k: no Kubernetes client configured"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
