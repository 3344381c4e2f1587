//! Requests to the operator's public listener (consent callback, Quick Start) by route and
//! outcome: `recording_operator_public_requests_total{route, outcome}`.
//!
//! The route is the router's matched path template (`/quickstart/{token}`, never the token
//! itself) or `unmatched`, the outcome the class of the status code, so the label set stays
//! bounded whatever the internet sends. A router counts its requests with
//!
//! ```ignore
//! router.layer(axum::middleware::from_fn_with_state(
//!     metrics.clone(),
//!     recording_operator::metrics::count_public_request,
//! ))
//! ```

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    outcome: &'static str,
}

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The outcome label of a response status: `success` (1xx–3xx), `client_error` (4xx) or
/// `server_error` (5xx).
pub fn outcome(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "success"
    }
}

pub(super) struct PublicRequests {
    family: Family<RouteLabels, Counter>,
}

impl PublicRequests {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::default();
        registry.register(
            "recording_operator_public_requests",
            "Requests to the public listener (consent callback, Quick Start), by route and outcome",
            family.clone(),
        );
        PublicRequests { family }
    }

    pub(super) fn count(&self, route: &str, status: StatusCode) {
        self.family
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                outcome: outcome(status),
            })
            .inc();
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) counting each request of a router in
/// `recording_operator_public_requests_total`; see the module documentation.
pub async fn count_public_request(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let response = next.run(request).await;
    metrics.public_request(&route, response.status());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status_class() {
        let metrics = Metrics::default();
        let router = Router::new()
            .route("/quickstart/{token}", get(|| async { "page" }))
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                count_public_request,
            ));
        for uri in [
            "/quickstart/secret-token-1",
            "/quickstart/t2",
            "/broken",
            "/nope",
        ] {
            let request = Request::builder().uri(uri).body(axum::body::Body::empty());
            router.clone().oneshot(request.unwrap()).await.unwrap();
        }
        let text = metrics.encode();
        assert!(text.contains(
            r#"recording_operator_public_requests_total{route="/quickstart/{token}",outcome="success"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"recording_operator_public_requests_total{route="/broken",outcome="server_error"} 1"#
        ));
        assert!(text.contains(
            r#"recording_operator_public_requests_total{route="unmatched",outcome="client_error"} 1"#
        ));
        assert!(!text.contains("secret-token-1"), "no path values in labels");
    }
}
