//! Microsoft Graph v1.0 over plain HTTP: authentication and authorisation, the endpoints
//! the operator reads, OData shapes, `$select`, `$filter`, paging and throttling.

mod m365_support;

use std::time::Duration;

use m365_support::*;
use serde_json::{json, Value};
use sim::m365::{Settings, Throttle, GRAPH_APP_ID};

/// Contoso with the directory app consented; returns its Graph token.
async fn directory_token(w: &World) -> String {
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    w.access_token(CONTOSO, "rec-aad").await
}

#[tokio::test]
async fn service_principal_by_app_id_with_select() {
    let w = world().await;
    let token = directory_token(&w).await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-hue"));
    let app = w.app_id("rec-hue");
    let response = w
        .graph(
            &token,
            &format!(
                "servicePrincipals(appId='{app}')?$select=id,appId,displayName,accountEnabled"
            ),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json;odata.metadata=minimal"));
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        response.headers()["client-request-id"].to_str().unwrap(),
        request_id
    );
    let body: Value = response.json().await.unwrap();
    let sp_id = w.sim.service_principal_id(CONTOSO, &app).unwrap();
    assert_eq!(
        body,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#servicePrincipals(id,appId,displayName,accountEnabled)/$entity", w.sim.url()),
            "id": sp_id,
            "appId": app,
            "displayName": "rec-hue",
            "accountEnabled": true,
        })
    );
    // By object id, all properties.
    let body: Value = w
        .graph(&token, &format!("servicePrincipals/{sp_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#servicePrincipals/$entity", w.sim.url())
    );
    assert_eq!(body["appOwnerOrganizationId"], HOME);
    assert_eq!(body["servicePrincipalType"], "Application");
}

