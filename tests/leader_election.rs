//! Leader election against the Kubernetes simulator: one leader at a time, hand-over on
//! shutdown, take-over after a leader dies without releasing, work stopped when the Lease is
//! lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use recording_operator::leader::{LeaderElector, LeaderOutcome};
use sim::kube::{KubeSim, KubeSimConfig};
use tokio::sync::{oneshot, watch};

const NAMESPACE: &str = "recording-operator-system";
const LEASE: &str = "recording-operator";
/// Long enough that a hand-over seen well before it comes from the release, not expiry.
const LONG: Duration = Duration::from_secs(60);
const RENEW: Duration = Duration::from_millis(200);
/// Bound on waiting for something the protocol guarantees; never reached when it works.
const PATIENCE: Duration = Duration::from_secs(30);

async fn cluster() -> (KubeSim, Client) {
    let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let client = sim.client().await;
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    (sim, client)
}

/// What the work of each replica did, in order.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn note(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Notes "<who> stopped" when the work is dropped.
struct StopNote(Journal, &'static str);

impl Drop for StopNote {
    fn drop(&mut self) {
        self.0.note(format!("{} stopped", self.1));
    }
}

/// Work that runs until stopped, noting when it starts and stops.
async fn work(journal: Journal, who: &'static str) {
    journal.note(format!("{who} started"));
    let _note = StopNote(journal, who);
    std::future::pending::<()>().await
}

struct Replica {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<LeaderOutcome<()>>,
}

fn replica(client: &Client, who: &'static str, journal: &Journal, duration: Duration) -> Replica {
    let elector =
        LeaderElector::new(client.clone(), NAMESPACE, LEASE, who, duration, RENEW).unwrap();
    let leading = elector.subscribe();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = elector.run_as_leader(work(journal.clone(), who), async {
        let _ = stopped.await;
    });
    // One task: aborting it is a replica dying on the spot.
    let task = tokio::spawn(async move { run.await.unwrap() });
    Replica {
        leading,
        stop: Some(stop),
        task,
    }
}

async fn until_leading(replica: &mut Replica) {
    tokio::time::timeout(PATIENCE, replica.leading.wait_for(|leading| *leading))
        .await
        .expect("the replica leads in time")
        .unwrap();
}

async fn lease(client: &Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get(LEASE)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

#[tokio::test]
async fn one_of_two_leads_and_a_graceful_shutdown_hands_over_at_once() {
    let (_sim, client) = cluster().await;
    let journal = Journal::default();
    let mut a = replica(&client, "a", &journal, LONG);
    until_leading(&mut a).await;
    let mut b = replica(&client, "b", &journal, LONG);

    // Several renew periods pass: b keeps standing by while a renews.
    let first_renewal = lease(&client).await.spec.unwrap().renew_time;
    tokio::time::sleep(RENEW * 5).await;
    let held = lease(&client).await;
    assert_eq!(holder(&held), Some("a".into()));
    assert_ne!(held.spec.unwrap().renew_time, first_renewal, "a renews");
    assert!(!*b.leading.borrow());
    assert_eq!(journal.entries(), ["a started"]);

    a.stop.take().unwrap().send(()).unwrap();
    assert_eq!(a.task.await.unwrap(), LeaderOutcome::Shutdown);
    until_leading(&mut b).await;

    assert_eq!(journal.entries(), ["a started", "a stopped", "b started"]);
    let taken = lease(&client).await.spec.unwrap();
    assert_eq!(taken.holder_identity.as_deref(), Some("b"));
    assert_eq!(taken.lease_transitions, Some(1));
    assert_eq!(taken.lease_duration_seconds, Some(60));

    b.stop.take().unwrap().send(()).unwrap();
    assert_eq!(b.task.await.unwrap(), LeaderOutcome::Shutdown);
    assert_eq!(holder(&lease(&client).await), None, "b released the Lease");
}

#[tokio::test]
async fn a_leader_that_dies_without_releasing_is_replaced_after_the_lease_duration() {
    let (_sim, client) = cluster().await;
    let journal = Journal::default();
    let duration = Duration::from_secs(2);
    let mut a = replica(&client, "a", &journal, duration);
    until_leading(&mut a).await;

    // Killed: nothing runs after this, not even a release.
    a.task.abort();
    let _ = a.task.await;
    let died = Instant::now();
    assert_eq!(holder(&lease(&client).await), Some("a".into()));

    let mut b = replica(&client, "b", &journal, duration);
    until_leading(&mut b).await;
    assert!(
        died.elapsed() >= duration,
        "b waited for a's Lease to expire ({:?})",
        died.elapsed()
    );
    let taken = lease(&client).await.spec.unwrap();
    assert_eq!(taken.holder_identity.as_deref(), Some("b"));
    assert_eq!(taken.lease_transitions, Some(1));
    assert!(journal.entries().ends_with(&["b started".to_string()]));
}

#[tokio::test]
async fn losing_the_lease_stops_the_work_and_leaves_the_new_holder_alone() {
    let (_sim, client) = cluster().await;
    let journal = Journal::default();
    let mut a = replica(&client, "a", &journal, LONG);
    until_leading(&mut a).await;

    // Another party takes the Lease (an operator of the cluster, a split brain healing).
    // (a renews all the while: retry when its renewal slips in between the read and the write.)
    let api = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
    loop {
        let mut taken = api.get(LEASE).await.unwrap();
        taken.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
        match api.replace(LEASE, &PostParams::default(), &taken).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("{e}"),
        }
    }

    let outcome = tokio::time::timeout(PATIENCE, a.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, LeaderOutcome::LeadershipLost);
    assert_eq!(journal.entries(), ["a started", "a stopped"]);
    assert!(!*a.leading.borrow());
    assert_eq!(holder(&lease(&client).await), Some("intruder".into()));
}

#[tokio::test]
async fn a_standby_shut_down_never_starts_its_work_and_finished_work_releases() {
    let (_sim, client) = cluster().await;
    let journal = Journal::default();
    let mut a = replica(&client, "a", &journal, LONG);
    until_leading(&mut a).await;
    let mut b = replica(&client, "b", &journal, LONG);
    tokio::time::sleep(RENEW * 2).await;
    b.stop.take().unwrap().send(()).unwrap();
    assert_eq!(b.task.await.unwrap(), LeaderOutcome::Shutdown);
    assert_eq!(journal.entries(), ["a started"]);
    a.task.abort();
    let _ = a.task.await;

    // Work that ends by itself hands back its output and frees the Lease.
    let api = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
    let mut freed = api.get(LEASE).await.unwrap();
    freed.spec.as_mut().unwrap().holder_identity = None;
    api.replace(LEASE, &PostParams::default(), &freed)
        .await
        .unwrap();
    let c = LeaderElector::new(client.clone(), NAMESPACE, LEASE, "c", LONG, RENEW).unwrap();
    let outcome = tokio::time::timeout(
        PATIENCE,
        c.run_as_leader(async { 42 }, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome, LeaderOutcome::Finished(42));
    assert_eq!(holder(&lease(&client).await), None);
}

#[tokio::test]
async fn settings_that_could_let_two_replicas_lead_are_refused() {
    let (_sim, client) = cluster().await;
    let err = LeaderElector::new(
        client.clone(),
        NAMESPACE,
        LEASE,
        "a",
        Duration::from_secs(15),
        Duration::from_secs(10),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid leader election settings: the renew period 10s must be more than zero and at most half the lease duration 15s"
    );
    let err = LeaderElector::new(client, NAMESPACE, LEASE, " ", LONG, RENEW)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid leader election settings: the identity is empty"
    );
}
