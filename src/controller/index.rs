//! Small indexes kept beside the reflector stores, from the same watch events, so that a
//! reconcile or an event looks at the few objects of one namespace or one Tenant instead of
//! every object of a kind.
//!
//! A kube-runtime [`Store`](kube::runtime::reflector::Store) has no index: "the services of
//! Tenant X" is a scan of every service. Done on every Tenant event, every Secret event and
//! every service reconcile, a resync at 10,000 tenants with 15,000 services cost O(S²). The
//! indexes hold names only; the objects stay the store's.
//!
//! A relist (`Init`, `InitApply`…, `InitDone`) builds a new view beside the current one and
//! replaces it once complete, as the store does; what the old view held and the new one does
//! not is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::crd::RecordingService;

/// Object names by namespace, each with a value kept of the object.
type View<V> = HashMap<String, BTreeMap<String, V>>;

/// What one event changed of an object in a [`ByNamespace`] index: its value before and
/// after (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<V> {
    pub namespace: String,
    pub name: String,
    pub before: Option<V>,
    pub after: Option<V>,
}

/// Names by namespace, each with a value kept of the object, following one watch's events.
#[derive(Debug)]
pub struct ByNamespace<V> {
    current: View<V>,
    /// The view of a relist in progress; it replaces `current` once complete.
    relisting: Option<View<V>>,
}

impl<V> Default for ByNamespace<V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            relisting: None,
        }
    }
}

fn insert<V>(view: &mut View<V>, namespace: String, name: String, value: V) -> Option<V> {
    view.entry(namespace).or_default().insert(name, value)
}

fn remove<V>(view: &mut View<V>, namespace: &str, name: &str) -> Option<V> {
    let names = view.get_mut(namespace)?;
    let before = names.remove(name);
    if names.is_empty() {
        view.remove(namespace);
    }
    before
}

impl<V: Clone + PartialEq> ByNamespace<V> {
    /// Takes one watch event, `value` computing what is kept of an object; returns what
    /// changed in the current view (a relist: once complete, every difference to the view it
    /// replaces).
    pub fn apply<K: Resource>(
        &mut self,
        event: &watcher::Event<K>,
        value: impl Fn(&K) -> V,
    ) -> Vec<Change<V>> {
        let key = |obj: &K| {
            (
                obj.meta().namespace.clone().unwrap_or_default(),
                obj.name_any(),
            )
        };
        match event {
            watcher::Event::Apply(obj) => {
                let (namespace, name) = key(obj);
                let after = value(obj);
                let before = insert(
                    &mut self.current,
                    namespace.clone(),
                    name.clone(),
                    after.clone(),
                );
                let change = Change {
                    namespace,
                    name,
                    before,
                    after: Some(after),
                };
                (change.before != change.after)
                    .then_some(change)
                    .into_iter()
                    .collect()
            }
            watcher::Event::Delete(obj) => {
                let (namespace, name) = key(obj);
                let before = remove(&mut self.current, &namespace, &name);
                vec![Change {
                    namespace,
                    name,
                    before,
                    after: None,
                }]
            }
            watcher::Event::Init => {
                self.relisting = Some(View::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let (namespace, name) = key(obj);
                let view = self.relisting.get_or_insert_with(View::new);
                insert(view, namespace, name, value(obj));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let new = self.relisting.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.current, new);
                differences(&old, &self.current)
            }
        }
    }

    /// The names in `namespace` and their values.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = (&str, &V)> {
        self.current
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// Whether anything is left in `namespace`.
    pub fn holds_namespace(&self, namespace: &str) -> bool {
        self.current.contains_key(namespace)
    }
}

/// The objects whose value differs between two views (present in one only included).
fn differences<V: Clone + PartialEq>(old: &View<V>, new: &View<V>) -> Vec<Change<V>> {
    let lookup = |view: &View<V>, namespace: &str, name: &str| {
        view.get(namespace)
            .and_then(|names| names.get(name))
            .cloned()
    };
    let mut changes = Vec::new();
    for (namespace, names) in old {
        for (name, before) in names {
            let after = lookup(new, namespace, name);
            if after.as_ref() != Some(before) {
                changes.push(Change {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    before: Some(before.clone()),
                    after,
                });
            }
        }
    }
    for (namespace, names) in new {
        for (name, after) in names {
            if lookup(old, namespace, name).is_none() {
                changes.push(Change {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    before: None,
                    after: Some(after.clone()),
                });
            }
        }
    }
    changes
}

