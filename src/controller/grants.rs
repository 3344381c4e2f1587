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
//! 0.85 KiB, and a namespace's grants are [compressed](super::compact) together (a [`Block`])
//! against a dictionary of what grants have in common (field names, states, condition types
//! and reasons). They are read back into `ConsentGrant`s when asked for: the Rust value is
//! about 1.5 KiB (0.75 KiB of struct, most of it `ObjectMeta`'s empty fields, and a dozen
//! small strings), and the grants are read a few times per reconcile of their Tenant, not
//! kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::compact::Compact;
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

/// One cached grant: its name, its state (for the gauges) and the length of its JSON in its
/// namespace's [`Block`].
struct Entry {
    name: Box<str>,
    state: Option<ConsentState>,
    len: u32,
}

/// The grants of one namespace, sorted by name: one [`Entry`] each, and their JSON
/// ([`Kept`]) one after another in the same order, compressed together with [`DICTIONARY`].
///
/// A tenant's grants share much that no fixed dictionary can know: the tenant's name and
/// Entra tenant id (in every consent link), and the times of the check they share. Four
/// granted grants (3.3 KiB of JSON) are kept in about 0.37 KiB together, where each kept
/// apart took about 0.19 KiB; one block per namespace also spares an allocation and an
/// entry's bookkeeping per grant. Putting a grant in decompresses and compresses its
/// namespace's few KiB again; nothing is parsed but the grant itself.
struct Block {
    entries: Box<[Entry]>,
    json: Compact,
}

/// What cached grants' JSON has in common, for LZ4 to refer to instead of repeating it in
/// every entry. Any text is correct here; this one makes a granted grant's JSON about a
/// fifth of its length.
const DICTIONARY: &[u8] = br#"{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"name":"redundantRecording","uid":"00000000-0000-0000-0000-000000000000"},"spec":{"tenantRef":"tenant","consent":"instantMessages","appId":"","applicationPermissions":[""],"delegatedScopes":[""],"optional":false},"status":{"observedGeneration":1,"state":"Pending","consentUrl":"00000000-0000-0000-0000-000000000000","missingPermissions":["User.Read.All","Calls.AccessMedia.All"],"lastCheckedAt":"2026-01-01T00:00:00Z","nextCheckAt":"2026-01-01T00:00:00Z","message":"the admin has not granted consent yet","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"NotGranted","status":"False","type":"Granted"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"NotGranted","status":"False","type":"Ready"}]}}{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"name":"recording","uid":"00000000-0000-0000-0000-000000000000"},"spec":{"tenantRef":"tenant","consent":"directory","appId":"","applicationPermissions":[""],"delegatedScopes":[""],"optional":false},"status":{"observedGeneration":1,"state":"Granted","consentUrl":"00000000-0000-0000-0000-000000000000","grantedPermissions":[""],"grantedAt":"2026-01-01T00:00:00Z","lastCheckedAt":"2026-01-01T00:00:00Z","nextCheckAt":"2026-01-01T00:00:00Z","message":"all 3 required permissions granted","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Granted","status":"True","type":"Granted"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Granted","status":"True","type":"Ready"}]}}"#;

/// What is kept of a grant: everything but `apiVersion`, `kind` and the namespace (the key
/// of its block).
#[derive(Serialize, Deserialize)]
struct Kept<M, S, T> {
    metadata: M,
    spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<T>,
}

/// A grant's JSON as the cache keeps it.
fn kept_json(mut grant: ConsentGrant) -> (Entry, Vec<u8>) {
    grant.metadata.namespace = None;
    let json = serde_json::to_vec(&Kept {
        metadata: &grant.metadata,
        spec: &grant.spec,
        status: grant.status.as_ref(),
    })
    .expect("a ConsentGrant serialises");
    let entry = Entry {
        name: grant.metadata.name.unwrap_or_default().into(),
        state: grant.status.as_ref().and_then(|s| s.state),
        len: u32::try_from(json.len()).expect("a grant's JSON is under 4 GiB"),
    };
    (entry, json)
}

/// A grant read back from its JSON.
fn grant_of(namespace: &str, name: &str, json: &[u8]) -> Option<ConsentGrant> {
    let kept = match serde_json::from_slice::<Kept<ObjectMeta, ConsentGrantSpec, ConsentGrantStatus>>(
        json,
    ) {
        Ok(kept) => kept,
        Err(e) => {
            // Written by `kept_json` from a ConsentGrant: cannot happen.
            tracing::error!(grant = %name, %namespace, error = %e, "cached grant unreadable");
            return None;
        }
    };
    let mut grant = ConsentGrant::new(name, kept.spec);
    grant.metadata = kept.metadata;
    grant.metadata.namespace = Some(namespace.to_string());
    grant.status = kept.status;
    Some(grant)
}

