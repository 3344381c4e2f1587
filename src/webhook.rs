//! The bots' calling webhook: the operator configuration's `webhook` section and the names
//! every part agrees on (the Ingress and Services of [`crate::controller::service`], the
//! platform's [`crate::router`], the bots' configuration).
//!
//! Teams reaches an application-hosted media bot through one HTTPS **calling webhook** per
//! application registration, and each instance at a notification URL of its own. Here:
//!
//! - the calling webhook of a bot is `https://<host>/api/calling/<role>` (`role` is `primary`
//!   or `paired`, the bot's `app.kubernetes.io/component`);
//! - instance `n` of that bot takes its notifications at
//!   `https://<host>/api/calling/<role>/<n>/<tenant id>` (`n` is the StatefulSet ordinal; the
//!   customer's tenant id last, so the router needs no payload to route them, and an Ingress
//!   routes on the `/api/calling/<role>/<n>` prefix).
//!
//! With the platform's applications (no `spec.appRegistration`) every tenant's calls arrive at
//! the one `platformHost`, where the router reads the tenant id from the notification and
//! forwards to that tenant's bots. A service with its own app registration gets its own host
//! (`serviceHost`, a template) and an Ingress in its namespace.
//!
//! ```yaml
//! webhook:
//!   ingressClassName: nginx
//!   platformHost: calls.recording.example.com           # the router's host, every tenant
//!   serviceHost: "{service}.{tenant}.bots.recording.example.com"   # own app registrations
//!   tls:
//!     issuerRef: { name: letsencrypt, kind: ClusterIssuer }   # when cert-manager is installed
//!     secretName: webhook-tls                                 # otherwise (or as well)
//!   annotations: {}                                           # copied onto every Ingress
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path prefix of every calling webhook and notification route.
pub const CALLING_PREFIX: &str = "/api/calling";
/// Suffix of the Secret a cert-manager `Certificate` of a service's webhook fills.
pub const CERTIFICATE_SECRET_SUFFIX: &str = "-webhook-tls";

/// The `webhook` section of the operator configuration. Without it no Ingress and no
/// Certificate is made (the headless and callback Services are, for the router).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// `spec.ingressClassName` of the Ingresses; the cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Public DNS name of the platform applications' calling webhook, served by the router
    /// (`recording-operator router`) for every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_host: Option<String>,
    /// Public DNS name of the webhook of a service with its own app registration: a template
    /// in which `{service}`, `{namespace}` and `{tenant}` are replaced. It must name the
    /// service and its tenant (or namespace), so no two services share a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_host: Option<String>,
    /// Where the webhook's certificate comes from.
    #[serde(default)]
    pub tls: WebhookTls,
    /// Annotations copied onto every Ingress (e.g. the ingress controller's body size limit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The webhook's certificate: a cert-manager `Certificate` from `issuerRef` when the cluster
/// serves cert-manager's API, else the Secret `secretName`, which must then exist in each
/// namespace with an Ingress (e.g. a wildcard certificate the platform replicates).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    pub name: String,
    /// `Issuer` or `ClusterIssuer` (default).
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// Default `cert-manager.io`.
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "ClusterIssuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

