//! Granted consents re-checked without rewriting their status.
//!
//! A granted consent is checked every `polling.grantedInterval` (6 h) to notice a revocation.
//! A check that finds it still granted changes nothing but `lastCheckedAt` and `nextCheckAt`;
//! writing those on every check made four or five status writes per tenant per check (about
//! 18 a day), each sent to every watcher of ConsentGrants, for nothing that changed. So such a
//! check is not written: the status keeps the timestamps of its last write, and is written
//! again on any change, or when its `lastCheckedAt` is older than
//! `polling.grantedStatusRefresh` (7 days; `0s` writes every check, as before).
//!
//! The checks that were not written follow a fixed grid: `nextCheckAt + k ·
//! grantedInterval`, with no new jitter (the written `nextCheckAt` already carries the
//! tenant's). The process remembers only when it last checked each grant without writing
//! ([`UnwrittenChecks`]); everything else is read from the status. A restarted process
//! (or a new leader) takes the grid's slots before its own start as checked by the process
//! before it, so a restart sends Graph nothing that was not due anyway; a slot that fell while
//! no operator ran is not made up (the next one is at most one interval later).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::status::status_changed;
use crate::config::PollingConfig;
use crate::crd::{ConsentGrant, ConsentGrantStatus, ConsentState};

/// When this process last checked each granted consent without writing its status, by a hash
/// of the grant's namespace and name: 16 bytes a grant. An entry goes with the grant's next
/// status write (its `lastCheckedAt` is then the later one).
pub struct UnwrittenChecks {
    checked: Mutex<HashMap<u64, i64>>,
    /// The slots of the grid before this instant are taken as checked by the process before.
    started: Timestamp,
}

impl Default for UnwrittenChecks {
    fn default() -> Self {
        Self::started_at(Timestamp::now())
    }
}

fn key(grant: &ConsentGrant) -> u64 {
    crate::hash64(&(
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        grant.metadata.name.as_deref().unwrap_or_default(),
    ))
}

