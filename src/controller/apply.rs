//! Server-side apply of owned objects, with one field manager, and a memory of what was last
//! applied so an unchanged desired object is not sent again on every reconcile.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
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
#[derive(Default)]
pub struct AppliedCache {
    applied: Mutex<HashMap<String, (u64, Instant)>>,
}

/// How long a remembered apply stays trusted: past it the object is applied again, which
/// repairs anything changed or deleted behind the operator's back.
pub const REAPPLY_AFTER: Duration = Duration::from_secs(600);

impl AppliedCache {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        )
    }

    /// Forgets everything known about objects whose key starts with `prefix` (all of a tenant's).
    pub fn forget_matching(&self, needle: &str) {
        self.applied
            .lock()
            .expect("applied cache lock")
            .retain(|k, _| !k.contains(needle));
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
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    let hash = hasher.finish();
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
