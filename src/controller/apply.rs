//! Server-side apply of owned objects, with one field manager, and a memory of what was last
//! applied so an unchanged desired object is not sent again on every reconcile.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crd::FIELD_MANAGER;

/// Remembers a hash of the last successfully applied body per object. Forgotten on any error
/// touching that object and whenever the caller learns the object may have changed under us.
///
/// The cache holds an entry for each of the eight or so objects of every tenant for the life
/// of the process, so an entry is two numbers, 16 bytes: a hash of the object's kind,
/// namespace and name, and 32 bits of a hash of the body beside the seconds since the cache
/// began when it was applied (a name as a string, a 64-bit body hash and an `Instant` took
/// twice that). Two bodies of one object that share those 32 bits (one change in four
/// billion) would have the second skipped until [`REAPPLY_AFTER`] has passed.
pub struct AppliedCache {
    applied: Mutex<HashMap<u64, u64>>,
    began: Instant,
}

impl Default for AppliedCache {
    fn default() -> Self {
        Self {
            applied: Mutex::default(),
            began: Instant::now(),
        }
    }
}

/// How long a remembered apply stays trusted: past it the object is applied again, which
/// repairs anything changed or deleted behind the operator's back.
pub const REAPPLY_AFTER: Duration = Duration::from_secs(600);

impl AppliedCache {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> u64 {
        crate::hash64(&(
            K::kind(&()),
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        ))
    }

    /// Whether the object's last apply was of a body of this hash, less than
    /// [`REAPPLY_AFTER`] ago.
    fn fresh(&self, key: u64, body_hash: u64) -> bool {
        let Some(entry) = self.lock().get(&key).copied() else {
            return false;
        };
        let applied_at = Duration::from_secs(entry & u64::from(u32::MAX));
        entry >> 32 == body_hash >> 32
            && self.began.elapsed().saturating_sub(applied_at) < REAPPLY_AFTER
    }

    fn remember(&self, key: u64, body_hash: u64) {
        let now = u32::try_from(self.began.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.lock()
            .insert(key, (body_hash >> 32 << 32) | u64::from(now));
    }

    fn forget_key(&self, key: u64) {
        self.lock().remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.applied.lock().expect("applied cache lock")
    }

    /// Whether this process applied `obj` (whatever the body) and has not forgotten it since.
    pub fn knows<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        self.lock().contains_key(&Self::key(obj))
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies `obj` with server-side apply (forcing ownership of the fields the operator owns)
/// unless the very same body was applied before. Returns whether a request was sent.
pub async fn apply<K>(api: &Api<K>, obj: &K, cache: &AppliedCache) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let key = AppliedCache::key(obj);
    let body = serde_json::to_vec(obj).expect("desired objects serialize");
    let hash = crate::hash64(&body);
    if cache.fresh(key, hash) {
        return Ok(false);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
    {
        Ok(_) => {
            cache.remember(key, hash);
            Ok(true)
        }
        Err(e) => {
            cache.forget_key(key);
            Err(e)
        }
    }
}

/// Takes `obj` as applied with this very body, unless the cache remembers an apply of it
/// already: for objects a live record says were applied as they are desired (a Tenant's
/// `status.appliedHash` equal to [`digest`] of its children), so that a restarted process
/// does not send them again.
///
/// Like a remembered apply, the assumption lasts [`REAPPLY_AFTER`]: then the object is
/// applied again, which repairs a change made while no operator ran.
pub fn assume_applied<K>(cache: &AppliedCache, obj: &K)
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let key = AppliedCache::key(obj);
    if cache.lock().contains_key(&key) {
        return;
    }
    let body = serde_json::to_vec(obj).expect("desired objects serialize");
    cache.remember(key, crate::hash64(&body));
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
    cache.forget_key(AppliedCache::key(obj));
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
        assert_ne!(
            AppliedCache::key(&config_map("", "bot")),
            AppliedCache::key(&namespace)
        );
    }

    #[test]
    fn a_forgotten_object_is_applied_again() {
        let cache = AppliedCache::default();
        let cm = config_map("tenant-a", "bot");
        cache.remember(AppliedCache::key(&cm), 1 << 40);
        assert!(cache.fresh(AppliedCache::key(&cm), 1 << 40));
        assert!(
            !cache.fresh(AppliedCache::key(&cm), 2 << 40),
            "another body"
        );
        assert_eq!(cache.len(), 1);
        forget(&cache, &cm);
        assert!(cache.is_empty());
    }

    #[test]
    fn an_assumed_apply_skips_the_same_body_and_keeps_what_was_remembered() {
        let cache = AppliedCache::default();
        let cm = config_map("tenant-a", "bot");
        assume_applied(&cache, &cm);
        let body = serde_json::to_vec(&cm).unwrap();
        assert!(cache.fresh(AppliedCache::key(&cm), crate::hash64(&body)));
        // What this process applied itself stands.
        let other = config_map("tenant-a", "other");
        cache.remember(AppliedCache::key(&other), 7 << 40);
        assume_applied(&cache, &other);
        assert!(cache.fresh(AppliedCache::key(&other), 7 << 40));
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
