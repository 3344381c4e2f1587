//! The RecordingService controller: from a recording service of a tenant to its recording
//! bots, and the service's status.
//!
//! One reconcile: validate the spec (the CRD's own rules, the Tenant exists, the service
//! lives in that tenant's namespace, its name fits the bot objects' names, its instances fit
//! the media port range) → read the credentials the bots get from the operator (platform
//! client secrets, each bot's container SAS) and the instances' public addresses not in the
//! configuration → compute the desired objects from the service, the Tenant and the
//! configuration (ServiceAccount, ConfigMaps with the bot configuration and the instances'
//! addresses, the signalling Service, a LoadBalancer Service per instance, NetworkPolicy,
//! StatefulSet `<name>-hue`, for Pro also `<name>-hue-paired`, one PodDisruptionBudget over all
//! bot pods, the credentials Secret) → server-side apply them and delete owned bots and
//! instance Services no longer desired (Pro → Essentials, fewer replicas), and a bot
//! Deployment of an earlier version once its StatefulSet is ready → when the service brings its
//! own app registration, check its credentials with a client-credentials token and read its
//! client secrets' expiry through Graph (daily, and whenever the Secret changes) → compute the
//! status from the StatefulSets' status → write it only when it changed, with an Event per
//! condition transition.
//!
//! Conditions: `Authenticated` (only with `spec.appRegistration`), `SecretExpiry` (only once
//! authenticated: `True` while the soonest client secret is 30 days or more from expiry,
//! `False` with reason `ClientSecretExpiring` below), `BotsReady`, `Ready` (the tenant is
//! Ready, the bots are available, and the app registration authenticates when used), and
//! `Stalled` while the spec is invalid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Future, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{
    Deployment, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity, PodOS, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector, Service,
    ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
    WindowsSecurityContextOptions,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::apply::{apply, apply_in, forget, owner_reference};
use super::index::NamespaceIndex;
use super::{owned_labels, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY, RECORDING_POLICY};
use crate::config::{OperatorConfig, SecretRef, RECORDING_CONSENT};
use crate::crd::service::{AppRegistration, BotStatus};
use crate::crd::validation::{validate_recording_service, Violation, Violations};
use crate::crd::{
    License, RecordingService, RecordingServiceStatus, Tenant, FIELD_MANAGER, RECHECK_ANNOTATION,
};
use crate::graph::application::{self, password_credentials, soonest_future_expiry};
use crate::graph::client::GraphClient;
use crate::graph::GraphError;

pub use crate::conditions::{AUTHENTICATED, BOTS_READY, CONFLICT, SECRET_EXPIRY, STALLED};

/// `app.kubernetes.io/name` of everything a recording service owns.
pub const BOT_APP_NAME: &str = "recording-bot";
/// Key of the client secret inside the referenced Secret when the spec names none.
pub const DEFAULT_CLIENT_SECRET_KEY: &str = "clientSecret";
/// The bot's call-signalling (HTTPS notification) port.
pub const SIGNALING_PORT: i32 = 9441;
/// The bot's application-hosted media port.
pub const MEDIA_PORT: i32 = 8445;
/// A client secret expiring within this many days is a warning.
pub const SECRET_WARNING_DAYS: i64 = 30;
/// File name of the bot configuration inside the ConfigMap and the bot's file system.
pub const BOT_CONFIG_FILE: &str = "bot-config.json";
/// Pod template annotation carrying a hash of the bot configuration, so a changed
/// configuration rolls the bots.
pub const CONFIG_HASH_ANNOTATION: &str = "recording.m365.io/config-hash";

/// Where the bot configuration is mounted (the bots are Windows containers).
const CONFIG_DIR: &str = "C:\\recording-bot\\config";
/// Where the instances' media addresses are mounted.
const MEDIA_DIR: &str = "C:\\recording-bot\\media";
/// The bot's scratch space.
const TMP_DIR: &str = "C:\\tmp";
/// Where a bot finds its recordings' claim, with the PVC storage backend.
pub const RECORDINGS_DIR: &str = "C:\\recording-bot\\recordings";
/// How often a service is looked at again even when nothing changed.
const RESYNC: Duration = Duration::from_secs(600);
/// How soon an instance address not yet known is looked for again.
const ADDRESS_RECHECK: Duration = Duration::from_secs(20);
/// How often a working app registration is checked again (client secret expiry counts days).
const AUTH_RECHECK: Duration = Duration::from_secs(24 * 3600);
/// How soon an expiry that could not be read for a passing reason is read again.
const EXPIRY_RETRY: Duration = Duration::from_secs(300);

