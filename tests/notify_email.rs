//! E-mail notifications for real: SMTP to MailDev on loopback (started by the tests, its REST
//! API lists what it received), Microsoft Graph `sendMail` against the Graph simulator, and
//! the whole onboarding with the operator restarted half-way.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ready_status, wait_for, Harness};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use recording_operator::config::NotificationsConfig;
use recording_operator::config::{GraphMailConfig, SmtpConfig, SmtpTls};
use recording_operator::config::{SecretRef, SecretSource, Secrets};
use recording_operator::crd::{NotificationKind, NotificationState, Tenant};
use recording_operator::demo::{PlatformOptions, HOME_TENANT_ID};
use recording_operator::notify::message::{self, ConsentLine, Letter};
use recording_operator::notify::transport::{GraphMail, SendError, Transport};
use sim::m365::{AppSeed, SecretSeed};
use sim::maildev::{MailDev, MailDevOptions};

const T: Duration = Duration::from_secs(30);
const SMTP_PASSWORD: &str = "smtp-pa55word-never-shown";

fn smtp(port: u16, password_env: Option<&str>) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: password_env.map(|_| "mailer".into()),
        password: password_env.map(|v| SecretRef::Env(v.into())),
    }
}

fn letter() -> Letter {
    Letter {
        kind: NotificationKind::OnboardingStarted,
        customer: "Contoso & Co".into(),
        license_type: "Audio Recording".into(),
        quick_start_url: Some(
            "https://operator.example.com/quickstart/contoso?exp=9&sig=a1".into(),
        ),
        consents: vec![ConsentLine {
            app_name: "recording-hue".into(),
            allows: message::allows("recording").into(),
            optional: false,
            url: Some("https://login.example/t/v2.0/adminconsent?client_id=c&state=x".into()),
            state: "Pending".into(),
        }],
        storage_problem: None,
        secret: None,
        retention: None,
    }
}

fn mail(to: &[&str]) -> lettre::Message {
    let from = message::parse_mailbox("Recording Platform <notify@platform.example.com>").unwrap();
    let reply = message::parse_mailbox("support@platform.example.com").unwrap();
    let to: Vec<_> = to
        .iter()
        .map(|a| message::parse_mailbox(a).unwrap())
        .collect();
    message::build(&from, Some(&reply), &to, &message::render(&letter())).unwrap()
}

fn secrets() -> Arc<dyn SecretSource> {
    Arc::new(Secrets::local())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_delivers_both_parts_to_every_contact_and_names_each_failure_without_the_password() {
    let maildev = MailDev::start().await.expect("MailDev starts");
    let plain = Transport::Smtp(smtp(maildev.smtp_port(), None));
    plain
        .send(&mail(&["ops@contoso.com", "it@contoso.com"]), &secrets(), T)
        .await
        .expect("MailDev accepts the message");
    let got = maildev.wait_for(1, T).await.unwrap();
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(e.recipients(), ["ops@contoso.com", "it@contoso.com"]);
    assert_eq!(e.from[0].address, "notify@platform.example.com");
    assert_eq!(e.reply_to[0].address, "support@platform.example.com");
    assert!(e.subject.contains("Contoso & Co"), "{}", e.subject);
    let text = e.text.as_deref().unwrap();
    let html = e.html.as_deref().unwrap();
    assert!(text.contains("https://login.example/t/v2.0/adminconsent?client_id=c&state=x"));
    assert!(text.contains("https://operator.example.com/quickstart/contoso?exp=9&sig=a1"));
    assert!(
        html.contains("href=\"https://login.example/t/v2.0/adminconsent?client_id=c&amp;state=x\""),
        "{html}"
    );
    assert!(html.contains("Contoso &amp; Co"));

    // Nobody listening: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = Transport::Smtp(smtp(port, None))
        .send(&mail(&["ops@contoso.com"]), &secrets(), T)
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");

    // A server that wants a login refuses the wrong password: named, and the password is in
    // no message.
    let guarded = MailDev::start_with(MailDevOptions {
        incoming_auth: Some(("mailer".into(), "the-right-one".into())),
    })
    .await
    .unwrap();
    std::env::set_var("NOTIFY_TEST_SMTP_PASSWORD", SMTP_PASSWORD);
    let e = Transport::Smtp(smtp(guarded.smtp_port(), Some("NOTIFY_TEST_SMTP_PASSWORD")))
        .send(&mail(&["ops@contoso.com"]), &secrets(), T)
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Auth { .. }), "{e:?}");
    assert_eq!(e.reason(), "auth");
    assert!(!format!("{e} {e:?}").contains(SMTP_PASSWORD), "{e:?}");
    assert!(guarded.emails().await.unwrap().is_empty());
    std::env::set_var("NOTIFY_TEST_SMTP_PASSWORD_OK", "the-right-one");
    Transport::Smtp(smtp(
        guarded.smtp_port(),
        Some("NOTIFY_TEST_SMTP_PASSWORD_OK"),
    ))
    .send(&mail(&["ops@contoso.com"]), &secrets(), T)
    .await
    .expect("the right password logs in");

    // The password's Secret missing: a configuration error naming the field.
    let e = Transport::Smtp(smtp(guarded.smtp_port(), Some("NOTIFY_TEST_NOT_SET")))
        .send(&mail(&["ops@contoso.com"]), &secrets(), T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("notifications.smtp.password"), "{e}");
}

