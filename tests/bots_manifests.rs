//! docs/bots-manifests.md shows the objects the operator produces for a recording service's
//! bots, each beside the requirement of Microsoft's samples it meets. This test renders them
//! from the operator's own code and fails when the page no longer matches; run it with
//! `BLESS=1` to rewrite the blocks after a deliberate change.

use std::collections::BTreeMap;

use recording_operator::config::{MediaMode, OperatorConfig};
use recording_operator::controller::service::desired_objects;
use recording_operator::crd::{RecordingService, Tenant};

const PAGE: &str = "docs/bots-manifests.md";
const TENANT_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

fn tenant(license: &str) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "contoso", "uid": "0f6c2a8e-1111-4222-8333-444455556666"},
        "spec": {"customerName": "Contoso", "domain": "contoso.onmicrosoft.com", "tenantId": TENANT_ID,
            "shortName": "contoso", "contactEmails": ["ops@contoso.example"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"], "license": license, "includedUsers": 100,
            "storage": {"location": "westeurope"}, "retention": {"days": 400}},
        "status": {"storage": [
            {"location": "westeurope", "role": "default", "ready": true,
             "endpoint": "https://recweu.blob.core.windows.net/contoso-default"},
            {"location": "northeurope", "role": "paired", "ready": true,
             "endpoint": "https://recneu.blob.core.windows.net/contoso-paired"}]}
    }))
    .unwrap()
}

fn service() -> RecordingService {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "RecordingService",
        "metadata": {"name": "main", "namespace": "tenant-contoso",
            "uid": "7d1e3b5a-aaaa-4bbb-8ccc-ddddeeeeffff"},
        "spec": {"tenantRef": "contoso", "shortName": "Contoso", "licensedUsers": 250,
            "bot": {"replicas": 2}}
    }))
    .unwrap()
}

fn config(mode: MediaMode) -> OperatorConfig {
    let mut config = OperatorConfig::from_yaml(
        "consents:\n  recording: { appId: 3f2b8c1d-0000-4000-8000-00000000a001 }\n  redundantRecording: { appId: 3f2b8c1d-0000-4000-8000-00000000a002 }\nstorage:\n  accounts:\n    westeurope:\n      endpoint: https://recweu.blob.core.windows.net\n      credential: { secretRef: { namespace: recording-operator-system, name: storage, key: westeurope } }\n      signingKey: { secretRef: { namespace: recording-operator-system, name: storage-keys, key: westeurope } }\n    northeurope:\n      endpoint: https://recneu.blob.core.windows.net\n      credential: { secretRef: { namespace: recording-operator-system, name: storage, key: northeurope } }\n      signingKey: { secretRef: { namespace: recording-operator-system, name: storage-keys, key: northeurope } }\n",
    )
    .unwrap();
    config.bots.media.mode = mode;
    config
}

/// Every manifest the page shows, by name.
fn rendered() -> BTreeMap<&'static str, String> {
    let yaml = |v: &dyn erased::Yaml| v.yaml();
    let lb = desired_objects(
        &service(),
        &tenant("Pro"),
        TENANT_ID,
        None,
        &config(MediaMode::LoadBalancer),
        &[("main-hue-0".to_string(), "203.0.113.10".to_string())].into(),
    );
    let host = desired_objects(
        &service(),
        &tenant("Pro"),
        TENANT_ID,
        None,
        &config(MediaMode::HostNetwork),
        &[("main-hue-paired-0".to_string(), "198.51.100.21".to_string())].into(),
    );
    [
        ("statefulset", yaml(&lb.stateful_sets[0])),
        ("instance-service", yaml(&lb.instance_services[0])),
        ("media-configmap", yaml(&lb.media_config_map)),
        ("networkpolicy", yaml(&lb.network_policy)),
        ("disruption-budget", yaml(&lb.disruption_budgets[0])),
        ("host-network-statefulset", yaml(&host.stateful_sets[1])),
        ("host-network-media-configmap", yaml(&host.media_config_map)),
    ]
    .into()
}

mod erased {
    pub trait Yaml {
        fn yaml(&self) -> String;
    }
    impl<T: serde::Serialize + kube::Resource<DynamicType = ()>> Yaml for T {
        fn yaml(&self) -> String {
            let mut value = serde_json::to_value(self).unwrap();
            let object = value.as_object_mut().unwrap();
            let mut ordered = serde_json::Map::new();
            ordered.insert("apiVersion".into(), T::api_version(&()).into());
            ordered.insert("kind".into(), T::kind(&()).into());
            ordered.extend(object.clone());
            serde_saphyr::to_string(&ordered).unwrap()
        }
    }
}

/// The page's blocks: a `<!-- manifest: NAME -->` line, then a ```yaml block.
fn blocks(page: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- manifest: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next(), Some("```yaml"), "a yaml block after {name}");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        found.insert(name.to_string(), body.join("\n") + "\n");
    }
    found
}

#[test]
fn the_page_shows_exactly_the_manifests_the_operator_produces() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE);
    let page = std::fs::read_to_string(&path).unwrap();
    let expected = rendered();
    if std::env::var_os("BLESS").is_some() {
        let mut out = String::new();
        let mut lines = page.lines();
        while let Some(line) = lines.next() {
            out.push_str(line);
            out.push('\n');
            if let Some(name) = line
                .strip_prefix("<!-- manifest: ")
                .and_then(|l| l.strip_suffix(" -->"))
            {
                let _ = lines.by_ref().take_while(|l| *l != "```").count();
                out.push_str("```yaml\n");
                out.push_str(&expected[name]);
                out.push_str("```\n");
            }
        }
        std::fs::write(&path, out).unwrap();
        return;
    }
    let shown = blocks(&page);
    let names: Vec<&String> = shown.keys().collect();
    let wanted: Vec<String> = expected.keys().map(|k| k.to_string()).collect();
    assert_eq!(
        names,
        wanted.iter().collect::<Vec<_>>(),
        "the page's manifests"
    );
    for (name, yaml) in &expected {
        assert_eq!(
            &shown[*name], yaml,
            "{PAGE}: manifest {name} differs from what the operator produces (BLESS=1 rewrites it)"
        );
    }
}
