//! `storage.retention` of the operator's configuration: how often and how hard the retention
//! sweeps run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `storage.retention` of the operator's configuration.
///
/// ```yaml
/// retention:
///   enabled: true
///   dryRun: false            # count what would be deleted, delete nothing
///   interval: 24h            # each tenant is swept at most once per interval
///   gracePeriod: 7d          # a shortened retention applies this long after it is seen
///   concurrentSweeps: 2      # tenants swept at the same time, operator-wide
///   deletesInFlight: 16      # deletes in flight within one sweep
///   pageSize: 1000           # blobs per listing page (maxresults, at most 5000)
///   retryFailedAfter: 1h     # a failed sweep is tried again after this
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
    #[serde(default = "default_concurrent_sweeps")]
    pub concurrent_sweeps: usize,
    #[serde(default = "default_deletes_in_flight")]
    pub deletes_in_flight: usize,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_retry_failed_after", with = "humantime_serde")]
    pub retry_failed_after: Duration,
}

fn yes() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_grace_period() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_concurrent_sweeps() -> usize {
    2
}
fn default_deletes_in_flight() -> usize {
    16
}
fn default_page_size() -> u32 {
    1000
}
fn default_retry_failed_after() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            interval: default_interval(),
            grace_period: default_grace_period(),
            concurrent_sweeps: default_concurrent_sweeps(),
            deletes_in_flight: default_deletes_in_flight(),
            page_size: default_page_size(),
            retry_failed_after: default_retry_failed_after(),
        }
    }
}

impl RetentionConfig {
    /// Every broken rule of the section, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.interval < Duration::from_secs(1) {
            problems.push("storage.retention.interval: must be at least 1s".to_string());
        }
        if self.retry_failed_after < Duration::from_secs(1) {
            problems.push("storage.retention.retryFailedAfter: must be at least 1s".to_string());
        }
        if self.concurrent_sweeps == 0 {
            problems.push("storage.retention.concurrentSweeps: must be at least 1".to_string());
        }
        if !(1..=256).contains(&self.deletes_in_flight) {
            problems.push("storage.retention.deletesInFlight: must be 1 to 256".to_string());
        }
        if !(1..=5000).contains(&self.page_size) {
            problems.push(
                "storage.retention.pageSize: must be 1 to 5000 (Azure's maxresults limit)"
                    .to_string(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_defaults_and_rules() {
        let config: RetentionConfig = serde_saphyr::from_str("dryRun: true\n").unwrap();
        assert!(config.enabled && config.dry_run);
        assert_eq!(config.grace_period, Duration::from_secs(7 * 86400));
        assert_eq!(config.interval, Duration::from_secs(86400));
        assert!(config.problems().is_empty());
        let bad: RetentionConfig = serde_saphyr::from_str(
            "pageSize: 6000\nconcurrentSweeps: 0\ndeletesInFlight: 0\ninterval: 0s\n",
        )
        .unwrap();
        let problems = bad.problems().join("; ");
        for field in [
            "storage.retention.pageSize: must be 1 to 5000",
            "storage.retention.concurrentSweeps: must be at least 1",
            "storage.retention.deletesInFlight: must be 1 to 256",
            "storage.retention.interval: must be at least 1s",
        ] {
            assert!(problems.contains(field), "{problems}");
        }
        assert!(serde_saphyr::from_str::<RetentionConfig>("dryrun: true\n").is_err());
    }
}
