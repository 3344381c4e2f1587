//! Kubernetes API simulator: an HTTPS server on loopback that behaves like kube-apiserver for
//! what the operator (kube-rs clients, controllers, watchers, server-side apply, events,
//! leases) and `kubectl` do. Test and demo infrastructure only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sim::kube::SimError> {
//! let sim = sim::kube::KubeSim::start(Default::default()).await?;
//! let client = sim.client().await;
//! # let _ = client;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! How it is put together, one module per concern: `store` (objects, the global
//! resourceVersion, change history), `resources` (built-in kinds, CRD registration,
//! legacy and aggregated discovery and OpenAPI v3 documents), `cluster` (every verb, finalizers, namespaces,
//! garbage collection, the Deployment loop), `admission` (metadata rules and the built-in
//! kinds' defaults and validation), `convert` (the two Event shapes), `schema` (pruning, defaults,
//! structural validation, CEL, validation ratcheting), `patch` and `apply` (patches and field ownership),
//! `table` (server-side printing), `watch`, `http` (routing and content negotiation),
//! `protobuf` (protobuf bodies of built-in kinds, through the k8s-pb bindings), `tls`, `rbac`
//! (tokens, impersonation, RBAC authorization).
//!
//! Not simulated (the real server does these): CBOR bodies (415); protobuf watch streams
//! (a watch is answered in JSON whatever the client lists first, which client-go reads), Tables
//! and PartialObjectMetadata in protobuf (JSON instead), protobuf for custom resources (415,
//! as on a real server), and Go's pointer/omitempty distinction for numbers and booleans read
//! from protobuf (a zero number or `false` is kept in the stored JSON, where the real server
//! would leave a non-pointer zero out); lists at an exact old resourceVersion (410 instead of a snapshot); strict field validation of built-in kinds (their schemas are
//! not known; unknown fields are kept); CRD conversion webhooks and schema differences between
//! served versions (objects are only relabelled); `allOf`/`anyOf`/`oneOf`/`not` and formats in
//! schemas; validation ratcheting in full (on an update the value checks of the schema are
//! skipped on unchanged values, but wrong types, missing required fields and duplicates in sets
//! are still reported there, and CEL rules ratchet by top-level field: a rule on an unchanged
//! value below a changed `spec` still answers); server-side apply keys built-in lists on one merge key each (the real server keys
//! container ports on port and protocol) and does not track element ownership separately
//! from the element's fields; foreground deletion removes dependents synchronously instead
//! of through a `foregroundDeletion` finalizer; garbage collection and namespace cleanup are
//! synchronous; RBAC covers Roles/ClusterRoles and their bindings for service-account tokens
//! and impersonated users (the harness token is `system:masters`), but not aggregated
//! ClusterRoles, the bootstrap roles beyond self access reviews, or non-resource URL rules
//! (discovery is open to every authenticated user); admission webhooks,
//! ValidatingAdmissionPolicy, `/openapi/v2` (v3 is served, which is what kubectl reads); Pods, ReplicaSets and the other controllers (only the Deployment
//! status loop runs); ResourceQuota enforces object counts and `requests.storage` on create but
//! compute resources (no Pods) are not counted and `status.used` is not maintained; the
//! `kubernetes` Service and `kube-root-ca.crt` ConfigMaps; watch
//! bookmarks come every 5 s rather than about once a minute; list continue tokens page over the
//! current state rather than a snapshot.

mod admission;
mod apply;
mod cluster;
mod convert;
mod error;
mod http;
mod patch;
mod protobuf;
mod rbac;
mod resources;
mod schema;
mod selectors;
mod store;
mod table;
mod tls;
mod watch;
mod workloads;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

pub use error::{ApiError, SimError};
pub use tls::Connections;

use cluster::Cluster;
use http::Shared;
use store::Store;

/// How the simulated cluster behaves.
#[derive(Clone)]
pub struct KubeSimConfig {
    /// The bearer token clients must present (401 otherwise).
    pub token: String,
    /// How long after a Deployment is created or changed its replicas report ready.
    pub deployment_ready_delay: Duration,
    /// Serve HTTPS with the bundled test CA (the default: `kubectl` sends tokens only over
    /// TLS); `false` serves plain HTTP.
    pub tls: bool,
    /// Offer HTTP/2 by ALPN besides HTTP/1.1, as a real API server does (the default);
    /// `false` plays a server or proxy that speaks HTTP/1.1 only.
    pub http2: bool,
}