const MAIL_APP: &str = "9a4e2c71-5d3b-4f60-8e19-b2c4d6e8f0a1";
const MAIL_SECRET: &str = "graph-mail-secret-never-shown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_send_mail_needs_mail_send_and_carries_the_mime_message() {
    let h = Harness::start_simulators().await;
    let m365 = &h.platform.m365;
    m365.add_app(AppSeed {
        app_id: MAIL_APP.into(),
        display_name: "recording-mail".into(),
        home_tenant: HOME_TENANT_ID.into(),
        secrets: vec![SecretSeed {
            value: MAIL_SECRET.into(),
            key_id: None,
            display_name: None,
            start_date_time: None,
            end_date_time: (Timestamp::now() + SignedDuration::from_hours(24 * 30)).to_string(),
        }],
        redirect_uris: vec![],
        application_permissions: vec!["Mail.Send".into()],
        delegated_scopes: vec![],
    });
    std::env::set_var("NOTIFY_TEST_GRAPH_SECRET", MAIL_SECRET);
    let graph = |sender: &str| {
        let config = &h.platform.config;
        let http = reqwest::Client::new();
        Transport::Graph(Box::new(GraphMail {
            config: GraphMailConfig {
                tenant_id: HOME_TENANT_ID.into(),
                app_id: MAIL_APP.into(),
                client_secret: SecretRef::Env("NOTIFY_TEST_GRAPH_SECRET".into()),
                sender: sender.into(),
            },
            graph_endpoint: config.cloud.graph_endpoint().unwrap(),
            tokens: recording_operator::graph::token::TokenProvider::new(
                http.clone(),
                config.cloud.authority_host().unwrap(),
                config.cloud.graph_scope().unwrap(),
                Duration::from_secs(60),
                secrets(),
                Arc::new(Default::default()),
            ),
            http,
        }))
    };
    let sender = "notify@recordingplatform.onmicrosoft.com";

    // Not consented in the platform's tenant yet: no Mail.Send, nothing sent.
    let e = graph(sender)
        .send(&mail(&["ops@contoso.com"]), &secrets(), T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Mail.Send"), "{e}");
    assert!(!format!("{e:?}").contains(MAIL_SECRET));

    m365.grant_consent(HOME_TENANT_ID, MAIL_APP);
    graph(sender)
        .send(&mail(&["ops@contoso.com", "it@contoso.com"]), &secrets(), T)
        .await
        .expect("Graph accepts the message");
    let sent = m365.sent_mail();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sender, sender);
    assert!(sent[0].to.contains("ops@contoso.com") && sent[0].to.contains("it@contoso.com"));
    assert!(sent[0].mime.contains("multipart/alternative"));
    assert!(sent[0].mime.contains("text/html"));

    // A mailbox outside the platform's tenant is not one Graph sends as.
    let e = graph("notify@elsewhere.example")
        .send(&mail(&["ops@contoso.com"]), &secrets(), T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ErrorInvalidUser"), "{e}");
    assert_eq!(m365.sent_mail().len(), 1);
}

fn tenant_yaml(contacts: &str) -> String {
    format!(
        r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: contoso
spec:
  customerName: Contoso
  domain: contoso.onmicrosoft.com
  shortName: contoso
  contactEmails: [{contacts}]
  adminUpns: [admin@contoso.onmicrosoft.com]
  license: Essentials
  includedUsers: 100
  storage:
    location: westeurope
"#
    )
}

