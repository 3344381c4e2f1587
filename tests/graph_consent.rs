//! The consent checks against the Microsoft identity platform + Graph simulator: a tenant
//! going from Pending to Granted to Partial to revoked, secrets that are wrong, throttling,
//! the request budget of a steady-state poll, and tenant ids from domains.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use recording_operator::config::SecretRef;
use recording_operator::graph::{next_check_after, CheckState, GraphError};
use sim::m365::Throttle;

use common::consent_world::*;

#[tokio::test]
async fn a_tenant_goes_from_pending_to_granted_to_partial_to_revoked() {
    let w = world().await;
    let specs = w.specs(false);

    // Nothing granted: every consent pending, and Graph not asked at all.
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert!(
        check
            .consents
            .iter()
            .all(|c| c.state == CheckState::Pending),
        "{:?}",
        states(&check)
    );
    let login = check.get("login").unwrap();
    assert_eq!(
        login.message,
        "delegated consent: verification waits for the directory consent to be granted"
    );
    let directory = check.get("directory").unwrap();
    assert_eq!(
        directory.missing,
        [
            "User.Read.All",
            "Group.Read.All",
            "Application.Read.All",
            "Directory.Read.All"
        ]
    );
    assert!(
        directory.message.contains("admin consent not given"),
        "{}",
        directory.message
    );
    assert_eq!(w.sim.counts().tenant(CONTOSO).graph_requests(), 0);

    // The directory consent: verified by its token; the others are looked up through Graph.
    w.grant(CONTOSO, "directory");
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_eq!(state(&check, "directory"), CheckState::Granted);
    for key in ["login", "recording", "instantMessages"] {
        let c = check.get(key).unwrap();
        assert_eq!(c.state, CheckState::Pending, "{key}: {}", c.message);
        assert!(
            c.message.contains("has no service principal"),
            "{key}: {}",
            c.message
        );
    }

    // Everything granted.
    for key in ["login", "recording", "instantMessages"] {
        w.grant(CONTOSO, key);
    }
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_all_granted(&check);
    assert_eq!(
        check.get("login").unwrap().granted,
        ["openid", "profile", "User.Read"]
    );

    // One application permission withdrawn: Partial, naming it.
    w.sim
        .revoke_permission(CONTOSO, &w.app_id("recording"), "Calls.JoinGroupCall.All");
    let check = w.checker.check_now(CONTOSO, &specs).await;
    let recording = check.get("recording").unwrap();
    assert_eq!(recording.state, CheckState::Partial);
    assert_eq!(recording.missing, ["Calls.JoinGroupCall.All"]);
    assert_eq!(
        recording.granted,
        ["Calls.AccessMedia.All", "Calls.JoinGroupCallAsGuest.All"]
    );
    assert_eq!(state(&check, "instantMessages"), CheckState::Granted);

    // The enterprise application deleted: back to Pending (the controller calls it Revoked).
    w.sim.revoke_consent(CONTOSO, &w.app_id("recording"));
    w.sim.revoke_consent(CONTOSO, &w.app_id("login"));
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_eq!(state(&check, "recording"), CheckState::Pending);
    assert_eq!(state(&check, "login"), CheckState::Pending);
    assert_eq!(state(&check, "directory"), CheckState::Granted);

    // Consent given again creates a new service principal: found, under its new id.
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_eq!(state(&check, "recording"), CheckState::Granted);
}

#[tokio::test]
async fn a_bad_client_secret_is_an_error_that_never_shows_the_secret() {
    let wrong = "Wr0ng~SecretValue-that-must-stay-hidden";
    let w = world_with(seed(), |_, secrets| {
        secrets.insert("directory-secret".into(), wrong.into());
    })
    .await;
    w.grant(CONTOSO, "directory");
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Error);
    assert_eq!(
        directory.message,
        format!(
            "the client secret of application {} is invalid (AADSTS7000215): the platform team must correct the operator's configuration",
            w.app_id("directory")
        )
    );
    // Without the directory consent usable, the others are judged by their own tokens.
    assert_eq!(state(&check, "recording"), CheckState::Granted);
    // The delegated-only consent cannot be verified until the secret is fixed: never Granted.
    let login = check.get("login").unwrap();
    assert_eq!(login.state, CheckState::Unverified);
    assert!(
        login.message.starts_with(
            "not verified: the directory consent cannot be used: the client secret of application"
        ),
        "{}",
        login.message
    );
    let everything = format!("{check:?}");
    assert!(
        !everything.contains(wrong),
        "the secret leaked: {everything}"
    );
    let real = &w.seed.app("rec-aad").unwrap().secrets[0].value;
    assert!(!everything.contains(real.as_str()));
}

