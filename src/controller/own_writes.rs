//! The Tenant controller's own writes, so that the watch events they cause do not wake it
//! again.
//!
//! A Tenant's status write and finalizer patch come back through the Tenant watch like any
//! other change; the reconcile such an event started read what the writing reconcile had read
//! plus what it wrote, computed the same and wrote nothing. Every change to an object gives it
//! a new `resourceVersion`, so a Tenant seen at exactly the version an own write returned
//! holds no change by anyone else since that write. A change someone made between the writing
//! reconcile's read and its write has an event (and a version) of its own, which wakes the
//! controller. A list after the watch fell behind may fold such a change into the state an own
//! write left: a list therefore forgets every remembered version. A write's event may come
//! through the watch before its answer: while a write of a Tenant is in flight, the trigger
//! waits for the answer (a moment, at most a second) before it decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::watcher;
use kube::ResourceExt;

use crate::crd::Tenant;

/// How long the trigger waits for the answer of a write in flight before it decides whether an
/// event is that write's: its event may come through the watch before its answer comes back.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Per Tenant name, the `resourceVersion` its controller's last own write returned (until the
/// watch brings the Tenant at that version), and how many of its writes are in flight.
#[derive(Clone, Default)]
pub struct OwnWrites {
    tenants: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Default)]
struct Entry {
    version: Option<String>,
    in_flight: usize,
}

/// One own write of a Tenant, from before it is sent until its answer; dropped without an
/// answer (the write failed), it only ends.
pub struct Writing {
    own: OwnWrites,
    name: String,
}

impl Writing {
    /// Remembers the Tenant as the write's answer returned it.
    pub fn answered(self, answer: &Tenant) {
        if let Some(version) = answer.resource_version() {
            self.own
                .lock()
                .entry(self.name.clone())
                .or_default()
                .version = Some(version);
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut tenants = self.own.lock();
        if let Some(entry) = tenants.get_mut(&self.name) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if entry.in_flight == 0 && entry.version.is_none() {
                tenants.remove(&self.name);
            }
        }
    }
}

impl OwnWrites {
    /// Marks a write of the Tenant named `name` as about to be sent.
    pub fn writing(&self, name: &str) -> Writing {
        self.lock().entry(name.to_owned()).or_default().in_flight += 1;
        Writing {
            own: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Whether the Tenant is at the version an own write left it at (then forgotten: a version
    /// comes once). While a write of it is in flight and nothing matches yet, waits for the
    /// answer (at most [`ANSWER_WAIT`]).
    pub async fn is_own(&self, tenant: &Tenant) -> bool {
        let name = tenant.name_any();
        let Some(version) = tenant.resource_version() else {
            return false;
        };
        let give_up = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            {
                let mut tenants = self.lock();
                let Some(entry) = tenants.get_mut(&name) else {
                    return false;
                };
                if entry.version.as_ref() == Some(&version) {
                    entry.version = None;
                    if entry.in_flight == 0 {
                        tenants.remove(&name);
                    }
                    return true;
                }
                if entry.in_flight == 0 || tokio::time::Instant::now() >= give_up {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Takes in one Tenant watch event: a list forgets every version (what it lists wakes the
    /// controller), a deletion the Tenant's.
    pub fn observe(&self, event: &watcher::Event<Tenant>) {
        match event {
            watcher::Event::Init => self
                .lock()
                .values_mut()
                .for_each(|entry| entry.version = None),
            watcher::Event::Delete(t) => {
                if let Some(entry) = self.lock().get_mut(&t.name_any()) {
                    entry.version = None;
                }
            }
            _ => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tenants.lock().expect("own writes lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    fn at(version: &str) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "contoso"},
            "spec": {
                "customerName": "Contoso", "domain": "contoso.com", "shortName": "cto",
                "contactEmails": ["ops@example.com"], "adminUpns": ["admin@example.com"],
                "license": "Essentials", "includedUsers": 100,
                "storage": {"location": "westeurope"}
            }
        }))
        .unwrap();
        t.meta_mut().resource_version = Some(version.into());
        t
    }

    fn wrote(own: &OwnWrites, version: &str) {
        own.writing("contoso").answered(&at(version));
    }

    #[tokio::test]
    async fn only_the_version_an_own_write_returned_is_own_and_only_once() {
        let own = OwnWrites::default();
        assert!(!own.is_own(&at("7")).await, "nothing written yet");
        wrote(&own, "8");
        assert!(
            !own.is_own(&at("7")).await,
            "an earlier state (someone else's change)"
        );
        assert!(
            !own.is_own(&at("9")).await,
            "a later state (someone else's change)"
        );
        assert!(own.is_own(&at("8")).await);
        assert!(
            !own.is_own(&at("8")).await,
            "the same version again is not an own write's event"
        );
    }

    #[tokio::test]
    async fn a_list_or_a_deletion_forgets() {
        let own = OwnWrites::default();
        wrote(&own, "8");
        own.observe(&watcher::Event::Init);
        assert!(
            !own.is_own(&at("8")).await,
            "a list may fold others' changes into it"
        );
        wrote(&own, "9");
        own.observe(&watcher::Event::Delete(at("10")));
        assert!(!own.is_own(&at("9")).await);
    }

    #[tokio::test]
    async fn an_event_that_comes_before_its_writes_answer_waits_for_it() {
        let own = OwnWrites::default();
        let writing = own.writing("contoso");
        let answer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writing.answered(&at("8"));
        });
        assert!(own.is_own(&at("8")).await);
        answer.await.unwrap();
        // A write that failed leaves nothing to wait for.
        drop(own.writing("contoso"));
        assert!(!own.is_own(&at("9")).await);
    }
}
