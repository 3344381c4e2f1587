//! The ConsentGrant cache: kube-runtime's reflector [`Store`] of every grant, and the names of
//! the grants in each namespace.
//!
//! Both controllers read a tenant's grants (the Tenant for its consent lines and to wake due
//! re-checks, the consent reconcile for the siblings that share a check), and the consent
//! reconcile runs per tenant (see the `consent` module), so grants are looked up by
//! namespace; a `Store` has no index, so the names per namespace are kept beside it. The
//! grants themselves are the store's, as the watch delivered them (slimmed, see
//! [`slim`](super::slim)).

use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::index::ByNamespace;
use crate::crd::{ConsentGrant, ConsentState};

/// Where a grant event came from and which Tenant it names: what the grant watch passes on
/// to the controllers after the cache took the event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touched {
    pub namespace: String,
    pub name: String,
    /// The grant's `spec.tenantRef`.
    pub tenant: String,
}

impl Touched {
    /// The grant's own.
    pub fn of(grant: &ConsentGrant) -> Self {
        Self {
            namespace: grant.namespace().unwrap_or_default(),
            name: grant.name_any(),
            tenant: grant.spec.tenant_ref.clone(),
        }
    }
}

/// The grants among `grants` that name the Tenant `tenant` in `spec.tenantRef`: in a
/// tenant's namespace, its own.
pub fn naming<'a>(
    tenant: &'a str,
    grants: impl IntoIterator<Item = &'a Arc<ConsentGrant>>,
) -> Vec<Arc<ConsentGrant>> {
    grants
        .into_iter()
        .filter(|g| g.spec.tenant_ref == tenant)
        .cloned()
        .collect()
}

/// The names of the grants in the store by namespace, and the grants a (re)list in progress
/// delivered.
#[derive(Default)]
struct Index {
    names: ByNamespace<()>,
    relisted: Vec<Touched>,
}

/// Every ConsentGrant, as last seen, by namespace. Cheap to clone (shared).
#[derive(Clone)]
pub struct GrantCache {
    store: Store<ConsentGrant>,
    writer: Arc<Mutex<Writer<ConsentGrant>>>,
    index: Arc<RwLock<Index>>,
    /// Open once the first list has completed (see [`Gate`](super::Gate)).
    ready: super::gate::Gate,
}

impl Default for GrantCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Arc::new(Mutex::new(writer)),
            index: Default::default(),
            ready: Default::default(),
        }
    }
}

impl GrantCache {
    /// Takes one watch event (its object already [slimmed](super::slim)) and returns the
    /// grants it touched: the event's object, or on a completed (re)list every grant listed and
    /// every grant of the view it replaced (a grant deleted or changed meanwhile).
    pub fn apply(&self, event: watcher::Event<ConsentGrant>) -> Vec<Touched> {
        let mut index = self.index.write().expect("grant index lock");
        index.names.apply(&event, |_| ());
        let touched = match &event {
            watcher::Event::Apply(grant) => {
                // A grant now naming another Tenant is news to the one it named before.
                let before = self.get(
                    grant.metadata.namespace.as_deref().unwrap_or_default(),
                    &grant.name_any(),
                );
                let mut touched = vec![Touched::of(grant)];
                touched.extend(before.map(|b| Touched::of(&b)));
                touched.dedup();
                touched
            }
            watcher::Event::Delete(grant) => vec![Touched::of(grant)],
            watcher::Event::Init => {
                index.relisted.clear();
                Vec::new()
            }
            watcher::Event::InitApply(grant) => {
                index.relisted.push(Touched::of(grant));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut touched = std::mem::take(&mut index.relisted);
                touched.extend(self.store.state().iter().map(|g| Touched::of(g)));
                touched.sort();
                touched.dedup();
                touched
            }
        };
        self.writer
            .lock()
            .expect("grant store lock")
            .apply_watcher_event(&event);
        if matches!(event, watcher::Event::InitDone) {
            self.ready.open();
        }
        touched
    }

