//! Which notifications are due: a pure function of the Tenant's status, its grants and
//! services, and the notifications already recorded.
//!
//! Each kind has *occurrences*, named by what the cluster already keeps: the Tenant's uid for
//! onboarding, the time the Ready condition turned True for "you are live", the revoked or
//! partial consents with the time each stopped being granted, the time StorageReady turned
//! False, a service and the time its SecretExpiry condition turned False, a shortened
//! retention's new days and the time it was announced. An occurrence is
//! written down (`Sending`) before its e-mail goes out and is never sent again, whatever
//! restarts, replays or re-applies happen; a failed one is tried again with backoff. A tenant
//! gets at most `maxPerHour` e-mails in any hour: what is over waits, and an occurrence that
//! is no longer current by then (a flapping state) is never sent.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::conditions;
use crate::crd::tenant::PendingRetention;
use crate::crd::{
    ConsentState, NotificationKind, NotificationRecord, NotificationState, TenantStatus,
};

/// "You are live" is news only this long after the tenant turned Ready (an operator that starts
/// sending e-mail to tenants live for months says nothing to them).
pub const LIVE_NEWS_FOR: Duration = Duration::from_secs(24 * 3600);
/// The window of the per-tenant cap.
pub const CAP_WINDOW: Duration = Duration::from_secs(3600);
/// A failed e-mail is given up after this many attempts.
pub const MAX_ATTEMPTS: i32 = 8;
/// At most this many records are kept in status (the CRD's limit).
pub const MAX_RECORDS: usize = 64;

/// What the policy of the configuration says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub storage_grace: Duration,
    pub max_per_hour: u32,
    /// First wait before a failed e-mail is tried again.
    pub retry_initial: Duration,
}

/// A ConsentGrant, as notifications read it.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantFacts {
    pub key: String,
    pub optional: bool,
    pub state: Option<ConsentState>,
    /// When its `Granted` condition last changed.
    pub since: Option<Timestamp>,
}

/// A RecordingService with a known app registration, as notifications read it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceFacts {
    pub name: String,
    /// `status.clientSecretExpiresInDays`.
    pub expires_in_days: Option<i64>,
    /// When its `SecretExpiry` condition last changed: one expiry "episode" per secret.
    pub expiry_since: Option<Timestamp>,
}

/// Everything the decision reads.
pub struct Facts<'a> {
    /// The Tenant's uid.
    pub uid: &'a str,
    /// The status just computed (and written) for the Tenant.
    pub status: &'a TenantStatus,
    pub grants: &'a [GrantFacts],
    pub services: &'a [ServiceFacts],
    /// A shortened retention announced by the sweep (`status.retention.pending`), which the
    /// Tenant controller's computed status does not carry.
    pub retention: Option<&'a PendingRetention>,
    /// What was recorded so far.
    pub records: &'a [NotificationRecord],
    pub now: Timestamp,
}

/// One e-mail to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub kind: NotificationKind,
    pub occurrence: String,
    /// The consents (revoked), the service (secret) it is about.
    pub about: Vec<String>,
}

/// The decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// To send now, most important first.
    pub send: Vec<Due>,
    /// Due but over the hourly cap.
    pub held: Vec<Due>,
    /// When to look again (a retry, the grace period, the cap's window), if ever.
    pub wake: Option<Duration>,
}

fn since(c: &Condition) -> Timestamp {
    c.last_transition_time.0
}

