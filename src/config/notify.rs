//! The `notifications` section of the operator configuration.
//!
//! ```yaml
//! notifications:
//!   from: "Recording Platform <notifications@platform.example.com>"
//!   replyTo: support@platform.example.com        # optional
//!   smtp:                                       # either smtp ...
//!     host: smtp.office365.com
//!     port: 587                                 # default: 587 starttls, 465 tls, 25 none
//!     tls: starttls                             # starttls | tls | none (loopback only)
//!     username: notifications@platform.example.com
//!     password: { secretRef: { namespace: recording-operator, name: smtp, key: password } }
//!   # graph:                                    # ... or Microsoft Graph sendMail
//!   #   tenantId: <the platform's own Entra tenant>
//!   #   appId: <an app with the Mail.Send application permission>
//!   #   clientSecret: { secretRef: { namespace: recording-operator, name: entra-apps, key: mail } }
//!   #   sender: notifications@platform.example.com   # the mailbox it sends as
//!   storageGrace: 1h                            # storage failing this long is news
//!   maxPerHour: 4                               # e-mails per tenant per hour, at most
//!   retryInitial: 1m                            # a failed e-mail: 1m, 2m, 4m ... 1h
//!   sendTimeout: 30s
//! ```
//!
//! Without the section no e-mail is sent (said once in the operator's log).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SecretRef;

/// How and when the operator e-mails the customers' contacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The sender, `address` or `Display Name <address>`.
    pub from: String,
    /// Where the customers' answers go, when not to `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// SMTP submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// Microsoft Graph `sendMail` from the platform's own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphMailConfig>,
    /// Storage failing for longer than this is notified (default 1h).
    #[serde(default = "default_storage_grace", with = "humantime_serde")]
    pub storage_grace: Duration,
    /// At most this many e-mails per tenant in any hour (default 4).
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// First wait before a failed e-mail is tried again; it doubles per attempt, up to an
    /// hour (default 1m).
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Time allowed for one message's delivery to the transport (default 30s).
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
}

fn default_storage_grace() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_per_hour() -> u32 {
    4
}

fn default_retry_initial() -> Duration {
    Duration::from_secs(60)
}

fn default_send_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "implicit TLS" (port 465).
    Tls,
    /// No encryption: only to a server on the loopback interface (tests, a local relay).
    None,
}

/// SMTP submission settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default by `tls`: 587, 465, 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login name, when the server wants one (then `password` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Where the password is (a Kubernetes Secret, a file or an environment variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

impl SmtpConfig {
    /// The port in effect.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// Microsoft Graph `sendMail` settings: an application of the platform's own tenant with the
/// `Mail.Send` application permission, sending as `sender`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GraphMailConfig {
    /// The platform's own Entra tenant (GUID or domain).
    pub tenant_id: String,
    /// The application (client) id.
    pub app_id: String,
    /// Where its client secret is.
    pub client_secret: SecretRef,
    /// The mailbox the e-mails are sent from (user id or principal name).
    pub sender: String,
}

impl NotificationsConfig {
    /// Every problem, each naming its field.
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Err(e) = crate::notify::message::parse_mailbox(&self.from) {
            problems.push(format!("notifications.from: {e}"));
        }
        if let Some(reply_to) = &self.reply_to {
            if let Err(e) = crate::notify::message::parse_mailbox(reply_to) {
                problems.push(format!("notifications.replyTo: {e}"));
            }
        }
        match (&self.smtp, &self.graph) {
            (None, None) => problems.push(
                "notifications: name a transport, notifications.smtp or notifications.graph (or leave the section out to send no e-mail)".into(),
            ),
            (Some(_), Some(_)) => problems.push(
                "notifications: smtp and graph are alternatives; configure one of them".into(),
            ),
            _ => {}
        }
        if let Some(smtp) = &self.smtp {
            smtp.check(problems);
        }
        if let Some(graph) = &self.graph {
            if !super::is_guid(&graph.app_id) {
                problems.push(format!(
                    "notifications.graph.appId: {:?} is not an application (client) id GUID",
                    graph.app_id
                ));
            }
            if graph.tenant_id.trim().is_empty()
                || !crate::graph::http::is_tenant_segment(&graph.tenant_id)
            {
                problems.push(format!(
                    "notifications.graph.tenantId: {:?} is not a tenant id or domain",
                    graph.tenant_id
                ));
            }
            if graph.sender.trim().is_empty() || graph.sender.contains(['/', '?', '#', ' ']) {
                problems.push(format!(
                    "notifications.graph.sender: {:?} is not a user id or principal name",
                    graph.sender
                ));
            }
            graph
                .client_secret
                .check("notifications.graph.clientSecret", problems);
        }
        if self.max_per_hour == 0 {
            problems.push(
                "notifications.maxPerHour: must be at least 1 (leave the section out to send no e-mail)"
                    .into(),
            );
        }
        if self.retry_initial.is_zero() {
            problems.push("notifications.retryInitial: must be greater than zero".into());
        }
        if self.send_timeout.is_zero() {
            problems.push("notifications.sendTimeout: must be greater than zero".into());
        }
    }
}

