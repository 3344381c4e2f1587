//! The ConsentGrant cache: every grant, as last seen, grouped by namespace.
//!
//! Both controllers read a tenant's grants (the Tenant for its consent lines and to wake due
//! re-checks, the consent reconcile for the siblings that share a check), and the consent
//! reconcile runs per tenant (see [`consent`](super::consent)), so nothing looks a grant up on
//! its own: the cache keeps one entry per namespace holding that namespace's grants, kept
//! [packed](super::packing) and sorted by name.
//!
//! It replaces kube-runtime's `Store` for this kind. A `Store` keeps, for each object, a key
//! of four strings next to the object, and a `Controller` over the kind keeps every queued
//! object's reference twice more; with ten thousand tenants of four or five grants each, that
//! was most of the operator's memory.
//!
//! Each grant is kept as its (packed) JSON without `apiVersion`, `kind` and namespace, about
//! 0.85 KiB, and read back into a `ConsentGrant` when asked for: the Rust value is about
//! 1.5 KiB (0.75 KiB of struct, most of it `ObjectMeta`'s empty fields, and a dozen small
//! strings), and the grants are read a few times per reconcile of their Tenant, not kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::crd::{ConsentGrant, ConsentGrantSpec, ConsentGrantStatus, ConsentState};

/// Where a grant event came from and which Tenant it names: what the grant watch passes on
/// to the controllers after the cache took the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    pub namespace: String,
    pub name: String,
    /// The grant's `spec.tenantRef`.
    pub tenant: String,
}

impl Touched {
    fn of(grant: &ConsentGrant) -> Self {
        Self {
            namespace: grant.namespace().unwrap_or_default(),
            name: grant.name_any(),
            tenant: grant.spec.tenant_ref.clone(),
        }
    }
}

/// One cached grant: its name, its state (for the gauges) and the rest as JSON.
struct Entry {
    name: Box<str>,
    state: Option<ConsentState>,
    json: Box<str>,
}

/// What is kept of a grant: everything but `apiVersion`, `kind` and the namespace (the key
/// of its entry's list).
#[derive(Serialize, Deserialize)]
struct Kept<M, S, T> {
    metadata: M,
    spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<T>,
}

impl Entry {
    /// The entry of `grant`, its JSON written into `scratch` first and then copied into an
    /// allocation of its exact length: growing a string for each grant would leave its
    /// smaller buffers freed between the long-lived entries (a rewrite of every grant took
    /// the process 23 MiB more resident memory for the same live heap).
    fn of(mut grant: ConsentGrant, scratch: &mut Vec<u8>) -> Self {
        grant.metadata.namespace = None;
        let kept = Kept {
            metadata: &grant.metadata,
            spec: &grant.spec,
            status: grant.status.as_ref(),
        };
        scratch.clear();
        serde_json::to_writer(&mut *scratch, &kept).expect("a ConsentGrant serialises");
        let json = std::str::from_utf8(scratch).expect("serde_json writes UTF-8");
        Self {
            name: grant.metadata.name.clone().unwrap_or_default().into(),
            state: grant.status.as_ref().and_then(|s| s.state),
            json: json.into(),
        }
    }

    fn grant(&self, namespace: &str) -> Option<ConsentGrant> {
        let kept: Kept<ObjectMeta, ConsentGrantSpec, ConsentGrantStatus> =
            match serde_json::from_str(&self.json) {
                Ok(kept) => kept,
                Err(e) => {
                    // Written by `Entry::of` from a ConsentGrant: cannot happen.
                    tracing::error!(grant = %self.name, error = %e, "cached grant unreadable");
                    return None;
                }
            };
        let mut grant = ConsentGrant::new(&self.name, kept.spec);
        grant.metadata = kept.metadata;
        grant.metadata.namespace = Some(namespace.to_string());
        grant.status = kept.status;
        Some(grant)
    }
}

type ByNamespace = HashMap<Box<str>, Vec<Entry>>;

#[derive(Default)]
struct State {
    current: ByNamespace,
    /// The objects of a (re)list in progress; they replace `current` once it completes.
    relisting: Option<ByNamespace>,
    /// Where a grant's JSON is written before it is kept (see [`Entry::of`]).
    scratch: Vec<u8>,
}

/// Every ConsentGrant, packed, by namespace. Cheap to clone (shared).
#[derive(Clone)]
pub struct GrantCache {
    state: Arc<RwLock<State>>,
    ready: Arc<watch::Sender<bool>>,
}

