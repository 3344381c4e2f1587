//! Sign-in in front of the Quick Start page, in headless Chromium: with sign-in on, a listed
//! administrator who opens the Tenant's Quick Start link lands on the identity simulator's
//! login form, signs in, and is back on the page; a user of the same tenant not in
//! `spec.adminUpns`, a listed UPN signing in from another Entra tenant, a forged ID token and
//! an expired one get the one plain refusal; without a session the page redirects to the
//! sign-in and its JSON answers 401. Before the `login` consent exists, the admin who opens the
//! page is led through that consent and lands back on the page, signed in. (With sign-in off the page opens directly:
//! tests/quickstart_browser.rs.) Screenshots under target/quickstart-screens/.

mod common;

use std::time::Duration;

use common::browser::{Driver, QuickStart, T};
use common::Harness;
use fantoccini::Locator;
use recording_operator::crd::ConsentState;
use recording_operator::demo::{PlatformOptions, DEMO_PASSWORD};
use recording_operator::http::public::serve;
use recording_operator::signin::{SignIn, SESSION_COOKIE};
use sim::m365::IdTokenFault;

fn tenant_yaml() -> &'static str {
    r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: contoso
spec:
  customerName: ContosoLtd
  domain: contoso.onmicrosoft.com
  shortName: contoso
  contactEmails: [ops@contoso.example]
  adminUpns: [admin@contoso.onmicrosoft.com, admin@fabrikam.onmicrosoft.com]
  license: Essentials
  includedUsers: 50
  storage:
    location: westeurope
"#
}

/// The demo platform with sign-in on, and the operator's public listener at the apps'
/// redirect URIs (`/consent/callback`, `/signin/callback`); the listener's base URL.
async fn harness() -> (Harness, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let h = Harness::start_with(PlatformOptions {
        redirect_uri: format!("{base}/consent/callback"),
        sign_in: true,
        ..Default::default()
    })
    .await;
    assert!(h.platform.signin.is_some(), "sign-in is on");
    tokio::spawn(serve(
        listener,
        h.platform.public_router(),
        std::future::pending(),
    ));
    (h, base)
}

/// [`harness`] with the Tenant applied and its consent links made; its Quick Start link.
async fn harness_with_tenant() -> (Harness, String, String) {
    let (h, base) = harness().await;
    h.apply(tenant_yaml()).await;
    let tenant = h.wait_consent_links("contoso", T).await;
    let url = tenant
        .status
        .as_ref()
        .and_then(|s| s.quick_start_url.clone())
        .expect("a Quick Start link");
    (h, base, url)
}

/// Signs in on the simulator's login form the browser is on, as `user`.
async fn fill_login_form(page: &mut QuickStart, user: &str) {
    page.wait_for("#username", "the login form").await;
    page.screenshot(&format!("signin-form-{}", user.split('@').next().unwrap()))
        .await;
    let field = |css| page.browser.find(Locator::Css(css));
    field("#username")
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    field("#password")
        .await
        .unwrap()
        .send_keys(DEMO_PASSWORD)
        .await
        .unwrap();
    field("#sign-in").await.unwrap().click().await.unwrap();
}

