//! The retention sweep against a real Azurite, with recordings that are really old by Azurite's
//! own clock: the emulator first runs 400 days in the past (libfaketime) while the old
//! recordings are written, then restarts on the real clock over the same data folder, where the
//! young ones are written. Tenants live in the Kubernetes simulator; the sweep writes their
//! `status.retention` and Events there.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::secrets::MapSecrets;
use common::Harness;
use kube::api::{Api, Patch, PatchParams};
use recording_operator::config::{AccountConfig, RetentionConfig, SecretRef, StorageConfig};
use recording_operator::controller::Events;
use recording_operator::crd::Tenant;
use recording_operator::metrics::Metrics;
use recording_operator::retention::sweeper::Sweeper;
use recording_operator::storage::azure::AzureBlobBackend;
use recording_operator::storage::tenant::TenantStorage;
use recording_operator::storage::{container_name, ManagedRole};
use sim::azurite::{Azurite, BlobData, SasPermissions};

const DAY: Duration = Duration::from_secs(86_400);
/// How old the old recordings are.
const OLD: Duration = Duration::from_secs(400 * 86_400);
const T: Duration = Duration::from_secs(60);
const REGIONS: [&str; 2] = ["westeurope", "northeurope"];

/// A westeurope Tenant with the given retention (`{days: 365}`, `{unlimited: true}`).
fn tenant_yaml(name: &str, license: &str, retention: &str, extra: &str) -> String {
    common::tenant_yaml(
        name,
        &format!("{name}.onmicrosoft.com"),
        license,
        "westeurope",
        &format!("{extra}  retention: {retention}\n"),
    )
}

/// The Kubernetes simulator (no operator running), an Azurite with the platform's two regional
/// accounts and a customer's account, and the tenants' storage over them.
struct Fixture {
    h: Harness,
    azurite: Azurite,
    secrets: Arc<MapSecrets>,
    accounts: std::collections::BTreeMap<String, AccountConfig>,
}

impl Fixture {
    /// Starts everything with Azurite's clock 400 days behind.
    async fn start() -> Self {
        let h = Harness::start_simulators().await;
        let azurite = Azurite::start_behind(&["westeurope", "northeurope", "customer1"], Some(OLD))
            .await
            .expect("Azurite starts under libfaketime (run scripts/install-test-deps.sh)");
        let mut values = HashMap::new();
        let mut accounts = std::collections::BTreeMap::new();
        for region in REGIONS {
            let sas = azurite
                .account_sas(region, SasPermissions::OPERATOR, 3 * 365 * DAY)
                .unwrap();
            let var = format!("STORAGE_{}", region.to_uppercase());
            values.insert(var.clone(), sas);
            accounts.insert(
                region.to_string(),
                AccountConfig {
                    endpoint: azurite.account_endpoint(region).unwrap(),
                    credential: SecretRef::Env(var),
                    signing_key: None,
                },
            );
        }
        Self {
            h,
            azurite,
            secrets: Arc::new(MapSecrets(values)),
            accounts,
        }
    }

    fn storage(&self, retention: RetentionConfig) -> TenantStorage {
        let config = StorageConfig {
            accounts: self.accounts.clone(),
            request_timeout_seconds: 20,
            retention,
            ..Default::default()
        };
        let backend = AzureBlobBackend::new(&config, self.secrets.clone()).unwrap();
        TenantStorage::new(
            &config,
            Arc::new(backend),
            self.secrets.clone(),
            "recording-operator-system",
        )
    }

    fn sweeper(&self, retention: RetentionConfig, metrics: &Metrics) -> Sweeper {
        Sweeper {
            client: self.h.client(),
            storage: self.storage(retention),
            tenants: Arc::new(Vec::new),
            events: Arc::new(Events::new(self.h.client(), "recording-operator")),
            metrics: metrics.clone(),
        }
    }

    fn data(&self, account: &str) -> BlobData {
        self.azurite.data_client(account).unwrap()
    }

    async fn tenant(&self, name: &str) -> Tenant {
        Api::<Tenant>::all(self.h.client()).get(name).await.unwrap()
    }