impl Default for GrantCache {
    fn default() -> Self {
        Self {
            state: Default::default(),
            ready: Arc::new(watch::channel(false).0),
        }
    }
}

fn put(by_ns: &mut ByNamespace, grant: ConsentGrant, scratch: &mut Vec<u8>) {
    let ns = grant.namespace().unwrap_or_default();
    let entry = Entry::of(grant, scratch);
    let grants = by_ns.entry(ns.into_boxed_str()).or_default();
    match grants.binary_search_by(|e| e.name.cmp(&entry.name)) {
        Ok(at) => grants[at] = entry,
        Err(at) => grants.insert(at, entry),
    }
}

fn remove(by_ns: &mut ByNamespace, grant: &ConsentGrant) {
    let ns = grant.namespace().unwrap_or_default();
    let name = grant.metadata.name.as_deref().unwrap_or_default();
    if let Some(grants) = by_ns.get_mut(ns.as_str()) {
        grants.retain(|e| &*e.name != name);
        if grants.is_empty() {
            by_ns.remove(ns.as_str());
        }
    }
}

impl GrantCache {
    /// Takes one watch event (its object already [slimmed](super::slim_grant) and
    /// [packed](super::packing::pack)) and returns the grants it touched: the event's object,
    /// or every grant of a completed (re)list.
    pub fn apply(&self, event: watcher::Event<ConsentGrant>) -> Vec<Touched> {
        let mut guard = self.state.write().expect("grant cache lock");
        let state = &mut *guard;
        let touched = match event {
            watcher::Event::Apply(grant) => {
                let touched = Touched::of(&grant);
                put(&mut state.current, grant, &mut state.scratch);
                vec![touched]
            }
            watcher::Event::Delete(grant) => {
                remove(&mut state.current, &grant);
                vec![Touched::of(&grant)]
            }
            watcher::Event::Init => {
                state.relisting = Some(ByNamespace::new());
                Vec::new()
            }
            watcher::Event::InitApply(grant) => {
                put(
                    state.relisting.get_or_insert_with(Default::default),
                    grant,
                    &mut state.scratch,
                );
                Vec::new()
            }
            watcher::Event::InitDone => {
                // Until the list completes the old view stands; grants deleted meanwhile
                // leave nothing behind.
                let listed = state.relisting.take().unwrap_or_default();
                let mut touched: Vec<Touched> = state
                    .current
                    .iter()
                    .chain(listed.iter())
                    .flat_map(|(ns, entries)| entries.iter().filter_map(|e| e.grant(ns)))
                    .map(|g| Touched::of(&g))
                    .collect();
                touched.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                touched.dedup();
                state.current = listed;
                state.current.shrink_to_fit();
                self.ready.send_replace(true);
                touched
            }
        };
        touched
    }

    /// The grants in `namespace`, packed, by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<ConsentGrant>> {
        let state = self.state.read().expect("grant cache lock");
        let Some(entries) = state.current.get(namespace) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| e.grant(namespace))
            .map(Arc::new)
            .collect()
    }

    /// One grant, packed.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<ConsentGrant>> {
        let state = self.state.read().expect("grant cache lock");
        let entries = state.current.get(namespace)?;
        let at = entries.binary_search_by(|e| (*e.name).cmp(name)).ok()?;
        entries[at].grant(namespace).map(Arc::new)
    }

    /// Calls `f` with every grant, packed (read back one at a time, under the cache's read
    /// lock: `f` must not block).
    pub fn for_each(&self, mut f: impl FnMut(&ConsentGrant)) {
        let state = self.state.read().expect("grant cache lock");
        for (ns, entries) in &state.current {
            entries
                .iter()
                .filter_map(|e| e.grant(ns))
                .for_each(|g| f(&g));
        }
    }

    /// How many grants are in each state (`None`: no status yet).
    pub fn count_by_state(&self) -> Vec<(Option<ConsentState>, usize)> {
        let state = self.state.read().expect("grant cache lock");
        let mut counts: Vec<(Option<ConsentState>, usize)> = Vec::new();
        for e in state.current.values().flatten() {
            match counts.iter_mut().find(|(s, _)| *s == e.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.state, 1)),
            }
        }
        counts
    }

    /// How many grants the cache holds.
    pub fn len(&self) -> usize {
        let state = self.state.read().expect("grant cache lock");
        state.current.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Returns once the first list has completed.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
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
    }
}
