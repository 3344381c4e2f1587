//! Sign-in with Microsoft in front of a tenant's page, browser-free: a small cookie-keeping
//! client goes through the operator's `/signin/*` routes and the identity simulator's login
//! form. A listed administrator of the tenant is admitted; a user of the same tenant not
//! listed, a listed UPN of another tenant, and forged or expired ID tokens are refused; before
//! the `login` consent exists the admin is sent to grant it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use common::Harness;
use recording_operator::config::{SecretRef, Secrets, SignInConfig};
use recording_operator::crd::ConsentState;
use recording_operator::demo::{DEMO_PASSWORD, OPERATOR_NAMESPACE};
use recording_operator::signin::{SignIn, REFUSAL, SESSION_COOKIE};
use sim::m365::IdTokenFault;

const T: Duration = Duration::from_secs(30);
const COOKIE_KEY: &str = "a-cookie-signing-key-of-forty-characters!";

/// A browser that keeps the operator's cookies and follows redirects by hand.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    /// Every `Set-Cookie` line the operator sent.
    set_cookies: Vec<String>,
}

struct Page {
    status: u16,
    url: String,
    body: String,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    async fn follow(&mut self, mut response: reqwest::Response) -> Page {
        loop {
            let url = response.url().to_string();
            for v in response.headers().get_all("set-cookie") {
                let line = v.to_str().unwrap().to_string();
                let (pair, _) = line.split_once(';').unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.into(), value.into());
                }
                self.set_cookies.push(line);
            }
            if response.status().is_redirection() {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                let next = url::Url::parse(&url).unwrap().join(&location).unwrap();
                response = self.send(self.http.get(next.as_str())).await;
                continue;
            }
            let status = response.status().as_u16();
            return Page {
                status,
                url,
                body: response.text().await.unwrap(),
            };
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header("cookie", cookie).send().await.unwrap()
    }

    async fn open(&mut self, url: &str) -> Page {
        let r = self.send(self.http.get(url)).await;
        self.follow(r).await
    }

    /// Opens `url` and, on the simulator's login form, signs in as `user`.
    async fn sign_in(&mut self, url: &str, user: &str) -> Page {
        let page = self.open(url).await;
        assert!(
            page.body.contains("name=\"flow\""),
            "login form expected: {}",
            page.body
        );
        let start = page.body.find("name=\"flow\" value=\"").unwrap() + 19;
        let flow = page.body[start..].split('"').next().unwrap().to_string();
        let action_start = page.body.find("action=\"").unwrap() + 8;
        let action = page.body[action_start..].split('"').next().unwrap();
        let login = url::Url::parse(&page.url).unwrap().join(action).unwrap();
        let r = self
            .send(self.http.post(login.as_str()).form(&[
                ("flow", flow.as_str()),
                ("username", user),
                ("password", DEMO_PASSWORD),
            ]))
            .await;
        self.follow(r).await
    }
}

fn tenant_yaml() -> &'static str {
    r#"
apiVersion: recording.m365.io/v1alpha1
kind: Tenant
metadata:
  name: contoso
spec:
  customerName: contoso-customer
  domain: contoso.onmicrosoft.com
  shortName: contoso
  contactEmails: [ops@example.com]
  adminUpns: [admin@contoso.onmicrosoft.com, admin@fabrikam.onmicrosoft.com]
  license: Essentials
  includedUsers: 10
  storage:
    location: westeurope
"#
}

/// The operator's sign-in routes and a page only the tenant's signed-in admins see.
async fn serve(h: &Harness) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect_uri = format!("{base}/signin/callback");
    let login_app = h.platform.config.consents["login"].app_id.clone();
    h.platform.m365.add_redirect_uri(&login_app, &redirect_uri);
    h.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: signin\n  namespace: {OPERATOR_NAMESPACE}\nstringData:\n  cookieKey: {COOKIE_KEY}\n"
    ))
    .await;
    let mut config = h.platform.config.clone();
    config.sign_in = Some(SignInConfig {
        enabled: true,
        redirect_uri,
        cookie_key: SecretRef::SecretRef {
            namespace: OPERATOR_NAMESPACE.into(),
            name: "signin".into(),
            key: "cookieKey".into(),
        },
        session_ttl: Duration::from_secs(600),
    });
    let secrets = Secrets::with_kube(h.client());
    let signin = SignIn::from_config(&config, &secrets, h.client())
        .await
        .expect("sign-in configured")
        .expect("sign-in on");
    let guard = signin.clone();
    let page = move |Path(tenant): Path<String>, headers: HeaderMap| {
        let guard = guard.clone();
        async move {
            match guard.session(&headers, &tenant) {
                Some(s) => format!("Quick Start of {tenant} for {}", s.upn).into_response(),
                None => Redirect::to(&SignIn::start_url(&tenant, &format!("/page/{tenant}")))
                    .into_response(),
            }
        }
    };
    let app: Router = Router::new()
        .route("/page/{tenant}", get(page))
        .merge(signin.router());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    base
}

