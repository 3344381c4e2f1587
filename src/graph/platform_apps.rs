//! The platform's own applications' client secrets, read from their registrations in the
//! platform's home tenant so that an alert fires before a platform secret expires (a customer's
//! known app registration is read by the RecordingService controller instead).
//!
//! One token of the `directory` application in the home tenant reads every platform app's
//! `passwordCredentials` (`GET /applications(appId='…')`): it needs `Application.Read.All`
//! admin-consented in the home tenant, as it has in every customer tenant. Only the dates are
//! read; Graph never returns a secret's value after it was created.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::application::{password_credentials, soonest_future_expiry, PasswordCredential};
use super::client::GraphClient;
use super::token::TokenProvider;
use super::GraphError;
use crate::config::{OperatorConfig, DIRECTORY_CONSENT};

/// How often the platform apps' secrets are read when the last read worked.
pub const READ_EVERY: Duration = Duration::from_secs(6 * 3600);
/// How soon a read that failed is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);

/// A platform application whose client secret the operator uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformApp {
    /// The consent key naming it in the configuration (e.g. `recording`).
    pub key: String,
    pub app_id: String,
}

/// The applications to watch: every consent the operator holds a client secret for (the
/// apps it signs in as), one line per application id.
pub fn watched_apps(config: &OperatorConfig) -> Vec<PlatformApp> {
    let mut apps: Vec<PlatformApp> = Vec::new();
    for (key, consent) in &config.consents {
        if consent.client_secret.is_none() || consent.app_id.is_empty() {
            continue;
        }
        if apps
            .iter()
            .any(|a| a.app_id.eq_ignore_ascii_case(&consent.app_id))
        {
            continue;
        }
        apps.push(PlatformApp {
            key: key.clone(),
            app_id: consent.app_id.clone(),
        });
    }
    apps
}

/// The end to report for an application: the soonest end of a secret still valid, else the
/// last end of one that expired (the gauge then goes negative, so the alert keeps firing
/// instead of the line vanishing), `None` for an application without secrets.
pub fn expiry_to_report(credentials: &[PasswordCredential], now: Timestamp) -> Option<Timestamp> {
    soonest_future_expiry(credentials, now)
        .or_else(|| credentials.iter().filter_map(|c| c.end).max())
}

/// What one read found per application: [`expiry_to_report`], or why it could not be read.
pub type Expiries = Vec<(PlatformApp, Result<Option<Timestamp>, GraphError>)>;

/// Reads each platform application's client secrets in `home_tenant`, with the `directory`
/// application's token there. `Err` when no token can be had (nothing could be read).
pub async fn read_expiries(
    tokens: &TokenProvider,
    graph: &GraphClient,
    config: &OperatorConfig,
    home_tenant: &str,
    now: Timestamp,
) -> Result<Expiries, GraphError> {
    let Some(directory) = config.consents.get(DIRECTORY_CONSENT) else {
        // Nothing to read with (the configuration's defaults always have it).
        return Ok(Vec::new());
    };
    let token = tokens
        .token(
            home_tenant,
            &directory.app_id,
            directory.client_secret.as_ref(),
        )
        .await?;
    let mut found = Vec::new();
    for app in watched_apps(config) {
        let read = password_credentials(graph, &token, &app.app_id)
            .await
            .map(|credentials| expiry_to_report(&credentials, now));
        found.push((app, read));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    #[test]
    fn every_app_the_operator_signs_in_as_once() {
        let mut config = OperatorConfig::default();
        for (i, (key, consent)) in config.consents.iter_mut().enumerate() {
            consent.app_id = format!("00000000-0000-4000-8000-{i:012}");
            if key != "login" {
                consent.client_secret = Some(SecretRef::Env(format!("SECRET_{i}")));
            }
        }
        // Two consents served by one application count once.
        let recording = config.consents["recording"].app_id.clone();
        config
            .consents
            .get_mut("redundantRecording")
            .unwrap()
            .app_id = recording.to_uppercase();
        let keys: Vec<String> = watched_apps(&config).into_iter().map(|a| a.key).collect();
        assert!(
            !keys.contains(&"login".to_string()),
            "no secret, not watched"
        );
        assert!(keys.contains(&"recording".to_string()));
        assert!(!keys.contains(&"redundantRecording".to_string()));
        assert!(keys.contains(&"directory".to_string()));
    }
}
