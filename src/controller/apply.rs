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
/// Objects are known by a hash of their kind, namespace and name too: the cache holds an
/// entry for each of the eight or so objects of every tenant for the life of the process, and
/// two numbers take a third of what the name as a string did.
#[derive(Default)]
pub struct AppliedCache {
    applied: Mutex<HashMap<u64, (u64, Instant)>>,
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

    pub fn len(&self) -> usize {
        self.applied.lock().expect("applied cache lock").len()
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
    let fresh = matches!(
        cache.applied.lock().expect("applied cache lock").get(&key),
        Some((h, at)) if *h == hash && at.elapsed() < REAPPLY_AFTER
    );
    if fresh {
        return Ok(false);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
    {
        Ok(_) => {
            cache
                .applied
                .lock()
                .expect("applied cache lock")
                .insert(key, (hash, Instant::now()));
            Ok(true)
        }
        Err(e) => {
            cache
                .applied
                .lock()
                .expect("applied cache lock")
                .remove(&key);
            Err(e)
        }
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
    cache
        .applied
        .lock()
        .expect("applied cache lock")
        .remove(&AppliedCache::key(obj));
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
        cache
            .applied
            .lock()
            .unwrap()
            .insert(AppliedCache::key(&cm), (1, Instant::now()));
        assert_eq!(cache.len(), 1);
        forget(&cache, &cm);
        assert!(cache.is_empty());
    }
}
