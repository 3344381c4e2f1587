//! Scale benchmark: how the operator's cost grows with the number of tenants.
//!
//! `cargo bench --bench scale -- --tenants 1000 [--phase ready|steady|baseline|all] [--concurrency 64]`
//!
//! Both simulators run in this process; the operator runs as its own process (the release
//! binary), so its memory is measured alone. Phases:
//!
//! - **ready**: a plain client creates the N tenants' objects (Tenant, namespace, quota,
//!   policy, ConsentGrants) as fast as it can against a fresh simulator — the baseline; then
//!   N Tenants are applied with every consent already granted and the operator takes them to
//!   Ready. Reported: both times and their ratio, API requests per tenant by verb, Graph and
//!   token requests per tenant, peak RSS, reconcile duration p50/p99 per controller (all
//!   reconciles of the run, and the reconciles of one "poke" of every Tenant and every
//!   ConsentGrant, which make no outside call because nothing the operator reads changed).
//!   Last, the floor on a fresh simulator: every write the operator made for a tenant (server-
//!   side applies, statuses as the operator wrote them, the Event), made by a plain client as
//!   fast as it can, with no watch, cache or Graph — no operator that writes what the spec
//!   asks for can be faster on this machine.
//! - **baseline**: only the baseline of `ready` (the simulator's own cost, no operator):
//!   time, API requests and requests per second.
//! - **steady**: the poll timings scaled down (a simulated day of `--day-secs`), 90 % of the
//!   tenants granted and 10 % pending (half with nothing granted, half with only the directory
//!   consent): Graph and token requests per granted tenant per day, and per pending tenant
//!   per poll (a poll counted as one new `lastCheckedAt` of the tenant's `recording` grant).
//!
//! The figures go to stdout as one table; BENCHMARKS.md records runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use recording_operator::config::{CloudConfig, OperatorConfig, PollingConfig, SecretRef};
use recording_operator::controller::tenant::desired_children;
use recording_operator::crd::{ConsentGrant, RecordingService, Tenant, FIELD_MANAGER};
use serde_json::json;
use sim::kube::{KubeSim, KubeSimConfig};
use sim::m365::{M365Sim, Seed};

#[path = "scale/rollouts.rs"]
mod rollouts;

const HOME_TENANT: &str = "8c1d5e2a-0b7f-4c3e-9a61-2f4b6d8e0c1a";
const REDIRECT: &str = "http://127.0.0.1:9/consent/callback";

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Ready,
    Steady,
    Baseline,
    Restart,
    Failover,
    Upgrade,
    All,
}

#[derive(Clone, Debug)]
struct Args {
    tenants: usize,
    phase: Phase,
    concurrency: usize,
    /// Real seconds of one simulated day in the steady phase.
    day_secs: u64,
    /// Simulated days the steady phase counts.
    days: u32,
    /// The operator's `bots.rolloutBudget` in the upgrade phase.
    rollout_budget: u32,
    /// Kills and starts in the restart phase.
    restarts: u32,
    /// `--concurrency` of the operator (its own default when absent).
    operator_concurrency: Option<u16>,
    /// RecordingServices per tenant in the restart phase.
    services_per_tenant: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        tenants: 1000,
        phase: Phase::All,
        concurrency: 64,
        day_secs: 60,
        days: 1,
        rollout_budget: 10,
        restarts: 3,
        operator_concurrency: None,
        services_per_tenant: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--tenants" => args.tenants = value("--tenants").parse().expect("--tenants N"),
            "--concurrency" => {
                args.concurrency = value("--concurrency").parse().expect("--concurrency N")
            }
            "--day-secs" => args.day_secs = value("--day-secs").parse().expect("--day-secs S"),
            "--days" => args.days = value("--days").parse().expect("--days N"),
            "--restarts" => args.restarts = value("--restarts").parse().expect("--restarts N"),
            "--services-per-tenant" => {
                args.services_per_tenant = value("--services-per-tenant")
                    .parse()
                    .expect("--services-per-tenant K")
            }
            "--rollout-budget" => {
                args.rollout_budget = value("--rollout-budget")
                    .parse()
                    .expect("--rollout-budget K")
            }
            "--operator-concurrency" => {
                args.operator_concurrency = Some(
                    value("--operator-concurrency")
                        .parse()
                        .expect("--operator-concurrency N"),
                )
            }
            "--phase" => {
                args.phase = match value("--phase").as_str() {
                    "ready" => Phase::Ready,
                    "steady" => Phase::Steady,
                    "baseline" => Phase::Baseline,
                    "restart" => Phase::Restart,
                    "failover" => Phase::Failover,
                    "upgrade" => Phase::Upgrade,
                    "all" => Phase::All,
                    other => panic!(
                        "--phase ready|steady|baseline|restart|failover|upgrade|all, not {other}"
                    ),
                }
            }
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

// ---------------------------------------------------------------------------------------------
// The simulated world
// ---------------------------------------------------------------------------------------------

fn tenant_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-00000000beef")
}

/// Merges the bench's poke annotation into each `(api, name)`, `concurrency` at a time.
async fn poke<K>(
    targets: impl Iterator<Item = (Api<K>, String)>,
    concurrency: usize,
) -> kube::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {"bench.recording.m365.io/poke": "1"}}});
    stream::iter(targets)
        .map(|(api, name)| {
            let patch = &patch;
            async move {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .map(|_| ())
}

fn tenant_name(i: usize) -> String {
    format!("t{i:05}")
}

/// Every other tenant is Pro (five mandatory consents), the rest Essentials (four).
fn tenant_object(i: usize) -> Tenant {
    let name = tenant_name(i);
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {
            "customerName": format!("{name}-customer"),
            "domain": format!("{name}.onmicrosoft.com"),
            "shortName": name,
            "contactEmails": ["ops@example.com"],
            "adminUpns": [format!("admin@{name}.onmicrosoft.com")],
            "license": if i.is_multiple_of(2) { "Pro" } else { "Essentials" },
            "includedUsers": 100,
            "storage": {"location": "westeurope"},
        }
    }))
    .expect("a valid Tenant")
}

/// How much consent a tenant has given before its Tenant is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granted {
    All,
    Nothing,
    DirectoryOnly,
}

