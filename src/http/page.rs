//! The Quick Start page of one tenant: what the customer's administrator sees.
//!
//! [`view`] computes what the page shows from the Tenant (its status lines, as the Tenant
//! controller wrote them) and the configuration; [`render`] turns it into HTML with every
//! value escaped; the same view, as JSON, is what the page's script polls to update itself.
//! The script and the style sheet are served by the operator ([`SCRIPT`], [`STYLE`]): the page
//! loads nothing from anywhere else, and its Content-Security-Policy says so.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::config::OperatorConfig;
use crate::consent_link;
use crate::crd::{ConsentState, Health, Tenant};
use crate::links::SigningKeys;

/// The page's script: polls the view and updates the rows, the summary and the live region.
pub const SCRIPT: &str = include_str!("quickstart.js");
/// The page's style sheet.
pub const STYLE: &str = include_str!("quickstart.css");
/// Where [`SCRIPT`] and [`STYLE`] are served.
pub const SCRIPT_PATH: &str = "/quickstart-assets/page.js";
pub const STYLE_PATH: &str = "/quickstart-assets/page.css";
/// How often the page asks for its view, in milliseconds (the script reads it from the page).
pub const POLL_MS: u64 = 3000;

/// What the page shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageView {
    pub customer: String,
    pub license_type: String,
    /// Every mandatory consent granted and the tenant `OK`.
    pub ready: bool,
    /// One sentence: ready, or how many required consents are still needed.
    pub summary: String,
    /// Mandatory consents first, optional ones last.
    pub consents: Vec<ConsentView>,
}

/// One consent on the page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentView {
    pub key: String,
    /// What the consent is for, in two words.
    pub title: String,
    /// The platform application the admin consents to, e.g. `recording-hue`.
    pub app: String,
    pub optional: bool,
    /// `Pending`, `Granted`, `Partial`, `Revoked` or `Error`.
    pub state: String,
    /// The state in words.
    pub label: String,
    /// What the consent allows, in plain words.
    pub allows: String,
    /// The permissions behind it, as Microsoft's consent page lists them.
    pub permissions: Vec<String>,
    /// The admin-consent link, returning to this page; absent once granted or before the
    /// operator has made it.
    pub url: Option<String>,
}

/// The page's view of `tenant` at `now`; consent links carry `token` back to the page through
/// their `state`, signed anew with `keys` ([`consent_link::returning_to_page`]).
pub fn view(
    tenant: &Tenant,
    config: &OperatorConfig,
    token: &str,
    keys: &SigningKeys,
    now: Timestamp,
) -> PageView {
    let status = tenant.status.clone().unwrap_or_default();
    let mut consents: Vec<ConsentView> = status
        .consents
        .iter()
        .map(|line| {
            let configured = config.consents.get(&line.name);
            let permissions: Vec<String> = configured
                .map(|c| {
                    c.application_permissions
                        .iter()
                        .chain(&c.delegated_scopes)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let app = configured
                .map(|c| c.display_name.clone())
                .unwrap_or_else(|| line.name.clone());
            ConsentView {
                key: line.name.clone(),
                title: title(&line.name),
                allows: allows(&line.name, &app, &permissions),
                app,
                optional: line.optional,
                state: line.state.as_str().to_owned(),
                label: state_label(line.state).to_owned(),
                permissions,
                url: line
                    .consent_url
                    .as_deref()
                    .filter(|_| line.state != ConsentState::Granted)
                    .map(|url| consent_link::returning_to_page(url, keys, token, now)),
            }
        })
        .collect();
    consents.sort_by_key(|c| (c.optional, rank(&c.key)));
    let ready = status.health == Some(Health::Ok);
    let missing = consents
        .iter()
        .filter(|c| !c.optional && c.state != "Granted")
        .count();
    let summary = if ready {
        "Every required consent is granted and recording is set up.".to_owned()
    } else if consents.is_empty() {
        "Your consents are being prepared; this page updates by itself.".to_owned()
    } else if missing == 0 {
        "Every required consent is granted; the platform is finishing the set-up.".to_owned()
    } else {
        format!(
            "{missing} of {} required consents still to grant.",
            consents.iter().filter(|c| !c.optional).count()
        )
    };
    PageView {
        customer: tenant.spec.customer_name.clone(),
        license_type: status
            .license_type
            .unwrap_or_else(|| tenant.spec.license.display_type().to_owned()),
        ready,
        summary,
        consents,
    }
}

/// The order consents are granted in: the directory first (its token is how the platform
/// verifies the rest, the sign-in consent in particular), sign-in, recording, the paired bot,
/// messages; other keys after, by name.
fn rank(key: &str) -> (usize, String) {
    const ORDER: &[&str] = &[
        "directory",
        "login",
        "recording",
        "redundantRecording",
        "instantMessages",
        "teamsApp",
    ];
    (
        ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len()),
        key.to_owned(),
    )
}

fn title(key: &str) -> String {
    match key {
        "login" => "Sign-in",
        "directory" => "Users and groups",
        "recording" => "Call recording",
        "redundantRecording" => "Redundant recording",
        "instantMessages" => "Chat messages",
        "teamsApp" => "Teams app",
        other => other,
    }
    .to_owned()
}

fn state_label(state: ConsentState) -> &'static str {
    match state {
        ConsentState::Pending => "Waiting for your consent",
        ConsentState::Granted => "Granted",
        ConsentState::Partial => "Partly granted: open the link again",
        ConsentState::Revoked => "Revoked: please grant it again",
        ConsentState::Error => "Cannot be checked yet",
    }
}