    /// Applies the Tenant and provisions its containers as the Tenant controller would.
    async fn onboard(&self, yaml: &str, name: &str) -> Tenant {
        self.h.apply(yaml).await;
        let tenant = self.tenant(name).await;
        // The customer's own locations are only checked, never provisioned.
        let mut provisioned = tenant.clone();
        provisioned.spec.storage.byos = Default::default();
        let lines = self
            .storage(RetentionConfig::default())
            .reconcile(&provisioned)
            .await;
        for line in &lines {
            assert!(line.ready, "{line:?}");
        }
        tenant
    }

    /// Essentials Tenant `contoso` with `retention`, its default container holding `old`
    /// recordings 400 days old and `young` new ones (Azurite back on the real clock). Returns
    /// the Tenant, the account's data client and the container.
    async fn aged_contoso(
        &mut self,
        retention: &str,
        old: usize,
        young: usize,
    ) -> (Tenant, BlobData, String) {
        let yaml = tenant_yaml("contoso", "Essentials", retention, "");
        let tenant = self.onboard(&yaml, "contoso").await;
        let weu = self.data("westeurope");
        let default = container_name("contoso", ManagedRole::Default);
        write(&weu, &default, "old", old, 100).await;
        self.back_to_now().await;
        write(&weu, &default, "young", young, 100).await;
        (tenant, weu, default)
    }

    /// Restarts Azurite on the real clock over the same data.
    async fn back_to_now(&mut self) {
        self.azurite.set_clock_behind(None);
        self.azurite.start_again().await.unwrap();
    }
}

/// Writes `n` recordings named `{prefix}-{i}` of `size` bytes.
async fn write(data: &BlobData, container: &str, prefix: &str, n: usize, size: usize) {
    use futures::StreamExt;
    let written: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            data.put_blob(container, &format!("{prefix}-{i:04}"), vec![b'r'; size])
                .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in written {
        result.unwrap();
    }
}

async fn names(data: &BlobData, container: &str) -> Vec<String> {
    data.blob_names(container).await.unwrap()
}

fn with_prefix(names: &[String], prefix: &str) -> usize {
    names.iter().filter(|n| n.starts_with(prefix)).count()
}

