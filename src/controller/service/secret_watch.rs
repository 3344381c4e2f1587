//! The Secrets' metadata, watched one tenant namespace at a time.
//!
//! A RecordingService's client secret lives in its tenant's namespace, and the operator notices
//! a rotation from the Secret's `resourceVersion`. It may read Secrets only there (through the
//! RoleBinding the Tenant controller makes in each tenant namespace, see [`crate::rbac`]), so
//! there is no cluster-wide Secret watch: the first reconcile of a service in a namespace
//! starts a metadata-only watch of that namespace, with a reflector store of its own, and waits
//! for its first list. Every watch's events reach the controller through one merged stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};

use crate::controller::Gate;

/// How long a reconcile waits for a namespace's first list before it gives up (and is retried):
/// long enough for a slow API server, short enough that a namespace whose Secrets are not
/// readable (no RoleBinding yet) does not hold a worker.
pub const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

type SecretMeta = PartialObjectMeta<Secret>;

/// One watch to start: the namespace, the store it fills, the gate its first list opens and
/// the signal that ends it.
struct Start {
    namespace: String,
    writer: reflector::store::Writer<SecretMeta>,
    gate: Gate,
    stop: oneshot::Receiver<()>,
}

/// A namespace's watch, as the reconciles see it.
struct Watched {
    store: Store<SecretMeta>,
    gate: Gate,
    /// Dropped to end the watch.
    _stop: oneshot::Sender<()>,
}

/// The per-namespace watches and their stores.
pub struct SecretWatches {
    watched: Mutex<HashMap<String, Watched>>,
    start: mpsc::UnboundedSender<Start>,
}

/// The merged events of every namespace's watch: each Secret changed, for the controller to
/// map to the services that reference it.
pub type SecretEvents = BoxStream<'static, Result<SecretMeta, watcher::Error>>;

impl SecretWatches {
    /// The watches (none started yet) and the stream their events come out of; the stream
    /// runs the watches, so it must be polled (the controller does).
    pub fn new(client: kube::Client) -> (SecretWatches, SecretEvents) {
        let (start, started) = mpsc::unbounded::<Start>();
        let events = started
            .flat_map_unordered(None, move |start: Start| {
                let api = Api::<SecretMeta>::namespaced(client.clone(), &start.namespace);
                let gate = start.gate;
                reflector::reflector(start.writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .inspect(move |event| gate.open_on(event))
                    .touched_objects()
                    // A dropped sender ends the watch as a sent signal would.
                    .take_until(start.stop)
                    .boxed()
            })
            .boxed();
        let watches = SecretWatches {
            watched: Mutex::default(),
            start,
        };
        (watches, events)
    }

    /// The store of `namespace`'s Secrets once it has its first list, the watch started if it
    /// was not; `None` when the list did not come within [`FIRST_LIST_WAIT`].
    pub async fn synced(&self, namespace: &str) -> Option<Store<SecretMeta>> {
        let (store, gate) = {
            let mut watched = self.watched.lock().expect("secret watches lock");
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

    /// The `resourceVersion` of Secret `namespace/name` as last seen, if its namespace is
    /// watched and the Secret exists.
    pub fn version(&self, namespace: &str, name: &str) -> Option<String> {
        let watched = self.watched.lock().expect("secret watches lock");
        watched
            .get(namespace)?
            .store
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|m| m.metadata.resource_version.clone())
    }

    /// Ends the watch of `namespace` (no service is left there); the next reconcile of a
    /// service there starts it again.
    pub fn forget(&self, namespace: &str) {
        self.watched
            .lock()
            .expect("secret watches lock")
            .remove(namespace);
    }
}