/// The token stays out of debug output.
impl std::fmt::Debug for KubeSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSimConfig")
            .field("token", &"<redacted>")
            .field("deployment_ready_delay", &self.deployment_ready_delay)
            .field("tls", &self.tls)
            .field("http2", &self.http2)
            .finish()
    }
}

impl Default for KubeSimConfig {
    fn default() -> Self {
        KubeSimConfig {
            token: format!("kube-sim-{}", uuid::Uuid::new_v4().simple()),
            deployment_ready_delay: Duration::from_millis(300),
            tls: true,
            http2: true,
        }
    }
}

/// Make the next `count` requests for `resource` (the plural, `tenants/status` for the status
/// subresource, or `*`), optionally only for one `verb` (`get`, `list`, `watch`, `create`,
/// `update`, `patch`, `delete`, `deletecollection`), fail with HTTP `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub resource: String,
    pub verb: Option<String>,
    pub status: u16,
    pub count: u32,
}

struct Serving {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    http2: bool,
    serving: tokio::sync::Mutex<Option<Serving>>,
    controller: JoinHandle<()>,
}

/// A running simulator; cheap to clone.
#[derive(Clone)]
pub struct KubeSim {
    inner: Arc<Inner>,
}

/// How often the simulated controllers (the Deployment loop) look at the cluster.
const CONTROLLER_TICK: Duration = Duration::from_millis(20);

impl KubeSim {
    /// Start on 127.0.0.1 with an ephemeral port.
    pub async fn start(config: KubeSimConfig) -> Result<KubeSim, SimError> {
        KubeSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: KubeSimConfig) -> Result<KubeSim, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(SimError::LocalAddr)?;
        let (changes, _) = broadcast::channel(4096);
        let cluster = Cluster::new(Store::new(changes, 0), config.deployment_ready_delay);
        let (drop_watches, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            cluster: Mutex::new(cluster),
            token: config.token.clone(),
            tokens: Mutex::new(rbac::Tokens::new(&config.token)),
            server_address: addr.to_string(),
            faults: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            connections: Default::default(),
            drop_watches,
        });
        let controller = tokio::spawn(run_controllers(Arc::downgrade(&shared)));
        let serving = serve(listener, shared.clone(), config.tls, config.http2);
        Ok(KubeSim {
            inner: Arc::new(Inner {
                shared,
                addr,
                tls: config.tls,
                http2: config.http2,
                serving: tokio::sync::Mutex::new(Some(serving)),
                controller,
            }),
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.inner.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.inner.addr)
    }

    /// The PEM of the CA that issued the server's certificate (when serving TLS).
    pub fn ca_pem(&self) -> &'static str {
        tls::CA_PEM
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn token(&self) -> &str {
        &self.inner.shared.token
    }

    /// A kubeconfig with one cluster, one token user and a current context.
    pub fn kubeconfig_yaml(&self) -> String {
        let ca = if self.inner.tls {
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD.encode(tls::CA_PEM);
            format!("    certificate-authority-data: {data}\n")
        } else {
            String::new()
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {}\n{ca}users:\n- name: kube-sim\n  user:\n    token: {}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\npreferences: {{}}\n",
            self.url(),
            self.inner.shared.token
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A client configured through the kubeconfig, exactly as a user's would be.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig_yaml()).await
    }

    /// A token that authenticates as the service account `namespace/name`, whose requests are
    /// authorized by the RBAC objects in the cluster (the admin token bypasses RBAC, as a
    /// `system:masters` member does).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.inner
            .shared
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .service_account_token(namespace, name)
    }

    /// A kubeconfig for the service account (see [`KubeSim::service_account_token`]).
    pub fn service_account_kubeconfig_yaml(&self, namespace: &str, name: &str) -> String {
        let token = self.service_account_token(namespace, name);
        self.kubeconfig_yaml()
            .replace(&self.inner.shared.token, &token)
    }

    /// A client that acts as the service account, subject to RBAC.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        client_from(&self.service_account_kubeconfig_yaml(namespace, name)).await
    }
}

async fn client_from(kubeconfig_yaml: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml)
        .expect("the simulator writes a valid kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("the simulator's kubeconfig loads");
    kube::Client::try_from(config).expect("a client for the simulator")
}

