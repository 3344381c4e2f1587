//! Pacing the bots' rollouts across tenants: at most `bots.rolloutBudget` bot workloads are
//! being rolled by the operator at once.
//!
//! A new operator version (or a new `bots.defaultImage`) changes the pod template of every
//! tenant's bots at once. Applied all together, every bot of every tenant would restart in
//! the same minute: calls dropped everywhere if the new image is bad, and the whole cluster's
//! image pulls and scheduling in one burst. So a change to a bot workload that exists is
//! applied only while fewer than the budget of the rollouts the operator started are
//! unfinished; the others wait and are tried again shortly. A workload that does not exist
//! yet (a new tenant) is created at once: nothing of it is running to be disturbed.
//!
//! Whether a live workload already has the desired body is read from an annotation the
//! operator stamps on it ([`DIGEST_ANNOTATION`]: a digest of the desired workload), so the
//! decision needs nothing but the workload as the watch delivered it, after a restart too. A
//! rollout counts from its apply until its workload is seen settled with that digest (every
//! replica updated and available at the latest generation). A restarted operator counts the
//! unfinished rollouts it finds as it reconciles their services.
//!
//! Nothing here depends on the workload's kind: the caller says what it observed ([`Live`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;
use serde::Serialize;

/// Annotation on each bot workload: the digest of the body the operator applied.
pub const DIGEST_ANNOTATION: &str = "recording.m365.io/applied-digest";

/// How soon a bot change that found the budget full is tried again at the latest (it is woken
/// as soon as a rollout finishes).
pub const RETRY_FOR_BUDGET: Duration = Duration::from_secs(60);

/// What the caller observed of a live bot workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// Its [`DIGEST_ANNOTATION`], if any.
    pub digest: Option<String>,
    /// Every replica updated and available at the latest generation.
    pub settled: bool,
}

impl Live {
    /// The digest stamped on `workload`, with whether it has settled.
    pub fn of<K: Resource>(workload: &K, settled: bool) -> Self {
        Live {
            digest: workload
                .meta()
                .annotations
                .as_ref()
                .and_then(|a| a.get(DIGEST_ANNOTATION))
                .cloned(),
            settled,
        }
    }
}

/// Stamps `workload` with the digest of its body (without the stamp) and returns it.
pub fn stamp<K: Resource + Serialize>(workload: &mut K) -> String {
    let meta = workload.meta_mut();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(DIGEST_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    let digest = super::super::apply::digest([workload as &dyn super::super::apply::Body]);
    workload
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DIGEST_ANNOTATION.to_owned(), digest.clone());
    digest
}