fn wait_until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn sooner(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The occurrences the tenant's state calls for now, most important first.
pub fn wanted(f: &Facts<'_>, policy: &Policy) -> (Vec<Due>, Option<Duration>) {
    let mut want = Vec::new();
    let mut wake = None;
    let ever = |kind: NotificationKind| f.records.iter().filter(move |r| r.kind == kind);
    let ready = conditions::find(&f.status.conditions, conditions::READY);
    let is_ready = ready.is_some_and(|c| c.status == "True");

    // Onboarding: once per Tenant, when the consent links are known and the first checks are
    // done (a tenant that turns out granted already is told it is live instead).
    let consents = conditions::find(&f.status.conditions, crate::conditions::CONSENTS_GRANTED);
    let checked = consents.is_some_and(|c| c.status == "False");
    let links_known = f
        .status
        .consents
        .iter()
        .filter(|c| !c.optional && c.state != ConsentState::Granted)
        .all(|c| c.consent_url.is_some());
    if !is_ready && checked && links_known && ever(NotificationKind::TenantLive).next().is_none() {
        want.push(Due {
            kind: NotificationKind::OnboardingStarted,
            occurrence: format!("tenant@{}", f.uid),
            about: Vec::new(),
        });
    }

    // Live: the first time, and again only after an e-mail said something was wrong.
    if let Some(ready) = ready.filter(|_| is_ready) {
        let at = since(ready);
        let fresh =
            f.now.duration_since(at) <= SignedDuration::try_from(LIVE_NEWS_FOR).unwrap_or_default();
        let last_live = ever(NotificationKind::TenantLive)
            .map(|r| r.last_attempt_at.0)
            .max();
        let bad_news_since = f.records.iter().any(|r| {
            matches!(
                r.kind,
                NotificationKind::ConsentRevoked | NotificationKind::StorageFailing
            ) && last_live.is_none_or(|live| r.last_attempt_at.0 > live)
        });
        if fresh && (last_live.is_none() || bad_news_since) {
            want.push(Due {
                kind: NotificationKind::TenantLive,
                occurrence: format!("tenant@{at}"),
                about: Vec::new(),
            });
        }
    }

    // Revoked or partial mandatory consents: one e-mail per set of such consents.
    let mut lost: Vec<&GrantFacts> = f
        .grants
        .iter()
        .filter(|g| {
            !g.optional && matches!(g.state, Some(ConsentState::Revoked | ConsentState::Partial))
        })
        .collect();
    lost.sort_by(|a, b| a.key.cmp(&b.key));
    if !lost.is_empty() {
        let parts: Vec<String> = lost
            .iter()
            .map(|g| {
                let state = g.state.map(|s| s.as_str()).unwrap_or_default();
                match g.since {
                    Some(at) => format!("{}:{state}:{at}", g.key),
                    None => format!("{}:{state}", g.key),
                }
            })
            .collect();
        want.push(Due {
            kind: NotificationKind::ConsentRevoked,
            occurrence: format!("consents@{}", parts.join(",")),
            about: lost.iter().map(|g| g.key.clone()).collect(),
        });
    }

    // Secrets of the customer's own app registrations, most urgent first.
    let mut services: Vec<&ServiceFacts> = f.services.iter().collect();
    services.sort_by_key(|s| (s.expires_in_days, s.name.clone()));
    for s in services {
        let Some(days) = s.expires_in_days else {
            continue;
        };
        let kind = match days {
            d if d <= 0 => NotificationKind::SecretExpired,
            d if d <= 7 => NotificationKind::SecretExpiring7Days,
            d if d <= 30 => NotificationKind::SecretExpiring30Days,
            _ => continue,
        };
        let occurrence = match s.expiry_since {
            Some(at) => format!("{}@{at}", s.name),
            None => format!("{}@", s.name),
        };
        want.push(Due {
            kind,
            occurrence,
            about: vec![s.name.clone()],
        });
    }

    // Storage failing for longer than the grace period.
    if let Some(storage) = conditions::find(&f.status.conditions, crate::conditions::STORAGE_READY)
        .filter(|c| c.status == "False")
    {
        let at = since(storage);
        let after = at + SignedDuration::try_from(policy.storage_grace).unwrap_or_default();
        if after <= f.now {
            want.push(Due {
                kind: NotificationKind::StorageFailing,
                occurrence: format!("storage@{at}"),
                about: Vec::new(),
            });
        } else {
            wake = sooner(wake, wait_until(after, f.now));
        }
    }

    // A shortened retention: once per announcement, while it is still ahead.
    if let Some(p) = f.retention.filter(|p| p.applies_time.0 > f.now) {
        want.push(Due {
            kind: NotificationKind::RetentionShortened,
            occurrence: retention_occurrence(p),
            about: Vec::new(),
        });
    }
    (want, wake)
}

/// The occurrence of a retention announcement: its new days and when it was announced.
pub fn retention_occurrence(p: &PendingRetention) -> String {
    format!("retention@{}d:{}", p.days, p.announced_time.0)
}

/// What to send now, what waits, and when to look again.
pub fn plan(f: &Facts<'_>, policy: &Policy) -> Plan {
    let (want, mut wake) = wanted(f, policy);
    let mut due = Vec::new();
    for w in want {
        match f
            .records
            .iter()
            .find(|r| r.kind == w.kind && r.occurrence == w.occurrence)
        {
            None => due.push(w),
            Some(r) if r.state == NotificationState::Failed => {
                match r.next_attempt_at.as_ref().map(|t| t.0) {
                    Some(at) if at > f.now => wake = sooner(wake, wait_until(at, f.now)),
                    _ => due.push(w),
                }
            }
            Some(_) => {}
        }
    }
    // The cap: attempts started within the last hour.
    let window_start = f.now - SignedDuration::try_from(CAP_WINDOW).unwrap_or_default();
    let recent: Vec<Timestamp> = f
        .records
        .iter()
        .map(|r| r.last_attempt_at.0)
        .filter(|at| *at > window_start)
        .collect();
    let room = (policy.max_per_hour as usize).saturating_sub(recent.len());
    let held = if due.len() > room {
        due.split_off(room)
    } else {
        Vec::new()
    };
    if !held.is_empty() {
        if let Some(oldest) = recent.iter().min() {
            let frees = *oldest + SignedDuration::try_from(CAP_WINDOW).unwrap_or_default();
            wake = sooner(wake, wait_until(frees, f.now).max(Duration::from_secs(1)));
        }
    }
    Plan {
        send: due,
        held,
        wake,
    }
}

/// The records once `due` is being sent to `recipients` addresses: a `Sending` line per
/// occurrence (a failed one's attempts go on counting).
pub fn begin(
    records: &[NotificationRecord],
    due: &[Due],
    recipients: usize,
    now: Timestamp,
) -> Vec<NotificationRecord> {
    let mut out = records.to_vec();
    for d in due {
        let attempts = match out
            .iter()
            .position(|r| r.kind == d.kind && r.occurrence == d.occurrence)
        {
            Some(i) => out.remove(i).attempts,
            None => 0,
        };
        out.push(NotificationRecord {
            kind: d.kind,
            occurrence: d.occurrence.clone(),
            state: NotificationState::Sending,
            recipients: i32::try_from(recipients).unwrap_or(i32::MAX),
            attempts: attempts + 1,
            last_attempt_at: Time(now),
            sent_at: None,
            next_attempt_at: None,
            message: None,
        });
    }
    trim(out, now)
}

/// Records the outcome of one send: `Sent`, or `Failed` with the next attempt (`GaveUp` after
/// [`MAX_ATTEMPTS`]).
pub fn finish(
    policy: &Policy,
    records: &mut [NotificationRecord],
    kind: NotificationKind,
    occurrence: &str,
    outcome: Result<(), String>,
    now: Timestamp,
) {
    let Some(r) = records
        .iter_mut()
        .find(|r| r.kind == kind && r.occurrence == occurrence)
    else {
        return;
    };
    match outcome {
        Ok(()) => {
            r.state = NotificationState::Sent;
            r.sent_at = Some(Time(now));
            r.next_attempt_at = None;
            r.message = None;
        }
        Err(message) => {
            r.message = Some(message);
            if r.attempts >= MAX_ATTEMPTS {
                r.state = NotificationState::GaveUp;
                r.next_attempt_at = None;
            } else {
                r.state = NotificationState::Failed;
                let wait = retry_after(policy.retry_initial, r.attempts);
                r.next_attempt_at = Some(Time(
                    now + SignedDuration::try_from(wait).unwrap_or_default(),
                ));
            }
        }
    }
}

/// Wait before attempt `attempts + 1`: `initial`, doubling, at most an hour.
pub fn retry_after(initial: Duration, attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    initial
        .saturating_mul(1 << doublings)
        .min(Duration::from_secs(3600))
}

/// Keeps what the decision needs: the last record of each kind and subject (the part of the
/// occurrence before `@`: the tenant, a service, the storage), and every record of the cap's
/// window; at most [`MAX_RECORDS`], newest kept.
pub fn trim(records: Vec<NotificationRecord>, now: Timestamp) -> Vec<NotificationRecord> {
    let window_start = now - SignedDuration::try_from(CAP_WINDOW).unwrap_or_default();
    let subject = |r: &NotificationRecord| {
        r.occurrence
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut last: BTreeMap<(NotificationKind, String), Timestamp> = BTreeMap::new();
    for r in &records {
        let e = last
            .entry((r.kind, subject(r)))
            .or_insert(r.last_attempt_at.0);
        *e = (*e).max(r.last_attempt_at.0);
    }
    let mut kept: Vec<NotificationRecord> = records
        .into_iter()
        .filter(|r| {
            r.last_attempt_at.0 > window_start
                || last.get(&(r.kind, subject(r))) == Some(&r.last_attempt_at.0)
        })
        .collect();
    if kept.len() > MAX_RECORDS {
        kept.sort_by_key(|r| r.last_attempt_at.0);
        kept.drain(..kept.len() - MAX_RECORDS);
    }
    kept
}

/// Two views of the records (the cache's and the last this process wrote) as one: per
/// occurrence the line with the later attempt, or the more advanced state of the same one.
pub fn merge(a: &[NotificationRecord], b: &[NotificationRecord]) -> Vec<NotificationRecord> {
    let rank = |r: &NotificationRecord| {
        (
            r.last_attempt_at.0,
            r.attempts,
            r.state != NotificationState::Sending,
        )
    };
    let mut out: Vec<NotificationRecord> = a.to_vec();
    for r in b {
        match out
            .iter_mut()
            .find(|o| o.kind == r.kind && o.occurrence == r.occurrence)
        {
            Some(o) if rank(r) > rank(o) => *o = r.clone(),
            Some(_) => {}
            None => out.push(r.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{Desired, Status};
    use crate::crd::tenant::ConsentSummary;

    const POLICY: Policy = Policy {
        storage_grace: Duration::from_secs(3600),
        max_per_hour: 3,
        retry_initial: Duration::from_secs(60),
    };

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn status(
        ready: bool,
        consents_checked: bool,
        storage_false_since: Option<i64>,
        t: i64,
    ) -> TenantStatus {
        let mut desired = vec![
            Desired::new(
                crate::conditions::CONSENTS_GRANTED,
                if ready {
                    Status::True
                } else if consents_checked {
                    Status::False
                } else {
                    Status::Unknown
                },
                "x",
                "",
            ),
            Desired::new(conditions::READY, Status::from_bool(ready), "x", ""),
        ];
        if storage_false_since.is_some() {
            desired.push(Desired::new(
                crate::conditions::STORAGE_READY,
                Status::False,
                "x",
                "",
            ));
        }
        let when = storage_false_since.unwrap_or(t);
        TenantStatus {
            conditions: conditions::merge(&[], desired, Some(1), at(when)),
            consents: vec![ConsentSummary {
                name: "recording".into(),
                state: if ready {
                    ConsentState::Granted
                } else {
                    ConsentState::Pending
                },
                optional: false,
                consent_url: Some("https://login.example/x".into()),
            }],
            ..Default::default()
        }
    }

    fn facts<'a>(
        s: &'a TenantStatus,
        grants: &'a [GrantFacts],
        services: &'a [ServiceFacts],
        records: &'a [NotificationRecord],
        now: i64,
    ) -> Facts<'a> {
        Facts {
            uid: "uid-1",
            status: s,
            grants,
            services,
            retention: None,
            records,
            now: at(now),
        }
    }

    fn kinds(p: &Plan) -> Vec<NotificationKind> {
        p.send.iter().map(|d| d.kind).collect()
    }

    /// Sends everything planned, successfully, and returns the new records.
    fn sent(records: &[NotificationRecord], p: &Plan, now: i64) -> Vec<NotificationRecord> {
        let mut r = begin(records, &p.send, 2, at(now));
        for d in &p.send {
            finish(&POLICY, &mut r, d.kind, &d.occurrence, Ok(()), at(now));
        }
        r
    }

    #[test]
    fn onboarding_waits_for_the_first_checks_then_is_sent_once_and_live_once() {
        let checking = status(false, false, None, 0);
        assert!(plan(&facts(&checking, &[], &[], &[], 10), &POLICY)
            .send
            .is_empty());

        let pending = status(false, true, None, 0);
        let p = plan(&facts(&pending, &[], &[], &[], 20), &POLICY);
        assert_eq!(kinds(&p), [NotificationKind::OnboardingStarted]);
        assert_eq!(p.send[0].occurrence, "tenant@uid-1");
        // Recorded as Sending before the send: a restart in between sends nothing again.
        let sending = begin(&[], &p.send, 2, at(20));
        assert_eq!(sending[0].state, NotificationState::Sending);
        assert!(plan(&facts(&pending, &[], &[], &sending, 30), &POLICY)
            .send
            .is_empty());
        let records = sent(&[], &p, 20);
        assert!(plan(&facts(&pending, &[], &[], &records, 40), &POLICY)
            .send
            .is_empty());

        let ready = status(true, true, None, 100);
        let p = plan(&facts(&ready, &[], &[], &records, 110), &POLICY);
        assert_eq!(kinds(&p), [NotificationKind::TenantLive]);
        let records = sent(&records, &p, 110);
        assert!(plan(&facts(&ready, &[], &[], &records, 120), &POLICY)
            .send
            .is_empty());
        // A later Ready flap without bad news in between is not news.
        let again = status(true, true, None, 500);
        assert!(plan(&facts(&again, &[], &[], &records, 510), &POLICY)
            .send
            .is_empty());
    }

    #[test]
    fn a_tenant_live_for_long_before_the_first_e_mail_is_not_told() {
        let ready = status(true, true, None, 0);
        assert!(plan(&facts(&ready, &[], &[], &[], 2 * 24 * 3600), &POLICY)
            .send
            .is_empty());
        assert!(
            plan(&facts(&ready, &[], &[], &[], 60), &POLICY).send.len() == 1,
            "granted at the first check: live, and no onboarding e-mail"
        );
    }

    #[test]
    fn a_revocation_is_one_occurrence_until_another_consent_goes_and_live_follows_it() {
        let ready = status(true, true, None, 0);
        let records = sent(&[], &plan(&facts(&ready, &[], &[], &[], 10), &POLICY), 10);
        let revoked = [GrantFacts {
            key: "recording".into(),
            optional: false,
            state: Some(ConsentState::Revoked),
            since: Some(at(1000)),
        }];
        let broken = status(false, true, None, 1000);
        let p = plan(&facts(&broken, &revoked, &[], &records, 1010), &POLICY);
        assert_eq!(kinds(&p), [NotificationKind::ConsentRevoked]);
        assert_eq!(p.send[0].about, ["recording"]);
        let records = sent(&records, &p, 1010);
        assert!(
            plan(&facts(&broken, &revoked, &[], &records, 1020), &POLICY)
                .send
                .is_empty()
        );

        let more = [
            revoked[0].clone(),
            GrantFacts {
                key: "directory".into(),
                optional: false,
                state: Some(ConsentState::Partial),
                since: Some(at(1100)),
            },
            GrantFacts {
                key: "teamsApp".into(),
                optional: true,
                state: Some(ConsentState::Revoked),
                since: Some(at(1100)),
            },
        ];
        let p = plan(&facts(&broken, &more, &[], &records, 1110), &POLICY);
        assert_eq!(
            p.send[0].about,
            ["directory", "recording"],
            "optional consents are not news"
        );
        let records = sent(&records, &p, 1110);

        // Granted again: live again, since the customer was told something was wrong.
        let back = status(true, true, None, 2000);
        let held = plan(&facts(&back, &[], &[], &records, 2010), &POLICY);
        assert_eq!(kinds(&held), [], "the cap: three within the hour");
        assert_eq!(held.wake, Some(Duration::from_secs(10 + 3600 - 2010)));
        assert_eq!(
            kinds(&plan(&facts(&back, &[], &[], &records, 4800), &POLICY)),
            [NotificationKind::TenantLive]
        );
    }

    #[test]
    fn storage_is_news_after_the_grace_period_and_the_wait_says_when() {
        let failing = status(true, true, Some(0), 0);
        let records = vec![];
        let p = plan(&facts(&failing, &[], &[], &records, 600), &POLICY);
        assert!(!kinds(&p).contains(&NotificationKind::StorageFailing));
        assert_eq!(p.wake, Some(Duration::from_secs(3000)));
        let p = plan(&facts(&failing, &[], &[], &records, 3600), &POLICY);
        assert!(kinds(&p).contains(&NotificationKind::StorageFailing));
    }

    #[test]
    fn a_secret_is_told_at_30_and_7_days_and_when_expired_once_each() {
        let ready = status(false, false, None, 0);
        let svc = |days| {
            [ServiceFacts {
                name: "hue01".into(),
                expires_in_days: Some(days),
                expiry_since: Some(at(0)),
            }]
        };
        let mut records = Vec::new();
        for (days, kind) in [
            (45, None),
            (29, Some(NotificationKind::SecretExpiring30Days)),
            (20, None),
            (7, Some(NotificationKind::SecretExpiring7Days)),
            (3, None),
            (0, Some(NotificationKind::SecretExpired)),
            (-5, None),
        ] {
            let services = svc(days);
            let p = plan(
                &facts(&ready, &[], &services, &records, 100_000 - days * 86_400),
                &POLICY,
            );
            assert_eq!(
                kinds(&p),
                kind.into_iter().collect::<Vec<_>>(),
                "{days} days"
            );
            records = sent(&records, &p, 100_000 - days * 86_400);
        }
    }

    #[test]
    fn a_failed_send_is_retried_with_backoff_and_given_up_in_the_end() {
        let pending = status(false, true, None, 0);
        let p = plan(&facts(&pending, &[], &[], &[], 10), &POLICY);
        let mut records = begin(&[], &p.send, 1, at(10));
        finish(
            &POLICY,
            &mut records,
            p.send[0].kind,
            &p.send[0].occurrence,
            Err("connection refused".into()),
            at(10),
        );
        assert_eq!(records[0].state, NotificationState::Failed);
        let p2 = plan(&facts(&pending, &[], &[], &records, 30), &POLICY);
        assert!(p2.send.is_empty());
        assert_eq!(p2.wake, Some(Duration::from_secs(40)));
        assert_eq!(
            kinds(&plan(&facts(&pending, &[], &[], &records, 70), &POLICY)),
            [NotificationKind::OnboardingStarted]
        );
        assert_eq!(
            retry_after(POLICY.retry_initial, 3),
            Duration::from_secs(240)
        );
        assert_eq!(
            retry_after(POLICY.retry_initial, 20),
            Duration::from_secs(3600)
        );
        records[0].attempts = MAX_ATTEMPTS;
        finish(
            &POLICY,
            &mut records,
            p.send[0].kind,
            &p.send[0].occurrence,
            Err("still".into()),
            at(80),
        );
        assert_eq!(records[0].state, NotificationState::GaveUp);
        assert!(plan(&facts(&pending, &[], &[], &records, 100_000), &POLICY)
            .send
            .is_empty());
    }

    #[test]
    fn the_hourly_cap_holds_under_a_flapping_state() {
        let mut records = Vec::new();
        let mut sent_total = 0;
        // Storage flaps every 10 minutes, each time failing past the grace.
        let policy = Policy {
            storage_grace: Duration::from_secs(60),
            max_per_hour: 2,
            retry_initial: Duration::from_secs(60),
        };
        for i in 0..12 {
            let t = i * 600;
            let failing = status(true, true, Some(t - 120), t);
            let p = plan(&facts(&failing, &[], &[], &records, t), &policy);
            sent_total += p.send.len();
            records = sent(&records, &p, t);
            let window = records
                .iter()
                .filter(|r| r.last_attempt_at.0 > at(t - 3600))
                .count();
            assert!(window <= 2, "{window} e-mails within an hour at {t}");
        }
        assert!(sent_total <= 4, "{sent_total}");
        assert!(records.len() <= MAX_RECORDS);
    }

    #[test]
    fn merging_two_views_keeps_the_later_line_of_each_occurrence() {
        let pending = status(false, true, None, 0);
        let p = plan(&facts(&pending, &[], &[], &[], 10), &POLICY);
        let sending = begin(&[], &p.send, 1, at(10));
        let mut done = sending.clone();
        finish(
            &POLICY,
            &mut done,
            p.send[0].kind,
            &p.send[0].occurrence,
            Ok(()),
            at(11),
        );
        assert_eq!(merge(&sending, &done), done);
        assert_eq!(merge(&done, &sending), done);
        assert_eq!(merge(&[], &sending), sending);
    }

    #[test]
    fn a_shortened_retention_is_told_once_per_announcement_and_not_after_it_applies() {
        let s = status(false, false, None, 0);
        let pending = |days, announced| PendingRetention {
            days,
            announced_time: Time(at(announced)),
            applies_time: Time(at(announced + 7 * 86_400)),
            blobs_affected: Some(12),
        };
        let first = pending(365, 100);
        let mut f = facts(&s, &[], &[], &[], 200);
        f.retention = Some(&first);
        let p = plan(&f, &POLICY);
        assert_eq!(kinds(&p), [NotificationKind::RetentionShortened]);
        assert_eq!(p.send[0].occurrence, "retention@365d:2027-01-15T08:01:40Z");
        let records = sent(&[], &p, 200);

        // The next sweep recounts the blobs: the same announcement, no second e-mail.
        let recounted = PendingRetention {
            blobs_affected: Some(15),
            ..first.clone()
        };
        let mut f = facts(&s, &[], &[], &records, 90_000);
        f.retention = Some(&recounted);
        assert!(plan(&f, &POLICY).send.is_empty());

        // Shortened again to another value: a new announcement, a new e-mail.
        let again = pending(180, 100_000);
        let mut f = facts(&s, &[], &[], &records, 100_100);
        f.retention = Some(&again);
        assert_eq!(
            kinds(&plan(&f, &POLICY)),
            [NotificationKind::RetentionShortened]
        );

        // Past its date the news is stale: nothing is sent late.
        let mut f = facts(&s, &[], &[], &[], 100 + 8 * 86_400);
        f.retention = Some(&first);
        assert!(plan(&f, &POLICY).send.is_empty());
    }
}
