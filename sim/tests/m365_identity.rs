//! The identity platform side over plain HTTP: OpenID discovery, JWKS, and the
//! client-credentials token endpoint with every AADSTS error the operator tells apart.

mod m365_support;

use std::time::Duration;

use base64::Engine as _;
use m365_support::*;
use serde_json::Value;
use sim::m365::{Throttle, GRAPH_APP_ID};

#[tokio::test]
async fn discovery_resolves_a_domain_to_its_tenant_id() {
    let w = world().await;
    for segment in ["contoso.example", "CONTOSO.onmicrosoft.com", CONTOSO] {
        let response = w
            .open(&format!(
                "{}/{segment}/v2.0/.well-known/openid-configuration",
                w.sim.url()
            ))
            .await;
        assert_eq!(response.status(), 200);
        let doc: Value = response.json().await.unwrap();
        let url = w.sim.url();
        assert_eq!(doc["issuer"], format!("{url}/{CONTOSO}/v2.0"));
        assert_eq!(
            doc["token_endpoint"],
            format!("{url}/{CONTOSO}/oauth2/v2.0/token")
        );
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{url}/{CONTOSO}/oauth2/v2.0/authorize")
        );
        assert_eq!(
            doc["jwks_uri"],
            format!("{url}/{CONTOSO}/discovery/v2.0/keys")
        );
        assert!(doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&Value::from("client_secret_basic")));
    }
    assert_eq!(w.sim.counts().tenant(CONTOSO).discovery, 3);
}

#[tokio::test]
async fn discovery_of_an_unknown_domain_is_aadsts90002() {
    let w = world().await;
    let response = w
        .open(&format!(
            "{}/nope.example/v2.0/.well-known/openid-configuration",
            w.sim.url()
        ))
        .await;
    assert_aad_error(
        response,
        400,
        "invalid_tenant",
        90002,
        "Tenant 'nope.example' not found.",
    )
    .await;
}

#[tokio::test]
async fn discovery_of_the_multi_tenant_alias_has_a_placeholder_issuer() {
    let w = world().await;
    let response = w
        .open(&format!(
            "{}/organizations/v2.0/.well-known/openid-configuration",
            w.sim.url()
        ))
        .await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], format!("{}/{{tenantid}}/v2.0", w.sim.url()));
}

#[tokio::test]
async fn tokens_carry_the_granted_roles_and_verify_against_the_jwks() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    let response = w.token("contoso.example", "rec-aad").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store, no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(c["aud"], w.sim.url());
    assert_eq!(c["iss"], format!("https://sts.windows.net/{CONTOSO}/"));
    assert_eq!(c["tid"], CONTOSO);
    assert_eq!(c["appid"], w.app_id("rec-aad"));
    assert_eq!(c["idtyp"], "app");
    assert_eq!(
        c["oid"],
        w.sim
            .service_principal_id(CONTOSO, &w.app_id("rec-aad"))
            .unwrap()
    );
    assert_eq!(
        c["roles"],
        serde_json::json!([
            "User.Read.All",
            "Group.Read.All",
            "Application.Read.All",
            "Directory.Read.All"
        ])
    );
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert_eq!(c["nbf"].as_i64().unwrap(), iat);
    assert_eq!(exp - iat, 3599 + 300);

    // The header names the key the JWKS serves.
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    let jwks: Value = w
        .open(&format!("{}/{CONTOSO}/discovery/v2.0/keys", w.sim.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
}

#[tokio::test]
async fn a_token_without_any_granted_permission_has_no_roles_claim() {
    let w = world().await;
    // The home tenant got the service principal when the app was registered, nothing granted.
    let token = w.access_token(HOME, "rec-hue").await;
    let c = claims(&token);
    assert!(c.get("roles").is_none(), "{c}");
    assert_eq!(c["tid"], HOME);
}

#[tokio::test]
async fn the_graph_resource_may_be_named_by_its_public_uri_or_app_id() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-im"));
    for (scope, aud) in [
        (
            "https://graph.microsoft.com/.default",
            "https://graph.microsoft.com",
        ),
        (&format!("{GRAPH_APP_ID}/.default")[..], GRAPH_APP_ID),
    ] {
        let (id, secret) = (w.app_id("rec-im"), w.secret("rec-im"));
        let response = w
            .token_form(
                CONTOSO,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("scope", scope),
                ],
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], aud);
    }
}