fn login_state(t: &recording_operator::crd::Tenant) -> Option<ConsentState> {
    t.status
        .as_ref()?
        .consents
        .iter()
        .find(|c| c.name == "login")
        .map(|c| c.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_administrators_of_the_tenant_sign_in_and_bad_tokens_are_refused() {
    let h = Harness::start().await;
    h.apply(tenant_yaml()).await;
    let base = serve(&h).await;
    let page_url = format!("{base}/page/contoso");
    h.wait_consent_links("contoso", T).await;

    // Before the login consent: straight to its admin-consent page.
    let b = Browser::new();
    let r = b.send(b.http.get(&page_url)).await;
    assert_eq!(r.status(), 303, "not signed in: to the sign-in");
    let start = b
        .send(b.http.get(format!(
            "{base}{}",
            SignIn::start_url("contoso", "/page/contoso")
        )))
        .await;
    assert_eq!(start.status(), 302);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("/v2.0/adminconsent?"), "{location}");
    assert!(
        location.contains(&h.platform.config.consents["login"].app_id),
        "{location}"
    );

    h.accept_consents("contoso").await;
    h.wait_tenant("contoso", T, |t| {
        login_state(t) == Some(ConsentState::Granted)
    })
    .await;

    // A listed administrator of the tenant.
    let mut admin = Browser::new();
    let page = admin
        .sign_in(&page_url, "admin@contoso.onmicrosoft.com")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body,
        "Quick Start of contoso for admin@contoso.onmicrosoft.com"
    );
    let session = admin
        .set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(session.contains("Max-Age=600"), "{session}");
    assert!(
        !session.contains("Secure"),
        "plain HTTP on loopback: {session}"
    );
    // The cookie opens only this tenant's page.
    let other = admin.open(&format!("{base}/page/fabrikam")).await;
    assert_ne!(
        other.body,
        "Quick Start of fabrikam for admin@contoso.onmicrosoft.com"
    );

    // A user of the same tenant who is not listed.
    let mut user = Browser::new();
    let page = user
        .sign_in(&page_url, "globaladmin@contoso.onmicrosoft.com")
        .await;
    assert_eq!((page.status, page.body.as_str()), (403, REFUSAL));
    assert!(!user.cookies.contains_key(SESSION_COOKIE));

    // A listed UPN, but of another Entra tenant (whose admin consented to the login app).
    let fabrikam = h.platform.tenant_id("fabrikam.onmicrosoft.com").unwrap();
    h.platform
        .m365
        .grant_consent(&fabrikam, &h.platform.config.consents["login"].app_id);
    let mut stranger = Browser::new();
    let page = stranger
        .sign_in(&page_url, "admin@fabrikam.onmicrosoft.com")
        .await;
    assert_eq!((page.status, page.body.as_str()), (403, REFUSAL));

    // A forged ID token: a non-listed user's token claiming the admin's UPN.
    h.platform
        .m365
        .set_id_token_fault(Some(IdTokenFault::Forged(
            "admin@contoso.onmicrosoft.com".into(),
        )));
    let mut forger = Browser::new();
    let page = forger
        .sign_in(&page_url, "globaladmin@contoso.onmicrosoft.com")
        .await;
    assert_eq!((page.status, page.body.as_str()), (403, REFUSAL));

    // An expired one, for the listed admin.
    h.platform
        .m365
        .set_id_token_fault(Some(IdTokenFault::Expired));
    let mut late = Browser::new();
    let page = late
        .sign_in(&page_url, "admin@contoso.onmicrosoft.com")
        .await;
    assert_eq!((page.status, page.body.as_str()), (403, REFUSAL));

    // Another audience, and another nonce.
    for fault in [IdTokenFault::WrongAudience, IdTokenFault::WrongNonce] {
        h.platform.m365.set_id_token_fault(Some(fault));
        let mut b = Browser::new();
        let page = b.sign_in(&page_url, "admin@contoso.onmicrosoft.com").await;
        assert_eq!((page.status, page.body.as_str()), (403, REFUSAL));
    }
    h.platform.m365.set_id_token_fault(None);

    // A tampered session cookie is no session.
    let mut tampered = Browser::new();
    let value = admin.cookies[SESSION_COOKIE].clone();
    let (payload, sig) = value.split_once('.').unwrap();
    tampered
        .cookies
        .insert(SESSION_COOKIE.into(), format!("{payload}x.{sig}"));
    let r = tampered.send(tampered.http.get(&page_url)).await;
    assert_eq!(r.status(), 303);

    // Each refusal for its own reason.
    let logs = common::captured_logs();
    for reason in [
        "the user is not in spec.adminUpns",
        "InvalidIssuer",
        "InvalidSignature",
        "ExpiredSignature",
        "InvalidAudience",
        "the nonce does not match",
    ] {
        assert!(logs.contains(reason), "a refusal because {reason}");
    }
    // No secret or cookie key in what the operator logged.
    assert!(!logs.contains(COOKIE_KEY));
    assert!(!logs.contains(&h.platform.seed.app("recording-auth").unwrap().secrets[0].value));
    h.stop().await;
}
