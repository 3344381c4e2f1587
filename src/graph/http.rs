//! HTTP plumbing shared by every module here: the client, `Retry-After`, URL joining, and
//! failures described without a URL's query.

use std::time::Duration;

/// How long to wait after a 429 that names no `Retry-After`.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// The longest wait a server may ask for: a longer `Retry-After` (or `expires_in`) is taken as
/// this, so no server-given figure reaches time arithmetic unbounded (`Instant + Duration`
/// panics on overflow).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `seconds` from a server, at most [`MAX_RETRY_AFTER`].
pub fn clamp_seconds(seconds: u64) -> Duration {
    Duration::from_secs(seconds).min(MAX_RETRY_AFTER)
}

/// Reads a `Retry-After` value: seconds (the form Graph and the identity platform use) or an
/// HTTP date (the other form HTTP allows; a date in the past means no wait); at most
/// [`MAX_RETRY_AFTER`]. Seconds too many for a `u64` are the longest wait too.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.parse::<u64>().map_or(MAX_RETRY_AFTER, clamp_seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
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

    #[test]
    fn a_huge_retry_after_is_one_hour() {
        for huge in [
            "99999999999999",
            "18446744073709551615",
            "99999999999999999999999999",
        ] {
            let wait = parse_retry_after(huge).unwrap();
            assert_eq!(wait, MAX_RETRY_AFTER, "{huge}");
            // What the callers do with it does not overflow.
            let _ = std::time::Instant::now() + wait;
            let _ = std::time::SystemTime::now() + wait;
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(clamp_seconds(u64::MAX), MAX_RETRY_AFTER);
        assert_eq!(clamp_seconds(59), Duration::from_secs(59));
    }
}