mod auth;
mod bot_config;
mod desired;
mod media;
mod namespace_watch;
mod pod;
mod policy;
mod prune;
pub mod rollout;
mod status;
mod thumbprint;
mod webhook;
mod workload;

pub use auth::*;
pub use bot_config::*;
pub use desired::*;
pub use media::*;
pub use namespace_watch::*;
pub use pod::*;
pub use policy::*;
pub use status::*;
pub use webhook::*;
pub use workload::NODE_PUBLIC_IP_ANNOTATION;

// ---------------------------------------------------------------------------------------------
// The async shell
// ---------------------------------------------------------------------------------------------

/// What the service controller keeps beside the shared [`Context`].
pub struct ServiceContext {
    pub shared: Arc<Context>,
    /// The operator's bot StatefulSets, as last seen.
    pub stateful_sets: Store<StatefulSet>,
    /// Their names by namespace.
    stateful_sets_by_namespace: NamespaceIndex,
    /// The Secrets' metadata (never their data) in each tenant namespace with a service, as
    /// last seen.
    pub secrets: SecretWatches,
    /// The metadata of the ConfigMaps the operator owns in each tenant namespace with a
    /// service.
    pub config_maps: ConfigMapWatches,
    /// Open once the StatefulSet and Secret stores have their first list (the services'
    /// store is ready before any reconcile runs: kube-runtime holds them until then).
    stateful_sets_synced: super::Gate,
    graph: GraphClient,
    /// The last app registration check per service (by object key).
    checks: Mutex<HashMap<String, AuthMemo>>,
    /// Checks that could not get an answer, per service: not tried again before `retry_at`.
    failing: Mutex<HashMap<String, FailedCheck>>,
    /// The bot rollouts under way, within `bots.rolloutBudget`.
    rollouts: rollout::Rollouts,
    /// What the workload shell remembers per service (instance Services, migration).
    workload: workload::Memory,
    /// cert-manager's API served or not, and the webhook objects last pruned per service.
    webhook: WebhookMemo,
}

impl ServiceContext {
    /// Returns once every cache a RecordingService reconcile reads has its first list: the
    /// shared ones and the bot StatefulSets. (The Secrets and ConfigMaps of the service's
    /// namespace are waited for before anything is applied there: [`NamespaceWatches::synced`].)
    /// See
    /// [`Context::caches_synced`].
    pub async fn caches_synced(&self) {
        self.shared.caches_synced().await;
        self.stateful_sets_synced.wait().await;
    }
}

/// What brings a RecordingService to its reconcile besides its own changes.
pub struct Triggers<T, S, W> {
    /// A subscription to the shared Tenant watch: a Tenant's change reconciles its services.
    pub tenants: T,
    /// A subscription to the shared RecordingService watch (its store is
    /// [`Caches::services`](super::Caches)).
    pub services: S,
    /// Services whose siblings changed what the rules across services read.
    pub siblings: W,
}

