//! Admin consent over plain HTTP, and the consent → token roles → revoke → token error
//! cycle the operator's polling relies on.

mod m365_support;

use m365_support::*;
use serde_json::Value;

fn location(response: &reqwest::Response) -> url::Url {
    assert_eq!(response.status(), 302);
    url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn accepting_v2_admin_consent_redirects_with_tenant_state_and_scope() {
    let w = world().await;
    let response = w
        .open(&w.consent_url("contoso.example", "rec-aad", "cg-contoso-directory"))
        .await;
    let target = location(&response);
    assert_eq!(
        format!(
            "{}://{}{}",
            target.scheme(),
            target.host_str().unwrap(),
            target.path()
        ),
        REDIRECT
    );
    let url = w.sim.url();
    assert_eq!(
        query(&target),
        [
            ("admin_consent".to_string(), "True".to_string()),
            ("tenant".to_string(), CONTOSO.to_string()),
            ("state".to_string(), "cg-contoso-directory".to_string()),
            (
                "scope".to_string(),
                format!("{url}/User.Read.All {url}/Group.Read.All {url}/Application.Read.All {url}/Directory.Read.All")
            ),
        ]
    );
    assert!(w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-aad"))
        .is_some());
    assert_eq!(w.sim.counts().tenant(CONTOSO).admin_consent, 1);
}

#[tokio::test]
async fn the_consent_creates_service_principal_assignments_and_delegated_grant() {
    let w = world().await;
    for app in ["rec-aad", "rec-auth"] {
        let response = w.open(&w.consent_url(CONTOSO, app, "s")).await;
        assert_eq!(response.status(), 302);
    }
    let token = w.access_token(CONTOSO, "rec-aad").await;
    let sp_auth = w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-auth"))
        .unwrap();
    let graph_sp: Value = w
        .graph(
            &token,
            "servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id",
        )
        .await
        .json()
        .await
        .unwrap();
    let grants: Value = w
        .graph(
            &token,
            &format!("oauth2PermissionGrants?$filter=clientId eq '{sp_auth}'"),
        )
        .await
        .json()
        .await
        .unwrap();
    let grant = &grants["value"][0];
    assert_eq!(grant["consentType"], "AllPrincipals");
    assert_eq!(grant["scope"], "openid profile User.Read");
    assert_eq!(grant["resourceId"], graph_sp["id"]);
    assert_eq!(grant["principalId"], Value::Null);
    // The delegated-only app has no application permissions, so no roles.
    assert!(claims(&w.access_token(CONTOSO, "rec-auth").await)
        .get("roles")
        .is_none());
}

#[tokio::test]
async fn the_v1_endpoint_grants_the_configured_permissions() {
    let w = world().await;
    let url = format!(
        "{}/fabrikam.onmicrosoft.com/adminconsent?client_id={}&redirect_uri={}&state=abc",
        w.sim.url(),
        w.app_id("rec-hue"),
        urlencode(REDIRECT)
    );
    let response = w.open(&url).await;
    let target = location(&response);
    assert_eq!(
        query(&target),
        [
            ("admin_consent".to_string(), "True".to_string()),
            ("tenant".to_string(), FABRIKAM.to_string()),
            ("state".to_string(), "abc".to_string()),
        ]
    );
    let roles = claims(&w.access_token(FABRIKAM, "rec-hue").await)["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!([
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All"
        ])
    );
}

#[tokio::test]
async fn consent_errors_before_the_redirect_is_trusted_are_error_pages() {
    let w = world().await;
    let url = w.sim.url();
    let unknown_app = format!(
        "{url}/{CONTOSO}/v2.0/adminconsent?client_id=deadbeef-0000-4000-8000-000000000000&scope=x%2F.default&redirect_uri={}",
        urlencode(REDIRECT)
    );
    let response = w.open(&unknown_app).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("AADSTS700016: Application with identifier 'deadbeef-0000-4000-8000-000000000000' was not found in the directory 'Contoso'."), "{page}");

    let mismatch = format!(
        "{url}/{CONTOSO}/v2.0/adminconsent?client_id={}&scope=x&redirect_uri={}",
        w.app_id("rec-aad"),
        urlencode("https://evil.example/cb")
    );
    let page = w.open(&mismatch).await;
    assert_eq!(page.status(), 400);
    let page = page.text().await.unwrap();
    assert!(page.contains("AADSTS50011: The redirect URI 'https://evil.example/cb' specified in the request does not match the redirect URIs configured for the application"), "{page}");

    let unknown_tenant = w.consent_url("nope.example", "rec-aad", "s");
    let page = w.open(&unknown_tenant).await;
    assert_eq!(page.status(), 400);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("AADSTS90002: Tenant 'nope.example' not found."));
    assert!(w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-aad"))
        .is_none());
}

#[tokio::test]
async fn a_bad_scope_is_sent_back_to_the_redirect_uri_as_an_error() {
    let w = world().await;
    let url = format!(
        "{}/{CONTOSO}/v2.0/adminconsent?client_id={}&scope={}&redirect_uri={}&state=s1",
        w.sim.url(),
        w.app_id("rec-aad"),
        urlencode("https://storage.azure.com/.default"),
        urlencode(REDIRECT)
    );
    let response = w.open(&url).await;
    let pairs = query(&location(&response));
    assert_eq!(pairs[0], ("error".to_string(), "invalid_scope".to_string()));
    assert!(pairs[1].1.starts_with("AADSTS70011: "));
    assert_eq!(pairs[2], ("state".to_string(), "s1".to_string()));
    assert!(w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-aad"))
        .is_none());
}

