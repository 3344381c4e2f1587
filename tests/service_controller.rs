//! The RecordingService controller end to end on the simulators: the recording bot of an
//! Essentials tenant, the paired bot of a Pro tenant (and its removal on Pro → Essentials), a
//! bot that does not become available, the customer's own app registration (authenticated,
//! secret expiring, wrong or missing secret, never leaked), and bad manifests.

mod common;

use std::time::Duration;

use common::{service_yaml, wait_for, Harness};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use recording_operator::crd::RecordingService;
use serde_json::{json, Value};
use sim::m365::{AppSeed, SecretSeed, Throttle};

const T: Duration = Duration::from_secs(30);
const CONTOSO_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";
/// The customer's own app registration, registered in its own tenant.
const CUSTOMER_APP: &str = "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7";

fn tenant_yaml(name: &str, domain: &str, license: &str) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: {name}
spec:
  customerName: {name}-customer
  domain: {domain}
  shortName: {name}
  contactEmails: [ops@example.com]
  adminUpns: [admin@{domain}]
  license: {license}
  includedUsers: 500
  storage:
    location: westeurope
  retention:
    days: 400
  compliance:
    allowDeleteRecordings: true
"#
    )
}

fn app_registration(secret: &str) -> String {
    format!(
        "  appRegistration:\n    tenantId: {CONTOSO_ID}\n    clientId: {CUSTOMER_APP}\n    clientSecretRef:\n      name: {secret}\n      key: value\n"
    )
}

fn secret_yaml(name: &str, namespace: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    recording.m365.io/bot-secret: \"true\"\nstringData:\n  value: \"{value}\"\n"
    )
}

/// Applies the Tenant, plays the customer's Global admin accepting every consent link, and
/// waits for the Tenant to be Ready.
async fn onboard(h: &Harness, tenant: &str, domain: &str, license: &str) {
    common::onboard_applied(h, &tenant_yaml(tenant, domain, license), tenant, license, T).await;
}

/// Registers the customer's own app in its tenant, with one client secret valid for
/// `valid_for`, and the recording permissions and `Application.Read.All` (to read its own
/// secrets' expiry) admin-consented.
fn register_customer_app(h: &Harness, secret: &str, valid_for: SignedDuration) {
    let permissions = common::customer_app_permissions();
    let permissions: Vec<&str> = permissions.iter().map(String::as_str).collect();
    register_customer_app_with(h, secret, valid_for, &permissions);
}

/// [`register_customer_app`] with the given application permissions admin-consented.
fn register_customer_app_with(
    h: &Harness,
    secret: &str,
    valid_for: SignedDuration,
    permissions: &[&str],
) {
    h.platform.m365.add_app(AppSeed {
        app_id: CUSTOMER_APP.into(),
        display_name: "contoso-recording".into(),
        home_tenant: CONTOSO_ID.into(),
        secrets: vec![SecretSeed {
            value: secret.into(),
            key_id: None,
            display_name: Some("bots".into()),
            start_date_time: None,
            end_date_time: (Timestamp::now() + valid_for).to_string(),
        }],
        redirect_uris: vec![],
        application_permissions: permissions.iter().map(|p| p.to_string()).collect(),
        delegated_scopes: vec![],
    });
    h.platform.m365.grant_consent(CONTOSO_ID, CUSTOMER_APP);
}

async fn wait_service(
    h: &Harness,
    namespace: &str,
    name: &str,
    pred: impl Fn(&RecordingService) -> bool,
) -> RecordingService {
    let api: Api<RecordingService> = Api::namespaced(h.client(), namespace);
    wait_for(
        T,
        || async { api.get_opt(name).await.ok().flatten() },
        pred,
        &format!("recordingservice {namespace}/{name}"),
    )
    .await
}