impl Block {
    /// The grants' JSON, one after another (empty if unreadable, which cannot happen: it is
    /// logged).
    fn json(&self) -> Vec<u8> {
        self.json.json(DICTIONARY).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cached grants unreadable");
            Vec::new()
        })
    }

    /// Each entry with its JSON, from `json` (what [`Block::json`] gave).
    fn segments<'a>(&'a self, json: &'a [u8]) -> impl Iterator<Item = (&'a Entry, &'a [u8])> {
        let mut at = 0;
        self.entries.iter().map_while(move |e| {
            let segment = json.get(at..at + e.len as usize)?;
            at += e.len as usize;
            Some((e, segment))
        })
    }

    /// Every grant, read back.
    fn grants(&self, namespace: &str) -> Vec<ConsentGrant> {
        let json = self.json();
        self.segments(&json)
            .filter_map(|(e, j)| grant_of(namespace, &e.name, j))
            .collect()
    }

    /// The block with `grant` put in (added, or in place of its older self), or taken out
    /// (`None`: the block is empty then). The old block's entries move into the new one.
    fn with(old: Option<Block>, name: &str, grant: Option<ConsentGrant>) -> Option<Block> {
        let old_json = old.as_ref().map(Block::json).unwrap_or_default();
        let old_entries = old.map(|b| b.entries.into_vec()).unwrap_or_default();
        let mut entries = Vec::with_capacity(old_entries.len() + 1);
        let mut json = Vec::with_capacity(old_json.len() + 1024);
        let mut new = grant.map(kept_json);
        let mut at = 0;
        for e in old_entries {
            let Some(segment) = old_json.get(at..at + e.len as usize) else {
                break;
            };
            at += e.len as usize;
            if new.as_ref().is_some_and(|(n, _)| n.name < e.name) {
                let (n, j) = new.take().expect("checked");
                entries.push(n);
                json.extend_from_slice(&j);
            }
            if &*e.name == name {
                continue;
            }
            entries.push(e);
            json.extend_from_slice(segment);
        }
        if let Some((n, j)) = new {
            entries.push(n);
            json.extend_from_slice(&j);
        }
        (!entries.is_empty()).then(|| Block {
            entries: entries.into_boxed_slice(),
            json: Compact::from_json(&json, DICTIONARY),
        })
    }
}

type ByNamespace = HashMap<Box<str>, Block>;

#[derive(Default)]
struct State {
    current: ByNamespace,
    /// The objects of a (re)list in progress; they replace `current` once it completes.
    relisting: Option<ByNamespace>,
    /// The grants the (re)list in progress delivered.
    relisted: Vec<Touched>,
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

fn put(by_ns: &mut ByNamespace, grant: ConsentGrant) {
    let ns = grant.namespace().unwrap_or_default();
    let name = grant.name_any();
    let block = Block::with(by_ns.remove(ns.as_str()), &name, Some(grant))
        .expect("a block with a grant put in is not empty");
    by_ns.insert(ns.into_boxed_str(), block);
}

fn remove(by_ns: &mut ByNamespace, grant: &ConsentGrant) {
    let ns = grant.namespace().unwrap_or_default();
    let Some(old) = by_ns.remove(ns.as_str()) else {
        return;
    };
    if let Some(block) = Block::with(Some(old), &grant.name_any(), None) {
        by_ns.insert(ns.into_boxed_str(), block);
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
                put(&mut state.current, grant);
                vec![touched]
            }
            watcher::Event::Delete(grant) => {
                remove(&mut state.current, &grant);
                vec![Touched::of(&grant)]
            }
            watcher::Event::Init => {
                state.relisting = Some(ByNamespace::new());
                state.relisted.clear();
                Vec::new()
            }
            watcher::Event::InitApply(grant) => {
                state.relisted.push(Touched::of(&grant));
                put(state.relisting.get_or_insert_with(Default::default), grant);
                Vec::new()
            }
            watcher::Event::InitDone => {
                // Until the list completes the old view stands; grants deleted meanwhile
                // leave nothing behind.
                // Passed on: every grant listed, and every grant of the old view the list
                // did not give back unchanged (read back for the Tenant it named).
                let listed = state.relisting.take().unwrap_or_default();
                let mut touched = std::mem::take(&mut state.relisted);
                for (ns, old) in &state.current {
                    let new = listed.get(ns);
                    if new.is_some_and(|new| new.json == old.json) {
                        continue;
                    }
                    let new_json = new.map(Block::json).unwrap_or_default();
                    let new_segments: Vec<(&Entry, &[u8])> = new
                        .map(|new| new.segments(&new_json).collect())
                        .unwrap_or_default();
                    let old_json = old.json();
                    touched.extend(
                        old.segments(&old_json)
                            .filter(|(e, segment)| {
                                !new_segments
                                    .iter()
                                    .any(|(n, j)| n.name == e.name && j == segment)
                            })
                            .filter_map(|(e, segment)| grant_of(ns, &e.name, segment))
                            .map(|g| Touched::of(&g)),
                    );
                }
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
        let Some(block) = state.current.get(namespace) else {
            return Vec::new();
        };
        block.grants(namespace).into_iter().map(Arc::new).collect()
    }

    /// One grant, packed.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<ConsentGrant>> {
        let state = self.state.read().expect("grant cache lock");
        let block = state.current.get(namespace)?;
        let json = block.json();
        let (_, segment) = block.segments(&json).find(|(e, _)| &*e.name == name)?;
        grant_of(namespace, name, segment).map(Arc::new)
    }

