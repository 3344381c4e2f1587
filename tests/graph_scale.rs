//! The request budget of consent polling across many tenants, measured on the simulator's
//! counters: what one poll of a granted, a half-granted and a pending Pro tenant costs.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use recording_operator::config::{Mandatory, OperatorConfig, SecretRef};
use recording_operator::graph::{CheckState, ConsentChecker, ConsentSpec};
use sim::m365::{M365Sim, Seed, TenantSeed, PLATFORM_CONSENTS};

use common::secrets::MapSecrets;

const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
const TENANTS: usize = 60;

fn tenant_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-00000000beef")
}

#[tokio::test]
async fn polling_sixty_pro_tenants_stays_within_the_request_budget() {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", "https://x/cb");
    for i in 0..TENANTS {
        seed.tenants.push(TenantSeed {
            id: tenant_id(i),
            display_name: None,
            domains: vec![format!("customer{i}.example")],
        });
    }
    let sim = M365Sim::start(seed.clone()).await.unwrap();
    let mut config = OperatorConfig {
        consent_redirect_uri: Some("https://operator.example.com/consent/callback".into()),
        ..OperatorConfig::default()
    };
    config.cloud.authority_host = Some(sim.url());
    config.cloud.graph_endpoint = Some(sim.url());
    config.polling.check_cache_ttl = Duration::ZERO;
    let mut secrets = HashMap::new();
    for (key, suffix, _, _) in PLATFORM_CONSENTS {
        let app = seed.app(&format!("rec-{suffix}")).unwrap();
        let consent = config.consents.get_mut(*key).unwrap();
        consent.app_id = app.app_id.clone();
        consent.client_secret = Some(SecretRef::Env(key.to_string()));
        secrets.insert(key.to_string(), app.secrets[0].value.clone());
    }
    let checker = ConsentChecker::new(&config, Arc::new(MapSecrets(secrets))).unwrap();
    let specs: Vec<ConsentSpec> = config
        .consents_for(true)
        .into_iter()
        .filter(|(_, c)| c.mandatory != Mandatory::Never)
        .map(|(k, c)| ConsentSpec::from_config(k, c))
        .collect();

    // A third of the tenants granted everything, a third only `directory`, a third nothing.
    let granted: Vec<String> = (0..TENANTS / 3).map(tenant_id).collect();
    let half: Vec<String> = (TENANTS / 3..2 * TENANTS / 3).map(tenant_id).collect();
    let pending: Vec<String> = (2 * TENANTS / 3..TENANTS).map(tenant_id).collect();
    for t in &granted {
        for s in &specs {
            sim.grant_consent(t, &s.app_id);
        }
    }
    for t in &half {
        sim.grant_consent(t, &config.consents["directory"].app_id);
    }
    let all: Vec<&String> = granted.iter().chain(&half).chain(&pending).collect();

    let poll = |label: &'static str| {
        let checker = checker.clone();
        let sim = sim.clone();
        let all = all.clone();
        let specs = specs.clone();
        async move {
            sim.reset_counts();
            let started = Instant::now();
            let results = join_all(all.iter().map(|t| checker.check_now(t, &specs))).await;
            let took = started.elapsed();
            let counts = sim.counts();
            eprintln!(
                "{label}: {} tenants in {took:?}; Graph round trips {}, batch items {}, token requests {}",
                all.len(),
                counts.total.graph_requests(),
                counts.total.batch_items,
                counts.total.token
            );
            (results, counts)
        }
    };

    let (first, counts) = poll("first poll").await;
    for (t, r) in all.iter().zip(&first) {
        let expect = if granted.contains(t) {
            CheckState::Granted
        } else {
            CheckState::Pending
        };
        assert_eq!(r.get("recording").unwrap().state, expect, "{t}");
    }
    for t in &pending {
        let c = counts.tenant(t);
        assert_eq!(
            c.graph_requests(),
            0,
            "a pending tenant costs no Graph request"
        );
        assert_eq!(c.token, 4, "directory + 3 application-permission consents");
    }
    for t in &half {
        assert_eq!(counts.tenant(t).graph_requests(), 1);
    }
    for t in &granted {
        assert_eq!(
            counts.tenant(t).graph_requests(),
            2,
            "look-ups, then details"
        );
    }

    // A steady-state poll 6 hours later: the cached tokens have expired by then.
    for t in &all {
        for s in &specs {
            checker.tokens().invalidate(t, &s.app_id);
        }
    }
    let (_, counts) = poll("steady poll").await;
    for t in &granted {
        let c = counts.tenant(t);
        assert_eq!((c.graph_requests(), c.token), (1, 1), "{t}");
        assert!(c.batch_items <= 20);
    }
    for t in &half {
        let c = counts.tenant(t);
        assert_eq!((c.graph_requests(), c.token), (1, 1), "{t}");
    }
    // Four polls a day (every 6 h) of one batch each: within 6 Graph requests a day.
    assert!(4 * counts.tenant(&granted[0]).graph_requests() <= 6);
}
