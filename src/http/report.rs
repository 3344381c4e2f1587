//! Where the bots report that the customer's compliance recording policy works: the first
//! policy-based invite for a user of their tenant. Served on the public listener (the bots
//! reach it over HTTPS, the one port their network policy opens besides Teams').
//!
//! `POST /bots/v1/namespaces/{namespace}/recordingservices/{name}/policy-invite` with
//! `Authorization: Bearer <token>` and the JSON body `{"tenantId": "<customer tenant id>"}`.
//! The token is a projected token of the bots' own ServiceAccount (`<name>-bot`) for the
//! audience `recording-operator`, which the kubelet writes to the file `POLICY_REPORT_TOKEN_FILE`
//! names and renews; the URL is the bots' `POLICY_REPORT_URL`. The operator asks the API server
//! (a TokenReview naming that audience) who the token is: it must be
//! `system:serviceaccount:<namespace>:<name>-bot`. No secret is made or stored for it, and a
//! bot's token opens its own service only.
//!
//! - A missing, wrong, forged or expired token, another service's token, a token for another
//!   audience: `401`, one answer for all (nothing tells which services exist).
//! - A tenant id other than the service's tenant's: `400`.
//! - Accepted: `204`. The first report sets `status.firstPolicyInvite` (server-side apply
//!   under its own field manager), which turns the `RecordingPolicy` condition `True`; later
//!   ones change nothing.
//! - More than [`ALL_REPORTS_PER_SECOND`] requests over all services (checked before any
//!   token or object is read), or, with a valid token, more than [`REPORTS_PER_MINUTE`] for
//!   one service after a burst of [`REPORT_BURST`] (checked once the token matches, so a
//!   stranger cannot use up a service's reports): `429` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use crate::controller::service::{bot_service_account, REPORT_AUDIENCE};
use crate::crd::{RecordingService, Tenant};

/// The field manager of `status.firstPolicyInvite`.
pub const REPORT_FIELD_MANAGER: &str = "recording-operator-policy-report";
/// Reports accepted per service and minute, after [`REPORT_BURST`].
pub const REPORTS_PER_MINUTE: u32 = 6;
pub const REPORT_BURST: u32 = 3;
/// Reports accepted per second over all services.
pub const ALL_REPORTS_PER_SECOND: u32 = 20;

/// The path a service's bots report to.
pub fn report_path(namespace: &str, service: &str) -> String {
    format!("/bots/v1/namespaces/{namespace}/recordingservices/{service}/policy-invite")
}

/// Who a token is for the report audience, as the API server says: the username when it
/// authenticates for [`REPORT_AUDIENCE`].
async fn reviewed_user(client: &kube::Client, token: &str) -> Result<Option<String>, kube::Error> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![REPORT_AUDIENCE.to_string()]),
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&Default::default(), &review)
        .await?;
    let status = answer.status.unwrap_or_default();
    let for_us = status
        .audiences
        .as_ref()
        .is_none_or(|a| a.iter().any(|a| a == REPORT_AUDIENCE));
    Ok((status.authenticated == Some(true) && for_us)
        .then(|| status.user.and_then(|u| u.username))
        .flatten())
}

/// What the report route reads.
#[derive(Clone)]
pub struct ReportState {
    pub client: kube::Client,
    per_service: Arc<DefaultKeyedRateLimiter<String>>,
    all: Arc<DefaultDirectRateLimiter>,
}

impl ReportState {
    pub fn new(client: kube::Client) -> Self {
        let nz = |n: u32| NonZeroU32::new(n).expect("non-zero");
        ReportState {
            client,
            per_service: Arc::new(RateLimiter::keyed(
                Quota::per_minute(nz(REPORTS_PER_MINUTE)).allow_burst(nz(REPORT_BURST)),
            )),
            all: Arc::new(RateLimiter::direct(Quota::per_second(nz(
                ALL_REPORTS_PER_SECOND,
            )))),
        }
    }
}

/// The report route (merge it into the public listener's router, under its limits).
pub fn router(state: ReportState) -> Router {
    Router::new()
        .route(
            "/bots/v1/namespaces/{namespace}/recordingservices/{name}/policy-invite",
            post(report),
        )
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    tenant_id: String,
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "not authorized\n",
    )
        .into_response()
}

fn too_many() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "60")],
        "too many reports\n",
    )
        .into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "cannot handle a bot's policy report");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "30")],
        "try again later\n",
    )
        .into_response()
}

async fn report(
    State(state): State<ReportState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Overall first: it bounds the Secret reads whoever asks.
    if state.all.check().is_err() {
        return too_many();
    }
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
    else {
        return unauthorized();
    };
    let user = match reviewed_user(&state.client, presented).await {
        Ok(user) => user,
        Err(e) => return unavailable(e),
    };
    let expected = format!(
        "system:serviceaccount:{namespace}:{}",
        bot_service_account(&name)
    );
    if user.as_deref() != Some(expected.as_str()) {
        tracing::info!(
            namespace,
            service = name,
            "refused a policy report without a token of the service's bots"
        );
        return unauthorized();
    }
    // Per service once the token is the service's: a stranger cannot use up its reports.
    if state
        .per_service
        .check_key(&format!("{namespace}/{name}"))
        .is_err()
    {
        return too_many();
    }

    let Ok(Json(report)) = Json::<Report>::from_bytes(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "body: expected {\"tenantId\": \"<customer tenant id>\"}\n",
        )
            .into_response();
    };
    let services: Api<RecordingService> = Api::namespaced(state.client.clone(), &namespace);
    let service = match services.get_opt(&name).await {
        Ok(Some(s)) => s,
        Ok(None) => return unauthorized(),
        Err(e) => return unavailable(e),
    };
    let tenant = match Api::<Tenant>::all(state.client.clone())
        .get_opt(&service.spec.tenant_ref)
        .await
    {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let tenant_id = tenant.as_ref().and_then(Tenant::entra_tenant_id);
    if tenant_id.as_deref() != Some(report.tenant_id.to_ascii_lowercase().as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "tenantId: not the tenant of this recording service\n",
        )
            .into_response();
    }
    if service
        .status
        .as_ref()
        .is_some_and(|s| s.first_policy_invite.is_some())
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "status": {"firstPolicyInvite": Timestamp::now().to_string()},
    });
    match services
        .patch_status(
            &name,
            &PatchParams::apply(REPORT_FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(
                namespace,
                service = name,
                "the bots received the tenant's first policy invite"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => unavailable(e),
    }
}
