//! Watches of what the operator owns, so that what it applied is applied again when, and only
//! when, someone else changed or deleted it.
//!
//! One metadata-only watch across the cluster per kind a Tenant or a RecordingService owns
//! (besides the ConsentGrants and the bot StatefulSets, whose watches the controllers have
//! already, and the ConfigMaps and Secrets, watched one tenant namespace at a time by the
//! service controller: `service/namespace_watch.rs`), selected by the label every owned object
//! carries: the events carry no spec or data, and
//! nothing is kept of them but the fingerprint in the [`AppliedCache`] (see
//! [`AppliedCache::observe`]). An event that the operator's own applies do not explain forgets
//! the apply and wakes the owner: a RecordingService through its controller owner reference, a
//! Tenant through its owner reference or, for a namespace the Tenant does not own (kept on
//! deletion), its tenant label.

use std::fmt::Debug;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

use super::apply::AppliedCache;
use super::wakes::Wakes;
use crate::crd::{RecordingService, TENANT_LABEL};

/// The label selector of the watches: every object the operator applies carries it.
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=recording-operator";

/// Whom to wake when an owned object changed.
#[derive(Clone)]
pub struct Owners {
    pub tenants: Wakes,
    pub services: futures::channel::mpsc::UnboundedSender<ObjectRef<RecordingService>>,
}

impl Owners {
    /// Wakes the owner of `obj`; nothing for an object whose owner is not known.
    pub fn wake<K: Resource>(&self, obj: &K) {
        let meta = obj.meta();
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        match controller {
            Some(owner) if owner.kind == "RecordingService" => {
                if let Some(service) = controlling_service(meta) {
                    // Fails only when the controllers are shutting down.
                    let _ = self.services.unbounded_send(service);
                }
            }
            Some(owner) if owner.kind == "Tenant" => self.tenants.wake(&owner.name),
            _ => {
                if let Some(tenant) = meta.labels.as_ref().and_then(|l| l.get(TENANT_LABEL)) {
                    self.tenants.wake(tenant);
                }
            }
        }
    }
}

/// The RecordingService an object's controller owner reference names, if it is one.
pub fn controlling_service(meta: &ObjectMeta) -> Option<ObjectRef<RecordingService>> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "RecordingService")?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// Runs the watches of every owned kind; forever (each watch backs off and retries).
pub fn watch(
    client: &kube::Client,
    applied: &AppliedCache,
    owners: &Owners,
) -> BoxFuture<'static, ()> {
    let watches = vec![
        watch_kind::<Namespace>(client, applied, owners),
        watch_kind::<RoleBinding>(client, applied, owners),
        watch_kind::<ResourceQuota>(client, applied, owners),
        watch_kind::<NetworkPolicy>(client, applied, owners),
        watch_kind::<ServiceAccount>(client, applied, owners),
        watch_kind::<Service>(client, applied, owners),
        watch_kind::<PodDisruptionBudget>(client, applied, owners),
    ];
    futures::future::join_all(watches).map(|_| ()).boxed()
}

/// The metadata-only watch of one kind, feeding the applied cache.
fn watch_kind<K>(
    client: &kube::Client,
    applied: &AppliedCache,
    owners: &Owners,
) -> BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (applied, owners) = (applied.clone(), owners.clone());
    watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        watcher::Config::default()
            .labels(OWNED_SELECTOR)
            .any_semantic(),
    )
    .default_backoff()
    .for_each(move |event| {
        // A failed watch backs off and lists again; the cache keeps its last view.
        if let Ok(event) = event {
            applied.observe(&event, |obj| owners.wake(obj));
        }
        std::future::ready(())
    })
    .boxed()
}
