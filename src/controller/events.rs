//! Kubernetes Events (`events.k8s.io/v1`) about the operator's objects, one per transition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

/// Publishes Kubernetes Events (`events.k8s.io/v1`) for one controller, one per transition
/// (callers decide when a transition happened). Event failures are logged, never fail a
/// reconcile.
///
/// Each Event is created as is. kube's `Recorder` would also remember every Event it sent for
/// six minutes (to count repeats into a series) and sweep that memory on every publish — with
/// thousands of tenants onboarding that memory dominated the operator's footprint and the
/// sweep its CPU, while transitions never repeat within minutes anyway.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<RecentEvents>>,
}

/// The same Event about the same object again within this window is a repeat, not a new
/// transition: a reconcile that read its object from the cache just before its own status
/// write arrived computes the same transition once more.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Fingerprints of the Events published within [`REPEAT_WINDOW`], oldest first; small, since
/// entries leave as soon as they are older than the window.
#[derive(Default)]
struct RecentEvents {
    seen: HashMap<u64, std::time::Instant>,
    order: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl RecentEvents {
    /// Whether `fingerprint` was published within the window; records it when not.
    fn repeat(&mut self, fingerprint: u64, now: std::time::Instant) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) < REPEAT_WINDOW {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&fingerprint) {
            return true;
        }
        self.seen.insert(fingerprint, now);
        self.order.push_back((now, fingerprint));
        false
    }
}

impl Events {
    pub fn new(client: kube::Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| controller.to_string()),
            recent: Default::default(),
        }
    }

    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let fingerprint = crate::hash64(&(
            obj.meta().uid.as_deref(),
            obj.meta().namespace.as_deref(),
            obj.meta().name.as_deref(),
            warning,
            reason,
            &note,
        ));
        let now = std::time::Instant::now();
        if self
            .recent
            .lock()
            .expect("recent events lock")
            .repeat(fingerprint, now)
        {
            tracing::debug!(object = %obj.name_any(), reason, "same event within a minute; not repeated");
            return;
        }
        let event = self.event(obj.object_ref(&()), warning, reason, action, note);
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "could not publish event");
        }
    }

    /// The Event about `regarding`, named after it and the current time.
    fn event(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> KubeEvent {
        let now = k8s_openapi::jiff::Timestamp::now();
        KubeEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(truncate_note(note)),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate_note(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 997;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_repeated_within_the_window_is_dropped_and_allowed_after() {
        let mut recent = RecentEvents::default();
        let t0 = std::time::Instant::now();
        assert!(!recent.repeat(1, t0));
        assert!(recent.repeat(1, t0 + Duration::from_secs(1)));
        assert!(!recent.repeat(2, t0 + Duration::from_secs(2)));
        assert!(
            !recent.repeat(1, t0 + REPEAT_WINDOW + Duration::from_secs(1)),
            "after the window it is news again"
        );
        assert!(recent.seen.len() <= 2);
    }
}