#[tokio::test]
async fn an_expired_secret_and_a_missing_secret_are_errors_for_the_platform_team() {
    let w = world_with(seed(), |config, secrets| {
        secrets.remove("instantMessages-secret");
        // A reference to a secret that does not exist.
        config.consents.get_mut("recording").unwrap().client_secret =
            Some(SecretRef::Env("nowhere".into()));
    })
    .await;
    w.grant(CONTOSO, "instantMessages");
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let im = check.get("instantMessages").unwrap();
    assert_eq!(im.state, CheckState::Error);
    assert_eq!(
        im.message,
        format!(
            "no client secret for application {}: cannot read secret environment variable instantMessages-secret: not set",
            w.app_id("instantMessages")
        )
    );
    assert_eq!(state(&check, "recording"), CheckState::Error);

    // An expired secret: the simulator's clock moves past the secrets' end (one year).
    w.grant(FABRIKAM, "directory");
    w.sim.advance_clock(Duration::from_secs(400 * 24 * 3600));
    let check = w.checker.check_now(FABRIKAM, &w.specs(false)).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Error, "{}", directory.message);
    assert!(
        directory.message.contains("AADSTS7000222"),
        "{}",
        directory.message
    );
}

#[tokio::test]
async fn graph_429_with_retry_after_3_holds_the_next_check_at_least_3s() {
    let w = world().await;
    let specs = w.specs(false);
    for key in ["directory", "login", "recording", "instantMessages"] {
        w.grant(CONTOSO, key);
    }
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert!(check
        .consents
        .iter()
        .all(|c| c.state == CheckState::Granted));

    w.sim.throttle(Throttle {
        tenant: Some(CONTOSO.into()),
        status: 429,
        retry_after_secs: Some(3),
        count: 1,
    });
    let check = w.checker.check_now(CONTOSO, &specs).await;
    let throttled: Vec<_> = check
        .consents
        .iter()
        .filter(|c| c.state == CheckState::Unknown)
        .collect();
    assert!(!throttled.is_empty(), "{:?}", states(&check));
    assert_eq!(throttled[0].retry_after, Some(Duration::from_secs(3)));
    assert_eq!(check.retry_after(), Some(Duration::from_secs(3)));
    let mut rng = StdRng::seed_from_u64(7);
    let wait = next_check_after(
        CheckState::Unknown,
        0,
        &w.config.polling,
        check.retry_after(),
        &mut rng,
    );
    assert!(wait >= Duration::from_secs(3), "{wait:?}");

    // Until the wait is over the tenant is not asked again.
    let before = w.sim.counts().tenant(CONTOSO);
    let again = w.checker.check_now(CONTOSO, &specs).await;
    assert!(again
        .consents
        .iter()
        .all(|c| c.state == CheckState::Unknown));
    assert!(again.retry_after().unwrap() <= Duration::from_secs(3));
    assert_eq!(w.sim.counts().tenant(CONTOSO), before);

    // Another tenant is not held back.
    w.grant(FABRIKAM, "directory");
    let other = w.checker.check_now(FABRIKAM, &specs).await;
    assert_eq!(state(&other, "directory"), CheckState::Granted);
}

#[tokio::test]
async fn a_503_on_the_whole_batch_leaves_every_verified_consent_unknown() {
    let w = world().await;
    let specs = w.specs(false);
    w.grant_all(CONTOSO, &specs);
    w.checker.check_now(CONTOSO, &specs).await;
    w.sim.throttle(Throttle {
        tenant: Some(CONTOSO.into()),
        status: 503,
        retry_after_secs: Some(2),
        count: 1,
    });
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_eq!(
        state(&check, "directory"),
        CheckState::Granted,
        "judged by its token"
    );
    for key in ["login", "recording", "instantMessages"] {
        let c = check.get(key).unwrap();
        assert_eq!(c.state, CheckState::Unknown, "{key}");
        assert_eq!(c.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            c.message,
            "Microsoft Graph is throttling requests; retrying after 2s"
        );
    }
    let by_outcome: HashMap<_, _> = w.checker.counters().graph_requests().into_iter().collect();
    assert_eq!(by_outcome["throttled"], 1);
}

