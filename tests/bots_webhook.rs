//! How Teams reaches the bots, end to end on the simulators: the webhook Ingress and the
//! cert-manager Certificate of a service with its own app registration (the Certificate API
//! registered by the test), pruned with the instances; the platform router delivering each
//! tenant's notifications to that tenant's stand-in bot; and the bots' policy report turning
//! `RecordingPolicy` True, refused without the service's token.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use common::Harness;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use recording_operator::config::{IssuerRef, WebhookConfig, WebhookTls};
use recording_operator::crd::RecordingService;
use recording_operator::demo::PlatformOptions;
use serde_json::{json, Value};
use sim::m365::{AppSeed, SecretSeed};

const T: Duration = Duration::from_secs(30);
const CONTOSO_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";
const FABRIKAM_ID: &str = "7c1f8e4b-3d5a-4b9f-a2e7-8f0a1b3c5d7e";
const CUSTOMER_APP: &str = "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7";

/// A Tenant, with its Entra tenant id given in the spec when `tenant_id` is set.
fn tenant_yaml(name: &str, domain: &str, license: &str, tenant_id: Option<&str>) -> String {
    let id = tenant_id.map_or(String::new(), |id| format!("  tenantId: {id}\n"));
    common::tenant_yaml(name, domain, license, "westeurope", &id)
}

fn service_yaml(name: &str, tenant: &str, extra: &str) -> String {
    common::service_yaml(name, tenant, "Rec", 10, extra)
}

const CERTIFICATE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate, shortNames: [cert]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [secretName, issuerRef]
              properties:
                secretName: {type: string}
                dnsNames: {type: array, items: {type: string}}
                issuerRef:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    kind: {type: string}
                    group: {type: string}
                privateKey:
                  type: object
                  properties:
                    rotationPolicy: {type: string, enum: [Never, Always]}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn webhook_config() -> WebhookConfig {
    WebhookConfig {
        ingress_class_name: Some("nginx".into()),
        platform_host: Some("calls.recording.example.com".into()),
        service_host: Some("{service}.{tenant}.bots.recording.example.com".into()),
        tls: WebhookTls {
            secret_name: Some("bots-wildcard-tls".into()),
            issuer_ref: Some(IssuerRef {
                name: "letsencrypt".into(),
                kind: "ClusterIssuer".into(),
                group: "cert-manager.io".into(),
            }),
        },
        annotations: BTreeMap::from([(
            "nginx.ingress.kubernetes.io/proxy-body-size".to_string(),
            "256k".to_string(),
        )]),
    }
}

async fn onboard(h: &Harness, tenant: &str, domain: &str, license: &str) {
    common::onboard_applied(
        h,
        &tenant_yaml(tenant, domain, license, None),
        tenant,
        license,
        T,
    )
    .await;
}

