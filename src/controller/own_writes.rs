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
//! write left: a list therefore forgets every remembered version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use kube::ResourceExt;

use crate::crd::Tenant;

/// Per Tenant name, the `resourceVersion` its controller's last own write returned, until the
/// watch brings the Tenant at that version.
#[derive(Clone, Default)]
pub struct OwnWrites {
    versions: Arc<Mutex<HashMap<String, String>>>,
}

impl OwnWrites {
    /// Remembers the Tenant as an own write's answer returned it.
    pub fn wrote(&self, answer: &Tenant) {
        if let Some(version) = answer.resource_version() {
            self.lock().insert(answer.name_any(), version);
        }
    }

    /// Whether the Tenant is at the version an own write left it at (then forgotten: a version
    /// comes once).
    pub fn is_own(&self, tenant: &Tenant) -> bool {
        let mut versions = self.lock();
        let name = tenant.name_any();
        let version = tenant.resource_version();
        let own = version.is_some() && versions.get(&name) == version.as_ref();
        if own {
            versions.remove(&name);
        }
        own
    }

    /// Takes in one Tenant watch event: a list forgets every version (what it lists wakes the
    /// controller), a deletion the Tenant's.
    pub fn observe(&self, event: &watcher::Event<Tenant>) {
        match event {
            watcher::Event::Init => self.lock().clear(),
            watcher::Event::Delete(t) => {
                self.lock().remove(&t.name_any());
            }
            _ => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.versions.lock().expect("own writes lock")
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

    #[test]
    fn only_the_version_an_own_write_returned_is_own_and_only_once() {
        let own = OwnWrites::default();
        assert!(!own.is_own(&at("7")), "nothing written yet");
        own.wrote(&at("8"));
        assert!(
            !own.is_own(&at("7")),
            "an earlier state (someone else's change)"
        );
        assert!(
            !own.is_own(&at("9")),
            "a later state (someone else's change)"
        );
        assert!(own.is_own(&at("8")));
        assert!(
            !own.is_own(&at("8")),
            "the same version again is not an own write's event"
        );
    }

    #[test]
    fn a_list_or_a_deletion_forgets() {
        let own = OwnWrites::default();
        own.wrote(&at("8"));
        own.observe(&watcher::Event::Init);
        assert!(
            !own.is_own(&at("8")),
            "a list may fold others' changes into it"
        );
        own.wrote(&at("9"));
        own.observe(&watcher::Event::Delete(at("10")));
        assert!(!own.is_own(&at("9")));
    }
}