#[tokio::test]
async fn a_throttled_token_endpoint_reports_its_retry_after() {
    let w = world().await;
    w.grant(CONTOSO, "directory");
    w.sim.throttle_token(Throttle {
        tenant: Some(CONTOSO.into()),
        status: 429,
        retry_after_secs: Some(5),
        count: 10,
    });
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Unknown);
    assert_eq!(directory.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(
        directory.message,
        "the Microsoft identity platform is throttling requests; retrying after 5s"
    );
}

#[tokio::test]
async fn a_granted_pro_tenant_is_polled_with_one_batch_and_no_token_request() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
        // Polled within the token's hour, so the token is kept (see tests/graph_tokens.rs).
        config.polling.granted_interval = Duration::from_secs(600);
    })
    .await;
    let specs = w.specs(true);
    assert_eq!(specs.len(), 5);
    w.grant_all(CONTOSO, &specs);
    // First poll learns the service principal ids and Graph's app roles.
    let first = w.checker.check(CONTOSO, &specs).await;
    assert_all_granted(&first);
    let first_counts = w.sim.counts().tenant(CONTOSO);
    assert_eq!(first_counts.token, 1, "one token, for the directory app");
    assert_eq!(first_counts.graph_requests(), 2, "look-ups, then details");

    // Every later poll: one $batch of at most 20 requests, the token from the cache.
    for _ in 0..3 {
        w.sim.reset_counts();
        let check = w.checker.check_now(CONTOSO, &specs).await;
        assert!(check
            .consents
            .iter()
            .all(|c| c.state == CheckState::Granted));
        let counts = w.sim.counts().tenant(CONTOSO);
        assert_eq!(counts.graph_batch, 1);
        assert_eq!(counts.graph_get, 0);
        assert_eq!(counts.token, 0);
        assert!(counts.batch_items <= 20, "{}", counts.batch_items);
    }
    let counters = w.checker.counters();
    assert_eq!(counters.graph_total(), 5);
    assert_eq!(counters.token_total(), 1);
}

#[tokio::test]
async fn the_grants_of_a_granted_tenant_coming_due_apart_share_one_check() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
    })
    .await;
    let specs = w.specs(true);
    w.grant_all(CONTOSO, &specs);
    // Five ConsentGrants, each polling on its own jittered schedule.
    for _ in &specs {
        let check = w.checker.check(CONTOSO, &specs).await;
        assert!(check
            .consents
            .iter()
            .all(|c| c.state == CheckState::Granted));
    }
    assert_eq!(w.checker.counters().checks(), (1, 4));

    // A tenant with a consent still missing is checked afresh each time.
    w.sim.revoke_consent(CONTOSO, &w.app_id("instantMessages"));
    w.checker.check_now(CONTOSO, &specs).await;
    w.checker.check(CONTOSO, &specs).await;
    assert_eq!(w.checker.counters().checks(), (3, 4));
}

#[tokio::test]
async fn a_directory_token_graph_refuses_is_replaced_once() {
    // Polled within the token's hour, so the token is kept (see tests/graph_tokens.rs).
    let w = world_with(seed(), |config, _| {
        config.polling.granted_interval = Duration::from_secs(600);
    })
    .await;
    let specs = w.specs(false);
    w.grant_all(CONTOSO, &specs);
    w.checker.check_now(CONTOSO, &specs).await;
    // The simulator's clock moves past the cached token's expiry: Graph answers 401.
    w.sim.advance_clock(Duration::from_secs(2 * 3600));
    w.sim.reset_counts();
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_all_granted(&check);
    // (A refused token names no tenant the simulator trusts: count the totals.)
    let counts = w.sim.counts().total;
    assert_eq!(counts.token, 1, "one new directory token");
    assert_eq!(counts.graph_batch, 2, "the refused batch and its retry");
    assert_eq!(
        w.checker.counters().graph_requests()[1],
        ("client_error", 1)
    );
}

