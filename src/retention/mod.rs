//! Retention enforced: which retention a tenant's sweep applies, when a tenant is swept, and
//! what its `status.retention` says. SPEC §9.
//!
//! The rules, all pure and tested here without I/O:
//! - the retention the spec asks for ([`RetentionSpec::limit_days`]): `days` (365 when
//!   absent, at most 730); with `unlimited`, the customer's custom `days` (any length), or
//!   without limit when `days` is absent;
//! - [`decide`]: a retention that grows, or stays, applies at once; one that shrinks (a spec
//!   change to fewer days, or from unlimited to a limit) is announced and applies only after
//!   the grace period, so nothing is deleted that the old value keeps until then;
//! - [`next_sweep`]: each tenant is swept at most once per interval, the first sweep at a time
//!   of day derived from the tenant's uid so the tenants spread over the day; a failed sweep is
//!   tried again after `retryFailedAfter`, and one cut short by a restart starts again at once;
//! - [`status_after`]: the status line of a sweep.
//!
//! `compliance.allowDeleteRecordings` is what the customer may do, not retention: nothing here
//! reads it. The PersistentVolumeClaim backend has no per-recording ages; there retention is the
//! recording bots' job (their configuration carries the effective retention), and volumes are
//! never swept. The shell that runs the sweeps is [`sweeper`].

pub mod sweeper;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::tenant::{PendingRetention, RetentionStatus};
use crate::storage::retention::SweepTally;

const DAY: i64 = 86_400;

/// What applies to a tenant's recordings now, and what is announced.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Days the sweep deletes after now; `None`: without limit.
    pub enforced: Option<u32>,
    /// A shortened retention waiting for its grace period.
    pub pending: Option<PendingRetention>,
    /// A new shortening to announce (the Event's note).
    pub announce: Option<String>,
}

