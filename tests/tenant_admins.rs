//! The customer's default administrators, looked up in their directory once the `directory`
//! consent is granted: missing and blocked ones show in `status.administrators` and the
//! alarm while the tenant stays OK; fixing them in the directory clears it at the next
//! check; a tenant none of whose administrators exists is not Ready.

mod common;

use std::time::Duration;

use common::{ready_status, Harness};
use recording_operator::crd::{AdministratorState, Health, Tenant};
use recording_operator::demo::PlatformOptions;

const T: Duration = Duration::from_secs(30);
const CONTOSO: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

fn tenant_yaml(name: &str, admins: &[&str]) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: {name}
spec:
  customerName: {name}-customer
  domain: contoso.onmicrosoft.com
  shortName: {name}
  contactEmails: [ops@example.com]
  adminUpns: [{}]
  license: Essentials
  includedUsers: 10
  storage:
    location: westeurope
"#,
        admins.join(", ")
    )
}

fn states(t: &Tenant) -> Vec<(String, AdministratorState)> {
    t.status
        .as_ref()
        .map(|s| {
            s.administrators
                .iter()
                .map(|a| (a.upn.clone(), a.state))
                .collect()
        })
        .unwrap_or_default()
}

/// Granted consents are checked again every few seconds here, so a fix in the directory shows
/// quickly.
async fn harness() -> Harness {
    let mut options = PlatformOptions::default();
    options.polling.granted_interval = Duration::from_secs(3);
    Harness::start_with(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_blocked_administrators_show_in_status_and_alarm_until_fixed() {
    let h = harness().await;
    let m365 = &h.platform.m365;
    m365.set_user_enabled(CONTOSO, "globaladmin@contoso.onmicrosoft.com", false);
    h.apply(&tenant_yaml(
        "contoso",
        &[
            "admin@contoso.onmicrosoft.com",
            "ghost@contoso.onmicrosoft.com",
            "globaladmin@contoso.onmicrosoft.com",
        ],
    ))
    .await;

    // Before the directory consent nobody is looked up.
    let t = h.wait_tenant("contoso", T, |t| states(t).len() == 3).await;
    assert!(
        states(&t)
            .iter()
            .all(|(_, s)| *s == AdministratorState::NotChecked),
        "{:?}",
        states(&t)
    );

    h.accept_consents("contoso").await;
    let t = h
        .wait_tenant("contoso", T, |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.health == Some(Health::Ok))
                && states(t)
                    .iter()
                    .all(|(_, s)| *s != AdministratorState::NotChecked)
        })
        .await;
    assert_eq!(
        states(&t),
        vec![
            (
                "admin@contoso.onmicrosoft.com".into(),
                AdministratorState::Verified
            ),
            (
                "ghost@contoso.onmicrosoft.com".into(),
                AdministratorState::Missing
            ),
            (
                "globaladmin@contoso.onmicrosoft.com".into(),
                AdministratorState::Disabled
            ),
        ]
    );
    let status = t.status.unwrap();
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("True"));
    let alarm = status.alarm.expect("an alarm for people");
    assert!(alarm.contains("ghost@contoso.onmicrosoft.com"), "{alarm}");
    assert!(
        alarm.contains("globaladmin@contoso.onmicrosoft.com"),
        "{alarm}"
    );
    assert!(!alarm.contains("admin@contoso.onmicrosoft.com,"), "{alarm}");

    // The customer creates the user and unblocks the other: the next check clears the alarm.
    m365.add_user(CONTOSO, "ghost@contoso.onmicrosoft.com", "pw");
    m365.set_user_enabled(CONTOSO, "globaladmin@contoso.onmicrosoft.com", true);
    let t = h
        .wait_tenant("contoso", T, |t| {
            states(t)
                .iter()
                .all(|(_, s)| *s == AdministratorState::Verified)
        })
        .await;
    let status = t.status.unwrap();
    assert_eq!(status.alarm, None);
    assert_eq!(status.health, Some(Health::Ok));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_none_of_whose_administrators_exists_is_not_ready() {
    let h = harness().await;
    h.apply(&tenant_yaml("nobody", &["ghost@contoso.onmicrosoft.com"]))
        .await;
    h.accept_consents("nobody").await;
    let t = h.wait_ready_reason("nobody", T, "NoAdministrator").await;
    let status = t.status.unwrap();
    assert_eq!(status.health, Some(Health::Warning));
    assert!(status
        .alarm
        .unwrap()
        .contains("not found in the customer's directory: ghost@contoso.onmicrosoft.com"));
    h.stop().await;
}

#[tokio::test]
async fn administrators_ride_in_the_consent_batch_and_cost_no_request_of_their_own() {
    use common::consent_world::{self as cw, assert_all_granted};
    use recording_operator::graph::admins::AdminState;

    let w = cw::world_with(cw::seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
        config.polling.granted_interval = Duration::from_secs(600);
    })
    .await;
    let domain = "contoso.example";
    w.sim.add_user(cw::CONTOSO, &format!("ada@{domain}"), "pw");
    let mut specs = w.specs(true);
    for spec in specs.iter_mut().filter(|s| s.key == "directory") {
        spec.administrators = vec![format!("ada@{domain}"), format!("bob@{domain}")];
    }
    w.grant_all(cw::CONTOSO, &specs);
    let first = w.checker.check(cw::CONTOSO, &specs).await;
    assert_all_granted(&first);
    let found: Vec<AdminState> = first.administrators.iter().map(|a| a.state).collect();
    assert_eq!(found, vec![AdminState::Verified, AdminState::Missing]);

    // A steady-state poll is still one $batch: the administrators are items in it.
    w.sim.reset_counts();
    let check = w.checker.check_now(cw::CONTOSO, &specs).await;
    let counts = w.sim.counts().tenant(cw::CONTOSO);
    assert_eq!(counts.graph_batch, 1);
    assert_eq!(counts.graph_get, 0);
    assert_eq!(check.administrators.len(), 2);
}
