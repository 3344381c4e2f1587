//! The standalone `m365-sim` binary with the example seed: a browser-style visit of an
//! admin-consent URL grants, and the seeded consents are in place.

use std::process::Stdio;

use base64::Engine as _;
use serde_json::Value;
use sim::m365::Seed;
use tokio::io::{AsyncBufReadExt, BufReader};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/m365-seed.yaml");
const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";
const HUE: &str = "5a1e0003-0000-4000-8000-000000000003";

fn roles(token_response: &Value) -> Value {
    let token = token_response["access_token"].as_str().unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["roles"].clone()
}

#[test]
fn the_example_seed_parses() {
    let seed = Seed::load(std::path::Path::new(EXAMPLE)).unwrap();
    assert_eq!(seed.tenants.len(), 3);
    assert_eq!(seed.apps.len(), 6);
    assert_eq!(seed.app("recording-hue").unwrap().app_id, HUE);
}

#[tokio::test]
async fn the_binary_serves_the_example_seed_and_grants_on_a_consent_visit() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_m365-sim"))
        .args(["--listen", "127.0.0.1:0", "--seed", EXAMPLE])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("the binary announces its address");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in `{first}`"))
        .to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let token = |tenant: &'static str, secret: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(format!("{url}/{tenant}/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", HUE),
                    ("client_secret", secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await
                .unwrap()
        }
    };

    // Seeded partial consent in Fabrikam.
    let response = token("fabrikam.onmicrosoft.com", "hueQ~sim-secret-0003").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        roles(&response.json().await.unwrap()),
        serde_json::json!(["Calls.AccessMedia.All"])
    );

    // Contoso has not consented; the admin opens the link.
    assert_eq!(
        token("contoso.com", "hueQ~sim-secret-0003").await.status(),
        401
    );
    let consent = format!(
        "{url}/contoso.com/v2.0/adminconsent?client_id={HUE}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fconsent%2Fcallback&state=xyz"
    );
    let response = http.get(&consent).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&format!("http://127.0.0.1:8080/consent/callback?admin_consent=True&tenant={CONTOSO}&state=xyz&scope=")), "{location}");
    let response = token("contoso.com", "hueQ~sim-secret-0003").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        roles(&response.json().await.unwrap()),
        serde_json::json!([
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All"
        ])
    );

    child.kill().await.unwrap();
}