#[tokio::test]
async fn without_auto_consent_the_prompt_waits_and_only_the_harness_grants() {
    let w = world().await;
    w.sim.set_auto_consent(false);
    let response = w.open(&w.consent_url(CONTOSO, "rec-im", "s")).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Permissions requested") && page.contains("Chat.Read.All"),
        "{page}"
    );
    assert!(w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-im"))
        .is_none());
    let response = w.token(CONTOSO, "rec-im").await;
    assert_eq!(response.status(), 401);

    w.sim.grant_consent(CONTOSO, &w.app_id("rec-im"));
    let roles = claims(&w.access_token(CONTOSO, "rec-im").await)["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!(["Chat.Read.All", "ChannelMessage.Read.All"])
    );
}

#[tokio::test]
async fn consent_roles_revoke_cycle_as_the_operator_sees_it() {
    let w = world().await;
    let app = w.app_id("rec-hue");
    // Pending: no service principal.
    assert_aad_error(
        w.token(CONTOSO, "rec-hue").await,
        401,
        "invalid_client",
        7000229,
        "The client application",
    )
    .await;

    // Partial: an older consent with one permission.
    w.sim
        .grant_partial(CONTOSO, &app, &["Calls.AccessMedia.All"], &[]);
    assert_eq!(
        claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"],
        serde_json::json!(["Calls.AccessMedia.All"])
    );

    // Granted: the admin opens the link.
    assert_eq!(
        w.open(&w.consent_url(CONTOSO, "rec-hue", "s"))
            .await
            .status(),
        302
    );
    let roles = claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!([
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All"
        ])
    );

    // One permission removed from the enterprise app.
    w.sim
        .revoke_permission(CONTOSO, &app, "Calls.JoinGroupCall.All");
    let roles = claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!(["Calls.AccessMedia.All", "Calls.JoinGroupCallAsGuest.All"])
    );

    // Revoked: the enterprise app is deleted.
    w.sim.revoke_consent(CONTOSO, &app);
    assert_aad_error(
        w.token(CONTOSO, "rec-hue").await,
        401,
        "invalid_client",
        7000229,
        &format!(
            "The client application {app} is missing service principal in the tenant {CONTOSO}."
        ),
    )
    .await;
    // Other tenants keep theirs.
    w.sim.grant_consent(FABRIKAM, &app);
    assert_eq!(w.token(FABRIKAM, "rec-hue").await.status(), 200);
}

#[tokio::test]
async fn a_token_issued_before_revocation_still_reads_graph_until_it_expires() {
    let w = world().await;
    let app = w.app_id("rec-aad");
    w.sim.grant_consent(CONTOSO, &app);
    let token = w.access_token(CONTOSO, "rec-aad").await;
    w.sim.revoke_consent(CONTOSO, &app);
    let response = w
        .graph(&token, &format!("servicePrincipals(appId='{app}')"))
        .await;
    assert_graph_error(response, 404, "Request_ResourceNotFound", &format!("Resource '{app}' does not exist or one of its queried reference-property objects are not present.")).await;
}

#[tokio::test]
async fn with_a_propagation_delay_tokens_catch_up_with_a_consent_later() {
    let w = world().await;
    let app = w.app_id("rec-hue");
    w.sim
        .set_consent_propagation_delay(std::time::Duration::from_secs(60));
    w.sim
        .grant_partial(CONTOSO, &app, &["Calls.AccessMedia.All"], &[]);
    // Just granted: the token service does not know the service principal yet.
    assert_aad_error(
        w.token(CONTOSO, "rec-hue").await,
        401,
        "invalid_client",
        7000229,
        "The client application",
    )
    .await;
    w.sim.advance_clock(std::time::Duration::from_secs(61));
    assert_eq!(
        claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"],
        serde_json::json!(["Calls.AccessMedia.All"])
    );
    // The rest of the permissions arrive later than the service principal did.
    w.sim.grant_consent(CONTOSO, &app);
    assert_eq!(
        claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"],
        serde_json::json!(["Calls.AccessMedia.All"])
    );
    w.sim.advance_clock(std::time::Duration::from_secs(61));
    assert_eq!(
        claims(&w.access_token(CONTOSO, "rec-hue").await)["roles"],
        serde_json::json!([
            "Calls.AccessMedia.All",
            "Calls.JoinGroupCall.All",
            "Calls.JoinGroupCallAsGuest.All"
        ])
    );
}

#[tokio::test]
async fn edge_cases_of_the_consent_link() {
    let w = world().await;
    let url = w.sim.url();
    let app = w.app_id("rec-im");

    // `organizations`: the admin would pick a tenant; the simulator shows the prompt.
    let response = w.open(&w.consent_url("organizations", "rec-im", "s")).await;
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Permissions requested"));

    // No redirect_uri: the first registered one is used.
    let response = w
        .open(&format!("{url}/{CONTOSO}/adminconsent?client_id={app}"))
        .await;
    assert_eq!(
        location(&response).as_str(),
        format!("{REDIRECT}?admin_consent=True&tenant={CONTOSO}")
    );

    // No client_id at all.
    let response = w
        .open(&format!("{url}/{CONTOSO}/v2.0/adminconsent?scope=x"))
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains(
        "AADSTS900144: The request body must contain the following parameter: 'client_id'."
    ));

    // v2 without scope goes back to the app with invalid_request.
    let response = w
        .open(&format!(
            "{url}/{FABRIKAM}/v2.0/adminconsent?client_id={app}&redirect_uri={}&state=q",
            urlencode(REDIRECT)
        ))
        .await;
    let pairs = query(&location(&response));
    assert_eq!(
        pairs[0],
        ("error".to_string(), "invalid_request".to_string())
    );
    assert_eq!(
        pairs[1].1,
        "AADSTS900144: The request body must contain the following parameter: 'scope'."
    );
    assert!(w.sim.service_principal_id(FABRIKAM, &app).is_none());
}
