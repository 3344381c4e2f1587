//! HTTP plumbing shared by every module here: the client, `Retry-After`, URL joining, and
//! failures described without a URL's query.

use std::time::Duration;

/// How long to wait after a 429 that names no `Retry-After`.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// Reads a `Retry-After` value: seconds (the form Graph and the identity platform use) or an
/// HTTP date (the other form HTTP allows; a date in the past means no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The HTTP client every module here uses: no redirects (a token endpoint must never be
/// followed elsewhere with a secret), a per-request timeout so one slow tenant cannot hold
/// a check for long.
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("recording-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with rustls builds")
}

/// A path segment naming a tenant (GUID or domain) that cannot break out of its URL segment.
pub(crate) fn is_tenant_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !s.starts_with('.')
}

/// `{base}/{segments...}` for a base URL that may carry a path prefix.
pub(crate) fn join(base: &url::Url, tail: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        tail.trim_start_matches('/')
    )
}

/// A reqwest error in a few words, without the URL's query (no secrets are in Graph URLs,
/// but a SAS-style URL elsewhere must not leak through a shared helper either).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!(
            "{kind} ({}{})",
            url.origin().ascii_serialization(),
            url.path()
        ),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