impl UnwrittenChecks {
    pub fn started_at(started: Timestamp) -> Self {
        Self {
            checked: Mutex::default(),
            started,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, i64>> {
        self.checked.lock().expect("unwritten checks lock")
    }

    /// Records a check of `grant` at `at` whose status was not written.
    pub fn record(&self, grant: &ConsentGrant, at: Timestamp) {
        self.lock().insert(key(grant), at.as_second());
    }

    /// Forgets `grant`'s unwritten check: its status was just written.
    pub fn forget(&self, grant: &ConsentGrant) {
        self.lock().remove(&key(grant));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `grant` with the `lastCheckedAt` and `nextCheckAt` its checks have reached, written or
    /// not (see [`granted_schedule`]); the same object when they are the written ones.
    pub fn effective(
        &self,
        grant: &Arc<ConsentGrant>,
        polling: &PollingConfig,
    ) -> Arc<ConsentGrant> {
        let Some(status) = &grant.status else {
            return grant.clone();
        };
        let unwritten = self
            .lock()
            .get(&key(grant))
            .and_then(|s| Timestamp::from_second(*s).ok());
        let through = [unwritten, Some(self.started)].into_iter().flatten().max();
        match granted_schedule(status, polling.granted_interval, through) {
            Some((last, next))
                if status.next_check_at.as_ref().map(|t| t.0) != Some(next)
                    || status.last_checked_at.as_ref().map(|t| t.0) != Some(last) =>
            {
                let mut shown = grant.as_ref().clone();
                let status = shown.status.as_mut().expect("a status");
                status.last_checked_at = Some(Time(last));
                status.next_check_at = Some(Time(next));
                Arc::new(shown)
            }
            _ => grant.clone(),
        }
    }
}

/// For a granted consent's written status, the last check and the next one due, given that
/// its checks are known done through `checked_through` (this process's last unwritten check,
/// or its start): the grid `nextCheckAt + k · interval` from the written `nextCheckAt` on.
/// `None` when the status is not a granted one with both timestamps (its own are the
/// schedule).
pub fn granted_schedule(
    status: &ConsentGrantStatus,
    interval: Duration,
    checked_through: Option<Timestamp>,
) -> Option<(Timestamp, Timestamp)> {
    if status.state != Some(ConsentState::Granted) {
        return None;
    }
    let last = status.last_checked_at.as_ref()?.0;
    let next = status.next_check_at.as_ref()?.0;
    let Some(through) = checked_through.filter(|t| *t >= next) else {
        return Some((last, next));
    };
    let step = SignedDuration::try_from(interval)
        .ok()
        .filter(|s| s.is_positive())?;
    let passed = (through.duration_since(next).as_secs_f64() / step.as_secs_f64()).floor();
    let slot = next + step * (passed as i32);
    Some((slot, slot + step))
}

/// Whether a check's new status needs no write: the consent was granted and still is, nothing
/// but `lastCheckedAt` and `nextCheckAt` changed, and the written `lastCheckedAt` is younger
/// than `refresh`.
pub fn unchanged_check(
    written: Option<&ConsentGrantStatus>,
    new: &ConsentGrantStatus,
    refresh: Duration,
    now: Timestamp,
) -> bool {
    let Some(written) = written else {
        return false;
    };
    let granted = |s: &ConsentGrantStatus| s.state == Some(ConsentState::Granted);
    let fresh = written.last_checked_at.as_ref().is_some_and(|t| {
        SignedDuration::try_from(refresh).is_ok_and(|refresh| now.duration_since(t.0) < refresh)
    });
    let mut same_times = new.clone();
    same_times.last_checked_at = written.last_checked_at.clone();
    same_times.next_check_at = written.next_check_at.clone();
    granted(written) && granted(new) && fresh && !status_changed(Some(written), &same_times)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn granted(last: i64, next: i64) -> ConsentGrantStatus {
        ConsentGrantStatus {
            state: Some(ConsentState::Granted),
            last_checked_at: Some(Time(at(last))),
            next_check_at: Some(Time(at(next))),
            message: Some("granted".into()),
            ..Default::default()
        }
    }

    const SIX_HOURS: Duration = Duration::from_secs(6 * 3600);

    #[test]
    fn unwritten_checks_follow_the_grid_from_the_written_next_check() {
        let status = granted(0, 6 * HOUR + 100);
        // Before the written next check: the written times.
        assert_eq!(
            granted_schedule(&status, SIX_HOURS, Some(at(HOUR))),
            Some((at(0), at(6 * HOUR + 100)))
        );
        // Checked at the first slot (a little late): the next is one interval after the slot.
        assert_eq!(
            granted_schedule(&status, SIX_HOURS, Some(at(6 * HOUR + 103))),
            Some((at(6 * HOUR + 100), at(12 * HOUR + 100)))
        );
        // Three slots on.
        assert_eq!(
            granted_schedule(&status, SIX_HOURS, Some(at(24 * HOUR + 100))),
            Some((at(24 * HOUR + 100), at(30 * HOUR + 100)))
        );
    }

    #[test]
    fn a_consent_not_granted_keeps_its_written_schedule() {
        let mut status = granted(0, 30);
        status.state = Some(ConsentState::Pending);
        assert_eq!(granted_schedule(&status, SIX_HOURS, Some(at(HOUR))), None);
    }

    #[test]
    fn a_restarted_process_takes_the_slots_before_its_start_as_checked() {
        let grant = Arc::new(ConsentGrant {
            metadata: kube::api::ObjectMeta {
                name: Some("recording".into()),
                namespace: Some("tenant-contoso".into()),
                ..Default::default()
            },
            spec: serde_json::from_value(serde_json::json!({
                "tenantRef": "contoso", "consent": "recording",
                "appId": "8b0f7a52-0000-4000-8000-000000000003"
            }))
            .unwrap(),
            status: Some(granted(0, 6 * HOUR)),
        });
        let polling = PollingConfig::default();
        // Started two days after the last write: the slot before the start is taken as done,
        // the next one is due.
        let checks = UnwrittenChecks::started_at(at(48 * HOUR + 60));
        let shown = checks.effective(&grant, &polling);
        let status = shown.status.as_ref().unwrap();
        assert_eq!(status.last_checked_at, Some(Time(at(48 * HOUR))));
        assert_eq!(status.next_check_at, Some(Time(at(54 * HOUR))));
        // Once this process checked it (unwritten), the slot after that check is next.
        checks.record(&grant, at(54 * HOUR + 2));
        let status = checks.effective(&grant, &polling).status.clone().unwrap();
        assert_eq!(status.next_check_at, Some(Time(at(60 * HOUR))));
        // Written again: the written times are the schedule.
        checks.forget(&grant);
        assert!(checks.is_empty());
        let mut written = grant.as_ref().clone();
        written.status = Some(granted(60 * HOUR, 66 * HOUR));
        let written = Arc::new(written);
        assert!(Arc::ptr_eq(&checks.effective(&written, &polling), &written));
    }

    #[test]
    fn a_check_that_changes_nothing_is_written_only_when_the_written_one_is_old() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let written = granted(0, 6 * HOUR);
        let again = granted(6 * HOUR, 12 * HOUR);
        assert!(unchanged_check(Some(&written), &again, week, at(6 * HOUR)));
        // Older than the refresh: written.
        assert!(!unchanged_check(
            Some(&written),
            &again,
            week,
            at(7 * 24 * HOUR)
        ));
        // `0s`: every check is written.
        assert!(!unchanged_check(
            Some(&written),
            &again,
            Duration::ZERO,
            at(6 * HOUR)
        ));
        // Anything else changed: written.
        let mut revoked = again.clone();
        revoked.state = Some(ConsentState::Revoked);
        assert!(!unchanged_check(
            Some(&written),
            &revoked,
            week,
            at(6 * HOUR)
        ));
        let mut other_message = again.clone();
        other_message.message = Some("granted, 3 permissions".into());
        assert!(!unchanged_check(
            Some(&written),
            &other_message,
            week,
            at(6 * HOUR)
        ));
        // Pending polls are written as before.
        let (mut p1, mut p2) = (written.clone(), again.clone());
        p1.state = Some(ConsentState::Pending);
        p2.state = Some(ConsentState::Pending);
        assert!(!unchanged_check(Some(&p1), &p2, week, at(6 * HOUR)));
        assert!(!unchanged_check(None, &again, week, at(6 * HOUR)));
    }
}