struct World {
    kube: KubeSim,
    m365: M365Sim,
    client: kube::Client,
    config: OperatorConfig,
    /// Environment of the operator process: the platform apps' client secrets.
    secret_env: Vec<(String, String)>,
}

impl World {
    async fn start(polling: PollingConfig, token_lifetime_secs: u64) -> World {
        let kube = KubeSim::start(KubeSimConfig::default())
            .await
            .expect("kube simulator");
        let mut seed = Seed::platform_default(
            "recording",
            HOME_TENANT,
            "recordingplatform.onmicrosoft.com",
            REDIRECT,
        );
        seed.settings.token_lifetime_secs = token_lifetime_secs;
        let m365 = M365Sim::start(seed.clone()).await.expect("m365 simulator");
        let client = kube.client().await;
        recording_operator::demo::install_crds(&client)
            .await
            .expect("CRDs installed");

        let mut config = OperatorConfig {
            cloud: CloudConfig {
                authority_host: Some(m365.url()),
                graph_endpoint: Some(m365.url()),
                ..Default::default()
            },
            consent_redirect_uri: Some(REDIRECT.into()),
            polling,
            operator_namespace: "recording-operator-system".into(),
            storage: None,
            ..Default::default()
        };
        let mut secret_env = Vec::new();
        for (key, consent) in config.consents.iter_mut() {
            let app = seed.app(&consent.display_name).expect("seeded app");
            consent.app_id = app.app_id.clone();
            let var = format!("BENCH_SECRET_{}", key.to_ascii_uppercase());
            secret_env.push((var.clone(), app.secrets[0].value.clone()));
            consent.client_secret = Some(SecretRef::Env(var));
        }
        config.validate().expect("valid operator configuration");
        World {
            kube,
            m365,
            client,
            config,
            secret_env,
        }
    }

