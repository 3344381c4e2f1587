//! The Graph client on its own against the simulator: paging through `@odata.nextLink`,
//! `$batch` split into calls of 20 with per-item statuses, OData errors, and tokens cached
//! per (tenant, app).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use recording_operator::config::{graph_default_scope, ConfigError, SecretRef, SecretSource};
use recording_operator::graph::client::{BatchRequest, GraphClient};
use recording_operator::graph::token::{AccessToken, TokenProvider};
use recording_operator::graph::{http_client, Counters, GraphError};
use secrecy::SecretString;
use sim::m365::{M365Sim, Seed, TenantSeed};
use url::Url;

const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";

struct OneSecret(String);

impl SecretSource for OneSecret {
    fn get<'a>(&'a self, _: &'a SecretRef) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move { Ok(SecretString::from(self.0.as_str())) })
    }
}

struct Setup {
    sim: M365Sim,
    seed: Seed,
    tokens: TokenProvider,
    graph: GraphClient,
    counters: Arc<Counters>,
}

async fn setup() -> Setup {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", "https://x/cb");
    seed.tenants.push(TenantSeed {
        id: CONTOSO.into(),
        display_name: None,
        domains: vec!["contoso.example".into()],
    });
    let sim = M365Sim::start(seed.clone()).await.unwrap();
    let base = Url::parse(&sim.url()).unwrap();
    let counters = Arc::new(Counters::default());
    let http = http_client(Duration::from_secs(10));
    let secret = seed.app("rec-aad").unwrap().secrets[0].value.clone();
    let tokens = TokenProvider::new(
        http.clone(),
        base.clone(),
        graph_default_scope(&base),
        Duration::from_secs(300),
        Arc::new(OneSecret(secret)),
        counters.clone(),
    );
    let graph = GraphClient::new(http, &base, counters.clone());
    Setup {
        sim,
        seed,
        tokens,
        graph,
        counters,
    }
}

impl Setup {
    /// A token of the directory app in Contoso, which has consented to it.
    async fn directory_token(&self) -> Arc<AccessToken> {
        let aad = self.seed.app("rec-aad").unwrap().app_id.clone();
        self.sim.grant_consent(CONTOSO, &aad);
        self.tokens
            .token(CONTOSO, &aad, Some(&any_ref()))
            .await
            .unwrap()
    }
}

fn any_ref() -> SecretRef {
    SecretRef::Env("unused".into())
}

#[tokio::test]
async fn collections_are_read_to_the_last_page() {
    let s = setup().await;
    for app in &s.seed.apps {
        s.sim.grant_consent(CONTOSO, &app.app_id);
    }
    let aad = s.seed.app("rec-aad").unwrap().app_id.clone();
    let token = s
        .tokens
        .token(CONTOSO, &aad, Some(&any_ref()))
        .await
        .unwrap();
    let all = s
        .graph
        .get_all(&token, "/servicePrincipals?$select=id,appId")
        .await
        .unwrap();
    for app in &s.seed.apps {
        assert!(
            all.iter().any(|sp| sp["appId"] == app.app_id.as_str()),
            "{} missing from {all:?}",
            app.display_name
        );
    }
    // The simulator's pages hold 2 items: reading 7 took 4 requests.
    assert!(all.len() >= 7, "{}", all.len());
    assert_eq!(
        s.sim.counts().tenant(CONTOSO).graph_get as usize,
        all.len().div_ceil(2)
    );
}

#[tokio::test]
async fn a_next_page_link_outside_graph_is_not_followed_with_the_token() {
    let s = setup().await;
    let token = s.directory_token().await;
    // Another origin, listening, which must receive nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = format!(
        "http://{}/v1.0/servicePrincipals",
        listener.local_addr().unwrap()
    );
    let err = s.graph.get(&token, &elsewhere).await.unwrap_err();
    assert!(
        matches!(&err, GraphError::Protocol { reason, .. } if reason.starts_with("a next-page link outside http://127.0.0.1:")),
        "{err:?}"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a connection reached the other origin");
}

#[tokio::test]
async fn a_large_batch_is_split_and_every_item_answered() {
    let s = setup().await;
    let token = s.directory_token().await;
    let aad = s.seed.app("rec-aad").unwrap().app_id.clone();
    let requests: Vec<BatchRequest> = (0..45)
        .map(|i| {
            let app = if i % 2 == 0 {
                aad.clone()
            } else {
                format!("00000000-0000-4000-8000-{i:012}")
            };
            BatchRequest::get(
                i.to_string(),
                format!("/servicePrincipals(appId='{app}')?$select=id,appId"),
            )
        })
        .collect();
    let items = s.graph.batch(&token, requests).await.unwrap();
    assert_eq!(items.len(), 45);
    assert_eq!(s.sim.counts().tenant(CONTOSO).graph_batch, 3);
    for i in 0..45 {
        let item = items.iter().find(|it| it.id == i.to_string()).unwrap();
        if i % 2 == 0 {
            assert_eq!(item.result().unwrap()["appId"], aad.as_str());
        } else {
            match item.result().unwrap_err() {
                GraphError::Graph { status, code, .. } => {
                    assert_eq!((status, code.as_str()), (404, "Request_ResourceNotFound"))
                }
                other => panic!("item {i}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn graph_errors_keep_their_odata_code() {
    let s = setup().await;
    let aad = s.seed.app("rec-aad").unwrap().app_id.clone();
    // Consent to User.Read.All only: the token cannot read applications.
    s.sim.grant_partial(CONTOSO, &aad, &["User.Read.All"], &[]);
    let token = s
        .tokens
        .token(CONTOSO, &aad, Some(&any_ref()))
        .await
        .unwrap();
    assert_eq!(
        token.roles.as_deref(),
        Some(&["User.Read.All".to_string()][..])
    );
    let err = s
        .graph
        .get(
            &token,
            "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')",
        )
        .await
        .unwrap_err();
    match err {
        GraphError::Graph { status, code, .. } => {
            assert_eq!(
                (status, code.as_str()),
                (403, "Authorization_RequestDenied")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tokens_are_cached_per_tenant_and_app_and_fetched_once_for_concurrent_callers() {
    let s = setup().await;
    let aad = s.seed.app("rec-aad").unwrap().app_id.clone();
    s.sim.grant_consent(CONTOSO, &aad);
    let r = any_ref();
    let calls = (0..8).map(|_| s.tokens.token(CONTOSO, &aad, Some(&r)));
    let tokens = futures::future::join_all(calls).await;
    assert!(tokens.iter().all(|t| t.is_ok()));
    assert_eq!(s.sim.counts().tenant(CONTOSO).token, 1);
    assert_eq!(s.counters.token_requests()[0], ("success", 1));

    s.tokens.invalidate(CONTOSO, &aad);
    s.tokens.token(CONTOSO, &aad, Some(&r)).await.unwrap();
    assert_eq!(s.sim.counts().tenant(CONTOSO).token, 2);

    // A refusal is not cached: the next call asks again.
    s.sim.revoke_consent(CONTOSO, &aad);
    s.tokens.invalidate(CONTOSO, &aad);
    for _ in 0..2 {
        let err = s.tokens.token(CONTOSO, &aad, Some(&r)).await.unwrap_err();
        assert!(matches!(err, GraphError::NotConsented { .. }), "{err:?}");
    }
    assert_eq!(s.sim.counts().tenant(CONTOSO).token, 4);
    let by_outcome: std::collections::HashMap<_, _> =
        s.counters.token_requests().into_iter().collect();
    assert_eq!(by_outcome["not_consented"], 2);
}
