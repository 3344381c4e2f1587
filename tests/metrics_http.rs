//! The HTTP endpoint as a kubelet, Prometheus and a merged route see it.

use std::sync::atomic::Ordering;

use axum::routing::get;
use recording_operator::http::{self, HttpState};
use recording_operator::metrics::Metrics;
use tokio::sync::oneshot;

#[tokio::test]
async fn probes_metrics_and_merged_routes_are_served_until_shutdown() {
    let metrics = Metrics::default();
    let state = HttpState::new(metrics.clone());
    let ready = state.ready.clone();
    let state_healthy = state.healthy.clone();
    let router = http::router(state)
        .merge(axum::Router::new().route("/consent/callback", get(|| async { "callback" })));
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_on(listener, router, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().await.unwrap(), "ok\n");

    let readyz = get("/readyz").await.unwrap();
    assert_eq!(readyz.status(), 503, "not ready before the caches synced");
    assert_eq!(readyz.text().await.unwrap(), "not ready\n");
    ready.store(true, Ordering::Release);
    let readyz = get("/readyz").await.unwrap();
    assert_eq!(readyz.status(), 200);
    assert_eq!(readyz.text().await.unwrap(), "ready\n");

    // Leadership lost: the liveness probe fails from that moment.
    let healthy = state_healthy.clone();
    healthy.store(false, Ordering::Release);
    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status(), 503);
    assert_eq!(
        healthz.text().await.unwrap(),
        "unhealthy: leadership lost\n"
    );
    healthy.store(true, Ordering::Release);

    drop(metrics.reconcile_started("tenant"));
    let scrape = get("/metrics").await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert_eq!(
        scrape.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = scrape.text().await.unwrap();
    assert!(
        body.contains("recording_operator_reconciles_total{controller=\"tenant\"} 1\n"),
        "{body}"
    );

    let callback = get("/consent/callback").await.unwrap();
    assert_eq!(callback.text().await.unwrap(), "callback");
    assert_eq!(get("/nope").await.unwrap().status(), 404);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        get("/healthz").await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn a_taken_port_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = http::bind(addr).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {addr}: ")),
        "{err}"
    );
}