    /// Registers tenants `0..n` in the identity simulator, with their consents.
    fn add_customers(&self, n: usize, granted: impl Fn(usize) -> Granted) {
        for i in 0..n {
            let domain = format!("{}.onmicrosoft.com", tenant_name(i));
            let id = tenant_id(i);
            self.m365.add_tenant(&id, &[domain.as_str()]);
            // The Tenant's default administrator exists in its directory (else it is not
            // Ready once the directory consent is granted).
            self.m365
                .add_user(&id, &format!("admin@{domain}"), "not-used-here");
            for (key, consent) in &self.config.consents {
                let give = match granted(i) {
                    Granted::All => true,
                    Granted::Nothing => false,
                    Granted::DirectoryOnly => key == "directory",
                };
                if give {
                    self.m365.grant_consent(&id, &consent.app_id);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The operator process
// ---------------------------------------------------------------------------------------------

struct Operator {
    child: tokio::process::Child,
    pid: u32,
    http: String,
    peak_rss_kib: Arc<Mutex<u64>>,
    _dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("port")
        .port()
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time a process has used so far (user + system, all its threads), in seconds: fields
/// 14 and 15 of `/proc/<pid>/stat`, counted in the kernel's fixed 100 ticks per second.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The CPU time the bench process (both simulators and the bench's own client) has used.
fn bench_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

impl Operator {
    async fn start(world: &World, label: &str, concurrency: Option<u16>) -> Operator {
        Self::launch(
            world,
            label,
            concurrency,
            &world.config,
            &["--leader-election=false"],
        )
        .await
    }

    /// An operator process with `config` and `extra` arguments (leader election, identity).
    async fn launch(
        world: &World,
        label: &str,
        concurrency: Option<u16>,
        config: &OperatorConfig,
        extra: &[&str],
    ) -> Operator {
        let dir = std::env::temp_dir().join(format!(
            "recording-operator-bench-{}-{label}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("bench folder");
        let kubeconfig = dir.join("kubeconfig");
        world
            .kube
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        // YAML is a superset of JSON.
        let config_path = dir.join("operator.yaml");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(config).expect("config serializes"),
        )
        .expect("config written");
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        // SCALE_OPERATOR_BIN runs another build (e.g. a copy from before a change).
        let binary = std::env::var("SCALE_OPERATOR_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_recording-operator").to_string());
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["run", "--config"])
            .arg(&config_path)
            .args(extra)
            .args(["--http-addr", &http])
            // Each process its own public listener (two replicas in the failover phase).
            .args(["--public-addr", &format!("127.0.0.1:{}", free_port())])
            .args(
                concurrency
                    .map(|c| vec!["--concurrency".to_string(), c.to_string()])
                    .unwrap_or_default(),
            )
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .envs(world.secret_env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("operator.log")).expect("log file"))
            .kill_on_drop(true);
        let child = command.spawn().expect("operator binary starts");
        let pid = child.id().expect("pid");
        let peak_rss_kib = Arc::new(Mutex::new(0));
        {
            let peak = peak_rss_kib.clone();
            tokio::spawn(async move {
                while let Some(hwm) = status_field(pid, "VmHWM:") {
                    *peak.lock().unwrap() = hwm;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        let operator = Operator {
            child,
            pid,
            http,
            peak_rss_kib,
            _dir: dir,
        };
        operator.wait_ready().await;
        operator
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.http);
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the operator did not become ready within a minute");
    }

    /// The operator's heap in use (its `recording_operator_heap_in_use_bytes`), in MiB.
    async fn heap_mib(&self) -> Option<f64> {
        let text = self.metrics().await;
        let value = text.lines().find_map(|l| {
            l.strip_prefix("recording_operator_heap_in_use_bytes ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })?;
        Some(value / (1024.0 * 1024.0))
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    fn peak_rss_mib(&self) -> f64 {
        let now = status_field(self.pid, "VmHWM:").unwrap_or(0);
        let sampled = *self.peak_rss_kib.lock().unwrap();
        now.max(sampled) as f64 / 1024.0
    }

    fn rss_mib(&self) -> f64 {
        status_field(self.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
    }

    /// The part of the resident set that is file pages: the binary's code (and its shared
    /// libraries') mapped in. It depends on the build (LTO, features), not on the tenants.
    fn rss_file_mib(&self) -> f64 {
        status_field(self.pid, "RssFile:").unwrap_or(0) as f64 / 1024.0
    }

    /// Reconciles `controller` has run (its `recording_operator_reconciles_total`).
    async fn reconciles(&self, controller: &str) -> f64 {
        let prefix = format!("recording_operator_reconciles_total{{controller=\"{controller}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// E-mails the operator sent (its `recording_operator_notifications_sent_total`, all kinds).
    async fn notifications_sent(&self) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("recording_operator_notifications_sent_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    /// Whether this process leads (its `recording_operator_leader` gauge).
    async fn leads(&self) -> bool {
        let Ok(response) = reqwest::get(format!("http://{}/metrics", self.http)).await else {
            return false;
        };
        response.text().await.unwrap_or_default().lines().any(|l| {
            l.strip_prefix("recording_operator_leader ")
                .is_some_and(|v| v.trim() == "1")
        })
    }

    /// SIGKILL, as a crash or an evicted pod: no graceful shutdown.
    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    async fn stop(mut self) {
        // SIGTERM for a graceful shutdown; the process is ours (pid from spawn).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

/// Reconcile duration histogram of one controller: cumulative counts per upper bound.
#[derive(Clone, Debug, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Histograms per controller from the OpenMetrics text.
    fn parse(text: &str) -> BTreeMap<String, Histogram> {
        let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) =
                line.strip_prefix("recording_operator_reconcile_duration_seconds_bucket{")
            else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_string())
                })
            };
            let (Some(controller), Some(le)) = (label("controller"), label("le")) else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            let count: f64 = value
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0.0);
            out.entry(controller).or_default().buckets.push((le, count));
        }
        for h in out.values_mut() {
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        out
    }

    fn minus(&self, before: Option<&Histogram>) -> Histogram {
        let Some(before) = before else {
            return self.clone();
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| {
                    let b = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map(|(_, c)| *c)
                        .unwrap_or(0.0);
                    (*le, c - b)
                })
                .collect(),
        }
    }

    fn count(&self) -> f64 {
        self.buckets.last().map(|(_, c)| *c).unwrap_or(0.0)
    }

    /// The q-quantile by linear interpolation inside its bucket (as Prometheus'
    /// `histogram_quantile` does), in milliseconds.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return Some(prev.0 * 1000.0);
                }
                let in_bucket = c - prev.1;
                let frac = if in_bucket > 0.0 {
                    (rank - prev.1) / in_bucket
                } else {
                    1.0
                };
                return Some((prev.0 + (le - prev.0) * frac) * 1000.0);
            }
            prev = (le, c);
        }
        None
    }
}

fn fmt_quantiles(h: Option<&Histogram>) -> String {
    match h {
        Some(h) if h.count() > 0.0 => format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} reconciles)",
            h.quantile_ms(0.5).unwrap_or(0.0),
            h.quantile_ms(0.99).unwrap_or(0.0),
            h.count()
        ),
        _ => "no reconciles".into(),
    }
}

type KubeCounts = BTreeMap<(String, String), u64>;

/// Per tenant namespace: the last `lastCheckedAt` seen and the polls counted.
type PollCounts = HashMap<String, (Option<String>, u64)>;

/// Per object (tenant namespace, grant name; an empty name for the Tenant): the last
/// `resourceVersion` seen, and the new ones seen while counting.
#[derive(Default)]
struct ObjectWrites {
    last: HashMap<(String, String), String>,
    written: HashMap<(String, String), u64>,
}

impl ObjectWrites {
    fn seen(&mut self, key: (String, String), version: Option<String>, counting: bool) {
        let version = version.unwrap_or_default();
        if self.last.insert(key.clone(), version.clone()).as_ref() != Some(&version) && counting {
            *self.written.entry(key).or_default() += 1;
        }
    }
}

fn diff_counts(after: &KubeCounts, before: &KubeCounts) -> KubeCounts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Requests per verb, and the resources behind each.
fn by_verb(counts: &KubeCounts) -> BTreeMap<String, (u64, Vec<String>)> {
    let mut out: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for ((verb, resource), n) in counts {
        let e = out.entry(verb.clone()).or_default();
        e.0 += n;
        e.1.push(format!("{resource} {n}"));
    }
    out
}

/// Table rows: (figure, value).
#[derive(Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    fn print(&self, title: &str) {
        let width = self.0.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        println!("\n## {title}\n");
        println!("| {:width$} | value |", "figure");
        println!("|{}|-------|", "-".repeat(width + 2));
        for (n, v) in &self.0 {
            println!("| {n:width$} | {v} |");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Driving tenants
// ---------------------------------------------------------------------------------------------

/// Applies tenants `0..n` and returns once every one is Ready.
async fn apply_tenants_until_ready(client: &kube::Client, n: usize, concurrency: usize) {
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { wait_tenants(&client, n, is_ready).await })
    };
    apply_tenants(client, n, concurrency).await;
    waiting.await.expect("watch");
}

/// Applies tenants `0..n`, `concurrency` requests in flight.
async fn apply_tenants(client: &kube::Client, n: usize, concurrency: usize) {
    let api: Api<Tenant> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &tenant_object(i))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("tenants created");
}

