//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and only
//! one reconciles.
//!
//! The protocol is the one Kubernetes' own controllers follow, on kube's `Api<Lease>` with
//! optimistic concurrency (every write carries the `resourceVersion` it read, so of two
//! replicas writing at once exactly one wins and the other gets `409 Conflict`):
//! - a replica takes the Lease when it has no holder, or when the holder has not renewed it
//!   for `leaseDurationSeconds` — measured on the replica's own clock from the moment it *saw*
//!   the record change, so clock skew between nodes does not matter;
//! - the leader renews every `renew_period`; when it cannot renew for
//!   `lease_duration - renew_period` (or finds another holder) it stops its work at once, before
//!   any other replica may consider the Lease expired;
//! - on graceful shutdown the leader clears the holder, so a standby takes over at its next
//!   try instead of waiting for the Lease to expire.
//!
//! [`decide`] is the pure rule; [`LeaderElector::run_as_leader`] is the I/O around it.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = "recording-operator";

/// Errors that end leader election (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    Settings(String),
    #[error("leader election Lease {namespace}/{name}: the Kubernetes API refused: {source}")]
    Forbidden {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// How [`LeaderElector::run_as_leader`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaderOutcome<T> {
    /// The work finished by itself while leading; the Lease was released.
    Finished(T),
    /// Shutdown was asked for; the work (if it had started) was stopped and the Lease released.
    Shutdown,
    /// Another replica holds the Lease now, or it could not be renewed in time; the work was
    /// stopped. Exit and let the process restart as a standby.
    LeadershipLost,
}

/// Command-line options of leader election (flatten into a subcommand).
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderArgs {
    /// Elect a leader on a Lease before reconciling (turn off only with a single replica).
    #[arg(long = "leader-election", env = "RECORDING_OPERATOR_LEADER_ELECTION",
          default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(
        long = "leader-election-namespace",
        env = "POD_NAMESPACE",
        default_value = "recording-operator-system"
    )]
    pub namespace: String,
    /// Name of the Lease.
    #[arg(long = "leader-election-lease", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long = "leader-election-identity", env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease stays valid after its last renewal (whole seconds).
    #[arg(long = "leader-election-lease-duration", default_value = "15s",
          value_parser = humantime_serde::re::humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How often the leader renews the Lease and a standby tries to take it.
    #[arg(long = "leader-election-renew-period", default_value = "2s",
          value_parser = humantime_serde::re::humantime::parse_duration)]
    pub renew_period: Duration,
}

impl LeaderArgs {
    /// The identity to hold the Lease under: `--leader-election-identity`/`POD_NAME`, else the
    /// host name, else a name made of the process id.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.trim().is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("recording-operator-{}", std::process::id()))
    }

    /// An elector with these settings.
    pub fn elector(&self, client: Client) -> Result<LeaderElector, LeaderError> {
        LeaderElector::new(
            client,
            &self.namespace,
            &self.lease_name,
            &self.identity(),
            self.lease_duration,
            self.renew_period,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The rule
// ---------------------------------------------------------------------------------------------

/// What a Lease says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration: Duration,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .unwrap_or(0)
                    .max(0)
                    .unsigned_abs()
                    .into(),
            ),
        }
    }
}

/// What a replica should do about a Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Free or expired: take it.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else's and still valid: look again after this long.
    Wait(Duration),
}

/// The rule: `observed_at` is when this replica first saw the record as it is now, `now` the
/// present on the same clock, `retry` the longest a standby waits between two looks.
pub fn decide(
    record: &Record,
    identity: &str,
    observed_at: Instant,
    now: Instant,
    retry: Duration,
) -> Decision {
    match &record.holder {
        None => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(_) => {
            let expires = observed_at + record.duration;
            if expires <= now {
                Decision::Acquire
            } else {
                Decision::Wait((expires - now).min(retry))
            }
        }
    }
}

/// How often a standby looks at a Lease another replica holds: a quarter of the renew period.
///
/// Expiry is timed from the moment the standby *saw* the holder's last renewal, so the time
/// between two looks is added to every failover: looking once per renew period (2 s) made a
/// failover take up to the lease duration + 2 s; a quarter of it bounds the delay to 0.5 s
/// for two reads a second, which the API server serves from its watch cache.
pub fn standby_look_period(renew_period: Duration) -> Duration {
    renew_period / 4
}

/// Remembers when the Lease record last changed, on this replica's clock.
#[derive(Default)]
struct Observer {
    last: Option<(Option<String>, Option<Timestamp>, Instant)>,
}

