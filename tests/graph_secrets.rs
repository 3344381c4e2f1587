//! Client secrets read from Kubernetes Secrets (through the Kubernetes API simulator) and
//! used for real token requests (through the Microsoft identity platform simulator).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use recording_operator::config::{OperatorConfig, SecretRef, SecretSource, Secrets};
use recording_operator::graph::{CheckState, ConsentChecker, ConsentSpec};
use secrecy::ExposeSecret;
use sim::kube::{KubeSim, KubeSimConfig};
use sim::m365::{M365Sim, Seed, TenantSeed};

const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";

async fn secret_in_cluster(client: &kube::Client, values: &[(&str, &str)]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("recording-operator".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "recording-operator");
    let data: BTreeMap<String, ByteString> = values
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("entra-apps".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn secret_ref(key: &str) -> SecretRef {
    SecretRef::SecretRef {
        namespace: "recording-operator".into(),
        name: "entra-apps".into(),
        key: key.into(),
    }
}

#[tokio::test]
async fn kubernetes_secrets_are_read_by_reference_and_missing_ones_named() {
    let kube = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let client = kube.client().await;
    secret_in_cluster(&client, &[("directory", "  s3cr3t~value\n")]).await;
    let secrets = Secrets::with_kube(client);

    let value = secrets.get(&secret_ref("directory")).await.unwrap();
    assert_eq!(value.expose_secret(), "s3cr3t~value");

    let err = secrets.get(&secret_ref("recording")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read secret Secret recording-operator/entra-apps key recording: the Secret has no such key"
    );
    let missing = SecretRef::SecretRef {
        namespace: "recording-operator".into(),
        name: "nope".into(),
        key: "directory".into(),
    };
    let err = secrets.get(&missing).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read secret Secret recording-operator/nope key directory: the Secret does not exist"
    );
}

#[tokio::test]
async fn a_consent_is_checked_with_a_secret_from_the_cluster() {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", "https://x/cb");
    seed.tenants.push(TenantSeed {
        id: CONTOSO.into(),
        display_name: None,
        domains: vec!["contoso.example".into()],
    });
    let m365 = M365Sim::start(seed.clone()).await.unwrap();
    let kube = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let client = kube.client().await;
    let aad = seed.app("rec-aad").unwrap();
    secret_in_cluster(&client, &[("directory", aad.secrets[0].value.as_str())]).await;

    // The operator reads Secrets of its own namespace only.
    let mut config = OperatorConfig {
        consent_redirect_uri: Some("https://operator.example.com/consent/callback".into()),
        operator_namespace: "recording-operator".into(),
        ..OperatorConfig::default()
    };
    config.cloud.authority_host = Some(m365.url());
    config.cloud.graph_endpoint = Some(m365.url());
    for consent in config.consents.values_mut() {
        consent.app_id = aad.app_id.clone();
        consent.client_secret = Some(secret_ref("directory"));
    }
    let checker = ConsentChecker::new(&config, Arc::new(Secrets::with_kube(client))).unwrap();
    let spec = ConsentSpec::from_config("directory", &config.consents["directory"]);

    let check = checker
        .check_now(CONTOSO, std::slice::from_ref(&spec))
        .await;
    assert_eq!(check.get("directory").unwrap().state, CheckState::Pending);
    m365.grant_consent(CONTOSO, &aad.app_id);
    let check = checker.check_now(CONTOSO, &[spec]).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(
        directory.state,
        CheckState::Granted,
        "{}",
        directory.message
    );
}
