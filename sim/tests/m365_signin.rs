//! Users sign in through the simulator as through Entra: authorization request, login form,
//! code redeemed with PKCE for an ID token signed with the key at the tenant's `jwks_uri`;
//! and Graph's `/users/{upn}` (also in `$batch`) with `accountEnabled`.

mod m365_support;

use base64::Engine as _;
use m365_support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sim::m365::IdTokenFault;

const CALLBACK: &str = "https://platform.example/signin/callback";
const VERIFIER: &str = "a-verifier-of-forty-three-characters-at-least-0123";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(w: &World, tenant: &str, redirect: &str) -> String {
    format!(
        "{}/{tenant}/oauth2/v2.0/authorize?client_id={}&response_type=code&redirect_uri={}&scope=openid%20profile&state=st8&nonce=n0nce&code_challenge={}&code_challenge_method=S256",
        w.sim.url(),
        w.app_id("rec-auth"),
        urlencode(redirect),
        challenge(VERIFIER)
    )
}

fn flow_id(html: &str) -> String {
    let start = html.find("name=\"flow\" value=\"").expect("flow field") + 19;
    html[start..].split('"').next().unwrap().to_string()
}

/// Opens the login page, submits the form; returns the redirect (or the page again).
async fn sign_in(w: &World, tenant: &str, user: &str, password: &str) -> reqwest::Response {
    let page = w.open(&authorize_url(w, tenant, CALLBACK)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"username\">"), "{html}");
    w.http
        .post(format!("{}/{tenant}/login", w.sim.url()))
        .form(&[
            ("flow", flow_id(&html).as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

async fn redeem(
    w: &World,
    tenant: &str,
    code: &str,
    verifier: &str,
    redirect: &str,
) -> reqwest::Response {
    let (id, secret) = (w.app_id("rec-auth"), w.secret("rec-auth"));
    w.token_form(
        tenant,
        &[
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn world_with_users() -> World {
    let w = world().await;
    w.sim.add_redirect_uri(&w.app_id("rec-auth"), CALLBACK);
    w.sim.add_user(CONTOSO, "ada@contoso.example", "pw-ada");
    w.sim
        .add_user(FABRIKAM, "bob@fabrikam.onmicrosoft.com", "pw-bob");
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-auth"));
    w
}

#[tokio::test]
async fn a_user_signs_in_and_the_id_token_verifies_with_the_published_key() {
    let w = world_with_users().await;
    let response = sign_in(&w, "organizations", "ada@contoso.example", "pw-ada").await;
    assert_eq!(response.status(), 302);
    let q = query(response.headers()["location"].to_str().unwrap());
    assert_eq!(q["state"], "st8");
    let code = &q["code"];

    let response = redeem(&w, "organizations", code, VERIFIER, CALLBACK).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let id_token = body["id_token"].as_str().unwrap();

    // Verify as a relying party would: the key from the jwks_uri of the tenant's document.
    let doc: Value = w
        .open(&format!(
            "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
            w.sim.url()
        ))
        .await
        .json()
        .await
        .unwrap();
    let jwks: Value = w
        .open(doc["jwks_uri"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[w.app_id("rec-auth")]);
    validation.set_issuer(&[doc["issuer"].as_str().unwrap()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &decoding, &validation)
        .expect("ID token verifies")
        .claims;
    assert_eq!(claims["tid"], CONTOSO);
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["preferred_username"], "ada@contoso.example");
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    // Single use.
    let again = redeem(&w, "organizations", code, VERIFIER, CALLBACK).await;
    assert_aad_error(
        again,
        400,
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed",
    )
    .await;
}

#[tokio::test]
async fn the_code_is_refused_with_another_verifier_another_redirect_uri_or_when_old() {
    let w = world_with_users().await;
    let code_of =
        |r: reqwest::Response| query(r.headers()["location"].to_str().unwrap())["code"].clone();

    let code = code_of(sign_in(&w, CONTOSO, "ada@contoso.example", "pw-ada").await);
    let bad = redeem(
        &w,
        CONTOSO,
        &code,
        "another-verifier-of-forty-three-characters-xx",
        CALLBACK,
    )
    .await;
    assert_aad_error(
        bad,
        400,
        "invalid_grant",
        501481,
        "The Code_Verifier does not match",
    )
    .await;

    let code = code_of(sign_in(&w, CONTOSO, "ada@contoso.example", "pw-ada").await);
    let bad = redeem(&w, CONTOSO, &code, VERIFIER, REDIRECT).await;
    assert_aad_error(
        bad,
        400,
        "invalid_grant",
        50148,
        "The redirect_uri does not match",
    )
    .await;

    let code = code_of(sign_in(&w, CONTOSO, "ada@contoso.example", "pw-ada").await);
    w.sim.advance_clock(std::time::Duration::from_secs(601));
    let old = redeem(&w, CONTOSO, &code, VERIFIER, CALLBACK).await;
    assert_aad_error(
        old,
        400,
        "invalid_grant",
        70008,
        "The provided authorization code",
    )
    .await;
}

#[tokio::test]
async fn the_authorization_request_is_checked_before_any_login() {
    let w = world_with_users().await;
    // An unregistered redirect URI: an error page, never a redirect.
    let page = w
        .open(&authorize_url(&w, CONTOSO, "https://evil.example/cb"))
        .await;
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("AADSTS50011"));
    // No PKCE: back to the client with an error.
    let url = authorize_url(&w, CONTOSO, CALLBACK).replace(
        "&code_challenge_method=S256",
        "&code_challenge_method=plain",
    );
    let response = w.open(&url).await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        query(response.headers()["location"].to_str().unwrap())["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn wrong_passwords_disabled_users_other_tenants_and_missing_consent_do_not_get_a_code() {
    let w = world_with_users().await;
    let page = sign_in(&w, CONTOSO, "ada@contoso.example", "wrong").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("AADSTS50126"));

    let page = sign_in(&w, CONTOSO, "bob@fabrikam.onmicrosoft.com", "pw-bob").await;
    assert!(page.text().await.unwrap().contains("AADSTS50020"));

    w.sim
        .set_user_enabled(CONTOSO, "ada@contoso.example", false);
    let page = sign_in(&w, CONTOSO, "ada@contoso.example", "pw-ada").await;
    assert!(page.text().await.unwrap().contains("AADSTS50057"));

    // Fabrikam never consented to the login app.
    let response = sign_in(
        &w,
        "organizations",
        "bob@fabrikam.onmicrosoft.com",
        "pw-bob",
    )
    .await;
    assert_eq!(response.status(), 302);
    let q = query(response.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "consent_required");
    assert_eq!(q["state"], "st8");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn faulty_id_tokens_fail_verification() {
    let w = world_with_users().await;
    w.sim
        .set_id_token_fault(Some(IdTokenFault::Forged("boss@contoso.example".into())));
    let response = sign_in(&w, CONTOSO, "ada@contoso.example", "pw-ada").await;
    let code = query(response.headers()["location"].to_str().unwrap())["code"].clone();
    let body: Value = redeem(&w, CONTOSO, &code, VERIFIER, CALLBACK)
        .await
        .json()
        .await
        .unwrap();
    let token = body["id_token"].as_str().unwrap();
    assert_eq!(claims(token)["preferred_username"], "boss@contoso.example");
    let jwks: Value = w
        .open(&format!("{}/{CONTOSO}/discovery/v2.0/keys", w.sim.url()))
        .await
        .json()
        .await
        .unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwks["keys"][0]["n"].as_str().unwrap(),
        jwks["keys"][0]["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    assert!(jsonwebtoken::decode::<Value>(token, &key, &validation).is_err());
}

#[tokio::test]
async fn graph_reads_users_by_upn_with_account_enabled_also_in_batch() {
    let w = world_with_users().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    w.sim
        .set_user_enabled(CONTOSO, "ada@contoso.example", false);
    let token = w.access_token(CONTOSO, "rec-aad").await;
    let user: Value = w
        .graph(
            &token,
            "users/ada@contoso.example?$select=id,userPrincipalName,accountEnabled",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["userPrincipalName"], "ada@contoso.example");
    assert_eq!(user["accountEnabled"], false);
    assert!(user.get("displayName").is_none(), "$select applies");

    let missing = w.graph(&token, "users/nobody@contoso.example").await;
    assert_graph_error(missing, 404, "Request_ResourceNotFound",
        "Resource 'nobody@contoso.example' does not exist or one of its queried reference-property objects are not present.").await;

    let answer: Value = w
        .batch(&token, &json!({"requests": [
            {"id": "1", "method": "GET", "url": "/users/ADA@contoso.example?$select=accountEnabled"},
            {"id": "2", "method": "GET", "url": "/users/bob@fabrikam.onmicrosoft.com"},
        ]}))
        .await
        .json()
        .await
        .unwrap();
    let item = |id: &str| {
        answer["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(item("1")["status"], 200);
    assert_eq!(item("1")["body"]["accountEnabled"], false);
    assert_eq!(
        item("2")["status"],
        404,
        "another tenant's user is not in this directory"
    );

    // Without User.Read.All or Directory.Read.All, users are not readable.
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-hue"));
    let hue = w.access_token(CONTOSO, "rec-hue").await;
    assert_eq!(
        w.graph(&hue, "users/ada@contoso.example").await.status(),
        403
    );
}
