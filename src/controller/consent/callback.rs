//! The consent redirect endpoint: where Entra sends the customer's admin after a consent, which asks for a re-check at once.

use super::*;

// ---------------------------------------------------------------------------------------------
// The consent redirect endpoint
// ---------------------------------------------------------------------------------------------

/// Query of the admin-consent redirect.
#[derive(Debug, Deserialize)]
pub struct Callback {
    admin_consent: Option<String>,
    tenant: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The `/consent/callback` route: the customer's browser lands here after the admin-consent page.
pub fn callback_router(client: kube::Client) -> Router {
    Router::new()
        .route("/consent/callback", get(callback))
        .with_state(client)
}

pub(super) async fn callback(
    State(client): State<kube::Client>,
    Query(q): Query<Callback>,
) -> impl IntoResponse {
    let Some((namespace, name)) = q.state.as_deref().and_then(|s| s.split_once('/')) else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The consent link is missing its state parameter.</p>".to_string()),
        );
    };
    if let Some(error) = &q.error {
        tracing::info!(namespace, name, error, description = ?q.error_description, "admin consent was not granted");
        return (
            StatusCode::OK,
            Html(format!("<p>Consent was not granted ({}). You can close this page and open the consent link again.</p>", html_escape(error))),
        );
    }
    if !q
        .admin_consent
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>The redirect does not say that consent was granted.</p>".to_string()),
        );
    }
    let api: Api<ConsentGrant> = Api::namespaced(client, namespace);
    let patch =
        json!({"metadata": {"annotations": {RECHECK_ANNOTATION: recheck_stamp(Timestamp::now())}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, name, tenant = ?q.tenant, "admin consent redirect: re-checking now");
            (StatusCode::OK, Html("<p>Thank you. Consent was recorded; the platform is verifying it now. You can close this page.</p>".to_string()))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => (
            StatusCode::NOT_FOUND,
            Html("<p>This consent link is no longer valid.</p>".to_string()),
        ),
        Err(e) => {
            tracing::warn!(namespace, name, error = %e, "could not request a consent re-check");
            (StatusCode::SERVICE_UNAVAILABLE, Html("<p>The platform could not record the consent right now; it will notice it on its next check.</p>".to_string()))
        }
    }
}

/// How often the redirect can have a grant re-checked: the endpoint needs no credential
/// (Entra's redirect carries none), and its `state` is no secret, so repeated hits within
/// one window write the same annotation value — a write that changes nothing and wakes
/// nothing.
pub(super) const CALLBACK_WINDOW_SECS: i64 = 10;

/// The recheck annotation the redirect writes at `now`: the start of its window.
pub fn recheck_stamp(now: Timestamp) -> String {
    let second = now.as_second();
    Timestamp::from_second(second - second.rem_euclid(CALLBACK_WINDOW_SECS))
        .unwrap_or(now)
        .to_string()
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
