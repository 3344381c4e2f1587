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

    let tenant = h.wait_health("fabrikam", T, Health::Ok).await;
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
        // Written whole, whatever shorter form the operator's cache keeps: every required
        // permission, the full consent URL (the Tenant's line shows the same one), and each
        // condition's message.
        let required: Vec<String> = g
            .spec
            .application_permissions
            .iter()
            .chain(&g.spec.delegated_scopes)
            .cloned()
            .collect();
        assert_eq!(s.granted_permissions, required, "{}", g.spec.consent);
        let url = s.consent_url.clone().expect("consent URL");
        assert!(url.contains("/v2.0/adminconsent?"), "{url}");
        let line = status
            .consents
            .iter()
            .find(|c| c.name == g.spec.consent)
            .expect("the Tenant's line of the consent");
        assert_eq!(line.consent_url.as_deref(), Some(url.as_str()));
        assert!(
            !s.conditions.is_empty() && s.conditions.iter().all(|c| !c.message.is_empty()),
            "{:?}",
            s.conditions
        );
    }

    // What `kubectl describe` shows: the Tenant's Warning naming the consents to grant, then
    // Ready; each grant's change from Pending to Granted.
    let tenant_events = h.events("default", "Tenant", "fabrikam").await;
    let warning = tenant_events
        .iter()
        .find(|e| e.type_.as_deref() == Some("Warning"))
        .expect("a Warning Event on the Tenant");
    assert_eq!(warning.reason.as_deref(), Some("ConsentsMissing"));
    let note = warning.message.as_deref().unwrap();
    assert!(
        note.starts_with("The customer's Global admin must grant consent for ")
            && note.contains("login (recording-auth)")
            && note.contains("redundantRecording (recording-hue-paired)"),
        "{note}"
    );
    assert!(
        tenant_events
            .iter()
            .any(|e| e.type_.as_deref() == Some("Normal") && e.reason.as_deref() == Some("Ready")),
        "{tenant_events:?}"
    );
    assert!(
        !tenant_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("CheckingConsents")),
        "waiting for the first checks is no Event: {tenant_events:?}"
    );
    let granted = h
        .events("tenant-fabrikam", "ConsentGrant", "recording")
        .await;
    assert_eq!(
        granted
            .iter()
            .filter_map(|e| e.reason.as_deref())
            .collect::<Vec<_>>(),
        vec!["ConsentGranted"],
        "{granted:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_granted_before_onboarding_go_straight_to_ready() {
    // The admin consented before the Tenant existed (re-onboarding): the first checks find
    // everything granted; the Tenant never names a consent as missing.
    let h = Harness::start().await;
    onboard_fabrikam_with_every_consent_granted(&h).await;
    let tenant_events = h.events("default", "Tenant", "fabrikam").await;
    assert_eq!(
        tenant_events
            .iter()
            .map(|e| (e.type_.as_deref().unwrap(), e.reason.as_deref().unwrap()))
            .collect::<Vec<_>>(),
        vec![("Normal", "Ready")],
        "{tenant_events:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_noticed_at_the_next_scheduled_check_of_a_granted_tenant() {
    // Granted consents are re-checked on the granted interval, woken by their Tenant rather
    // than by timers of their own; a revocation shows without anyone asking for a re-check.
    let mut options = recording_operator::demo::PlatformOptions::default();
    options.polling.granted_interval = Duration::from_secs(3);
    let h = Harness::start_with(options).await;
    onboard_fabrikam_with_every_consent_granted(&h).await;
    let first = h
        .wait_grant("fabrikam", "recording", T, |g| {
            g.status.as_ref().and_then(|s| s.state) == Some(ConsentState::Granted)
        })
        .await;
    let first_check = first.status.unwrap().last_checked_at.unwrap();

    // Still granted: the next scheduled checks happen all the same (Graph is asked), and
    // since they change nothing the grant's status is not rewritten (polling.
    // grantedStatusRefresh, a week by default).
    let graph = |h: &Harness| {
        h.platform
            .m365
            .counts()
            .tenant(FABRIKAM_ID)
            .graph_requests()
    };
    let asked = graph(&h);
    let deadline = std::time::Instant::now() + T;
    while graph(&h) < asked + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled check of a granted tenant within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unchanged = h
        .wait_grant("fabrikam", "recording", T, |g| {
            g.status.as_ref().is_some_and(|s| s.state.is_some())
        })
        .await;
    assert_eq!(
        unchanged.status.unwrap().last_checked_at,
        Some(first_check),
        "a check that found the consent still granted rewrote the status"
    );

    h.platform
        .m365
        .revoke_consent(FABRIKAM_ID, &app_id(&h, "recording-hue"));
    fabrikam_recording_turns_revoked(&h).await;
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
            t.status.as_ref().is_some_and(|s| {
                s.consents.len() == 4 && s.consents.iter().all(|c| c.consent_url.is_some())
            })
        })
        .await;
    let status = tenant.status.unwrap();
    assert_eq!(status.license_type.as_deref(), Some("Audio Recording"));
    assert!(!status
        .consents
        .iter()
        .any(|c| c.name == "redundantRecording"));
    let accepted = h
        .platform
        .accept_all_consents("contoso", &h.browser)
        .await
        .unwrap();
    assert_eq!(accepted, 4);
    h.wait_health("contoso", T, Health::Ok).await;
    h.stop().await;
}