#[tokio::test]
async fn disabled_service_principals_show_account_enabled_false() {
    let w = world().await;
    let token = directory_token(&w).await;
    let app = w.app_id("rec-im");
    w.sim.grant_consent(CONTOSO, &app);
    w.sim.set_service_principal_enabled(CONTOSO, &app, false);
    let body: Value = w
        .graph(
            &token,
            &format!("servicePrincipals(appId='{app}')?$select=accountEnabled"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["accountEnabled"], false);
}

#[tokio::test]
async fn a_missing_service_principal_is_request_resource_not_found() {
    let w = world().await;
    let token = directory_token(&w).await;
    let app = w.app_id("rec-hue");
    let response = w
        .graph(
            &token,
            &format!("servicePrincipals(appId='{app}')?$select=id"),
        )
        .await;
    assert_graph_error(
        response,
        404,
        "Request_ResourceNotFound",
        &format!("Resource '{app}' does not exist or one of its queried reference-property objects are not present."),
    )
    .await;
}

#[tokio::test]
async fn graph_service_principal_maps_permission_names_to_ids() {
    let w = world().await;
    let token = directory_token(&w).await;
    let body: Value = w
        .graph(
            &token,
            &format!(
                "servicePrincipals(appId='{GRAPH_APP_ID}')?$select=appRoles,oauth2PermissionScopes"
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    let role = body["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "Application.Read.All")
        .unwrap();
    assert_eq!(role["id"], "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30");
    assert_eq!(role["allowedMemberTypes"], json!(["Application"]));
    assert_eq!(role["isEnabled"], true);
    let scope = body["oauth2PermissionScopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["value"] == "User.Read")
        .unwrap();
    assert_eq!(scope["id"], "e1fe6dd8-ba31-4d61-89e7-88639da4683d");
}

#[tokio::test]
async fn app_role_assignments_page_through_next_links() {
    let w = world().await;
    let token = directory_token(&w).await;
    let app = w.app_id("rec-hue");
    w.sim.grant_consent(CONTOSO, &app);
    let sp_id = w.sim.service_principal_id(CONTOSO, &app).unwrap();
    let graph_sp = w.sim.service_principal_id(CONTOSO, GRAPH_APP_ID).unwrap();

    let first: Value = w
        .graph(
            &token,
            &format!("servicePrincipals/{sp_id}/appRoleAssignments"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["@odata.context"],
        format!(
            "{}/v1.0/$metadata#servicePrincipals('{sp_id}')/appRoleAssignments",
            w.sim.url()
        )
    );
    assert_eq!(
        first["value"].as_array().unwrap().len(),
        2,
        "default page size of the simulator"
    );
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "{}/v1.0/servicePrincipals/{sp_id}/appRoleAssignments?$skiptoken=",
            w.sim.url()
        )),
        "{next}"
    );
    let second: Value = w.get_url(&token, next).await.json().await.unwrap();
    assert!(second.get("@odata.nextLink").is_none());
    let all: Vec<Value> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["value"].as_array().unwrap())
        .cloned()
        .collect();
    let ids: Vec<&str> = all
        .iter()
        .map(|a| a["appRoleId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "a7a681dc-756e-4909-b988-f160edc6655f",
            "f6b49018-60ab-4f81-83bd-22caeabfed2d",
            "fd7ccf6b-3d28-418b-9701-cd10f5cd2fd4"
        ]
    );
    for a in &all {
        assert_eq!(a["principalId"], sp_id.as_str());
        assert_eq!(a["principalType"], "ServicePrincipal");
        assert_eq!(a["resourceId"], graph_sp.as_str());
        assert_eq!(a["resourceDisplayName"], "Microsoft Graph");
        assert_eq!(a["principalDisplayName"], "rec-hue");
    }

    // $top asks for a bigger page; $select survives into the next link.
    let body: Value = w
        .graph(
            &token,
            &format!("servicePrincipals/{sp_id}/appRoleAssignments?$top=5"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 3);
    assert!(body.get("@odata.nextLink").is_none());
    let body: Value = w
        .graph(
            &token,
            &format!(
                "servicePrincipals(appId='{app}')/appRoleAssignments?$select=appRoleId&$top=1"
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["value"],
        json!([{"appRoleId": "a7a681dc-756e-4909-b988-f160edc6655f"}])
    );
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains("$select=appRoleId&$top=1&$skiptoken="),
        "{next}"
    );
    let body: Value = w.get_url(&token, next).await.json().await.unwrap();
    assert_eq!(
        body["value"],
        json!([{"appRoleId": "f6b49018-60ab-4f81-83bd-22caeabfed2d"}])
    );

    let response = w
        .graph(
            &token,
            &format!("servicePrincipals/{sp_id}/appRoleAssignments?$top=1000"),
        )
        .await;
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.",
    )
    .await;
}

#[tokio::test]
async fn permission_grants_filter_by_client_id() {
    let w = world().await;
    let token = directory_token(&w).await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-auth"));
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-teams"));
    let auth_sp = w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-auth"))
        .unwrap();
    let response = w
        .graph(
            &token,
            &format!("oauth2PermissionGrants?$filter=clientId eq '{auth_sp}'"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#oauth2PermissionGrants", w.sim.url())
    );
    let grants = body["value"].as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["clientId"], auth_sp.as_str());
    assert_eq!(grants[0]["scope"], "openid profile User.Read");
    let all: Value = w
        .graph(&token, "oauth2PermissionGrants?$top=10")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["value"].as_array().unwrap().len(), 2);

    let response = w
        .graph(&token, "oauth2PermissionGrants?$filter=scope eq 'openid'")
        .await;
    assert_graph_error(response, 400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for property 'scope' of resource 'OAuth2PermissionGrant'.").await;
}

#[tokio::test]
async fn applications_are_read_in_their_home_tenant_without_secret_text() {
    let w = world().await;
    let app = w.app_id("rec-hue");
    w.sim.grant_consent(HOME, &w.app_id("rec-aad"));
    let token = w.access_token(HOME, "rec-aad").await;
    let body: Value = w
        .graph(
            &token,
            &format!("applications(appId='{app}')?$select=id,appId,passwordCredentials"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["appId"], app.as_str());
    let secret = &w.app("rec-hue").secrets[0];
    let credential = &body["passwordCredentials"][0];
    assert_eq!(credential["secretText"], Value::Null);
    assert_eq!(credential["hint"], &secret.value[..3]);
    assert_eq!(credential["keyId"], secret.key_id.clone().unwrap().as_str());
    let end =
        chrono::DateTime::parse_from_rfc3339(credential["endDateTime"].as_str().unwrap()).unwrap();
    let seeded = chrono::DateTime::parse_from_rfc3339(&secret.end_date_time).unwrap();
    assert_eq!(end.timestamp(), seeded.timestamp());
    assert!(
        !body.to_string().contains(&secret.value),
        "the secret itself never leaves the directory"
    );

    // Another tenant's directory has no such application object.
    let customer = directory_token(&w).await;
    let response = w
        .graph(&customer, &format!("applications(appId='{app}')"))
        .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn organization_needs_organization_or_directory_read() {
    let w = world().await;
    // The directory app without Directory.Read.All (an older consent).
    w.sim.grant_partial(
        CONTOSO,
        &w.app_id("rec-aad"),
        &["User.Read.All", "Group.Read.All", "Application.Read.All"],
        &[],
    );
    let token = w.access_token(CONTOSO, "rec-aad").await;
    let response = w.graph(&token, "organization").await;
    assert_graph_error(
        response,
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    .await;

    let mut seed = seed();
    seed.apps[1].application_permissions = vec!["Organization.Read.All".into()];
    let w = world_with(seed).await;
    let token = directory_token(&w).await;
    let body: Value = w
        .graph(
            &token,
            "organization?$select=id,displayName,verifiedDomains",
        )
        .await
        .json()
        .await
        .unwrap();
    let org = &body["value"][0];
    assert_eq!(org["id"], CONTOSO);
    assert_eq!(org["displayName"], "Contoso");
    assert_eq!(
        org["verifiedDomains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (
                d["name"].as_str().unwrap(),
                d["isDefault"].as_bool().unwrap(),
                d["isInitial"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            ("contoso.example", true, false),
            ("contoso.onmicrosoft.com", false, true)
        ]
    );
}

#[tokio::test]
async fn reading_service_principals_without_application_read_all_is_403() {
    let w = world().await;
    // The recording app has Calls.* roles only.
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-hue"));
    let token = w.access_token(CONTOSO, "rec-hue").await;
    for path in [
        format!("servicePrincipals(appId='{}')", w.app_id("rec-hue")),
        "oauth2PermissionGrants".to_string(),
        format!(
            "servicePrincipals/{}/appRoleAssignments",
            w.sim
                .service_principal_id(CONTOSO, &w.app_id("rec-hue"))
                .unwrap()
        ),
    ] {
        let response = w.graph(&token, &path).await;
        assert_graph_error(
            response,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
        .await;
    }
    // A partial directory consent without Application.Read.All is just as insufficient.
    w.sim.grant_partial(
        CONTOSO,
        &w.app_id("rec-aad"),
        &["User.Read.All", "Group.Read.All"],
        &[],
    );
    let token = w.access_token(CONTOSO, "rec-aad").await;
    let response = w.graph(&token, "servicePrincipals?$select=id").await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn listing_permission_grants_needs_directory_read_as_on_graph() {
    let partial_directory = |w: &World| {
        w.sim.grant_partial(
            CONTOSO,
            &w.app_id("rec-aad"),
            &["User.Read.All", "Group.Read.All", "Application.Read.All"],
            &[],
        )
    };
    let w = world().await;
    partial_directory(&w);
    let token = w.access_token(CONTOSO, "rec-aad").await;
    assert_eq!(
        w.graph(&token, "servicePrincipals?$top=1").await.status(),
        200
    );
    let sp = w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-aad"))
        .unwrap();
    for path in [
        "oauth2PermissionGrants".to_string(),
        format!("servicePrincipals/{sp}/oauth2PermissionGrants"),
    ] {
        assert_graph_error(
            w.graph(&token, &path).await,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
        .await;
    }
    // With Directory.Read.All granted as well, the grants can be listed.
    let token = directory_token(&w).await;
    assert_eq!(
        w.graph(&token, "oauth2PermissionGrants").await.status(),
        200
    );

    // The lax setting lets Application.Read.All list them (not Graph's behaviour).
    let mut lax = seed();
    lax.settings = Settings {
        grants_require_directory_read: false,
        ..Settings::default()
    };
    let w = world_with(lax).await;
    partial_directory(&w);
    let token = w.access_token(CONTOSO, "rec-aad").await;
    assert_eq!(
        w.graph(&token, "oauth2PermissionGrants").await.status(),
        200
    );
}

#[tokio::test]
async fn missing_expired_and_foreign_tokens_are_401() {
    let w = world().await;
    let token = directory_token(&w).await;
    let response = w
        .http
        .get(format!("{}/v1.0/organization", w.sim.url()))
        .send()
        .await
        .unwrap();
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_graph_error(
        response,
        401,
        "InvalidAuthenticationToken",
        "Access token is empty.",
    )
    .await;

    // Signed by someone else: same header and claims, another signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = "c2lnbmVkLWJ5LXNvbWVvbmUtZWxzZQ";
    let response = w.graph(&parts.join("."), "servicePrincipals").await;
    assert_graph_error(
        response,
        401,
        "InvalidAuthenticationToken",
        "Access token validation failure.",
    )
    .await;

    let response = w.graph("not-a-jwt", "servicePrincipals").await;
    assert_graph_error(
        response,
        401,
        "InvalidAuthenticationToken",
        "IDX14100: JWT is not well formed, there are no dots (.).",
    )
    .await;

    w.sim.advance_clock(Duration::from_secs(3600));
    let response = w.graph(&token, "servicePrincipals").await;
    assert_graph_error(
        response,
        401,
        "InvalidAuthenticationToken",
        "Lifetime validation failed, the token is expired.",
    )
    .await;
    // A fresh token works again.
    let token = w.access_token(CONTOSO, "rec-aad").await;
    assert_eq!(w.graph(&token, "servicePrincipals").await.status(), 200);
}

#[tokio::test]
async fn the_token_tenant_selects_the_directory() {
    let w = world().await;
    let app = w.app_id("rec-im");
    w.sim.grant_consent(FABRIKAM, &app);
    let contoso = directory_token(&w).await;
    w.sim.grant_consent(FABRIKAM, &w.app_id("rec-aad"));
    let fabrikam = w.access_token(FABRIKAM, "rec-aad").await;
    let path = format!("servicePrincipals(appId='{app}')?$select=id");
    assert_eq!(w.graph(&contoso, &path).await.status(), 404);
    assert_eq!(w.graph(&fabrikam, &path).await.status(), 200);
}

#[tokio::test]
async fn odata_errors_for_unknown_segments_ids_and_properties() {
    let w = world().await;
    let token = directory_token(&w).await;
    assert_graph_error(
        w.graph(&token, "users").await,
        400,
        "BadRequest",
        "Resource not found for the segment 'users'.",
    )
    .await;
    assert_graph_error(
        w.graph(&token, "servicePrincipals/abc").await,
        400,
        "Request_BadRequest",
        "Invalid object identifier 'abc'.",
    )
    .await;
    assert_graph_error(
        w.graph(&token, "servicePrincipals?$select=id,colour").await,
        400,
        "Request_BadRequest",
        "Could not find a property named 'colour' on type 'microsoft.graph.servicePrincipal'.",
    )
    .await;
}

#[tokio::test]
async fn client_request_id_is_echoed() {
    let w = world().await;
    let token = directory_token(&w).await;
    let response = w
        .http
        .get(format!("{}/v1.0/servicePrincipals?$top=1", w.sim.url()))
        .bearer_auth(&token)
        .header("client-request-id", "0b0e5c1e-0000-4000-8000-00000000abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["client-request-id"],
        "0b0e5c1e-0000-4000-8000-00000000abcd"
    );
    assert_ne!(
        response.headers()["request-id"],
        "0b0e5c1e-0000-4000-8000-00000000abcd"
    );
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_for_the_throttled_tenant_only() {
    let w = world().await;
    let contoso = directory_token(&w).await;
    w.sim.grant_consent(FABRIKAM, &w.app_id("rec-aad"));
    let fabrikam = w.access_token(FABRIKAM, "rec-aad").await;
    w.sim.reset_counts();
    w.sim.throttle(Throttle {
        tenant: Some(CONTOSO.into()),
        status: 429,
        retry_after_secs: Some(3),
        count: 2,
    });
    for _ in 0..2 {
        let response = w.graph(&contoso, "servicePrincipals").await;
        assert_eq!(response.headers()["retry-after"], "3");
        assert_graph_error(response, 429, "TooManyRequests", "Too many requests.").await;
    }
    assert_eq!(w.graph(&fabrikam, "servicePrincipals").await.status(), 200);
    assert_eq!(w.graph(&contoso, "servicePrincipals").await.status(), 200);

    w.sim.throttle(Throttle {
        tenant: None,
        status: 503,
        retry_after_secs: None,
        count: 1,
    });
    let response = w.graph(&fabrikam, "servicePrincipals").await;
    assert!(response.headers().get("retry-after").is_none());
    assert_graph_error(
        response,
        503,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Please retry later.",
    )
    .await;

    let counts = w.sim.counts();
    assert_eq!(counts.tenant(CONTOSO).graph_get, 3);
    assert_eq!(counts.tenant(CONTOSO).throttled, 2);
    assert_eq!(counts.tenant(FABRIKAM).graph_get, 2);
    assert_eq!(counts.tenant(FABRIKAM).throttled, 1);
    assert_eq!(counts.total.graph_requests(), 5);
}

#[tokio::test]
async fn writes_are_refused_with_an_odata_405() {
    let w = world().await;
    let token = directory_token(&w).await;
    let response = w
        .http
        .post(format!("{}/v1.0/servicePrincipals", w.sim.url()))
        .bearer_auth(&token)
        .json(&json!({"appId": w.app_id("rec-hue")}))
        .send()
        .await
        .unwrap();
    assert_graph_error(
        response,
        405,
        "Request_BadRequest",
        "The simulator does not serve POST requests on Graph.",
    )
    .await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let w = world().await;
    let url = format!(
        "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
        w.sim.url()
    );
    assert_eq!(w.open(&url).await.status(), 200);
    w.sim.clone().shutdown().await;
    let refused = reqwest::Client::new().get(&url).send().await;
    assert!(
        refused.is_err_and(|e| e.is_connect()),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn a_slow_tenant_does_not_slow_the_others() {
    let w = world().await;
    let contoso = directory_token(&w).await;
    w.sim.grant_consent(FABRIKAM, &w.app_id("rec-aad"));
    let fabrikam = w.access_token(FABRIKAM, "rec-aad").await;
    w.sim
        .set_tenant_latency("contoso.example", Duration::from_secs(3600));
    let slow = {
        let (http, url) = (
            w.http.clone(),
            format!("{}/v1.0/servicePrincipals", w.sim.url()),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(contoso).send().await })
    };
    // Wait until the slow request is being served, then show Fabrikam is answered meanwhile.
    while w.sim.counts().tenant(CONTOSO).graph_get == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(w.graph(&fabrikam, "servicePrincipals").await.status(), 200);
    assert_eq!(w.token(FABRIKAM, "rec-aad").await.status(), 200);
    assert!(!slow.is_finished(), "Contoso's request is still delayed");
    slow.abort();
}

#[tokio::test]
async fn app_role_assignments_filter_by_resource_with_a_guid_literal() {
    let w = world().await;
    let token = directory_token(&w).await;
    let graph_sp = w.sim.service_principal_id(CONTOSO, GRAPH_APP_ID).unwrap();
    let app = w.app_id("rec-aad");
    let path = format!("servicePrincipals(appId='{app}')/appRoleAssignments?$filter=resourceId eq {graph_sp}&$top=10");
    let body: Value = w.graph(&token, &path).await.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 4);
    let path = format!("servicePrincipals(appId='{app}')/appRoleAssignments?$filter=appRoleId eq 9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30");
    let body: Value = w.graph(&token, &path).await.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    // appRoleId is an Edm.Guid: a quoted string does not compare with it.
    let path = format!("servicePrincipals(appId='{app}')/appRoleAssignments?$filter=appRoleId eq '9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30'");
    assert_graph_error(
        w.graph(&token, &path).await,
        400,
        "BadRequest",
        "A binary operator with incompatible types was detected. Found operand types 'Edm.Guid' and 'Edm.String' for operator kind 'Equal'.",
    )
    .await;
    let response = w
        .graph(
            &token,
            &format!(
                "servicePrincipals(appId='{app}')/appRoleAssignments?$filter=resourceId eq graph"
            ),
        )
        .await;
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "Invalid filter clause: 'resourceId eq graph'.",
    )
    .await;
}

#[tokio::test]
async fn a_users_own_consent_is_a_principal_grant_not_admin_consent() {
    let w = world().await;
    let token = directory_token(&w).await;
    let user = "0b0b0b0b-1111-4222-8333-444455556666";
    w.sim.user_consent(CONTOSO, &w.app_id("rec-auth"), user);
    // The enterprise application exists, as after an admin's consent...
    let sp = w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-auth"))
        .expect("a user's consent creates the service principal");
    // ...but its only grant is for that user.
    let path = format!("oauth2PermissionGrants?$filter=clientId eq '{sp}'");
    let body: Value = w.graph(&token, &path).await.json().await.unwrap();
    let grants = body["value"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{body}");
    assert_eq!(grants[0]["consentType"], "Principal");
    assert_eq!(grants[0]["principalId"], user);
    assert_eq!(grants[0]["scope"], "openid profile User.Read");

    // The admin consents later: an AllPrincipals grant beside the user's.
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-auth"));
    let path = format!(
        "oauth2PermissionGrants?$filter=clientId eq '{sp}' and consentType eq 'AllPrincipals'"
    );
    let body: Value = w.graph(&token, &path).await.json().await.unwrap();
    let grants = body["value"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{body}");
    assert_eq!(grants[0]["principalId"], Value::Null);
}

#[tokio::test]
async fn a_user_consent_can_be_seeded() {
    let mut seed = seed();
    let app = seed.app("rec-auth").unwrap().app_id.clone();
    let yaml = format!(
        "consents:\n  - tenant: contoso.example\n    app_id: {app}\n    user: 0b0b0b0b-1111-4222-8333-444455556666\n"
    );
    seed.consents = sim::m365::Seed::from_yaml(&yaml).unwrap().consents;
    let w = world_with(seed.clone()).await;
    let token = directory_token(&w).await;
    let body: Value = w
        .graph(&token, "oauth2PermissionGrants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["value"][0]["consentType"], "Principal", "{body}");

    // A user cannot consent to a chosen part of an app.
    let yaml = format!("{yaml}    delegated_scopes: [openid]\n");
    seed.consents = sim::m365::Seed::from_yaml(&yaml).unwrap().consents;
    let err = sim::m365::M365Sim::start(seed).await.unwrap_err();
    assert!(err.to_string().contains("user"), "{err}");
}

#[tokio::test]
async fn client_id_filters_take_a_quoted_string_as_graph_does() {
    let w = world().await;
    let token = directory_token(&w).await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-auth"));
    let sp = w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("rec-auth"))
        .unwrap();
    // clientId is an Edm.String: a bare GUID literal does not compare with it.
    let response = w
        .graph(
            &token,
            &format!("oauth2PermissionGrants?$filter=clientId eq {sp}"),
        )
        .await;
    assert_graph_error(
        response,
        400,
        "BadRequest",
        "A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Guid' for operator kind 'Equal'.",
    )
    .await;
}

#[tokio::test]
async fn opaque_tokens_are_accepted_by_graph_and_expire() {
    let w = world().await;
    w.sim.set_opaque_tokens(true);
    let token = directory_token(&w).await;
    assert!(!token.contains('.'), "not a JWT: {token}");
    let response = w.graph(&token, "servicePrincipals?$top=1").await;
    assert_eq!(response.status(), 200);
    w.sim.advance_clock(Duration::from_secs(2 * 3600));
    assert_graph_error(
        w.graph(&token, "servicePrincipals?$top=1").await,
        401,
        "InvalidAuthenticationToken",
        "Lifetime validation failed, the token is expired.",
    )
    .await;
}