#[tokio::test]
async fn client_secret_basic_is_accepted_with_form_encoded_credentials() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    let scope = format!("{}/.default", w.sim.url());
    // RFC 6749 2.3.1: id and secret are form-urlencoded before base64; `~` stays as is.
    let credentials = format!(
        "{}:{}",
        urlencode(&w.app_id("rec-aad")),
        urlencode(&w.secret("rec-aad"))
    );
    let response = w
        .http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", w.sim.url()))
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let wrong = format!("{}:{}", w.app_id("rec-aad"), "not-the-secret");
    let response = w
        .http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", w.sim.url()))
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(wrong)
            ),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_aad_error(
        response,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    )
    .await;
}

#[tokio::test]
async fn unknown_tenant_is_aadsts90002_invalid_request() {
    let w = world().await;
    let response = w.token("nope.example", "rec-aad").await;
    assert_aad_error(
        response,
        400,
        "invalid_request",
        90002,
        "Tenant 'nope.example' not found.",
    )
    .await;
    assert_eq!(w.sim.counts().total.token_errors, 1);
}

#[tokio::test]
async fn an_app_unknown_everywhere_is_aadsts700016() {
    let w = world().await;
    let scope = format!("{}/.default", w.sim.url());
    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "deadbeef-0000-4000-8000-000000000000"),
                ("client_secret", "x"),
                ("scope", &scope),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "unauthorized_client",
        700016,
        "Application with identifier 'deadbeef-0000-4000-8000-000000000000' was not found in the directory 'Contoso'.",
    )
    .await;
}

#[tokio::test]
async fn an_app_without_service_principal_in_the_tenant_is_aadsts7000229() {
    let w = world().await;
    let response = w.token(CONTOSO, "rec-aad").await;
    let app = w.app_id("rec-aad");
    assert_aad_error(
        response,
        401,
        "invalid_client",
        7000229,
        &format!(
            "The client application {app} is missing service principal in the tenant {CONTOSO}."
        ),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_secret_is_aadsts7000215() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    let scope = format!("{}/.default", w.sim.url());
    let id = w.app_id("rec-aad");
    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "guess"),
                ("scope", &scope),
            ],
        )
        .await;
    let body = assert_aad_error(
        response,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    )
    .await;
    assert!(
        !body.to_string().contains("guess"),
        "the offered secret is never echoed"
    );
}

#[tokio::test]
async fn an_expired_secret_is_aadsts7000222_also_once_the_clock_passes_its_end() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    assert_eq!(w.token(CONTOSO, "rec-aad").await.status(), 200);
    // platform_default secrets last a year.
    w.sim.advance_clock(Duration::from_secs(366 * 24 * 3600));
    let response = w.token(CONTOSO, "rec-aad").await;
    let app = w.app_id("rec-aad");
    assert_aad_error(
        response,
        401,
        "invalid_client",
        7000222,
        &format!("The provided client secret keys for app '{app}' are expired."),
    )
    .await;
}

#[tokio::test]
async fn a_missing_secret_is_aadsts7000218() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    let scope = format!("{}/.default", w.sim.url());
    let id = w.app_id("rec-aad");
    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("scope", &scope),
            ],
        )
        .await;
    assert_aad_error(response, 401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.").await;
}

#[tokio::test]
async fn a_disabled_enterprise_app_is_aadsts7000112() {
    let w = world().await;
    let app = w.app_id("rec-aad");
    w.sim.grant_consent(CONTOSO, &app);
    w.sim.set_service_principal_enabled(CONTOSO, &app, false);
    let response = w.token(CONTOSO, "rec-aad").await;
    assert_aad_error(
        response,
        400,
        "unauthorized_client",
        7000112,
        &format!("Application '{app}'(rec-aad) is disabled."),
    )
    .await;
    w.sim.set_service_principal_enabled(CONTOSO, &app, true);
    assert_eq!(w.token(CONTOSO, "rec-aad").await.status(), 200);
}

#[tokio::test]
async fn malformed_requests_get_the_oauth_errors() {
    let w = world().await;
    let id = w.app_id("rec-aad");
    let secret = w.secret("rec-aad");
    let graph = format!("{}/.default", w.sim.url());

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", &graph),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'grant_type'.",
    )
    .await;

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "password"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", &graph),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type 'password'.",
    )
    .await;

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
                ("scope", &graph),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'client_id'.",
    )
    .await;

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'scope'.",
    )
    .await;

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "User.Read"),
            ],
        )
        .await;
    assert_aad_error(
        response,
        400,
        "invalid_scope",
        1002012,
        "The provided value for scope User.Read is not valid.",
    )
    .await;

    let response = w
        .token_form(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "https://storage.azure.com/.default"),
            ],
        )
        .await;
    assert_aad_error(response, 400, "invalid_resource", 500011, "The resource principal named https://storage.azure.com was not found in the tenant named contoso.example.").await;
}