/// Runs the operator's controllers until the returned sender is dropped or fired.
fn start_operator(
    platform: Arc<recording_operator::demo::Platform>,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        platform
            .run_operator(None, async {
                let _ = stopped.await;
            })
            .await
            .expect("operator runs");
    });
    stop
}

/// SMTP to `maildev` without TLS or login, at most `max_per_hour` e-mails a tenant.
fn to_maildev(maildev: &MailDev, max_per_hour: u32) -> NotificationsConfig {
    serde_saphyr::from_str(&format!(
        "from: 'Recording Platform <notify@platform.example.com>'\nsmtp: {{host: 127.0.0.1, port: {}, tls: none}}\nmaxPerHour: {max_per_hour}\n",
        maildev.smtp_port()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contacts_get_the_onboarding_and_live_e_mails_once_across_an_operator_restart() {
    let maildev = MailDev::start().await.expect("MailDev starts");
    let notifications = to_maildev(&maildev, 5);
    let h = Harness::start_simulators_with(PlatformOptions {
        notifications: Some(notifications),
        ..Default::default()
    })
    .await;
    h.apply(&tenant_yaml("ops@contoso.com, it@contoso.com"))
        .await;
    let first = start_operator(h.platform.clone());

    // The onboarding e-mail: both contacts, every consent link of the license.
    let got = maildev.wait_for(1, T).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let onboarding = &got[0];
    assert_eq!(
        onboarding.recipients(),
        ["ops@contoso.com", "it@contoso.com"]
    );
    assert!(
        onboarding.subject.contains("Contoso"),
        "{}",
        onboarding.subject
    );
    let tenant = h
        .wait_tenant("contoso", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.notifications.iter().any(|n| {
                    n.kind == NotificationKind::OnboardingStarted
                        && n.state == NotificationState::Sent
                })
            })
        })
        .await;
    let status = tenant.status.unwrap();
    let text = onboarding.text.as_deref().unwrap();
    let html = onboarding.html.as_deref().unwrap();
    assert_eq!(
        status.consents.len(),
        4,
        "Essentials: four mandatory consents"
    );
    let keys = h.platform.links().unwrap().keys().await.unwrap();
    let grants = h.grants("contoso").await;
    for c in &status.consents {
        let url = c.consent_url.as_deref().unwrap();
        assert!(text.contains(url), "text part has {url}");
        // Its state is the operator's signed one, naming the grant.
        let state = recording_operator::consent_link::state_of(url).unwrap();
        let grant = recording_operator::consent_link::open(&keys, &state, Timestamp::now())
            .unwrap_or_else(|| panic!("{url} carries a signed state"));
        let named = grants
            .iter()
            .find(|g| g.spec.consent == c.name)
            .and_then(|g| g.metadata.name.clone());
        assert_eq!(
            (grant.namespace.as_str(), Some(grant.name)),
            ("tenant-contoso", named)
        );
        assert!(
            html.contains(&url.replace('&', "&amp;")),
            "HTML part has {url}"
        );
    }
    for app in [
        "recording-auth",
        "recording-aad",
        "recording-hue",
        "recording-im",
    ] {
        assert!(text.contains(app), "{app} named: {text}");
    }
    // The Tenant's own signed Quick Start link, as the Tenant controller wrote it.
    let quick_start = status
        .quick_start_url
        .as_deref()
        .expect("the Tenant has its Quick Start link");
    assert!(quick_start.contains("/quickstart/"), "{quick_start}");
    assert!(text.contains(quick_start), "{text}");
    assert!(html.contains(&quick_start.replace('&', "&amp;")), "{html}");
    let record = &status.notifications[0];
    assert_eq!(record.recipients, 2);
    assert_eq!(record.attempts, 1);
    let events = h.events("default", "Tenant", "contoso").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Notified")),
        "{events:?}"
    );

    // The operator restarts mid-onboarding: nothing is sent again.
    let _ = first.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = start_operator(h.platform.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        maildev.emails().await.unwrap().len(),
        1,
        "no second onboarding e-mail"
    );

    // The admin consents: "you are live", once.
    h.accept_consents("contoso").await;
    h.wait_tenant("contoso", T, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| ready_status(&s.conditions).as_deref() == Some("True"))
    })
    .await;
    let got = maildev.wait_for(2, T).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].subject.contains("is live"), "{}", got[1].subject);
    assert_eq!(got[1].recipients(), ["ops@contoso.com", "it@contoso.com"]);

    // A re-applied manifest and another restart send nothing more.
    h.apply(&tenant_yaml("ops@contoso.com, it@contoso.com"))
        .await;
    let _ = second.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = start_operator(h.platform.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(maildev.emails().await.unwrap().len(), 2);
    let tenant = wait_for(
        T,
        || async {
            Api::<Tenant>::all(h.client())
                .get_opt("contoso")
                .await
                .ok()
                .flatten()
        },
        |t: &Tenant| {
            t.status
                .as_ref()
                .is_some_and(|s| s.notifications.len() == 2)
        },
        "two notification records",
    )
    .await;
    let kinds: Vec<_> = tenant
        .status
        .unwrap()
        .notifications
        .iter()
        .map(|n| (n.kind, n.state))
        .collect();
    assert_eq!(
        kinds,
        [
            (NotificationKind::OnboardingStarted, NotificationState::Sent),
            (NotificationKind::TenantLive, NotificationState::Sent)
        ]
    );
    let _ = third.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_named_in_status_events_and_metrics_retried_and_never_shows_the_password(
) {
    use k8s_openapi::api::core::v1::Secret;
    use recording_operator::demo::OPERATOR_NAMESPACE;

    let maildev = MailDev::start_with(MailDevOptions {
        incoming_auth: Some(("mailer".into(), "the-right-one".into())),
    })
    .await
    .expect("MailDev starts");
    let notifications: NotificationsConfig = serde_saphyr::from_str(&format!(
        "from: notify@platform.example.com\nsmtp: {{host: 127.0.0.1, port: {}, tls: none, username: mailer, password: {{secretRef: {{namespace: {OPERATOR_NAMESPACE}, name: smtp, key: password}}}}}}\nretryInitial: 1s\n",
        maildev.smtp_port()
    ))
    .unwrap();
    let h = Harness::start_with(PlatformOptions {
        notifications: Some(notifications),
        ..Default::default()
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(h.client(), OPERATOR_NAMESPACE);
    let smtp_secret = |password: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "smtp", "namespace": OPERATOR_NAMESPACE},
            "stringData": {"password": password}
        })
    };
    secrets
        .patch(
            "smtp",
            &PatchParams::apply("test").force(),
            &Patch::Apply(smtp_secret(SMTP_PASSWORD)),
        )
        .await
        .unwrap();
    h.apply(&tenant_yaml("ops@contoso.com")).await;

    let failed = h
        .wait_tenant("contoso", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.notifications
                    .iter()
                    .any(|n| n.state == NotificationState::Failed)
            })
        })
        .await;
    let record = failed.status.as_ref().unwrap().notifications[0].clone();
    let why = record.message.clone().unwrap();
    assert!(why.contains("refused the login of \"mailer\""), "{why}");
    assert!(record.next_attempt_at.is_some());
    let events = h.events("default", "Tenant", "contoso").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("NotificationFailed")),
        "{events:?}"
    );
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(
            "recording_operator_notifications_failed_total{kind=\"OnboardingStarted\",reason=\"auth\"}"
        ),
        "{metrics}"
    );

    // The password fixed in its Secret: the next retry goes through, once.
    secrets
        .patch(
            "smtp",
            &PatchParams::apply("test").force(),
            &Patch::Apply(smtp_secret("the-right-one")),
        )
        .await
        .unwrap();
    let sent = h
        .wait_tenant("contoso", T, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.notifications
                    .iter()
                    .any(|n| n.state == NotificationState::Sent)
            })
        })
        .await;
    assert!(sent.status.unwrap().notifications[0].attempts >= 2);
    assert_eq!(maildev.wait_for(1, T).await.unwrap().len(), 1);
    assert!(h
        .metrics
        .encode()
        .contains("recording_operator_notifications_sent_total{kind=\"OnboardingStarted\"} 1"));

    // The password is nowhere: status, Events, the operator's log.
    let tenant_json =
        serde_json::to_string(&Api::<Tenant>::all(h.client()).get("contoso").await.unwrap())
            .unwrap();
    let events_json =
        serde_json::to_string(&h.events("default", "Tenant", "contoso").await).unwrap();
    for place in [tenant_json, events_json, common::captured_logs()] {
        assert!(!place.contains(SMTP_PASSWORD), "the password leaked");
    }
    h.stop().await;
}