/// Names of objects by namespace, for a kind whose objects are only looked up by namespace
/// (the bot StatefulSets). Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct NamespaceIndex {
    inner: Arc<Mutex<ByNamespace<()>>>,
}

impl NamespaceIndex {
    /// Takes one watch event (after the store took it).
    pub fn apply<K: Resource>(&self, event: &watcher::Event<K>) {
        self.inner
            .lock()
            .expect("namespace index lock")
            .apply(event, |_| ());
    }

    /// The names in `namespace`.
    pub fn names_in(&self, namespace: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("namespace index lock");
        inner
            .in_namespace(namespace)
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// The RecordingServices' names by namespace and by the Tenant they name (`spec.tenantRef`),
/// and the services gone since last asked. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct ServiceIndex {
    inner: Arc<RwLock<Services>>,
}

#[derive(Default)]
struct Services {
    /// Namespace → name → `spec.tenantRef`.
    by_namespace: ByNamespace<String>,
    /// `spec.tenantRef` → the services naming it, as namespace and name.
    by_tenant: HashMap<String, BTreeSet<(String, String)>>,
    /// Deleted, or missing from a relist, and not yet [taken](ServiceIndex::take_gone).
    gone: Vec<ObjectRef<RecordingService>>,
}

impl ServiceIndex {
    /// Takes one watch event of the RecordingService watch.
    pub fn apply(&self, event: &watcher::Event<RecordingService>) {
        let mut inner = self.inner.write().expect("service index lock");
        let changes = inner
            .by_namespace
            .apply(event, |s| s.spec.tenant_ref.clone());
        for change in changes {
            let service = (change.namespace, change.name);
            if let Some(before) = &change.before {
                if let Some(services) = inner.by_tenant.get_mut(before) {
                    services.remove(&service);
                    if services.is_empty() {
                        inner.by_tenant.remove(before);
                    }
                }
            }
            match change.after {
                Some(after) => {
                    inner.by_tenant.entry(after).or_default().insert(service);
                }
                None => inner
                    .gone
                    .push(ObjectRef::new(&service.1).within(&service.0)),
            }
        }
    }

    /// The services naming the Tenant `tenant`, in any namespace.
    pub fn naming(&self, tenant: &str) -> Vec<ObjectRef<RecordingService>> {
        let inner = self.inner.read().expect("service index lock");
        inner
            .by_tenant
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|(namespace, name)| ObjectRef::new(name).within(namespace))
            .collect()
    }

