//! Shared set-up of the m365 simulator tests: the platform's apps in their home tenant, two
//! customer tenants, and a plain HTTP client that does not follow redirects.

#![allow(dead_code)]

use base64::Engine as _;
use reqwest::{Client, Response};
use serde_json::Value;
use sim::m365::{AppSeed, M365Sim, Seed, TenantSeed};

pub const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
pub const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";
pub const FABRIKAM: &str = "fab41ca0-0000-4000-8000-00000000fabf";
pub const REDIRECT: &str = "https://platform.example/consent/callback";

pub struct World {
    pub sim: M365Sim,
    pub seed: Seed,
    pub http: Client,
}

/// The platform seed (`rec-*` apps) plus Contoso and Fabrikam as customers.
pub fn seed() -> Seed {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", REDIRECT);
    seed.tenants.push(TenantSeed {
        id: CONTOSO.into(),
        display_name: Some("Contoso".into()),
        domains: vec!["contoso.example".into(), "contoso.onmicrosoft.com".into()],
    });
    seed.tenants.push(TenantSeed {
        id: FABRIKAM.into(),
        display_name: Some("Fabrikam".into()),
        domains: vec!["fabrikam.onmicrosoft.com".into()],
    });
    seed
}

pub async fn world() -> World {
    world_with(seed()).await
}

pub async fn world_with(seed: Seed) -> World {
    let sim = M365Sim::start(seed.clone())
        .await
        .expect("simulator starts");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World { sim, seed, http }
}

impl World {
    pub fn app(&self, name: &str) -> &AppSeed {
        self.seed
            .app(name)
            .unwrap_or_else(|| panic!("no app {name}"))
    }

    pub fn app_id(&self, name: &str) -> String {
        self.app(name).app_id.clone()
    }

    pub fn secret(&self, name: &str) -> String {
        self.app(name).secrets[0].value.clone()
    }

    /// POSTs a form to the token endpoint of `tenant`.
    pub async fn token_form(&self, tenant: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.sim.url()))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A client-credentials request for app `name` in `tenant`, Graph scope.
    pub async fn token(&self, tenant: &str, name: &str) -> Response {
        let scope = format!("{}/.default", self.sim.url());
        let (id, secret) = (self.app_id(name), self.secret(name));
        self.token_form(
            tenant,
            &[
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
                ("grant_type", "client_credentials"),
            ],
        )
        .await
    }

    /// An access token, asserting the request succeeds.
    pub async fn access_token(&self, tenant: &str, name: &str) -> String {
        let response = self.token(tenant, name).await;
        assert_eq!(response.status(), 200, "token for {name} in {tenant}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// GET `{url}/v1.0/{path}` with a bearer token.
    pub async fn graph(&self, token: &str, path: &str) -> Response {
        self.get_url(token, &format!("{}/v1.0/{path}", self.sim.url()))
            .await
    }

    pub async fn get_url(&self, token: &str, url: &str) -> Response {
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    pub async fn batch(&self, token: &str, body: &Value) -> Response {
        self.http
            .post(format!("{}/v1.0/$batch", self.sim.url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Opens an admin-consent URL like a browser would (without following the redirect).
    pub async fn open(&self, url: &str) -> Response {
        self.http.get(url).send().await.unwrap()
    }

    pub fn consent_url(&self, tenant: &str, name: &str, state: &str) -> String {
        format!(
            "{}/{tenant}/v2.0/adminconsent?client_id={}&scope={}&redirect_uri={}&state={state}",
            self.sim.url(),
            self.app_id(name),
            urlencode(&format!("{}/.default", self.sim.url())),
            urlencode(REDIRECT),
        )
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The payload of a JWT, decoded without verification (as the operator reads it).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).unwrap()
}

/// Asserts an identity-platform error: status, `error`, AADSTS code, message start.
pub async fn assert_aad_error(
    response: Response,
    status: u16,
    error: &str,
    code: u64,
    message_start: &str,
) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    let expected = format!("AADSTS{code}: {message_start}");
    assert!(
        description.starts_with(&expected),
        "{description}\n  should start with\n{expected}"
    );
    assert!(body["trace_id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(body["correlation_id"]
        .as_str()
        .is_some_and(|s| s.len() == 36));
    assert!(body["error_uri"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/error?code={code}")));
    body
}

/// Asserts a Graph error: status, `error.code`, `error.message`, innerError and headers.
pub async fn assert_graph_error(
    response: Response,
    status: u16,
    code: &str,
    message: &str,
) -> Value {
    assert_eq!(response.status(), status);
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(response.headers().contains_key("client-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        request_id.as_str()
    );
    assert!(body["error"]["innerError"]["date"].as_str().is_some());
    body
}
