//! Which Tenants hold each value that must be unique across Tenants (SPEC §8: `customerName`,
//! `domain`, `shortName`, the Entra tenant id), kept from the Tenant watch's events.
//!
//! The rules ([`rules::tenant_conflicts`](super::rules::tenant_conflicts)) compare a Tenant
//! with the Tenants sharing one of its values. Asking the index for those few instead of
//! walking every Tenant keeps a reconcile's cost flat as the Tenants grow: walking them all,
//! twice a reconcile, made a restart's resync at 10,000 Tenants quadratic.
//!
//! The index answers "who may share a value"; the caller always checks the Tenants it names
//! as last seen in the store. A value is known by a hash of its field and its lowercased text,
//! so a collision only adds a candidate that the check then drops.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use kube::ResourceExt;

use super::rules;
use crate::crd::Tenant;

/// The index; clones share it.
#[derive(Clone, Default)]
pub struct UniqueIndex {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The names of the Tenants holding each value.
    holders: HashMap<u64, Vec<String>>,
    /// Each Tenant's values, to take them out again when they change or the Tenant goes.
    values: HashMap<String, Vec<u64>>,
    /// The Tenants a relist has listed so far; at its end the others are gone.
    relisted: Option<HashSet<String>>,
}

/// The keys of a Tenant's values (the Entra tenant id as `tenant_id`, when known).
fn keys(tenant: &Tenant, tenant_id: Option<&str>) -> Vec<u64> {
    let mut keys: Vec<u64> = rules::unique_values(tenant, tenant_id)
        .into_iter()
        .filter_map(|(field, value)| Some(key(field, value?)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn key(field: &str, value: &str) -> u64 {
    crate::hash64(&(field, value.to_ascii_lowercase()))
}

impl UniqueIndex {
    /// Takes one Tenant watch event (before the store does). Returns the other Tenants that
    /// held or hold a value the event's Tenant held before or holds now, when its values
    /// changed (they may be in conflict with it, or freed by it); nothing otherwise.
    pub fn apply(&self, event: &watcher::Event<Tenant>) -> Vec<String> {
        let mut inner = self.inner.lock().expect("unique index lock");
        match event {
            watcher::Event::Apply(tenant) => inner.record(tenant),
            watcher::Event::InitApply(tenant) => {
                if let Some(listed) = inner.relisted.as_mut() {
                    listed.insert(tenant.name_any());
                }
                inner.record(tenant)
            }
            watcher::Event::Delete(tenant) => inner.remove(&tenant.name_any()),
            watcher::Event::Init => {
                inner.relisted = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = inner.relisted.take().unwrap_or_default();
                let gone: Vec<String> = inner
                    .values
                    .keys()
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                let mut touched: Vec<String> =
                    gone.iter().flat_map(|name| inner.remove(name)).collect();
                touched.sort();
                touched.dedup();
                touched
            }
        }
    }

    /// The Tenants other than `tenant` that hold one of its values, `tenant_id` standing for
    /// its Entra tenant id (which may be resolved but not yet in its status).
    pub fn sharing(&self, tenant: &Tenant, tenant_id: Option<&str>) -> Vec<String> {
        let inner = self.inner.lock().expect("unique index lock");
        let name = tenant.name_any();
        let mut names: Vec<String> = keys(tenant, tenant_id)
            .iter()
            .filter_map(|k| inner.holders.get(k))
            .flatten()
            .filter(|holder| **holder != name)
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl Inner {
    /// Records `tenant`'s values; see [`UniqueIndex::apply`].
    fn record(&mut self, tenant: &Tenant) -> Vec<String> {
        let name = tenant.name_any();
        let now = keys(tenant, tenant.entra_tenant_id().as_deref());
        if self.values.get(&name) == Some(&now) {
            return Vec::new();
        }
        let mut touched = self.remove(&name);
        for k in &now {
            let holders = self.holders.entry(*k).or_default();
            touched.extend(holders.iter().cloned());
            holders.push(name.clone());
        }
        self.values.insert(name, now);
        touched.sort();
        touched.dedup();
        touched
    }

    /// Takes the Tenant named `name` out; returns the other holders of its values.
    fn remove(&mut self, name: &str) -> Vec<String> {
        let mut touched = Vec::new();
        for k in self.values.remove(name).unwrap_or_default() {
            if let Some(holders) = self.holders.get_mut(&k) {
                holders.retain(|h| h != name);
                touched.extend(holders.iter().cloned());
                if holders.is_empty() {
                    self.holders.remove(&k);
                }
            }
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, customer: &str, domain: &str, short: &str) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {
                "customerName": customer, "domain": domain, "shortName": short,
                "contactEmails": ["ops@example.com"], "adminUpns": ["admin@example.com"],
                "license": "Essentials", "includedUsers": 100,
                "storage": {"location": "westeurope"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_only_the_tenants_sharing_a_value_whatever_the_case() {
        let index = UniqueIndex::default();
        let a = tenant("a", "Contoso", "contoso.com", "cto");
        let b = tenant("b", "Fabrikam", "CONTOSO.com", "fab");
        let c = tenant("c", "Northwind", "northwind.com", "nw");
        for t in [&a, &b, &c] {
            index.apply(&watcher::Event::Apply(t.clone()));
        }
        assert_eq!(index.sharing(&a, None), vec!["b".to_string()]);
        assert_eq!(index.sharing(&b, None), vec!["a".to_string()]);
        assert!(index.sharing(&c, None).is_empty());
        // A resolved tenant id not yet in any status is looked up too.
        let mut d = tenant("d", "Litware", "litware.com", "lit");
        d.spec.tenant_id = Some("11111111-1111-1111-1111-111111111111".into());
        index.apply(&watcher::Event::Apply(d));
        assert_eq!(
            index.sharing(&c, Some("11111111-1111-1111-1111-111111111111")),
            vec!["d".to_string()]
        );
    }

    #[test]
    fn a_change_or_a_delete_names_who_shared_the_old_and_the_new_values() {
        let index = UniqueIndex::default();
        let a = tenant("a", "Contoso", "contoso.com", "cto");
        let b = tenant("b", "Fabrikam", "contoso.com", "fab");
        let c = tenant("c", "Northwind", "northwind.com", "nw");
        for t in [&a, &b, &c] {
            index.apply(&watcher::Event::Apply(t.clone()));
        }
        // The same values again: nothing to tell.
        assert!(index.apply(&watcher::Event::Apply(a.clone())).is_empty());
        // a moves from contoso.com (shared with b) to northwind.com (held by c): both look again.
        let moved = tenant("a", "Contoso", "northwind.com", "cto");
        assert_eq!(
            index.apply(&watcher::Event::Apply(moved.clone())),
            vec!["b".to_string(), "c".to_string()]
        );
        assert!(index.sharing(&b, None).is_empty());
        assert_eq!(index.sharing(&c, None), vec!["a".to_string()]);
        assert_eq!(
            index.apply(&watcher::Event::Delete(moved)),
            vec!["c".to_string()]
        );
        assert!(index.sharing(&c, None).is_empty());
    }

    #[test]
    fn a_relist_drops_the_tenants_it_did_not_list_and_names_who_they_freed() {
        let index = UniqueIndex::default();
        let a = tenant("a", "Contoso", "contoso.com", "cto");
        let b = tenant("b", "Fabrikam", "contoso.com", "fab");
        for t in [&a, &b] {
            index.apply(&watcher::Event::Apply(t.clone()));
        }
        // a was deleted while the watch was down: the relist lists b only.
        index.apply(&watcher::Event::Init);
        assert!(index
            .apply(&watcher::Event::InitApply(b.clone()))
            .is_empty());
        assert_eq!(
            index.apply(&watcher::Event::InitDone),
            vec!["b".to_string()]
        );
        assert!(index.sharing(&b, None).is_empty());
    }
}