fn condition<'a>(service: &'a RecordingService, type_: &str) -> Option<&'a Condition> {
    service
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn has_condition(service: &RecordingService, type_: &str, status: &str, reason: &str) -> bool {
    condition(service, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// Applies the service `main` of Tenant `contoso` (short name `Contoso`, 20 users), signing in
/// with the customer's app registration whose secret is in Secret `bot-credentials`.
async fn apply_main_with_app_registration(h: &Harness) {
    h.apply(&service_yaml(
        "main",
        "contoso",
        "Contoso",
        20,
        &app_registration("bot-credentials"),
    ))
    .await;
}

/// Asks for the service's app registration to be checked now, as the README says:
/// `kubectl annotate rsvc NAME --overwrite recording.m365.io/recheck-at=...`.
fn recheck(kubectl: &common::Kubectl, name: &str, namespace: &str, at: &str) {
    kubectl.ok(
        &[
            "annotate",
            "rsvc",
            name,
            "-n",
            namespace,
            "--overwrite",
            &format!("recording.m365.io/recheck-at={at}"),
        ],
        None,
    );
}

async fn events_of(h: &Harness, namespace: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(h.client(), namespace);
    api.list(&Default::default()).await.unwrap().items
}

/// The namespace's Events once one of them has `reason`: the controller publishes an Event
/// just after the status write a test waits for, so listing at once can miss it.
async fn events_once(h: &Harness, namespace: &str, reason: &str) -> Vec<Event> {
    wait_for(
        T,
        || async { Some(events_of(h, namespace).await) },
        |events: &Vec<Event>| events.iter().any(|e| e.reason.as_deref() == Some(reason)),
        &format!("an Event {reason} in {namespace}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essentials_service_runs_one_hardened_bot() {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    h.apply(&service_yaml("main", "contoso", "Contoso-Rec", 250, ""))
        .await;
    let ns = "tenant-contoso";

    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    let status = service.status.clone().unwrap();
    assert_eq!(status.bots_ready.as_deref(), Some("1/1"));
    assert_eq!(status.bots.len(), 1);
    assert_eq!(
        (
            status.bots[0].name.as_str(),
            status.bots[0].ready,
            status.bots[0].desired
        ),
        ("main-hue", 1, 1)
    );
    assert!(has_condition(&service, "BotsReady", "True", "BotsReady"));
    assert!(
        condition(&service, "Authenticated").is_none(),
        "no app registration, no Authenticated condition"
    );
    for c in &status.conditions {
        assert_eq!(c.observed_generation, service.metadata.generation, "{c:?}");
    }
    assert_eq!(common::bot_names(&h, ns).await, ["main-hue"]);

    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(r#"recording_operator_reconciles_total{controller="recordingservice"}"#),
        "reconciles are counted per controller"
    );

    // `kubectl get rsvc` answers "is it working?" in one line.
    let dir = std::env::temp_dir().join(format!("service-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    h.platform.kube.write_kubeconfig(&kubeconfig).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "rsvc", "-n", ns])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SHORT", "NAME", "USERS", "BOTS", "READY", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["main", "Contoso-Rec", "250", "1/1", "True"],
        "{table}"
    );

    // The bot: owned by the service, labelled, hardened, default image and resources.
    let deployment = Api::<StatefulSet>::namespaced(h.client(), ns)
        .get("main-hue")
        .await
        .unwrap();
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("RecordingService", "main", Some(true))
    );
    let labels = deployment.metadata.labels.clone().unwrap();
    for (k, v) in [
        ("app.kubernetes.io/name", "recording-bot"),
        ("app.kubernetes.io/instance", "main"),
        ("app.kubernetes.io/managed-by", "recording-operator"),
        ("recording.m365.io/tenant", "contoso"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("main-bots"));
    let strategy = spec.update_strategy.unwrap();
    assert_eq!(
        strategy.rolling_update.unwrap().max_unavailable,
        Some(IntOrString::Int(1)),
        "one instance at a time"
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.os.unwrap().name, "windows");
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "windows");
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(15 * 3600),
        "hours for the calls to end"
    );
    assert!(
        pod.affinity.is_none(),
        "a single bot needs no anti-affinity"
    );
    let pod_security = pod.security_context.unwrap();
    assert_eq!(
        pod_security
            .windows_options
            .unwrap()
            .run_as_user_name
            .as_deref(),
        Some("ContainerAdministrator")
    );
    assert!(pod_security.run_as_user.is_none() && pod_security.seccomp_profile.is_none());
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(recording_operator::config::DEFAULT_BOT_IMAGE)
    );
    assert!(container.liveness_probe.is_none(), "no restart mid-call");
    let readiness = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/health"));
    let pre_stop = container.lifecycle.clone().unwrap().pre_stop.unwrap();
    assert!(pre_stop
        .exec
        .unwrap()
        .command
        .unwrap()
        .join(" ")
        .contains("http://localhost:9442/calls"));
    let resources = container.resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()["memory"].0, "4Gi");
    assert_eq!(resources.limits.unwrap()["cpu"].0, "4");
    // The platform application's client secret, from the service's credentials Secret.
    let secret_env = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "AZURE_CLIENT_SECRET")
        .cloned()
        .unwrap();
    assert!(secret_env.value.is_none());
    let reference = secret_env.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("main-bot-credentials", "primaryClientSecret")
    );
    let copied = Api::<Secret>::namespaced(h.client(), ns)
        .get("main-bot-credentials")
        .await
        .unwrap();
    let app_id = &h.platform.config.consents["recording"].app_id;
    let platform_secret = &h
        .platform
        .seed
        .apps
        .iter()
        .find(|a| &a.app_id == app_id)
        .unwrap()
        .secrets[0]
        .value;
    assert_eq!(
        copied.data.unwrap()["primaryClientSecret"].0,
        platform_secret.as_bytes(),
        "the platform application's own secret"
    );
    let configs = serde_json::to_string(
        &Api::<ConfigMap>::namespaced(h.client(), ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    assert!(
        !configs.contains(platform_secret.as_str()),
        "never in a ConfigMap"
    );
    let elsewhere = serde_json::to_string(
        &Api::<StatefulSet>::namespaced(h.client(), ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap()
        + &serde_json::to_string(
            &Api::<Event>::all(h.client())
                .list(&Default::default())
                .await
                .unwrap()
                .items,
        )
        .unwrap()
        + &common::captured_logs();
    assert!(
        !elsewhere.contains(platform_secret.as_str()),
        "the copied secret is in no StatefulSet, Event or log line"
    );

    // The bot configuration: tenant id, retention, compliance, short name, licensed users.
    let cm = Api::<ConfigMap>::namespaced(h.client(), ns)
        .get("main-bot-config")
        .await
        .unwrap();
    let config: Value = serde_json::from_str(&cm.data.unwrap()["bot-config.json"]).unwrap();
    assert_eq!(config["tenantId"], CONTOSO_ID);
    assert_eq!(config["shortName"], "Contoso-Rec");
    assert_eq!(config["licensedUsers"], 250);
    assert_eq!(
        config["retention"],
        json!({"unlimited": false, "days": 400})
    );
    assert_eq!(config["compliance"]["allowDeleteRecordings"], true);
    assert_eq!(config["licenseType"], "Audio Recording");
    assert_eq!(config["bots"].as_array().unwrap().len(), 1);
    assert_eq!(config["bots"][0]["source"], "platform");

    // Its Service, PodDisruptionBudget and NetworkPolicy.
    let svc = Api::<Service>::namespaced(h.client(), ns)
        .get("main-hue")
        .await
        .unwrap();
    let ports: Vec<i32> = svc
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [9441]);
    Api::<PodDisruptionBudget>::namespaced(h.client(), ns)
        .get("main-hue")
        .await
        .unwrap();
    let policy = Api::<NetworkPolicy>::namespaced(h.client(), ns)
        .get("main-bot")
        .await
        .unwrap()
        .spec
        .unwrap();
    let egress = serde_json::to_value(&policy.egress).unwrap();
    let ports: Vec<(String, i64, Option<i64>)> = egress
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["protocol"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
                p["endPort"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("TCP".to_string(), 443, None),
            ("UDP".to_string(), 53, None),
            ("TCP".to_string(), 53, None),
            ("TCP".to_string(), 5060, None),
            ("TCP".to_string(), 5061, None),
            ("UDP".to_string(), 10000, Some(20000)),
        ],
        "HTTPS, DNS and Teams signalling and media, nothing else"
    );

    // The instance's media: its own LoadBalancer Service, its address in the media ConfigMap.
    let media = Api::<Service>::namespaced(h.client(), ns)
        .get("main-hue-0-media")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(media.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        media.selector.unwrap()["statefulset.kubernetes.io/pod-name"],
        "main-hue-0"
    );
    let port = &media.ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (20100, Some(IntOrString::Int(8445)))
    );
    let addresses = wait_for(
        T,
        || async {
            let cm = Api::<ConfigMap>::namespaced(h.client(), ns)
                .get("main-bot-media")
                .await
                .ok()?;
            let file: Value = serde_json::from_str(&cm.data?["instances.json"]).ok()?;
            Some(file)
        },
        |file| file["main-hue-0"]["publicIp"].is_string(),
        "the assigned address reaches the instance's entry",
    )
    .await;
    assert_eq!(addresses["main-hue-0"]["publicPort"], 20100);
    assert_eq!(addresses["main-hue-0"]["internalPort"], 8445);
    let assigned = Api::<Service>::namespaced(h.client(), ns)
        .get("main-hue-0-media")
        .await
        .unwrap()
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap()[0]
        .ip
        .clone()
        .unwrap();
    assert_eq!(addresses["main-hue-0"]["publicIp"], assigned.as_str());

    // A bot StatefulSet deleted by hand is back at once, not after the next resync.
    let deployments: Api<StatefulSet> = Api::namespaced(h.client(), ns);
    let old_uid = deployments.get("main-hue").await.unwrap().metadata.uid;
    deployments
        .delete("main-hue", &Default::default())
        .await
        .unwrap();
    wait_for(
        T,
        || async { deployments.get_opt("main-hue").await.ok().flatten() },
        |d| d.metadata.uid != old_uid,
        "main-hue recreated",
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pro_service_runs_a_paired_bot_apart_from_the_first_until_the_license_drops() {
    let h = Harness::start().await;
    onboard(&h, "fabrikam", "fabrikam.onmicrosoft.com", "Pro").await;
    let ns = "tenant-fabrikam";
    // What an earlier version of the operator kept: a budget for the paired bot alone.
    let legacy: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rec-hue-paired", "namespace": ns},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {
            "app.kubernetes.io/instance": "rec", "app.kubernetes.io/component": "paired"}}}
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(h.client(), ns)
        .create(&Default::default(), &legacy)
        .await
        .unwrap();
    h.apply(&service_yaml(
        "rec",
        "fabrikam",
        "Fabrikam",
        500,
        "  bot:\n    image: ghcr.io/recording-platform/recording-bot:2.1\n    replicas: 2\n",
    ))
    .await;
    let service = wait_service(&h, ns, "rec", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(
        service.status.as_ref().unwrap().bots_ready.as_deref(),
        Some("4/4")
    );
    assert_eq!(
        common::bot_names(&h, ns).await,
        ["rec-hue", "rec-hue-paired"]
    );

    let paired = Api::<StatefulSet>::namespaced(h.client(), ns)
        .get("rec-hue-paired")
        .await
        .unwrap();
    let pod = paired.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ghcr.io/recording-platform/recording-bot:2.1")
    );
    let anti = pod
        .affinity
        .unwrap()
        .pod_anti_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(anti[0].topology_key, "kubernetes.io/hostname");
    let selected = anti[0]
        .label_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(selected["app.kubernetes.io/instance"], "rec");
    assert_eq!(
        selected["app.kubernetes.io/component"], "primary",
        "the paired bot keeps away from the first"
    );
    let spread = pod.topology_spread_constraints.unwrap();
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    // One budget over both bots: a drain takes one of them at a time. The per-bot budget an
    // earlier version left (created by hand here, before the service) is gone: with two
    // budgets over a pod, the eviction API refuses to evict it at all.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(h.client(), ns);
    let budget = budgets.get("rec-hue").await.unwrap().spec.unwrap();
    let selected = budget.selector.unwrap().match_labels.unwrap();
    assert_eq!(selected["app.kubernetes.io/instance"], "rec");
    assert!(
        !selected.contains_key("app.kubernetes.io/component"),
        "{selected:?}"
    );
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    wait_for(
        T,
        || async { Some(budgets.get_opt("rec-hue-paired").await.unwrap().is_none()) },
        |gone| *gone,
        "the old per-bot budget is deleted",
    )
    .await;

    // Each instance has its media Service. A LoadBalancer Service labelled like them but
    // not owned by the service (made by hand here) is none of the operator's business.
    let all_media = [
        "rec-hue-0-media",
        "rec-hue-1-media",
        "rec-hue-paired-0-media",
        "rec-hue-paired-1-media",
    ];
    wait_media_services(&h, ns, &all_media, "each instance has its media Service").await;
    let services: Api<Service> = Api::namespaced(h.client(), ns);
    let foreign: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rec-hue-paired-9-media", "namespace": ns, "labels": {
            "app.kubernetes.io/name": "recording-bot", "app.kubernetes.io/instance": "rec",
            "app.kubernetes.io/managed-by": "recording-operator"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 20199}]}
    }))
    .unwrap();
    services
        .create(&Default::default(), &foreign)
        .await
        .unwrap();

    // Pro → Essentials: the paired bot goes, the first stays.
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    let service = wait_service(&h, ns, "rec", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.bots_ready.as_deref() == Some("2/2"))
            && has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(service.status.unwrap().bots.len(), 1);
    wait_for(
        T,
        || async { Some(common::bot_names(&h, ns).await) },
        |names| names == &["rec-hue".to_string()],
        "the paired StatefulSet is deleted",
    )
    .await;
    assert!(budgets.get_opt("rec-hue-paired").await.unwrap().is_none());
    assert!(budgets.get_opt("rec-hue").await.unwrap().is_some());
    wait_media_services(
        &h,
        ns,
        &[
            "rec-hue-0-media",
            "rec-hue-1-media",
            "rec-hue-paired-9-media",
        ],
        "the paired instances' media Services are deleted, the one made by hand stays",
    )
    .await;
    let events = events_of(&h, ns).await;
    let removed: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("BotRemoved"))
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "one Event says the paired bot was removed"
    );
    assert_eq!(
        removed[0].note.as_deref(),
        Some("bot rec-hue-paired is no longer needed by the tenant's license")
    );
    h.stop().await;
}

