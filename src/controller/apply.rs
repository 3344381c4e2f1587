//! Server-side apply of owned objects, with one field manager, and a memory of what was last
//! applied so an unchanged desired object is not sent again on every reconcile.
//!
//! What keeps the memory true is watching what the operator owns (the metadata watches across
//! the cluster of `controller/owned.rs`, and those of each tenant namespace of
//! `controller/service/namespace_watch.rs`): each apply remembers the object's fingerprint as
//! the API server answered it (its `generation` where the kind has one, so status updates do not count, else
//! its `resourceVersion`); a watch event carrying another fingerprint, or a deletion, is a
//! change made by someone else: the apply is forgotten and the owner woken, which applies it
//! again. An object that nobody touches is therefore never sent twice.
//!
//! Two cases a watch cannot vouch for are re-applied after a long, jittered interval
//! ([`safety_interval`]): objects no watch reports (of a kind without a watch, or in a
//! namespace whose watch has not listed yet), and objects a restarted process
//! took over as applied from its owner's status (`status.appliedHash`): a change made while no
//! operator ran shows nowhere.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crd::FIELD_MANAGER;

/// Remembers, per object, a hash of the body last applied and the fingerprint the object had
/// then. Forgotten on any error touching that object, whenever a watch shows the object
/// changed or gone, and when the caller learns the object may have changed under us.
///
/// The memory holds an entry for each of the fifteen or so objects of every tenant for the
/// life of the process: an [`Entry`] of 32 bytes beside its 8-byte key (a hash of namespace and
/// name), within a map per kind, or per kind and namespace for the kinds watched one namespace
/// at a time ([`AppliedCache::watched_per_namespace`]): measured with the maps' own overhead,
/// 14.4 MiB of heap for 10,000 tenants of 17 objects (10.9 MiB of it the entries, 3.5 MiB the
/// maps per namespace of the ConfigMaps and Secrets). Hashes are kept to 32 bits: two bodies
/// of one object that share those 32 bits (one change in four billion) would have the second
/// skipped until the object is forgotten.
#[derive(Clone)]
pub struct AppliedCache {
    kinds: Arc<Mutex<HashMap<String, Objects>>>,
    began: Instant,
}

impl Default for AppliedCache {
    fn default() -> Self {
        Self {
            kinds: Arc::default(),
            began: Instant::now(),
        }
    }
}

/// The entries of one kind, kept where the watch that reports them looks.
#[derive(Default)]
struct Objects {
    /// The kind's objects when one watch across the cluster reports them (or none does).
    cluster: Scope,
    /// The kind's objects by namespace (a hash of its name) when each namespace has a watch
    /// of its own: `None` for the kinds watched across the cluster.
    namespaces: Option<HashMap<u64, Scope>>,
}

/// The objects one watch reports (or would), and how far that watch is.
#[derive(Default)]
struct Scope {
    watch: Watch,
    entries: HashMap<u64, Entry>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Watch {
    /// No watch reports these objects: applies expire after [`safety_interval`].
    #[default]
    None,
    /// A watch is listing the objects (its first list, or a list again after it fell
    /// behind).
    Listing,
    /// A watch reports every change.
    Synced,
}

/// What the memory knows of one object.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Entry {
    /// 32 bits of the hash of the body applied or taken as applied; `None` when a watch saw
    /// the object but nothing is applied.
    body: Option<u32>,
    /// When applied, in seconds since the memory began.
    at: u32,
    /// The apply was taken over from the owner's status, not sent by this process.
    assumed: bool,
    /// A list again is under way and has not shown the object yet.
    unconfirmed: bool,
    /// A watch showed the object changed by someone else since it was applied: it must be
    /// applied, not taken over from the owner's status.
    changed: bool,
    /// The object's fingerprint as the apply left it, when known.
    applied: Option<u32>,
    /// The fingerprint a watch last reported, if one did.
    seen: Option<u32>,
}

