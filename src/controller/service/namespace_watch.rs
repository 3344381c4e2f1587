//! Metadata-only watches of one kind, one tenant namespace at a time: the Secrets and the
//! ConfigMaps of the namespaces with a RecordingService.
//!
//! The operator may read Secrets and ConfigMaps only in tenant namespaces (through the
//! RoleBinding the Tenant controller makes in each, see [`crate::rbac`]), so neither kind is
//! watched across the cluster. A reconcile of a service starts its namespace's watches before
//! it applies anything there ([`NamespaceWatches::synced`]: RoleBinding → watch → apply), each
//! with a reflector store of its own, and waits for their first lists. Their events do two
//! things:
//!
//! - they feed the [`AppliedCache`] with [`AppliedCache::observe_in`], as the watches across
//!   the cluster of `controller/owned.rs` do for the other owned kinds: an object the operator
//!   applied (a service's ConfigMaps, its bots' credentials Secret) that someone else changed
//!   or deleted is forgotten, and whoever the caller names is told, to apply it again; what
//!   nobody touched is never sent again;
//! - every object touched comes out of one merged stream, for the controller to map to the
//!   services that read it (a Secret holding a client secret or a certificate).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::controller::apply::AppliedCache;
use crate::controller::Gate;

/// How long a reconcile waits for a namespace's first list before it gives up (and is retried):
/// long enough for a slow API server, short enough that a namespace whose objects are not
/// readable (no RoleBinding yet) does not hold a worker.
pub const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// Told of each object the operator applied that someone else changed or deleted.
pub type Changed<K> = Arc<dyn Fn(&PartialObjectMeta<K>) + Send + Sync>;

/// One watch to start: the namespace, the store it fills, the gate its first list opens and
/// the signal that ends it.
struct Start<K: Resource<DynamicType = ()> + Clone + 'static> {
    namespace: String,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
    gate: Gate,
    stop: oneshot::Receiver<()>,
}

/// A namespace's watch, as the reconciles see it.
struct Watched<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<PartialObjectMeta<K>>,
    gate: Gate,
    /// Dropped to end the watch.
    _stop: oneshot::Sender<()>,
}

/// The per-namespace watches of kind `K` and their stores.
pub struct NamespaceWatches<K: Resource<DynamicType = ()> + Clone + 'static> {
    watched: Mutex<HashMap<String, Watched<K>>>,
    start: mpsc::UnboundedSender<Start<K>>,
    applied: AppliedCache,
}

/// The Secrets' metadata in the tenant namespaces with a service.
pub type SecretWatches = NamespaceWatches<k8s_openapi::api::core::v1::Secret>;
/// The metadata of the ConfigMaps the operator owns in the tenant namespaces with a service.
pub type ConfigMapWatches = NamespaceWatches<k8s_openapi::api::core::v1::ConfigMap>;

/// The merged events of every namespace's watch of one kind: each object touched.
pub type Touched<K> = BoxStream<'static, Result<PartialObjectMeta<K>, watcher::Error>>;

/// The merged events of the Secret watches.
pub type SecretEvents = Touched<k8s_openapi::api::core::v1::Secret>;