/// Waits until the media Services in `ns` are exactly `expected` (sorted).
async fn wait_media_services(h: &Harness, ns: &str, expected: &[&str], what: &str) {
    let services: Api<Service> = Api::namespaced(h.client(), ns);
    wait_for(
        T,
        || async {
            let mut media: Vec<String> = services
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|s| s.metadata.name)
                .filter(|n| n.ends_with("-media"))
                .collect();
            media.sort();
            Some(media)
        },
        |media| media == expected,
        what,
    )
    .await;
}

/// Contoso's Essentials service `main` whose bot never becomes available (until released).
async fn service_with_its_bot_held_unavailable() -> (Harness, RecordingService) {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.platform
        .kube
        .hold_stateful_set_unavailable(ns, "main-hue", true);
    h.apply(&service_yaml("main", "contoso", "Contoso", 10, ""))
        .await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "BotsReady", "False", "BotsNotReady")
    })
    .await;
    (h, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_never_becomes_available_holds_back_ready() {
    let (h, service) = service_with_its_bot_held_unavailable().await;
    let ns = "tenant-contoso";
    assert!(has_condition(&service, "Ready", "False", "BotsNotReady"));
    assert_eq!(
        service.status.as_ref().unwrap().bots_ready.as_deref(),
        Some("0/1")
    );
    assert_eq!(
        condition(&service, "BotsReady").unwrap().message,
        "bot replicas available: main-hue 0/1"
    );

    // Released, the bot becomes available and the service Ready, with a Normal Event.
    h.platform
        .kube
        .hold_stateful_set_unavailable(ns, "main-hue", false);
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    let events = events_of(&h, ns).await;
    let of = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count()
    };
    assert_eq!(
        of("BotsNotReady"),
        1,
        "one Event per transition, not per reconcile"
    );
    assert_eq!(of("BotsReady"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_app_registration_authenticates_reports_expiry_and_never_leaks_its_secret() {
    let h = Harness::start().await;
    let good = "Cu5t~0mer.Secret-Valid-Value";
    let wrong = "Wr0ng~Customer.Secret-Value";
    register_customer_app(&h, good, SignedDuration::from_hours(90 * 24 + 1));
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";

    // The Secret does not exist yet.
    apply_main_with_app_registration(&h).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "False", "SecretNotFound")
    })
    .await;
    assert!(has_condition(&service, "Ready", "False", "SecretNotFound"));

    // Created, the Secret is noticed and the credentials accepted.
    h.apply(&secret_yaml("bot-credentials", ns, good)).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "True", "Authenticated")
            && has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(
        service
            .status
            .as_ref()
            .unwrap()
            .client_secret_expires_in_days,
        Some(90)
    );
    assert!(has_condition(
        &service,
        "SecretExpiry",
        "True",
        "ClientSecretValid"
    ));

    // The bot gets the secret from the Secret itself.
    let deployment = Api::<StatefulSet>::namespaced(h.client(), ns)
        .get("main-hue")
        .await
        .unwrap();
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let secret_env = env
        .iter()
        .find(|e| e.name == "AZURE_CLIENT_SECRET")
        .unwrap();
    assert!(secret_env.value.is_none());
    let selector = secret_env
        .value_from
        .clone()
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str()),
        ("bot-credentials", "value")
    );
    assert!(env
        .iter()
        .any(|e| e.name == "AZURE_CLIENT_ID" && e.value.as_deref() == Some(CUSTOMER_APP)));

    // Other changes (a spec edit, the bots' status) reuse the last answer: no new token.
    let tokens_before = h.platform.m365.counts().tenant(CONTOSO_ID).token;
    let kube_before = h.platform.kube.request_counts();
    let services: Api<RecordingService> = Api::namespaced(h.client(), ns);
    services
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"licensedUsers": 30}})),
        )
        .await
        .unwrap();
    let service = wait_service(&h, ns, "main", |s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
            && s.metadata.generation == Some(2)
    })
    .await;
    assert!(has_condition(
        &service,
        "Authenticated",
        "True",
        "Authenticated"
    ));
    assert_eq!(
        h.platform.m365.counts().tenant(CONTOSO_ID).token,
        tokens_before,
        "the credentials are checked again only when they (or the Secret) change, or daily"
    );
    // Only what the edit changed is sent again: the configuration and the bot it rolls.
    let kube_after = h.platform.kube.request_counts();
    let patches = |resource: &str| {
        let key = ("patch".to_string(), resource.to_string());
        kube_after.get(&key).copied().unwrap_or(0) - kube_before.get(&key).copied().unwrap_or(0)
    };
    assert_eq!(patches("configmaps"), 1);
    for unchanged in [
        "serviceaccounts",
        "services",
        "networkpolicies",
        "poddisruptionbudgets",
    ] {
        assert_eq!(patches(unchanged), 0, "{unchanged} are not sent again");
    }

    // A wrong secret is noticed as soon as the Secret changes.
    let secrets: Api<Secret> = Api::namespaced(h.client(), ns);
    secrets
        .patch(
            "bot-credentials",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"value": wrong}})),
        )
        .await
        .unwrap();
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "False", "InvalidClientSecret")
    })
    .await;
    let ready = condition(&service, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidClientSecret")
    );
    assert!(ready.message.contains("AADSTS7000215"), "{}", ready.message);
    assert!(
        condition(&service, "SecretExpiry").is_none(),
        "no expiry is known for credentials Entra refuses"
    );
    let events = events_once(&h, ns, "InvalidClientSecret").await;
    assert!(events
        .iter()
        .any(|e| e.reason.as_deref() == Some("InvalidClientSecret")
            && e.type_.as_deref() == Some("Warning")));

    // Neither value is in any status, event, owned object or log line.
    let services: Api<RecordingService> = Api::namespaced(h.client(), ns);
    let statuses =
        serde_json::to_string(&services.list(&Default::default()).await.unwrap().items).unwrap();
    let events = serde_json::to_string(
        &Api::<Event>::all(h.client())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let owned = serde_json::to_string(
        &Api::<StatefulSet>::namespaced(h.client(), ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap()
        + &serde_json::to_string(
            &Api::<ConfigMap>::namespaced(h.client(), ns)
                .list(&Default::default())
                .await
                .unwrap()
                .items,
        )
        .unwrap();
    let logs = common::captured_logs();
    assert!(
        logs.contains("checked the app registration"),
        "the check is logged"
    );
    for secret in [good, wrong] {
        assert!(!statuses.contains(secret), "a client secret is in a status");
        assert!(!events.contains(secret), "a client secret is in an event");
        assert!(
            !owned.contains(secret),
            "a client secret was copied into an owned object"
        );
        assert!(!logs.contains(secret), "a client secret is in the logs");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_expiring_within_thirty_days_is_a_warning() {
    let h = Harness::start().await;
    let value = "Exp1ring~Secret.Value";
    register_customer_app(&h, value, SignedDuration::from_hours(10 * 24 + 1));
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&secret_yaml("bot-credentials", ns, value)).await;
    apply_main_with_app_registration(&h).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "SecretExpiry", "False", "ClientSecretExpiring")
    })
    .await;
    assert_eq!(
        service
            .status
            .as_ref()
            .unwrap()
            .client_secret_expires_in_days,
        Some(10)
    );
    let message = &condition(&service, "SecretExpiry").unwrap().message;
    assert!(message.contains("expires in 10 day(s)"), "{message}");
    // Still working: the warning does not take the service out of Ready.
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    let events = events_once(&h, ns, "ClientSecretExpiring").await;
    let warning = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ClientSecretExpiring"))
        .expect("a Warning Event for the expiring secret");
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // Eleven days later the secret has expired; touching the Secret checks again at once.
    h.platform
        .m365
        .advance_clock(Duration::from_secs(11 * 24 * 3600));
    let secrets: Api<Secret> = Api::namespaced(h.client(), ns);
    secrets
        .patch(
            "bot-credentials",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "False", "ClientSecretExpired")
    })
    .await;
    assert!(has_condition(
        &service,
        "Ready",
        "False",
        "ClientSecretExpired"
    ));
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(message.contains("AADSTS7000222"), "{message}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_services_are_refused_by_the_api_server_and_the_reconciler() {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;

    // The API server refuses bad short names and too many users, naming the field.
    for (short, users, field) in [
        ("ab", 10, "spec.shortName"),
        ("abcdefghijklmnop", 10, "spec.shortName"),
        ("con.toso", 10, "spec.shortName"),
        ("con toso", 10, "spec.shortName"),
        ("Contoso", 501, "spec.licensedUsers"),
    ] {
        let err = h
            .platform
            .apply_yaml(&service_yaml("bad", "contoso", short, users, ""))
            .await
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains(field), "{short:?}/{users}: {text}");
        assert!(text.contains("422"), "{text}");
    }
    let services: Api<RecordingService> = Api::namespaced(h.client(), "tenant-contoso");
    assert!(services.get_opt("bad").await.unwrap().is_none());

    // What only the reconciler can know: the Tenant exists and owns the namespace.
    h.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: elsewhere\n")
        .await;
    h.apply(
        &service_yaml("ghost", "nobody", "Ghost", 10, "").replace("tenant-nobody", "elsewhere"),
    )
    .await;
    h.apply(
        &service_yaml("stray", "contoso", "Stray", 10, "").replace("tenant-contoso", "elsewhere"),
    )
    .await;
    for (name, field) in [("ghost", "spec.tenantRef"), ("stray", "metadata.namespace")] {
        let service = wait_service(&h, "elsewhere", name, |s| {
            has_condition(s, "Ready", "False", "InvalidSpec")
        })
        .await;
        assert!(condition(&service, "Ready")
            .unwrap()
            .message
            .contains(field));
        assert!(has_condition(&service, "Stalled", "True", "InvalidSpec"));
        assert!(has_condition(
            &service,
            "BotsReady",
            "Unknown",
            "NotProvisioned"
        ));
    }
    assert!(
        common::bot_names(&h, "elsewhere").await.is_empty(),
        "nothing provisioned for an invalid service"
    );
    let events = events_once(&h, "elsewhere", "InvalidSpec").await;
    assert!(events.iter().any(
        |e| e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stored_before_the_rules_existed_is_invalid_spec_not_provisioned() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";

    // An older CRD without the shortName and licensedUsers rules lets bad objects in.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client());
    let mut crd =
        serde_json::to_value(<RecordingService as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    for (field, rules) in [
        (
            "shortName",
            &["minLength", "maxLength", "x-kubernetes-validations"][..],
        ),
        ("licensedUsers", &["maximum"][..]),
    ] {
        for rule in rules {
            spec[field].as_object_mut().unwrap().remove(*rule);
        }
    }
    crds.patch(
        "recordingservices.recording.m365.io",
        &PatchParams::apply("recording-operator").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    h.apply(&service_yaml("old-name", "contoso", "con.toso", 10, ""))
        .await;
    h.apply(&service_yaml("old-users", "contoso", "Contoso", 501, ""))
        .await;

    for (name, field) in [
        ("old-name", "spec.shortName"),
        ("old-users", "spec.licensedUsers"),
    ] {
        let service = wait_service(&h, ns, name, |s| {
            has_condition(s, "Ready", "False", "InvalidSpec")
        })
        .await;
        let message = &condition(&service, "Ready").unwrap().message;
        assert!(message.contains(field), "{message}");
        assert!(has_condition(&service, "Stalled", "True", "InvalidSpec"));
    }
    assert!(
        common::bot_names(&h, ns).await.is_empty(),
        "nothing provisioned for an invalid service"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_trouble_is_reported_for_what_it_is() {
    let h = Harness::start().await;
    let value = "N0~Read.Permission-Secret";
    // The customer's app may sign in but may not read its own registration.
    register_customer_app_with(
        &h,
        value,
        SignedDuration::from_hours(90 * 24),
        &common::RECORDING_PERMISSIONS,
    );
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&secret_yaml("bot-credentials", ns, value)).await;

    // Throttling is no answer about the credentials: Unknown, and Ready waits.
    h.platform.m365.throttle_token(Throttle {
        tenant: Some(CONTOSO_ID.into()),
        status: 429,
        retry_after_secs: Some(1),
        count: 10_000,
    });
    apply_main_with_app_registration(&h).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "Unknown", "CheckFailed")
    })
    .await;
    assert!(has_condition(
        &service,
        "Ready",
        "False",
        "AuthenticationPending"
    ));
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(message.contains("throttling"), "{message}");

    // Once Entra answers: authenticated. The app may not read its own registration, but the
    // platform's directory consent may, in the same tenant: the expiry is known all the same.
    h.platform.m365.clear_throttles();
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "True", "Authenticated")
            && has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert!(has_condition(
        &service,
        "SecretExpiry",
        "True",
        "ClientSecretValid"
    ));
    assert_eq!(
        service
            .status
            .as_ref()
            .unwrap()
            .client_secret_expires_in_days,
        Some(89)
    );

    // A client id the tenant does not know.
    h.apply(
        &service_yaml(
            "other",
            "contoso",
            "Other",
            20,
            &app_registration("bot-credentials"),
        )
        .replace(CUSTOMER_APP, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
    )
    .await;
    let service = wait_service(&h, ns, "other", |s| {
        has_condition(s, "Authenticated", "False", "AppNotFound")
    })
    .await;
    let message = &condition(&service, "Ready").unwrap().message;
    assert!(
        message.contains("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d") && message.contains("AADSTS"),
        "{message}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_check_waits_for_retry_after_whatever_else_changes() {
    let h = Harness::start().await;
    let value = "Thr0ttled~Secret.Value";
    register_customer_app(&h, value, SignedDuration::from_hours(90 * 24));
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&secret_yaml("bot-credentials", ns, value)).await;
    h.platform.m365.throttle_token(Throttle {
        tenant: Some(CONTOSO_ID.into()),
        status: 429,
        retry_after_secs: Some(3600),
        count: 10_000,
    });
    apply_main_with_app_registration(&h).await;
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "Unknown", "CheckFailed")
    })
    .await;
    let tokens = h.platform.m365.counts().tenant(CONTOSO_ID).token;

    // An edit reconciles the service (and rolls its bot) without asking Entra again.
    let services: Api<RecordingService> = Api::namespaced(h.client(), ns);
    services
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"licensedUsers": 30}})),
        )
        .await
        .unwrap();
    let service = wait_service(&h, ns, "main", |s| {
        s.metadata.generation == Some(2)
            && s.status.as_ref().and_then(|st| st.observed_generation) == Some(2)
    })
    .await;
    assert!(has_condition(
        &service,
        "Authenticated",
        "Unknown",
        "CheckFailed"
    ));
    assert!(condition(&service, "Authenticated")
        .unwrap()
        .message
        .contains("retrying after 3600s"));
    assert_eq!(h.platform.m365.counts().tenant(CONTOSO_ID).token, tokens);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_app_registration_must_be_the_customers_and_hold_the_recording_permissions() {
    let h = Harness::start().await;
    let value = "Rec0rd~Permission.Secret-Value";
    register_customer_app(&h, value, SignedDuration::from_hours(90 * 24));
    // The customer's admin who registered it.
    h.platform
        .m365
        .add_app_owner(CUSTOMER_APP, "globaladmin@contoso.onmicrosoft.com");
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&secret_yaml("bot-credentials", ns, value)).await;

    // Another customer's tenant: refused without a token request.
    const FABRIKAM_ID: &str = "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b";
    h.apply(
        &service_yaml(
            "elsewhere",
            "contoso",
            "Elsewhere",
            10,
            &app_registration("bot-credentials"),
        )
        .replace(CONTOSO_ID, FABRIKAM_ID),
    )
    .await;
    let service = wait_service(&h, ns, "elsewhere", |s| {
        has_condition(s, "Authenticated", "False", "WrongTenant")
    })
    .await;
    let message = &condition(&service, "Ready").unwrap().message;
    assert!(
        message.contains(FABRIKAM_ID) && message.contains(CONTOSO_ID),
        "{message}"
    );
    assert!(has_condition(&service, "Ready", "False", "WrongTenant"));

    // The customer's own app, with the recording permissions: authenticated and Ready, and
    // the status names who registered it.
    apply_main_with_app_registration(&h).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "True", "Authenticated")
            && has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert_eq!(
        service.status.as_ref().unwrap().app_registration_owners,
        ["globaladmin@contoso.onmicrosoft.com"]
    );
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(
        message.ends_with("registered by globaladmin@contoso.onmicrosoft.com"),
        "{message}"
    );

    // The customer's admin takes a recording permission away. The last check stands (the
    // next one is due in a day)...
    h.platform
        .m365
        .revoke_permission(CONTOSO_ID, CUSTOMER_APP, "Calls.JoinGroupCall.All");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<RecordingService> = Api::namespaced(h.client(), ns);
    let unchanged = api.get("main").await.unwrap();
    assert!(has_condition(
        &unchanged,
        "Authenticated",
        "True",
        "Authenticated"
    ));

    // ...until the annotation asks for a check now (`kubectl annotate`, as the README says).
    recheck(
        &common::Kubectl::new(&h, "recheck"),
        "main",
        ns,
        "2026-12-07T10:00:00Z",
    );
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "False", "RecordingPermissionsMissing")
    })
    .await;
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(message.contains("Calls.JoinGroupCall.All"), "{message}");
    assert!(
        !message.contains(value),
        "the secret never reaches a status"
    );
    assert!(has_condition(
        &service,
        "Ready",
        "False",
        "RecordingPermissionsMissing"
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_directory_consent_the_permissions_come_from_graph_and_the_consenting_admin_is_named(
) {
    let h = Harness::start().await;
    let value = "Ass1gnment~Secret.Value";
    let admin = "globaladmin@contoso.onmicrosoft.com";
    register_customer_app(&h, value, SignedDuration::from_hours(90 * 24));
    // The customer's admin consents (the audit log records it); nobody owns the registration.
    h.platform
        .m365
        .grant_consent_as(CONTOSO_ID, CUSTOMER_APP, admin);
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&secret_yaml("bot-credentials", ns, value)).await;
    // Tokens say nothing from here on: only Graph can tell what the app holds.
    h.platform.m365.set_opaque_tokens(true);
    apply_main_with_app_registration(&h).await;
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "True", "Authenticated")
    })
    .await;
    let status = service.status.as_ref().unwrap();
    assert_eq!(
        status.recording_permissions_source.as_deref(),
        Some("AppRoleAssignments")
    );
    assert_eq!(status.client_secret_expires_in_days, Some(89));
    assert!(status.app_registration_consented_by.is_empty());
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(
        message.contains("no user owner")
            && message.contains("who consented is not known")
            && message.contains("AuditLog.Read.All is not granted"),
        "{message}"
    );

    // The customer grants the platform's directory application the audit log: the next check
    // (asked for with the annotation) names the administrator who consented.
    let directory_app = h.platform.config.consents["directory"].app_id.clone();
    h.platform
        .m365
        .grant_partial(CONTOSO_ID, &directory_app, &["AuditLog.Read.All"], &[]);
    let kubectl = common::Kubectl::new(&h, "consented-by");
    let before = h.platform.m365.counts().tenant(CONTOSO_ID);
    recheck(&kubectl, "main", ns, "2026-12-07T11:00:00Z");
    let service = wait_service(&h, ns, "main", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| !st.app_registration_consented_by.is_empty())
    })
    .await;
    let consented_by = &service
        .status
        .as_ref()
        .unwrap()
        .app_registration_consented_by;
    assert_eq!(consented_by, &[admin]);
    // The check is one $batch (permissions, secrets, owners, Graph's app roles), and one GET
    // of the audit log: an opaque token does not name the app's service principal, the
    // assignments do.
    let after = h.platform.m365.counts().tenant(CONTOSO_ID);
    assert_eq!(
        (
            after.graph_batch - before.graph_batch,
            after.graph_get - before.graph_get
        ),
        (1, 1)
    );
    let shown = kubectl.ok(
        &[
            "get",
            "rsvc",
            "main",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.recordingPermissionsSource} {.status.appRegistrationConsentedBy[0]}",
        ],
        None,
    );
    assert_eq!(shown.trim(), format!("AppRoleAssignments {admin}"));
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(
        message.ends_with(&format!("consented by {admin}")),
        "{message}"
    );

    // Without the directory consent (revoked; the token the operator holds is refused from
    // now on), only the app's token is left, and an opaque token proves nothing: the
    // permissions cannot be confirmed, and the status says why.
    h.platform.m365.revoke_consent(CONTOSO_ID, &directory_app);
    h.platform.m365.reject_tokens_on_graph(CONTOSO_ID, 8);
    recheck(&kubectl, "main", ns, "2026-12-07T12:00:00Z");
    let service = wait_service(&h, ns, "main", |s| {
        has_condition(s, "Authenticated", "False", "RecordingPermissionsMissing")
    })
    .await;
    let message = &condition(&service, "Authenticated").unwrap().message;
    assert!(
        message.contains("its token cannot be read")
            && message.contains("read from its token's roles claim, because"),
        "{message}"
    );
    assert!(
        !message.contains(value),
        "the secret never reaches a status"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_deployment_of_an_earlier_version_goes_once_its_stateful_set_is_ready() {
    let (h, service) = service_with_its_bot_held_unavailable().await;
    let ns = "tenant-contoso";
    // What an earlier version kept: the bot as a Deployment owned by the service.
    let legacy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "main-hue", "namespace": ns, "ownerReferences": [{
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
            "name": "main", "uid": service.metadata.uid, "controller": true}]},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "main", "app.kubernetes.io/name": "recording-bot", "app.kubernetes.io/component": "primary"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/instance": "main", "app.kubernetes.io/name": "recording-bot", "app.kubernetes.io/component": "primary"}},
                "spec": {"containers": [{"name": "bot", "image": "bot:1"}]}}}
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(h.client(), ns);
    deployments
        .create(&Default::default(), &legacy)
        .await
        .unwrap();
    // Someone else's Deployment is never touched.
    let mut foreign = legacy.clone();
    foreign.metadata.name = Some("main-hue-paired".into());
    foreign.metadata.owner_references = None;
    deployments
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    // While the StatefulSet is not ready, the old bot keeps recording.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(deployments.get_opt("main-hue").await.unwrap().is_some());

    h.platform
        .kube
        .hold_stateful_set_unavailable(ns, "main-hue", false);
    wait_for(
        T,
        || async { Some(deployments.get_opt("main-hue").await.unwrap().is_none()) },
        |gone| *gone,
        "the replaced Deployment is deleted",
    )
    .await;
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    assert!(deployments
        .get_opt("main-hue-paired")
        .await
        .unwrap()
        .is_some());
    let events = events_once(&h, ns, "BotMigrated").await;
    let migrated = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("BotMigrated"))
        .count();
    assert_eq!(migrated, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_change_rolls_one_instance_at_a_time_and_waits_for_its_calls() {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    let replicas = "  bot:\n    replicas: 3\n";
    h.apply(&service_yaml("main", "contoso", "Contoso", 10, replicas))
        .await;
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    let stateful_sets: Api<StatefulSet> = Api::namespaced(h.client(), ns);
    let before = stateful_sets.get("main-hue").await.unwrap();
    let generation = before.metadata.generation;

    // The instance the rollout stops first (the highest ordinal) has calls in progress.
    h.platform.kube.set_instance_busy(ns, "main-hue-2", true);
    h.apply(&service_yaml("main", "contoso", "Contoso", 20, replicas))
        .await;
    let rolling = wait_service(&h, ns, "main", |s| {
        has_condition(s, "BotsReady", "False", "BotsNotReady")
    })
    .await;
    assert_eq!(
        rolling.status.unwrap().bots_ready.as_deref(),
        Some("0/3"),
        "no instance runs the new configuration yet"
    );
    let after = stateful_sets.get("main-hue").await.unwrap();
    assert!(
        after.metadata.generation > generation,
        "the template changed"
    );
    // While the instance drains, the others keep recording and nothing else is replaced.
    for _ in 0..10 {
        let status = stateful_sets.get("main-hue").await.unwrap().status.unwrap();
        assert_eq!(
            (status.ready_replicas, status.updated_replicas),
            (Some(2), Some(0)),
            "{status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its calls end: the rollout goes on, one instance at a time, to Ready.
    h.platform.kube.set_instance_busy(ns, "main-hue-2", false);
    let mut lowest = 3;
    let deadline = std::time::Instant::now() + T;
    loop {
        let status = stateful_sets.get("main-hue").await.unwrap().status.unwrap();
        lowest = lowest.min(status.ready_replicas.unwrap_or(0));
        if status.updated_replicas == Some(3) && status.ready_replicas == Some(3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rolled out: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lowest, 2, "never more than one instance down");
    wait_service(&h, ns, "main", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_host_networking_each_instance_learns_its_nodes_public_ip() {
    let mut bots = recording_operator::config::BotsConfig::default();
    bots.media.mode = recording_operator::config::MediaMode::HostNetwork;
    let h = Harness::start_with(recording_operator::demo::PlatformOptions {
        bots: Some(bots),
        ..Default::default()
    })
    .await;
    onboard(&h, "fabrikam", "fabrikam.onmicrosoft.com", "Pro").await;
    let ns = "tenant-fabrikam";
    // Host networking is for the privileged level only.
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(h.client())
        .get(ns)
        .await
        .unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    h.apply(&service_yaml("rec", "fabrikam", "Fabrikam", 10, ""))
        .await;
    wait_service(&h, ns, "rec", |s| {
        has_condition(s, "Ready", "True", "Ready")
    })
    .await;
    let pod = Api::<StatefulSet>::namespaced(h.client(), ns)
        .get("rec-hue-paired")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.node_selector.unwrap()["recording.m365.io/instance-public-ip"],
        "true"
    );
    assert!(
        Api::<Service>::namespaced(h.client(), ns)
            .get_opt("rec-hue-0-media")
            .await
            .unwrap()
            .is_none(),
        "no per-instance Service with host networking"
    );

    // The scheduler puts the instances on nodes with public IPs: one annotated by the
    // platform, one reporting an ExternalIP.
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(h.client());
    for (name, annotation, external) in [
        ("akswin000001", Some("198.51.100.31"), None),
        ("akswin000002", None, Some("198.51.100.32")),
    ] {
        let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        if let Some(ip) = annotation {
            node["metadata"]["annotations"] = json!({"recording.m365.io/public-ip": ip});
        }
        nodes
            .create(&Default::default(), &serde_json::from_value(node).unwrap())
            .await
            .unwrap();
        let mut addresses = vec![json!({"type": "InternalIP", "address": "10.224.0.5"})];
        if let Some(ip) = external {
            addresses.push(json!({"type": "ExternalIP", "address": ip}));
        }
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"addresses": addresses}})),
            )
            .await
            .unwrap();
    }
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(h.client(), ns);
    for (pod, node) in [
        ("rec-hue-0", "akswin000001"),
        ("rec-hue-paired-0", "akswin000002"),
    ] {
        let manifest = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns},
            "spec": {"nodeName": node, "os": {"name": "windows"},
                "containers": [{"name": "bot", "image": "bot:1"}]}});
        pods.create(
            &Default::default(),
            &serde_json::from_value(manifest).unwrap(),
        )
        .await
        .unwrap();
    }
    let file = wait_for(
        T,
        || async {
            let cm = Api::<ConfigMap>::namespaced(h.client(), ns)
                .get("rec-bot-media")
                .await
                .ok()?;
            serde_json::from_str::<Value>(&cm.data?["instances.json"]).ok()
        },
        |f| f["rec-hue-0"]["publicIp"].is_string() && f["rec-hue-paired-0"]["publicIp"].is_string(),
        "both instances' addresses",
    )
    .await;
    assert_eq!(
        file["rec-hue-0"],
        json!({"pod": "rec-hue-0", "publicIp": "198.51.100.31", "publicPort": 8445, "internalPort": 8445})
    );
    assert_eq!(file["rec-hue-paired-0"]["publicIp"], "198.51.100.32");
    h.stop().await;
}