fn retention() -> RetentionConfig {
    RetentionConfig {
        grace_period: Duration::from_secs(3),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_recordings_go_young_ones_byos_and_unlimited_tenants_stay() {
    let mut fx = Fixture::start().await;
    let byos =
        "    byos:\n      enabled: true\n      locations:\n        - name: archive\n          \
                secretRef:\n            name: contoso-archive\n";
    let contoso = fx
        .onboard(
            &tenant_yaml("contoso", "Pro", "{days: 365}", byos),
            "contoso",
        )
        .await;
    fx.onboard(
        &tenant_yaml("fabrikam", "Essentials", "{unlimited: true}", ""),
        "fabrikam",
    )
    .await;
    let (weu, neu, customer) = (
        fx.data("westeurope"),
        fx.data("northeurope"),
        fx.data("customer1"),
    );
    let default = container_name("contoso", ManagedRole::Default);
    let paired = container_name("contoso", ManagedRole::Paired);
    let unlimited = container_name("fabrikam", ManagedRole::Default);
    customer.create_container("recordings", &[]).await.unwrap();
    // 400 days ago by Azurite's clock.
    write(&weu, &default, "old", 5, 1000).await;
    write(&neu, &paired, "old", 3, 1000).await;
    write(&weu, &unlimited, "old", 4, 10).await;
    write(&customer, "recordings", "old", 4, 10).await;
    weu.put_blob(&default, "old-leased", vec![1; 10])
        .await
        .unwrap();
    weu.lease_blob(&default, "old-leased").await.unwrap();

    fx.back_to_now().await;
    write(&weu, &default, "young", 2, 1000).await;
    write(&neu, &paired, "young", 1, 1000).await;

    let metrics = Metrics::default();
    let sweeper = fx.sweeper(retention(), &metrics);
    let status = sweeper.sweep_tenant(&contoso).await.unwrap();
    assert_eq!(
        status.last_result.as_deref(),
        Some("Completed"),
        "{status:?}"
    );
    assert_eq!(status.effective_days, Some(365));
    assert_eq!(status.blobs_deleted, 8, "{status:?}");
    assert_eq!(status.bytes_deleted, 8000);
    // Past retention: the 8 deleted and the leased one, which the service refused to delete.
    assert_eq!(status.blobs_past_retention, 9);
    assert_eq!(status.errors, 1);

    let left = names(&weu, &default).await;
    assert_eq!(with_prefix(&left, "old-0"), 0, "{left:?}");
    assert_eq!(with_prefix(&left, "young"), 2);
    assert!(left.contains(&"old-leased".to_string()));
    let left = names(&neu, &paired).await;
    assert_eq!(
        (with_prefix(&left, "old"), with_prefix(&left, "young")),
        (0, 1)
    );
    assert_eq!(
        names(&customer, "recordings").await.len(),
        4,
        "BYOS is never swept"
    );

    // What people see: the status, an Event, the metrics.
    let stored = fx
        .tenant("contoso")
        .await
        .status
        .unwrap()
        .retention
        .unwrap();
    assert_eq!(stored, status);
    assert!(stored.last_sweep_time.is_some());
    let events = fx.h.events("default", "Tenant", "contoso").await;
    let swept = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RetentionSwept"))
        .expect("an Event for a sweep that deleted");
    assert!(
        swept
            .message
            .as_deref()
            .unwrap()
            .contains("recordings older than 365 days: 8 recordings deleted (8000 bytes)"),
        "{swept:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("recording_operator_retention_blobs_total{outcome=\"deleted\"} 8"),
        "{text}"
    );
    assert!(
        text.contains("recording_operator_retention_sweeps_total{result=\"completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("recording_operator_retention_deleted_bytes_total 8000"),
        "{text}"
    );

    // Unlimited: nothing listed, nothing deleted.
    let fabrikam = fx.tenant("fabrikam").await;
    let status = sweeper.sweep_tenant(&fabrikam).await.unwrap();
    assert_eq!(status.last_result.as_deref(), Some("NotSwept"));
    assert!(status.unlimited && status.effective_days.is_none());
    assert_eq!(names(&weu, &unlimited).await.len(), 4);

    // A second sweep finds nothing more to do.
    let again = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!((again.blobs_deleted, again.errors), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_and_deletes_nothing() {
    let mut fx = Fixture::start().await;
    let (contoso, weu, default) = fx.aged_contoso("{days: 30}", 6, 2).await;

    let metrics = Metrics::default();
    let config = RetentionConfig {
        dry_run: true,
        ..retention()
    };
    let status = fx
        .sweeper(config, &metrics)
        .sweep_tenant(&contoso)
        .await
        .unwrap();
    assert_eq!(status.last_result.as_deref(), Some("DryRun"));
    assert!(status.dry_run);
    assert_eq!((status.blobs_past_retention, status.blobs_deleted), (6, 0));
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .starts_with("dry run: 6 recordings past retention would be deleted"),
        "{status:?}"
    );
    assert_eq!(names(&weu, &default).await.len(), 8);
    let events = fx.h.events("default", "Tenant", "contoso").await;
    assert!(events
        .iter()
        .all(|e| e.reason.as_deref() != Some("RetentionSwept")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_retention_waits_for_its_grace_period() {
    let mut fx = Fixture::start().await;
    let (_, weu, default) = fx.aged_contoso("{days: 730}", 4, 1).await;

    let metrics = Metrics::default();
    let sweeper = fx.sweeper(retention(), &metrics);
    let first = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!((first.effective_days, first.blobs_deleted), (Some(730), 0));

    // The platform team shortens retention to a year: the 400-day-old recordings are now past
    // it, but the grace period (3 s here) runs first.
    Api::<Tenant>::all(fx.h.client())
        .patch(
            "contoso",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"retention": {"days": 365}}})),
        )
        .await
        .unwrap();
    let waiting = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!(waiting.effective_days, Some(730), "{waiting:?}");
    assert_eq!(waiting.blobs_deleted, 0);
    let pending = waiting.pending.clone().expect("the shortening is pending");
    assert_eq!((pending.days, pending.blobs_affected), (365, Some(4)));
    assert_eq!(
        names(&weu, &default).await.len(),
        5,
        "nothing deleted during the grace period"
    );
    let events = fx.h.events("default", "Tenant", "contoso").await;
    let announced = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RetentionShortened"))
        .expect("the shortening is announced");
    assert_eq!(announced.type_.as_deref(), Some("Warning"));
    assert!(
        announced
            .message
            .as_deref()
            .unwrap()
            .contains("from 730 days to 365 days"),
        "{announced:?}"
    );

    // Still within the grace period on the next sweep.
    let still = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!((still.effective_days, still.blobs_deleted), (Some(730), 0));
    assert_eq!(
        still.pending.as_ref().unwrap().announced_time,
        pending.announced_time
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let applied = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!(applied.effective_days, Some(365));
    assert!(applied.pending.is_none());
    assert_eq!(applied.blobs_deleted, 4);
    assert_eq!(names(&weu, &default).await, ["young-0000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_stopping_mid_sweep_leaves_a_consistent_state_the_next_sweep_finishes() {
    let mut fx = Fixture::start().await;
    const OLD_BLOBS: usize = 600;
    let (contoso, weu, default) = fx.aged_contoso("{days: 365}", OLD_BLOBS, 3).await;

    let metrics = Metrics::default();
    // Small pages and one delete at a time, so the sweep is still running when storage stops.
    let config = RetentionConfig {
        page_size: 10,
        deletes_in_flight: 1,
        ..retention()
    };
    let sweeper = Arc::new(fx.sweeper(config, &metrics));
    let sweep = tokio::spawn({
        let (sweeper, contoso) = (sweeper.clone(), contoso.clone());
        async move { sweeper.sweep_tenant(&contoso).await.unwrap() }
    });
    common::wait_for(
        T,
        || async { Some(names(&weu, &default).await.len()) },
        |n| *n <= OLD_BLOBS + 3 - 30,
        "the first deletions",
    )
    .await;
    fx.azurite.stop().await;
    let failed = tokio::time::timeout(Duration::from_secs(150), sweep)
        .await
        .expect("the sweep gives up")
        .unwrap();
    assert_eq!(failed.last_result.as_deref(), Some("Failed"), "{failed:?}");
    assert!(failed.last_sweep_time.is_none(), "not a completed sweep");
    assert!(
        failed.blobs_deleted >= 30 && failed.blobs_deleted < OLD_BLOBS as i64,
        "{failed:?}"
    );
    let message = failed.message.clone().unwrap();
    assert!(message.contains("is unreachable"), "{message}");
    assert!(!message.contains("sig="), "no SAS in the status: {message}");
    let events = fx.h.events("default", "Tenant", "contoso").await;
    let failed_event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RetentionSweepFailed"))
        .expect("a Warning Event for the failed sweep");
    assert!(!failed_event.message.as_deref().unwrap().contains("sig="));

    // Storage is back: what is left is exactly the old recordings not yet deleted, plus the
    // young ones; the next sweep finishes the job.
    fx.azurite.start_again().await.unwrap();
    let left = names(&weu, &default).await;
    assert_eq!(left.len(), OLD_BLOBS + 3 - failed.blobs_deleted as usize);
    let done = sweeper
        .sweep_tenant(&fx.tenant("contoso").await)
        .await
        .unwrap();
    assert_eq!(done.last_result.as_deref(), Some("Completed"), "{done:?}");
    assert_eq!(
        done.blobs_deleted as usize,
        OLD_BLOBS - failed.blobs_deleted as usize
    );
    assert_eq!(
        names(&weu, &default).await,
        ["young-0000", "young-0001", "young-0002"]
    );
}

/// The operator as it runs: the sweep task started beside the controllers sweeps on its own,
/// once per interval, and the Tenant controller's status writes leave `status.retention` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sweeps_on_its_own_and_its_status_survives_the_tenant_controller() {
    use recording_operator::demo::{Platform, PlatformOptions, StorageMode};
    let mut platform = Platform::start(PlatformOptions {
        storage: StorageMode::Azurite,
        ..Default::default()
    })
    .await
    .unwrap();
    let interval = Duration::from_secs(3);
    platform.config.storage.as_mut().unwrap().retention = RetentionConfig {
        interval,
        ..Default::default()
    };
    let platform = Arc::new(platform);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn({
        let platform = platform.clone();
        async move {
            platform
                .run_operator(None, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        }
    });
    platform
        .apply_yaml(&tenant_yaml("contoso", "Essentials", "{days: 365}", ""))
        .await
        .unwrap();
    let api: Api<Tenant> = Api::all(platform.client.clone());
    let retention_of = |t: &Tenant| t.status.as_ref().and_then(|s| s.retention.clone());
    let first = common::wait_for(
        T,
        || async { Some(api.get("contoso").await.unwrap()) },
        |t| retention_of(t).is_some_and(|r| r.last_result.as_deref() == Some("Completed")),
        "the first sweep",
    )
    .await;
    let first = retention_of(&first).unwrap();
    assert_eq!(first.effective_days, Some(365));

    // A spec change makes the Tenant controller write its status again.
    api.patch(
        "contoso",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"includedUsers": 11}})),
    )
    .await
    .unwrap();
    let after = common::wait_for(
        T,
        || async { Some(api.get("contoso").await.unwrap()) },
        |t| t.status.as_ref().and_then(|s| s.observed_generation) == Some(2),
        "the Tenant controller's status write",
    )
    .await;
    assert!(retention_of(&after).is_some(), "{:?}", after.status);
    let owners: Vec<String> = after
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:status/f:retention").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(owners, ["recording-operator-retention"]);

    // The next sweep comes one interval after the last, not before.
    let second = common::wait_for(
        T,
        || async { retention_of(&api.get("contoso").await.unwrap()) },
        |r| r.last_sweep_time != first.last_sweep_time,
        "the next sweep",
    )
    .await;
    let gap = second.last_sweep_time.unwrap().0 - first.last_sweep_time.clone().unwrap().0;
    assert!(gap.get_seconds() >= interval.as_secs() as i64, "{gap:?}");

    let _ = stop.send(());
    operator.await.unwrap();
}

/// Azure answers a busy account with 503 `ServerBusy` and a `Retry-After`: the sweep waits that
/// long, tries again, and finishes. A loopback proxy in front of Azurite plays the busy account
/// for the first two listing requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_answers_are_waited_out_for_their_retry_after() {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::Response;
    use std::sync::Mutex;
    use std::time::Instant;

    let mut fx = Fixture::start().await;
    let (contoso, weu, default) = fx.aged_contoso("{days: 365}", 3, 1).await;

    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        http: reqwest::Client,
        /// When each listing request arrived.
        listings: Arc<Mutex<Vec<Instant>>>,
    }
    async fn forward(State(p): State<Proxy>, request: Request) -> Response {
        let path_and_query = request.uri().path_and_query().unwrap().to_string();
        if path_and_query.contains("comp=list") {
            let mut seen = p.listings.lock().unwrap();
            seen.push(Instant::now());
            if seen.len() <= 2 {
                return Response::builder()
                    .status(503)
                    .header("retry-after", "2")
                    .header("x-ms-error-code", "ServerBusy")
                    .body(Body::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>"))
                    .unwrap();
            }
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let mut upstream = p
            .http
            .request(parts.method, format!("{}{path_and_query}", p.upstream))
            .body(body);
        // Hop-by-hop headers and the length are the connections' own.
        let own = |name: &str| {
            matches!(
                name,
                "host" | "connection" | "keep-alive" | "transfer-encoding" | "content-length"
            )
        };
        for (name, value) in &parts.headers {
            if !own(name.as_str()) {
                upstream = upstream.header(name, value);
            }
        }
        let answer = upstream.send().await.unwrap();
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !own(name.as_str()) {
                response = response.header(name, value);
            }
        }
        response
            .body(Body::from(answer.bytes().await.unwrap()))
            .unwrap()
    }
    let proxy = Proxy {
        upstream: fx.azurite.blob_service_url(),
        http: reqwest::Client::new(),
        listings: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fx.accounts.get_mut("westeurope").unwrap().endpoint = format!("http://{address}/westeurope");

    let started = Instant::now();
    let status = fx
        .sweeper(retention(), &Metrics::default())
        .sweep_tenant(&contoso)
        .await
        .unwrap();
    assert_eq!(
        status.last_result.as_deref(),
        Some("Completed"),
        "{status:?}"
    );
    assert_eq!(status.blobs_deleted, 3);
    let listings = proxy.listings.lock().unwrap().clone();
    assert_eq!(listings.len(), 3, "two refused, one answered");
    for pair in listings.windows(2) {
        let waited = pair[1] - pair[0];
        assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    }
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(names(&weu, &default).await, ["young-0000"]);
}