impl<K> NamespaceWatches<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// The watches (none started yet), selecting objects by `labels` (every object of the kind
    /// when `None`), and the stream their events come out of; the stream runs the watches, so
    /// it must be polled. From now on `applied` keeps what it remembers of `K` by namespace.
    pub fn new(
        client: kube::Client,
        labels: Option<&str>,
        applied: &AppliedCache,
        changed: Changed<K>,
    ) -> (NamespaceWatches<K>, Touched<K>) {
        applied.watched_per_namespace::<K>();
        let config = match labels {
            Some(labels) => watcher::Config::default().labels(labels),
            None => watcher::Config::default(),
        }
        .any_semantic();
        let (start, started) = mpsc::unbounded::<Start<K>>();
        let events = started
            .flat_map_unordered(None, {
                let applied = applied.clone();
                move |start: Start<K>| {
                    let api =
                        Api::<PartialObjectMeta<K>>::namespaced(client.clone(), &start.namespace);
                    let (applied, changed, gate) = (applied.clone(), changed.clone(), start.gate);
                    let namespace = start.namespace;
                    reflector::reflector(start.writer, watcher(api, config.clone()))
                        .default_backoff()
                        .inspect(move |event| {
                            // The memory takes in the list before the gate lets a reconcile
                            // through to apply.
                            if let Ok(event) = event {
                                applied.observe_in(&namespace, event, |obj| changed(obj));
                            }
                            gate.open_on(event);
                        })
                        .touched_objects()
                        // A dropped sender ends the watch as a sent signal would.
                        .take_until(start.stop)
                        .boxed()
                }
            })
            .boxed();
        let watches = NamespaceWatches {
            watched: Mutex::default(),
            start,
            applied: applied.clone(),
        };
        (watches, events)
    }

    /// The store of `namespace`'s objects once it has its first list, the watch started if it
    /// was not; `None` when the list did not come within [`FIRST_LIST_WAIT`].
    pub async fn synced(&self, namespace: &str) -> Option<Store<PartialObjectMeta<K>>> {
        let (store, gate) = {
            let mut watched = self.watched.lock().expect("namespace watches lock");
            let w = watched.entry(namespace.to_string()).or_insert_with(|| {
                let (store, writer) = reflector::store();
                let gate = Gate::default();
                let (stop_tx, stop) = oneshot::channel();
                // The receiver lives as long as the controller's stream; after that nothing
                // reads the stores either.
                let _ = self.start.unbounded_send(Start {
                    namespace: namespace.to_string(),
                    writer,
                    gate: gate.clone(),
                    stop,
                });
                Watched {
                    store,
                    gate,
                    _stop: stop_tx,
                }
            });
            (w.store.clone(), w.gate.clone())
        };
        tokio::time::timeout(FIRST_LIST_WAIT, gate.wait())
            .await
            .ok()
            .map(|()| store)
    }

    /// The `resourceVersion` of object `namespace/name` as last seen, if its namespace is
    /// watched and the object exists.
    pub fn version(&self, namespace: &str, name: &str) -> Option<String> {
        let watched = self.watched.lock().expect("namespace watches lock");
        watched
            .get(namespace)?
            .store
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|m| m.metadata.resource_version.clone())
    }

    /// Ends the watch of `namespace` (no service is left there), and the applied memory's
    /// trust in it; the next reconcile of a service there starts it again.
    pub fn forget(&self, namespace: &str) {
        let removed = self
            .watched
            .lock()
            .expect("namespace watches lock")
            .remove(namespace);
        if removed.is_some() {
            self.applied.unwatch::<K>(namespace);
        }
    }
}

/// [`Changed`] that reconciles the RecordingService controlling the object (sent to
/// `services`, which the controller reads).
pub fn reconcile_owner<K: Resource<DynamicType = ()>>(
    services: mpsc::UnboundedSender<ObjectRef<crate::crd::RecordingService>>,
) -> Changed<K> {
    Arc::new(move |obj| {
        if let Some(service) = crate::controller::owned::controlling_service(obj.meta()) {
            // Fails only when the controllers are shutting down.
            let _ = services.unbounded_send(service);
        }
    })
}

/// Waits until the Secrets and ConfigMaps of `namespace` are watched, before anything is
/// applied there: an object applied before its namespace's watch lists it could be changed or
/// deleted unseen.
pub(super) async fn namespace_watched(
    namespace: &str,
    sctx: &super::ServiceContext,
) -> Result<(), super::Error> {
    let (secrets, config_maps) = (&sctx.secrets, &sctx.config_maps);
    let (secrets, config_maps) =
        futures::join!(secrets.synced(namespace), config_maps.synced(namespace));
    match (secrets, config_maps) {
        (Some(_), Some(_)) => Ok(()),
        (secrets, _) => Err(not_listed(
            namespace,
            if secrets.is_none() {
                "Secrets"
            } else {
                "ConfigMaps"
            },
        )),
    }
}

/// The error of a namespace whose objects of kind `kinds` could not be listed in time.
pub(super) fn not_listed(namespace: &str, kinds: &str) -> super::Error {
    super::Error::Config(format!(
        "the {kinds} of namespace {namespace} could not be listed within {} s (does the \
         operator's RoleBinding exist there yet?)",
        FIRST_LIST_WAIT.as_secs()
    ))
}