#[tokio::test]
async fn a_consent_no_longer_named_is_no_longer_checked() {
    let w = world().await;
    w.grant_all(CONTOSO, &w.specs(true));
    let pro = w.checker.check_now(CONTOSO, &w.specs(true)).await;
    assert!(pro.get("redundantRecording").is_some());
    // Pro → Essentials: the paired consent's grant is gone.
    let essentials = w.checker.check(CONTOSO, &w.specs(false)).await;
    assert!(
        Arc::ptr_eq(&pro, &essentials),
        "a subset shares the recent check"
    );
    w.sim.reset_counts();
    let essentials = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    assert!(essentials.get("redundantRecording").is_none());
    assert_eq!(essentials.consents.len(), 4);
    assert_eq!(
        w.sim.counts().tenant(CONTOSO).batch_items,
        8,
        "directory: 2, login: 2, recording: 2, IM: 2"
    );
}

#[tokio::test]
async fn a_pending_tenant_costs_no_graph_request_and_one_with_directory_granted() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
    })
    .await;
    let specs = w.specs(true);
    w.checker.check(CONTOSO, &specs).await;
    assert_eq!(w.sim.counts().tenant(CONTOSO).graph_requests(), 0);

    w.grant(CONTOSO, "directory");
    for _ in 0..3 {
        w.sim.reset_counts();
        let check = w.checker.check(CONTOSO, &specs).await;
        assert_eq!(state(&check, "recording"), CheckState::Pending);
        assert_eq!(w.sim.counts().tenant(CONTOSO).graph_requests(), 1);
    }
}

#[tokio::test]
async fn permissions_granted_after_a_partial_token_show_at_the_next_poll() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
    })
    .await;
    let specs = w.specs(false);
    // An older consent: two of the directory app's three permissions.
    w.sim.grant_partial(
        CONTOSO,
        &w.app_id("directory"),
        &["User.Read.All", "Group.Read.All"],
        &[],
    );
    let check = w.checker.check(CONTOSO, &specs).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(
        directory.state,
        CheckState::Partial,
        "{}",
        directory.message
    );
    assert_eq!(
        directory.missing,
        ["Application.Read.All", "Directory.Read.All"]
    );

    // The admin consents again, to all three. The token of the first check (valid for an
    // hour) does not carry the new role; the next poll must not judge by it.
    w.grant(CONTOSO, "directory");
    let check = w.checker.check(CONTOSO, &specs).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(
        directory.state,
        CheckState::Granted,
        "{}",
        directory.message
    );
}

#[tokio::test]
async fn concurrent_checks_of_one_tenant_share_one_check() {
    let w = world().await; // checkCacheTtl 5s
    let specs = w.specs(true);
    w.grant_all(CONTOSO, &specs);
    let calls = (0..5).map(|_| w.checker.check(CONTOSO, &specs));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| Arc::ptr_eq(r, &results[0])));
    assert_eq!(w.checker.counters().checks(), (1, 4));
    assert_eq!(w.sim.counts().tenant(CONTOSO).token, 1);
}

#[tokio::test]
async fn a_disabled_enterprise_application_is_reported() {
    let w = world().await;
    for key in ["directory", "instantMessages"] {
        w.grant(CONTOSO, key);
    }
    w.sim
        .set_service_principal_enabled(CONTOSO, &w.app_id("instantMessages"), false);
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let im = check.get("instantMessages").unwrap();
    assert_eq!(im.state, CheckState::Error);
    assert_eq!(
        im.message,
        format!(
            "the enterprise application rec-im ({}) is disabled in the customer tenant: the customer's admin must enable sign-in for it",
            w.app_id("instantMessages")
        )
    );
}

#[tokio::test]
async fn an_unresponsive_service_times_out_as_unknown() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let w = world_with(seed(), |config, _| {
        config.cloud.authority_host = Some(silent.clone());
        config.polling.request_timeout = Duration::from_millis(300);
    })
    .await;
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Unknown);
    assert!(
        directory
            .message
            .starts_with("the Microsoft identity platform is unavailable: request timed out"),
        "{}",
        directory.message
    );
    held.abort();
}

#[tokio::test]
async fn tenant_ids_come_from_domains() {
    let w = world().await;
    assert_eq!(
        w.checker
            .resolve_tenant_id("contoso.example")
            .await
            .unwrap(),
        CONTOSO
    );
    assert_eq!(
        w.checker
            .resolve_tenant_id("fabrikam.onmicrosoft.com")
            .await
            .unwrap(),
        FABRIKAM
    );
    let err = w
        .checker
        .resolve_tenant_id("nosuch.onmicrosoft.com")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GraphError::TenantNotFound {
            tenant: "nosuch.onmicrosoft.com".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "tenant nosuch.onmicrosoft.com not found (AADSTS90002): check the Tenant's domain or tenant id"
    );
}