impl Observer {
    fn observe(&mut self, record: &Record, now: Instant) -> Instant {
        match &self.last {
            Some((holder, renew, at))
                if *holder == record.holder && *renew == record.renew_time =>
            {
                *at
            }
            _ => {
                self.last = Some((record.holder.clone(), record.renew_time, now));
                now
            }
        }
    }
}

/// The leader's renew deadline: it must stop leading `deadline` after its last successful
/// renewal was *sent*. The renewal wrote a `renewTime` of that moment, and another replica
/// may have seen the record from just after it: counting from when the answer came back (a
/// slow API server, a long retry) would let this replica lead past the moment a standby may
/// take the Lease.
#[derive(Clone, Copy, Debug)]
pub struct RenewClock {
    sent: Instant,
    deadline: Duration,
}

impl RenewClock {
    /// A clock for a Lease written (taken) by a request sent at `sent`.
    pub fn new(sent: Instant, deadline: Duration) -> Self {
        RenewClock { sent, deadline }
    }

    /// A renewal sent at `sent` succeeded (whenever its answer came back).
    pub fn renewed(&mut self, sent: Instant) {
        self.sent = self.sent.max(sent);
    }

    /// How long until the deadline, at `now`.
    pub fn left(&self, now: Instant) -> Duration {
        (self.sent + self.deadline).saturating_duration_since(now)
    }

    /// Whether the deadline has passed at `now`: stop leading.
    pub fn passed(&self, now: Instant) -> bool {
        self.left(now).is_zero()
    }
}

// ---------------------------------------------------------------------------------------------
// The elector
// ---------------------------------------------------------------------------------------------

/// Runs work only while this replica holds the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
    renew_period: Duration,
    leading: watch::Sender<bool>,
    metrics: Option<Metrics>,
}

/// Why the leader stopped leading.
enum Lost {
    OtherHolder(String),
    RenewDeadline,
}

