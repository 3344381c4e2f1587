//! The public listener as the Internet sees it: the consent callback believes only a `state`
//! the operator signed (anything else gets the one refusal and no API request), re-checks a
//! grant at most once per interval, and a flood of callbacks from one address is held to its
//! rate while the probes and other sources are answered.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use recording_operator::consent_link;
use recording_operator::crd::ConsentGrant;
use recording_operator::http::public::{self, Limits, PublicState, REFUSAL_BODY};
use recording_operator::http::{self, HttpState};
use recording_operator::links::SigningKeys;
use recording_operator::metrics::Metrics;

/// Namespace `tenant-contoso` with the ConsentGrant `recording`.
async fn grant(client: kube::Client) {
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "tenant-contoso"}}))
            .unwrap();
    kube::Api::all(client.clone())
        .create(&Default::default(), &namespace)
        .await
        .unwrap();
    let grant: ConsentGrant = serde_json::from_value(serde_json::json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
        "metadata": {"name": "recording", "namespace": "tenant-contoso"},
        "spec": {"tenantRef": "contoso", "consent": "recording",
                 "appId": "11111111-1111-4111-8111-111111111111"}
    }))
    .unwrap();
    kube::Api::namespaced(client, "tenant-contoso")
        .create(&Default::default(), &grant)
        .await
        .unwrap();
}

/// The simulators (no controllers: every request to the API server comes from the listener)
/// with one ConsentGrant, and the public listener on a free port with `limits`; its base URL.
async fn listener(limits: Limits) -> (Harness, String, Arc<SigningKeys>) {
    let h = Harness::start_simulators().await;
    grant(h.client()).await;
    let links = h
        .platform
        .links()
        .expect("the demo configures Quick Start links");
    let keys = links.keys().await.unwrap();
    let router = public::router_with(
        PublicState {
            client: h.client(),
            config: Arc::new(h.platform.config.clone()),
            links: Some(links),
            signin: None,
        },
        &limits,
    );
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", socket.local_addr().unwrap());
    tokio::spawn(public::serve_with(
        socket,
        router,
        limits.max_connections,
        std::future::pending(),
    ));
    (h, base, keys)
}

fn callback(base: &str, state: &str) -> String {
    let mut url = url::Url::parse(&format!("{base}/consent/callback")).unwrap();
    url.query_pairs_mut()
        .append_pair("admin_consent", "True")
        .append_pair("tenant", "4a7c1d2e-0000-4000-8000-00000000c0de")
        .append_pair("state", state);
    url.into()
}

fn in_an_hour() -> Timestamp {
    Timestamp::now() + Duration::from_secs(3600)
}

fn patches(h: &Harness) -> u64 {
    counts(h)
        .get(&("patch".to_owned(), "consentgrants".to_owned()))
        .copied()
        .unwrap_or(0)
}