#[tokio::test]
async fn an_unknown_tenant_id_makes_every_consent_an_error() {
    let w = world().await;
    let unknown = "00000000-0000-4000-8000-0000000000ff";
    let check = w.checker.check_now(unknown, &w.specs(false)).await;
    for c in check.consents.iter() {
        assert_eq!(c.state, CheckState::Error, "{}: {}", c.key, c.message);
        assert!(c.message.contains("AADSTS90002"), "{}", c.message);
    }
    assert_eq!(
        w.sim.counts().total.token,
        1,
        "one token request tells the tenant is unknown"
    );
}

#[tokio::test]
async fn the_consent_url_grants_in_the_simulator() {
    let w = world().await;
    let url = w.checker.consent_url(
        "contoso.example",
        &w.app_id("recording"),
        "tenant-contoso/recording",
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(location.contains("admin_consent=True"), "{location}");
    assert!(
        location.contains("state=tenant-contoso%2Frecording"),
        "{location}"
    );
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    assert_eq!(state(&check, "recording"), CheckState::Granted);
}

#[tokio::test]
async fn pending_grants_due_together_share_the_check_of_their_due_instant() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
    })
    .await;
    let specs = w.specs(true);
    w.grant(CONTOSO, "directory");
    let before = w.checker.check(CONTOSO, &specs).await;

    // Five grants due at the same instant, reconciled one after another long after the
    // check cache window: the first checks, the others share its result.
    let due = std::time::SystemTime::now();
    w.sim.reset_counts();
    let first = w.checker.check_due(CONTOSO, &specs, due).await;
    assert!(first.checked_at >= due);
    for _ in 1..specs.len() {
        let shared = w.checker.check_due(CONTOSO, &specs, due).await;
        assert!(Arc::ptr_eq(&shared, &first));
    }
    assert_eq!(w.sim.counts().tenant(CONTOSO).graph_requests(), 1);

    // A check that started before the due instant answers nobody due after it.
    assert!(before.checked_at < due);
    let later = std::time::SystemTime::now();
    let fresh = w.checker.check_due(CONTOSO, &specs, later).await;
    assert!(!Arc::ptr_eq(&fresh, &first));
    assert_eq!(w.sim.counts().tenant(CONTOSO).graph_requests(), 2);
}

#[tokio::test]
async fn the_teams_app_catalog_rides_in_the_consent_batch_and_needs_its_own_permission() {
    use recording_operator::graph::teams_catalog::CatalogState;
    const TEAMS_APP: &str = "f31b1263-ba99-435a-a679-911d24850d7c";
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
        config.teams_app_id = Some(TEAMS_APP.into());
    })
    .await;
    let specs = w.specs(false);
    w.grant_all(CONTOSO, &specs);
    w.sim
        .put_teams_app(CONTOSO, TEAMS_APP, "Recording", "published");
    // Without AppCatalog.Read.All Graph refuses the catalog: not checked, the consents stand.
    let first = w.checker.check(CONTOSO, &specs).await;
    assert_all_granted(&first);
    let catalog = first.teams_app.clone().unwrap();
    assert_eq!(catalog.state, CatalogState::NotChecked);
    assert!(
        catalog.message.contains("AppCatalog.Read.All"),
        "{}",
        catalog.message
    );

    // Granted: a token issued after the grant reads it, in the same single $batch.
    w.sim.grant_partial(
        CONTOSO,
        &w.app_id("directory"),
        &["AppCatalog.Read.All"],
        &[],
    );
    w.checker
        .tokens()
        .invalidate(CONTOSO, &w.app_id("directory"));
    let _ = w.checker.check_now(CONTOSO, &specs).await;
    w.sim.reset_counts();
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_all_granted(&check);
    assert_eq!(
        check.teams_app.as_ref().map(|c| c.state),
        Some(CatalogState::Published)
    );
    let counts = w.sim.counts().tenant(CONTOSO);
    assert_eq!((counts.graph_batch, counts.graph_get), (1, 0));
}