/// The baseline: the same objects the operator would create, created by a plain client.
async fn baseline(client: &kube::Client, config: &OperatorConfig, n: usize, concurrency: usize) {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let (tenants, namespaces, client) =
                (tenants.clone(), namespaces.clone(), client.clone());
            async move {
                let pp = PostParams::default();
                let tenant = tenants.create(&pp, &tenant_object(i)).await?;
                let children = desired_children(&tenant, config);
                let ns = tenant.namespace_name();
                namespaces.create(&pp, &children.namespace).await?;
                Api::<ResourceQuota>::namespaced(client.clone(), &ns)
                    .create(&pp, &children.quota)
                    .await?;
                Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                    .create(&pp, &children.network_policy)
                    .await?;
                let grants: Api<ConsentGrant> = Api::namespaced(client.clone(), &ns);
                for g in &children.grants {
                    grants.create(&pp, g).await?;
                }
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("baseline objects created");
}

/// What the operator's run wrote last for one tenant of each kind (Pro, Essentials): the
/// Tenant's status and its grants' statuses by grant name. The floor replays them.
#[derive(Clone, Default)]
struct Written {
    tenant: [serde_json::Value; 2],
    grants: [BTreeMap<String, serde_json::Value>; 2],
}

impl Written {
    /// Reads tenants 0 (Pro) and 1 (Essentials) and their grants after the operator's run.
    async fn read(client: &kube::Client) -> Written {
        let mut written = Written::default();
        for i in 0..2 {
            let tenant = Api::<Tenant>::all(client.clone())
                .get(&tenant_name(i))
                .await
                .expect("tenant read");
            written.tenant[i] = serde_json::to_value(&tenant.status).expect("status");
            let grants = Api::<ConsentGrant>::namespaced(client.clone(), &tenant.namespace_name())
                .list(&Default::default())
                .await
                .expect("grants listed");
            for g in grants.items {
                let status = serde_json::to_value(&g.status).expect("status");
                written.grants[i].insert(g.name_any(), status);
            }
        }
        written
    }
}

/// The floor: every write the operator's run makes for a tenant, made by a plain client with
/// nothing else: no watch, no cache, no Graph, no decision. The Tenant create (the user's),
/// the namespace, quota, policy and grants by server-side apply as the operator applies them,
/// each grant's final status, the Tenant's final status (one write, where the operator makes
/// two) and the Event of its transition, published by the operator's own `Events`.
async fn floor(
    client: &kube::Client,
    config: &OperatorConfig,
    written: &Written,
    n: usize,
    concurrency: usize,
) {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let events = recording_operator::controller::Events::new(client.clone(), "tenant");
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    stream::iter(0..n)
        .map(|i| {
            let (tenants, client, events, apply) = (
                tenants.clone(),
                client.clone(),
                events.clone(),
                apply.clone(),
            );
            async move {
                let tenant = tenants
                    .create(&PostParams::default(), &tenant_object(i))
                    .await?;
                let children = desired_children(&tenant, config);
                let ns = tenant.namespace_name();
                Api::<Namespace>::all(client.clone())
                    .patch(&ns, &apply, &Patch::Apply(&children.namespace))
                    .await?;
                Api::<ResourceQuota>::namespaced(client.clone(), &ns)
                    .patch(
                        &children.quota.name_any(),
                        &apply,
                        &Patch::Apply(&children.quota),
                    )
                    .await?;
                Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                    .patch(
                        &children.network_policy.name_any(),
                        &apply,
                        &Patch::Apply(&children.network_policy),
                    )
                    .await?;
                let grants: Api<ConsentGrant> = Api::namespaced(client.clone(), &ns);
                for g in &children.grants {
                    grants
                        .patch(&g.name_any(), &apply, &Patch::Apply(g))
                        .await?;
                }
                for g in &children.grants {
                    let status = written.grants[i % 2].get(&g.name_any());
                    let patch = json!({
                        "apiVersion": "recording.m365.io/v1alpha1",
                        "kind": "ConsentGrant",
                        "status": status,
                    });
                    grants
                        .patch_status(&g.name_any(), &apply, &Patch::Apply(&patch))
                        .await?;
                }
                let patch = json!({
                    "apiVersion": "recording.m365.io/v1alpha1",
                    "kind": "Tenant",
                    "status": written.tenant[i % 2],
                });
                let tenant = tenants
                    .patch_status(&tenant.name_any(), &apply, &Patch::Apply(&patch))
                    .await?;
                events
                    .publish(
                        &tenant,
                        false,
                        "Ready",
                        "Reconcile",
                        "all mandatory consents granted".into(),
                    )
                    .await;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("floor writes made");
}

/// The floor on a fresh simulator: its time, its requests and the bench process's CPU time.
async fn run_floor(args: &Args, written: &Written) -> BaselineRun {
    let (n, concurrency, written) = (args.tenants, args.concurrency, written.clone());
    let run = timed_on_fresh_world(move |w| {
        Box::pin(async move { floor(&w.client, &w.config, &written, n, concurrency).await })
    })
    .await;
    eprintln!(
        "floor: {n} tenants' writes in {:.2?} ({} requests)",
        run.time, run.requests
    );
    run
}

/// Runs `work` against fresh simulators: its time, the API requests it made and the bench
/// process's CPU time (simulators and client) meanwhile.
async fn timed_on_fresh_world(
    work: impl for<'w> FnOnce(&'w World) -> futures::future::BoxFuture<'w, ()>,
) -> BaselineRun {
    let world = World::start(PollingConfig::default(), 3599).await;
    let before = world.kube.request_counts();
    let started = Instant::now();
    let cpu_before = bench_cpu_secs();
    work(&world).await;
    let time = started.elapsed();
    let cpu = bench_cpu_secs() - cpu_before;
    let requests = diff_counts(&world.kube.request_counts(), &before)
        .values()
        .sum();
    world.m365.clone().shutdown().await;
    world.kube.clone().shutdown().await;
    BaselineRun {
        time,
        requests,
        cpu,
    }
}

fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.observed_generation == t.metadata.generation
    })
}

/// Watches Tenants until `want` of them satisfy `pred`.
async fn wait_tenants(client: &kube::Client, want: usize, pred: impl Fn(&Tenant) -> bool) {
    let api: Api<Tenant> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut ok: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else { continue };
        match event {
            watcher::Event::Apply(t) | watcher::Event::InitApply(t) => {
                if pred(&t) {
                    ok.insert(t.name_any());
                } else {
                    ok.remove(&t.name_any());
                }
            }
            watcher::Event::Delete(t) => {
                ok.remove(&t.name_any());
            }
            _ => {}
        }
        if ok.len() >= want {
            return;
        }
    }
}

/// The baseline on a fresh simulator: its time and the number of creates it made.
async fn run_baseline(args: &Args) -> BaselineRun {
    let n = args.tenants;
    let run =
        timed_on_fresh_world(|w| Box::pin(baseline(&w.client, &w.config, n, args.concurrency)))
            .await;
    eprintln!(
        "baseline: {n} tenants' objects in {:.2?} ({} creates)",
        run.time, run.requests
    );
    run
}

/// What the baseline (or the floor) took: its time, its requests and the CPU time of the bench process
/// (simulator and client) meanwhile.
struct BaselineRun {
    time: Duration,
    requests: u64,
    cpu: f64,
}

/// Only the baseline: what the simulator costs per request at this size.
async fn phase_baseline(args: &Args) -> Table {
    let n = args.tenants;
    let mut table = Table::default();
    table.row("tenants (every other Pro)", n.to_string());
    table.row("client concurrency", args.concurrency.to_string());
    let BaselineRun {
        time: base,
        requests,
        cpu: base_cpu,
    } = run_baseline(args).await;
    table.row(
        "baseline: objects created by a plain client",
        format!("{base:.2?}"),
    );
    table.row(
        "baseline CPU time (simulators + client)",
        format!("{base_cpu:.2}s"),
    );
    table.row(
        "baseline API requests (creates)",
        format!("{requests} ({:.2} per tenant)", requests as f64 / n as f64),
    );
    table.row(
        "baseline requests per second",
        format!("{:.0}", requests as f64 / base.as_secs_f64()),
    );
    table
}

