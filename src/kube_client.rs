//! The operator's Kubernetes client: kube's request stack over a connection pool that speaks
//! HTTP/2 to the API server when it offers it, and stays bounded over HTTP/1.1 when not.

/// Why the client could not be built from the kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("configuring TLS for the Kubernetes API: {0}")]
    Tls(#[source] kube::Error),
    #[error("the kubeconfig's tls-server-name {0:?} is not a valid server name")]
    ServerName(String),
    #[error("configuring credentials for the Kubernetes API: {0}")]
    Credentials(#[source] kube::Error),
    #[error("configuring headers for the Kubernetes API: {0}")]
    Headers(#[source] kube::Error),
    #[error("building the Kubernetes client: {0}")]
    Default(#[source] kube::Error),
}

/// How many idle connections to the API server the client keeps: enough for the requests of
/// every running reconcile (three controllers, `concurrency` reconciles each, one request at
/// a time), so a busy operator reuses connections rather than opening new ones.
pub fn idle_connections(concurrency: u16) -> usize {
    3 * usize::from(concurrency.max(1))
}

/// Connections to the API server being opened at once; more requests wait for one of these
/// or for a connection to come free, whichever is first.
const CONNECTS_IN_FLIGHT: usize = 8;

/// An HTTP/2 connection to the API server that has carried no frame for this long is pinged.
const H2_PING_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
/// A ping unanswered for this long closes the connection; requests and watches reconnect.
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Bytes the API server may send on one HTTP/2 stream (a request's answer, a watch) before
/// the operator has read them.
const H2_STREAM_WINDOW: u32 = 2 << 20;
/// Bytes the API server may send on the whole connection before the operator has read them.
const H2_CONNECTION_WINDOW: u32 = 1 << 30;

/// The Kubernetes client: kube's own stack (base URL, retries of server errors, credentials,
/// extra headers, TLS, timeouts) over a connection pool that speaks HTTP/2 when the API server
/// offers it, and otherwise keeps at most `max_idle` idle HTTP/1.1 connections.
///
/// With HTTP/2 (every kube-apiserver offers it by ALPN) all requests and watches share one
/// connection, as with client-go. Over HTTP/1.1 the pool opens a connection for every request
/// that finds no idle one and finishes that connect in the background even when another
/// connection frees up first: after a burst of reconciles (1,000 onboarding Tenants) it went
/// on opening — and at once closing, beyond `max_idle` — thousands of TLS connections for
/// seconds after the last request. HTTP/1.1 stays bounded as before: at most
/// [`CONNECTS_IN_FLIGHT`] connections being opened at a time, none kept idle beyond
/// `max_idle`.
///
/// With an HTTP proxy in the kubeconfig, kube's default client is used as is.
pub fn build(config: kube::Config, max_idle: usize) -> Result<kube::Client, KubeClientError> {
    use kube::client::ConfigExt as _;
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config).map_err(KubeClientError::Default);
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // kube's TLS settings (CA, client certificate, exec identity, insecure flag), offering
    // HTTP/2 and HTTP/1.1 by ALPN, where kube's own connector offers HTTP/1.1 only.
    let mut tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(
            config
                .rustls_client_config()
                .map_err(KubeClientError::Tls)?,
        )
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|_| KubeClientError::ServerName(name.clone()))?;
        tls = tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = tls.enable_all_versions().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let connector = tower::limit::ConcurrencyLimit::new(connector, CONNECTS_IN_FLIGHT);
    let pool = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        // A silent HTTP/2 connection is found out by a ping, as client-go does (a ping
        // after 30 s without frames, 15 s for its answer): every request and watch shares it.
        .http2_keep_alive_interval(H2_PING_AFTER)
        .http2_keep_alive_timeout(H2_PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        // Flow control: a watch that is not being read (its controller's queue is full, and
        // kube-runtime's shared reflectors wait for their slowest reader) keeps up to one
        // stream window of events unread. With hyper's 5 MiB connection window three such
        // watches stopped every other answer on the connection, the requests that would have
        // drained those queues included. Like client-go (1 GiB), the connection's window is
        // large, so each stream is held back only by its own 2 MiB window.
        .http2_initial_stream_window_size(H2_STREAM_WINDOW)
        .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
        .build(connector);
    // One debug span per request — method, path and query, status — as kube's own client
    // stack has, which this one replaces. Headers (the bearer token) are never recorded.
    let request_spans = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &::http::Request<kube::client::Body>| {
            tracing::debug_span!(
                target: KUBE_HTTP,
                "kube_request",
                http.method = %req.method(),
                http.url = %req.uri(),
                http.status_code = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(
            |res: &::http::Response<_>, latency: std::time::Duration, span: &tracing::Span| {
                span.record("http.status_code", res.status().as_u16());
                tracing::debug!(
                    target: KUBE_HTTP,
                    latency_ms = latency.as_millis() as u64,
                    "answered"
                );
            },
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(
            |failure: tower_http::classify::ServerErrorsFailureClass,
             latency: std::time::Duration,
             _span: &tracing::Span| {
                tracing::debug!(
                    target: KUBE_HTTP,
                    %failure,
                    latency_ms = latency.as_millis() as u64,
                    "failed"
                );
            },
        );
    let service = tower::ServiceBuilder::new()
        .layer(request_spans)
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        // Under the retry: the wait it reads from `Retry-After` is bounded.
        .map_response(clamp_retry_after)
        .option_layer(config.auth_layer().map_err(KubeClientError::Credentials)?)
        .layer(
            config
                .extra_headers_layer()
                .map_err(KubeClientError::Headers)?,
        )
        .map_err(tower::BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The longest `Retry-After` of the API server the client waits for inside one request
/// (kube's retry of 429/503 sleeps that long before asking again); a longer one is taken as
/// this. Past it the request fails and its controller's own back-off takes over.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Rewrites an answer's `Retry-After` in seconds to at most [`MAX_RETRY_AFTER`]: a figure
/// too large for a `u64` or an `Instant` (`99999999999999`) would otherwise hold the request
/// for years.
pub fn clamp_retry_after<B>(mut response: ::http::Response<B>) -> ::http::Response<B> {
    let headers = response.headers_mut();
    let too_long = headers
        .get(::http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .is_some_and(|v| {
            v.parse::<u64>()
                .map_or(true, |s| s > MAX_RETRY_AFTER.as_secs())
        });
    if too_long {
        headers.insert(
            ::http::header::RETRY_AFTER,
            ::http::HeaderValue::from(MAX_RETRY_AFTER.as_secs()),
        );
    }
    response
}

/// Where the Kubernetes client's request spans and events go: `RUST_LOG=info,{KUBE_HTTP}=debug`
/// shows every API request with its status and duration.
pub const KUBE_HTTP: &str = "recording_operator::kube_http";

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(value: &str) -> String {
        let response = ::http::Response::builder()
            .status(429)
            .header("Retry-After", value)
            .body(())
            .unwrap();
        clamp_retry_after(response).headers()["retry-after"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_huge_retry_after_of_the_api_server_is_bounded() {
        assert_eq!(retry_after("99999999999999"), "30");
        assert_eq!(retry_after("99999999999999999999999999"), "30");
        assert_eq!(retry_after("31"), "30");
        assert_eq!(retry_after("3"), "3");
        // A date is not read by kube's retry at all: left as it is.
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }
}
