//! Ingress (`networking.k8s.io/v1`) is validated as the real server validates it, and
//! TokenReview answers for the simulator's tokens: a projected token for an audience
//! authenticates only for that audience, and the API itself refuses it.

mod kube_support;

use kube_support::*;
use serde_json::{json, Value};

const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

fn ingress(name: &str, host: &str, path: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [host], "secretName": "calls-tls"}],
            "rules": [{"host": host, "http": {"paths": [path]}}]
        }
    })
}

fn backend(port: Value) -> Value {
    json!({"service": {"name": "bots", "port": port}})
}

#[tokio::test]
async fn an_ingress_is_checked_like_the_real_servers() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let good = ingress(
        "calls",
        "calls.example.com",
        json!({"path": "/api/calling/primary", "pathType": "Exact", "backend": backend(json!({"name": "signaling"}))}),
    );
    let (code, created) = raw.post(INGRESSES, &good).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], json!({"loadBalancer": {}}));
    assert_eq!(created["metadata"]["generation"], 1);

    for (name, host, path, field) in [
        (
            "no-type",
            "calls.example.com",
            json!({"path": "/api", "backend": backend(json!({"number": 80}))}),
            "pathType",
        ),
        (
            "relative",
            "calls.example.com",
            json!({"path": "api", "pathType": "Prefix", "backend": backend(json!({"number": 80}))}),
            ".path",
        ),
        (
            "both-ports",
            "calls.example.com",
            json!({"path": "/api", "pathType": "Prefix", "backend": backend(json!({"number": 80, "name": "http"}))}),
            ".port",
        ),
        (
            "ip-host",
            "10.0.0.1",
            json!({"path": "/api", "pathType": "Prefix", "backend": backend(json!({"number": 80}))}),
            ".host",
        ),
        (
            "upper-host",
            "Calls.Example.com",
            json!({"path": "/api", "pathType": "Exact", "backend": backend(json!({"number": 80}))}),
            ".host",
        ),
    ] {
        let (code, status) = raw.post(INGRESSES, &ingress(name, host, path)).await;
        assert_eq!(code, 422, "{name}: {status}");
        assert!(
            status["message"].as_str().unwrap().contains(field),
            "{name}: {status}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_token_review_names_the_service_account_for_its_audience_only() {
    let sim = start().await;
    let raw = Raw::new(&sim);
    let review = |token: &str, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": audiences}})
    };
    let projected = sim.audience_token("tenant-a", "main-bot", "recording-operator");
    let (code, answer) = raw
        .post(REVIEWS, &review(&projected, json!(["recording-operator"])))
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"]["authenticated"], true);
    assert_eq!(
        answer["status"]["user"]["username"],
        "system:serviceaccount:tenant-a:main-bot"
    );
    assert_eq!(answer["status"]["audiences"], json!(["recording-operator"]));

    let (_, other) = raw
        .post(REVIEWS, &review(&projected, json!(["vault"])))
        .await;
    assert_eq!(other["status"]["authenticated"], false);
    let (_, api) = raw.post(REVIEWS, &review(&projected, json!([]))).await;
    assert_eq!(
        api["status"]["authenticated"], false,
        "not a token for the API server"
    );
    let api_token = sim.service_account_token("tenant-a", "main-bot");
    let (_, for_api) = raw
        .post(REVIEWS, &review(&api_token, json!(["recording-operator"])))
        .await;
    assert_eq!(for_api["status"]["authenticated"], false);
    let (_, garbage) = raw
        .post(REVIEWS, &review("nope", json!(["recording-operator"])))
        .await;
    assert_eq!(garbage["status"]["authenticated"], false);

    // The API refuses a token made for another audience.
    let as_bot = Raw {
        token: projected.clone(),
        ..Raw::new(&sim)
    };
    assert_eq!(as_bot.get("/api/v1/namespaces").await.0, 401);
    sim.shutdown().await;
}
