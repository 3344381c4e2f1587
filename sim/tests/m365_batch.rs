//! JSON batching over plain HTTP: the 20-request limit, per-item statuses, `dependsOn`,
//! per-item throttling and counters.

mod m365_support;

use m365_support::*;
use serde_json::{json, Value};
use sim::m365::Throttle;

async fn setup() -> (World, String) {
    let w = world().await;
    w.sim.grant_consent(CONTOSO, &w.app_id("rec-aad"));
    let token = w.access_token(CONTOSO, "rec-aad").await;
    (w, token)
}

fn by_id(body: &Value) -> std::collections::BTreeMap<String, Value> {
    body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[tokio::test]
async fn a_batch_of_21_requests_is_rejected_whole() {
    let (w, token) = setup().await;
    let requests: Vec<Value> = (1..=21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/servicePrincipals?$top=1"}))
        .collect();
    let response = w.batch(&token, &json!({ "requests": requests })).await;
    assert_graph_error(
        response,
        400,
        "BadRequest",
        "The number of requests in the batch (21) exceeds the maximum of 20.",
    )
    .await;
    assert_eq!(w.sim.counts().tenant(CONTOSO).batch_items, 0);

    let requests: Vec<Value> = (1..=20)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/servicePrincipals?$top=1"}))
        .collect();
    let response = w.batch(&token, &json!({ "requests": requests })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["responses"].as_array().unwrap().len(), 20);
    let counts = w.sim.counts().tenant(CONTOSO);
    assert_eq!((counts.graph_batch, counts.batch_items), (2, 20));
}

#[tokio::test]
async fn each_item_has_its_own_status_headers_and_body() {
    let (w, token) = setup().await;
    let hue = w.app_id("rec-hue");
    let im = w.app_id("rec-im");
    w.sim.grant_consent(CONTOSO, &hue);
    let response = w
        .batch(
            &token,
            &json!({"requests": [
                {"id": "hue", "method": "GET", "url": format!("/servicePrincipals(appId='{hue}')?$select=id,appId")},
                {"id": "im", "method": "GET", "url": format!("servicePrincipals(appId='{im}')?$select=id")},
                {"id": "grants", "method": "GET", "url": "/oauth2PermissionGrants?$filter=clientId eq 'nobody'"},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.unwrap();
    let items = by_id(&body);
    assert_eq!(items["hue"]["status"], 200);
    assert_eq!(items["hue"]["body"]["appId"], hue.as_str());
    assert_eq!(
        items["hue"]["body"]["id"],
        w.sim.service_principal_id(CONTOSO, &hue).unwrap().as_str()
    );
    assert!(items["hue"]["headers"]["Content-Type"]
        .as_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(items["im"]["status"], 404);
    assert_eq!(
        items["im"]["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert!(items["im"]["body"]["error"]["innerError"]["request-id"]
        .as_str()
        .is_some());
    assert_eq!(items["grants"]["status"], 200);
    assert_eq!(items["grants"]["body"]["value"], json!([]));
}

#[tokio::test]
async fn responses_do_not_follow_request_order() {
    let (w, token) = setup().await;
    let body: Value = w
        .batch(
            &token,
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": "/servicePrincipals?$top=1"},
                {"id": "2", "method": "GET", "url": "/servicePrincipals?$top=1"},
            ]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "1"], "clients must match responses by id");
}

#[tokio::test]
async fn a_failed_dependency_makes_dependents_424() {
    let (w, token) = setup().await;
    let hue = w.app_id("rec-hue");
    let aad = w.app_id("rec-aad");
    let body: Value = w
        .batch(
            &token,
            &json!({"requests": [
                {"id": "sp", "method": "GET", "url": format!("/servicePrincipals(appId='{hue}')")},
                {"id": "roles", "method": "GET", "url": format!("/servicePrincipals(appId='{hue}')/appRoleAssignments"), "dependsOn": ["sp"]},
                {"id": "ok", "method": "GET", "url": format!("/servicePrincipals(appId='{aad}')?$select=id")},
                {"id": "after-ok", "method": "GET", "url": format!("/servicePrincipals(appId='{aad}')/appRoleAssignments?$top=5"), "dependsOn": ["ok"]},
            ]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let items = by_id(&body);
    assert_eq!(items["sp"]["status"], 404);
    assert_eq!(items["roles"]["status"], 424);
    assert_eq!(items["roles"]["body"]["error"]["code"], "FailedDependency");
    assert_eq!(items["ok"]["status"], 200);
    assert_eq!(items["after-ok"]["status"], 200);
    assert_eq!(
        items["after-ok"]["body"]["value"].as_array().unwrap().len(),
        4,
        "the directory app's four application permissions"
    );
}

#[tokio::test]
async fn malformed_batches_are_400() {
    let (w, token) = setup().await;
    let response = w.batch(&token, &json!({"nothing": []})).await;
    assert_graph_error(response, 400, "BadRequest", "Invalid batch payload format.").await;
    let response = w
        .batch(&token, &json!({"requests": [{"id": "1", "method": "GET", "url": "/organization", "dependsOn": ["9"]}]}))
        .await;
    assert_graph_error(
        response,
        400,
        "BadRequest",
        "Request '1' depends on a request id '9' that is not in the batch.",
    )
    .await;
    let response = w
        .batch(
            &token,
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": "/organization"},
                {"id": "1", "method": "GET", "url": "/organization"},
            ]}),
        )
        .await;
    assert_graph_error(
        response,
        400,
        "BadRequest",
        "Batch request contains a duplicate id '1'.",
    )
    .await;
}

#[tokio::test]
async fn items_are_throttled_one_by_one_with_retry_after_in_their_headers() {
    let (w, token) = setup().await;
    w.sim.throttle(Throttle {
        tenant: Some("contoso.example".into()),
        status: 429,
        retry_after_secs: Some(9),
        count: 2,
    });
    let requests: Vec<Value> = (1..=3)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/servicePrincipals?$top=1"}))
        .collect();
    let response = w.batch(&token, &json!({ "requests": requests })).await;
    assert_eq!(
        response.status(),
        200,
        "the batch succeeds; its items carry the 429s"
    );
    let items = by_id(&response.json().await.unwrap());
    assert_eq!(items["1"]["status"], 429);
    assert_eq!(items["1"]["headers"]["Retry-After"], "9");
    assert_eq!(items["1"]["body"]["error"]["code"], "TooManyRequests");
    assert_eq!(items["2"]["status"], 429);
    assert_eq!(items["3"]["status"], 200);
    assert_eq!(w.sim.counts().tenant(CONTOSO).throttled, 2);
}

#[tokio::test]
async fn a_503_burst_fails_the_whole_batch() {
    let (w, token) = setup().await;
    w.sim.throttle(Throttle {
        tenant: None,
        status: 503,
        retry_after_secs: Some(2),
        count: 1,
    });
    let body =
        json!({"requests": [{"id": "1", "method": "GET", "url": "/servicePrincipals?$top=1"}]});
    let response = w.batch(&token, &body).await;
    assert_eq!(response.headers()["retry-after"], "2");
    assert_graph_error(
        response,
        503,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Please retry later.",
    )
    .await;
    assert_eq!(w.batch(&token, &body).await.status(), 200);
}

#[tokio::test]
async fn a_batch_needs_a_valid_token() {
    let (w, _) = setup().await;
    let response = w.batch("", &json!({"requests": []})).await;
    assert_graph_error(
        response,
        401,
        "InvalidAuthenticationToken",
        "Access token is empty.",
    )
    .await;
}

#[tokio::test]
async fn a_token_graph_stops_accepting_fails_single_items_with_401() {
    let (w, token) = setup().await;
    let aad = w.app_id("rec-aad");
    w.sim.reject_tokens_on_graph(CONTOSO, 1);
    let body: Value = w
        .batch(
            &token,
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": format!("/servicePrincipals(appId='{aad}')?$select=id")},
                {"id": "2", "method": "GET", "url": format!("/servicePrincipals(appId='{aad}')?$select=id")},
            ]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let items = by_id(&body);
    let statuses = [items["1"]["status"].as_u64(), items["2"]["status"].as_u64()];
    assert!(
        statuses.contains(&Some(401)) && statuses.contains(&Some(200)),
        "{body}"
    );
    let refused = if items["1"]["status"] == 401 {
        &items["1"]
    } else {
        &items["2"]
    };
    assert_eq!(
        refused["body"]["error"]["code"],
        "InvalidAuthenticationToken"
    );
    assert_eq!(
        w.sim.counts().tenant(CONTOSO).throttled,
        0,
        "not throttling"
    );
}
