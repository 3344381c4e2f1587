//! `recording-operator run` as platform engineers run it — a separate process with a
//! configuration file and a kubeconfig — two replicas with leader election against the
//! simulators: only the leader reconciles, and killing it hands over.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Harness;
use recording_operator::crd::Health;
use recording_operator::demo::PlatformOptions;

struct Replica {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(dir: &std::path::Path, name: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_recording-operator"))
            .args(["run", "--config"])
            .arg(dir.join("operator.yaml"))
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--public-addr", "127.0.0.1:0"])
            .args(["--leader-election-identity", name])
            .args([
                "--leader-election-lease-duration",
                "4s",
                "--leader-election-renew-period",
                "1s",
            ])
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env(
                "POD_NAMESPACE",
                recording_operator::demo::OPERATOR_NAMESPACE,
            )
            // Every Kubernetes API request as a debug span.
            .env("RUST_LOG", "info,recording_operator::kube_http=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("the operator binary starts");
        Replica {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            log,
        }
    }

    /// Waits until the replica says it leads.
    async fn wait_leading(&self, what: &str) {
        common::wait_for(
            Duration::from_secs(30),
            || async { self.leading().await },
            |l| *l,
            what,
        )
        .await;
    }

    /// The replica's `recording_operator_leader` gauge, once its endpoint answers.
    async fn leading(&self) -> Option<bool> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("recording_operator_leader "))?;
        Some(line.ends_with(" 1"))
    }
}

/// A replica left running by a failed test is stopped with it.
impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory with the operator's kubeconfig and configuration file for the simulators.
fn operator_files(h: &Harness, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    h.platform
        .kube
        .write_kubeconfig(&dir.join("kubeconfig"))
        .unwrap();
    std::fs::write(
        dir.join("operator.yaml"),
        serde_saphyr::to_string(&h.platform.config).unwrap(),
    )
    .unwrap();
    dir
}

/// Applies a Tenant, accepts every consent it asks for and waits until it is healthy.
async fn onboard(h: &Harness, name: &str) {
    h.apply(&tenant(name, &format!("{name}.onmicrosoft.com")))
        .await;
    h.accept_consents(name).await;
    h.wait_health(name, Duration::from_secs(30), Health::Ok)
        .await;
}

fn tenant(name: &str, domain: &str) -> String {
    format!(
        "apiVersion: recording.m365.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  customerName: {name}\n  domain: {domain}\n  shortName: {name}\n  contactEmails: [ops@example.com]\n  adminUpns: [admin@{domain}]\n  license: Essentials\n  includedUsers: 5\n  storage:\n    location: westeurope\n"
    )
}