    /// Calls `f` with every grant, packed (read back one at a time, under the cache's read
    /// lock: `f` must not block).
    pub fn for_each(&self, mut f: impl FnMut(&ConsentGrant)) {
        let state = self.state.read().expect("grant cache lock");
        for (ns, block) in &state.current {
            block.grants(ns).iter().for_each(&mut f);
        }
    }

    /// Calls `f` with the namespace, name and state of every grant, without reading any
    /// grant back (cheap enough for the gauges, every few seconds, at any scale).
    pub fn for_each_state(&self, mut f: impl FnMut(&str, &str, Option<ConsentState>)) {
        let state = self.state.read().expect("grant cache lock");
        for (ns, block) in &state.current {
            for e in block.entries.iter() {
                f(ns, &e.name, e.state);
            }
        }
    }

    /// How many grants are in each state (`None`: no status yet).
    pub fn count_by_state(&self) -> Vec<(Option<ConsentState>, usize)> {
        let state = self.state.read().expect("grant cache lock");
        let mut counts: Vec<(Option<ConsentState>, usize)> = Vec::new();
        for e in state.current.values().flat_map(|b| b.entries.iter()) {
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
        state.current.values().map(|b| b.entries.len()).sum()
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

    fn granted() -> ConsentGrant {
        let mut g = grant("tenant-t00042", "recording", "t00042");
        let t = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_795_000_000).unwrap(),
        );
        g.metadata.uid = Some("7c0e9a52-3b1d-4f6e-8a2c-5d4b3e2f1a09".into());
        g.metadata.generation = Some(1);
        g.metadata.creation_timestamp = Some(t.clone());
        let message = "all 3 required permissions granted".to_string();
        g.status = Some(crate::crd::ConsentGrantStatus {
            observed_generation: Some(1),
            state: Some(ConsentState::Granted),
            consent_url: Some("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d".into()),
            granted_permissions: vec![String::new()],
            granted_at: Some(t.clone()),
            last_checked_at: Some(t.clone()),
            next_check_at: Some(t.clone()),
            message: Some(message),
            conditions: ["Granted", "Ready"]
                .into_iter()
                .map(
                    |ty| k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                        last_transition_time: t.clone(),
                        message: String::new(),
                        observed_generation: Some(1),
                        reason: "Granted".into(),
                        status: "True".into(),
                        type_: ty.into(),
                    },
                )
                .collect(),
            ..Default::default()
        });
        g.spec.app_id = String::new();
        g.spec.application_permissions = vec![String::new()];
        g.spec.delegated_scopes = vec![String::new()];
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

    #[test]
    fn a_tenants_granted_grants_are_kept_in_a_fraction_of_their_json_and_given_back_exactly() {
        let cache = GrantCache::default();
        let mut put_in = Vec::new();
        // Packed (see `packing`), as the watch hands them over.
        for (consent, uid) in [
            ("directory", "3e9d2a41-8c7b-4f05-9a16-2b8e4c7d0f53"),
            ("recording", "a4f1c7e2-5b3d-4e89-8c20-9d6b1f4a7e35"),
            ("calendar", "0c8b5e3f-2a7d-4b91-b6e4-7f3a9d2c5e18"),
            ("redundantRecording", "d7e2a9c4-1f6b-4c38-9e05-4a8d3b7f2c61"),
        ] {
            let mut g = granted();
            g.metadata.name = Some(consent.into());
            g.metadata.uid = Some(uid.into());
            g.spec.consent = consent.into();
            cache.apply(watcher::Event::Apply(g.clone()));
            put_in.push(g);
        }
        let state = cache.state.read().unwrap();
        let block = &state.current["tenant-t00042"];
        let json_len: usize = put_in.iter().map(|g| kept_json(g.clone()).1.len()).sum();
        assert_eq!(block.json.json_len(), json_len);
        assert!(
            block.json.compressed_len() * 6 < json_len,
            "{:?}",
            block.json
        );
        drop(state);
        put_in.sort_by_key(|g| g.name_any());
        let json = |g: &ConsentGrant| serde_json::to_value(g).unwrap();
        let given_back: Vec<_> = cache
            .in_namespace("tenant-t00042")
            .iter()
            .map(|g| json(g))
            .collect();
        assert_eq!(given_back, put_in.iter().map(json).collect::<Vec<_>>());
    }
}
