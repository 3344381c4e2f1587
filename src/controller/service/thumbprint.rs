//! The webhook certificate's thumbprint, for the bots.
//!
//! The Teams media platform names the certificate a bot serves with by its thumbprint (the
//! SHA-1 of the certificate's DER, as Windows shows it: 40 upper-case hex digits). The
//! operator reads the webhook's TLS Secret in the service's namespace (`tls.crt`: the
//! certificate first, then its chain), computes the thumbprint of the first certificate and
//! writes it into the bot configuration (`certificateThumbprint`), so a renewed certificate
//! changes the configuration and rolls the bots one instance at a time.
//!
//! Which Secret: the service's own webhook Ingress's (the cert-manager Certificate's Secret
//! `<service>-webhook-tls`, or `webhook.tls.secretName`); in platform mode, where the router
//! serves the webhook, `webhook.tls.secretName`, which must then exist in each tenant
//! namespace. Without such a Secret, or without a certificate in it, the field is absent.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha1::{Digest, Sha1};

use super::webhook::WebhookObjects;
use super::ServiceContext;
use crate::config::OperatorConfig;
use crate::controller::Result;
use crate::crd::RecordingService;

/// Key of the certificate chain in a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";

/// The SHA-1 thumbprint (upper-case hex) of the first certificate of a PEM chain; `None`
/// when the text holds no well-formed certificate.
pub fn thumbprint(pem: &[u8]) -> Option<String> {
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(hex_upper(&Sha1::digest(first.as_ref())))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The TLS Secret (in the service's namespace) whose certificate the bots serve with.
pub fn certificate_secret(webhook: &WebhookObjects, config: &OperatorConfig) -> Option<String> {
    let own = webhook
        .ingress
        .as_ref()
        .and_then(|i| i.spec.as_ref())
        .and_then(|s| s.tls.as_ref())
        .and_then(|tls| tls.first())
        .and_then(|tls| tls.secret_name.clone());
    own.or_else(|| config.webhook.as_ref()?.tls.secret_name.clone())
}

/// The thumbprint of a TLS Secret's certificate, or why there is none (naming the Secret and
/// the key, never its content).
pub fn secret_thumbprint(secret: &Secret) -> Result<String, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TLS_CERT_KEY))
        .ok_or_else(|| format!("Secret {name:?} has no key {TLS_CERT_KEY}"))?;
    thumbprint(&pem.0).ok_or_else(|| {
        format!("Secret {name:?}: {TLS_CERT_KEY} holds no PEM-encoded X.509 certificate")
    })
}