    /// The names of the services in `namespace` that name the Tenant `tenant`: a Tenant's own
    /// services when `namespace` is its namespace, the siblings the rules across services
    /// compare.
    pub fn of_tenant_in(&self, namespace: &str, tenant: &str) -> Vec<String> {
        let inner = self.inner.read().expect("service index lock");
        inner
            .by_namespace
            .in_namespace(namespace)
            .filter(|(_, t)| *t == tenant)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The names of the services in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<String> {
        let inner = self.inner.read().expect("service index lock");
        inner
            .by_namespace
            .in_namespace(namespace)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Whether any service is left in `namespace`.
    pub fn holds_namespace(&self, namespace: &str) -> bool {
        let inner = self.inner.read().expect("service index lock");
        inner.by_namespace.holds_namespace(namespace)
    }

    /// The services deleted (or found missing by a relist) since the last call.
    pub fn take_gone(&self) -> Vec<ObjectRef<RecordingService>> {
        std::mem::take(&mut self.inner.write().expect("service index lock").gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RecordingServiceSpec;
    use watcher::Event;

    fn service(namespace: &str, name: &str, tenant: &str) -> RecordingService {
        let mut s = RecordingService::new(
            name,
            serde_json::from_value::<RecordingServiceSpec>(serde_json::json!({
                "tenantRef": tenant,
                "shortName": name,
                "licensedUsers": 10,
            }))
            .expect("a valid spec"),
        );
        s.metadata.namespace = Some(namespace.into());
        s
    }

    /// The events of a relist that finds `services`.
    fn relisted(services: &[RecordingService]) -> Vec<Event<RecordingService>> {
        let found = services.iter().cloned().map(Event::InitApply);
        std::iter::once(Event::Init)
            .chain(found)
            .chain([Event::InitDone])
            .collect()
    }

    /// Tenant a's services `main` and `second`, and Tenant b's `main`, in their namespaces.
    fn two_tenants() -> Vec<RecordingService> {
        vec![
            service("tenant-a", "main", "a"),
            service("tenant-a", "second", "a"),
            service("tenant-b", "main", "b"),
        ]
    }

    fn relist(index: &ServiceIndex, services: &[RecordingService]) {
        relisted(services).iter().for_each(|e| index.apply(e));
    }

    #[test]
    fn services_are_found_by_tenant_and_namespace() {
        let index = ServiceIndex::default();
        let mut services = two_tenants();
        // In the wrong namespace: still found by its Tenant, not among its siblings.
        services.push(service("elsewhere", "stray", "a"));
        relist(&index, &services);
        let mut names: Vec<String> = index.naming("a").iter().map(|r| r.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["main", "second", "stray"]);
        assert_eq!(index.of_tenant_in("tenant-a", "a"), ["main", "second"]);
        assert!(index.of_tenant_in("tenant-a", "b").is_empty());
        assert_eq!(index.in_namespace("tenant-b"), ["main"]);
        assert!(index.naming("c").is_empty());
        assert!(
            index.take_gone().is_empty(),
            "a first list takes nothing away"
        );
    }

    #[test]
    fn a_service_naming_another_tenant_moves_to_it() {
        let index = ServiceIndex::default();
        relist(&index, &[service("tenant-a", "main", "a")]);
        index.apply(&Event::Apply(service("tenant-a", "main", "b")));
        assert!(
            index.naming("a").is_empty(),
            "no longer under its old Tenant"
        );
        assert_eq!(index.naming("b").len(), 1);
        assert_eq!(index.of_tenant_in("tenant-a", "b"), ["main"]);
        assert!(index.of_tenant_in("tenant-a", "a").is_empty());
        assert!(index.take_gone().is_empty(), "moved, not gone");

        // The same through a relist.
        relist(&index, &[service("tenant-a", "main", "a")]);
        assert!(index.naming("b").is_empty());
        assert_eq!(index.of_tenant_in("tenant-a", "a"), ["main"]);
    }

    #[test]
    fn a_relist_drops_what_vanished_and_reports_it_gone_once() {
        let index = ServiceIndex::default();
        relist(&index, &two_tenants());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(service("tenant-a", "main", "a")));
        assert_eq!(
            index.of_tenant_in("tenant-a", "a"),
            ["main", "second"],
            "the view in use until the relist completes"
        );
        index.apply(&Event::InitDone);
        assert_eq!(index.of_tenant_in("tenant-a", "a"), ["main"]);
        assert!(index.naming("b").is_empty());
        assert!(!index.holds_namespace("tenant-b"));
        assert!(index.holds_namespace("tenant-a"));
        let mut gone: Vec<String> = index.take_gone().iter().map(|r| r.to_string()).collect();
        gone.sort();
        assert_eq!(gone.len(), 2);
        assert!(gone[0].contains("main") && gone[0].ends_with("tenant-b"));
        assert!(gone[1].contains("second") && gone[1].ends_with("tenant-a"));
        assert!(index.take_gone().is_empty(), "taken once");

        // A delete, and one for a service never seen (the index has nothing to lose).
        index.apply(&Event::Delete(service("tenant-a", "main", "a")));
        assert!(index.naming("a").is_empty());
        assert!(!index.holds_namespace("tenant-a"));
        assert_eq!(index.take_gone().len(), 1);
        index.apply(&Event::Delete(service("tenant-z", "main", "z")));
        assert!(index.naming("z").is_empty());
    }

    #[test]
    fn namespace_index_follows_applies_deletes_and_relists() {
        let index = NamespaceIndex::default();
        relist_names(&index, &[("ns-a", "bot-hue"), ("ns-a", "bot-hue-paired")]);
        assert_eq!(index.names_in("ns-a"), ["bot-hue", "bot-hue-paired"]);
        index.apply(&Event::Delete(service("ns-a", "bot-hue-paired", "a")));
        assert_eq!(index.names_in("ns-a"), ["bot-hue"]);
        index.apply(&Event::Apply(service("ns-b", "bot-hue", "b")));
        assert_eq!(index.names_in("ns-b"), ["bot-hue"]);
        relist_names(&index, &[("ns-b", "bot-hue")]);
        assert!(index.names_in("ns-a").is_empty());
        assert_eq!(index.names_in("ns-b"), ["bot-hue"]);
    }

    fn relist_names(index: &NamespaceIndex, objects: &[(&str, &str)]) {
        let found: Vec<RecordingService> = objects
            .iter()
            .map(|(namespace, name)| service(namespace, name, "t"))
            .collect();
        relisted(&found).iter().for_each(|e| index.apply(e));
    }
}
