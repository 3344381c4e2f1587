//! What the customer's contacts read: one template per kind of notification, each a plain
//! text and an HTML part of one `multipart/alternative` message.
//!
//! Every value from a Tenant, a ConsentGrant or the configuration is HTML-escaped in the HTML
//! part (links as attribute values too); the text part carries them as they are.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::crd::NotificationKind;

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("{value:?} is not an e-mail address ({why})")]
    Address { value: String, why: String },
    #[error("the message could not be built: {0}")]
    Build(String),
}

/// Parses `address` or `Display Name <address>`.
pub fn parse_mailbox(value: &str) -> Result<Mailbox, MessageError> {
    value.parse::<Mailbox>().map_err(|e| MessageError::Address {
        value: value.to_string(),
        why: e.to_string(),
    })
}

/// One consent as the customer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsentLine {
    /// The platform application's name, e.g. `recording-hue`.
    pub app_name: String,
    /// What granting it allows, in plain words.
    pub allows: String,
    pub optional: bool,
    /// The admin-consent link.
    pub url: Option<String>,
    /// `Pending`, `Granted`, `Revoked`, `Partial`, `Error`.
    pub state: String,
}

/// Everything a template reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Letter {
    pub kind: NotificationKind,
    /// The customer's name (`spec.customerName`).
    pub customer: String,
    /// `Audio Recording` or `Audio & Redundancy`.
    pub license_type: String,
    /// The Quick Start page, when the operator serves one.
    pub quick_start_url: Option<String>,
    /// The consents the kind is about: all of them (onboarding), the revoked or partial ones.
    pub consents: Vec<ConsentLine>,
    /// Storage failing: what fails, and since when (RFC 3339).
    pub storage_problem: Option<(String, String)>,
    /// Secret expiry: the recording service and the days left (≤ 0: expired).
    pub secret: Option<(String, i64)>,
    /// A shortened retention: what will be deleted, and from when.
    pub retention: Option<RetentionNotice>,
}

/// A shortened retention as the customer reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionNotice {
    /// The new retention in days.
    pub days: i32,
    /// From when recordings older than `days` are deleted, e.g. `2027-01-22 08:01 UTC`.
    pub applies: String,
    /// How many recordings that deletes, as of the last count.
    pub recordings: Option<i64>,
}

/// A message's subject and its two bodies.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What each default consent allows, in the customer's words.
pub fn allows(key: &str) -> &'static str {
    match key {
        "login" => "lets your users sign in to the recording platform with their Microsoft 365 accounts",
        "directory" => "lets the platform read your users and groups to choose who is recorded, and check the other consents",
        "recording" => "lets the recording bot join Teams calls and meetings and record their audio",
        "redundantRecording" => "lets the paired, redundant recording bot record the same calls (Audio & Redundancy)",
        "instantMessages" => "lets the platform archive Teams chat and channel messages",
        "teamsApp" => "publishes the platform's Teams app in your organisation (optional)",
        _ => "grants the permissions the platform application lists",
    }
}

