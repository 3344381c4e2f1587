//! `webhook` of the operator configuration: the public hosts of the calling webhooks and where
//! their certificate comes from.
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

#[cfg(test)]
mod tests {
    use super::*;

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
