//! `/metrics` content: the named series with the values the operator's work produced.

use std::collections::BTreeMap;
use std::sync::Arc;

use recording_operator::crd::{ConsentGrant, RecordingService, Tenant};
use recording_operator::graph::{Counters, GraphOutcome, TokenOutcome};
use recording_operator::metrics::{ConsentFigures, Metrics};
use serde_json::json;

/// The value of the sample line `series` (name and labels exactly as encoded).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a sample value is a number"))
}

#[test]
fn reconcile_guards_count_time_and_label_errors() {
    let metrics = Metrics::default();
    for _ in 0..3 {
        let _guard = metrics.reconcile_started("tenant");
    }
    {
        let guard = metrics.reconcile_started("consentgrant");
        guard.error("graph");
    }
    {
        let guard = metrics.reconcile_started("tenant");
        guard.error("kube");
    }

    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconciles_total{controller="tenant"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconciles_total{controller="consentgrant"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconcile_errors_total{controller="consentgrant",reason="graph"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconcile_errors_total{controller="tenant",reason="kube"}"#
        ),
        Some(1.0)
    );
    // The histogram saw every reconcile; each took far less than its largest bucket.
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconcile_duration_seconds_count{controller="tenant"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_reconcile_duration_seconds_bucket{le="30.0",controller="tenant"}"#
        ),
        Some(4.0),
        "{text}"
    );
    let sum = sample(
        &text,
        r#"recording_operator_reconcile_duration_seconds_sum{controller="tenant"}"#,
    )
    .unwrap();
    assert!((0.0..30.0).contains(&sum), "{sum}");
    assert!(text.contains("# TYPE recording_operator_reconcile_duration_seconds histogram"));
    assert!(text.contains("# UNIT recording_operator_reconcile_duration_seconds seconds"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn graph_and_token_requests_are_read_from_the_clients_counters_at_scrape_time() {
    let counters = Arc::new(Counters::default());
    let metrics = Metrics::new(counters.clone());
    let before = metrics.encode();
    assert_eq!(
        sample(
            &before,
            r#"recording_operator_graph_requests_total{outcome="success"}"#
        ),
        Some(0.0),
        "every outcome is exposed from the start: {before}"
    );

    counters.graph_request(GraphOutcome::Success);
    counters.graph_request(GraphOutcome::Success);
    counters.graph_request(GraphOutcome::Throttled);
    counters.token_request(TokenOutcome::NotConsented);

    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_graph_requests_total{outcome="success"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_graph_requests_total{outcome="throttled"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_token_requests_total{outcome="not_consented"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"recording_operator_token_requests_total{outcome="invalid_secret"}"#
        ),
        Some(0.0)
    );
    assert!(text.contains("# TYPE recording_operator_graph_requests counter"));
    // The counters handed out are the ones exposed.
    metrics
        .graph_counters()
        .graph_request(GraphOutcome::NetworkError);
    assert_eq!(
        sample(
            &metrics.encode(),
            r#"recording_operator_graph_requests_total{outcome="network_error"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn consent_and_tenant_gauges_follow_the_latest_counts() {
    let metrics = Metrics::default();
    let counts = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    metrics.set_consents_by_state(&counts(&[("Pending", 5), ("Granted", 1)]));
    metrics.set_tenants_by_health(&counts(&[("Warning", 2)]));
    let text = metrics.encode();
    assert_eq!(
        sample(&text, r#"recording_operator_consents{state="Pending"}"#),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, r#"recording_operator_consents{state="Granted"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"recording_operator_tenants{health="Warning"}"#),
        Some(2.0)
    );

    // Every pending consent granted: Pending drops to 0 instead of keeping a stale 5.
    metrics.set_consents_by_state(&counts(&[("Granted", 6)]));
    metrics.set_tenants_by_health(&counts(&[("OK", 2)]));
    let text = metrics.encode();
    assert_eq!(
        sample(&text, r#"recording_operator_consents{state="Pending"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"recording_operator_consents{state="Granted"}"#),
        Some(6.0)
    );
    assert_eq!(
        sample(&text, r#"recording_operator_tenants{health="Warning"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"recording_operator_tenants{health="OK"}"#),
        Some(2.0)
    );
}

#[test]
fn leader_gauge() {
    let metrics = Metrics::default();
    assert_eq!(
        sample(&metrics.encode(), "recording_operator_leader"),
        Some(0.0)
    );
    metrics.set_leader(true);
    assert_eq!(
        sample(&metrics.encode(), "recording_operator_leader"),
        Some(1.0)
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn heap_in_use_follows_what_the_process_holds() {
    const HELD: f64 = (64 << 20) as f64;
    let metrics = Metrics::default();
    let heap = || sample(&metrics.encode(), "recording_operator_heap_in_use_bytes").unwrap();
    let before = heap();
    let held = std::hint::black_box(vec![1u8; 64 << 20]);
    let during = heap();
    drop(held);
    let after = heap();
    // Other tests of this binary allocate meanwhile, a few MiB at most.
    assert!(during - before > HELD * 0.9, "{before} -> {during}");
    assert!(during - after > HELD * 0.9, "{during} -> {after}");
}

#[test]
fn docs_list_exactly_the_exposed_series() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `recording_operator_"))
        .map(|rest| format!("recording_operator_{}", &rest[..rest.find('`').unwrap()]))
        .collect();
    // Every family with a series (a family shows once it has one).
    let metrics = Metrics::default();
    metrics.reconcile_started("tenant").error("kube");
    let one = |key: &str| BTreeMap::from([(key.to_owned(), 1)]);
    metrics.set_consents_by_state(&one("Pending"));
    metrics.set_tenants_by_health(&one("Warning"));
    onboard_contoso(&metrics);
    metrics.notification_sent("OnboardingStarted");
    metrics.notification_failed("TenantLive", "auth");
    metrics.retention_swept("completed", &[("deleted", 1)], 1);
    let text = metrics.encode();
    assert!(text.contains(
        "recording_operator_notifications_failed_total{kind=\"TenantLive\",reason=\"auth\"} 1"
    ));
    let exposed: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_owned(),
            }
        })
        .collect();
    assert_eq!(documented, exposed);
}

/// What the controllers report while contoso onboards: its grant of `recording` granted ten
/// minutes after creation, the Tenant Ready an hour after, fabrikam's `recording` revoked, a
/// service's app registration whose secret ends in 20 days, two Quick Start requests.
fn onboard_contoso(metrics: &Metrics) {
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "contoso", "uid": "u-contoso", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"customerName": "Contoso", "domain": "contoso.onmicrosoft.com", "shortName": "contoso",
                 "contactEmails": ["ops@contoso.com"], "adminUpns": ["admin@contoso.onmicrosoft.com"],
                 "license": "Pro", "includedUsers": 10, "storage": {"location": "westeurope"}},
        "status": {"health": "Warning", "conditions": [
            {"type": "Ready", "status": "False", "reason": "ConsentsPending", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:02Z"}]}
    }))
    .unwrap();
    let mut ready = tenant.status.clone().unwrap();
    ready.health = Some(recording_operator::crd::Health::Ok);
    ready.conditions[0].status = "True".into();
    ready.conditions[0].last_transition_time.0 = "2026-01-01T01:00:00Z".parse().unwrap();
    ready.first_ready_at = Some(ready.conditions[0].last_transition_time.clone());
    metrics.tenant_status("contoso", tenant.status.as_ref().unwrap());
    metrics.tenant_status_written(&tenant, tenant.status.as_ref(), &ready);
    // The same transition seen again (a watch that lags): not a second observation.
    metrics.tenant_status_written(&tenant, tenant.status.as_ref(), &ready);

    let grant = |tenant: &str, state: &str| -> ConsentGrant {
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
            "metadata": {"name": "recording", "namespace": format!("tenant-{tenant}"),
                         "uid": format!("g-{tenant}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tenantRef": tenant, "consent": "recording",
                     "appId": "5b1f0a2c-0000-4000-8000-0000000000aa"},
            "status": {"state": state}
        }))
        .unwrap()
    };
    let pending = grant("contoso", "Pending");
    let mut granted = pending.status.clone().unwrap();
    granted.state = Some(recording_operator::crd::ConsentState::Granted);
    granted.granted_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:10:00Z".parse().unwrap(),
    ));
    metrics.consent_status_written(&pending, pending.status.as_ref(), &granted);
    let mut figures = ConsentFigures::default();
    figures.add(
        "fabrikam",
        "recording",
        Some(recording_operator::crd::ConsentState::Revoked),
    );
    metrics.set_consent_figures(&figures);

    let service: RecordingService = serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
        "metadata": {"name": "main", "namespace": "tenant-contoso"},
        "spec": {"tenantRef": "contoso", "shortName": "contoso-main", "licensedUsers": 5}
    }))
    .unwrap();
    let end =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(480);
    metrics.client_secret(
        &service,
        Some(("6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7", end)),
    );
    for _ in 0..2 {
        metrics.public_request("/quickstart/{token}", axum::http::StatusCode::OK);
    }
}

