//! When to check a consent again, and the link that asks a customer's admin for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use url::Url;

use super::consent::CheckState;
use crate::config::PollingConfig;

/// The wait before the next check of a consent.
///
/// - `Granted`: `grantedInterval` (hours), only to notice revocation;
/// - anything else: `pendingInitial`, doubled per consecutive check that found the consent
///   not granted (`consecutive_pending` counts the earlier ones), up to `pendingMax`;
/// - spread by ± `jitter` so tenants created together do not poll together;
/// - never sooner than `retry_after` (a throttled service's wait is not jittered below).
pub fn next_check_after(
    state: CheckState,
    consecutive_pending: u32,
    polling: &PollingConfig,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let base = match state {
        CheckState::Granted => polling.granted_interval,
        CheckState::Pending
        | CheckState::Partial
        | CheckState::Error
        | CheckState::Unknown
        | CheckState::Unverified => {
            let factor = 2u32.saturating_pow(consecutive_pending.min(30));
            polling
                .pending_initial
                .saturating_mul(factor)
                .min(polling.pending_max)
        }
    };
    let jitter = polling.jitter.clamp(0.0, 0.99);
    let spread = if jitter > 0.0 {
        rng.random_range(-jitter..=jitter)
    } else {
        0.0
    };
    let wait = base.mul_f64(1.0 + spread);
    wait.max(retry_after.unwrap_or_default())
}

/// A random source for [`next_check_after`] that is the same for every consent answered by
/// one tenant check ([`crate::graph::TenantCheck::checked_at`]): sibling ConsentGrants in the
/// same state then come due at the same instant (counted from `checked_at`) and share the next
/// check, while different tenants and different checks still spread apart.
pub fn schedule_rng(tenant_id: &str, checked_at: SystemTime) -> StdRng {
    StdRng::seed_from_u64(crate::hash64(&(
        tenant_id.to_ascii_lowercase(),
        checked_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )))
}

/// The v2.0 admin-consent URL for `app_id` in `tenant`:
/// `{authority}/{tenant}/v2.0/adminconsent?client_id=…&scope={graph}/.default&redirect_uri=…&state=…`.
pub fn consent_url(
    authority: &Url,
    tenant: &str,
    app_id: &str,
    graph_scope: &str,
    redirect_uri: &str,
    state: &str,
) -> String {
    let mut url = authority.clone();
    url.path_segments_mut()
        .expect("an http(s) authority has path segments")
        .pop_if_empty()
        .extend([tenant, "v2.0", "adminconsent"]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("client_id", app_id);
        query.append_pair("scope", graph_scope);
        query.append_pair("redirect_uri", redirect_uri);
        if !state.is_empty() {
            query.append_pair("state", state);
        }
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polling(jitter: f64) -> PollingConfig {
        PollingConfig {
            jitter,
            ..PollingConfig::default()
        }
    }

    #[test]
    fn pending_doubles_from_30s_to_5m() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = polling(0.0);
        let waits: Vec<u64> = (0..7)
            .map(|n| next_check_after(CheckState::Pending, n, &p, None, &mut rng).as_secs())
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300, 300]);
        assert_eq!(
            next_check_after(CheckState::Partial, 1, &p, None, &mut rng),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_check_after(CheckState::Pending, u32::MAX, &p, None, &mut rng),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn granted_waits_hours() {
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(
            next_check_after(CheckState::Granted, 9, &polling(0.0), None, &mut rng),
            Duration::from_secs(6 * 3600)
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_varies() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = polling(0.1);
        let waits: Vec<Duration> = (0..200)
            .map(|_| next_check_after(CheckState::Granted, 0, &p, None, &mut rng))
            .collect();
        let (lo, hi) = (Duration::from_secs(19440), Duration::from_secs(23760));
        assert!(waits.iter().all(|w| *w >= lo && *w <= hi), "{waits:?}");
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "jitter must spread the checks");
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = StdRng::seed_from_u64(4);
        let p = polling(0.1);
        for _ in 0..50 {
            let wait = next_check_after(
                CheckState::Unknown,
                0,
                &p,
                Some(Duration::from_secs(120)),
                &mut rng,
            );
            assert!(wait >= Duration::from_secs(120), "{wait:?}");
        }
        let wait = next_check_after(
            CheckState::Granted,
            0,
            &p,
            Some(Duration::from_secs(3)),
            &mut rng,
        );
        assert!(
            wait > Duration::from_secs(3600),
            "a short Retry-After does not shorten a long wait"
        );
    }

    #[test]
    fn siblings_of_one_check_get_the_same_jitter() {
        let p = polling(0.1);
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let wait = |tenant: &str, at: SystemTime| {
            next_check_after(
                CheckState::Granted,
                0,
                &p,
                None,
                &mut schedule_rng(tenant, at),
            )
        };
        assert_eq!(wait("tenant-a", at), wait("TENANT-A", at));
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|i| wait(&format!("tenant-{i}"), at)).collect();
        assert!(spread.len() > 15, "tenants must still spread apart");
        assert_ne!(
            wait("tenant-a", at),
            wait("tenant-a", at + Duration::from_secs(1))
        );
    }

    #[test]
    fn consent_url_is_percent_encoded() {
        let authority = Url::parse("https://login.microsoftonline.com").unwrap();
        let url = consent_url(
            &authority,
            "contoso.onmicrosoft.com",
            "8b0f7a52-0000-4000-8000-000000000003",
            "https://graph.microsoft.com/.default",
            "https://operator.example.com/consent/callback",
            "tenant-contoso/recording&x=1",
        );
        assert_eq!(
            url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/adminconsent?client_id=8b0f7a52-0000-4000-8000-000000000003&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&redirect_uri=https%3A%2F%2Foperator.example.com%2Fconsent%2Fcallback&state=tenant-contoso%2Frecording%26x%3D1"
        );
        let prefixed = Url::parse("http://127.0.0.1:8443/login/").unwrap();
        let url = consent_url(&prefixed, "t", "a", "s", "http://localhost/cb", "");
        assert_eq!(
            url,
            "http://127.0.0.1:8443/login/t/v2.0/adminconsent?client_id=a&scope=s&redirect_uri=http%3A%2F%2Flocalhost%2Fcb"
        );
    }
}