/// What a consent lets the platform do, in the words of its customer.
fn allows(key: &str, app: &str, permissions: &[String]) -> String {
    match key {
        "login" => "Lets your users sign in to the recording portal with their Microsoft 365 account; it reads only their basic profile.".to_owned(),
        "directory" => "Lets the platform read your users and groups, to choose whose calls are recorded, and check the platform's applications in your tenant, to confirm the other consents.".to_owned(),
        "recording" => "Lets the recording bot join the Teams calls and meetings your policy records, and receive their audio.".to_owned(),
        "redundantRecording" => "Lets a second, paired recording bot do the same, so a call is still recorded if one bot fails.".to_owned(),
        "instantMessages" => "Lets the platform read chat and channel messages, to archive them with the recordings.".to_owned(),
        "teamsApp" => "Optional: lets the platform publish its Teams app to your organisation's app catalogue.".to_owned(),
        _ if permissions.is_empty() => format!("Lets the application {app} work in your tenant."),
        _ => format!("Gives the application {app} these permissions: {}.", permissions.join(", ")),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's HTML. `state_path` is where the script polls the view.
pub fn render(view: &PageView, state_path: &str) -> String {
    let e = escape;
    let rows: String = view.consents.iter().map(render_consent).collect();
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Quick Start: {customer}</title>
<link rel="stylesheet" href="{STYLE_PATH}">
<script src="{SCRIPT_PATH}" defer></script>
</head>
<body data-state-url="{state}" data-poll-ms="{POLL_MS}">
<a class="skip" href="#consents">Skip to the consents</a>
<header>
<p class="platform">Teams compliance recording</p>
<h1>Quick Start for {customer}</h1>
<dl class="facts"><dt>Customer</dt><dd id="customer">{customer}</dd><dt>License</dt><dd id="license">{license}</dd></dl>
</header>
<main>
<section aria-labelledby="progress-title" class="progress {progress_class}" id="progress">
<h2 id="progress-title">Status: <span id="overall">{overall}</span></h2>
<p id="summary" role="status" aria-live="polite">{summary}</p>
</section>
<section aria-labelledby="consents-title">
<h2 id="consents-title">Consents</h2>
<p>A Global administrator of your Microsoft 365 tenant grants each consent below: the button opens Microsoft's consent page, and after you accept, Microsoft brings you back here.</p>
<ol class="consents" id="consents">
{rows}</ol>
</section>
<section aria-labelledby="next-title">
<h2 id="next-title">What happens next</h2>
<ol class="steps">
<li>After you accept a consent, Microsoft returns you to this page and the platform checks the consent at once; its row turns <strong>Granted</strong> within a minute.</li>
<li>This page updates by itself; you do not need to reload it.</li>
<li>When every required consent is granted, the status above turns <strong>Ready</strong>, the platform finishes setting up recording and storage, and your contacts receive an e-mail.</li>
<li>Optional consents can be granted at any time later; they never hold recording back.</li>
</ol>
</section>
<p class="announce" id="announce" aria-live="polite" role="log"></p>
</main>
</body>
</html>
"##,
        customer = e(&view.customer),
        license = e(&view.license_type),
        state = e(state_path),
        progress_class = if view.ready { "ready" } else { "waiting" },
        overall = if view.ready {
            "Ready"
        } else {
            "Waiting for consents"
        },
        summary = e(&view.summary),
    )
}

fn render_consent(c: &ConsentView) -> String {
    let e = escape;
    let id = format!("consent-{}", e(&c.key));
    let button = match &c.url {
        Some(url) => format!(
            r#"<a class="button" id="{id}-link" href="{}" aria-describedby="{id}-title">Grant consent</a>"#,
            e(url)
        ),
        None => format!(
            r#"<a class="button" id="{id}-link" hidden aria-describedby="{id}-title">Grant consent</a>"#
        ),
    };
    format!(
        r#"<li class="consent state-{state_class}" id="{id}" data-key="{key}" data-state="{state}">
<div class="consent-head"><h3 id="{id}-title">{title}{optional}</h3>
<p class="state" id="{id}-state"><span class="visually-hidden">State: </span><span class="badge">{label}</span></p></div>
<p class="allows">{allows}</p>
<p class="permissions">Application <strong>{app}</strong>: {permissions}</p>
{button}
</li>
"#,
        state_class = e(&c.state.to_ascii_lowercase()),
        state = e(&c.state),
        key = e(&c.key),
        title = e(&c.title),
        app = e(&c.app),
        optional = if c.optional {
            r#" <span class="optional">(optional)</span>"#
        } else {
            ""
        },
        label = e(&c.label),
        allows = e(&c.allows),
        permissions = e(&c.permissions.join(" · ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tenant::{ConsentSummary, TenantStatus};

    fn keys() -> SigningKeys {
        SigningKeys::parse("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "test keys").unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn view(tenant: &Tenant, config: &OperatorConfig, token: &str) -> PageView {
        super::view(tenant, config, token, &keys(), at(1_000))
    }

    fn tenant(customer: &str, lines: &[(&str, ConsentState, bool)], ok: bool) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "contoso", "uid": "0b7c4e1a-2f3d-4c5b-8a9e-1d2c3b4a5f60"},
            "spec": {
                "customerName": customer, "domain": "contoso.onmicrosoft.com",
                "shortName": "Contoso", "contactEmails": ["ops@contoso.com"],
                "adminUpns": ["admin@contoso.onmicrosoft.com"], "license": "Pro",
                "includedUsers": 10, "storage": {"location": "westeurope"}
            }
        }))
        .unwrap();
        t.status = Some(TenantStatus {
            health: Some(if ok { Health::Ok } else { Health::Warning }),
            license_type: Some("Audio & Redundancy".into()),
            consents: lines
                .iter()
                .map(|(name, state, optional)| ConsentSummary {
                    name: name.to_string(),
                    state: *state,
                    optional: *optional,
                    consent_url: Some(format!(
                        "https://login.example.com/t/v2.0/adminconsent?client_id=1&state={}",
                        consent_link::sign(&keys(), "tenant-contoso", name, None, at(2_000))
                    )),
                })
                .collect(),
            ..Default::default()
        });
        t
    }

    #[test]
    fn mandatory_consents_come_first_in_granting_order_and_the_optional_last() {
        let t = tenant(
            "Contoso",
            &[
                ("directory", ConsentState::Granted, false),
                ("instantMessages", ConsentState::Pending, false),
                ("login", ConsentState::Revoked, false),
                ("teamsApp", ConsentState::Pending, true),
                ("recording", ConsentState::Pending, false),
            ],
            false,
        );
        let token = keys().sign("contoso", "uid", at(5_000));
        let v = view(&t, &OperatorConfig::default(), &token);
        let order: Vec<&str> = v.consents.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            order,
            [
                "directory",
                "login",
                "recording",
                "instantMessages",
                "teamsApp"
            ]
        );
        assert_eq!(v.summary, "3 of 4 required consents still to grant.");
        assert!(!v.ready);
        assert_eq!(v.license_type, "Audio & Redundancy");
        let directory = &v.consents[0];
        assert_eq!(directory.url, None, "a granted consent has no button");
        assert_eq!(directory.app, "recording-aad");
        assert!(directory.permissions.contains(&"Group.Read.All".to_owned()));
        let login = &v.consents[1];
        assert_eq!(login.label, "Revoked: please grant it again");
        let url = login.url.as_deref().unwrap();
        let state = consent_link::state_of(url).unwrap();
        let grant = consent_link::open(&keys(), &state, at(1_000)).unwrap();
        assert_eq!(
            (grant.name.as_str(), grant.page.as_deref()),
            ("login", Some(token.as_str())),
            "the callback finds the page: {url}"
        );
        assert!(url.contains("client_id=1"), "{url}");
    }

    #[test]
    fn a_ready_tenant_says_so() {
        let t = tenant("Contoso", &[("login", ConsentState::Granted, false)], true);
        let v = view(&t, &OperatorConfig::default(), "T");
        assert!(v.ready);
        assert_eq!(
            v.summary,
            "Every required consent is granted and recording is set up."
        );
        assert!(render(&v, "/s").contains(r#"<span id="overall">Ready</span>"#));
    }

    #[test]
    fn every_value_is_escaped() {
        let t = tenant(
            "<script>alert('x')</script>&\"",
            &[("login", ConsentState::Pending, false)],
            false,
        );
        let mut v = view(&t, &OperatorConfig::default(), "T");
        v.consents[0].url = Some("https://x.example.com/?a=1&b=\"><script>".into());
        let html = render(&v, "/quickstart/T/state");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(html.contains("href=\"https://x.example.com/?a=1&amp;b=&quot;&gt;&lt;script&gt;\""));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
    }
}