/// Renders the template of `letter.kind`.
pub fn render(letter: &Letter) -> Rendered {
    let customer = &letter.customer;
    let mut t = String::new();
    let mut h = String::new();
    let subject;
    t.push_str(&format!("Hello {customer} team,\n\n"));
    h.push_str(&format!("<p>Hello {} team,</p>\n", text(customer)));
    match letter.kind {
        NotificationKind::OnboardingStarted => {
            subject = format!("Welcome to Teams compliance recording, {customer}: your next steps");
            para(&mut t, &mut h, &format!(
                "Your organisation is being set up for Teams compliance recording ({}). One step is yours: a Global administrator of your Microsoft 365 tenant grants consent to the platform's applications below.",
                letter.license_type
            ));
            if let Some(url) = &letter.quick_start_url {
                t.push_str(&format!("The Quick Start page guides your administrator through every consent and shows when each one is detected:\n{url}\n\n"));
                h.push_str(&format!(
                    "<p>The <a href=\"{}\">Quick Start page</a> guides your administrator through every consent and shows when each one is detected.</p>\n",
                    attr(url)
                ));
            }
            consent_list(
                &mut t,
                &mut h,
                &letter.consents,
                "Or open each consent link directly:",
            );
            para(&mut t, &mut h, "After the last required consent the platform detects it on its own within minutes, and we write to you again when recording is live. Nothing else is needed from you.");
        }
        NotificationKind::TenantLive => {
            subject = format!("{customer} is live: Teams compliance recording is active");
            para(&mut t, &mut h, &format!(
                "Every required consent is in place and your storage is ready. Teams compliance recording ({}) is active for your organisation.",
                letter.license_type
            ));
            para(
                &mut t,
                &mut h,
                "If a consent is ever revoked, we will tell you what to grant again.",
            );
        }
        NotificationKind::ConsentRevoked => {
            subject =
                format!("Action needed, {customer}: a consent for Teams recording was revoked");
            para(&mut t, &mut h, "A consent your organisation had granted to the recording platform was revoked or no longer holds every permission. Until a Global administrator grants it again, recording may be interrupted.");
            consent_list(&mut t, &mut h, &letter.consents, "Grant again:");
            if let Some(url) = &letter.quick_start_url {
                t.push_str(&format!("Quick Start page: {url}\n\n"));
                h.push_str(&format!(
                    "<p>The <a href=\"{}\">Quick Start page</a> shows every consent with its live state.</p>\n",
                    attr(url)
                ));
            }
        }
        NotificationKind::StorageFailing => {
            subject = format!("{customer}: recording storage needs attention");
            let (what, since) = letter
                .storage_problem
                .clone()
                .unwrap_or_else(|| ("storage".into(), "recently".into()));
            para(&mut t, &mut h, &format!(
                "The storage for your recordings has been failing since {since}: {what}. Our platform team is informed. If you bring your own storage, please check the storage account and the access it grants."
            ));
        }
        NotificationKind::SecretExpiring30Days
        | NotificationKind::SecretExpiring7Days
        | NotificationKind::SecretExpired => {
            let (service, days) = letter.secret.clone().unwrap_or_default();
            if days <= 0 {
                subject = format!("Action needed, {customer}: the client secret of recording service {service} has expired");
                para(&mut t, &mut h, &format!(
                    "The client secret of the app registration that recording service {service} signs in with has expired. The service can no longer sign in to Microsoft 365: create a new client secret for the app registration in Entra ID and send it to us."
                ));
            } else {
                subject = format!("{customer}: the client secret of recording service {service} expires in {days} day{}", if days == 1 { "" } else { "s" });
                para(&mut t, &mut h, &format!(
                    "The client secret of the app registration that recording service {service} signs in with expires in {days} day{}. Please create a new client secret for it in Entra ID before then and send it to us, so that recording is not interrupted.",
                    if days == 1 { "" } else { "s" }
                ));
            }
        }
        NotificationKind::RetentionShortened => {
            let RetentionNotice {
                days,
                applies,
                recordings,
            } = letter.retention.clone().unwrap_or(RetentionNotice {
                days: 0,
                applies: "soon".into(),
                recordings: None,
            });
            let plural =
                |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
            subject = format!(
                "{customer}: recordings older than {} will be deleted from {applies}",
                plural(days.into(), "day", "days")
            );
            para(&mut t, &mut h, &format!(
                "The retention period for your Teams recordings has been shortened to {}. From {applies}, every recording older than {} is deleted for good.",
                plural(days.into(), "day", "days"),
                plural(days.into(), "day", "days"),
            ));
            if let Some(n) = recordings {
                para(
                    &mut t,
                    &mut h,
                    &format!(
                        "As of our last count, that is {} your current retention still keeps.",
                        plural(n, "recording", "recordings")
                    ),
                );
            }
            para(&mut t, &mut h, &format!(
                "If you need to keep them, please export them before then, or object by replying to this e-mail before {applies}: nothing is deleted under the new retention until that date."
            ));
        }
    }
    t.push_str("Kind regards,\nThe recording platform team\n");
    h.push_str("<p>Kind regards,<br>The recording platform team</p>\n");
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family: Segoe UI, Arial, sans-serif; color: #1b1b1b; line-height: 1.5\">\n{h}</body></html>\n",
        text(&subject)
    );
    Rendered {
        subject,
        text: t,
        html,
    }
}

fn para(t: &mut String, h: &mut String, words: &str) {
    t.push_str(words);
    t.push_str("\n\n");
    h.push_str(&format!("<p>{}</p>\n", text(words)));
}

/// The consents, mandatory first and the optional ones last, each with its link.
fn consent_list(t: &mut String, h: &mut String, consents: &[ConsentLine], intro: &str) {
    if consents.is_empty() {
        return;
    }
    let mut ordered: Vec<&ConsentLine> = consents.iter().collect();
    ordered.sort_by_key(|c| c.optional);
    t.push_str(intro);
    t.push('\n');
    h.push_str(&format!("<p>{}</p>\n<ol>\n", text(intro)));
    for c in ordered {
        let optional = if c.optional { " (optional)" } else { "" };
        let state = if c.state == "Granted" {
            " — already granted"
        } else {
            ""
        };
        t.push_str(&format!(
            "- {}{optional}{state}: {}\n",
            c.app_name, c.allows
        ));
        h.push_str(&format!(
            "<li><strong>{}</strong>{}{}: {}",
            text(&c.app_name),
            text(optional),
            text(state),
            text(&c.allows)
        ));
        if let Some(url) = &c.url {
            t.push_str(&format!("  {url}\n"));
            h.push_str(&format!(
                "<br><a href=\"{}\">Grant consent for {}</a>",
                attr(url),
                text(&c.app_name)
            ));
        }
        h.push_str("</li>\n");
    }
    t.push('\n');
    h.push_str("</ol>\n");
}