/// The operator's `botPolicy`: an image from a repository it does not allow, and a Secret
/// without the label it names, are refused as conditions naming the field and the rule, and
/// nothing runs until they are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_policy_refuses_foreign_images_and_unlabelled_secrets() {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    let ns = "tenant-contoso";
    h.apply(&service_yaml(
        "foreign",
        "contoso",
        "Foreign",
        10,
        "  bot:\n    image: registry.example.com/bot:2.1\n",
    ))
    .await;
    // A Secret of the namespace that is not meant for bots.
    h.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-password\n  namespace: {ns}\nstringData:\n  value: \"not-for-bots\"\n"
    ))
    .await;
    h.apply(&service_yaml(
        "mounts",
        "contoso",
        "Mounts",
        10,
        &app_registration("db-password"),
    ))
    .await;
    for (name, field, rule) in [
        ("foreign", "spec.bot.image", "botPolicy.allowedRepositories"),
        (
            "mounts",
            "spec.appRegistration.clientSecretRef.name",
            "lacks the label recording.m365.io/bot-secret=true (botPolicy.secretLabel)",
        ),
    ] {
        let service = wait_service(&h, ns, name, |s| {
            has_condition(s, "Ready", "False", "InvalidSpec")
        })
        .await;
        let message = &condition(&service, "Ready").unwrap().message;
        assert!(
            message.contains(field) && message.contains(rule),
            "{name}: {message}"
        );
        assert!(!message.contains("not-for-bots"), "{message}");
        assert!(has_condition(&service, "Stalled", "True", "InvalidSpec"));
    }
    assert!(
        common::bot_names(&h, ns).await.is_empty(),
        "no bot runs the foreign image or mounts the Secret"
    );

    // The Secret's owner marks it for bots: the service is provisioned.
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client(), ns)
        .patch(
            "db-password",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"recording.m365.io/bot-secret": "true"}}}),
            ),
        )
        .await
        .unwrap();
    wait_for(
        T,
        || async { Some(common::bot_names(&h, ns).await) },
        |names| names == &["mounts-hue".to_string()],
        "the labelled Secret's service provisioned",
    )
    .await;
    h.stop().await;
}