fn app_id(h: &Harness, display_name: &str) -> String {
    h.platform
        .seed
        .app(display_name)
        .expect("seeded app")
        .app_id
        .clone()
}

const FABRIKAM_ID: &str = "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b";

/// Fabrikam's admin has granted every Essentials consent; its Tenant is applied and turns OK.
async fn onboard_fabrikam_with_every_consent_granted(h: &Harness) {
    grant_essentials_consents(h);
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    h.wait_health("fabrikam", T, Health::Ok).await;
}

/// Waits for Fabrikam's `recording` grant to turn Revoked and the Tenant to say so: Warning,
/// Ready=False with reason ConsentRevoked.
async fn fabrikam_recording_turns_revoked(h: &Harness) {
    h.wait_grant("fabrikam", "recording", T, |g| {
        g.status.as_ref().and_then(|s| s.state) == Some(ConsentState::Revoked)
    })
    .await;
    let tenant = h.wait_health("fabrikam", T, Health::Warning).await;
    let ready = tenant
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "ConsentRevoked");
}

/// Fabrikam's Global admin grants every consent an Essentials tenant needs, in full.
fn grant_essentials_consents(h: &Harness) {
    for name in [
        "recording-auth",
        "recording-aad",
        "recording-hue",
        "recording-im",
    ] {
        h.platform.m365.grant_consent(FABRIKAM_ID, &app_id(h, name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_outside_their_tenant_or_for_another_app_are_not_checked() {
    // Grants made by hand: outside a Tenant's namespace (one naming a Tenant that does not
    // exist, one naming Fabrikam, onboarded with everything granted), and one in Fabrikam's
    // namespace that names the directory application for its recording consent. None is
    // checked with the platform's tokens; each says why.
    let h = Harness::start().await;
    onboard_fabrikam_with_every_consent_granted(&h).await;
    let granted = h.grants("fabrikam").await;
    let template = granted
        .iter()
        .find(|g| g.spec.consent == "recording")
        .expect("recording grant");
    let directory_app = granted
        .iter()
        .find(|g| g.spec.consent == "directory")
        .expect("directory grant")
        .spec
        .app_id
        .clone();
    let checks_before = h.platform.m365.counts().total.graph_requests();
    let create = |namespace: &'static str, name: &'static str, tenant: &'static str, app: &str| {
        let mut spec = template.spec.clone();
        spec.tenant_ref = tenant.into();
        spec.app_id = app.into();
        let api: kube::Api<recording_operator::crd::ConsentGrant> =
            kube::Api::namespaced(h.client(), namespace);
        async move {
            let grant = recording_operator::crd::ConsentGrant::new(name, spec);
            api.create(&Default::default(), &grant).await.unwrap();
            api
        }
    };
    let app = template.spec.app_id.clone();
    let default = create("default", "contoso-recording", "contoso", &app).await;
    create("default", "fabrikam-recording", "fabrikam", &app).await;
    let fabrikam = create("tenant-fabrikam", "borrowed", "fabrikam", &directory_app).await;
    let ready = |g: &recording_operator::crd::ConsentGrant| {
        g.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let not_checked = |api: &kube::Api<recording_operator::crd::ConsentGrant>,
                       name: &'static str| {
        let api = api.clone();
        async move {
            common::wait_for(
                T,
                || async { api.get_opt(name).await.ok().flatten() },
                |g| ready(g).is_some(),
                name,
            )
            .await
        }
    };
    for (api, name, tenant) in [
        (&default, "contoso-recording", "contoso"),
        (&default, "fabrikam-recording", "fabrikam"),
    ] {
        let grant = not_checked(api, name).await;
        let (reason, message) = ready(&grant).unwrap();
        assert_eq!(reason, "NotChecked", "{name}");
        assert_eq!(
            message,
            format!(
                "not checked: a ConsentGrant of Tenant {tenant:?} is checked only in the Tenant's namespace \"tenant-{tenant}\", and this one is in \"default\""
            )
        );
        let status = grant.status.unwrap();
        assert_eq!(status.state, Some(ConsentState::Pending), "{name}");
        assert_eq!(status.consent_url, None, "{name}: no link to consent to");
    }
    let borrowed = not_checked(&fabrikam, "borrowed").await;
    let (reason, message) = ready(&borrowed).unwrap();
    assert_eq!(reason, "NotChecked");
    assert!(
        message.contains(&format!(
            "spec.appId {directory_app:?} is not the application"
        )),
        "{message}"
    );
    // Fabrikam's own grants stay granted, and nothing was asked of Graph for the three.
    h.wait_health("fabrikam", T, Health::Ok).await;
    assert_eq!(
        h.platform.m365.counts().total.graph_requests(),
        checks_before
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_grant_then_revocation_turn_the_tenant_back_to_warning() {
    let h = Harness::start().await;
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    h.wait_tenant("fabrikam", T, |t| {
        t.status.as_ref().is_some_and(|s| s.consents.len() == 4)
    })
    .await;

    // Everything but the recording app in full; the recording app with one of three permissions.
    let recording = app_id(&h, "recording-hue");
    for name in ["recording-auth", "recording-aad", "recording-im"] {
        h.platform
            .m365
            .grant_consent(FABRIKAM_ID, &app_id(&h, name));
    }
    h.platform
        .m365
        .grant_partial(FABRIKAM_ID, &recording, &["Calls.AccessMedia.All"], &[]);
    let grant = h
        .wait_grant("fabrikam", "recording", T, |g| {
            g.status.as_ref().and_then(|s| s.state) == Some(ConsentState::Partial)
        })
        .await;
    let s = grant.status.unwrap();
    assert_eq!(
        s.missing_permissions,
        vec!["Calls.JoinGroupCall.All", "Calls.JoinGroupCallAsGuest.All"]
    );
    assert_eq!(s.granted_permissions, vec!["Calls.AccessMedia.All"]);
    let tenant = h
        .wait_tenant("fabrikam", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.consents
                    .iter()
                    .filter(|c| c.state == ConsentState::Granted)
                    .count()
                    == 3
            })
        })
        .await;
    let status = tenant.status.unwrap();
    assert_eq!(status.health, Some(Health::Warning));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "ConsentPartial", "{ready:?}");
    assert!(status
        .alarm
        .unwrap()
        .contains("recording (recording-hue) lacks permissions"));

    // The admin grants it fully; the tenant is OK.
    h.platform.m365.grant_consent(FABRIKAM_ID, &recording);
    h.wait_health("fabrikam", T, Health::Ok).await;

    // Later the admin deletes the enterprise app; the GitOps way to say "look now" is the
    // recheck annotation on the Tenant.
    h.platform.m365.revoke_consent(FABRIKAM_ID, &recording);
    recheck_fabrikam(&h, "2026-11-23T10:00:00Z").await;
    fabrikam_recording_turns_revoked(&h).await;
    h.stop().await;
}

/// Asks for an immediate re-check of Fabrikam's grants, the GitOps way: the recheck annotation
/// on the Tenant, with the request's time `at`.
async fn recheck_fabrikam(h: &Harness, at: &str) {
    let tenants: kube::Api<recording_operator::crd::Tenant> = kube::Api::all(h.client());
    let patch =
        serde_json::json!({"metadata": {"annotations": {"recording.m365.io/recheck-at": at}}});
    tenants
        .patch(
            "fabrikam",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
}

/// An operator on `h`'s simulated platform: its metrics, the sender that stops it, and its task.
async fn run_operator(
    h: &Harness,
) -> (
    recording_operator::metrics::Metrics,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (metrics_tx, metrics_rx) = tokio::sync::oneshot::channel();
    let platform = h.platform.clone();
    let task = tokio::spawn(async move {
        platform
            .run_operator(Some(metrics_tx), async {
                let _ = stopped.await;
            })
            .await
            .expect("operator runs");
    });
    (metrics_rx.await.expect("operator started"), stop, task)
}

/// `recording_operator_tenant_time_to_ready_seconds_count` of Essentials Tenants (0 when the
/// process observed none).
fn first_readies(metrics: &recording_operator::metrics::Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "recording_operator_tenant_time_to_ready_seconds_count{license=\"Essentials\"} ",
            )
        })
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_again_after_a_restart_and_a_partial_consent_is_not_a_second_first_ready() {
    // Ready; the operator restarts (its memory of what it observed is gone); then not Ready for
    // a reason other than a revocation (the admin's consent lacks permissions), then Ready
    // again. The funnel counts one first Ready in all, and firstReadyAt stays where it was.
    let h = Harness::start_simulators().await;
    let (metrics, stop, task) = run_operator(&h).await;
    onboard_fabrikam_with_every_consent_granted(&h).await;
    let first = h
        .wait_tenant("fabrikam", T, |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.first_ready_at.is_some())
        })
        .await;
    let status = first.status.unwrap();
    let first_ready_at = status.first_ready_at.clone().unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(first_ready_at, ready.last_transition_time);
    assert_eq!(first_readies(&metrics), 1.0);

    let _ = stop.send(());
    task.await.unwrap();
    let (metrics, stop, task) = run_operator(&h).await;

    let recording = app_id(&h, "recording-hue");
    // The admin takes the app's consent back and grants one permission of three, before any
    // check: the grant goes from Granted to Partial, never Revoked.
    h.platform.m365.revoke_consent(FABRIKAM_ID, &recording);
    h.platform
        .m365
        .grant_partial(FABRIKAM_ID, &recording, &["Calls.AccessMedia.All"], &[]);
    recheck_fabrikam(&h, "2026-11-23T10:00:00Z").await;
    let troubled = h.wait_health("fabrikam", T, Health::Warning).await;
    let status = troubled.status.unwrap();
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("False"));
    assert!(
        status
            .consents
            .iter()
            .any(|c| c.state == ConsentState::Partial),
        "{status:?}"
    );
    assert_eq!(status.first_ready_at.as_ref(), Some(&first_ready_at));

    h.platform.m365.grant_consent(FABRIKAM_ID, &recording);
    recheck_fabrikam(&h, "2026-11-23T10:05:00Z").await;
    let again = h.wait_health("fabrikam", T, Health::Ok).await;
    let status = again.status.unwrap();
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("True"));
    assert_ne!(
        conditions_ready_time(&status),
        first_ready_at,
        "Ready turned true again, later"
    );
    assert_eq!(status.first_ready_at.as_ref(), Some(&first_ready_at));
    assert_eq!(
        first_readies(&metrics),
        0.0,
        "Ready again is not a second first Ready"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

fn conditions_ready_time(
    status: &recording_operator::crd::TenantStatus,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_token_requests_wait_for_retry_after() {
    let h = Harness::start().await;
    h.platform.m365.throttle_token(sim::m365::Throttle {
        tenant: Some(FABRIKAM_ID.into()),
        status: 429,
        retry_after_secs: Some(3),
        count: 1000,
    });
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    let grant = h
        .wait_grant("fabrikam", "recording", T, |g| {
            g.status
                .as_ref()
                .is_some_and(|s| s.last_checked_at.is_some())
        })
        .await;
    let s = grant.status.unwrap();
    let wait = s
        .next_check_at
        .unwrap()
        .0
        .duration_since(s.last_checked_at.unwrap().0);
    assert!(
        wait.as_secs_f64() >= 3.0,
        "next check after {wait:?}, Retry-After said 3 s: {:?}",
        s.message
    );
    assert_eq!(
        s.state,
        Some(ConsentState::Pending),
        "throttling is not an answer about the consent"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_secret_is_an_error_for_the_platform_team_and_never_leaks() {
    let h = Harness::start().await;
    let wrong = "Wr0ng~Secret.Value-For-Test";
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.client(), recording_operator::demo::OPERATOR_NAMESPACE);
    let patch = serde_json::json!({"stringData": {"directory": wrong}});
    secrets
        .patch(
            recording_operator::demo::APP_SECRETS,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    h.platform
        .accept_all_consents("fabrikam", &h.browser)
        .await
        .unwrap();
    grant_essentials_consents(&h);
    let grant = h
        .wait_grant("fabrikam", "directory", T, |g| {
            g.status.as_ref().and_then(|s| s.state) == Some(ConsentState::Error)
        })
        .await;
    let message = grant.status.unwrap().message.unwrap();
    assert!(
        message.contains("7000215") && message.contains("platform team"),
        "{message}"
    );
    let tenant = h
        .wait_ready_reason("fabrikam", T, "ConsentCheckFailed")
        .await;
    assert_eq!(
        tenant.status.as_ref().unwrap().health,
        Some(Health::Warning)
    );

    // No secret, right or wrong, in any status, event or log line.
    let mut secret_values: Vec<String> = h
        .platform
        .seed
        .apps
        .iter()
        .flat_map(|a| a.secrets.iter().map(|s| s.value.clone()))
        .collect();
    secret_values.push(wrong.to_string());
    let events: kube::Api<k8s_openapi::api::core::v1::Event> = kube::Api::all(h.client());
    let events =
        serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap();
    let tenants: kube::Api<recording_operator::crd::Tenant> = kube::Api::all(h.client());
    let statuses = serde_json::to_string(&tenants.list(&Default::default()).await.unwrap().items)
        .unwrap()
        + &serde_json::to_string(&h.grants("fabrikam").await).unwrap();
    let logs = common::captured_logs();
    assert!(!events.is_empty() && !logs.is_empty());
    for secret in &secret_values {
        assert!(
            !events.contains(secret.as_str()),
            "a client secret is in an event"
        );
        assert!(
            !statuses.contains(secret.as_str()),
            "a client secret is in a status"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "a client secret is in the logs"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pro_to_essentials_removes_the_paired_consent() {
    let h = Harness::start().await;
    h.apply(&tenant_yaml("fabrikam", "fabrikam.onmicrosoft.com", "Pro"))
        .await;
    h.wait_tenant("fabrikam", T, |t| {
        t.status.as_ref().is_some_and(|s| s.consents.len() == 5)
    })
    .await;
    assert!(h
        .grants("fabrikam")
        .await
        .iter()
        .any(|g| g.spec.consent == "redundantRecording"));
    h.apply(&tenant_yaml(
        "fabrikam",
        "fabrikam.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    let tenant = h
        .wait_tenant("fabrikam", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.consents.len() == 4 && s.license_type.as_deref() == Some("Audio Recording")
            })
        })
        .await;
    assert_eq!(tenant.status.unwrap().advanced_storage, Some(false));
    common::wait_for(
        T,
        || async { Some(h.grants("fabrikam").await) },
        |grants| {
            grants.len() == 4
                && !grants
                    .iter()
                    .any(|g| g.spec.consent == "redundantRecording")
        },
        "paired consent removed",
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_by_the_api_server_and_the_reconciler() {
    let h = Harness::start().await;
    // The API server refuses a CEL violation at apply time, naming the field.
    let bad = tenant_yaml("contoso", "contoso.onmicrosoft.com", "Essentials")
        + "  retention:\n    days: 731\n";
    let err = h
        .platform
        .apply_yaml(&bad)
        .await
        .expect_err("retention 731 is refused");
    let text = err.to_string();
    assert!(
        text.contains("spec.retention.days") && text.contains("730"),
        "{text}"
    );
    // A rule only the operator can know (an optional consent the configuration lacks) is the
    // reconciler's: InvalidSpec, a Warning, nothing provisioned.
    let unknown = tenant_yaml("contoso", "contoso.onmicrosoft.com", "Essentials")
        + "  optionalConsents: [faxApp]\n";
    h.apply(&unknown).await;
    let tenant = h.wait_ready_reason("contoso", T, "InvalidSpec").await;
    let status = tenant.status.unwrap();
    assert_eq!(status.health, Some(Health::Warning));
    assert!(status.alarm.unwrap().contains("spec.optionalConsents"));
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True"));
    assert!(
        h.grants("contoso").await.is_empty(),
        "nothing provisioned for an invalid tenant"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_printer_columns() {
    let h = Harness::start().await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().is_some_and(|s| {
            s.consents.len() == 4 && s.consents.iter().all(|c| c.consent_url.is_some())
        })
    })
    .await;
    let dir = std::env::temp_dir().join(format!("onboarding-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    h.platform.kube.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let tenants = kubectl(&["get", "tenants"]);
    let header: Vec<&str> = tenants.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CUSTOMER", "LICENSE", "USERS", "STATUS", "READY", "AGE"],
        "{tenants}"
    );
    let row = tenants.lines().nth(1).unwrap();
    assert!(
        row.starts_with("contoso")
            && row.contains("contoso-customer")
            && row.contains("Audio Recording")
            && row.contains("Warning")
            && row.contains("False"),
        "{tenants}"
    );
    let grants = kubectl(&["get", "consentgrants", "-A"]);
    let header: Vec<&str> = grants.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "CONSENT", "STATE", "AGE"],
        "{grants}"
    );
    assert_eq!(
        grants.lines().filter(|l| l.contains("Pending")).count(),
        4,
        "{grants}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_redirect_rechecks_at_once_and_metrics_count_it() {
    // The operator's /consent/callback on a real port, registered as the apps' redirect URI;
    // polling so slow that only the redirect can explain a quick Granted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = recording_operator::demo::PlatformOptions {
        redirect_uri: format!("http://{addr}/consent/callback"),
        ..Default::default()
    };
    options.polling.pending_initial = Duration::from_secs(600);
    options.polling.pending_max = Duration::from_secs(600);
    let h = Harness::start_with(options).await;
    let router = h.platform.public_router();
    tokio::spawn(recording_operator::http::public::serve(
        listener,
        router,
        std::future::pending(),
    ));

    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    assert_eq!(h.accept_consents("contoso").await, 4);
    let tenant = h.wait_health("contoso", T, Health::Ok).await;
    for grant in h.grants("contoso").await {
        let status = grant.status.unwrap();
        assert!(
            status.last_recheck_request.is_some(),
            "{} was re-checked through the redirect",
            grant.spec.consent
        );
    }
    assert_eq!(
        tenant.metadata.annotations, None,
        "the Tenant itself is untouched"
    );

    // The metrics endpoint's series after real reconciles.
    let text = h.metrics.encode();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value("recording_operator_reconciles_total{controller=\"tenant\"}") >= 1.0);
    assert!(value("recording_operator_reconciles_total{controller=\"consentgrant\"}") >= 4.0);
    assert!(value("recording_operator_token_requests_total{outcome=\"success\"}") >= 1.0);
    assert!(
        text.contains("recording_operator_reconcile_duration_seconds_bucket"),
        "{text}"
    );
    h.stop().await;
}

/// A namespace `tenant-<name>` someone else made is not taken over (a force apply would, and
/// garbage collection would then delete it with the Tenant): the Tenant says so, nothing is
/// applied there, and labelling the namespace with the Tenant's uid hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_someone_else_made_is_not_adopted() {
    use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
    use kube::api::{Api, Patch, PatchParams};
    use kube::ResourceExt;
    use recording_operator::crd::TENANT_UID_LABEL;

    let h = Harness::start().await;
    h.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant-contoso\n  labels:\n    team: payments\n")
        .await;
    h.apply(&tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
    ))
    .await;
    let refused = h.wait_ready_reason("contoso", T, "NamespaceNotOwned").await;
    let uid = refused.uid().unwrap();
    let ready = refused
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(
        ready.contains("\"tenant-contoso\" already exists")
            && ready.contains(&format!("{TENANT_UID_LABEL}={uid}")),
        "{ready}"
    );
    let namespaces: Api<Namespace> = Api::all(h.client());
    let ns = namespaces.get("tenant-contoso").await.unwrap();
    assert!(ns.owner_references().is_empty(), "{ns:?}");
    assert_eq!(ns.labels().get(TENANT_UID_LABEL), None);
    let quotas: Api<ResourceQuota> = Api::namespaced(h.client(), "tenant-contoso");
    assert!(quotas
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(h.grants("contoso").await.is_empty());

    // Its owner hands it over: the Tenant provisions it as its own.
    namespaces
        .patch(
            "tenant-contoso",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {TENANT_UID_LABEL: uid}}})),
        )
        .await
        .unwrap();
    h.wait_consent_links("contoso", Duration::from_secs(60))
        .await;
    assert_eq!(h.grants("contoso").await.len(), 4);
    let ns = namespaces.get("tenant-contoso").await.unwrap();
    assert_eq!(
        ns.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("recording-operator")
    );
    assert_eq!(
        ns.labels().get("team").map(String::as_str),
        Some("payments")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_consent_left_pending_never_holds_back_ok_or_ready() {
    let h = Harness::start().await;
    h.apply(
        &(tenant_yaml("contoso", "contoso.onmicrosoft.com", "Essentials")
            + "  optionalConsents: [teamsApp]\n"),
    )
    .await;
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().is_some_and(|s| {
            s.consents.len() == 5 && s.consents.iter().all(|c| c.consent_url.is_some())
        })
    })
    .await;
    // The customer's admin accepts every link but the optional Teams app's.
    let mut accepted = 0;
    for grant in h.grants("contoso").await {
        if grant.spec.consent == "teamsApp" {
            continue;
        }
        let url = grant.status.unwrap().consent_url.unwrap();
        let _ = h.browser.get(&url).send().await;
        accepted += 1;
    }
    assert_eq!(accepted, 4);

    // `kubectl wait`, as a pipeline would.
    common::Kubectl::new(&h, "optional-consent").ok(
        &[
            "wait",
            "--for=condition=Ready",
            "tn/contoso",
            "--timeout=30s",
        ],
        None,
    );
    let tenant = h.wait_health("contoso", T, Health::Ok).await;
    let status = tenant.status.unwrap();
    assert_eq!(ready_status(&status.conditions).as_deref(), Some("True"));
    let teams = status
        .consents
        .iter()
        .find(|c| c.name == "teamsApp")
        .unwrap();
    assert_eq!((teams.state, teams.optional), (ConsentState::Pending, true));
    assert_eq!(status.alarm, None, "nothing for the customer to do");
    h.stop().await;
}