async fn service_names(h: &Harness, ns: &str) -> Vec<String> {
    let api: Api<Service> = Api::namespaced(h.client(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    names
}

/// Polls `get` until it gives a value; panics after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, get: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = get().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition(s: &RecordingService, type_: &str) -> Option<(String, String, String)> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_app_registration_gets_an_ingress_and_certificate_pruned_with_its_instances() {
    let h = Harness::start_with(PlatformOptions {
        webhook: Some(webhook_config()),
        ..Default::default()
    })
    .await;
    // cert-manager's API, as installing cert-manager registers it.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client());
    let crd: CustomResourceDefinition = serde_saphyr::from_str(CERTIFICATE_CRD).unwrap();
    crds.create(&Default::default(), &crd).await.unwrap();
    until(T, || async {
        let crd = crds.get("certificates.cert-manager.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Pro").await;
    h.platform.m365.add_app(AppSeed {
        app_id: CUSTOMER_APP.into(),
        display_name: "contoso-recording".into(),
        home_tenant: CONTOSO_ID.into(),
        secrets: vec![SecretSeed {
            value: "s3cret-value".into(),
            key_id: None,
            display_name: Some("bots".into()),
            start_date_time: None,
            end_date_time: "2099-01-01T00:00:00Z".into(),
        }],
        redirect_uris: vec![],
        application_permissions: common::customer_app_permissions(),
        delegated_scopes: vec![],
    });
    h.platform.m365.grant_consent(CONTOSO_ID, CUSTOMER_APP);
    let ns = "tenant-contoso";
    h.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: {ns}\n  labels:\n    recording.m365.io/bot-secret: \"true\"\nstringData:\n  value: s3cret-value\n"
    ))
    .await;
    let registration = format!(
        "  appRegistration:\n    tenantId: {CONTOSO_ID}\n    clientId: {CUSTOMER_APP}\n    clientSecretRef:\n      name: app\n      key: value\n"
    );
    h.apply(&service_yaml(
        "main",
        "contoso",
        &format!("  bot:\n    replicas: 2\n{registration}"),
    ))
    .await;

    let ingresses: Api<Ingress> = Api::namespaced(h.client(), ns);
    let ingress = until(T, || async {
        ingresses.get_opt("main-webhook").await.ok().flatten()
    })
    .await;
    let spec = ingress.spec.clone().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let host = "main.contoso.bots.recording.example.com";
    let tls = &spec.tls.as_ref().unwrap()[0];
    assert_eq!(tls.hosts.as_deref(), Some(&[host.to_string()][..]));
    assert_eq!(
        tls.secret_name.as_deref(),
        Some("main-webhook-tls"),
        "cert-manager fills the Secret"
    );
    assert_eq!(
        ingress.metadata.annotations.as_ref().unwrap()
            ["nginx.ingress.kubernetes.io/proxy-body-size"],
        "256k"
    );
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some(host));
    let routes: Vec<(String, String)> = rule
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            (
                p.path.clone().unwrap(),
                p.backend.service.as_ref().unwrap().name.clone(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("/api/calling/primary", "main-cb-p"),
            ("/api/calling/primary/0", "main-cb-p0"),
            ("/api/calling/primary/1", "main-cb-p1"),
            ("/api/calling/paired", "main-cb-pp"),
            ("/api/calling/paired/0", "main-cb-pp0"),
            ("/api/calling/paired/1", "main-cb-pp1"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    let certificates: Api<kube::api::DynamicObject> = Api::namespaced_with(
        h.client(),
        ns,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        )),
    );
    let certificate = until(T, || async {
        certificates.get_opt("main-webhook").await.ok().flatten()
    })
    .await;
    assert_eq!(certificate.data["spec"]["secretName"], "main-webhook-tls");
    assert_eq!(certificate.data["spec"]["dnsNames"], json!([host]));
    assert_eq!(certificate.data["spec"]["issuerRef"]["name"], "letsencrypt");

    let services: Api<Service> = Api::namespaced(h.client(), ns);
    let headless = services.get("main-bots").await.unwrap().spec.unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        headless.publish_not_ready_addresses,
        Some(true),
        "draining instances stay reachable"
    );
    let instance = services.get("main-cb-pp1").await.unwrap().spec.unwrap();
    assert_eq!(
        instance.selector.unwrap()["statefulset.kubernetes.io/pod-name"],
        "main-hue-paired-1"
    );

    // One replica: the second instances' Services go; without its own app registration the
    // service's calls come through the router, and its Ingress goes.
    h.apply(&service_yaml(
        "main",
        "contoso",
        &format!("  bot:\n    replicas: 1\n{registration}"),
    ))
    .await;
    let names = until(T, || async {
        let names = service_names(&h, ns).await;
        (!names
            .iter()
            .any(|n| n == "main-cb-p1" || n == "main-cb-pp1"))
        .then_some(names)
    })
    .await;
    for wanted in [
        "main-bots",
        "main-cb-p",
        "main-cb-p0",
        "main-cb-pp",
        "main-cb-pp0",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    h.apply(&service_yaml(
        "main",
        "contoso",
        "  bot:\n    replicas: 1\n",
    ))
    .await;
    until(T, || async {
        ingresses
            .get_opt("main-webhook")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    let names = until(T, || async {
        let names = service_names(&h, ns).await;
        (!names.iter().any(|n| n == "main-cb-p0")).then_some(names)
    })
    .await;
    assert!(names.iter().any(|n| n == "main-cb-p"), "{names:?}");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------------------------

/// What a stand-in bot received: path, Authorization header, body.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A stand-in bot answering every POST with its name; after 2 s when the request's
/// `client-request-id` is `slow`.
async fn stand_in(listener: tokio::net::TcpListener, name: &'static str) -> Seen {
    let seen: Seen = Arc::default();
    let app = axum::Router::new().fallback({
        let seen = seen.clone();
        move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_string(), auth, body));
                if headers
                    .get("client-request-id")
                    .is_some_and(|v| v == "slow")
                {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                axum::Json(json!({"bot": name}))
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    seen
}

/// Two listeners on one port of two loopback addresses (the router's bot port is one number).
async fn two_listeners() -> (tokio::net::TcpListener, tokio::net::TcpListener, u16) {
    for _ in 0..50 {
        let a = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = tokio::net::TcpListener::bind(("127.0.0.3", port)).await {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn notification(tenant: &str) -> Value {
    json!({"value": [{
        "changeType": "created",
        "resource": "/app/calls/421f0b00-5c5c-4d6a-8a4c-2f1f0f0f0f0f",
        "resourceUrl": "/communications/calls/421f0b00-5c5c-4d6a-8a4c-2f1f0f0f0f0f",
        "resourceData": {
            "@odata.type": "#microsoft.graph.call",
            "state": "incoming",
            "direction": "incoming",
            "tenantId": tenant,
            "source": {"identity": {"user": {"id": "8f0c1a2b-0000-4000-8000-000000000001", "tenantId": tenant}}}
        }
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_delivers_each_tenants_notifications_to_that_tenants_bots() {
    let h = Harness::start_simulators().await;
    for ns in ["tenant-contoso", "tenant-fabrikam"] {
        h.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ))
        .await;
    }
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Pro",
        Some(CONTOSO_ID),
    ))
    .await;
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
        Some(FABRIKAM_ID),
    ))
    .await;
    h.apply(&service_yaml("main", "contoso", "")).await;
    h.apply(&service_yaml("rec", "fabrikam", "")).await;

    let (contoso_listener, fabrikam_listener, port) = two_listeners().await;
    let contoso = stand_in(contoso_listener, "contoso").await;
    let fabrikam = stand_in(fabrikam_listener, "fabrikam").await;
    let at = |last: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
    // The cluster's DNS, for the names the router builds.
    let http = recording_operator::router::forward_client()
        .timeout(Duration::from_millis(800))
        .resolve("main-cb-p.tenant-contoso.svc.cluster.local", at(2))
        .resolve("main-cb-pp.tenant-contoso.svc.cluster.local", at(2))
        .resolve(
            "main-hue-paired-1.main-bots.tenant-contoso.svc.cluster.local",
            at(2),
        )
        .resolve("rec-cb-p.tenant-fabrikam.svc.cluster.local", at(3))
        .resolve(
            "rec-hue-0.rec-bots.tenant-fabrikam.svc.cluster.local",
            at(9),
        )
        .build()
        .unwrap();
    let (tenants, services, watches) = recording_operator::router::watch(h.client());
    let watching = tokio::spawn(watches);
    tenants.wait_until_ready().await.unwrap();
    services.wait_until_ready().await.unwrap();
    until(T, || {
        let (t, s) = (tenants.state().len(), services.state().len());
        async move { (t == 2 && s == 2).then_some(()) }
    })
    .await;
    let state = recording_operator::router::RouterState {
        tenants,
        services,
        http,
        settings: recording_operator::router::RouterSettings {
            bot_port: port,
            ..Default::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(recording_operator::http::public::serve(
        listener,
        recording_operator::router::router(state),
        async move {
            let _ = stopped.await;
        },
    ));
    // A connection per request: the router closes one whose body it refused unread.
    let teams = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: &str, body: Vec<u8>| {
        teams
            .post(format!("http://{router_addr}{path}"))
            .header("authorization", "Bearer teams-signed-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();

    // A new call of each tenant reaches that tenant's bot, path and token unchanged.
    let answer = post("/api/calling/primary", json_body(notification(CONTOSO_ID)))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["bot"], "contoso");
    let answer = post(
        "/api/calling/primary",
        json_body(notification(&FABRIKAM_ID.to_uppercase())),
    )
    .await
    .unwrap();
    assert_eq!(answer.json::<Value>().await.unwrap()["bot"], "fabrikam");
    {
        let seen = contoso.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/api/calling/primary");
        assert_eq!(seen[0].1.as_deref(), Some("Bearer teams-signed-token"));
        assert_eq!(
            seen[0].2["value"][0]["resourceData"]["tenantId"],
            CONTOSO_ID
        );
    }
    assert_eq!(fabrikam.lock().unwrap().len(), 1);

    // An instance's notification, tenant in the path, reaches that instance by its DNS name.
    let path = format!("/api/calling/paired/1/{CONTOSO_ID}");
    let answer = post(
        &path,
        json_body(json!({"value": [{"changeType": "updated"}]})),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(contoso.lock().unwrap().last().unwrap().0, path);

    // Refused or not routed: nothing reaches any bot.
    let before = (
        contoso.lock().unwrap().len(),
        fabrikam.lock().unwrap().len(),
    );
    let unknown = post(
        "/api/calling/primary",
        json_body(notification("99999999-9999-4999-8999-999999999999")),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let no_tenant = post(
        "/api/calling/primary",
        json_body(json!({"value": [{"resourceData": {}}]})),
    )
    .await
    .unwrap();
    assert_eq!(no_tenant.status(), StatusCode::BAD_REQUEST);
    let paired_of_essentials = post("/api/calling/paired", json_body(notification(FABRIKAM_ID)))
        .await
        .unwrap();
    assert_eq!(
        paired_of_essentials.status(),
        StatusCode::NOT_FOUND,
        "an Essentials tenant has no paired bot"
    );
    let elsewhere = post("/api/other", json_body(notification(CONTOSO_ID)))
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    let huge = post("/api/calling/primary", vec![b' '; 300 * 1024])
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        before,
        (
            contoso.lock().unwrap().len(),
            fabrikam.lock().unwrap().len()
        )
    );

    // A bot that does not answer in time, and one that is not there.
    let slow = teams
        .post(format!("http://{router_addr}/api/calling/primary"))
        .header("client-request-id", "slow")
        .body(json_body(notification(CONTOSO_ID)))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    let missing = post(
        &format!("/api/calling/primary/0/{FABRIKAM_ID}"),
        json_body(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_GATEWAY);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    watching.abort();
}

// ---------------------------------------------------------------------------------------------
// The bots' policy report
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_policy_report_turns_recording_policy_true_and_a_forged_one_is_refused() {
    let h = Harness::start().await;
    onboard(&h, "contoso", "contoso.onmicrosoft.com", "Essentials").await;
    h.apply(&service_yaml("main", "contoso", "")).await;
    let ns = "tenant-contoso";
    let services: Api<RecordingService> = Api::namespaced(h.client(), ns);
    let waiting = until(T, || async {
        let s = services.get("main").await.ok()?;
        let ready = condition(&s, "Ready")?;
        (ready.0 == "True").then_some(s)
    })
    .await;
    let ready = condition(&waiting, "Ready").unwrap();
    assert!(
        ready
            .2
            .starts_with("deployed, waiting for the customer's recording policy"),
        "{}",
        ready.2
    );
    let policy = condition(&waiting, "RecordingPolicy").unwrap();
    assert_eq!(
        (policy.0.as_str(), policy.1.as_str()),
        ("False", "CustomerPolicyPending")
    );
    let recording_app = &h.platform.config.consents["recording"].app_id;
    assert!(policy.2.contains(recording_app.as_str()), "{}", policy.2);

    // The bots' token: a projected token of their own ServiceAccount for the operator's
    // audience; the pod mounts no token the API server accepts.
    let deployment: StatefulSet = Api::namespaced(h.client(), ns)
        .get("main-hue")
        .await
        .unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("main-bot"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let projection = pod
        .volumes
        .unwrap()
        .into_iter()
        .find_map(|v| v.projected)
        .unwrap();
    let sa_token = projection.sources.unwrap()[0]
        .service_account_token
        .clone()
        .unwrap();
    assert_eq!(sa_token.audience.as_deref(), Some("recording-operator"));
    let env = pod.containers[0].env.clone().unwrap();
    let file = env
        .iter()
        .find(|e| e.name == "POLICY_REPORT_TOKEN_FILE")
        .unwrap();
    assert_eq!(
        file.value.as_deref(),
        Some("/var/run/secrets/recording-operator/token")
    );
    // What the kubelet writes into that file.
    let token = h
        .platform
        .kube
        .audience_token(ns, "main-bot", "recording-operator");
    let url_env = env.iter().find(|e| e.name == "POLICY_REPORT_URL").unwrap();
    let path = "/bots/v1/namespaces/tenant-contoso/recordingservices/main/policy-invite";
    assert!(url_env.value.as_deref().unwrap().ends_with(path));

    // The public listener, where the bots report.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(recording_operator::http::public::serve(
        listener,
        h.platform.public_router(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let report = |path: String, token: Option<String>, tenant: &str| {
        let mut request = client
            .post(format!("http://{addr}{path}"))
            .json(&json!({"tenantId": tenant}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let none = report(path.into(), None, CONTOSO_ID).await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let forged = report(path.into(), Some(format!("{token}x")), CONTOSO_ID)
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // The same bots' token for the API server, and another service's bots' token.
    let api_token = h.platform.kube.service_account_token(ns, "main-bot");
    let wrong_audience = report(path.into(), Some(api_token), CONTOSO_ID)
        .await
        .unwrap();
    assert_eq!(wrong_audience.status(), StatusCode::UNAUTHORIZED);
    let other_bots = h
        .platform
        .kube
        .audience_token(ns, "other-bot", "recording-operator");
    let other_token = report(path.into(), Some(other_bots), CONTOSO_ID)
        .await
        .unwrap();
    assert_eq!(other_token.status(), StatusCode::UNAUTHORIZED);
    let other_service = report(
        "/bots/v1/namespaces/tenant-contoso/recordingservices/other/policy-invite".into(),
        Some(token.clone()),
        CONTOSO_ID,
    )
    .await
    .unwrap();
    assert_eq!(
        other_service.status(),
        StatusCode::UNAUTHORIZED,
        "a token opens its own service only"
    );
    let s = services.get("main").await.unwrap();
    assert_eq!(
        condition(&s, "RecordingPolicy").unwrap().0,
        "False",
        "refused reports change nothing"
    );
    assert!(s.status.unwrap().first_policy_invite.is_none());

    let wrong_tenant = report(path.into(), Some(token.clone()), FABRIKAM_ID)
        .await
        .unwrap();
    assert_eq!(wrong_tenant.status(), StatusCode::BAD_REQUEST);
    let accepted = report(path.into(), Some(token.clone()), &CONTOSO_ID.to_uppercase())
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);

    let recording = until(T, || async {
        let s = services.get("main").await.ok()?;
        (condition(&s, "RecordingPolicy")?.0 == "True").then_some(s)
    })
    .await;
    let policy = condition(&recording, "RecordingPolicy").unwrap();
    assert_eq!(policy.1, "PolicyInviteReceived");
    let ready = condition(&recording, "Ready").unwrap();
    assert_eq!(ready.0, "True");
    assert!(ready.2.starts_with("the tenant is ready"), "{}", ready.2);

    // Rate-limited per service: the burst is used up.
    let mut limited = false;
    for _ in 0..5 {
        if report(path.into(), Some(token.clone()), CONTOSO_ID)
            .await
            .unwrap()
            .status()
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited = true;
        }
    }
    assert!(limited, "reports beyond the burst are refused with 429");

    // The token appears in no status, Event or ConfigMap.
    let status = serde_json::to_string(&recording.status).unwrap();
    assert!(!status.contains(&token));
    let events: Api<Event> = Api::namespaced(h.client(), ns);
    for e in events.list(&ListParams::default()).await.unwrap() {
        assert!(!e.note.unwrap_or_default().contains(&token));
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client(), ns);
    for cm in config_maps.list(&ListParams::default()).await.unwrap() {
        assert!(!serde_json::to_string(&cm.data).unwrap().contains(&token));
    }

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    h.stop().await;
}
