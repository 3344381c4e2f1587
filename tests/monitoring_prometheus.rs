//! A real Prometheus server (Debian's `prometheus`, installed by scripts/install-test-deps.sh)
//! scrapes the operator's `/metrics` while it onboards tenants on the simulators; every query of
//! the Grafana dashboard and every alert expression goes through Prometheus's HTTP API and must
//! parse, and return series for the tenants where the tenants give it any.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ready_status, wait_for, Harness};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use recording_operator::http::{self, HttpState};
use serde_json::Value;
use sim::m365::{AppSeed, SecretSeed};

const T: Duration = Duration::from_secs(60);
const CONTOSO_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";
/// The customer's own app registration, used by contoso's RecordingService.
const CUSTOMER_APP: &str = "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Prometheus server on a free loopback port with its own data directory; killed (and the
/// directory removed) when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "monitoring-prometheus-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: recording-operator\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: the kernel picks one, Prometheus takes it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "the prometheus server runs (Debian's `prometheus` package; \
                 scripts/install-test-deps.sh installs it)",
            );
        Prometheus {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/query`: the result vector, or the error Prometheus gives.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let response = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tenant_yaml(name: &str, domain: &str, license: &str) -> String {
    format!(
        "apiVersion: recording.m365.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  \
         customerName: {name}-customer\n  domain: {domain}\n  shortName: {name}\n  \
         contactEmails: [ops@example.com]\n  adminUpns: [admin@{domain}]\n  license: {license}\n  \
         includedUsers: 100\n  storage:\n    location: westeurope\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: contoso-app\n  namespace: tenant-contoso\n  labels:\n    recording.m365.io/bot-secret: \"true\"\nstringData:\n  value: \"contoso-app-secret-value\"\n---\n\
apiVersion: recording.m365.io/v1alpha1\nkind: RecordingService\nmetadata:\n  name: main\n  namespace: tenant-contoso\nspec:\n  tenantRef: contoso\n  shortName: contoso-main\n  licensedUsers: 10\n  \
appRegistration:\n    tenantId: 5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d\n    clientId: 6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7\n    clientSecretRef:\n      name: contoso-app\n      key: value\n";

/// The `tenant` label values of a result.
fn tenants(result: &[Value]) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|s| s["metric"]["tenant"].as_str().map(str::to_owned))
        .collect()
}

/// Every `expr` of the dashboard's panels, with Grafana's interval variables made concrete.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo().join("charts/recording-operator/files/recording-operator-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                panel["title"].as_str().unwrap().to_owned(),
                expr.replace("$__rate_interval", "1m")
                    .replace("$__range", "1h"),
            ));
        }
    }
    queries
}

/// Every alert of the rules file: name and expression.
fn alert_rules() -> Vec<(String, String)> {
    let path = repo().join("charts/recording-operator/files/recording-operator.rules.yaml");
    let rules: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_every_dashboard_query_and_alert_expression() {
    let h = Harness::start().await;
    let router = http::router(HttpState::new(h.metrics.clone()));
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_on(listener, router, async {
        let _ = http_stopped.await;
    }));
    let rules = repo().join("charts/recording-operator/files/recording-operator.rules.yaml");
    let prometheus = Prometheus::start(&target, &rules);
    let client = reqwest::Client::new();

    // contoso onboards (Ready) and runs a service with its own app registration, whose secret
    // expires in 20 days; fabrikam stays in Warning, waiting on every consent.
    h.platform.m365.add_app(AppSeed {
        app_id: CUSTOMER_APP.into(),
        display_name: "contoso-recording".into(),
        home_tenant: CONTOSO_ID.into(),
        secrets: vec![SecretSeed {
            value: "contoso-app-secret-value".into(),
            key_id: None,
            display_name: Some("bots".into()),
            start_date_time: None,
            end_date_time: (Timestamp::now() + SignedDuration::from_hours(20 * 24)).to_string(),
        }],
        redirect_uris: vec![],
        application_permissions: vec!["Application.Read.All".into()],
        delegated_scopes: vec![],
    });
    h.platform.m365.grant_consent(CONTOSO_ID, CUSTOMER_APP);
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    h.apply(&tenant_yaml("fabrikam", "fabrikam.onmicrosoft.com", "Pro"))
        .await;
    h.wait_consent_links("contoso", T).await;
    h.wait_consent_links("fabrikam", T).await;
    h.platform
        .accept_all_consents("contoso", &h.browser)
        .await
        .unwrap();
    h.wait_tenant("contoso", T, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| ready_status(&s.conditions).as_deref() == Some("True"))
    })
    .await;
    h.apply(SERVICE).await;

    // Prometheus has scraped the funnel and the secret once both are there.
    for expr in [
        "recording_operator_tenant_time_to_ready_seconds_count",
        "recording_operator_consent_time_to_granted_seconds_count",
        "recording_operator_client_secret_expiry_days",
        "rate(recording_operator_reconciles_total[1m])",
    ] {
        wait_for(
            T,
            || async { prometheus.query(&client, expr).await.ok() },
            |r: &Vec<Value>| !r.is_empty(),
            &format!("{expr} in Prometheus (log: {})", prometheus.log()),
        )
        .await;
    }

    // The dashboard: every query parses; all but those that only have series once something
    // happens that this run does not provoke return series.
    let quiet_until_something_happens = [
        // No reconcile failed, no e-mail is sent on this branch, no public listener is wired.
        "recording_operator_reconcile_errors_total",
        "recording_operator_notifications_",
        "recording_operator_public_requests_total",
    ];
    let mut answered = Vec::new();
    for (panel, expr) in dashboard_queries() {
        let result = prometheus
            .query(&client, &expr)
            .await
            .unwrap_or_else(|e| panic!("panel {panel:?}: {e}"));
        if !quiet_until_something_happens
            .iter()
            .any(|q| expr.contains(q))
        {
            assert!(!result.is_empty(), "panel {panel:?}: {expr} has no series");
        }
        answered.push((expr, result));
    }
    let per_tenant = |needle: &str| {
        answered
            .iter()
            .find(|(e, _)| e.contains(needle))
            .map(|(_, r)| tenants(r))
            .unwrap()
    };
    let both = BTreeSet::from(["contoso".to_owned(), "fabrikam".to_owned()]);
    assert_eq!(per_tenant("recording_operator_tenant_warning"), both);
    assert_eq!(per_tenant("recording_operator_tenant_storage_ready"), both);
    let secrets = &answered
        .iter()
        .find(|(e, _)| e.contains("client_secret_expiry_days"))
        .unwrap()
        .1;
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(secrets[0]["metric"]["owner"], "tenant-contoso/main");
    assert_eq!(secrets[0]["metric"]["app_id"], CUSTOMER_APP);
    let days: f64 = secrets[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((19.9..20.0).contains(&days), "{days}");
    let waiting = &answered
        .iter()
        .find(|(e, _)| e.contains("consent_waiting_tenants"))
        .unwrap()
        .1;
    let waiting_on_redundancy = waiting
        .iter()
        .find(|s| s["metric"]["consent"] == "redundantRecording")
        .expect("the Pro consent has a waiting figure");
    assert_eq!(
        waiting_on_redundancy["value"][1], "1",
        "fabrikam waits on it"
    );

    // The alerts: each expression parses; what it returns for these tenants.
    for (alert, expr) in alert_rules() {
        let result = prometheus
            .query(&client, &expr)
            .await
            .unwrap_or_else(|e| panic!("alert {alert}: {e}"));
        match alert.as_str() {
            // fabrikam is in Warning (the rule's `for` then holds it back).
            "RecordingOperatorTenantWarning" => {
                assert_eq!(tenants(&result), BTreeSet::from(["fabrikam".to_owned()]))
            }
            // 20 days left: under 30, not under 7.
            "RecordingOperatorClientSecretExpiring" => assert_eq!(result.len(), 1, "{result:?}"),
            // This harness runs the controllers without leader election: nobody holds a Lease.
            "RecordingOperatorNoLeader" => assert_eq!(result.len(), 1, "{result:?}"),
            // Only once something bad happens: no consent revoked, storage ready, secret not
            // under 7 days, no errors, no throttling, no e-mails (series come with the
            // notifications' branch).
            _ => assert!(result.is_empty(), "alert {alert}: {result:?}"),
        }
    }

    // The server itself loaded and evaluated every rule without an error.
    let body: Value = client
        .get(format!("{}/api/v1/rules", prometheus.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded: Vec<&Value> = body["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), alert_rules().len(), "{body}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    drop(prometheus);
    stop_http.send(()).unwrap();
    server.await.unwrap().unwrap();
    h.stop().await;
}