// ---------------------------------------------------------------------------------------------
// Phase 1: time to Ready, requests, memory, reconcile durations
// ---------------------------------------------------------------------------------------------

async fn phase_ready(args: &Args) -> Table {
    let n = args.tenants;
    let mut table = Table::default();
    table.row("tenants (every other Pro)", n.to_string());
    table.row("client concurrency", args.concurrency.to_string());
    table.row(
        "operator --concurrency",
        args.operator_concurrency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "default".into()),
    );

    let BaselineRun {
        time: base,
        requests: base_requests,
        cpu: base_cpu,
    } = run_baseline(args).await;

    // The operator.
    let world = World::start(PollingConfig::default(), 3599).await;
    world.add_customers(n, |_| Granted::All);
    let operator = Operator::start(&world, "ready", args.operator_concurrency).await;
    let before = world.kube.request_counts();
    world.m365.reset_counts();
    let metrics_before = Histogram::parse(&operator.metrics().await);

    let started = Instant::now();
    let operator_cpu_before = cpu_secs(operator.pid).unwrap_or(0.0);
    let bench_cpu_before = bench_cpu_secs();
    let waiting = {
        let client = world.client.clone();
        tokio::spawn(async move { wait_tenants(&client, n, is_ready).await })
    };
    apply_tenants(&world.client, n, args.concurrency).await;
    let applied = started.elapsed();
    waiting.await.expect("watch");
    let ready = started.elapsed();
    let operator_cpu = cpu_secs(operator.pid).unwrap_or(0.0) - operator_cpu_before;
    let bench_cpu = bench_cpu_secs() - bench_cpu_before;
    eprintln!("operator: {n} tenants applied in {applied:.2?}, all Ready after {ready:.2?}");
    // Let the last writes settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after = world.kube.request_counts();
    let m365 = world.m365.counts().total;
    let metrics_ready = Histogram::parse(&operator.metrics().await);

    table.row(
        "baseline: objects created by a plain client",
        format!("{base:.2?}"),
    );
    table.row("operator: Tenants applied", format!("{applied:.2?}"));
    table.row("operator: all Ready", format!("{ready:.2?}"));
    table.row(
        "ratio operator / baseline (goal ≤ 1.5)",
        format!("{:.2}", ready.as_secs_f64() / base.as_secs_f64()),
    );
    table.row(
        "CPU time: baseline (simulators + client)",
        format!("{base_cpu:.2}s"),
    );
    table.row(
        "CPU time until all Ready: operator / simulators + bench client",
        format!("{operator_cpu:.2}s / {bench_cpu:.2}s"),
    );

    let mut diff = diff_counts(&after, &before);
    // The bench's own requests: the Tenant creates (and its watch).
    if let Some(c) = diff.get_mut(&("create".into(), "tenants".into())) {
        *c -= n as u64;
    }
    for (verb, (count, resources)) in by_verb(&diff) {
        table.row(
            format!("API {verb} per tenant"),
            format!("{:.2} ({})", count as f64 / n as f64, resources.join(", ")),
        );
    }
    let total: u64 = diff.values().sum();
    table.row(
        "API requests per tenant (operator)",
        format!("{:.2}", total as f64 / n as f64),
    );
    table.row(
        "baseline API requests per tenant",
        format!("{:.2}", base_requests as f64 / n as f64),
    );
    table.row(
        "Graph requests per tenant (GET + $batch)",
        format!(
            "{:.2} (GET {}, $batch {} carrying {} items)",
            m365.graph_requests() as f64 / n as f64,
            m365.graph_get,
            m365.graph_batch,
            m365.batch_items
        ),
    );
    table.row(
        "token requests per tenant",
        format!("{:.2}", m365.token as f64 / n as f64),
    );
    table.row(
        "discovery requests per tenant",
        format!("{:.2}", m365.discovery as f64 / n as f64),
    );
    for (controller, h) in &metrics_ready {
        table.row(
            format!("reconcile {controller}, whole run (with API/Graph calls)"),
            fmt_quantiles(Some(&h.minus(metrics_before.get(controller)))),
        );
    }
    // Two Tenant reconciles per tenant are needed (provision, then Ready once the grants
    // are checked); more are wake-ups that found nothing to do.
    for (controller, h) in &metrics_ready {
        table.row(
            format!("{controller} reconciles per tenant, until all Ready + 2 s"),
            format!(
                "{:.2}",
                h.minus(metrics_before.get(controller)).count() / n as f64
            ),
        );
    }

    let peak_when_ready = operator.peak_rss_mib();
    let heap_when_ready = operator.heap_mib().await;

    // Reconciles without outside calls: touch every Tenant and every ConsentGrant. Nothing
    // the operator reads changed, so the Tenant reconcile reads its caches only and the
    // grants are not due for a check. (A Tenant's annotation does not wake its grants.)
    let poke_started = Instant::now();
    let poke_before = world.kube.request_counts();
    let api: Api<Tenant> = Api::all(world.client.clone());
    poke(
        (0..n).map(|i| (api.clone(), tenant_name(i))),
        args.concurrency,
    )
    .await
    .expect("tenants poked");
    let grants: Vec<(String, String)> = Api::<ConsentGrant>::all(world.client.clone())
        .list(&Default::default())
        .await
        .expect("grants listed")
        .items
        .iter()
        .map(|g| (g.namespace().unwrap_or_default(), g.name_any()))
        .collect();
    poke(
        grants.iter().map(|(ns, name)| {
            let api: Api<ConsentGrant> = Api::namespaced(world.client.clone(), ns);
            (api, name.clone())
        }),
        args.concurrency,
    )
    .await
    .expect("grants poked");
    // The bench's own requests: one patch per Tenant and per grant, and the list.
    let bench_requests = (n + grants.len() + 1) as u64;
    // Wait until the tenant controller has reconciled every poked Tenant and the consent
    // controller every tenant whose grants were poked (it reconciles a tenant's grants
    // together), at most a minute.
    let total_of = |text: &str, controller: &str| -> f64 {
        Histogram::parse(text)
            .get(controller)
            .map(Histogram::count)
            .unwrap_or(0.0)
    };
    let want = |controller: &str, poked: usize| {
        metrics_ready
            .get(controller)
            .map(Histogram::count)
            .unwrap_or(0.0)
            + poked as f64
    };
    let poked_tenants = grants
        .iter()
        .map(|(ns, _)| ns)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (want_tenants, want_grants) = (want("tenant", n), want("consentgrant", poked_tenants));
    for _ in 0..600 {
        let text = operator.metrics().await;
        if total_of(&text, "tenant") >= want_tenants
            && total_of(&text, "consentgrant") >= want_grants
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics_poked = Histogram::parse(&operator.metrics().await);
    let poke_calls: u64 = diff_counts(&world.kube.request_counts(), &poke_before)
        .values()
        .sum::<u64>()
        .saturating_sub(bench_requests);
    eprintln!("poke: {:.2?}", poke_started.elapsed());
    for (controller, h) in &metrics_poked {
        table.row(
            format!("reconcile {controller}, poke (no outside calls)"),
            fmt_quantiles(Some(&h.minus(metrics_ready.get(controller)))),
        );
    }
    table.row(
        "API requests by the operator during the poke",
        poke_calls.to_string(),
    );
    table.row(
        "operator peak RSS when all Ready",
        format!("{peak_when_ready:.1} MiB"),
    );
    table.row(
        "operator peak RSS (VmHWM; goal ≤ 64 MiB at 10,000)",
        format!("{:.1} MiB", operator.peak_rss_mib()),
    );
    table.row(
        "operator RSS at the end (of it code and libraries mapped in: RssFile)",
        format!(
            "{:.1} MiB ({:.1} MiB)",
            operator.rss_mib(),
            operator.rss_file_mib()
        ),
    );
    let mib = |v: Option<f64>| v.map_or("not exposed".to_string(), |v| format!("{v:.1} MiB"));
    table.row(
        "operator heap in use when all Ready (live memory, steadier than RSS)",
        mib(heap_when_ready),
    );
    table.row(
        "operator heap in use at the end",
        mib(operator.heap_mib().await),
    );
    let written = Written::read(&world.client).await;
    operator.stop().await;
    world.m365.clone().shutdown().await;
    world.kube.clone().shutdown().await;

    let floor = run_floor(args, &written).await;
    table.row(
        "floor: the operator's writes by a plain client (no reads, no Graph)",
        format!("{:.2?}", floor.time),
    );
    table.row(
        "ratio floor / baseline",
        format!("{:.2}", floor.time.as_secs_f64() / base.as_secs_f64()),
    );
    table.row(
        "CPU time: floor (simulators + client)",
        format!("{:.2}s", floor.cpu),
    );
    table.row(
        "floor API requests per tenant (the Tenant's create included)",
        format!("{:.2}", floor.requests as f64 / n as f64),
    );
    table
}