/// Waits until the browser, through the login form and the operator's callback, shows the one
/// plain refusal.
async fn wait_refusal(page: &QuickStart) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let heading = match page.browser.find(Locator::Css("h1")).await {
            Ok(h1) => h1.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if heading == "You cannot sign in here" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal: {heading}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_admin_signs_in_to_the_quick_start_page_and_others_are_refused() {
    let (h, base, url) = harness_with_tenant().await;
    let token = url.rsplit('/').next().unwrap().to_string();
    // Signing in needs the login app's consent (before it, /signin/start leads to it: tests/signin.rs).
    h.accept_consents("contoso").await;
    h.wait_tenant("contoso", T, |t| {
        t.status.as_ref().is_some_and(|s| {
            s.consents
                .iter()
                .any(|c| c.name == "login" && c.state == ConsentState::Granted)
        })
    })
    .await;

    // Without a session: the page sends to the sign-in, its JSON says 401.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        SignIn::start_url("contoso", &format!("/quickstart/{token}")).as_str()
    );
    let r = http.get(format!("{url}/state")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The sign-in starts only from a valid Quick Start link of the Tenant: a forged one, one
    // of another Tenant and an unknown Tenant get one refusal, telling nobody which exist.
    let bad_starts = [
        SignIn::start_url("contoso", "/quickstart/forged"),
        SignIn::start_url("contoso", "/elsewhere"),
        SignIn::start_url("fabrikam", &format!("/quickstart/{token}")),
        SignIn::start_url("no-such-customer", &format!("/quickstart/{token}")),
    ];
    for start in bad_starts {
        let r = http.get(format!("{base}{start}")).send().await.unwrap();
        assert_eq!(r.status(), 403, "{start}");
        assert_eq!(r.text().await.unwrap(), recording_operator::signin::REFUSAL);
    }
    // A bad link is still the one refusal, sign-in or not.
    let r = http
        .get(format!("{base}/quickstart/not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let (_driver, browser) = Driver::start().await;
    let mut page = QuickStart { browser, step: 0 };

    // The listed admin: login form, then back on the page.
    page.browser.goto(&url).await.unwrap();
    fill_login_form(&mut page, "admin@contoso.onmicrosoft.com").await;
    page.wait_for("#consents", "back on the Quick Start page")
        .await;
    assert_eq!(page.browser.current_url().await.unwrap().as_str(), url);
    page.screenshot("signin-admin-on-the-page").await;
    assert_eq!(page.text("#customer").await, "ContosoLtd");
    let rows = page.rows().await;
    assert!(
        rows.iter().any(|(k, s, _)| k == "login" && s == "Granted"),
        "{rows:?}"
    );
    let cookie = page.browser.get_named_cookie(SESSION_COOKIE).await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    // The page keeps polling its JSON with the session: reopening needs no second sign-in.
    page.browser.goto(&url).await.unwrap();
    page.wait_for("#consents", "the page again, without the login form")
        .await;
    // Its script's first poll (after POLL_MS) carries the sign-in: no 401, so no reload.
    page.mark_document().await;
    tokio::time::sleep(Duration::from_millis(
        recording_operator::http::page::POLL_MS + 1500,
    ))
    .await;
    assert!(page.not_reloaded().await, "the poll was admitted");

    // A user of the same tenant who is not listed: the one plain refusal, no page.
    page.browser.delete_all_cookies().await.unwrap();
    page.browser.goto(&url).await.unwrap();
    fill_login_form(&mut page, "globaladmin@contoso.onmicrosoft.com").await;
    wait_refusal(&page).await;
    page.screenshot("signin-user-refused").await;
    assert!(page.browser.find(Locator::Css("#consents")).await.is_err());
    assert!(page.browser.get_named_cookie(SESSION_COOKIE).await.is_err());

    // A listed UPN, but its account lives in another Entra tenant (whose admin consented to
    // the login app there): the same refusal, no session.
    let fabrikam = h.platform.tenant_id("fabrikam.onmicrosoft.com").unwrap();
    h.platform
        .m365
        .grant_consent(&fabrikam, &h.platform.config.consents["login"].app_id);
    page.browser.delete_all_cookies().await.unwrap();
    page.browser.goto(&url).await.unwrap();
    fill_login_form(&mut page, "admin@fabrikam.onmicrosoft.com").await;
    wait_refusal(&page).await;
    page.screenshot("signin-other-tenant-refused").await;
    assert!(page.browser.find(Locator::Css("#consents")).await.is_err());
    assert!(page.browser.get_named_cookie(SESSION_COOKIE).await.is_err());

    // An ID token that claims the listed admin but whose signature no longer matches, and an
    // expired one of the listed admin: the same refusal, no session.
    for (fault, user, shot) in [
        (
            IdTokenFault::Forged("admin@contoso.onmicrosoft.com".into()),
            "globaladmin@contoso.onmicrosoft.com",
            "signin-forged-token-refused",
        ),
        (
            IdTokenFault::Expired,
            "admin@contoso.onmicrosoft.com",
            "signin-expired-token-refused",
        ),
    ] {
        h.platform.m365.set_id_token_fault(Some(fault));
        page.browser.delete_all_cookies().await.unwrap();
        page.browser.goto(&url).await.unwrap();
        fill_login_form(&mut page, user).await;
        wait_refusal(&page).await;
        page.screenshot(shot).await;
        assert!(page.browser.find(Locator::Css("#consents")).await.is_err());
        assert!(page.browser.get_named_cookie(SESSION_COOKIE).await.is_err());
    }
    h.platform.m365.set_id_token_fault(None);
    page.browser.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_login_consent_the_admin_consents_and_lands_back_on_the_page() {
    let (h, _base, url) = harness_with_tenant().await;

    // Nothing consented yet: the page → the sign-in → the login app's admin-consent page
    // (the simulator grants at once) → the operator's callback → the sign-in again, which now
    // needs no detour → the login form → back on the page.
    let (_driver, browser) = Driver::start().await;
    let mut page = QuickStart { browser, step: 0 };
    page.browser.goto(&url).await.unwrap();
    fill_login_form(&mut page, "admin@contoso.onmicrosoft.com").await;
    page.wait_for("#consents", "back on the Quick Start page after consenting")
        .await;
    assert_eq!(page.browser.current_url().await.unwrap().as_str(), url);
    page.screenshot("signin-after-login-consent").await;
    // The consent callback believed the signed state: it asked for the login grant's re-check.
    let login: recording_operator::crd::ConsentGrant =
        kube::Api::namespaced(h.client(), "tenant-contoso")
            .get("login")
            .await
            .unwrap();
    assert!(login
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(recording_operator::crd::RECHECK_ANNOTATION));
    page.browser.clone().close().await.unwrap();
    h.stop().await;
}
