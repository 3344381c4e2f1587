//! The webhook certificate's thumbprint reaches the bots: the operator reads the TLS Secret
//! the configuration names (`webhook.tls.secretName`) in the tenant namespace, writes the
//! SHA-1 thumbprint of its first certificate into the bot configuration
//! (`certificateThumbprint`), and a renewed certificate rolls the bots. The Secret's key
//! never reaches the ConfigMap.

mod common;

use std::time::Duration;

use common::{wait_for, Harness};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use recording_operator::config::{WebhookConfig, WebhookTls};
use recording_operator::controller::service::{BOT_CONFIG_FILE, CONFIG_HASH_ANNOTATION};
use recording_operator::demo::PlatformOptions;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const NS: &str = "tenant-contoso";
/// Two certificates (openssl), the webhook's first; thumbprints from
/// `openssl x509 -noout -fingerprint -sha1`.
const CHAIN: &str = include_str!("fixtures/webhook-chain.pem");
const FIRST: &str = "B403622988FEB443711DE6E2905EA28864195B6D";
const RENEWED: &str = "4E21AD5ADFB62302A2C425B70EAFE2A32FD88BC9";
/// Stands for the private key: must never leave the Secret.
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nbm90LWEtcmVhbC1rZXktYnV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n";

fn tls_secret(cert: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("bots-wildcard-tls".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(cert.as_bytes().to_vec())),
                ("tls.key".to_string(), ByteString(KEY.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// The bot configuration's thumbprint and the bots' configuration hash.
async fn observed(h: &Harness) -> Option<(Option<String>, String, String)> {
    let map: ConfigMap = Api::namespaced(h.client(), NS)
        .get("main-bot-config")
        .await
        .ok()?;
    let file = map.data?.remove(BOT_CONFIG_FILE)?;
    let config: Value = serde_json::from_str(&file).unwrap();
    let thumbprint = config["certificateThumbprint"].as_str().map(str::to_owned);
    let set: StatefulSet = Api::namespaced(h.client(), NS).get("main-hue").await.ok()?;
    let hash = set.spec?.template.metadata?.annotations?[CONFIG_HASH_ANNOTATION].clone();
    Some((thumbprint, hash, file))
}

/// The Essentials Tenant contoso, its consents accepted, Ready.
async fn onboard(h: &Harness) {
    h.apply(&common::tenant_yaml(
        "contoso",
        "contoso.onmicrosoft.com",
        "Essentials",
        "westeurope",
        "",
    ))
    .await;
    assert_eq!(h.accept_consents("contoso").await, 4);
    h.wait_tenant("contoso", T, |t| {
        t.status
            .as_ref()
            .is_some_and(|s| common::ready_status(&s.conditions).as_deref() == Some("True"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_certificates_thumbprint_reaches_the_bots_and_a_renewal_rolls_them() {
    let h = Harness::start_with(PlatformOptions {
        webhook: Some(WebhookConfig {
            platform_host: Some("calls.recording.example.com".into()),
            tls: WebhookTls {
                secret_name: Some("bots-wildcard-tls".into()),
                issuer_ref: None,
            },
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    onboard(&h).await;
    h.apply(&format!(
        "apiVersion: recording.m365.io/v1alpha1\nkind: RecordingService\nmetadata:\n  name: main\n  namespace: {NS}\nspec:\n  tenantRef: contoso\n  shortName: Rec\n  licensedUsers: 10\n"
    ))
    .await;

    // No Secret yet: the bots run without a thumbprint.
    let (none, before, _) = wait_for(T, || observed(&h), |_| true, "the bots deployed").await;
    assert_eq!(none, None);

    // The platform team creates the certificate's Secret: the thumbprint of its first
    // certificate reaches the bots, which roll.
    let secrets: Api<Secret> = Api::namespaced(h.client(), NS);
    secrets
        .create(&PostParams::default(), &tls_secret(CHAIN))
        .await
        .unwrap();
    let (first, with_first, file) = wait_for(
        T,
        || observed(&h),
        |(t, hash, _)| t.is_some() && *hash != before,
        "the thumbprint in the bot configuration, the bots rolled",
    )
    .await;
    assert_eq!(first.as_deref(), Some(FIRST));
    assert_ne!(before, with_first, "the bots roll");
    assert!(!file.contains("PRIVATE KEY") && !file.contains("bm90LWEtcmVhbC1rZXk"));

    // Renewed (here: the second certificate alone): a new thumbprint, the bots roll again.
    let renewed = &CHAIN[CHAIN.rfind("-----BEGIN CERTIFICATE-----").unwrap()..];
    secrets
        .patch(
            "bots-wildcard-tls",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"data": {"tls.crt": ByteString(renewed.as_bytes().to_vec())}}),
            ),
        )
        .await
        .unwrap();
    let (second, with_second, _) = wait_for(
        T,
        || observed(&h),
        |(t, hash, _)| t.as_deref() == Some(RENEWED) && *hash != with_first,
        "the renewed certificate's thumbprint, the bots rolled again",
    )
    .await;
    assert_eq!(second.as_deref(), Some(RENEWED));
    assert_ne!(
        with_first, with_second,
        "a renewed certificate rolls the bots"
    );
}