fn counts(h: &Harness) -> BTreeMap<(String, String), u64> {
    h.platform.kube.request_counts()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_state_the_operator_signed_reaches_the_api_server() {
    let (h, base, keys) = listener(Limits::default()).await;
    let http = no_redirects();
    let other = SigningKeys::parse(&"z".repeat(40), "another key").unwrap();
    let good = consent_link::sign(&keys, "tenant-contoso", "recording", None, in_an_hour());
    let (head, tag) = good.rsplit_once('.').unwrap();
    let past = Timestamp::now() - Duration::from_secs(1);
    let bad_states = [
        // Today's guessable `<namespace>/<grant>`, and one that walks out of its path.
        "tenant-contoso/recording".to_owned(),
        "tenant-contoso/..%2F..%2Fsecrets".to_owned(),
        consent_link::sign(&other, "tenant-contoso", "recording", None, in_an_hour()),
        consent_link::sign(&keys, "tenant-contoso", "recording", None, past),
        consent_link::sign(&keys, "tenant-fabrikam", "recording", None, in_an_hour())
            .rsplit_once('.')
            .map(|(h, _)| format!("{h}.{tag}"))
            .unwrap(),
        format!("{head}.{}", &tag[..tag.len() - 2]),
        "x".repeat(1500),
    ];
    let before = counts(&h);
    let mut answers = Vec::new();
    for state in &bad_states {
        let r = http.get(callback(&base, state)).send().await.unwrap();
        answers.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    let r = http
        .get(format!("{base}/consent/callback?admin_consent=True"))
        .send()
        .await
        .unwrap();
    answers.push((r.status().as_u16(), r.text().await.unwrap()));
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(
            (*status, body.as_str()),
            (404, REFUSAL_BODY),
            "answer {i} is the one refusal"
        );
    }
    assert_eq!(counts(&h), before, "no request reached the API server");

    // The signed state: one PATCH stamps the re-check; again at once, no second PATCH.
    let r = http.get(callback(&base, &good)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Thank you"));
    assert_eq!(patches(&h), before_patches(&before) + 1);
    let grant: ConsentGrant = kube::Api::namespaced(h.client(), "tenant-contoso")
        .get("recording")
        .await
        .unwrap();
    assert!(grant
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(recording_operator::crd::RECHECK_ANNOTATION));
    let r = http.get(callback(&base, &good)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        patches(&h),
        before_patches(&before) + 1,
        "within the interval"
    );

    // A state carrying the Quick Start page it was sent from: back to that page.
    let page = keys.sign("contoso", "uid", in_an_hour());
    let from_page = consent_link::sign(
        &keys,
        "tenant-contoso",
        "recording",
        Some(&page),
        in_an_hour(),
    );
    let r = http.get(callback(&base, &from_page)).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let public_url = h.platform.config.public_url.clone().unwrap();
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{public_url}/quickstart/{page}")
    );
    // Every answer carries the listener's headers.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    h.stop().await;
}

fn before_patches(before: &BTreeMap<(String, String), u64>) -> u64 {
    before
        .get(&("patch".to_owned(), "consentgrants".to_owned()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_callbacks_is_held_to_its_rate_and_the_probes_answer() {
    let limits = Limits {
        per_source_per_second: NonZeroU32::new(50).unwrap(),
        per_source_burst: NonZeroU32::new(50).unwrap(),
        max_in_flight: 32,
        max_connections: 256,
        recheck_interval: Duration::from_secs(2),
    };
    let (h, base, keys) = listener(limits.clone()).await;
    let state = consent_link::sign(&keys, "tenant-contoso", "recording", None, in_an_hour());
    let url = callback(&base, &state);

    // The probes, on their own listener as in the operator.
    let probes = HttpState::new(Metrics::default());
    let probe_socket = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let healthz = format!("http://{}/healthz", probe_socket.local_addr().unwrap());
    tokio::spawn(http::serve_on(
        probe_socket,
        http::router(probes),
        std::future::pending(),
    ));
    // Another source address on loopback, not part of the flood.
    let bystander = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();

    let patches_before = patches(&h);
    let logs_before = common::captured_logs().matches("re-checking now").count();
    let started = Instant::now();
    let flooder = no_redirects();
    let flood = futures::stream::iter(0..10_000)
        .map(|_| {
            let (flooder, url) = (&flooder, &url);
            async move {
                match flooder.get(url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<u16>>();
    let watch = async {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let probe = reqwest::get(&healthz).await.map(|r| r.status().as_u16());
            let other = bystander
                .get(format!("{base}/consent/callback?state=nothing"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            seen.push((probe.ok(), other.ok()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    let (statuses, seen) = tokio::join!(flood, watch);
    let elapsed = started.elapsed();

    let mut by_status = BTreeMap::<u16, usize>::new();
    for s in &statuses {
        *by_status.entry(*s).or_default() += 1;
    }
    let patched = patches(&h) - patches_before;
    println!(
        "10,000 callbacks in {elapsed:.2?}: answers {by_status:?}; {patched} PATCHes; probes and another source: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| *s == (Some(200), Some(404))),
        "the probe and another source are answered throughout: {seen:?}"
    );
    let admitted = by_status.get(&200).copied().unwrap_or(0);
    assert!(
        by_status.get(&429).copied().unwrap_or(0) > 5_000,
        "{by_status:?}"
    );
    // At most the burst plus the rate over the flood's duration got through …
    let allowed = 50.0 + 50.0 * elapsed.as_secs_f64() + 1.0;
    assert!((admitted as f64) <= allowed, "{admitted} > {allowed}");
    // … and of those, one PATCH per re-check interval.
    let intervals = (elapsed.as_secs_f64() / 2.0).ceil() as u64 + 1;
    assert!(
        patched >= 1 && patched <= intervals,
        "{patched} PATCHes in {elapsed:?}"
    );
    // The log got a few lines, not one per request.
    let logged = common::captured_logs().matches("re-checking now").count() - logs_before;
    assert!(logged <= 10, "{logged} log lines");
    h.stop().await;
}
