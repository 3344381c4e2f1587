//! Rules across objects (SPEC §8) end to end on the simulators, driven with the real `kubectl`:
//! a Tenant repeating an older Tenant's domain or Entra tenant id is held back with a
//! `Conflict` condition naming the older one, provisions nothing, and proceeds by itself once
//! the older one is deleted; a service repeating a sibling's short name likewise; the service
//! that tips the licensed users over the Tenant's included users is not Ready, with the numbers,
//! and the Tenant shows its users in use (`kubectl get tn -o wide`); retention variants are
//! accepted or refused by the API server and reach the bots as the effective retention.

mod common;

use std::time::Duration;

use common::{wait_for, Harness, Kubectl};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::Api;
use recording_operator::crd::{RecordingService, Tenant};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const CONTOSO_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

/// An Essentials Tenant in westeurope with `included` licensed users; `extra` adds spec lines.
fn tenant_yaml(name: &str, domain: &str, included: i32, extra: &str) -> String {
    common::tenant_yaml(name, domain, "Essentials", "westeurope", extra).replace(
        "includedUsers: 10\n",
        &format!("includedUsers: {included}\n"),
    )
}

fn service_yaml(name: &str, tenant: &str, short_name: &str, users: i32) -> String {
    common::service_yaml(name, tenant, short_name, users, "")
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn tenant_condition(t: &Tenant, type_: &str) -> Option<(String, String, String)> {
    condition(&t.status.as_ref()?.conditions, type_)
}

fn service_condition(s: &RecordingService, type_: &str) -> Option<(String, String, String)> {
    condition(&s.status.as_ref()?.conditions, type_)
}

async fn namespace_exists(h: &Harness, name: &str) -> bool {
    let api: Api<Namespace> = Api::all(h.client());
    api.get_opt(name).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_tenant_repeating_a_domain_or_tenant_id_waits_until_the_older_goes() {
    let h = Harness::start().await;
    let kubectl = Kubectl::new(&h, "tenants");
    kubectl.apply(&tenant_yaml("contoso", "contoso.onmicrosoft.com", 100, ""));
    // The older one resolves its Entra tenant id from the domain.
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().and_then(|s| s.tenant_id.as_deref()) == Some(CONTOSO_ID)
    })
    .await;
    // Created a second later: the same domain in capitals.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kubectl.apply(&tenant_yaml(
        "contoso-again",
        "CONTOSO.onmicrosoft.com",
        100,
        "",
    ));
    // And one that names the same Entra tenant explicitly, under another domain.
    kubectl.apply(&tenant_yaml(
        "contoso-eu",
        "contoso-eu.example.com",
        100,
        &format!("  tenantId: {CONTOSO_ID}\n"),
    ));

    let again = h
        .wait_tenant("contoso-again", T, |t| {
            tenant_condition(t, "Conflict").is_some()
        })
        .await;
    let (status, reason, message) = tenant_condition(&again, "Conflict").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "AlreadyInUse"));
    assert_eq!(
        message,
        r#"spec.domain "CONTOSO.onmicrosoft.com" is already used by Tenant "contoso""#
    );
    assert_eq!(tenant_condition(&again, "Ready").unwrap().1, "Conflict");
    let eu = h
        .wait_tenant("contoso-eu", T, |t| {
            tenant_condition(t, "Conflict").is_some()
        })
        .await;
    assert_eq!(
        tenant_condition(&eu, "Conflict").unwrap().2,
        format!(r#"Entra tenant id "{CONTOSO_ID}" is already used by Tenant "contoso""#)
    );

    // Nothing provisioned for the newer ones; the older one goes on.
    assert!(!namespace_exists(&h, "tenant-contoso-again").await);
    assert!(!namespace_exists(&h, "tenant-contoso-eu").await);
    assert!(namespace_exists(&h, "tenant-contoso").await);
    let contoso = h.wait_tenant("contoso", T, |t| t.status.is_some()).await;
    assert_eq!(tenant_condition(&contoso, "Conflict"), None);

    // `kubectl get tn` shows it at a glance; the Event says the same.
    let table = kubectl.ok(&["get", "tn", "contoso-again", "-o", "wide"], None);
    assert!(table.contains("Warning"), "{table}");
    assert!(table.contains("Conflict: spec.domain"), "{table}");
    let events = wait_for(
        T,
        || async { Some(h.events("default", "Tenant", "contoso-again").await) },
        |events: &Vec<k8s_openapi::api::core::v1::Event>| {
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("Conflict"))
        },
        "a Conflict Event",
    )
    .await;
    let event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Conflict"))
        .unwrap();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(r#"Tenant "contoso""#),
        "{event:?}"
    );

    // The older one goes: the oldest of the others proceeds by itself, and the newest now
    // conflicts with it (same Entra tenant id once resolved).
    kubectl.ok(&["delete", "tn", "contoso", "--wait=true"], None);
    h.wait_tenant("contoso-again", T, |t| {
        tenant_condition(t, "Conflict").is_none()
            && t.status.as_ref().and_then(|s| s.tenant_id.as_deref()) == Some(CONTOSO_ID)
    })
    .await;
    assert!(namespace_exists(&h, "tenant-contoso-again").await);
    let eu = h
        .wait_tenant("contoso-eu", T, |t| {
            tenant_condition(t, "Conflict").is_some_and(|c| c.2.contains("contoso-again"))
        })
        .await;
    assert_eq!(
        tenant_condition(&eu, "Conflict").unwrap().2,
        format!(r#"Entra tenant id "{CONTOSO_ID}" is already used by Tenant "contoso-again""#)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_share_short_names_and_the_licence_oldest_first() {
    let h = Harness::start().await;
    let kubectl = Kubectl::new(&h, "services");
    let ns = "tenant-contoso";
    kubectl.apply(&tenant_yaml("contoso", "contoso.onmicrosoft.com", 100, ""));
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().and_then(|s| s.tenant_id.as_deref()) == Some(CONTOSO_ID)
    })
    .await;
    assert!(h.accept_consents("contoso").await > 0);

    kubectl.apply(&service_yaml("first", "contoso", "Rec-A", 60));
    h.wait_service(ns, "first", |s| {
        s.status.as_ref().is_some_and(|st| st.bots_ready.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kubectl.apply(&service_yaml("second", "contoso", "rec-a", 30));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kubectl.apply(&service_yaml("third", "contoso", "Rec-C", 50));

    let second = h
        .wait_service(ns, "second", |s| service_condition(s, "Conflict").is_some())
        .await;
    assert_eq!(
        service_condition(&second, "Conflict").unwrap(),
        (
            "True".into(),
            "AlreadyInUse".into(),
            r#"spec.shortName "rec-a" is already used by RecordingService "first""#.into()
        )
    );
    assert_eq!(service_condition(&second, "Ready").unwrap().1, "Conflict");
    // The duplicate counts for nothing; the third does not fit beside the first.
    let third = h
        .wait_service(ns, "third", |s| {
            service_condition(s, "Ready").is_some_and(|c| c.1 == "LicensedUsersExceeded")
        })
        .await;
    let (status, _, message) = service_condition(&third, "Ready").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.starts_with("licensedUsers 50 would bring the tenant's licensed users to 110 of 100 included (older services use 60)"),
        "{message}"
    );
    assert_eq!(common::bot_names(&h, ns).await, ["first-hue"]);
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().and_then(|s| s.users_in_use) == Some(60)
    })
    .await;
    let table = kubectl.ok(&["get", "tn", "contoso", "-o", "wide"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .map(str::trim)
        .collect();
    assert!(header.contains(&"USERS IN USE"), "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(row.contains(&"60"), "{table}");

    // The first goes: the second proceeds, and both it and the third fit (30 + 50 of 100).
    kubectl.ok(&["delete", "rsvc", "first", "-n", ns], None);
    h.wait_service(ns, "second", |s| {
        service_condition(s, "Conflict").is_none()
            && s.status.as_ref().is_some_and(|st| st.bots_ready.is_some())
    })
    .await;
    h.wait_service(ns, "third", |s| {
        s.status.as_ref().is_some_and(|st| st.bots_ready.is_some())
    })
    .await;
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().and_then(|s| s.users_in_use) == Some(80)
    })
    .await;

    // A smaller licence: the newest service is the one that no longer fits.
    kubectl.ok(
        &[
            "patch",
            "tn",
            "contoso",
            "--type=merge",
            "-p",
            r#"{"spec":{"includedUsers":70}}"#,
        ],
        None,
    );
    let third = h
        .wait_service(ns, "third", |s| {
            service_condition(s, "Ready").is_some_and(|c| c.1 == "LicensedUsersExceeded")
        })
        .await;
    assert!(
        service_condition(&third, "Ready")
            .unwrap()
            .2
            .contains("80 of 70 included"),
        "{third:?}"
    );
    let second = h.wait_service(ns, "second", |s| s.status.is_some()).await;
    assert_ne!(
        service_condition(&second, "Ready").unwrap().1,
        "LicensedUsersExceeded"
    );
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().and_then(|s| s.users_in_use) == Some(30)
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_variants_are_checked_by_the_api_server_and_reach_the_bots() {
    let h = Harness::start().await;
    let kubectl = Kubectl::new(&h, "retention");

    // Beyond 24 months only with `unlimited`.
    let (ok, _, err) = kubectl.run(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "toolong",
            "contoso.onmicrosoft.com",
            10,
            "  retention:\n    days: 1000\n",
        )),
    );
    assert!(!ok);
    assert!(
        err.contains(
            "retention.days must be at most 730 (24 months) unless retention.unlimited is true"
        ),
        "{err}"
    );

    // Each variant, stored as written (no schema default for `days`), and its effective
    // retention in the bots' configuration.
    let variants = [
        (
            "absent",
            "",
            Value::Null,
            serde_json::json!({"unlimited": false, "days": 365}),
        ),
        (
            "custom",
            "  retention:\n    unlimited: true\n    days: 1000\n",
            serde_json::json!(1000),
            serde_json::json!({"unlimited": false, "days": 1000}),
        ),
        (
            "forever",
            "  retention:\n    unlimited: true\n",
            Value::Null,
            serde_json::json!({"unlimited": true}),
        ),
    ];
    let ids = [
        "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d",
        "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b",
        "7a1c2e3f-4b5d-4c6e-8f70-9a1b2c3d4e5f",
    ];
    for ((name, extra, _, _), id) in variants.iter().zip(ids) {
        kubectl.apply(&tenant_yaml(
            name,
            &format!("{name}.example.com"),
            10,
            &format!("  tenantId: {id}\n{extra}"),
        ));
    }
    for (name, _, _, _) in &variants {
        wait_for(
            T,
            || async { Some(namespace_exists(&h, &format!("tenant-{name}")).await) },
            |exists: &bool| *exists,
            &format!("the namespace of {name}"),
        )
        .await;
        kubectl.apply(&service_yaml("main", name, "Rec", 5));
    }
    for (name, _, stored_days, effective) in variants {
        let stored: Value =
            serde_json::from_str(&kubectl.ok(&["get", "tn", name, "-o", "json"], None)).unwrap();
        assert_eq!(
            stored["spec"]["retention"]["days"], stored_days,
            "{name}: {stored}"
        );
        let api: Api<ConfigMap> = Api::namespaced(h.client(), &format!("tenant-{name}"));
        let config = wait_for(
            T,
            || async { api.get_opt("main-bot-config").await.ok().flatten() },
            |c: &ConfigMap| c.data.is_some(),
            &format!("the bot configuration of {name}"),
        )
        .await;
        let bot: Value =
            serde_json::from_str(config.data.unwrap().values().next().unwrap()).unwrap();
        assert_eq!(bot["retention"], effective, "{name}: {bot}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teams_app_in_the_customers_catalog_is_reported_where_the_directory_app_may_read_it() {
    const TEAMS_APP: &str = "f31b1263-ba99-435a-a679-911d24850d7c";
    let h = Harness::start_with(recording_operator::demo::PlatformOptions {
        teams_app_id: Some(TEAMS_APP.into()),
        ..Default::default()
    })
    .await;
    let kubectl = Kubectl::new(&h, "teams-catalog");
    common::onboard_applied(
        &h,
        &tenant_yaml("contoso", "contoso.onmicrosoft.com", 10, ""),
        "contoso",
        "Essentials",
        T,
    )
    .await;
    // The directory consent holds no AppCatalog.Read.All (optional): not checked, and why.
    let shown = |tenant: &Tenant| {
        tenant
            .status
            .as_ref()
            .and_then(|s| s.teams_app.as_ref())
            .map(|a| (a.state.clone(), a.message.clone()))
    };
    let tenant = h.wait_tenant("contoso", T, |t| shown(t).is_some()).await;
    let (state, message) = shown(&tenant).unwrap();
    assert_eq!(state, "NotChecked");
    assert!(message.contains("AppCatalog.Read.All"), "{message}");
    assert_eq!(
        tenant_condition(&tenant, "Ready").unwrap().0,
        "True",
        "the catalog never holds back Ready"
    );

    // The customer's Teams admin has the app submitted for review, and the customer grants the
    // directory application AppCatalog.Read.All. The next check with a token issued after the
    // grant (a refused token is replaced at once) reads the catalog.
    h.platform
        .m365
        .put_teams_app(CONTOSO_ID, TEAMS_APP, "Recording", "submitted");
    let directory_app = h.platform.config.consents["directory"].app_id.clone();
    h.platform
        .m365
        .grant_partial(CONTOSO_ID, &directory_app, &["AppCatalog.Read.All"], &[]);
    h.platform.m365.reject_tokens_on_graph(CONTOSO_ID, 1);
    let recheck = |at: &str| {
        kubectl.ok(
            &[
                "annotate",
                "tn",
                "contoso",
                "--overwrite",
                &format!("recording.m365.io/recheck-at={at}"),
            ],
            None,
        );
    };
    recheck("2026-12-07T13:00:00Z");
    let tenant = h
        .wait_tenant("contoso", T, |t| {
            shown(t).is_some_and(|(state, _)| state == "Submitted")
        })
        .await;
    assert!(
        shown(&tenant).unwrap().1.contains("approval"),
        "{:?}",
        shown(&tenant)
    );

    // Approved: published, as `kubectl get` shows.
    h.platform
        .m365
        .put_teams_app(CONTOSO_ID, TEAMS_APP, "Recording", "published");
    recheck("2026-12-07T13:05:00Z");
    h.wait_tenant("contoso", T, |t| {
        shown(t).is_some_and(|(state, _)| state == "Published")
    })
    .await;
    let state = kubectl.ok(
        &[
            "get",
            "tn",
            "contoso",
            "-o",
            "jsonpath={.status.teamsApp.state}",
        ],
        None,
    );
    assert_eq!(state.trim(), "Published");
    h.stop().await;
}