/// The e-mail: `from`, optional `reply_to`, one `To` per recipient, both parts.
pub fn build(
    from: &Mailbox,
    reply_to: Option<&Mailbox>,
    to: &[Mailbox],
    rendered: &Rendered,
) -> Result<Message, MessageError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(rendered.subject.clone());
    if let Some(reply_to) = reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(rendered.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(rendered.html.clone()),
                ),
        )
        .map_err(|e| MessageError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onboarding() -> Letter {
        Letter {
            kind: NotificationKind::OnboardingStarted,
            customer: "Contoso <script>".into(),
            license_type: "Audio & Redundancy".into(),
            quick_start_url: Some("https://operator.example.com/quickstart/contoso?exp=1&sig=ab\"c".into()),
            consents: vec![
                ConsentLine {
                    app_name: "recording-teams".into(),
                    allows: allows("teamsApp").into(),
                    optional: true,
                    url: Some("https://login.example/teams".into()),
                    state: "Pending".into(),
                },
                ConsentLine {
                    app_name: "recording-hue".into(),
                    allows: allows("recording").into(),
                    optional: false,
                    url: Some("https://login.example/common/v2.0/adminconsent?client_id=1&scope=x&state=a/b".into()),
                    state: "Pending".into(),
                },
            ],
            storage_problem: None,
            secret: None,
            retention: None,
        }
    }

    #[test]
    fn the_onboarding_mail_lists_each_consent_link_mandatory_first_and_escapes_every_value() {
        let r = render(&onboarding());
        assert!(
            r.subject.contains("Contoso <script>"),
            "the subject is text: {}",
            r.subject
        );
        assert!(r.text.contains(
            "https://login.example/common/v2.0/adminconsent?client_id=1&scope=x&state=a/b"
        ));
        assert!(r.text.find("recording-hue").unwrap() < r.text.find("recording-teams").unwrap());
        assert!(r.text.contains("recording-teams (optional)"));
        assert!(r
            .text
            .contains("https://operator.example.com/quickstart/contoso?exp=1&sig=ab\"c"));
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("Contoso &lt;script&gt;"));
        assert!(r.html.contains("Audio &amp; Redundancy"));
        assert!(r.html.contains(
            "href=\"https://login.example/common/v2.0/adminconsent?client_id=1&amp;scope=x&amp;state=a/b\""
        ), "{}", r.html);
        assert!(r.html.contains("sig=ab&quot;c\""), "{}", r.html);
    }

    #[test]
    fn without_a_quick_start_link_the_consent_links_stand_alone() {
        let mut letter = onboarding();
        letter.quick_start_url = None;
        let r = render(&letter);
        assert!(!r.text.contains("Quick Start"));
        assert!(r.text.contains("https://login.example/teams"));
    }

    #[test]
    fn secret_notices_count_the_days_and_say_when_it_has_expired() {
        let mut letter = onboarding();
        letter.kind = NotificationKind::SecretExpiring7Days;
        letter.secret = Some(("hue01".into(), 1));
        assert!(render(&letter).subject.ends_with("expires in 1 day"));
        letter.kind = NotificationKind::SecretExpired;
        letter.secret = Some(("hue01".into(), -2));
        assert!(render(&letter).subject.contains("has expired"));
    }

    #[test]
    fn a_message_has_a_text_and_an_html_alternative() {
        let r = render(&onboarding());
        let from = parse_mailbox("Platform <notify@platform.example.com>").unwrap();
        let to = [parse_mailbox("ops@contoso.com").unwrap()];
        let m = build(&from, None, &to, &r).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(parse_mailbox("not an address").is_err());
    }

    #[test]
    fn a_shortened_retention_says_what_goes_from_when_and_how_to_object() {
        let mut letter = onboarding();
        letter.kind = NotificationKind::RetentionShortened;
        letter.retention = Some(RetentionNotice {
            days: 365,
            applies: "2027-01-22 08:01 UTC <b>".into(),
            recordings: Some(1),
        });
        let r = render(&letter);
        assert!(
            r.subject.ends_with(
                "recordings older than 365 days will be deleted from 2027-01-22 08:01 UTC <b>"
            ),
            "{}",
            r.subject
        );
        assert!(r.text.contains("older than 365 days"), "{}", r.text);
        assert!(
            r.text.contains("that is 1 recording your current"),
            "{}",
            r.text
        );
        assert!(r
            .text
            .contains("replying to this e-mail before 2027-01-22 08:01 UTC"));
        assert!(
            !r.html.contains("<b>") && !r.html.contains("<script>"),
            "{}",
            r.html
        );
        assert!(
            r.html.contains("2027-01-22 08:01 UTC &lt;b&gt;"),
            "{}",
            r.html
        );

        letter.retention.as_mut().unwrap().recordings = None;
        assert!(!render(&letter).text.contains("last count"));
    }
}
