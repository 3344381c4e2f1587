//! Onboarding end to end on the simulators: apply a Tenant, the customer's admin accepts each
//! consent link, the Tenant turns OK / Ready; revocation, partial grants, throttling and a bad
//! client secret as a platform engineer would see them.

mod common;

use std::time::Duration;

use common::{ready_status, Harness};
use recording_operator::crd::{ConsentState, Health};

const T: Duration = Duration::from_secs(30);

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
  includedUsers: 100
  storage:
    location: westeurope
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pro_tenant_goes_from_warning_to_ok_as_the_admin_consents() {
    let h = Harness::start().await;
    h.apply(&tenant_yaml("fabrikam", "fabrikam.onmicrosoft.com", "Pro"))
        .await;

    // Warning, with every mandatory consent pending and a link for each.
    let tenant = h
        .wait_tenant("fabrikam", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.consents.len() == 5 && s.consents.iter().all(|c| c.consent_url.is_some())
            })
        })
        .await;
    let status = tenant.status.unwrap();
    assert_eq!(status.health, Some(Health::Warning));
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("False"));
    assert_eq!(status.license_type.as_deref(), Some("Audio & Redundancy"));
    assert_eq!(status.advanced_storage, Some(true));
    assert_eq!(
        status.tenant_id.as_deref(),
        Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b"),
        "resolved from the domain"
    );
    let alarm = status.alarm.unwrap();
    for key in [
        "login",
        "directory",
        "recording",
        "redundantRecording",
        "instantMessages",
    ] {
        assert!(alarm.contains(key), "alarm names {key}: {alarm}");
    }
    let grants = h.grants("fabrikam").await;
    assert_eq!(grants.len(), 5);
    for g in &grants {
        let url = g
            .status
            .as_ref()
            .and_then(|s| s.consent_url.clone())
            .expect("consent URL");
        assert!(
            url.contains("/3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b/v2.0/adminconsent?"),
            "{url}"
        );
        assert!(
            url.contains(&format!("client_id={}", g.spec.app_id)),
            "{url}"
        );
        assert!(url.contains("scope="), "{url}");
    }

    // The customer's Global admin opens each link.
    let accepted = h
        .platform
        .accept_all_consents("fabrikam", &h.browser)
        .await
        .unwrap();
    assert_eq!(accepted, 5);

    let tenant = h
        .wait_tenant("fabrikam", T, |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.health == Some(Health::Ok))
        })
        .await;
    let status = tenant.status.unwrap();
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("True"));
    assert!(
        status
            .consents
            .iter()
            .all(|c| c.state == ConsentState::Granted),
        "{:?}",
        status.consents
    );
    assert_eq!(status.alarm, None);
    assert_eq!(status.observed_generation, tenant.metadata.generation);
    for g in h.grants("fabrikam").await {
        let s = g.status.unwrap();
        assert_eq!(s.state, Some(ConsentState::Granted), "{}", g.spec.consent);
        assert!(s.granted_at.is_some() && s.last_checked_at.is_some() && s.next_check_at.is_some());
        assert!(s.missing_permissions.is_empty());
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essentials_tenant_needs_four_consents() {
    let h = Harness::start().await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    let tenant = h
        .wait_tenant("contoso", T, |t| {
            t.status.as_ref().is_some_and(|s| s.consents.len() == 4)
        })
        .await;
    let status = tenant.status.unwrap();
    assert_eq!(status.license_type.as_deref(), Some("Audio Recording"));
    assert!(!status
        .consents
        .iter()
        .any(|c| c.name == "redundantRecording"));
    h.platform
        .accept_all_consents("contoso", &h.browser)
        .await
        .unwrap();
    h.wait_tenant("contoso", T, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.health == Some(Health::Ok))
    })
    .await;
    h.stop().await;
}