/// A retention shortened by a spec change: the sweep announces it (`status.retention.pending`)
/// and the contacts get one e-mail saying what goes and from when; later sweeps of the same
/// announcement send nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_retention_is_mailed_to_the_contacts_once_with_its_date() {
    use recording_operator::config::RetentionConfig;
    use recording_operator::demo::{Platform, StorageMode};

    let maildev = MailDev::start().await.expect("MailDev starts");
    let notifications = to_maildev(&maildev, 20);
    let mut platform = Platform::start(PlatformOptions {
        storage: StorageMode::Azurite,
        notifications: Some(notifications),
        ..Default::default()
    })
    .await
    .unwrap();
    platform.config.storage.as_mut().unwrap().retention = RetentionConfig {
        interval: Duration::from_secs(2),
        grace_period: Duration::from_secs(7 * 86_400),
        ..Default::default()
    };
    let platform = Arc::new(platform);
    let stop = start_operator(platform.clone());
    let yaml = tenant_yaml("ops@contoso.com")
        .replace("  storage:\n", "  retention: {days: 730}\n  storage:\n");
    platform.apply_yaml(&yaml).await.unwrap();
    let api: Api<Tenant> = Api::all(platform.client.clone());
    let retention_of = |t: &Tenant| t.status.as_ref().and_then(|s| s.retention.clone());
    wait_for(
        T,
        || async { Some(api.get("contoso").await.unwrap()) },
        |t| retention_of(t).is_some_and(|r| r.effective_days == Some(730)),
        "the first sweep",
    )
    .await;

    api.patch(
        "contoso",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"retention": {"days": 365}}})),
    )
    .await
    .unwrap();
    let announced = wait_for(
        T,
        || async { Some(api.get("contoso").await.unwrap()) },
        |t| {
            t.status.as_ref().is_some_and(|s| {
                s.notifications.iter().any(|n| {
                    n.kind == NotificationKind::RetentionShortened
                        && n.state == NotificationState::Sent
                })
            })
        },
        "the RetentionShortened e-mail",
    )
    .await;
    let pending = retention_of(&announced).unwrap().pending.unwrap();
    assert_eq!(pending.days, 365);
    let date = pending
        .applies_time
        .0
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();

    let shortened = |mails: &[sim::maildev::Email]| -> Vec<sim::maildev::Email> {
        mails
            .iter()
            .filter(|m| m.subject.contains("will be deleted"))
            .cloned()
            .collect()
    };
    let mails = shortened(&maildev.emails().await.unwrap());
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.recipients(), ["ops@contoso.com"]);
    assert!(mail.subject.contains(&date), "{} / {date}", mail.subject);
    let text = mail.text.as_deref().unwrap();
    assert!(text.contains("older than 365 days"), "{text}");
    assert!(
        text.contains(&format!("replying to this e-mail before {date}")),
        "{text}"
    );
    assert!(mail.html.as_deref().unwrap().contains(&date));

    // Two more sweeps of the same announcement (each rewrites `pending`): no second e-mail.
    let swept = retention_of(&announced).unwrap().last_sweep_time;
    for _ in 0..2 {
        let before = retention_of(&api.get("contoso").await.unwrap())
            .unwrap()
            .last_sweep_time;
        wait_for(
            T,
            || async { retention_of(&api.get("contoso").await.unwrap()) },
            |r| r.last_sweep_time != before,
            "another sweep",
        )
        .await;
    }
    let later = retention_of(&api.get("contoso").await.unwrap()).unwrap();
    assert_ne!(later.last_sweep_time, swept);
    assert_eq!(
        later.pending.unwrap().announced_time,
        pending.announced_time
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(shortened(&maildev.emails().await.unwrap()).len(), 1);
    let records = api
        .get("contoso")
        .await
        .unwrap()
        .status
        .unwrap()
        .notifications;
    assert_eq!(
        records
            .iter()
            .filter(|n| n.kind == NotificationKind::RetentionShortened)
            .count(),
        1,
        "{records:?}"
    );

    let _ = stop.send(());
}