impl WebhookConfig {
    /// Checks every field, naming it.
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Some(class) = &self.ingress_class_name {
            if !is_dns_subdomain(class) {
                problems.push(format!(
                    "webhook.ingressClassName: {class:?} is not a DNS subdomain name"
                ));
            }
        }
        if let Some(host) = &self.platform_host {
            if !is_public_host(host) {
                problems.push(format!("webhook.platformHost: {host:?} is not a DNS name (lowercase labels of letters, digits and '-', at least two labels, no scheme, port or wildcard)"));
            }
        }
        if let Some(template) = &self.service_host {
            let names_service = template.contains("{service}");
            let names_tenant = template.contains("{tenant}") || template.contains("{namespace}");
            if !names_service || !names_tenant {
                problems.push(format!("webhook.serviceHost: {template:?} must contain {{service}} and {{tenant}} (or {{namespace}}), so each service has a host of its own"));
            } else if !is_public_host(&render_host(template, "service", "tenant-x", "x")) {
                problems.push(format!("webhook.serviceHost: {template:?} does not make a DNS name (lowercase labels of letters, digits and '-', at least two labels, no scheme or port)"));
            }
        }
        if let Some(secret) = &self.tls.secret_name {
            if !is_dns_subdomain(secret) {
                problems.push(format!(
                    "webhook.tls.secretName: {secret:?} is not a valid Secret name"
                ));
            }
        }
        if let Some(issuer) = &self.tls.issuer_ref {
            if issuer.name.trim().is_empty() {
                problems.push("webhook.tls.issuerRef.name: must not be empty".into());
            }
            if issuer.kind != "Issuer" && issuer.kind != "ClusterIssuer" {
                problems.push(format!(
                    "webhook.tls.issuerRef.kind: {:?} must be Issuer or ClusterIssuer",
                    issuer.kind
                ));
            }
        }
        let hosts = self.platform_host.is_some() || self.service_host.is_some();
        if hosts && self.tls.secret_name.is_none() && self.tls.issuer_ref.is_none() {
            problems.push("webhook.tls: name a certificate, tls.issuerRef (cert-manager) or tls.secretName: Teams calls the webhook over HTTPS only".into());
        }
    }

    /// The webhook host of a service with its own app registration, when configured.
    pub fn service_host_for(&self, service: &str, namespace: &str, tenant: &str) -> Option<String> {
        self.service_host
            .as_deref()
            .map(|t| render_host(t, service, namespace, tenant))
    }
}

/// Replaces `{service}`, `{namespace}` and `{tenant}` in a host template.
pub fn render_host(template: &str, service: &str, namespace: &str, tenant: &str) -> String {
    template
        .replace("{service}", service)
        .replace("{namespace}", namespace)
        .replace("{tenant}", tenant)
        .to_ascii_lowercase()
}

/// A public DNS name an Ingress rule and a certificate can carry: two or more RFC 1123
/// labels, lowercase, at most 253 characters.
pub fn is_public_host(host: &str) -> bool {
    host.len() <= 253 && host.split('.').count() >= 2 && is_dns_subdomain(host)
}

/// An RFC 1123 subdomain: lowercase labels of letters, digits and `-`, not starting or ending
/// with `-`, each at most 63 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

// ---------------------------------------------------------------------------------------------
// Routes and the Services behind them
// ---------------------------------------------------------------------------------------------

/// The calling webhook path of a bot (`role`: `primary` or `paired`).
pub fn calling_path(role: &str) -> String {
    format!("{CALLING_PREFIX}/{role}")
}

/// The notification path of one instance of a bot.
pub fn instance_path(role: &str, ordinal: u32) -> String {
    format!("{CALLING_PREFIX}/{role}/{ordinal}")
}

/// The headless Service over every bot pod of a service, `publishNotReadyAddresses` so a
/// draining instance keeps its DNS name: the bots' StatefulSets name it as `serviceName`,
/// which gives each pod `<pod>.<this>.<namespace>.svc`.
pub fn headless_service(service: &str) -> String {
    format!("{service}-bots")
}

/// Short tag of a role in the callback Services' names (the names stay within 63 characters
/// for every valid service name).
fn role_tag(role: &str) -> &'static str {
    match role {
        "paired" => "pp",
        _ => "p",
    }
}

/// The ClusterIP Service over the ready pods of one bot: where new calls (the calling
/// webhook) go.
pub fn calling_service(service: &str, role: &str) -> String {
    format!("{service}-cb-{}", role_tag(role))
}

/// The ClusterIP Service over one instance (ready or draining): where that instance's
/// notifications go through an Ingress.
pub fn instance_service(service: &str, role: &str, ordinal: u32) -> String {
    format!("{service}-cb-{}{ordinal}", role_tag(role))
}

/// A pod of a bot's StatefulSet: `<statefulset>-<ordinal>`.
pub fn pod_name(statefulset: &str, ordinal: u32) -> String {
    format!("{statefulset}-{ordinal}")
}

/// The notification URL of one instance of a bot whose webhook host is `host`, for the
/// customer tenant `tenant_id`.
pub fn notification_url(host: &str, role: &str, ordinal: u32, tenant_id: &str) -> String {
    format!("https://{host}{}/{tenant_id}", instance_path(role, ordinal))
}