impl SmtpConfig {
    fn check(&self, problems: &mut Vec<String>) {
        let host = self.host.trim();
        if host.is_empty() || host.contains(['/', ':', ' ', '@']) && !host.starts_with('[') {
            problems.push(format!(
                "notifications.smtp.host: {:?} is not a host name or address",
                self.host
            ));
        }
        if self.port == Some(0) {
            problems.push("notifications.smtp.port: must be between 1 and 65535".into());
        }
        if self.tls == SmtpTls::None && !is_loopback(host) {
            problems.push(format!(
                "notifications.smtp.tls: none sends the password and the customers' links in clear text; it is allowed only to a server on the loopback interface, not {host:?} (use starttls or tls)"
            ));
        }
        match (&self.username, &self.password) {
            (Some(u), None) if !u.is_empty() => problems.push(
                "notifications.smtp.password: required with notifications.smtp.username".into(),
            ),
            (None, Some(_)) => problems.push(
                "notifications.smtp.username: required with notifications.smtp.password".into(),
            ),
            _ => {}
        }
        if let Some(password) = &self.password {
            password.check("notifications.smtp.password", problems);
        }
    }
}

/// `localhost`, `127.x.y.z` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> NotificationsConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn problems(c: &NotificationsConfig) -> Vec<String> {
        let mut p = Vec::new();
        c.check(&mut p);
        p
    }

    #[test]
    fn a_plain_smtp_connection_is_refused_beyond_loopback_and_each_problem_names_its_field() {
        let c = config(
            "from: 'Platform <notify@platform.example.com>'\nsmtp: {host: mail.example.com, tls: none, username: bot}\nmaxPerHour: 0\n",
        );
        let p = problems(&c).join("\n");
        assert!(p.contains("notifications.smtp.tls: none"), "{p}");
        assert!(p.contains("notifications.smtp.password: required"), "{p}");
        assert!(p.contains("notifications.maxPerHour"), "{p}");

        let fine = config(
            "from: notify@platform.example.com\nsmtp: {host: 127.0.0.1, port: 2525, tls: none}\n",
        );
        assert_eq!(problems(&fine), Vec::<String>::new());
        assert_eq!(fine.storage_grace, Duration::from_secs(3600));
        assert_eq!(fine.max_per_hour, 4);
        let starttls = config("from: a@b.example\nsmtp: {host: smtp.office365.com}\n");
        assert_eq!(starttls.smtp.as_ref().unwrap().port(), 587);
    }

    #[test]
    fn exactly_one_transport_and_a_valid_sender() {
        let none = config("from: 'not an address'\n");
        let p = problems(&none).join("\n");
        assert!(p.contains("notifications.from:"), "{p}");
        assert!(p.contains("name a transport"), "{p}");
        let graph = config(
            "from: a@b.example\ngraph: {tenantId: platform.onmicrosoft.com, appId: nope, sender: 'a b', clientSecret: {env: MAIL_SECRET}}\n",
        );
        let p = problems(&graph).join("\n");
        assert!(p.contains("notifications.graph.appId"), "{p}");
        assert!(p.contains("notifications.graph.sender"), "{p}");
    }
}