fn shorter(wanted: Option<u32>, current: Option<u32>) -> bool {
    match (wanted, current) {
        (Some(w), Some(c)) => w < c,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn days_text(days: Option<u32>) -> String {
    match days {
        Some(1) => "1 day".to_string(),
        Some(d) => format!("{d} days"),
        None => "without limit".to_string(),
    }
}

/// The retention to apply, given what the spec wants (`None`: without limit), what the last
/// status applied, and the grace period for shortenings.
pub fn decide(
    wanted: Option<u32>,
    previous: Option<&RetentionStatus>,
    now: Timestamp,
    grace: Duration,
) -> Decision {
    let at_once = Decision {
        enforced: wanted,
        pending: None,
        announce: None,
    };
    // Never applied before: nothing to shorten from.
    let Some(previous) = previous.filter(|p| p.unlimited || p.effective_days.is_some()) else {
        return at_once;
    };
    let current = if previous.unlimited {
        None
    } else {
        previous.effective_days.and_then(|d| u32::try_from(d).ok())
    };
    if !shorter(wanted, current) || grace.is_zero() {
        return at_once;
    }
    let wanted_days = wanted.unwrap_or(u32::MAX);
    if let Some(pending) = previous
        .pending
        .as_ref()
        .filter(|p| u32::try_from(p.days).ok() == Some(wanted_days))
    {
        if now >= pending.applies_time.0 {
            return at_once;
        }
        return Decision {
            enforced: current,
            pending: Some(pending.clone()),
            announce: None,
        };
    }
    let applies = now
        .checked_add(SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    Decision {
        enforced: current,
        pending: Some(PendingRetention {
            days: i32::try_from(wanted_days).unwrap_or(i32::MAX),
            announced_time: Time(now),
            applies_time: Time(applies),
            blobs_affected: None,
        }),
        announce: Some(format!(
            "retention shortened from {} to {}: from {} recordings older than {} are deleted; \
             until then the sweep keeps applying {}",
            days_text(current),
            days_text(wanted),
            applies.strftime("%Y-%m-%dT%H:%M:%SZ"),
            days_text(wanted),
            days_text(current),
        )),
    }
}

/// Now, in whole seconds: what the API server keeps of a time in the status.
pub fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// The instant `days` before `now`: recordings created before it are past retention.
pub fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    now.checked_sub(SignedDuration::from_secs(i64::from(days) * DAY))
        .unwrap_or(Timestamp::MIN)
}

/// When the tenant is swept next. `slot` (from the tenant's uid) places the first sweep in the
/// interval: at the first instant of its slot from `first_seen` (when the sweeper first saw the
/// tenant) on. After a completed sweep the next comes one interval later; after a failed one,
/// `retry` later.
pub fn next_sweep(
    slot: u64,
    interval: Duration,
    retry: Duration,
    status: Option<&RetentionStatus>,
    first_seen: Timestamp,
) -> Timestamp {
    let now = first_seen;
    let plus = |t: Timestamp, d: Duration| {
        t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    };
    let last_sweep = status.and_then(|s| s.last_sweep_time.as_ref()).map(|t| t.0);
    let last_attempt = status
        .and_then(|s| s.last_attempt_time.as_ref())
        .map(|t| t.0);
    let after_success = last_sweep.map(|t| plus(t, interval));
    match (last_attempt, last_sweep) {
        // The last attempt failed: try again after `retry`, not before.
        (Some(attempt), sweep) if sweep.is_none_or(|s| attempt > s) => {
            let again = plus(attempt, retry);
            after_success.map_or(again, |s| s.min(again))
        }
        _ => match after_success {
            Some(due) => due,
            None => {
                // First sweep: the next instant of this tenant's slot in the interval.
                let period = interval.as_millis().max(1) as i64;
                let offset = (slot % period as u64) as i64;
                let now_ms = now.as_millisecond();
                let base = now_ms - now_ms.rem_euclid(period) + offset;
                let due = if base >= now_ms { base } else { base + period };
                Timestamp::from_millisecond(due).unwrap_or(now)
            }
        },
    }
}

/// How a sweep of all of a tenant's locations ended.
#[derive(Debug)]
pub enum SweepResult {
    /// Every location was swept (or skipped, with the reasons).
    Completed { skipped: Vec<String> },
    /// A location failed; later ones were not swept.
    Failed { error: String },
    /// Nothing to sweep: without limit and nothing pending.
    NotSwept,
}

/// The status after a sweep with `tally` that ended as `result`.
pub fn status_after(
    previous: Option<&RetentionStatus>,
    decision: &Decision,
    dry_run: bool,
    tally: &SweepTally,
    result: &SweepResult,
    now: Timestamp,
) -> RetentionStatus {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut pending = decision.pending.clone();
    if let Some(p) = pending.as_mut() {
        if !matches!(result, SweepResult::Failed { .. }) {
            p.blobs_affected = Some(count(tally.pending));
        }
    }
    let kept = |what: &str, n: u64| (n > 0).then(|| format!("{n} {what}"));
    let (last_result, last_sweep_time, message) = match result {
        SweepResult::Completed { skipped } => {
            let mut parts = vec![if dry_run {
                format!(
                    "dry run: {} recordings past retention would be deleted",
                    tally.past_retention - tally.kept_for_hold
                )
            } else {
                format!(
                    "{} recordings deleted ({} bytes)",
                    tally.deleted, tally.bytes_deleted
                )
            }];
            parts.extend(kept(
                "kept for a legal hold or immutability policy",
                tally.kept_for_hold,
            ));
            parts.extend(kept("kept with an unreadable age", tally.kept_unknown_age));
            parts.extend(kept(
                "deletions refused by the storage service",
                tally.errors,
            ));
            parts.extend(skipped.iter().cloned());
            (
                if dry_run { "DryRun" } else { "Completed" },
                Some(Time(now)),
                parts.join("; "),
            )
        }
        SweepResult::Failed { error } => (
            "Failed",
            previous.and_then(|p| p.last_sweep_time.clone()),
            format!(
                "sweep stopped after {} deletions: {error}; it is tried again later",
                tally.deleted
            ),
        ),
        SweepResult::NotSwept => (
            "NotSwept",
            Some(Time(now)),
            "recordings are kept without limit".to_string(),
        ),
    };
    RetentionStatus {
        effective_days: decision
            .enforced
            .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        unlimited: decision.enforced.is_none(),
        dry_run,
        last_sweep_time,
        last_attempt_time: Some(Time(now)),
        last_result: Some(last_result.to_string()),
        blobs_deleted: count(tally.deleted),
        bytes_deleted: count(tally.bytes_deleted),
        blobs_past_retention: count(tally.past_retention),
        kept_for_hold: count(tally.kept_for_hold),
        kept_unknown_age: count(tally.kept_unknown_age),
        errors: count(tally.errors) + i64::from(matches!(result, SweepResult::Failed { .. })),
        message: Some(message),
        pending,
    }
}

/// The status while nothing was swept yet, or when only the decision changed (a new
/// announcement): the previous counts, the new decision.
pub fn status_decided(previous: Option<&RetentionStatus>, decision: &Decision) -> RetentionStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.effective_days = decision
        .enforced
        .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    status.unlimited = decision.enforced.is_none();
    status.pending = decision.pending.clone();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn applied(days: Option<i32>) -> RetentionStatus {
        RetentionStatus {
            effective_days: days,
            unlimited: days.is_none(),
            ..Default::default()
        }
    }

    #[test]
    fn a_first_decision_or_a_longer_retention_applies_at_once() {
        let now = ts(1_800_000_000);
        assert_eq!(decide(Some(30), None, now, WEEK).enforced, Some(30));
        let longer = decide(Some(730), Some(&applied(Some(365))), now, WEEK);
        assert_eq!(longer.enforced, Some(730));
        assert!(longer.pending.is_none() && longer.announce.is_none());
        let unlimited = decide(None, Some(&applied(Some(365))), now, WEEK);
        assert_eq!(unlimited.enforced, None);
    }

    #[test]
    fn a_shorter_retention_waits_for_its_grace_period() {
        let now = ts(1_800_000_000);
        let first = decide(Some(30), Some(&applied(Some(365))), now, WEEK);
        assert_eq!(first.enforced, Some(365), "the old value applies meanwhile");
        let pending = first.pending.clone().unwrap();
        assert_eq!(pending.days, 30);
        assert_eq!(pending.applies_time.0, ts(1_800_000_000 + 7 * 86_400));
        let note = first.announce.clone().unwrap();
        assert!(
            note.contains("from 365 days to 30 days") && note.contains("2027-01-22T08:00:00Z"),
            "{note}"
        );

        let mut status = status_decided(Some(&applied(Some(365))), &first);
        // A day later: still waiting, not announced again.
        let later = decide(Some(30), Some(&status), ts(1_800_086_400), WEEK);
        assert_eq!(later.enforced, Some(365));
        assert_eq!(later.pending, Some(pending.clone()));
        assert!(later.announce.is_none());
        // After the grace period: applied.
        let due = decide(Some(30), Some(&status), pending.applies_time.0, WEEK);
        assert_eq!(due.enforced, Some(30));
        assert!(due.pending.is_none());
        // Changed again to another shorter value: a new announcement and a new grace period.
        status.pending = Some(pending);
        let again = decide(Some(60), Some(&status), ts(1_800_086_400), WEEK);
        assert_eq!(again.pending.unwrap().days, 60);
        assert!(again.announce.is_some());
        // Changed back: the pending value is dropped.
        let back = decide(Some(365), Some(&status), ts(1_800_086_400), WEEK);
        assert_eq!((back.enforced, back.pending), (Some(365), None));
    }

    #[test]
    fn from_unlimited_to_a_limit_is_a_shortening() {
        let now = ts(1_800_000_000);
        let d = decide(Some(365), Some(&applied(None)), now, WEEK);
        assert_eq!(d.enforced, None);
        assert_eq!(d.pending.unwrap().days, 365);
        assert!(d
            .announce
            .unwrap()
            .contains("from without limit to 365 days"));
    }

    #[test]
    fn first_sweeps_spread_over_the_interval_and_later_ones_follow_it() {
        let day = Duration::from_secs(86_400);
        let hour = Duration::from_secs(3600);
        let midnight = ts(1_800_057_600); // 2027-01-16T00:00:00Z
        assert_eq!(midnight.as_second() % 86_400, 0);
        // Slot 6 h into the day: the first sweep is at 06:00 today, or tomorrow if past.
        let slot = 6 * 3600 * 1000;
        assert_eq!(
            next_sweep(slot, day, hour, None, midnight),
            ts(1_800_057_600 + 6 * 3600)
        );
        assert_eq!(
            next_sweep(slot, day, hour, None, ts(1_800_057_600 + 7 * 3600)),
            ts(1_800_057_600 + 30 * 3600)
        );
        // After a completed sweep: one interval later.
        let swept = RetentionStatus {
            last_sweep_time: Some(Time(midnight)),
            last_attempt_time: Some(Time(midnight)),
            ..Default::default()
        };
        assert_eq!(
            next_sweep(slot, day, hour, Some(&swept), midnight),
            ts(1_800_057_600 + 86_400)
        );
        // After a failed attempt: retried an hour later.
        let failed = RetentionStatus {
            last_attempt_time: Some(Time(ts(1_800_057_600 + 100))),
            ..swept
        };
        assert_eq!(
            next_sweep(slot, day, hour, Some(&failed), midnight),
            ts(1_800_057_600 + 100 + 3600)
        );
    }

    #[test]
    fn the_status_of_a_failed_sweep_keeps_the_last_completed_time() {
        let now = ts(1_800_000_000);
        let decision = decide(Some(30), None, now, WEEK);
        let before = RetentionStatus {
            last_sweep_time: Some(Time(ts(1_700_000_000))),
            ..applied(Some(30))
        };
        let tally = SweepTally {
            deleted: 3,
            past_retention: 10,
            ..Default::default()
        };
        let failed = status_after(
            Some(&before),
            &decision,
            false,
            &tally,
            &SweepResult::Failed {
                error: "storage endpoint http://x/c is unreachable".into(),
            },
            now,
        );
        assert_eq!(failed.last_result.as_deref(), Some("Failed"));
        assert_eq!(failed.last_sweep_time, before.last_sweep_time);
        assert_eq!(failed.last_attempt_time, Some(Time(now)));
        assert_eq!(failed.blobs_deleted, 3);
        assert_eq!(failed.errors, 1);
        let done = status_after(
            Some(&before),
            &decision,
            true,
            &tally,
            &SweepResult::Completed { skipped: vec![] },
            now,
        );
        assert_eq!(done.last_result.as_deref(), Some("DryRun"));
        assert!(done.message.unwrap().starts_with("dry run: 10 recordings"));
    }
}
