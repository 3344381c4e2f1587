//! Poll timings of the `polling` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

/// Poll timings (durations as `30s`, `5m`, `6h`, `1h 30m`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PollingConfig {
    /// First re-check of a consent that is not granted yet (default 30s).
    #[serde(with = "humantime_serde")]
    pub pending_initial: Duration,
    /// The pending interval doubles per consecutive pending check up to this (default 5m).
    #[serde(with = "humantime_serde")]
    pub pending_max: Duration,
    /// Re-check of a granted consent, to notice revocation (default 6h).
    #[serde(with = "humantime_serde")]
    pub granted_interval: Duration,
    /// Random spread applied to every interval, as a fraction (default 0.1 = ±10 %).
    pub jitter: f64,
    /// A cached token is renewed this long before it expires (default 5m).
    #[serde(with = "humantime_serde")]
    pub token_renew_before: Duration,
    /// Checks of the same tenant within this window share one result (default 5s).
    #[serde(with = "humantime_serde")]
    pub check_cache_ttl: Duration,
    /// Timeout of one HTTP request to the identity platform or Graph (default 15s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A granted consent's re-check that finds it still granted is not written to the
    /// ConsentGrant's status (`lastCheckedAt`, `nextCheckAt`) unless the written
    /// `lastCheckedAt` is older than this (default 7d; `0s`: every check is written).
    #[serde(with = "humantime_serde")]
    pub granted_status_refresh: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            pending_initial: Duration::from_secs(30),
            pending_max: Duration::from_secs(5 * 60),
            granted_interval: Duration::from_secs(6 * 3600),
            jitter: 0.1,
            token_renew_before: Duration::from_secs(5 * 60),
            check_cache_ttl: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            granted_status_refresh: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl PollingConfig {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        let positive = [
            ("pendingInitial", self.pending_initial),
            ("pendingMax", self.pending_max),
            ("grantedInterval", self.granted_interval),
            ("requestTimeout", self.request_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                problems.push(format!("polling.{name}: must be greater than zero"));
            }
        }
        if self.pending_max < self.pending_initial {
            problems.push(format!(
                "polling.pendingMax: {} is shorter than polling.pendingInitial {}",
                humantime_serde::re::humantime::format_duration(self.pending_max),
                humantime_serde::re::humantime::format_duration(self.pending_initial)
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            problems.push(format!(
                "polling.jitter: {} is not a fraction in [0, 1)",
                self.jitter
            ));
        }
        if self.token_renew_before >= Duration::from_secs(50 * 60) {
            problems.push(
                "polling.tokenRenewBefore: must be shorter than 50m (tokens live about an hour)"
                    .to_owned(),
            );
        }
    }
}
