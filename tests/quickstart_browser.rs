//! The Quick Start page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by scripts/install-test-deps.sh) driven through WebDriver,
//! against both simulators and the operator's controllers and public listener. The admin
//! opens the Tenant's `status.quickStartUrl`, clicks each consent (the identity simulator's
//! admin-consent page grants and redirects through the operator's callback back to the page),
//! and watches each row turn Granted and the page turn Ready without reloading it. A tampered,
//! expired or foreign link is refused with one answer. Each step's screenshot is saved under
//! target/quickstart-screens/.
//!
//! The browser and the steps are in tests/common/browser.rs, shared with the sign-in test.

mod common;

use std::time::Duration;

use common::browser::{Driver, QuickStart, T};
use common::Harness;
use fantoccini::Locator;
use recording_operator::crd::Tenant;
use recording_operator::demo::PlatformOptions;
use recording_operator::http::public::REFUSAL_BODY;
use serde_json::json;

fn tenant_yaml() -> &'static str {
    r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: contoso
spec:
  customerName: Contoso&Co'Ltd
  domain: contoso.onmicrosoft.com
  shortName: contoso
  contactEmails: [ops@contoso.example]
  adminUpns: [admin@contoso.onmicrosoft.com]
  license: Essentials
  includedUsers: 50
  optionalConsents: [teamsApp]
  storage:
    location: westeurope
"#
}

/// The harness with the operator's public listener at the apps' redirect URI; polling so slow
/// that only the consent callback explains a row turning Granted within the test.
async fn harness() -> Harness {
    harness_with(None).await
}

/// [`harness`], e-mailing the contacts through `notifications` when given.
async fn harness_with(
    notifications: Option<recording_operator::config::NotificationsConfig>,
) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut options = PlatformOptions {
        redirect_uri: format!("http://{}/consent/callback", listener.local_addr().unwrap()),
        notifications,
        ..Default::default()
    };
    options.polling.pending_initial = Duration::from_secs(600);
    options.polling.pending_max = Duration::from_secs(600);
    let h = Harness::start_with(options).await;
    tokio::spawn(recording_operator::http::public::serve(
        listener,
        h.platform.public_router(),
        std::future::pending(),
    ));
    h
}