/// 32 bits of a 64-bit hash.
fn short(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// How long an apply stays trusted where no watch vouches for it: between 4 and 8 hours,
/// spread over the objects by their key so that the re-applies after a restart do not come
/// all at once. Only assumed applies and objects no watch reports expire; an object a watch
/// reports is applied again only when it changes.
pub fn safety_interval(key: u64) -> Duration {
    const BASE: u64 = 4 * 3600;
    Duration::from_secs(BASE + key % BASE)
}

/// What tells one state of an object from another: its `generation` where the kind has one
/// (a spec change; the status and the metadata do not move it), else its `resourceVersion`.
pub fn fingerprint(meta: &kube::api::ObjectMeta) -> Option<u32> {
    match (meta.generation, meta.resource_version.as_deref()) {
        (Some(generation), _) => Some(short(crate::hash64(&generation))),
        (None, Some(version)) => Some(short(crate::hash64(version))),
        (None, None) => None,
    }
}

impl Objects {
    /// Where the entries of namespace `namespace` are kept.
    fn scope(&mut self, namespace: &str) -> &mut Scope {
        match &mut self.namespaces {
            None => &mut self.cluster,
            Some(namespaces) => namespaces.entry(crate::hash64(namespace)).or_default(),
        }
    }
}

impl AppliedCache {
    fn kind_of<K: Resource<DynamicType = ()>>() -> String {
        K::kind(&()).into_owned()
    }

    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> u64 {
        crate::hash64(&(
            Self::namespace(obj),
            obj.meta().name.as_deref().unwrap_or_default(),
        ))
    }

    fn namespace<K: Resource>(obj: &K) -> &str {
        obj.meta().namespace.as_deref().unwrap_or_default()
    }

    fn seconds(&self) -> u32 {
        u32::try_from(self.began.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn with_kind<T>(&self, kind: &str, f: impl FnOnce(&mut Objects) -> T) -> T {
        let mut kinds = self.kinds.lock().expect("applied cache lock");
        if !kinds.contains_key(kind) {
            kinds.insert(kind.to_owned(), Objects::default());
        }
        f(kinds.get_mut(kind).expect("inserted"))
    }

    /// Runs `f` on the scope holding the objects of `namespace`.
    fn with<T>(&self, kind: &str, namespace: &str, f: impl FnOnce(&mut Scope) -> T) -> T {
        self.with_kind(kind, |objects| f(objects.scope(namespace)))
    }

    /// Whether the object's last apply was of a body of this hash and is still trusted.
    fn fresh(&self, kind: &str, namespace: &str, key: u64, body_hash: u64) -> bool {
        let now = self.seconds();
        self.with(kind, namespace, |scope| {
            let Some(entry) = scope.entries.get(&key) else {
                return false;
            };
            let expires = scope.watch == Watch::None || entry.assumed;
            let age = Duration::from_secs(u64::from(now.saturating_sub(entry.at)));
            entry.body == Some(short(body_hash)) && (!expires || age < safety_interval(key))
        })
    }

    fn remember(
        &self,
        kind: &str,
        namespace: &str,
        key: u64,
        body_hash: u64,
        fingerprint: Option<u32>,
    ) {
        let at = self.seconds();
        self.with(kind, namespace, |scope| {
            let entry = scope.entries.entry(key).or_default();
            *entry = Entry {
                body: Some(short(body_hash)),
                at,
                assumed: false,
                unconfirmed: false,
                changed: false,
                applied: fingerprint,
                seen: entry.seen,
            };
        });
    }

    fn forget_key(&self, kind: &str, namespace: &str, key: u64) {
        self.with(kind, namespace, |scope| scope.entries.remove(&key));
    }

    /// Whether this process applied `obj` (whatever the body) and has not forgotten it since.
    pub fn knows<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        self.with(&Self::kind_of::<K>(), Self::namespace(obj), |scope| {
            scope
                .entries
                .get(&Self::key(obj))
                .is_some_and(|e| e.body.is_some())
        })
    }

    /// The objects remembered (applied, assumed or seen by a watch).
    pub fn len(&self) -> usize {
        let kinds = self.kinds.lock().expect("applied cache lock");
        kinds
            .values()
            .map(|o| {
                o.cluster.entries.len()
                    + o.namespaces
                        .iter()
                        .flat_map(|n| n.values())
                        .map(|s| s.entries.len())
                        .sum::<usize>()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Declares that objects of kind `K` are watched one namespace at a time (each watch's
    /// events given to [`observe_in`](Self::observe_in)): from now on each namespace's
    /// objects are confirmed by that namespace's list, and trusted only while it is watched.
    /// Whatever was remembered of the kind before is forgotten (applied again once).
    pub fn watched_per_namespace<K: Resource<DynamicType = ()>>(&self) {
        self.with_kind(&Self::kind_of::<K>(), |objects| {
            objects.cluster = Scope::default();
            objects.namespaces.get_or_insert_with(HashMap::default);
        });
    }

    /// Forgets what was applied of kind `K` in `namespace`, and that a watch reports it there:
    /// for a namespace whose watch ended.
    pub fn unwatch<K: Resource<DynamicType = ()>>(&self, namespace: &str) {
        self.with_kind(&Self::kind_of::<K>(), |objects| {
            match &mut objects.namespaces {
                Some(namespaces) => {
                    namespaces.remove(&crate::hash64(namespace));
                }
                None => objects.cluster = Scope::default(),
            }
        });
    }

    /// Takes in one event of a watch of kind `K` across the cluster (every object of the kind
    /// the operator applies, or a superset). Calls `changed` with each object that was
    /// applied and has changed or gone since: its apply is forgotten, and its owner should be
    /// reconciled.
    ///
    /// An event of the operator's own apply can come before the apply's answer: the apply is
    /// then forgotten too, and the owner's reconcile (after the answer, which remembers it
    /// again) finds it applied. Stale events of an earlier apply cost one apply that changes
    /// nothing.
    pub fn observe<K: Resource<DynamicType = ()>>(
        &self,
        event: &watcher::Event<K>,
        changed: impl FnMut(&K),
    ) {
        self.observe_scope(None, event, changed);
    }

    /// [`observe`](Self::observe) for the watch of one namespace, of a kind
    /// [`watched_per_namespace`](Self::watched_per_namespace).
    pub fn observe_in<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        event: &watcher::Event<K>,
        changed: impl FnMut(&K),
    ) {
        self.observe_scope(Some(namespace), event, changed);
    }

    /// `watched`: the namespace of a namespace's watch, `None` for a watch across the
    /// cluster.
    fn observe_scope<K: Resource<DynamicType = ()>>(
        &self,
        watched: Option<&str>,
        event: &watcher::Event<K>,
        mut changed: impl FnMut(&K),
    ) {
        let kind = Self::kind_of::<K>();
        let listing = |objects: &mut Objects, f: &mut dyn FnMut(&mut Scope)| match watched {
            Some(namespace) => f(objects.scope(namespace)),
            None => f(&mut objects.cluster),
        };
        match event {
            watcher::Event::Init => self.with_kind(&kind, |objects| {
                listing(objects, &mut |scope| {
                    if scope.watch == Watch::Synced {
                        // Listed again after the watch fell behind: what the list does not
                        // show went while the watch was away.
                        for entry in scope.entries.values_mut() {
                            entry.unconfirmed = true;
                        }
                    }
                    scope.watch = Watch::Listing;
                })
            }),
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let listed = matches!(event, watcher::Event::InitApply(_));
                let print = fingerprint(obj.meta());
                let moved = self.with(&kind, Self::namespace(obj), |scope| {
                    let entry = scope.entries.entry(Self::key(obj)).or_default();
                    entry.unconfirmed = false;
                    entry.seen = print;
                    if entry.body.is_none() || entry.applied == print {
                        false
                    } else if entry.applied.is_none() && entry.assumed && listed {
                        // Taken over from a predecessor: as the list shows it.
                        entry.applied = print;
                        false
                    } else {
                        *entry = Entry {
                            changed: true,
                            seen: print,
                            ..Entry::default()
                        };
                        true
                    }
                });
                if moved {
                    changed(obj);
                }
            }
            watcher::Event::Delete(obj) => {
                let applied = self.with(&kind, Self::namespace(obj), |scope| {
                    scope
                        .entries
                        .remove(&Self::key(obj))
                        .is_some_and(|e| e.body.is_some())
                });
                if applied {
                    changed(obj);
                }
            }
            watcher::Event::InitDone => self.with_kind(&kind, |objects| {
                listing(objects, &mut |scope| {
                    // An object taken over as applied that the list did not show is gone
                    // (deleted while no operator ran, or while the watch was away): applied
                    // again at its owner's next reconcile.
                    scope.entries.retain(|_, e| {
                        let gone = e.body.is_some()
                            && (e.unconfirmed || (e.assumed && e.applied.is_none()));
                        !gone
                    });
                    scope.watch = Watch::Synced;
                })
            }),
        }
    }
}

/// Applies `obj` with server-side apply (forcing ownership of the fields the operator owns)
/// unless the very same body was applied before and the object has not changed since.
/// Returns whether a request was sent.
pub async fn apply<K>(api: &Api<K>, obj: &K, cache: &AppliedCache) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let kind = AppliedCache::kind_of::<K>();
    let namespace = AppliedCache::namespace(obj);
    let key = AppliedCache::key(obj);
    let body = serde_json::to_vec(obj).expect("desired objects serialize");
    let hash = crate::hash64(&body);
    if cache.fresh(&kind, namespace, key, hash) {
        return Ok(false);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
    {
        Ok(answer) => {
            cache.remember(&kind, namespace, key, hash, fingerprint(answer.meta()));
            Ok(true)
        }
        Err(e) => {
            cache.forget_key(&kind, namespace, key);
            Err(e)
        }
    }
}

/// Takes `obj` as applied with this very body, unless the cache remembers an apply of it
/// already: for objects a live record says were applied as they are desired (a Tenant's
/// `status.appliedHash` equal to [`digest`] of its children), so that a restarted process
/// does not send them again.
///
/// Not when a watch of the kind has listed the objects and did not show this one (it is
/// gone: applied again), nor when a watch showed it changed by someone else. An assumed apply
/// is checked against the watch's list and, since a change made while no operator ran shows
/// nowhere, re-applied after [`safety_interval`].
pub fn assume_applied<K>(cache: &AppliedCache, obj: &K)
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let key = AppliedCache::key(obj);
    let body = serde_json::to_vec(obj).expect("desired objects serialize");
    let body = short(crate::hash64(&body));
    let at = cache.seconds();
    let kind = AppliedCache::kind_of::<K>();
    cache.with(&kind, AppliedCache::namespace(obj), |scope| {
        let listed = scope.watch == Watch::Synced;
        let entry = scope.entries.get(&key).copied().unwrap_or_default();
        if entry.body.is_some() || entry.changed || (listed && entry.seen.is_none()) {
            return;
        }
        scope.entries.insert(
            key,
            Entry {
                body: Some(body),
                at,
                assumed: true,
                applied: entry.seen,
                seen: entry.seen,
                ..Entry::default()
            },
        );
    });
}

/// A digest of the bodies of the objects one owner applies, to keep in the owner's status:
/// 128 bits of SHA-256 of each body in order, in hex. Stable across processes and builds (a
/// restarted operator compares it with the digest of what it would apply now), unlike the
/// cache's in-process hash.
pub fn digest<'a>(bodies: impl IntoIterator<Item = &'a dyn Body>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for body in bodies {
        let bytes = body.json();
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An object of any kind whose applied body is its JSON, for one [`digest`] over several kinds.
pub trait Body {
    fn json(&self) -> Vec<u8>;
}

impl<T: Serialize> Body for T {
    fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("desired objects serialize")
    }
}

/// [`apply`] for a namespaced object, in the namespace its metadata names.
pub async fn apply_in<K>(
    client: &kube::Client,
    obj: &K,
    cache: &AppliedCache,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = obj.namespace().unwrap_or_default();
    apply(&Api::namespaced(client.clone(), &namespace), obj, cache).await
}

/// Forgets one object, e.g. after deleting it.
pub fn forget<K: Resource<DynamicType = ()>>(cache: &AppliedCache, obj: &K) {
    cache.forget_key(
        &AppliedCache::kind_of::<K>(),
        AppliedCache::namespace(obj),
        AppliedCache::key(obj),
    );
}

/// The controller owner reference pointing at `owner`, for garbage collection.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    owner
        .controller_owner_ref(&())
        .expect("owners read from the API server have a name and uid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn config_map(namespace: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn versioned(namespace: &str, name: &str, version: &str) -> ConfigMap {
        let mut cm = config_map(namespace, name);
        cm.metadata.resource_version = Some(version.into());
        cm
    }

    const CM: &str = "ConfigMap";
    const NS: &str = "tenant-a";

    fn body_hash(obj: &impl Serialize) -> u64 {
        crate::hash64(&serde_json::to_vec(obj).unwrap())
    }

    #[test]
    fn objects_are_told_apart_by_kind_namespace_and_name() {
        let a = AppliedCache::key(&config_map("tenant-a", "bot"));
        assert_eq!(a, AppliedCache::key(&config_map("tenant-a", "bot")));
        assert_ne!(a, AppliedCache::key(&config_map("tenant-b", "bot")));
        assert_ne!(a, AppliedCache::key(&config_map("tenant-a", "bot-paired")));
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let cache = AppliedCache::default();
        cache.remember(
            CM,
            NS,
            AppliedCache::key(&config_map("", "bot")),
            1 << 40,
            Some(1),
        );
        assert!(!cache.knows(&namespace), "a map per kind");
        assert!(cache.knows(&config_map("", "bot")));
    }

    #[test]
    fn a_forgotten_object_is_applied_again() {
        let cache = AppliedCache::default();
        let cm = config_map("tenant-a", "bot");
        cache.remember(CM, NS, AppliedCache::key(&cm), 1 << 40, Some(3));
        assert!(cache.fresh(CM, NS, AppliedCache::key(&cm), 1 << 40));
        assert!(
            !cache.fresh(CM, NS, AppliedCache::key(&cm), 2 << 40),
            "another body"
        );
        assert_eq!(cache.len(), 1);
        forget(&cache, &cm);
        assert!(cache.is_empty());
    }

    #[test]
    fn an_object_changed_or_deleted_by_someone_else_is_applied_again_and_its_owner_told() {
        let cache = AppliedCache::default();
        let key = AppliedCache::key(&config_map("tenant-a", "bot"));
        cache.observe::<ConfigMap>(&watcher::Event::Init, |_| {});
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        // The operator applies; its answer says version 5, then its own event comes.
        cache.remember(
            CM,
            NS,
            key,
            1 << 40,
            fingerprint(&versioned("", "", "5").metadata),
        );
        let mut woken = Vec::new();
        let own = watcher::Event::Apply(versioned("tenant-a", "bot", "5"));
        cache.observe(&own, |cm| woken.push(cm.name_any()));
        assert!(woken.is_empty(), "its own write");
        assert!(cache.fresh(CM, NS, key, 1 << 40), "not sent again");
        // Someone edits it: version 6.
        let edited = watcher::Event::Apply(versioned("tenant-a", "bot", "6"));
        cache.observe(&edited, |cm| woken.push(cm.name_any()));
        assert_eq!(woken, ["bot"]);
        assert!(!cache.fresh(CM, NS, key, 1 << 40), "applied again");
        // Applied again (version 7), then deleted.
        cache.remember(
            CM,
            NS,
            key,
            1 << 40,
            fingerprint(&versioned("", "", "7").metadata),
        );
        let deleted = watcher::Event::Delete(versioned("tenant-a", "bot", "7"));
        cache.observe(&deleted, |cm| woken.push(cm.name_any()));
        assert_eq!(woken, ["bot", "bot"]);
        assert!(!cache.fresh(CM, NS, key, 1 << 40));
        // The delete of an object it never applied wakes nobody.
        let other = watcher::Event::Delete(versioned("tenant-a", "other", "2"));
        cache.observe(&other, |cm| woken.push(cm.name_any()));
        assert_eq!(woken.len(), 2);
    }

    #[test]
    fn an_own_event_before_the_answer_costs_a_reconcile_not_an_apply() {
        let cache = AppliedCache::default();
        let key = AppliedCache::key(&config_map("tenant-a", "bot"));
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        cache.remember(
            CM,
            NS,
            key,
            1 << 40,
            fingerprint(&versioned("", "", "5").metadata),
        );
        // A new body applied (version 6); its event overtakes the answer.
        let mut woken = 0;
        let early = watcher::Event::Apply(versioned("tenant-a", "bot", "6"));
        cache.observe(&early, |_| woken += 1);
        assert_eq!(woken, 1);
        cache.remember(
            CM,
            NS,
            key,
            2 << 40,
            fingerprint(&versioned("", "", "6").metadata),
        );
        assert!(cache.fresh(CM, NS, key, 2 << 40));
    }

    #[test]
    fn an_assumed_apply_is_checked_against_the_watch_list() {
        let cache = AppliedCache::default();
        let (here, gone, late) = (
            config_map("tenant-a", "here"),
            config_map("tenant-a", "gone"),
            config_map("tenant-a", "late"),
        );
        // A restarted process: the Tenant's digest vouches for all three before the list.
        assume_applied(&cache, &here);
        assume_applied(&cache, &gone);
        assert!(cache.fresh(CM, NS, AppliedCache::key(&here), body_hash(&here)));
        cache.observe::<ConfigMap>(&watcher::Event::Init, |_| {});
        let listed = watcher::Event::InitApply(versioned("tenant-a", "here", "4"));
        let mut woken = 0;
        cache.observe(&listed, |_| woken += 1);
        let listed_late = watcher::Event::InitApply(versioned("tenant-a", "late", "9"));
        cache.observe(&listed_late, |_| woken += 1);
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        assert_eq!(woken, 0);
        assert!(cache.fresh(CM, NS, AppliedCache::key(&here), body_hash(&here)));
        assert!(
            !cache.fresh(CM, NS, AppliedCache::key(&gone), body_hash(&gone)),
            "not in the list: deleted while no operator ran"
        );
        // After the list: one it showed is taken as applied, one it did not is applied.
        assume_applied(&cache, &late);
        assume_applied(&cache, &gone);
        assert!(cache.fresh(CM, NS, AppliedCache::key(&late), body_hash(&late)));
        assert!(!cache.fresh(CM, NS, AppliedCache::key(&gone), body_hash(&gone)));
        // A change after the list is repaired like any other, whatever the owner's digest
        // says.
        let edited = watcher::Event::Apply(versioned("tenant-a", "here", "5"));
        cache.observe(&edited, |_| woken += 1);
        assert_eq!(woken, 1);
        assume_applied(&cache, &here);
        assert!(!cache.fresh(CM, NS, AppliedCache::key(&here), body_hash(&here)));
        // What this process applied itself stands.
        let own = config_map("tenant-a", "own");
        cache.remember(CM, NS, AppliedCache::key(&own), 7 << 40, Some(1));
        assume_applied(&cache, &own);
        assert!(cache.fresh(CM, NS, AppliedCache::key(&own), 7 << 40));
    }

    #[test]
    fn what_a_list_again_does_not_show_is_forgotten() {
        let cache = AppliedCache::default();
        let key = AppliedCache::key(&config_map("tenant-a", "bot"));
        let kept = AppliedCache::key(&config_map("tenant-a", "kept"));
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        let v3 = fingerprint(&versioned("", "", "3").metadata);
        cache.remember(CM, NS, key, 1 << 40, v3);
        cache.remember(CM, NS, kept, 1 << 40, v3);
        // The watch fell behind and lists again: only `kept` is there.
        cache.observe::<ConfigMap>(&watcher::Event::Init, |_| {});
        let listed = watcher::Event::InitApply(versioned("tenant-a", "kept", "3"));
        cache.observe(&listed, |_| {});
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        assert!(!cache.fresh(CM, NS, key, 1 << 40));
        assert!(cache.fresh(CM, NS, kept, 1 << 40));
    }

    #[test]
    fn only_applies_no_watch_vouches_for_expire() {
        let key = AppliedCache::key(&config_map("tenant-a", "bot"));
        assert!(safety_interval(key) >= Duration::from_secs(4 * 3600));
        assert!(safety_interval(key) < Duration::from_secs(8 * 3600));
        // A memory that began 9 hours ago, with an apply made then.
        let cache = AppliedCache {
            began: Instant::now() - Duration::from_secs(9 * 3600),
            ..AppliedCache::default()
        };
        cache.remember(CM, NS, key, 1 << 40, Some(1));
        cache.with(CM, NS, |o| o.entries.get_mut(&key).unwrap().at = 0);
        assert!(!cache.fresh(CM, NS, key, 1 << 40), "no watch of the kind");
        cache.observe::<ConfigMap>(&watcher::Event::InitDone, |_| {});
        assert!(cache.fresh(CM, NS, key, 1 << 40), "a watch reports it");
    }

    #[test]
    fn each_namespace_watch_vouches_for_its_own_namespace_only() {
        let cache = AppliedCache::default();
        cache.watched_per_namespace::<ConfigMap>();
        let (a, gone) = (
            config_map("tenant-a", "bot"),
            config_map("tenant-a", "gone"),
        );
        let b = config_map("tenant-b", "bot");
        // A restarted process takes all three over before any namespace is listed.
        for cm in [&a, &gone, &b] {
            assume_applied(&cache, cm);
        }
        // tenant-a's watch lists `bot` only.
        cache.observe_in::<ConfigMap>("tenant-a", &watcher::Event::Init, |_| {});
        let listed = watcher::Event::InitApply(versioned("tenant-a", "bot", "4"));
        cache.observe_in("tenant-a", &listed, |_| panic!("as taken over"));
        cache.observe_in::<ConfigMap>("tenant-a", &watcher::Event::InitDone, |_| {});
        let fresh = |cm: &ConfigMap| {
            let ns = cm.metadata.namespace.as_deref().unwrap();
            cache.fresh(CM, ns, AppliedCache::key(cm), body_hash(cm))
        };
        assert!(fresh(&a));
        assert!(!fresh(&gone), "not in its namespace's list");
        assert!(
            fresh(&b),
            "tenant-b's list has not come: nothing said of it"
        );
        // tenant-b's watch lists nothing: its object is gone; tenant-a's stays.
        cache.observe_in::<ConfigMap>("tenant-b", &watcher::Event::Init, |_| {});
        cache.observe_in::<ConfigMap>("tenant-b", &watcher::Event::InitDone, |_| {});
        assert!(!fresh(&b));
        assert!(fresh(&a));
        // A watch that ends takes its namespace's memory with it.
        cache.unwatch::<ConfigMap>("tenant-a");
        assert!(!fresh(&a));
    }

    #[test]
    fn an_apply_in_a_namespace_not_watched_yet_expires_until_its_watch_lists_it() {
        let cache = AppliedCache {
            began: Instant::now() - Duration::from_secs(9 * 3600),
            ..AppliedCache::default()
        };
        cache.watched_per_namespace::<ConfigMap>();
        let cm = config_map("tenant-a", "bot");
        let key = AppliedCache::key(&cm);
        let v3 = fingerprint(&versioned("", "", "3").metadata);
        cache.remember(CM, NS, key, 1 << 40, v3);
        cache.with(CM, NS, |o| o.entries.get_mut(&key).unwrap().at = 0);
        // Another namespace's watch says nothing of this one.
        cache.observe_in::<ConfigMap>("tenant-b", &watcher::Event::InitDone, |_| {});
        assert!(
            !cache.fresh(CM, NS, key, 1 << 40),
            "no watch vouches for it"
        );
        cache.remember(CM, NS, key, 1 << 40, v3);
        cache.with(CM, NS, |o| o.entries.get_mut(&key).unwrap().at = 0);
        cache.observe_in::<ConfigMap>(NS, &watcher::Event::Init, |_| {});
        let listed = watcher::Event::InitApply(versioned(NS, "bot", "3"));
        cache.observe_in(NS, &listed, |_| panic!("as applied"));
        cache.observe_in::<ConfigMap>(NS, &watcher::Event::InitDone, |_| {});
        assert!(
            cache.fresh(CM, NS, key, 1 << 40),
            "its namespace's watch does"
        );
        // Deleted by someone else: its owner is told.
        let mut woken = 0;
        let deleted = watcher::Event::Delete(versioned(NS, "bot", "3"));
        cache.observe_in(NS, &deleted, |_| woken += 1);
        assert_eq!(woken, 1);
        assert!(!cache.fresh(CM, NS, key, 1 << 40));
    }

    #[test]
    fn the_digest_changes_with_any_body_and_their_order() {
        let (a, b) = (config_map("tenant-a", "a"), config_map("tenant-a", "b"));
        let ab = digest([&a as &dyn Body, &b]);
        assert_eq!(ab.len(), 32);
        assert_eq!(ab, digest([&a as &dyn Body, &b]));
        assert_ne!(ab, digest([&b as &dyn Body, &a]));
        assert_ne!(ab, digest([&a as &dyn Body]));
    }
}
