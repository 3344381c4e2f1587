//! A restart of the operator (or a new leader) at scale: a Tenant whose observed state did not
//! change is not written again and gets no Event, whatever order the caches fill in after the
//! restart, and the restarted operator sends no write request at all. 1,000 Tenants, every consent granted before they are applied, all Ready; the
//! operator is stopped and a fresh one (empty caches, as after a crash or a failover) started
//! on the same cluster.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use recording_operator::config::SecretSource;
use recording_operator::controller::{self, RunOptions};
use recording_operator::crd::{ConsentGrant, RecordingService, Tenant};
use recording_operator::demo::{Platform, PlatformOptions};
use recording_operator::graph::ConsentChecker;
use recording_operator::metrics::Metrics;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TENANTS: usize = 1000;

fn name(i: usize) -> String {
    format!("r{i:04}")
}

fn domain(i: usize) -> String {
    format!("{}.onmicrosoft.com", name(i))
}

fn entra_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-0000000000aa")
}

/// Every other tenant Pro (five mandatory consents), the rest Essentials (four).
fn tenant(i: usize) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name(i)},
        "spec": {
            "customerName": format!("{}-customer", name(i)),
            "domain": domain(i),
            "shortName": name(i),
            "contactEmails": ["ops@example.com"],
            "adminUpns": [format!("admin@{}", domain(i))],
            "license": if i.is_multiple_of(2) { "Pro" } else { "Essentials" },
            "includedUsers": 100,
            "storage": {"location": "westeurope"},
        }
    }))
    .expect("a valid Tenant")
}

/// One operator run in this process, with caches of its own.
struct Operator {
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Operator {
    fn start(platform: &Platform) -> Operator {
        let secrets: Arc<dyn SecretSource> = Arc::new(
            recording_operator::config::Secrets::with_kube(platform.client.clone()),
        );
        let checker = ConsentChecker::new(&platform.config, secrets).expect("Graph client");
        let metrics = Metrics::new(checker.counters());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(
            controller::Parts {
                client: platform.client.clone(),
                config: Arc::new(platform.config.clone()),
                checker,
                metrics: metrics.clone(),
                storage: None,
                links: platform.links(),
            },
            RunOptions::default(),
            Arc::new(AtomicBool::new(false)),
            async {
                let _ = stopped.await;
            },
        ));
        Operator {
            metrics,
            stop,
            task,
        }
    }

    /// Reconciles `controller` has run so far.
    fn reconciles(&self, controller: &str) -> f64 {
        let prefix = format!("recording_operator_reconciles_total{{controller=\"{controller}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops")
            .expect("the operator's task ends");
    }
}

/// What a restart must leave as it was, per Tenant: its resourceVersion and its conditions'
/// `(type, status, lastTransitionTime)`.
type Snapshot = BTreeMap<String, (String, Vec<(String, String, String)>)>;

async fn snapshot(client: &kube::Client) -> Snapshot {
    Api::<Tenant>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("tenants listed")
        .items
        .into_iter()
        .map(|t| {
            let conditions = t
                .status
                .as_ref()
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| {
                            (
                                c.type_.clone(),
                                c.status.clone(),
                                c.last_transition_time.0.to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                t.name_any(),
                (t.resource_version().unwrap_or_default(), conditions),
            )
        })
        .collect()
}

async fn grant_versions(client: &kube::Client) -> BTreeMap<String, String> {
    Api::<ConsentGrant>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("grants listed")
        .items
        .into_iter()
        .map(|g| {
            (
                format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()),
                g.resource_version().unwrap_or_default(),
            )
        })
        .collect()
}

async fn events(client: &kube::Client) -> Vec<Event> {
    Api::<Event>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("events listed")
        .items
}

fn event_key(e: &Event) -> String {
    format!("{}/{}", e.namespace().unwrap_or_default(), e.name_any())
}

fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.observed_generation == t.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn wait_all_ready(client: &kube::Client, timeout: Duration) {
    wait_ready(client, TENANTS, timeout).await;
}

