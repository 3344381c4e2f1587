//! Handing a message to the mail system: SMTP submission (`lettre`), or Microsoft Graph
//! `sendMail` from the platform's own tenant (the MIME message, base64-encoded, as Graph
//! accepts it, so both parts travel as they are).
//!
//! Every failure is a [`SendError`] that names what went wrong and never holds a credential:
//! the SMTP password and the Graph client secret stay in [`SecretString`]s, and the servers'
//! answers are scrubbed of them before they are kept.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{GraphMailConfig, SecretSource, SmtpConfig, SmtpTls};
use crate::graph::token::TokenProvider;

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot reach the mail server {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("TLS with the mail server {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("the mail server {server} refused the login of {username:?}: {detail}")]
    Auth {
        server: String,
        username: String,
        detail: String,
    },
    #[error("the mail server {server} refused a recipient or the sender: {detail}")]
    Refused { server: String, detail: String },
    #[error("the mail server {server} is busy or failing, try again later: {detail}")]
    Transient { server: String, detail: String },
    #[error("the mail server {server} did not answer within {seconds} s")]
    Timeout { server: String, seconds: u64 },
    #[error("notification configuration: {0}")]
    Config(String),
    #[error("Microsoft Graph sendMail as {sender}: {detail}")]
    Graph { sender: String, detail: String },
}

impl SendError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Unreachable { .. } => "unreachable",
            SendError::Tls { .. } => "tls",
            SendError::Auth { .. } => "auth",
            SendError::Refused { .. } => "refused",
            SendError::Transient { .. } => "transient",
            SendError::Timeout { .. } => "timeout",
            SendError::Config(_) => "config",
            SendError::Graph { .. } => "graph",
        }
    }
}

/// Removes `secret` (and its forms on the wire: SMTP `AUTH PLAIN`/`LOGIN` send it in base64)
/// from a server's answer.
pub fn scrub(text: &str, secret: Option<&SecretString>) -> String {
    let Some(secret) = secret.map(|s| s.expose_secret()).filter(|s| !s.is_empty()) else {
        return text.to_string();
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    text.replace(secret, "[REDACTED]")
        .replace(&b64, "[REDACTED]")
}

/// One way of sending.
pub enum Transport {
    Smtp(SmtpConfig),
    Graph(Box<GraphMail>),
}

/// Graph `sendMail` with an app-only token of the platform's own tenant.
pub struct GraphMail {
    pub config: GraphMailConfig,
    pub graph_endpoint: Url,
    pub http: reqwest::Client,
    pub tokens: TokenProvider,
}

impl Transport {
    /// Sends `message` to its envelope's recipients.
    pub async fn send(
        &self,
        message: &Message,
        secrets: &Arc<dyn SecretSource>,
        timeout: Duration,
    ) -> Result<(), SendError> {
        match self {
            Transport::Smtp(smtp) => send_smtp(smtp, message, secrets, timeout).await,
            Transport::Graph(graph) => graph.send(message).await,
        }
    }

    /// Where messages go, for the log.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(s) => format!("SMTP {}:{} ({:?})", s.host, s.port(), s.tls),
            Transport::Graph(g) => format!("Microsoft Graph sendMail as {}", g.config.sender),
        }
    }
}

async fn send_smtp(
    smtp: &SmtpConfig,
    message: &Message,
    secrets: &Arc<dyn SecretSource>,
    timeout: Duration,
) -> Result<(), SendError> {
    let server = format!("{}:{}", smtp.host, smtp.port());
    let password = match &smtp.password {
        Some(reference) => Some(
            secrets
                .get(reference)
                .await
                .map_err(|e| SendError::Config(format!("notifications.smtp.password: {e}")))?,
        ),
        None => None,
    };
    let builder = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| SendError::Tls {
        server: server.clone(),
        detail: e.to_string(),
    })?;
    let mut builder = builder.port(smtp.port()).timeout(Some(timeout));
    if let (Some(username), Some(password)) = (&smtp.username, &password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.expose_secret().to_string(),
        ));
    }
    let transport = builder.build();
    let outcome = tokio::time::timeout(timeout, transport.send(message.clone())).await;
    match outcome {
        Err(_) => Err(SendError::Timeout {
            server,
            seconds: timeout.as_secs(),
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify_smtp(
            &e,
            server,
            smtp.username.as_deref().unwrap_or_default(),
            password.as_ref(),
        )),
    }
}

/// Names an SMTP failure.
fn classify_smtp(
    e: &lettre::transport::smtp::Error,
    server: String,
    username: &str,
    password: Option<&SecretString>,
) -> SendError {
    let detail = scrub(&e.to_string(), password);
    let code = e.status().map(u16::from);
    if e.is_timeout() {
        return SendError::Timeout { server, seconds: 0 };
    }
    if e.is_tls() {
        return SendError::Tls { server, detail };
    }
    match code {
        Some(530 | 534 | 535 | 538) => SendError::Auth {
            server,
            username: username.to_string(),
            detail,
        },
        Some(550..=553 | 501) => SendError::Refused { server, detail },
        Some(c) if (400..500).contains(&c) => SendError::Transient { server, detail },
        Some(_) => SendError::Refused { server, detail },
        None if e.is_client() && detail.contains("authentication") => SendError::Auth {
            server,
            username: username.to_string(),
            detail,
        },
        None => SendError::Unreachable { server, detail },
    }
}

impl GraphMail {
    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let sender = self.config.sender.clone();
        let fail = |detail: String| SendError::Graph {
            sender: sender.clone(),
            detail,
        };
        let token = self
            .tokens
            .token(
                &self.config.tenant_id,
                &self.config.app_id,
                Some(&self.config.client_secret),
            )
            .await
            .map_err(|e| fail(format!("no token for the mail application: {e}")))?;
        // The roles claim is a hint (tokens are opaque by contract): refused early only when it
        // says so; otherwise Graph's own answer decides.
        if token.has_role("Mail.Send") == Some(false) {
            return Err(fail(
                "the mail application lacks the Mail.Send application permission in the platform's tenant (grant admin consent for it)".into(),
            ));
        }
        let mut url = self.graph_endpoint.clone();
        url.path_segments_mut()
            .map_err(|_| fail("the Graph endpoint cannot take a path".into()))?
            .extend(["v1.0", "users", &self.config.sender, "sendMail"]);
        let mime = base64::engine::general_purpose::STANDARD.encode(message.formatted());
        let response = self
            .http
            .post(url)
            .bearer_auth(token.bearer())
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(mime)
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED || status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(fail(
                "Graph refused (403): the mail application needs the Mail.Send application permission in the platform's tenant, and an application access policy, if any, must include the sender".into(),
            ));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.tokens
                .invalidate(&self.config.tenant_id, &self.config.app_id);
        }
        let body = response.text().await.unwrap_or_default();
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = &v["error"];
                Some(format!(
                    "{}: {}",
                    e["code"].as_str()?,
                    e["message"].as_str().unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(fail(format!("HTTP {status}: {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_answer_loses_the_password_in_clear_and_in_base64() {
        let secret = SecretString::from("hunter2-very-secret");
        let b64 = base64::engine::general_purpose::STANDARD.encode("hunter2-very-secret");
        let said = format!("535 5.7.8 bad credentials hunter2-very-secret ({b64})");
        let kept = scrub(&said, Some(&secret));
        assert!(!kept.contains("hunter2"), "{kept}");
        assert!(!kept.contains(&b64), "{kept}");
        assert_eq!(scrub("fine", None), "fine");
    }
}
