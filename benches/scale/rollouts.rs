//! Phases `failover` and `upgrade` of the scale benchmark: a leader killed under N Ready
//! tenants, and a new bot image default rolled out across N tenants' bots.

use k8s_openapi::api::apps::v1::StatefulSet;
use recording_operator::crd::RecordingService;

use super::*;

const OPERATOR_NAMESPACE: &str = "recording-operator-system";
/// The Lease timings of the failover phase (the operator's defaults).
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// The arguments of one replica with leader election, named `identity`.
fn elected(identity: &str) -> Vec<String> {
    [
        "--leader-election=true",
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
        "--leader-election-lease-duration",
        &format!("{}s", LEASE_DURATION.as_secs()),
        "--leader-election-renew-period",
        "2s",
        "--leader-election-identity",
        identity,
    ]
    .map(String::from)
    .to_vec()
}

async fn launch_elected(world: &World, args: &Args, identity: &str) -> Operator {
    let extra = elected(identity);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Operator::launch(
        world,
        &format!("failover-{identity}"),
        args.operator_concurrency,
        &world.config,
        &extra,
    )
    .await
}

/// Polls `done` every 100 ms, for at most `limit`; the time it took, `None` when it did not
/// happen.
async fn time_until<F, Fut>(limit: Duration, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if done().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What the API server, Graph and the Events saw between two points, as table rows.
pub struct Counters {
    kube: KubeCounts,
    events: usize,
    versions: BTreeMap<String, String>,
}

impl Counters {
    pub async fn take(world: &World) -> Counters {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(world.client.clone());
        Counters {
            kube: world.kube.request_counts(),
            events: events
                .list(&Default::default())
                .await
                .expect("events")
                .items
                .len(),
            versions: versions(&world.client).await,
        }
    }

    /// Rows (their names after `prefix`) for what happened since `self`; objects of `exclude`
    /// (a tenant namespace, or a Tenant's name with a leading `/`) are not counted as written
    /// again. Graph and token requests are the identity simulator's since its last reset.
    pub fn rows(
        &self,
        after: &Counters,
        world: &World,
        exclude: &[String],
        prefix: &str,
        table: &mut Table,
    ) {
        let writes: KubeCounts = diff_counts(&after.kube, &self.kube)
            .into_iter()
            .filter(|((verb, _), _)| !matches!(verb.as_str(), "get" | "list" | "watch"))
            .collect();
        let writes_text = if writes.is_empty() {
            "0".to_string()
        } else {
            by_verb(&writes)
                .into_iter()
                .map(|(verb, (count, resources))| {
                    format!("{verb} {count} ({})", resources.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let excluded = |k: &str| exclude.iter().any(|e| k.starts_with(e.as_str()));
        let moved = self
            .versions
            .iter()
            .filter(|(k, v)| !excluded(k) && after.versions.get(*k) != Some(*v));
        let (tenants, grants) = moved.fold((0, 0), |(t, g), (k, _)| {
            if k.starts_with('/') {
                (t + 1, g)
            } else {
                (t, g + 1)
            }
        });
        table.row(
            format!("{prefix}API requests other than get/list/watch"),
            writes_text,
        );
        table.row(
            format!("{prefix}Tenants / ConsentGrants that existed before, written again"),
            format!("{tenants} / {grants}"),
        );
        table.row(
            format!("{prefix}Events"),
            (after.events - self.events).to_string(),
        );
        let m365 = world.m365.counts().total;
        table.row(
            format!("{prefix}Graph / token requests"),
            format!("{} / {}", m365.graph_requests(), m365.token),
        );
    }
}

/// N tenants Ready under two replicas with leader election; the leader is killed (SIGKILL)
/// and a new Tenant created at once: the time until the standby leads, until the new Tenant
/// is Ready, and what the takeover wrote and asked.
pub async fn phase_failover(args: &Args) -> Table {
    let n = args.tenants;
    let mut table = Table::default();
    table.row(
        "tenants (all granted), replicas",
        format!(
            "{n}, 2 (Lease {}s, renewed every 2s)",
            LEASE_DURATION.as_secs()
        ),
    );
    let world = World::start(PollingConfig::default(), 3599).await;
    // Tenant n is created right after the kill.
    world.add_customers(n + 1, |_| Granted::All);
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}}))
                .expect("a namespace"),
        )
        .await
        .expect("operator namespace");

    let first = launch_elected(&world, args, "replica-a").await;
    time_until(Duration::from_secs(60), || first.leads())
        .await
        .expect("the first replica leads");
    let standby = launch_elected(&world, args, "replica-b").await;
    apply_tenants_until_ready(&world.client, n, args.concurrency).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!standby.leads().await, "the second replica stands by");

    let before = Counters::take(&world).await;
    world.m365.reset_counts();
    let killed = Instant::now();
    first.kill().await;
    let tenants: Api<Tenant> = Api::all(world.client.clone());
    tenants
        .create(&PostParams::default(), &tenant_object(n))
        .await
        .expect("the new Tenant");
    let new_name = tenant_name(n);
    let waited_from = killed.elapsed();
    let leads = time_until(LEASE_DURATION * 4, || standby.leads())
        .await
        .map(|d| d + waited_from);
    let new_ready = time_until(Duration::from_secs(300), || {
        let tenants = tenants.clone();
        let name = new_name.clone();
        async move {
            tenants
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|t| is_ready(&t))
        }
    })
    .await
    .map(|_| killed.elapsed());
    let reconciled = time_until(Duration::from_secs(600), || async {
        standby.reconciles("tenant").await > n as f64
            && standby.reconciles("consentgrant").await > n as f64
    })
    .await
    .map(|_| killed.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = Counters::take(&world).await;

    let shown =
        |d: Option<Duration>| d.map_or("not within the limit".into(), |d| format!("{d:.2?}"));
    table.row(
        format!(
            "kill → standby leads (goal ≤ lease {}s + 2 s)",
            LEASE_DURATION.as_secs()
        ),
        shown(leads),
    );
    table.row(
        "kill → the Tenant created after the kill is Ready",
        shown(new_ready),
    );
    table.row(
        "kill → every Tenant reconciled by the new leader",
        shown(reconciled),
    );
    table.row(
        "the new Tenant's own writes",
        "counted below: its namespace, quota, policy, grants, statuses and Event",
    );
    before.rows(
        &after,
        &world,
        &[format!("/{new_name}"), format!("tenant-{new_name}/")],
        "",
        &mut table,
    );
    let new_tenant = world.m365.counts().tenant(&tenant_id(n));
    table.row(
        "of which the new Tenant's Graph / token requests",
        format!("{} / {}", new_tenant.graph_requests(), new_tenant.token),
    );
    finish(table, "new leader's peak RSS", standby, &world).await
}