/// What a path under [`CALLING_PREFIX`] addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallingRoute {
    /// `/api/calling/<role>`: a new call for any ready instance.
    Bot { role: String },
    /// `/api/calling/<role>/<n>[/<tenant id>]`: a notification for instance `n`.
    Instance {
        role: String,
        ordinal: u32,
        /// The customer tenant named in the path (lowercase), when it names one.
        tenant: Option<String>,
    },
}

/// Parses a request path; `None` for anything but the two route shapes with a known role.
pub fn parse_calling_path(path: &str) -> Option<CallingRoute> {
    let rest = path.strip_prefix(CALLING_PREFIX)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let role = parts.next()?;
    if role != "primary" && role != "paired" {
        return None;
    }
    match parts.next() {
        None | Some("") => Some(CallingRoute::Bot { role: role.into() }),
        Some(n) => {
            // Digits only (no sign, no leading zeros but "0"): one spelling per instance.
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || n.len() > 1 && n.starts_with('0')
            {
                return None;
            }
            let ordinal = n.parse().ok()?;
            let tenant = match parts.next() {
                None | Some("") => None,
                Some(t) if crate::config::is_guid(t) => Some(t.to_ascii_lowercase()),
                Some(_) => return None,
            };
            Some(CallingRoute::Instance {
                role: role.into(),
                ordinal,
                tenant,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_bot_and_the_instance() {
        assert_eq!(calling_path("primary"), "/api/calling/primary");
        assert_eq!(instance_path("paired", 3), "/api/calling/paired/3");
        assert_eq!(
            parse_calling_path("/api/calling/primary"),
            Some(CallingRoute::Bot {
                role: "primary".into()
            })
        );
        assert_eq!(
            parse_calling_path("/api/calling/paired/12"),
            Some(CallingRoute::Instance {
                role: "paired".into(),
                ordinal: 12,
                tenant: None
            })
        );
        let url = notification_url(
            "calls.example.com",
            "primary",
            0,
            "5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D",
        );
        assert_eq!(
            url,
            "https://calls.example.com/api/calling/primary/0/5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D"
        );
        assert_eq!(
            parse_calling_path(url.strip_prefix("https://calls.example.com").unwrap()),
            Some(CallingRoute::Instance {
                role: "primary".into(),
                ordinal: 0,
                tenant: Some("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d".into())
            })
        );
        for bad in [
            "/api/calling",
            "/api/calling/",
            "/api/calling/other",
            "/api/calling/primary/-1",
            "/api/calling/primary/01",
            "/api/calling/primary/x",
            "/api/calling/primary/0/not-a-tenant",
            "/api/calling/primary/0/5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d/more",
            "/api/callingprimary",
            "/metrics",
        ] {
            assert_eq!(parse_calling_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn callback_service_names_fit_for_the_longest_service_name() {
        let longest = "a".repeat(crate::crd::MAX_SERVICE_NAME as usize);
        assert!(instance_service(&longest, "paired", 19).len() <= 63);
        assert!(calling_service(&longest, "paired").len() <= 63);
        assert!(headless_service(&longest).len() <= 63);
        assert_ne!(
            calling_service("a", "primary"),
            calling_service("a", "paired")
        );
        assert_ne!(
            instance_service("a", "primary", 1),
            instance_service("a", "paired", 1)
        );
    }

    #[test]
    fn the_configuration_names_each_bad_field() {
        let config = WebhookConfig {
            ingress_class_name: Some("Nginx".into()),
            platform_host: Some("https://calls.example.com".into()),
            service_host: Some("{service}.bots.example.com".into()),
            tls: WebhookTls::default(),
            annotations: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        config.check(&mut problems);
        let text = problems.join("\n");
        for field in [
            "webhook.ingressClassName",
            "webhook.platformHost",
            "webhook.serviceHost",
            "webhook.tls",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }

        let good = WebhookConfig {
            ingress_class_name: Some("nginx".into()),
            platform_host: Some("calls.example.com".into()),
            service_host: Some("{service}.{tenant}.bots.example.com".into()),
            tls: WebhookTls {
                secret_name: Some("webhook-tls".into()),
                issuer_ref: None,
            },
            annotations: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        good.check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            good.service_host_for("Main", "tenant-contoso", "contoso")
                .as_deref(),
            Some("main.contoso.bots.example.com")
        );
    }
}