/// The Tenant once its status has the Quick Start link and every consent's link.
async fn linked_tenant(h: &Harness, name: &str) -> Tenant {
    h.wait_tenant(name, T, |t| {
        t.status.as_ref().is_some_and(|s| {
            s.quick_start_url.is_some()
                && !s.consents.is_empty()
                && s.consents.iter().all(|c| c.consent_url.is_some())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_clicks_through_the_quick_start_page_until_ready() {
    let h = harness().await;
    h.apply(tenant_yaml()).await;
    let tenant = linked_tenant(&h, "contoso").await;
    let url = tenant.status.unwrap().quick_start_url.unwrap();
    assert!(url.contains("/quickstart/"), "{url}");

    let (_driver, browser) = Driver::start().await;
    let mut page = QuickStart { browser, step: 0 };
    page.open(&url).await;
    page.screenshot("opened").await;

    // What the admin sees first: who, which license, every consent pending, mandatory first.
    assert_eq!(
        page.browser.title().await.unwrap(),
        "Quick Start: Contoso&Co'Ltd"
    );
    assert_eq!(page.text("#customer").await, "Contoso&Co'Ltd");
    assert_eq!(page.text("#license").await, "Audio Recording");
    assert_eq!(page.text("#overall").await, "Waiting for consents");
    assert_eq!(
        page.text("#summary").await,
        "4 of 4 required consents still to grant."
    );
    let rows = page.rows().await;
    let keys: Vec<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "directory",
            "login",
            "recording",
            "instantMessages",
            "teamsApp"
        ]
    );
    assert!(rows.iter().all(|(_, s, _)| s == "Pending"), "{rows:?}");
    assert!(page
        .text("#consent-recording")
        .await
        .contains("join the Teams calls"));
    assert!(page.text("#consent-teamsApp").await.contains("(optional)"));

    // A phone's width: one column, nothing cut off.
    page.browser.set_window_size(390, 844).await.unwrap();
    let overflow = page
        .browser
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(false), "no sideways scrolling on a phone");
    page.screenshot("phone").await;
    page.browser.set_window_size(1100, 1400).await.unwrap();

    // Keyboard: Tab reaches the skip link first, then the first consent's button.
    let tab: char = fantoccini::key::Key::Tab.into();
    let body = page.browser.find(Locator::Css("body")).await.unwrap();
    let mut focused = Vec::new();
    for _ in 0..2 {
        body.send_keys(&tab.to_string()).await.unwrap();
        let active = page
            .browser
            .execute(
                "return document.activeElement.id || document.activeElement.className;",
                vec![],
            )
            .await
            .unwrap();
        focused.push(active.as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(focused, ["skip", "consent-directory-link"]);
    page.screenshot("keyboard-focus").await;

    for key in ["directory", "login", "recording", "instantMessages"] {
        page.grant(key).await;
        page.wait_row(key, "Granted").await;
        assert!(page.not_reloaded().await, "{key} turned Granted by itself");
        page.screenshot(&format!("granted-{key}")).await;
    }
    page.wait_ready().await;
    assert!(page.not_reloaded().await, "Ready arrived without a reload");
    assert_eq!(
        page.text("#summary").await,
        "Every required consent is granted and recording is set up."
    );
    assert!(
        page.text("#announce").await.contains("Ready"),
        "the live region announces it"
    );
    let optional = page.rows().await;
    assert_eq!(
        optional.last().unwrap().1,
        "Pending",
        "optional, still open"
    );
    page.screenshot("ready").await;

    // The optional Teams app afterwards: granted the same way, Ready throughout.
    page.grant("teamsApp").await;
    page.wait_row("teamsApp", "Granted").await;
    page.screenshot("granted-teamsApp").await;

    // A tampered link: the one refusal.
    let tampered = tamper(&url);
    page.browser.goto(&tampered).await.unwrap();
    assert_eq!(page.text("h1").await, "This link is not valid");
    page.screenshot("tampered").await;
    page.browser.close().await.unwrap();

    let response = reqwest::get(&tampered).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), REFUSAL_BODY);
    h.stop().await;
}

/// The link with one character of its signature changed.
fn tamper(url: &str) -> String {
    let mut chars: Vec<char> = url.chars().collect();
    let at = chars.len() - 3;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_link_gets_the_same_answer_and_the_page_sends_strict_headers() {
    let h = harness().await;
    h.apply(tenant_yaml()).await;
    let tenant = linked_tenant(&h, "contoso").await;
    let uid = tenant.metadata.uid.clone().unwrap();
    let url = tenant.status.unwrap().quick_start_url.unwrap();
    let http = reqwest::Client::new();
    let good = http.get(&url).send().await.unwrap();
    assert_eq!(good.status(), 200);
    let headers = good.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = good.text().await.unwrap();
    assert!(
        html.contains("Contoso&amp;Co&#39;Ltd"),
        "the customer's name is escaped"
    );
    assert!(
        html.contains(r#"<script src="/quickstart-assets/page.js" defer>"#)
            && html.contains(r#"<link rel="stylesheet" href="/quickstart-assets/page.css">"#)
            && !html.contains("src=\"http"),
        "no external assets"
    );
    let state = http
        .get(format!("{url}/state"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(state["customer"], "Contoso&Co'Ltd");
    assert_eq!(state["consents"].as_array().unwrap().len(), 5);

    // Tampered, for another (unknown) tenant, garbage, expired, and the JSON view of each.
    let (base, token) = url.rsplit_once('/').unwrap();
    let mut parts = token.split('.');
    let (_, expires, tag) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    use base64::Engine as _;
    let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("fabrikam");
    let expired = h.platform.links().unwrap().keys().await.unwrap().sign(
        "contoso",
        &uid,
        k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
    );
    for bad in [
        tamper(&url),
        format!("{base}/{other}.{expires}.{tag}"),
        format!("{base}/not-a-token"),
        format!("{base}/{expired}"),
        format!("{}/state", tamper(&url)),
    ] {
        let response = http.get(&bad).send().await.unwrap();
        assert_eq!(response.status(), 404, "{bad}");
        assert_eq!(response.text().await.unwrap(), REFUSAL_BODY, "{bad}");
    }
    assert!(!REFUSAL_BODY.contains("contoso"));

    // The signing key itself appears in no status, no Event and no log line.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.client(), recording_operator::demo::OPERATOR_NAMESPACE);
    let secret = secrets
        .get(recording_operator::demo::QUICKSTART_SECRET)
        .await
        .unwrap();
    let key = String::from_utf8(secret.data.unwrap()["keys"].0.clone()).unwrap();
    assert!(key.len() >= 32);
    let tenant = linked_tenant(&h, "contoso").await;
    assert!(!serde_json::to_string(&tenant).unwrap().contains(&key));
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::all(h.client())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!serde_json::to_string(&events).unwrap().contains(&key));
    assert!(!common::captured_logs().contains(&key));
    h.stop().await;
}

/// The customer's whole onboarding, with no kubectl look-up of a link: the Tenant is applied,
/// its contact receives the onboarding e-mail (a real SMTP server, MailDev), the admin opens
/// the Quick Start link from that e-mail in Chromium and grants each consent, the page turns
/// Ready by itself, and the contact receives the "you are live" e-mail — each e-mail once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_onboarding_e_mail_through_the_page_to_the_live_e_mail() {
    let maildev = sim::maildev::MailDev::start()
        .await
        .expect("MailDev starts (scripts/install-test-deps.sh installs it)");
    let notifications: recording_operator::config::NotificationsConfig =
        serde_saphyr::from_str(&format!(
            "from: 'Recording Platform <notify@platform.example.com>'\nsmtp: {{host: 127.0.0.1, port: {}, tls: none}}\n",
            maildev.smtp_port()
        ))
        .unwrap();
    let h = harness_with(Some(notifications)).await;
    h.apply(tenant_yaml()).await;

    // The onboarding e-mail, and the Quick Start link in it: the Tenant's own.
    let got = maildev.wait_for(1, T).await.expect("MailDev answers");
    let onboarding = got.first().expect("the onboarding e-mail arrives");
    assert_eq!(onboarding.recipients(), ["ops@contoso.example"]);
    let text = onboarding.text.as_deref().expect("a plain text part");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/quickstart/"))
        .unwrap_or_else(|| panic!("no Quick Start link in: {text}"));
    let tenant = linked_tenant(&h, "contoso").await;
    assert_eq!(
        Some(link),
        tenant.status.as_ref().unwrap().quick_start_url.as_deref(),
        "the e-mail carries the Tenant's signed link"
    );

    // The admin follows it and grants each mandatory consent.
    let (_driver, browser) = Driver::start().await;
    let mut page = QuickStart { browser, step: 100 };
    page.open(link).await;
    page.screenshot("from-e-mail-opened").await;
    for key in ["directory", "login", "recording", "instantMessages"] {
        page.grant(key).await;
        page.wait_row(key, "Granted").await;
    }
    page.wait_ready().await;
    assert!(page.not_reloaded().await, "Ready arrived without a reload");
    page.screenshot("from-e-mail-ready").await;

    // The "you are live" e-mail follows; nothing is sent twice.
    let got = maildev.wait_for(2, T).await.expect("MailDev answers");
    let live = got.get(1).expect("the live e-mail arrives");
    assert_eq!(live.recipients(), ["ops@contoso.example"]);
    assert!(live.subject.contains("is live"), "{}", live.subject);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = maildev.emails().await.unwrap();
    assert_eq!(all.len(), 2, "one onboarding and one live e-mail: {all:?}");
    let _ = page.browser.close().await;
}
