//! Which access tokens the consent checker keeps between checks: a token is worth its memory
//! only while it can still be used, so a tenant whose consents are all granted (checked again
//! hours later) keeps none, and a tenant still pending (checked again within minutes) keeps
//! its directory token.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use recording_operator::config::{Mandatory, OperatorConfig, SecretRef};
use recording_operator::graph::{CheckState, ConsentChecker, ConsentSpec, TenantCheck};
use sim::m365::{M365Sim, Seed, TenantSeed, PLATFORM_CONSENTS};

use common::secrets::MapSecrets;

const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";
const FOREIGN: &str = "FOREIGN";

struct World {
    sim: M365Sim,
    config: OperatorConfig,
    checker: ConsentChecker,
}

/// The simulator with Contoso, and a checker for it; `granted_interval` is the poll interval of
/// a granted consent (the default is six hours).
async fn world(granted_interval: Option<Duration>) -> World {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", "https://x/cb");
    seed.tenants.push(TenantSeed {
        id: CONTOSO.into(),
        display_name: None,
        domains: vec!["contoso.example".into()],
    });
    let sim = M365Sim::start(seed.clone())
        .await
        .expect("simulator starts");
    let mut config = OperatorConfig {
        consent_redirect_uri: Some("https://operator.example.com/consent/callback".into()),
        ..OperatorConfig::default()
    };
    config.cloud.authority_host = Some(sim.url());
    config.cloud.graph_endpoint = Some(sim.url());
    config.polling.check_cache_ttl = Duration::ZERO;
    if let Some(interval) = granted_interval {
        config.polling.granted_interval = interval;
    }
    let mut secrets = HashMap::new();
    for (key, suffix, _, _) in PLATFORM_CONSENTS {
        let app = seed.app(&format!("rec-{suffix}")).expect("platform app");
        let consent = config.consents.get_mut(*key).expect("default consent");
        consent.app_id = app.app_id.clone();
        consent.client_secret = Some(SecretRef::Env(key.to_string()));
        secrets.insert(key.to_string(), app.secrets[0].value.clone());
    }
    // A client secret someone else names for a platform app's id (a RecordingService's).
    secrets.insert(FOREIGN.into(), "N0t~the.app-secret".into());
    let checker = ConsentChecker::new(&config, Arc::new(MapSecrets(secrets))).expect("checker");
    World {
        sim,
        config,
        checker,
    }
}

impl World {
    fn pro_specs(&self) -> Vec<ConsentSpec> {
        self.config
            .consents_for(true)
            .into_iter()
            .filter(|(_, c)| c.mandatory != Mandatory::Never)
            .map(|(key, c)| ConsentSpec::from_config(key, c))
            .collect()
    }

    fn grant(&self, key: &str) {
        self.sim
            .grant_consent(CONTOSO, &self.config.consents[key].app_id);
    }

    /// Token requests for Contoso since the last reset.
    fn token_requests(&self) -> u64 {
        self.sim.counts().tenant(CONTOSO).token
    }
}

fn all_granted(check: &TenantCheck) -> bool {
    check
        .consents
        .iter()
        .all(|c| c.state == CheckState::Granted)
}

#[tokio::test]
async fn a_tenant_with_every_consent_granted_keeps_no_token_between_checks() {
    let w = world(None).await;
    let specs = w.pro_specs();
    for spec in &specs {
        w.grant(&spec.key);
    }

    let first = w.checker.check(CONTOSO, &specs).await;
    assert!(all_granted(&first), "{:?}", first.consents);
    assert_eq!(
        w.token_requests(),
        1,
        "the directory token verifies the rest"
    );
    assert_eq!(
        w.checker.tokens().cached(),
        0,
        "next check in hours, the token lasts one"
    );

    // An unscheduled re-check (the consent redirect) fetches a token again and finds the
    // same; nothing else changes.
    w.sim.reset_counts();
    let again = w.checker.check_now(CONTOSO, &specs).await;
    assert!(all_granted(&again), "{:?}", again.consents);
    assert_eq!(w.token_requests(), 1);
    assert_eq!(w.sim.counts().tenant(CONTOSO).graph_batch, 1);
    assert_eq!(w.checker.tokens().cached(), 0);
}

#[tokio::test]
async fn a_pending_tenant_keeps_its_directory_token_for_the_next_poll() {
    let w = world(None).await;
    let specs = w.pro_specs();
    w.grant("directory");

    let first = w.checker.check(CONTOSO, &specs).await;
    assert!(!all_granted(&first));
    assert_eq!(w.token_requests(), 1);
    assert_eq!(w.checker.tokens().cached(), 1);

    w.sim.reset_counts();
    let next = w.checker.check_now(CONTOSO, &specs).await;
    assert!(!all_granted(&next));
    assert_eq!(w.token_requests(), 0, "the next poll uses the cached token");
}

#[tokio::test]
async fn a_granted_tenant_polled_within_the_token_lifetime_keeps_its_token() {
    // Granted consents polled every ten minutes: checks share for five, the token lasts an
    // hour, so it is still good for the next check.
    let w = world(Some(Duration::from_secs(600))).await;
    let specs = w.pro_specs();
    for spec in &specs {
        w.grant(&spec.key);
    }
    let first = w.checker.check(CONTOSO, &specs).await;
    assert!(all_granted(&first));
    assert_eq!(w.checker.tokens().cached(), 1);

    w.sim.reset_counts();
    let next = w.checker.check_now(CONTOSO, &specs).await;
    assert!(all_granted(&next));
    assert_eq!(w.token_requests(), 0);
}

/// A RecordingService whose `clientId` is a platform app's id, with a client secret of its
/// own: its check asks for a token with that secret, and neither evicts nor borrows the
/// platform's cached token for the app.
#[tokio::test]
async fn a_token_with_someone_elses_secret_leaves_the_platforms_token_alone() {
    let w = world(None).await;
    let specs = w.pro_specs();
    w.grant("directory");
    let first = w.checker.check(CONTOSO, &specs).await;
    assert!(!all_granted(&first));
    assert_eq!(
        w.checker.tokens().cached(),
        1,
        "the directory token is kept"
    );

    w.sim.reset_counts();
    let directory_app = w.config.consents["directory"].app_id.clone();
    let foreign = SecretRef::Env(FOREIGN.into());
    let tokens = w.checker.tokens();
    tokens.invalidate_foreign(CONTOSO, &directory_app, &foreign);
    let refused = tokens
        .foreign_token(CONTOSO, &directory_app, &foreign)
        .await
        .expect_err("the wrong secret gets no token");
    assert!(
        !refused.to_string().contains("N0t~the.app-secret"),
        "{refused}"
    );
    assert_eq!(
        w.token_requests(),
        1,
        "asked with its own secret, not served from cache"
    );

    w.sim.reset_counts();
    let next = w.checker.check_now(CONTOSO, &specs).await;
    assert!(!all_granted(&next));
    assert_eq!(
        w.token_requests(),
        0,
        "the platform's cached token survived the other credential's check"
    );
}