/// Two replicas started at once, once exactly one of them leads: (leader, standby).
async fn two_replicas(dir: &std::path::Path) -> (Replica, Replica) {
    let a = Replica::start(dir, "replica-a");
    let b = Replica::start(dir, "replica-b");
    let leaders = common::wait_for(
        Duration::from_secs(30),
        || async { Some((a.leading().await, b.leading().await)) },
        |(x, y)| {
            matches!(
                (x, y),
                (Some(true), Some(false)) | (Some(false), Some(true))
            )
        },
        "exactly one leader",
    )
    .await;
    if leaders.0 == Some(true) {
        (a, b)
    } else {
        (b, a)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_a_handover_when_it_dies() {
    // The simulators only: the operators under test are the two processes below.
    let h = Harness::start_simulators().await;
    let dir = operator_files(&h, "run-process");

    let (mut leader, mut standby) = two_replicas(&dir).await;

    onboard(&h, "contoso").await;

    // Only the leader reconciled.
    let reconciles = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("recording_operator_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let leader_text = reqwest::get(&leader.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let standby_text = reqwest::get(&standby.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reconciles(&leader_text) >= 1.0, "{leader_text}");
    assert_eq!(
        reconciles(&standby_text),
        0.0,
        "the standby reconciled:\n{standby_text}"
    );

    // A burst of twenty Tenants at once: namespaces, quotas, policies, grants and statuses,
    // many requests in flight. Each replica talks to the API server over one HTTP/2
    // connection all along (the test's own client speaks HTTP/1.1), as client-go does, rather
    // than opening a connection per request in flight.
    let burst: Vec<String> = (0..20).map(|i| format!("burst{i:02}")).collect();
    for (i, name) in burst.iter().enumerate() {
        h.platform.m365.add_tenant(
            &format!("{i:08x}-0000-4000-8000-00000000b057"),
            &[&format!("{name}.onmicrosoft.com")],
        );
    }
    let harness = &h;
    futures::future::join_all(burst.iter().map(|name| {
        let yaml = tenant(name, &format!("{name}.onmicrosoft.com"));
        async move { harness.apply(&yaml).await }
    }))
    .await;
    for name in &burst {
        h.wait_consent_links(name, Duration::from_secs(60)).await;
    }
    let connections = h.platform.kube.connections();
    assert_eq!(
        connections.http2, 2,
        "one HTTP/2 connection per replica: {connections:?}"
    );

    // `RUST_LOG=…,recording_operator::kube_http=debug` shows each API request: method, path,
    // status; never the bearer token of the request's headers.
    let log = std::fs::read_to_string(&leader.log).unwrap();
    let status_patch = log
        .lines()
        .find(|l| {
            l.contains("kube_request{http.method=PATCH")
                && l.contains("/tenants/contoso/status")
                && l.contains("http.status_code=200")
        })
        .unwrap_or_else(|| panic!("a span of the Tenant's status write:\n{log}"));
    assert!(status_patch.contains("answered"), "{status_patch}");
    assert!(!log.to_ascii_lowercase().contains("bearer"), "{log}");

    // The leader dies without releasing the Lease; the standby takes over after it expires.
    leader.child.kill().unwrap();
    let _ = leader.child.wait();
    standby.wait_leading("the standby leads").await;
    onboard(&h, "fabrikam").await;

    let _ = standby.child.kill();
    let _ = standby.child.wait();
    h.stop().await;
}

/// Waits for the process to exit by itself; its exit status.
async fn exited(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process still runs after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_over_exits_and_the_other_replica_leads() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    let h = Harness::start_simulators().await;
    let dir = operator_files(&h, "run-process-lease-lost");
    let (mut leader, mut standby) = two_replicas(&dir).await;

    // A third party writes the Lease: another holder, renewed now, valid for 4 s.
    let leases: kube::Api<Lease> =
        kube::Api::namespaced(h.client(), recording_operator::demo::OPERATOR_NAMESPACE);
    let mut lease = leases.get("recording-operator").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    spec.lease_duration_seconds = Some(4);
    leases
        .replace("recording-operator", &Default::default(), &lease)
        .await
        .unwrap();

    // The loser notices at its next renewal (every second) and exits non-zero by itself.
    let status = exited(&mut leader.child, Duration::from_secs(10)).await;
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(&leader.log).unwrap();
    assert!(
        log.contains("leadership lost: another replica holds the Lease"),
        "{log}"
    );

    // The intruder never renews: the other replica takes the Lease and reconciles a new Tenant.
    standby.wait_leading("the other replica leads").await;
    onboard(&h, "contoso").await;
    let holder = leases
        .get("recording-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_ne!(holder.as_deref(), Some("intruder"));

    let _ = standby.child.kill();
    let _ = standby.child.wait();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_without_http2_is_spoken_to_over_http1() {
    // An API server (or a proxy in front of it) that offers HTTP/1.1 only by ALPN.
    let h = Harness::start_simulators_with(PlatformOptions {
        kube_http2: false,
        ..Default::default()
    })
    .await;
    let dir = operator_files(&h, "run-process-http1");
    let mut operator = Replica::start(&dir, "replica-http1");
    operator.wait_leading("the operator leads").await;
    onboard(&h, "contoso").await;
    let connections = h.platform.kube.connections();
    assert_eq!(connections.http2, 0, "{connections:?}");
    assert!(connections.http1 > 0, "{connections:?}");

    let _ = operator.child.kill();
    let _ = operator.child.wait();
    h.stop().await;
}