/// Reads the certificate Secret of `service`'s webhook and returns its thumbprint. The
/// namespace's Secret watch (started here if need be) brings the service back when the
/// Secret is created or renewed.
pub(super) async fn certificate_thumbprint(
    service: &RecordingService,
    webhook: &WebhookObjects,
    sctx: &ServiceContext,
) -> Result<Option<String>> {
    let ctx = sctx.shared.as_ref();
    let Some(name) = certificate_secret(webhook, &ctx.config) else {
        return Ok(None);
    };
    let namespace = service.namespace().unwrap_or_default();
    // Only to be told of changes; a namespace not listable yet is the Secret's get's problem.
    let _ = sctx.secrets.synced(&namespace).await;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&name)
        .await?;
    Ok(match secret.as_ref().map(secret_thumbprint) {
        Some(Ok(thumbprint)) => Some(thumbprint),
        Some(Err(why)) => {
            tracing::warn!(service = %service.name_any(), %namespace, "webhook certificate: {why}");
            None
        }
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    /// A leaf and a second certificate (generated with openssl; thumbprints from
    /// `openssl x509 -noout -fingerprint -sha1`).
    const CHAIN: &[u8] = include_bytes!("../../../tests/fixtures/webhook-chain.pem");
    const LEAF: &str = "B403622988FEB443711DE6E2905EA28864195B6D";
    const SECOND: &str = "4E21AD5ADFB62302A2C425B70EAFE2A32FD88BC9";

    fn secret(data: Option<&[u8]>) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("main-webhook-tls".into()),
                ..Default::default()
            },
            data: data.map(|d| [(TLS_CERT_KEY.to_string(), ByteString(d.to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_thumbprint_is_the_sha1_of_the_first_certificate() {
        assert_eq!(thumbprint(CHAIN).as_deref(), Some(LEAF));
        let text = std::str::from_utf8(CHAIN).unwrap();
        let second = &text[text.rfind("-----BEGIN").unwrap()..];
        assert_eq!(thumbprint(second.as_bytes()).as_deref(), Some(SECOND));
        assert_eq!(thumbprint(b"not a certificate"), None);
        assert_eq!(
            thumbprint(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            None
        );
    }

    #[test]
    fn a_secret_without_a_certificate_is_named_with_its_key() {
        assert_eq!(secret_thumbprint(&secret(Some(CHAIN))), Ok(LEAF.into()));
        let missing = secret_thumbprint(&secret(None)).unwrap_err();
        assert_eq!(missing, "Secret \"main-webhook-tls\" has no key tls.crt");
        let garbage = secret_thumbprint(&secret(Some(
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )))
        .unwrap_err();
        assert!(garbage.contains("tls.crt holds no PEM-encoded X.509 certificate"));
        assert!(!garbage.contains("c2VjcmV0"), "never the content");
    }

    /// The thumbprint reaches the bots' configuration, and a renewed certificate changes
    /// the configuration hash of the pod template: the bots roll.
    #[test]
    fn the_thumbprint_reaches_the_bots_and_a_new_certificate_rolls_them() {
        use super::super::tests::{config, config_hash_of, service, tenant, TENANT_ID};
        use super::super::{desired_objects_with, BotConfig, BOT_CONFIG_FILE};
        use std::collections::BTreeMap;
        let svc = service("main", "tenant-contoso", serde_json::json!({}));
        let t = tenant("Essentials", true);
        let children = |thumbprint: Option<&str>| {
            desired_objects_with(
                &svc,
                &t,
                TENANT_ID,
                None,
                &config(),
                &BTreeMap::new(),
                thumbprint,
            )
        };
        let with = children(Some(LEAF));
        let file = &with.config_map.data.as_ref().unwrap()[BOT_CONFIG_FILE];
        let read: BotConfig = serde_json::from_str(file).unwrap();
        assert_eq!(read.certificate_thumbprint.as_deref(), Some(LEAF));
        assert!(file.contains(&format!("\"certificateThumbprint\": \"{LEAF}\"")));
        let without = children(None);
        let file = &without.config_map.data.as_ref().unwrap()[BOT_CONFIG_FILE];
        assert!(!file.contains("certificateThumbprint"));
        assert_ne!(
            config_hash_of(&with),
            config_hash_of(&children(Some(SECOND))),
            "a renewed certificate rolls the bots"
        );
        assert_ne!(config_hash_of(&with), config_hash_of(&without));
    }

    #[test]
    fn the_secret_is_the_ingress_one_else_the_configured_one() {
        use k8s_openapi::api::networking::v1::{Ingress, IngressSpec, IngressTLS};
        let mut config = super::super::tests::config();
        let mut webhook = WebhookObjects::default();
        config.webhook = None;
        assert_eq!(certificate_secret(&webhook, &config), None);
        config.webhook = Some(crate::config::WebhookConfig {
            tls: crate::config::WebhookTls {
                secret_name: Some("wildcard-tls".into()),
                issuer_ref: None,
            },
            ..Default::default()
        });
        assert_eq!(
            certificate_secret(&webhook, &config).as_deref(),
            Some("wildcard-tls"),
            "platform mode: the configured Secret"
        );
        webhook.ingress = Some(Ingress {
            spec: Some(IngressSpec {
                tls: Some(vec![IngressTLS {
                    hosts: None,
                    secret_name: Some("main-webhook-tls".into()),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            certificate_secret(&webhook, &config).as_deref(),
            Some("main-webhook-tls"),
            "the service's own Ingress: its (cert-manager) Secret"
        );
    }
}