// ---------------------------------------------------------------------------------------------
// Phase 3: restarts
// ---------------------------------------------------------------------------------------------

/// Every Tenant's and ConsentGrant's resourceVersion, by namespace/name.
async fn versions(client: &kube::Client) -> BTreeMap<String, String> {
    let key = |ns: Option<String>, name: String, v: Option<String>| {
        (
            format!("{}/{name}", ns.unwrap_or_default()),
            v.unwrap_or_default(),
        )
    };
    let mut all: BTreeMap<String, String> = Api::<Tenant>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("tenants listed")
        .items
        .into_iter()
        .map(|t| key(None, t.name_any(), t.resource_version()))
        .collect();
    all.extend(
        Api::<ConsentGrant>::all(client.clone())
            .list(&Default::default())
            .await
            .expect("grants listed")
            .items
            .into_iter()
            .map(|g| key(g.namespace(), g.name_any(), g.resource_version())),
    );
    all
}

/// All N tenants Ready, then the operator is killed (SIGKILL) and started again, `--restarts` times (3):
/// what each restart writes (API requests other than get, list and watch; Tenants and grants
/// whose resourceVersion moved) and the Events it publishes. Nothing the operator reads
/// changed, so every figure should be 0. With `--services-per-tenant K`, each tenant has K
/// RecordingServices, all Ready before the first kill, and a restart waits for every service's
/// reconcile too.
async fn phase_restart(args: &Args) -> Table {
    let n = args.tenants;
    let mut table = Table::default();
    table.row("tenants (every other Pro, all granted)", n.to_string());
    let world = World::start(PollingConfig::default(), 3599).await;
    world.add_customers(n, |_| Granted::All);
    let mut operator = Operator::start(&world, "restart", args.operator_concurrency).await;
    apply_tenants_until_ready(&world.client, n, args.concurrency).await;
    let per_tenant = args.services_per_tenant;
    let services = n * per_tenant;
    if per_tenant > 0 {
        let ready =
            rollouts::create_services_until_ready(&world, n, per_tenant, args.concurrency).await;
        table.row(
            format!("services ({per_tenant} per tenant) created and Ready"),
            format!(
                "{services} in {}",
                ready.map_or("not within 15 min".into(), |d| format!("{d:.2?}"))
            ),
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (reference, listed) = list_and_watch(&world.client, per_tenant > 0).await;
    table.row(
        if per_tenant > 0 {
            "reference: a plain client lists and watches every Tenant, ConsentGrant and RecordingService"
        } else {
            "reference: a plain client lists and watches every Tenant and ConsentGrant"
        },
        format!("{reference:.2?} ({listed} objects)"),
    );
    for restart in 1..=args.restarts {
        let before = rollouts::Counters::take(&world).await;
        world.m365.reset_counts();
        operator.kill().await;
        let started = Instant::now();
        operator = Operator::start(&world, "restart", args.operator_concurrency).await;
        let synced = started.elapsed();
        // Every Tenant reconciled once by both controllers, and every service once, then time
        // for what follows.
        let (mut tenants_done, mut services_done) = (None, None);
        for _ in 0..6000 {
            if tenants_done.is_none()
                && operator.reconciles("tenant").await >= n as f64
                && operator.reconciles("consentgrant").await >= n as f64
            {
                tenants_done = Some(started.elapsed());
            }
            if services_done.is_none()
                && operator.reconciles("recordingservice").await >= services as f64
            {
                services_done = Some(started.elapsed());
            }
            if tenants_done.is_some() && services_done.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reconciled = started.elapsed();
        if per_tenant > 0 {
            let at =
                |d: Option<Duration>| d.map_or("not within 10 min".into(), |d| format!("{d:.2?}"));
            table.row(
                format!("restart {restart}: every Tenant / every service reconciled"),
                format!("{} / {}", at(tenants_done), at(services_done)),
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rollouts::Counters::take(&world).await;
        table.row(
            format!("restart {restart}: ready (caches synced) / every Tenant reconciled"),
            format!("{synced:.2?} / {reconciled:.2?}"),
        );
        before.rows(
            &after,
            &world,
            &[],
            &format!("restart {restart}: "),
            &mut table,
        );
        table.row(
            format!(
                "restart {restart}: notifications sent (none configured: Events stand for them)"
            ),
            format!("{}", operator.notifications_sent().await),
        );
        table.row(
            format!("restart {restart}: every Tenant reconciled / reference"),
            format!("{:.2}×", reconciled.as_secs_f64() / reference.as_secs_f64()),
        );
        table.row(
            format!("restart {restart}: operator peak RSS during the resync"),
            format!("{:.1} MiB", operator.peak_rss_mib()),
        );
    }
    operator.stop().await;
    world.m365.clone().shutdown().await;
    world.kube.clone().shutdown().await;
    table
}

// ---------------------------------------------------------------------------------------------
// Phase 2: steady state over a simulated day, and pending tenants
// ---------------------------------------------------------------------------------------------

/// The reference for a resync: a plain client lists and watches every Tenant and every
/// ConsentGrant (both at once, as the operator does, objects kept in memory) until both lists
/// are complete. Returns the time and the number of objects.
async fn list_and_watch(client: &kube::Client, with_services: bool) -> (Duration, usize) {
    async fn listed<K>(api: Api<K>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let mut stream = watcher(api, watcher::Config::default().any_semantic()).boxed();
        let mut objects = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitApply(o)) => objects.push(o),
                Ok(watcher::Event::InitDone) => break,
                _ => {}
            }
        }
        objects
    }
    let started = Instant::now();
    let services = async {
        if with_services {
            listed(Api::<RecordingService>::all(client.clone()))
                .await
                .len()
        } else {
            0
        }
    };
    let (tenants, grants, services) = futures::join!(
        listed(Api::<Tenant>::all(client.clone())),
        listed(Api::<ConsentGrant>::all(client.clone())),
        services
    );
    (started.elapsed(), tenants.len() + grants.len() + services)
}

/// Which tenants stay pending: every tenth, half of them with the directory consent given.
fn granted_of(i: usize) -> Granted {
    match i % 20 {
        9 => Granted::Nothing,
        19 => Granted::DirectoryOnly,
        _ => Granted::All,
    }
}

async fn phase_steady(args: &Args) -> Table {
    let n = args.tenants;
    let day = Duration::from_secs(args.day_secs);
    let scale = day.as_secs_f64() / 86_400.0;
    let defaults = PollingConfig::default();
    // Granted polling scaled to the simulated day; pending polling scaled to 1/30 so polls
    // are frequent enough to count without flooding the simulators (per-poll figures do
    // not depend on the scale as long as every timing shares it).
    let pending_scale = 1.0 / 30.0;
    let polling = PollingConfig {
        granted_interval: defaults.granted_interval.mul_f64(scale),
        token_renew_before: defaults.token_renew_before.mul_f64(scale),
        pending_initial: defaults.pending_initial.mul_f64(pending_scale),
        pending_max: defaults.pending_max.mul_f64(pending_scale),
        check_cache_ttl: defaults.check_cache_ttl.mul_f64(pending_scale),
        granted_status_refresh: defaults.granted_status_refresh.mul_f64(scale),
        ..defaults.clone()
    };
    let token_lifetime = ((3599.0 * scale).round() as u64).max(1);
    let mut table = Table::default();
    table.row("tenants", n.to_string());
    table.row(
        "simulated day",
        format!(
            "{}s (granted interval {:.1?}, token lifetime {token_lifetime}s, renewed {:.2?} before expiry)",
            day.as_secs(),
            polling.granted_interval,
            polling.token_renew_before
        ),
    );
    table.row(
        "pending timings (1/30)",
        format!(
            "initial {:.2?}, max {:.2?}, check cache {:.0?}",
            polling.pending_initial, polling.pending_max, polling.check_cache_ttl
        ),
    );

    let world = World::start(polling.clone(), token_lifetime).await;
    world.add_customers(n, granted_of);
    let operator = Operator::start(&world, "steady", args.operator_concurrency).await;
    let granted: Vec<usize> = (0..n).filter(|i| granted_of(*i) == Granted::All).collect();
    let nothing: Vec<usize> = (0..n)
        .filter(|i| granted_of(*i) == Granted::Nothing)
        .collect();
    let directory_only: Vec<usize> = (0..n)
        .filter(|i| granted_of(*i) == Granted::DirectoryOnly)
        .collect();

    let waiting = {
        let client = world.client.clone();
        let want = granted.len();
        tokio::spawn(async move { wait_tenants(&client, want, is_ready).await })
    };
    apply_tenants(&world.client, n, args.concurrency).await;
    waiting.await.expect("watch");
    // Pending tenants reach their longest poll interval after a few doublings.
    let settle = polling.pending_initial * 8 + polling.pending_max;
    tokio::time::sleep(settle).await;

    // Count polls of the pending tenants: each new lastCheckedAt of their `recording` grant
    // (pending in both kinds of pending tenant). And the writes of every tenant's objects:
    // each new resourceVersion of a ConsentGrant or Tenant, by tenant namespace.
    let polls: Arc<Mutex<PollCounts>> = Default::default();
    let object_writes: Arc<Mutex<ObjectWrites>> = Default::default();
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tenant_watch = {
        let (writes, counting) = (object_writes.clone(), counting.clone());
        let api: Api<Tenant> = Api::all(world.client.clone());
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(t) | watcher::Event::InitApply(t)) = event else {
                    continue;
                };
                let namespace = format!("tenant-{}", t.name_any());
                writes.lock().unwrap().seen(
                    (namespace, String::new()),
                    t.resource_version(),
                    counting.load(std::sync::atomic::Ordering::SeqCst),
                );
            }
        })
    };
    let poll_watch = {
        let (polls, counting) = (polls.clone(), counting.clone());
        let writes = object_writes.clone();
        let api: Api<ConsentGrant> = Api::all(world.client.clone());
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) = event else {
                    continue;
                };
                writes.lock().unwrap().seen(
                    (g.namespace().unwrap_or_default(), g.name_any()),
                    g.resource_version(),
                    counting.load(std::sync::atomic::Ordering::SeqCst),
                );
                if g.name_any() != "recording" {
                    continue;
                }
                let checked = g
                    .status
                    .as_ref()
                    .and_then(|s| s.last_checked_at.as_ref())
                    .map(|t| t.0.to_string());
                let mut polls = polls.lock().unwrap();
                let entry = polls
                    .entry(g.namespace().unwrap_or_default())
                    .or_insert((None, 0));
                if entry.0 != checked {
                    entry.0 = checked;
                    if counting.load(std::sync::atomic::Ordering::SeqCst) {
                        entry.1 += 1;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.m365.reset_counts();
    let kube_before = world.kube.request_counts();
    counting.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(day * args.days).await;
    counting.store(false, std::sync::atomic::Ordering::SeqCst);
    let window = started.elapsed();
    let counts = world.m365.counts();
    let kube_after = world.kube.request_counts();
    poll_watch.abort();
    tenant_watch.abort();
    let object_writes = object_writes.lock().unwrap().written.clone();
    let polls = polls.lock().unwrap().clone();

    let per = |set: &[usize], pick: fn(&sim::m365::EndpointCounts) -> u64| -> u64 {
        set.iter()
            .map(|i| pick(&counts.tenant(&tenant_id(*i))))
            .sum()
    };
    let days = window.as_secs_f64() / day.as_secs_f64();
    let g = granted.len().max(1) as f64;
    let graph_granted = per(&granted, |c| c.graph_requests()) as f64 / g / days;
    table.row(
        "granted: Graph requests per tenant per day (goal ≤ 6)",
        format!("{graph_granted:.2}"),
    );
    table.row(
        "granted: token requests per tenant per day",
        format!("{:.2}", per(&granted, |c| c.token) as f64 / g / days),
    );
    table.row(
        "granted: $batch items per tenant per day",
        format!("{:.2}", per(&granted, |c| c.batch_items) as f64 / g / days),
    );
    for (label, set) in [
        ("pending, nothing granted", &nothing),
        ("pending, directory granted", &directory_only),
    ] {
        let poll_count: u64 = set
            .iter()
            .map(|i| {
                polls
                    .get(&format!("tenant-{}", tenant_name(*i)))
                    .map(|p| p.1)
                    .unwrap_or(0)
            })
            .sum();
        let per_poll = |pick: fn(&sim::m365::EndpointCounts) -> u64| {
            per(set, pick) as f64 / (poll_count.max(1) as f64)
        };
        table.row(
            format!("{label}: tenants, polls in the window"),
            format!(
                "{}, {poll_count} ({:.1} per tenant)",
                set.len(),
                poll_count as f64 / set.len().max(1) as f64
            ),
        );
        table.row(
            format!("{label}: Graph requests per tenant per poll (goal ≤ 1)"),
            format!("{:.2}", per_poll(|c| c.graph_requests())),
        );
        table.row(
            format!("{label}: token requests per tenant per poll"),
            format!("{:.2}", per_poll(|c| c.token)),
        );
    }
    for (label, set) in [
        ("granted", &granted),
        (
            "pending",
            &nothing.iter().chain(&directory_only).copied().collect(),
        ),
    ] {
        let (mut tenants, mut grants) = (0u64, 0u64);
        for i in set {
            let namespace = format!("tenant-{}", tenant_name(*i));
            for ((ns, name), count) in &object_writes {
                if *ns == namespace {
                    if name.is_empty() {
                        tenants += count;
                    } else {
                        grants += count;
                    }
                }
            }
        }
        let per = |c: u64| c as f64 / set.len().max(1) as f64 / days;
        table.row(
            format!("{label}: object writes per tenant per day, ConsentGrants / Tenant (goal for granted: ≤ 1 in all)"),
            format!("{:.2} / {:.2}", per(grants), per(tenants)),
        );
    }
    let kube = diff_counts(&kube_after, &kube_before);
    for (verb, (count, resources)) in by_verb(&kube) {
        table.row(
            format!("API {verb} per tenant per day"),
            format!(
                "{:.2} ({})",
                count as f64 / n as f64 / days,
                resources.join(", ")
            ),
        );
    }
    finish(table, "operator peak RSS", operator, &world).await
}

/// Ends a phase: the operator's peak RSS as the table's last row (named `label`), then the
/// operator and both simulators stopped.
async fn finish(mut table: Table, label: &str, operator: Operator, world: &World) -> Table {
    table.row(label, format!("{:.1} MiB", operator.peak_rss_mib()));
    operator.stop().await;
    world.m365.clone().shutdown().await;
    world.kube.clone().shutdown().await;
    table
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {mem}, {cpu}")
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("# scale benchmark: {} tenants", args.tenants);
    println!("machine: {}", machine());
    runtime.block_on(async {
        if matches!(args.phase, Phase::Ready | Phase::All) {
            phase_ready(&args)
                .await
                .print("time to Ready, requests, memory");
        }
        if args.phase == Phase::Baseline {
            phase_baseline(&args)
                .await
                .print("baseline: the simulator alone");
        }
        if matches!(args.phase, Phase::Restart | Phase::All) {
            phase_restart(&args)
                .await
                .print("restarts: what a killed and restarted operator writes again");
        }
        if matches!(args.phase, Phase::Failover | Phase::All) {
            rollouts::phase_failover(&args)
                .await
                .print("failover: the leader killed, the standby takes over");
        }
        if matches!(args.phase, Phase::Upgrade | Phase::All) {
            rollouts::phase_upgrade(&args)
                .await
                .print("upgrade: a new bot image default, rollouts paced by the budget");
        }
        if matches!(args.phase, Phase::Steady | Phase::All) {
            phase_steady(&args)
                .await
                .print("steady state over a simulated day");
        }
    });
}