#[test]
fn the_funnel_and_the_per_tenant_series_show_what_the_controllers_reported() {
    let metrics = Metrics::default();
    onboard_contoso(&metrics);
    let text = metrics.encode();
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(
        value("recording_operator_tenant_time_to_ready_seconds_count{license=\"Pro\"}"),
        1.0
    );
    assert_eq!(
        value("recording_operator_tenant_time_to_ready_seconds_sum{license=\"Pro\"}"),
        3600.0
    );
    assert_eq!(
        value("recording_operator_consent_time_to_granted_seconds_sum{consent=\"recording\"}"),
        600.0
    );
    assert_eq!(
        value("recording_operator_tenant_warning{tenant=\"contoso\"}"),
        1.0
    );
    assert_eq!(
        value("recording_operator_tenant_storage_ready{tenant=\"contoso\"}"),
        1.0
    );
    assert_eq!(
        value("recording_operator_consent_revoked{tenant=\"fabrikam\",consent=\"recording\"}"),
        1.0
    );
    assert_eq!(
        value("recording_operator_consent_waiting_tenants{consent=\"recording\"}"),
        1.0
    );
    let days = value(
        "recording_operator_client_secret_expiry_days{kind=\"app_registration\",owner=\"tenant-contoso/main\",app_id=\"6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7\"}",
    );
    assert!((19.99..=20.0).contains(&days), "{days}");

    // Gone objects lose their series; a revoked grant granted again is no longer named.
    metrics.retain_tenants(&std::collections::HashSet::new());
    metrics.set_consent_figures(&ConsentFigures::default());
    metrics.forget_client_secret("tenant-contoso", "main");
    let text = metrics.encode();
    for gone in [
        "tenant=\"contoso\"",
        "tenant=\"fabrikam\"",
        "owner=\"tenant-contoso/main\"",
    ] {
        assert!(!text.contains(gone), "{gone} still in\n{text}");
    }
}