#[tokio::test]
async fn the_token_endpoint_can_be_throttled_per_tenant_with_retry_after() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    w.sim.grant_consent(FABRIKAM, &w.app_id("rec-aad"));
    w.sim.throttle_token(Throttle {
        tenant: Some("contoso.example".into()),
        status: 429,
        retry_after_secs: Some(5),
        count: 1,
    });
    let response = w.token(CONTOSO, "rec-aad").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(
        w.token(FABRIKAM, "rec-aad").await.status(),
        200,
        "other tenants are not throttled"
    );
    assert_eq!(
        w.token(CONTOSO, "rec-aad").await.status(),
        200,
        "one refusal only"
    );
    let counts = w.sim.counts();
    assert_eq!(counts.tenant(CONTOSO).token, 2);
    assert_eq!(counts.tenant(CONTOSO).throttled, 1);
    assert_eq!(counts.tenant(FABRIKAM).token, 1);
}

#[tokio::test]
async fn the_client_request_id_is_echoed_and_is_the_correlation_id_of_errors() {
    let w = world().await;
    let response = w
        .http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", w.sim.url()))
        .header("client-request-id", "5eed0000-0000-4000-8000-000000000001")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["client-request-id"],
        "5eed0000-0000-4000-8000-000000000001"
    );
    assert!(response.headers().contains_key("x-ms-request-id"));
    let body = assert_aad_error(
        response,
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'client_id'.",
    )
    .await;
    assert_eq!(
        body["correlation_id"],
        "5eed0000-0000-4000-8000-000000000001"
    );
}

#[tokio::test]
async fn tenants_that_answer_700016_for_a_missing_service_principal_can_be_simulated() {
    let mut seed = seed();
    seed.settings.missing_service_principal_aadsts = 700016;
    let w = world_with(seed).await;
    let app = w.app_id("rec-aad");
    let response = w.token(CONTOSO, "rec-aad").await;
    assert_aad_error(
        response,
        400,
        "unauthorized_client",
        700016,
        &format!("Application with identifier '{app}' was not found in the directory 'Contoso'."),
    )
    .await;
    w.sim.grant_consent(CONTOSO, &app);
    assert_eq!(w.token(CONTOSO, "rec-aad").await.status(), 200);

    let mut bad = m365_support::seed();
    bad.settings.missing_service_principal_aadsts = 1;
    let err = sim::m365::M365Sim::start(bad).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid seed: settings.missing_service_principal_aadsts must be 7000229 or 700016, not 1"
    );
}

#[tokio::test]
async fn a_tenant_of_another_national_cloud_is_found_but_refused_tokens() {
    let w = world().await;
    let gov = "60760760-0000-4000-8000-000000000005";
    w.sim
        .add_tenant_in_cloud(gov, &["agency.us"], sim::m365::NationalCloud::UsGov);
    let doc: Value = w
        .open(&format!(
            "{}/agency.us/v2.0/.well-known/openid-configuration",
            w.sim.url()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["cloud_instance_name"], "microsoftonline.us");
    assert_eq!(doc["tenant_region_scope"], "USGov");
    assert_eq!(
        doc["issuer"],
        format!("https://login.microsoftonline.us/{gov}/v2.0")
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("https://login.microsoftonline.us/{gov}/oauth2/v2.0/token")
    );
    // A tenant of this cloud says so too.
    let public: Value = w
        .open(&format!(
            "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
            w.sim.url()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["cloud_instance_name"], "microsoftonline.com");

    assert_aad_error(
        w.token(gov, "rec-aad").await,
        400,
        "invalid_request",
        900382,
        "Confidential Client is not supported in Cross Cloud request.",
    )
    .await;
}

#[tokio::test]
async fn opaque_tokens_are_no_jwt() {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    w.sim.set_opaque_tokens(true);
    let body: Value = w.token(CONTOSO, "rec-aad").await.json().await.unwrap();
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 1, "{token}");
    w.sim.set_opaque_tokens(false);
    let body: Value = w.token(CONTOSO, "rec-aad").await.json().await.unwrap();
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
}