    /// The grants in `namespace`, by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<ConsentGrant>> {
        let index = self.index.read().expect("grant index lock");
        index
            .names
            .in_namespace(namespace)
            .filter_map(|(name, _)| self.get(namespace, name))
            .collect()
    }

    /// One grant.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<ConsentGrant>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Calls `f` with every grant.
    pub fn for_each(&self, f: impl FnMut(&Arc<ConsentGrant>)) {
        self.store.state().iter().for_each(f);
    }

    /// Calls `f` with the namespace, name and state of every grant (for the gauges, every
    /// few seconds).
    pub fn for_each_state(&self, mut f: impl FnMut(&str, &str, Option<ConsentState>)) {
        for g in self.store.state() {
            f(
                g.metadata.namespace.as_deref().unwrap_or_default(),
                &g.name_any(),
                g.status.as_ref().and_then(|s| s.state),
            );
        }
    }

    /// How many grants are in each state (`None`: no status yet).
    pub fn count_by_state(&self) -> Vec<(Option<ConsentState>, usize)> {
        let mut counts: Vec<(Option<ConsentState>, usize)> = Vec::new();
        for g in self.store.state() {
            let state = g.status.as_ref().and_then(|s| s.state);
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
        }
        counts
    }

    /// How many grants the cache holds.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        self.ready.is_open()
    }

    /// Returns once the first list has completed.
    pub async fn wait_until_ready(&self) {
        self.ready.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ConsentGrantSpec;

    fn grant(ns: &str, name: &str, tenant: &str) -> ConsentGrant {
        let mut g = ConsentGrant::new(
            name,
            ConsentGrantSpec {
                tenant_ref: tenant.into(),
                consent: "recording".into(),
                app_id: "app".into(),
                display_name: None,
                application_permissions: vec![],
                delegated_scopes: vec![],
                optional: false,
            },
        );
        g.metadata.namespace = Some(ns.into());
        g
    }

    fn names(cache: &GrantCache, ns: &str) -> Vec<String> {
        cache
            .in_namespace(ns)
            .iter()
            .map(|g| g.name_any())
            .collect()
    }

    #[tokio::test]
    async fn follows_applies_deletes_and_relists() {
        let cache = GrantCache::default();
        assert!(!cache.is_ready());
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(grant(
            "tenant-a",
            "consent-b",
            "a",
        )));
        cache.apply(watcher::Event::InitApply(grant(
            "tenant-a",
            "consent-a",
            "a",
        )));
        assert!(cache.is_empty(), "a list shows once complete");
        let touched = cache.apply(watcher::Event::InitDone);
        assert_eq!(touched.len(), 2);
        assert_eq!(touched[0].name, "consent-a");
        assert_eq!(touched[0].tenant, "a");
        cache.wait_until_ready().await;
        assert_eq!(names(&cache, "tenant-a"), ["consent-a", "consent-b"]);

        let touched = cache.apply(watcher::Event::Apply(grant("tenant-c", "consent-a", "c")));
        assert_eq!(
            touched,
            [Touched {
                namespace: "tenant-c".into(),
                name: "consent-a".into(),
                tenant: "c".into()
            }]
        );
        // Given back as it was put in, status and metadata included.
        let mut changed = grant("tenant-a", "consent-a", "a");
        changed.spec.optional = true;
        changed.metadata.uid = Some("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9".into());
        changed.metadata.generation = Some(2);
        changed.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        changed.status = Some(crate::crd::ConsentGrantStatus {
            observed_generation: Some(2),
            state: Some(ConsentState::Partial),
            missing_permissions: vec!["Calls.AccessMedia.All".into()],
            message: Some("1 of 2 permissions missing".into()),
            ..Default::default()
        });
        cache.apply(watcher::Event::Apply(changed.clone()));
        let json = |g: &ConsentGrant| serde_json::to_value(g).unwrap();
        assert_eq!(
            json(&cache.get("tenant-a", "consent-a").unwrap()),
            json(&changed)
        );
        assert_eq!(json(&cache.in_namespace("tenant-a")[0]), json(&changed));
        let mut counts = cache.count_by_state();
        counts.sort_by_key(|(_, n)| *n);
        assert_eq!(counts, [(Some(ConsentState::Partial), 1), (None, 2)]);
        assert_eq!(cache.len(), 3);

        cache.apply(watcher::Event::Delete(grant("tenant-c", "consent-a", "c")));
        assert!(cache.in_namespace("tenant-c").is_empty());
        assert!(cache.get("tenant-c", "consent-a").is_none());

        // A relist without consent-b: it is gone once the list completes, and both the
        // grants of the old view and of the new are passed on.
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(grant(
            "tenant-a",
            "consent-a",
            "a",
        )));
        assert_eq!(names(&cache, "tenant-a"), ["consent-a", "consent-b"]);
        let touched = cache.apply(watcher::Event::InitDone);
        assert_eq!(touched.len(), 2);
        assert_eq!(names(&cache, "tenant-a"), ["consent-a"]);
        let mut seen = 0;
        cache.for_each(|_| seen += 1);
        assert_eq!(seen, 1);

        // A relist giving a grant back unchanged passes it on once; one that now names
        // another Tenant passes on both Tenants.
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(grant(
            "tenant-a",
            "consent-a",
            "a",
        )));
        assert_eq!(cache.apply(watcher::Event::InitDone).len(), 1);
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(grant(
            "tenant-a",
            "consent-a",
            "z",
        )));
        let mut tenants: Vec<String> = cache
            .apply(watcher::Event::InitDone)
            .into_iter()
            .map(|t| t.tenant)
            .collect();
        tenants.sort();
        assert_eq!(tenants, ["a", "z"]);
    }
}