/// The bot image default the "new version" of the upgrade phase comes with.
const NEW_BOT_IMAGE: &str = "ghcr.io/recording-platform/recording-bot:1.1.0";

fn service_object(i: usize) -> RecordingService {
    let name = tenant_name(i);
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "metadata": {"name": "main", "namespace": format!("tenant-{name}")},
        "spec": {
            "tenantRef": name,
            "shortName": format!("{name}-m"),
            "licensedUsers": 50,
            "bot": {"replicas": 1},
        }
    }))
    .expect("a valid RecordingService")
}

/// Tenant `i`'s service number `k` (`--services-per-tenant`): the upgrade phase's `main`
/// first, then `main-1`, `main-2`… of one licensed user each (the Tenant includes 100).
fn nth_service_object(i: usize, k: usize) -> RecordingService {
    let mut service = service_object(i);
    if k > 0 {
        service.metadata.name = Some(format!("main-{k}"));
        service.spec.short_name = format!("{}-m{k}", tenant_name(i));
        service.spec.licensed_users = 1;
    }
    service
}

/// Creates `per_tenant` services in each of the first `n` tenants.
async fn create_services(world: &World, n: usize, per_tenant: usize, concurrency: usize) {
    stream::iter((0..n).flat_map(|i| (0..per_tenant).map(move |k| (i, k))))
        .map(|(i, k)| {
            let api: Api<RecordingService> =
                Api::namespaced(world.client.clone(), &format!("tenant-{}", tenant_name(i)));
            async move {
                api.create(&PostParams::default(), &nth_service_object(i, k))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("services created");
}

/// Creates `per_tenant` services in each of the first `n` tenants and waits until all are
/// Ready; how long that took (`None`: not within 15 minutes).
pub async fn create_services_until_ready(
    world: &World,
    n: usize,
    per_tenant: usize,
    concurrency: usize,
) -> Option<Duration> {
    let started = Instant::now();
    create_services(world, n, per_tenant, concurrency).await;
    let api: Api<RecordingService> = Api::all(world.client.clone());
    let ready = |s: &RecordingService| {
        s.status.as_ref().is_some_and(|st| {
            recording_operator::conditions::is_true(
                &st.conditions,
                recording_operator::conditions::READY,
            )
        })
    };
    while started.elapsed() < Duration::from_secs(900) {
        let listed = api
            .list(&Default::default())
            .await
            .expect("services listed");
        if listed.items.iter().filter(|s| ready(s)).count() >= n * per_tenant {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// A bot StatefulSet's image, and whether it has rolled out: the controller has seen its
/// latest generation, every replica is updated and ready, and no instance of an older
/// revision is left.
fn bot_state(s: &StatefulSet) -> (String, bool) {
    let image = s
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let settled = s.status.as_ref().is_some_and(|st| {
        st.observed_generation == s.metadata.generation
            && st.updated_replicas.unwrap_or(0) == want
            && st.ready_replicas.unwrap_or(0) == want
            && st.current_revision == st.update_revision
    });
    (image, settled)
}

/// Every bot StatefulSet, as a watch sees it: image and rolled out, and the most that were not
/// rolled out at once since `reset`.
#[derive(Default)]
struct Bots {
    state: HashMap<String, (String, bool)>,
    max_unsettled: usize,
}

impl Bots {
    fn unsettled(&self) -> usize {
        self.state.values().filter(|(_, settled)| !settled).count()
    }

    fn settled_on(&self, image: &str) -> usize {
        self.state
            .values()
            .filter(|(i, settled)| *settled && i == image)
            .count()
    }

    fn reset(&mut self) {
        self.max_unsettled = self.unsettled();
    }
}

fn watch_bots(client: &kube::Client) -> (Arc<Mutex<Bots>>, tokio::task::JoinHandle<()>) {
    let bots: Arc<Mutex<Bots>> = Default::default();
    let api: Api<StatefulSet> = Api::all(client.clone());
    let task = tokio::spawn({
        let bots = bots.clone();
        async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let mut bots = bots.lock().unwrap();
                match event {
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                        let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
                        bots.state.insert(key, bot_state(&d));
                    }
                    Ok(watcher::Event::Delete(d)) => {
                        let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
                        bots.state.remove(&key);
                    }
                    _ => {}
                }
                let unsettled = bots.unsettled();
                bots.max_unsettled = bots.max_unsettled.max(unsettled);
            }
        }
    });
    (bots, task)
}

/// N tenants Ready, each with a RecordingService and its bots rolled out; the operator killed
/// and started as a "new version" whose bot image default differs: how the bots' rollouts
/// are paced by `bots.rolloutBudget` and what the upgrade costs.
pub async fn phase_upgrade(args: &Args) -> Table {
    let n = args.tenants;
    let budget = args.rollout_budget;
    // Every other tenant is Pro, with a paired bot.
    let bot_count = n + n.div_ceil(2);
    let mut table = Table::default();
    table.row(
        "tenants, bot StatefulSets, rollout budget",
        format!("{n}, {bot_count}, {budget}"),
    );
    let world = World::start(PollingConfig::default(), 3599).await;
    world.add_customers(n, |_| Granted::All);
    let mut config = world.config.clone();
    config.bots.rollout_budget = budget;
    let old_image = config.bots.default_image.clone();
    let operator = Operator::launch(
        &world,
        "upgrade-old",
        args.operator_concurrency,
        &config,
        &["--leader-election=false"],
    )
    .await;
    let (bots, bot_watch) = watch_bots(&world.client);
    apply_tenants_until_ready(&world.client, n, args.concurrency).await;
    create_services(&world, n, 1, args.concurrency).await;
    let created = time_until(Duration::from_secs(900), || {
        let done = bots.lock().unwrap().settled_on(&old_image) >= bot_count;
        async move { done }
    })
    .await;
    table.row(
        "bots created and rolled out (the old version, no budget for creations)",
        created.map_or("not within 15 min".into(), |d| format!("{d:.2?}")),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    operator.kill().await;
    let before = Counters::take(&world).await;
    world.m365.reset_counts();
    bots.lock().unwrap().reset();
    config.bots.default_image = NEW_BOT_IMAGE.into();
    let started = Instant::now();
    let upgraded = Operator::launch(
        &world,
        "upgrade-new",
        args.operator_concurrency,
        &config,
        &["--leader-election=false"],
    )
    .await;
    let mut progress = Vec::new();
    let mut next_mark = bot_count.div_ceil(4);
    let rolled = time_until(Duration::from_secs(1800), || {
        let done = bots.lock().unwrap().settled_on(NEW_BOT_IMAGE);
        if done >= next_mark && next_mark <= bot_count {
            progress.push((done, started.elapsed()));
            next_mark += bot_count.div_ceil(4);
        }
        async move { done >= bot_count }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = Counters::take(&world).await;
    let max_unsettled = bots.lock().unwrap().max_unsettled;
    bot_watch.abort();

    table.row(
        "start of the new version → every bot rolled out on the new image",
        rolled.map_or("not within 30 min".into(), |d| format!("{d:.2?}")),
    );
    table.row(
        "bots rolled out on the new image, by time",
        progress
            .iter()
            .map(|(done, at)| format!("{done} at {at:.1?}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    table.row(
        format!("most bot StatefulSets not rolled out at once (budget {budget})"),
        max_unsettled.to_string(),
    );
    before.rows(&after, &world, &[], "", &mut table);
    finish(table, "new version's peak RSS", upgraded, &world).await
}