/// The rollouts the operator started and has not seen finish, by workload (`namespace/name`),
/// with the digest each was rolled to; and the owners (`namespace/name` of the services)
/// waiting for the budget, woken in turn as rollouts finish.
pub struct Rollouts {
    budget: usize,
    state: Mutex<State>,
    wake: futures::channel::mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct State {
    rolling: HashMap<String, String>,
    waiting: VecDeque<String>,
}

impl Rollouts {
    /// The rollouts, and the stream of owners to reconcile again as the budget frees up.
    pub fn new(budget: u32) -> (Self, futures::channel::mpsc::UnboundedReceiver<String>) {
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let rollouts = Rollouts {
            budget: budget.max(1) as usize,
            state: Mutex::default(),
            wake,
        };
        (rollouts, woken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("rollouts lock")
    }

    /// Whether the workload `key` of `owner` may be applied with the body of `digest` now,
    /// given what was observed of it (`None`: it does not exist). Counts the rollout when it
    /// starts one; when it may not, `owner` is woken once the budget has room.
    pub fn admit(&self, key: &str, owner: &str, digest: &str, live: Option<&Live>) -> bool {
        let mut state = self.lock();
        let Some(live) = live else {
            // Created, not rolled.
            self.finished(&mut state, key);
            return true;
        };
        if live.digest.as_deref() == Some(digest) {
            if live.settled {
                self.finished(&mut state, key);
            } else {
                // Rolling to the desired body (started by this process, or by one before it):
                // it counts until it settles, whatever the budget.
                state.rolling.insert(key.to_owned(), digest.to_owned());
            }
            return true;
        }
        if state.rolling.contains_key(key) || state.rolling.len() < self.budget {
            state.rolling.insert(key.to_owned(), digest.to_owned());
            return true;
        }
        if !state.waiting.iter().any(|o| o == owner) {
            state.waiting.push_back(owner.to_owned());
        }
        false
    }

    /// Forgets a workload that is gone.
    pub fn forget(&self, key: &str) {
        let mut state = self.lock();
        self.finished(&mut state, key);
    }

    /// The rollouts counted now.
    pub fn in_flight(&self) -> usize {
        self.lock().rolling.len()
    }

    /// Ends the count of `key`'s rollout, and wakes as many waiting owners as there is room.
    fn finished(&self, state: &mut State, key: &str) {
        if state.rolling.remove(key).is_none() {
            return;
        }
        let room = self.budget.saturating_sub(state.rolling.len());
        for _ in 0..room {
            let Some(owner) = state.waiting.pop_front() else {
                break;
            };
            // Fails only when the controller is shutting down.
            let _ = self.wake.unbounded_send(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn live(digest: &str, settled: bool) -> Live {
        Live {
            digest: Some(digest.into()),
            settled,
        }
    }

    #[tokio::test]
    async fn no_more_than_the_budget_roll_at_once_and_the_waiting_are_woken_in_turn() {
        let (rollouts, mut woken) = Rollouts::new(2);
        let old = live("old", true);
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&old)));
        assert!(rollouts.admit("t2/bot", "t2/svc", "new", Some(&old)));
        assert!(
            !rollouts.admit("t3/bot", "t3/svc", "new", Some(&old)),
            "a third rollout waits"
        );
        assert!(!rollouts.admit("t4/bot", "t4/svc", "new", Some(&old)));
        // A rollout counted is let through again (the next reconcile of its service).
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&old)));
        // Still rolling to the new body: counted.
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&live("new", false))));
        assert!(!rollouts.admit("t3/bot", "t3/svc", "new", Some(&old)));
        assert_eq!(rollouts.in_flight(), 2);
        // Settled: its slot is free, and the first service waiting is woken (once).
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&live("new", true))));
        assert_eq!(rollouts.in_flight(), 1);
        assert_eq!(woken.next().await.as_deref(), Some("t3/svc"));
        assert!(rollouts.admit("t3/bot", "t3/svc", "new", Some(&old)));
        assert_eq!(rollouts.in_flight(), 2);
        rollouts.forget("t2/bot");
        assert_eq!(woken.next().await.as_deref(), Some("t4/svc"));
        assert!(woken.try_recv().is_err(), "nobody else waits");
    }

    #[test]
    fn creations_and_unchanged_workloads_take_no_slot() {
        let (rollouts, _woken) = Rollouts::new(1);
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&live("old", true))));
        assert!(
            rollouts.admit("t2/bot", "t2/svc", "new", None),
            "a new bot is created at once"
        );
        assert!(rollouts.admit("t3/bot", "t3/svc", "same", Some(&live("same", true))));
        assert_eq!(rollouts.in_flight(), 1);
        // Unstamped (made by an earlier version): a change like any other.
        let unstamped = Live {
            digest: None,
            settled: true,
        };
        assert!(!rollouts.admit("t4/bot", "t4/svc", "new", Some(&unstamped)));
    }

    #[test]
    fn a_rollout_found_unfinished_counts_even_past_the_budget() {
        let (rollouts, _woken) = Rollouts::new(1);
        assert!(rollouts.admit("t1/bot", "t1/svc", "new", Some(&live("new", false))));
        assert!(rollouts.admit("t2/bot", "t2/svc", "new", Some(&live("new", false))));
        assert_eq!(rollouts.in_flight(), 2);
        assert!(!rollouts.admit("t3/bot", "t3/svc", "new", Some(&live("old", true))));
        rollouts.forget("t1/bot");
        assert!(!rollouts.admit("t3/bot", "t3/svc", "new", Some(&live("old", true))));
        rollouts.forget("t2/bot");
        assert!(rollouts.admit("t3/bot", "t3/svc", "new", Some(&live("old", true))));
    }

    #[test]
    fn the_stamp_is_the_digest_of_the_body_without_it() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("bot".into());
        let first = stamp(&mut cm);
        assert_eq!(Live::of(&cm, true).digest.as_deref(), Some(first.as_str()));
        // Stamping again gives the same digest: the old stamp is not part of the body.
        assert_eq!(stamp(&mut cm), first);
        cm.data = Some([("k".to_owned(), "v".to_owned())].into());
        assert_ne!(stamp(&mut cm), first);
    }
}