impl KubeSim {
    /// Keep a Deployment's status unavailable (or release it).
    pub fn hold_deployment_unavailable(&self, namespace: &str, name: &str, hold: bool) {
        let mut cluster = self.inner.shared.lock();
        let key = (namespace.to_string(), name.to_string());
        if hold {
            cluster.held.insert(key);
        } else {
            cluster.held.remove(&key);
        }
    }

    /// Keep a StatefulSet with no instance ready (or release it).
    pub fn hold_stateful_set_unavailable(&self, namespace: &str, name: &str, hold: bool) {
        let mut cluster = self.inner.shared.lock();
        let key = (namespace.to_string(), name.to_string());
        if hold {
            cluster.workloads.held.insert(key);
        } else {
            cluster.workloads.held.remove(&key);
        }
    }

    /// Mark a StatefulSet instance (pod name) as having calls in progress: stopping it waits
    /// (its `preStop` hook still running) until cleared.
    pub fn set_instance_busy(&self, namespace: &str, pod: &str, busy: bool) {
        let mut cluster = self.inner.shared.lock();
        let key = (namespace.to_string(), pod.to_string());
        if busy {
            cluster.workloads.busy.insert(key);
        } else {
            cluster.workloads.busy.remove(&key);
        }
    }

    pub fn inject_failures(&self, fault: FaultSpec) {
        self.inner
            .shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fault);
    }

    /// Close every open watch stream (clients see the stream end and re-watch).
    pub fn drop_watches(&self) {
        self.inner.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forget the change history: watches from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.inner.shared.lock().store.compact();
    }

    /// TLS connections accepted so far (since the simulator started, across restarts), by
    /// the protocol agreed on.
    pub fn connections(&self) -> Connections {
        self.inner.shared.connections.snapshot()
    }

    /// API requests served so far, by (verb, resource); the status subresource counts as
    /// `plural/status`. Discovery requests are not counted.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.inner
            .shared
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stored object as JSON; `kind_or_plural` is the Kind (`Tenant`) or resource
    /// (`tenants`); `namespace` empty for cluster-scoped objects.
    pub fn get_json(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let cluster = self.inner.shared.lock();
        let (group, version) = resources::split_api_version(api_version);
        let rt = cluster
            .registry
            .find(group, version, kind_or_plural)
            .or_else(|| cluster.registry.find_kind(api_version, kind_or_plural))?;
        cluster.get(&rt, namespace, name).ok()
    }

    /// Stop serving and start again on the same address, with the stored objects kept (an
    /// API server restart) or wiped (a new cluster). Open watches and connections are cut.
    pub async fn restart(&self, keep_state: bool) {
        let mut serving = self.inner.serving.lock().await;
        if let Some(s) = serving.take() {
            stop(s, &self.inner.shared).await;
        }
        if !keep_state {
            self.inner.shared.lock().reset();
        }
        let listener = bind_again(self.inner.addr).await;
        *serving = Some(serve(
            listener,
            self.inner.shared.clone(),
            self.inner.tls,
            self.inner.http2,
        ));
    }

    pub async fn shutdown(self) {
        if let Some(s) = self.inner.serving.lock().await.take() {
            stop(s, &self.inner.shared).await;
        }
        self.inner.controller.abort();
    }
}

impl Drop for Inner {
    /// The last handle gone: stop serving and stop the controllers.
    fn drop(&mut self) {
        self.controller.abort();
        if let Some(serving) = self.serving.get_mut().take() {
            serving.task.abort();
        }
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if attempts < 100 => {
                attempts += 1;
                tracing::debug!(%addr, error = %e, "re-binding the simulator's address");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot re-bind {addr} after restart: {e}"),
        }
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>, with_tls: bool, http2: bool) -> Serving {
    let router = axum::Router::new()
        .fallback(http::handle)
        .with_state(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        let result = if with_tls {
            let listener = tls::TlsListener {
                tcp: listener,
                acceptor: tls::acceptor(http2),
                shared,
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        } else {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "kube-sim server stopped with an error");
        }
    });
    Serving { stop, task }
}

async fn stop(serving: Serving, shared: &Shared) {
    shared.drop_watches.send_modify(|n| *n += 1);
    let _ = serving.stop.send(());
    let mut task = serving.task;
    if tokio::time::timeout(Duration::from_secs(2), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

async fn run_controllers(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(CONTROLLER_TICK).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut cluster = shared.lock();
        let now = Instant::now();
        cluster.reconcile_deployments(now);
        cluster.reconcile_stateful_sets(now);
        cluster.reconcile_load_balancers();
    }
}