/// Builds the RecordingService controller; the returned future runs it until `shutdown`.
pub fn controller<T, S, W>(
    ctx: Arc<Context>,
    triggers: Triggers<T, S, W>,
    config: controller::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send
where
    T: Stream<Item = Arc<Tenant>> + Send + 'static,
    S: Stream<Item = Arc<RecordingService>> + Send + 'static,
    W: Stream<Item = ObjectRef<RecordingService>> + Send + 'static,
{
    let client = ctx.client.clone();

    let (stateful_sets, stateful_set_writer) = reflector::store::<StatefulSet>();
    let bot_selector = format!(
        "app.kubernetes.io/name={BOT_APP_NAME},app.kubernetes.io/managed-by=recording-operator"
    );
    let stateful_sets_synced = super::Gate::default();
    let stateful_sets_by_namespace = NamespaceIndex::default();
    let stateful_set_events = reflector::reflector(
        stateful_set_writer,
        watcher(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default().labels(&bot_selector),
        ),
    )
    .default_backoff()
    .inspect({
        let synced = stateful_sets_synced.clone();
        let applied = ctx.caches.applied.clone();
        let by_namespace = stateful_sets_by_namespace.clone();
        move |event| {
            synced.open_on(event);
            // A bot changed or deleted by someone else is applied again (its service is
            // reconciled: the controller owns the bots).
            if let Ok(event) = event {
                applied.observe(event, |_| {});
                by_namespace.apply(event);
            }
        }
    })
    .touched_objects();

    // The namespaces' Secrets (all: a service reads some) and owned ConfigMaps; what the
    // operator applied there and someone else changed reconciles its service.
    let (repairs, repaired) = futures::channel::mpsc::unbounded();
    let applied = &ctx.caches.applied;
    let (secrets, secret_events) = SecretWatches::new(
        client.clone(),
        None,
        applied,
        reconcile_owner(repairs.clone()),
    );
    let (config_maps, config_map_events) = ConfigMapWatches::new(
        client.clone(),
        Some(super::owned::OWNED_SELECTOR),
        applied,
        reconcile_owner(repairs),
    );

    let graph_endpoint = ctx
        .config
        .cloud
        .graph_endpoint()
        .expect("the Graph endpoint was validated when the consent checker was built");
    let graph = GraphClient::new(
        crate::graph::http_client(ctx.config.polling.request_timeout),
        &graph_endpoint,
        ctx.checker.counters(),
    );

    let services = ctx.caches.services.clone();
    let controller = Controller::for_shared_stream(triggers.services, services.clone());
    let index = ctx.caches.service_index.clone();
    let services_of_tenant = {
        let index = index.clone();
        move |tenant: Arc<Tenant>| index.naming(&tenant.name_any())
    };
    let services_of_secret = {
        let services = services.clone();
        // The webhook certificate's Secret (its thumbprint is in the bots' configuration).
        let tls_secret = ctx
            .config
            .webhook
            .as_ref()
            .and_then(|w| w.tls.secret_name.clone());
        move |secret: PartialObjectMeta<Secret>| {
            let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            let certificate = tls_secret.as_deref() == Some(name.as_str());
            let certificate_of = name.strip_suffix(crate::webhook::CERTIFICATE_SECRET_SUFFIX);
            index
                .in_namespace(&namespace)
                .into_iter()
                .map(|service| ObjectRef::new(&service).within(&namespace))
                .filter(|service| {
                    certificate
                        || certificate_of == Some(service.name.as_str())
                        || services.get(service).is_some_and(|s| {
                            s.spec
                                .app_registration
                                .as_ref()
                                .is_some_and(|r| r.client_secret_ref.name == name)
                        })
                })
                .collect::<Vec<_>>()
        }
    };

    let (rollouts, budget_freed) = rollout::Rollouts::new(ctx.config.bots.rollout_budget);
    let sctx = Arc::new(ServiceContext {
        shared: ctx,
        stateful_sets,
        stateful_sets_by_namespace,
        secrets,
        config_maps,
        stateful_sets_synced,
        graph,
        checks: Mutex::new(HashMap::new()),
        failing: Mutex::new(HashMap::new()),
        rollouts,
        workload: workload::Memory::default(),
        webhook: WebhookMemo::default(),
    });
    controller
        .owns_stream(stateful_set_events)
        .watches_shared_stream(triggers.tenants, services_of_tenant)
        .reconcile_on(triggers.siblings)
        .watches_stream(secret_events, services_of_secret)
        // (The ConfigMap watches run in this stream.)
        .reconcile_on(futures::stream::select(
            repaired,
            config_map_events.filter_map(|_| std::future::ready(None)),
        ))
        // Services whose bot change waited for the rollout budget, as it frees up.
        .reconcile_on(budget_freed.map(|owner| {
            let (namespace, name) = owner.split_once('/').unwrap_or_default();
            ObjectRef::new(name).within(namespace)
        }))
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, sctx)
        .for_each(|_| std::future::ready(()))
}

/// Reconciles one RecordingService.
pub async fn reconcile(
    service: Arc<RecordingService>,
    sctx: Arc<ServiceContext>,
) -> Result<Action> {
    sctx.caches_synced().await;
    let timer = sctx.shared.metrics.reconcile_started("recordingservice");
    let result = reconcile_inner(service, &sctx).await;
    if let Err(e) = &result {
        timer.error(e.metric_label());
    }
    result
}