async fn wait_ready(client: &kube::Client, tenants: usize, timeout: Duration) {
    let api: Api<Tenant> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let list = api.list(&Default::default()).await.expect("tenants listed");
        let ready = list.items.iter().filter(|t| is_ready(t)).count();
        if ready == tenants {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {ready} of {tenants} Tenants Ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the fresh operator has reconciled every Tenant and every tenant's grants at
/// least once, then a little longer for the writes that follow to land.
async fn wait_reconciled_once(operator: &Operator) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while operator.reconciles("tenant") < TENANTS as f64
        || operator.reconciles("consentgrant") < TENANTS as f64
    {
        if tokio::time::Instant::now() > deadline {
            let logs = common::captured_logs();
            let problems: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            panic!(
                "the restarted operator reconciled {} Tenants and {} tenants' grants in two minutes; warnings: {:#?}",
                operator.reconciles("tenant"),
                operator.reconciles("consentgrant"),
                &problems[problems.len().saturating_sub(20)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// The simulated platform without storage (as in the scale bench), `tenants` customer
/// tenants in its directory whose admins granted every consent before their Tenant exists.
async fn platform_with(tenants: usize) -> Platform {
    let mut platform = Platform::start(PlatformOptions::default())
        .await
        .expect("simulated platform starts");
    platform.config.storage = None;
    for i in 0..tenants {
        platform
            .m365
            .add_tenant(&entra_id(i), &[domain(i).as_str()]);
        // The Tenant's default administrator exists in its directory (else it is not Ready).
        platform.m365.add_user(
            &entra_id(i),
            &format!("admin@{}", domain(i)),
            "not-used-here",
        );
        for consent in platform.config.consents.values() {
            platform.m365.grant_consent(&entra_id(i), &consent.app_id);
        }
    }
    platform
}

/// Write requests (all but get, list and watch) since `before`, by verb and resource.
fn writes_since(platform: &Platform, before: &BTreeMap<(String, String), u64>) -> Vec<String> {
    platform
        .kube
        .request_counts()
        .into_iter()
        .filter(|((verb, _), _)| !matches!(verb.as_str(), "get" | "list" | "watch"))
        .filter_map(|(key, n)| {
            let grown = n - before.get(&key).copied().unwrap_or(0);
            (grown > 0).then(|| format!("{} {}: {grown}", key.0, key.1))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_at_1000_ready_tenants_write_nothing_and_announce_nothing() {
    common::captured_logs();
    let platform = platform_with(TENANTS).await;
    let client = platform.client.clone();

    let operator = Operator::start(&platform);
    let api: Api<Tenant> = Api::all(client.clone());
    stream::iter(0..TENANTS)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &tenant(i)).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("tenants created");
    wait_all_ready(&client, Duration::from_secs(300)).await;
    // Let the last status writes and Events land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut operator = Some(operator);

    for restart in 1..=3 {
        let tenants_before = snapshot(&client).await;
        let grants_before = grant_versions(&client).await;
        let events_before: std::collections::BTreeSet<String> =
            events(&client).await.iter().map(event_key).collect();
        assert_eq!(tenants_before.len(), TENANTS);

        let requests_before = platform.kube.request_counts();
        operator.take().expect("a running operator").stop().await;
        let fresh = Operator::start(&platform);
        wait_reconciled_once(&fresh).await;
        operator = Some(fresh);

        // Not a single write request: the namespaces, quotas, policies and grants the Tenants'
        // status says were applied as they are desired (`status.appliedHash`) are not sent
        // again, not even as applies that would change nothing.
        let writes = writes_since(&platform, &requests_before);
        assert!(
            writes.is_empty(),
            "restart {restart}: the restarted operator sent write requests: {writes:?}"
        );

        let tenants_after = snapshot(&client).await;
        let rewritten: Vec<String> = tenants_before
            .iter()
            .filter(|(name, before)| tenants_after.get(*name) != Some(*before))
            .map(|(name, before)| {
                format!(
                    "{name}: {before:?} -> {:?}",
                    tenants_after.get(name.as_str())
                )
            })
            .collect();
        assert!(
            rewritten.is_empty(),
            "restart {restart}: {} Tenants written again although nothing they show changed, e.g. {:#?}",
            rewritten.len(),
            rewritten.iter().take(3).collect::<Vec<_>>()
        );
        let grants_after = grant_versions(&client).await;
        let grants_rewritten = grants_before
            .iter()
            .filter(|(k, v)| grants_after.get(*k) != Some(*v))
            .count();
        assert_eq!(
            grants_rewritten, 0,
            "restart {restart}: ConsentGrants written again"
        );
        let new_events: Vec<String> = events(&client)
            .await
            .into_iter()
            .filter(|e| !events_before.contains(&event_key(e)))
            .map(|e| {
                format!(
                    "{} {} {:?}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.regarding.and_then(|r| r.name),
                    e.note.unwrap_or_default()
                )
            })
            .collect();
        assert!(
            new_events.is_empty(),
            "restart {restart}: {} Events, e.g. {:#?}",
            new_events.len(),
            new_events.iter().take(3).collect::<Vec<_>>()
        );
    }
    operator.take().expect("a running operator").stop().await;
}

const SERVICES: usize = 12;

/// A recording service of tenant `i` (the Pro ones, every other, get a paired bot).
fn service(i: usize) -> RecordingService {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "metadata": {"name": "rec", "namespace": format!("tenant-{}", name(i))},
        "spec": {"tenantRef": name(i), "shortName": format!("rec-{i}"), "licensedUsers": 10}
    }))
    .expect("a valid RecordingService")
}

/// Every service's resourceVersion and `(type, status, lastTransitionTime)` of its
/// conditions.
async fn service_snapshot(client: &kube::Client) -> Snapshot {
    Api::<RecordingService>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("services listed")
        .items
        .into_iter()
        .map(|s| {
            let conditions = s
                .status
                .iter()
                .flat_map(|st| st.conditions.iter())
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.last_transition_time.0.to_string(),
                    )
                })
                .collect();
            let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            (key, (s.resource_version().unwrap_or_default(), conditions))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_send_nothing_for_recording_services_either() {
    common::captured_logs();
    let platform = platform_with(SERVICES).await;
    let client = platform.client.clone();
    let mut operator = Operator::start(&platform);
    let api: Api<Tenant> = Api::all(client.clone());
    for i in 0..SERVICES {
        api.create(&PostParams::default(), &tenant(i))
            .await
            .expect("tenant created");
    }
    wait_ready(&client, SERVICES, Duration::from_secs(120)).await;
    for i in 0..SERVICES {
        let service = service(i);
        Api::<RecordingService>::namespaced(client.clone(), &service.namespace().unwrap())
            .create(&PostParams::default(), &service)
            .await
            .expect("service created");
    }
    let services: Api<RecordingService> = Api::all(client.clone());
    let every_service_ready = || async {
        let list = services.list(&Default::default()).await.unwrap().items;
        let ready = list
            .iter()
            .filter(|s| {
                s.status.as_ref().is_some_and(|st| {
                    common::ready_status(&st.conditions).as_deref() == Some("True")
                        && st.applied_hash.is_some()
                })
            })
            .count();
        (ready == SERVICES).then_some(())
    };
    common::wait_for(
        Duration::from_secs(120),
        every_service_ready,
        |_| true,
        "every service Ready",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    for restart in 1..=2 {
        let before = service_snapshot(&client).await;
        let events_before: std::collections::BTreeSet<String> =
            events(&client).await.iter().map(event_key).collect();
        let requests_before = platform.kube.request_counts();
        operator.stop().await;
        operator = Operator::start(&platform);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while operator.reconciles("recordingservice") < SERVICES as f64
            || operator.reconciles("tenant") < SERVICES as f64
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "restart {restart}: services not reconciled"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;

        // The bots, their configuration, Services, policy, budget and credentials: the
        // services' `status.appliedHash` says they were applied as they are desired.
        let writes = writes_since(&platform, &requests_before);
        assert!(
            writes.is_empty(),
            "restart {restart}: the restarted operator sent write requests: {writes:?}"
        );
        assert_eq!(
            service_snapshot(&client).await,
            before,
            "restart {restart}: services written again"
        );
        let new_events = events(&client)
            .await
            .iter()
            .filter(|e| !events_before.contains(&event_key(e)))
            .count();
        assert_eq!(new_events, 0, "restart {restart}: Events");
    }
    operator.stop().await;
}