impl LeaderElector {
    /// An elector for Lease `namespace/lease_name` under `identity`. The Lease is renewed every
    /// `renew_period` and valid for `lease_duration` (rounded up to whole seconds) after each
    /// renewal; `renew_period` must be at most half of `lease_duration`.
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        lease_duration: Duration,
        renew_period: Duration,
    ) -> Result<Self, LeaderError> {
        if identity.trim().is_empty() {
            return Err(LeaderError::Settings("the identity is empty".into()));
        }
        if lease_duration < Duration::from_secs(1) {
            return Err(LeaderError::Settings(format!(
                "the lease duration {lease_duration:?} is shorter than 1s"
            )));
        }
        if renew_period.is_zero() || renew_period * 2 > lease_duration {
            return Err(LeaderError::Settings(format!(
                "the renew period {renew_period:?} must be more than zero and at most half the lease duration {lease_duration:?}"
            )));
        }
        Ok(LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_period,
            leading: watch::channel(false).0,
            metrics: None,
        })
    }

    /// Also sets `recording_operator_leader` on `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.set_leader(false);
        self.metrics = Some(metrics);
        self
    }

    /// Follows whether this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits for the Lease, then runs `work` while leading. `work` is dropped (stopped) when
    /// leadership is lost or `shutdown` completes; in both of the graceful cases (work finished,
    /// shutdown) the Lease is released so a standby takes over at once.
    pub async fn run_as_leader<F: Future>(
        self,
        work: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<LeaderOutcome<F::Output>, LeaderError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let lease = tokio::select! {
            lease = self.acquire() => lease?,
            () = &mut shutdown => return Ok(LeaderOutcome::Shutdown),
        };
        tracing::info!(identity = %self.identity, lease = %self.lease_name, "leading: starting the controllers");
        self.set_leading(true);

        let outcome = tokio::select! {
            output = work => LeaderOutcome::Finished(output),
            () = &mut shutdown => LeaderOutcome::Shutdown,
            lost = self.keep_renewing(lease.0, lease.1) => {
                match lost {
                    Lost::OtherHolder(holder) => tracing::warn!(identity = %self.identity, %holder, "leadership lost: another replica holds the Lease; stopping the controllers"),
                    Lost::RenewDeadline => tracing::warn!(identity = %self.identity, "leadership lost: the Lease could not be renewed in time; stopping the controllers"),
                }
                LeaderOutcome::LeadershipLost
            }
        };
        self.set_leading(false);
        if !matches!(outcome, LeaderOutcome::LeadershipLost) {
            self.release().await;
        }
        Ok(outcome)
    }

    fn set_leading(&self, leading: bool) {
        self.leading.send_replace(leading);
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(leading);
        }
    }

    /// Lease valid for `lease_duration` rounded up to whole seconds.
    fn duration_seconds(&self) -> i32 {
        let d = self.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    /// Until leading: returns the Lease as written when it was taken, and when that write was
    /// sent.
    async fn acquire(&self) -> Result<(Lease, Instant), LeaderError> {
        let mut observer = Observer::default();
        loop {
            let wait = match self.try_acquire(&mut observer).await {
                Ok(Ok(lease)) => return Ok(lease),
                Ok(Err(wait)) => wait,
                Err(e) => {
                    if let kube::Error::Api(status) = &e {
                        if status.code == 401 || status.code == 403 {
                            return Err(LeaderError::Forbidden {
                                namespace: self.namespace.clone(),
                                name: self.lease_name.clone(),
                                source: e,
                            });
                        }
                    }
                    tracing::warn!(lease = %self.lease_name, error = %e, "leader election: cannot reach the Lease; retrying");
                    self.renew_period
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One look at the Lease: taken (`Ok(Ok)`), or how long to wait before the next look.
    async fn try_acquire(
        &self,
        observer: &mut Observer,
    ) -> Result<Result<(Lease, Instant), Duration>, kube::Error> {
        let Some(current) = self.api.get_opt(&self.lease_name).await? else {
            let sent = Instant::now();
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(lease) => Ok(Ok((lease, sent))),
                Err(e) if is_conflict(&e) => Ok(Err(Duration::ZERO)),
                Err(e) => Err(e),
            };
        };
        let record = Record::of(&current);
        let observed_at = observer.observe(&record, Instant::now());
        match decide(
            &record,
            &self.identity,
            observed_at,
            Instant::now(),
            standby_look_period(self.renew_period),
        ) {
            Decision::Wait(wait) => Ok(Err(wait)),
            Decision::Acquire | Decision::Renew => {
                let previous = current.spec.clone().unwrap_or_default();
                let mut lease = current;
                lease.spec = Some(self.held_spec(Some(&previous)));
                let sent = Instant::now();
                match self
                    .api
                    .replace(&self.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(lease) => Ok(Ok((lease, sent))),
                    // Another replica wrote first: look again at once.
                    Err(e) if is_conflict(&e) => Ok(Err(Duration::ZERO)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The spec of a Lease held by this replica, renewed now; taking it over from `previous`
    /// counts a transition.
    fn held_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let ours = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_some_and(|h| h == self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    /// Renews every `renew_period` until leadership is lost.
    async fn keep_renewing(&self, mut lease: Lease, taken: Instant) -> Lost {
        let mut clock = RenewClock::new(taken, self.lease_duration - self.renew_period);
        loop {
            tokio::time::sleep(self.renew_period).await;
            let sent = Instant::now();
            match tokio::time::timeout(clock.left(sent), self.renew(&lease)).await {
                Ok(Ok(renewed)) => {
                    lease = renewed;
                    clock.renewed(sent);
                }
                Ok(Err(Some(holder))) => return Lost::OtherHolder(holder),
                Ok(Err(None)) | Err(_) => {
                    if clock.passed(Instant::now()) {
                        return Lost::RenewDeadline;
                    }
                }
            }
        }
    }

    /// One renewal: the renewed Lease, or `Err(Some(holder))` when another replica holds it,
    /// `Err(None)` when the API could not be reached (the caller retries until its deadline).
    async fn renew(&self, lease: &Lease) -> Result<Lease, Option<String>> {
        let mut lease = lease.clone();
        for _ in 0..3 {
            let previous = lease.spec.clone().unwrap_or_default();
            if let Some(holder) = previous.holder_identity.as_ref() {
                if *holder != self.identity {
                    return Err(Some(holder.clone()));
                }
            } else {
                return Err(Some("(nobody)".to_owned()));
            }
            lease.spec = Some(self.held_spec(Some(&previous)));
            match self
                .api
                .replace(&self.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(renewed) => return Ok(renewed),
                Err(e) if is_conflict(&e) => match self.api.get(&self.lease_name).await {
                    // Re-read: still ours (someone touched labels, say) or taken.
                    Ok(current) => lease = current,
                    Err(_) => return Err(None),
                },
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name, error = %e, "leader election: renewing the Lease failed");
                    return Err(None);
                }
            }
        }
        Err(None)
    }

    /// Clears the holder if it is still this replica, so a standby takes over at once.
    async fn release(&self) {
        let result = async {
            let mut lease = self.api.get(&self.lease_name).await?;
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_duration_seconds = Some(1);
            self.api
                .replace(&self.lease_name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => {
                tracing::info!(identity = %self.identity, lease = %self.lease_name, "released the leader Lease")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %self.lease_name, error = %e, "could not release the leader Lease; a standby takes over when it expires")
            }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, secs: u64) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: Some(Timestamp::now()),
            duration: Duration::from_secs(secs),
        }
    }

    const RETRY: Duration = Duration::from_secs(2);

    #[test]
    fn a_free_lease_is_taken() {
        let t = Instant::now();
        assert_eq!(
            decide(&record(None, 15), "a", t, t, RETRY),
            Decision::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let t = Instant::now();
        assert_eq!(
            decide(&record(Some("a"), 15), "a", t, t, RETRY),
            Decision::Renew
        );
    }

    #[test]
    fn a_valid_lease_of_another_is_waited_for_at_most_the_retry_period() {
        let t = Instant::now();
        let r = record(Some("b"), 15);
        assert_eq!(decide(&r, "a", t, t, RETRY), Decision::Wait(RETRY));
        let late = t + Duration::from_secs(14);
        assert_eq!(
            decide(&r, "a", t, late, RETRY),
            Decision::Wait(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_lease_unchanged_for_its_duration_is_taken_over() {
        let t = Instant::now();
        let r = record(Some("b"), 15);
        assert_eq!(
            decide(&r, "a", t, t + Duration::from_secs(15), RETRY),
            Decision::Acquire
        );
    }

    #[test]
    fn the_renew_deadline_counts_from_when_the_renewal_was_sent() {
        let deadline = Duration::from_secs(13);
        let t0 = Instant::now();
        let mut clock = RenewClock::new(t0, deadline);
        // A renewal sent at 2s whose answer took 10s to come back.
        let sent = t0 + Duration::from_secs(2);
        let answered = t0 + Duration::from_secs(12);
        clock.renewed(sent);
        assert_eq!(clock.left(answered), Duration::from_secs(3));
        assert!(!clock.passed(t0 + Duration::from_secs(14)));
        assert!(
            clock.passed(t0 + Duration::from_secs(15)),
            "not 13s after the answer (25s)"
        );
        // An answer to an older request arriving late does not move the deadline back.
        clock.renewed(t0 + Duration::from_secs(1));
        assert_eq!(clock.left(answered), Duration::from_secs(3));
    }

    /// When a standby following the rule takes over from a leader that renews every 2 s and
    /// is killed at `kill`, the standby having started looking at `offset`.
    fn takeover_after(kill: Duration, offset: Duration) -> Duration {
        let (renew, lease) = (Duration::from_secs(2), 15);
        let look = standby_look_period(renew);
        let t0 = Instant::now();
        let mut observer = Observer::default();
        let mut now = offset;
        loop {
            // The record as the leader last wrote it: renewed at every multiple of 2 s
            // before the kill.
            let renewals = (now.min(kill).as_millis() / renew.as_millis()) as u64;
            let r = Record {
                renew_time: Some(Timestamp::UNIX_EPOCH + Duration::from_secs(2 * renewals)),
                ..record(Some("b"), lease)
            };
            let seen = observer.observe(&r, t0 + now);
            match decide(&r, "a", seen, t0 + now, look) {
                Decision::Acquire => return now - kill,
                Decision::Wait(wait) => now += wait,
                Decision::Renew => unreachable!("not ours"),
            }
        }
    }

    #[test]
    fn a_standby_takes_over_at_most_a_look_period_after_the_lease_expires() {
        let lease = Duration::from_secs(15);
        let mut worst = Duration::ZERO;
        for kill_ms in (20_000..24_000).step_by(50) {
            for offset_ms in (0..2_000).step_by(130) {
                let took = takeover_after(
                    Duration::from_millis(kill_ms),
                    Duration::from_millis(offset_ms),
                );
                assert!(
                    took >= lease - Duration::from_secs(2),
                    "{took:?}: too early"
                );
                worst = worst.max(took);
            }
        }
        // Looking once per renew period, this was up to the lease duration + 2 s.
        assert!(
            worst <= lease + Duration::from_millis(500),
            "worst failover {worst:?}"
        );
        assert!(worst > lease, "the look period shows: {worst:?}");
    }

    #[test]
    fn expiry_counts_from_when_the_record_last_changed_here() {
        let mut observer = Observer::default();
        let t0 = Instant::now();
        let r = record(Some("b"), 15);
        assert_eq!(observer.observe(&r, t0), t0);
        // Unchanged: still counted from the first sighting.
        assert_eq!(observer.observe(&r, t0 + Duration::from_secs(5)), t0);
        // Renewed by its holder: counting starts again.
        let renewed = Record {
            renew_time: Some(Timestamp::now() + Duration::from_secs(1)),
            ..r
        };
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(observer.observe(&renewed, t1), t1);
    }
}