async fn reconcile_inner(service: Arc<RecordingService>, sctx: &ServiceContext) -> Result<Action> {
    let ctx = sctx.shared.as_ref();
    forget_gone_services(sctx);
    let key = super::object_key(service.as_ref());
    if service.meta().deletion_timestamp.is_some() {
        // Owned objects go with the service through garbage collection.
        sctx.checks.lock().expect("auth checks lock").remove(&key);
        sctx.workload.forget(&key);
        sctx.webhook.forget(&key);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();

    // 1. The spec and the tenant.
    let tenant = ctx.tenant(&service.spec.tenant_ref);
    let tenant_id = tenant.as_deref().and_then(Tenant::entra_tenant_id);
    let valid = match validate(&service, tenant.as_deref()) {
        Ok(()) => allowed_by_policy(&service, sctx).await?,
        invalid => invalid,
    };
    let checked = valid.and_then(|()| {
        let workload = tenant
            .as_deref()
            .map(|t| check_workload(&service, t.spec.license, &ctx.config.bots))
            .unwrap_or_default();
        if workload.is_empty() {
            Ok(())
        } else {
            Err(Violations(workload))
        }
    });
    let blocker = match (checked, &tenant_id) {
        (Err(v), _) => Some(Blocker::InvalidSpec(v)),
        (Ok(()), _) => {
            let namespace = service.namespace().unwrap_or_default();
            let siblings = ctx.caches.services_of(&namespace, &service.spec.tenant_ref);
            rule_blocker(&service, tenant.as_deref(), &siblings)
        }
    }
    .or_else(|| {
        tenant_id.is_none().then(|| {
            Blocker::TenantIdUnknown(format!(
                "waiting for Tenant {:?} to learn its Entra tenant id",
                service.spec.tenant_ref
            ))
        })
    });

    // 2. The bots, only for a valid service of a tenant with a known tenant id.
    let mut bots = Vec::new();
    let mut waiting_for_budget = false;
    let mut addresses_pending = false;
    let mut applied_hash = service.status.as_ref().and_then(|s| s.applied_hash.clone());
    if let (None, Some(tenant), Some(tenant_id)) = (&blocker, &tenant, &tenant_id) {
        let namespace = service.namespace().unwrap_or_default();
        namespace_watched(&namespace, sctx).await?;
        let app_secret_version = service
            .spec
            .app_registration
            .as_ref()
            .and_then(|r| client_secret_version(&service, r, sctx));
        let credentials = workload::bot_credentials(&service, tenant, tenant_id, sctx).await?;
        let version = workload::credentials_version(app_secret_version.as_deref(), &credentials);
        let addresses = workload::observe_addresses(&service, tenant, sctx).await?;
        let certificates_served = sctx.webhook.served(&ctx.client).await;
        let webhook = webhook_objects(&service, tenant, &ctx.config, certificates_served);
        let thumbprint = thumbprint::certificate_thumbprint(&service, &webhook, sctx).await?;
        let children = desired_objects_with(
            &service,
            tenant,
            tenant_id,
            version.as_deref(),
            &ctx.config,
            &addresses,
            thumbprint.as_deref(),
        );
        // Applied as they are desired now (by this process or one before it): not sent again.
        let digest = {
            use super::apply::{digest, Body};
            digest([&children.digest() as &dyn Body, &webhook.digest()])
        };
        let as_desired = service
            .status
            .as_ref()
            .and_then(|s| s.applied_hash.as_ref())
            == Some(&digest);
        if as_desired {
            children.assume_applied(&ctx.caches.applied);
            webhook.assume_applied(&ctx.caches.applied);
        }
        workload::apply_credentials(&service, &children, credentials, as_desired, sctx).await?;
        waiting_for_budget = provision(&service, &children, sctx).await?;
        // A bot waiting for the rollout budget is not applied as desired yet.
        if !waiting_for_budget {
            applied_hash = Some(digest);
        }
        provision_webhook(&service, &webhook, &sctx.webhook, ctx).await?;
        bots = observe_bots(&children.stateful_sets, |name| {
            sctx.stateful_sets
                .get(&ObjectRef::new(name).within(&service.namespace().unwrap_or_default()))
        });
        workload::retire_deployments(&service, &bots, sctx).await?;
        addresses_pending = workload::addresses_pending(&children);
    }

    // 3. The known app registration.
    let mut next_check = None;
    let auth = match (&service.spec.app_registration, &blocker) {
        (None, _) => AuthState::NotUsed,
        (Some(_), Some(Blocker::InvalidSpec(_))) => {
            AuthState::NotChecked("the credentials are checked once the spec is valid".into())
        }
        (Some(_), Some(Blocker::Conflict(_) | Blocker::OverLicence(_))) => {
            AuthState::NotChecked("the credentials are checked once the service may run".into())
        }
        (Some(registration), _) => match tenant_id.as_deref() {
            None => AuthState::NotChecked(
                "the credentials are checked once the Tenant knows its Entra tenant id".into(),
            ),
            // Refused without asking Entra: another tenant's app is never the customer's.
            Some(id) => match wrong_tenant(registration, id) {
                Some(refused) => AuthState::Checked(refused),
                None => {
                    let (state, wait) = authenticate(&service, registration, sctx).await;
                    next_check = Some(wait);
                    state
                }
            },
        },
    };

    sctx.shared
        .metrics
        .client_secret(&service, secret_expiry(&service, &auth));

    // 4. Status.
    let observed = Observed {
        service: &service,
        tenant: tenant.as_deref(),
        blocker: blocker.clone(),
        bots,
        auth,
        policy: tenant
            .as_deref()
            .filter(|_| blocker.is_none())
            .map(|t| policy_steps(&service, t, &ctx.config)),
        now,
    };
    let mut status = compute_status(&observed);
    status.applied_hash = applied_hash;
    write_status(&service, status, ctx).await?;

    ctx.backoff.succeeded(&key, Retried::Reconcile);
    Ok(match blocker {
        // The Tenant and Secret watches bring the service back when something changes (and
        // the service watch when a sibling does).
        Some(Blocker::InvalidSpec(_) | Blocker::Conflict(_) | Blocker::OverLicence(_)) => {
            Action::await_change()
        }
        _ => {
            // An instance address still unknown (a Service waiting for its IP, a pod for its
            // node) is looked for again soon: nothing else brings the service back for it.
            let base = if addresses_pending {
                ADDRESS_RECHECK
            } else {
                RESYNC
            };
            let resync = super::jittered(base, 0.1);
            // Woken when the rollout budget frees up; the wait covers a lost wake-up.
            let budget = waiting_for_budget.then_some(rollout::RETRY_FOR_BUDGET);
            let wait = [next_check, budget]
                .into_iter()
                .flatten()
                .fold(resync, Duration::min);
            Action::requeue(wait)
        }
    })
}

/// The operator's `botPolicy` applied to a valid service ([`policy_violations`]). The labels
/// of the Secret its bots would mount come from the namespace's Secret watch, which this waits
/// for (a Secret not seen yet would also change the bots' configuration hash and roll them).
async fn allowed_by_policy(
    service: &RecordingService,
    sctx: &ServiceContext,
) -> Result<Result<(), Violations>> {
    let mut labels = None;
    if let Some(registration) = &service.spec.app_registration {
        let namespace = service.namespace().unwrap_or_default();
        let Some(secrets) = sctx.secrets.synced(&namespace).await else {
            return Err(not_listed(&namespace, "Secrets"));
        };
        labels = secrets
            .get(&ObjectRef::new(&registration.client_secret_ref.name).within(&namespace))
            .map(|secret| secret.labels().clone());
    }
    let config = &sctx.shared.config;
    let violations = policy_violations(
        service,
        &config.bot_policy,
        &config.bots.default_image,
        labels.as_ref(),
    );
    Ok(if violations.is_empty() {
        Ok(())
    } else {
        Err(Violations(violations))
    })
}

/// Applies the service's objects and deletes the bots it no longer needs (Pro → Essentials
/// removes the paired bot) and the instance Services of instances no longer there. Returns
/// whether a bot's change waits for the rollout budget.
async fn provision(
    service: &RecordingService,
    children: &Children,
    sctx: &ServiceContext,
) -> Result<bool> {
    let ctx = sctx.shared.as_ref();
    let client = ctx.client.clone();
    let ns = service.namespace().unwrap_or_default();
    apply_in(&client, &children.service_account, &ctx.caches.applied).await?;
    apply_in(&client, &children.config_map, &ctx.caches.applied).await?;
    apply_in(&client, &children.media_config_map, &ctx.caches.applied).await?;
    apply_in(&client, &children.service, &ctx.caches.applied).await?;
    for instance_service in &children.instance_services {
        apply_in(&client, instance_service, &ctx.caches.applied).await?;
    }
    workload::remove_stale_instance_services(service, children, sctx).await?;
    apply_in(&client, &children.network_policy, &ctx.caches.applied).await?;
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let owner = format!("{ns}/{}", service.name_any());
    let mut waiting = false;
    for stateful_set in &children.stateful_sets {
        // Deleted behind the operator's back (or going): apply it again now, not when the
        // remembered apply expires.
        let live = sctx
            .stateful_sets
            .get(&ObjectRef::new(&stateful_set.name_any()).within(&ns))
            .filter(|s| s.metadata.deletion_timestamp.is_none());
        if live.is_none() {
            forget(&ctx.caches.applied, stateful_set);
        }
        // A change to a running bot waits for the rollout budget (see `rollout`).
        let mut stateful_set = stateful_set.clone();
        let digest = rollout::stamp(&mut stateful_set);
        let observed = live.as_deref().map(|s| rollout::Live::of(s, settled(s)));
        let key = format!("{ns}/{}", stateful_set.name_any());
        if !sctx
            .rollouts
            .admit(&key, &owner, &digest, observed.as_ref())
        {
            waiting = true;
            continue;
        }
        apply(&stateful_sets, &stateful_set, &ctx.caches.applied).await?;
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    for budget in &children.disruption_budgets {
        if apply(&budgets, budget, &ctx.caches.applied).await? {
            // Earlier versions kept a budget per bot; the paired bot's would now cover its
            // pods a second time and block their eviction. Looked for whenever the budget is
            // applied (once per service and process, and after changes).
            delete_if_present(&budgets, &BotRole::Paired.object_name(&service.name_any())).await?;
        }
    }

    let wanted: BTreeSet<String> = children
        .stateful_sets
        .iter()
        .map(|d| d.name_any())
        .collect();
    let uid = service.uid();
    let in_namespace = sctx.stateful_sets_by_namespace.names_in(&ns);
    let in_namespace = in_namespace
        .iter()
        .filter_map(|name| sctx.stateful_sets.get(&ObjectRef::new(name).within(&ns)));
    let stale = in_namespace.filter(|d| {
        d.metadata.deletion_timestamp.is_none()
            && !wanted.contains(&d.name_any())
            && d.owner_references()
                .iter()
                .any(|r| Some(&r.uid) == uid.as_ref())
    });
    for stateful_set in stale {
        let name = stateful_set.name_any();
        let deleted = delete_if_present(&stateful_sets, &name).await?;
        forget(&ctx.caches.applied, stateful_set.as_ref());
        sctx.rollouts.forget(&format!("{ns}/{name}"));
        if !deleted {
            // Already gone: the cache had not seen it yet, and the Event was published then.
            continue;
        }
        ctx.events
            .publish(
                service,
                false,
                "BotRemoved",
                "Reconcile",
                format!("bot {name} is no longer needed by the tenant's license"),
            )
            .await;
    }
    Ok(waiting)
}

/// Whether a bot StatefulSet has rolled out completely: the controller has seen its latest
/// generation, every wanted instance is updated and ready, and no instance of an older revision
/// is left (`currentRevision` has caught up with `updateRevision`).
fn settled(stateful_set: &StatefulSet) -> bool {
    let want = stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = stateful_set.status.as_ref() else {
        return false;
    };
    status.observed_generation >= stateful_set.metadata.generation
        && status.ready_replicas.unwrap_or(0) >= want
        && status.updated_replicas.unwrap_or(0) >= want
        && rolled_out_and_available(stateful_set) >= want
        && (status.update_revision.is_none() || status.current_revision == status.update_revision)
}

/// Deletes an object; `false` when it was already gone.
pub(super) async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes the status when it changed, with an Event per condition transition.
async fn write_status(
    service: &RecordingService,
    status: RecordingServiceStatus,
    ctx: &Context,
) -> Result<()> {
    let old = service.status.as_ref();
    if !status_changed(old, &status) {
        return Ok(());
    }
    let api: Api<RecordingService> =
        Api::namespaced(ctx.client.clone(), &service.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "status": status,
    });
    api.patch_status(
        &service.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    for (warning, reason, note) in transition_events(old, &status) {
        ctx.events
            .publish(service, warning, &reason, "Reconcile", note)
            .await;
    }
    Ok(())
}

/// What to do after a failed reconcile: retry with per-service exponential backoff.
pub fn error_policy(
    service: Arc<RecordingService>,
    error: &Error,
    sctx: Arc<ServiceContext>,
) -> Action {
    let delay = sctx
        .shared
        .backoff
        .failed(&super::object_key(service.as_ref()), Retried::Reconcile);
    tracing::warn!(service = %service.name_any(), namespace = ?service.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;
