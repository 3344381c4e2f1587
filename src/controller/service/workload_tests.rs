//! The bots' workload objects for an Essentials and a Pro service in each media exposure mode.

use super::*;
use crate::config::{BotsConfig, MediaMode};

const TENANT_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

fn tenant(license: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso", "uid": "tenant-uid", "generation": 1},
        "spec": {
            "customerName": "contoso-customer", "domain": "contoso.onmicrosoft.com",
            "tenantId": TENANT_ID, "shortName": "contoso", "contactEmails": ["ops@example.com"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"],
            "license": license, "includedUsers": 100, "storage": {"location": "westeurope"},
            "retention": {"unlimited": true, "days": 365}
        },
        "status": {"storage": [
            {"location": "westeurope", "role": "default", "endpoint": "https://rec.blob.core.windows.net/contoso", "ready": true},
            {"location": "northeurope", "role": "paired", "endpoint": "https://recne.blob.core.windows.net/contoso", "ready": true}
        ]}
    }))
    .unwrap()
}

fn service(bot: serde_json::Value) -> RecordingService {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "metadata": {"name": "main", "namespace": "tenant-contoso", "uid": "service-uid", "generation": 1},
        "spec": {"tenantRef": "contoso", "shortName": "Contoso", "licensedUsers": 25, "bot": bot}
    }))
    .unwrap()
}

fn config(mode: MediaMode) -> OperatorConfig {
    let mut config = OperatorConfig::default();
    config.bots.media.mode = mode;
    config
}

fn objects(license: &str, mode: MediaMode, addresses: &[(&str, &str)]) -> Children {
    let addresses = addresses
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    desired_objects(
        &service(json!({"replicas": 2})),
        &tenant(license),
        TENANT_ID,
        None,
        &config(mode),
        &addresses,
    )
}

fn pod_of(sts: &StatefulSet) -> PodSpec {
    sts.spec.clone().unwrap().template.spec.unwrap()
}

fn instances_of(children: &Children) -> serde_json::Value {
    serde_json::from_str(&children.media_config_map.data.as_ref().unwrap()[INSTANCES_FILE]).unwrap()
}

#[test]
fn every_bot_is_a_windows_stateful_set_without_linux_fields() {
    for (license, mode) in [
        ("Essentials", MediaMode::LoadBalancer),
        ("Pro", MediaMode::LoadBalancer),
        ("Essentials", MediaMode::HostNetwork),
        ("Pro", MediaMode::HostNetwork),
    ] {
        let children = objects(license, mode, &[]);
        let names: Vec<String> = children
            .stateful_sets
            .iter()
            .map(|s| s.name_any())
            .collect();
        let expected: &[&str] = if license == "Pro" {
            &["main-hue", "main-hue-paired"]
        } else {
            &["main-hue"]
        };
        assert_eq!(names, expected, "{license} {mode:?}");
        for sts in &children.stateful_sets {
            let spec = sts.spec.clone().unwrap();
            assert_eq!(spec.replicas, Some(2));
            assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
            let rolling = spec.update_strategy.unwrap().rolling_update.unwrap();
            assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
            let pod = pod_of(sts);
            assert_eq!(pod.os.as_ref().unwrap().name, "windows");
            // Nothing the API server refuses on a Windows pod.
            let text = serde_json::to_string(&pod).unwrap();
            for linux in [
                "runAsUser",
                "runAsGroup",
                "fsGroup",
                "seccompProfile",
                "capabilities",
                "readOnlyRootFilesystem",
                "allowPrivilegeEscalation",
                "seLinuxOptions",
            ] {
                let key = format!("\"{linux}\"");
                assert!(!text.contains(&key), "{linux} on a Windows pod: {text}");
            }
            let windows = pod
                .security_context
                .clone()
                .unwrap()
                .windows_options
                .unwrap();
            assert_eq!(
                windows.run_as_user_name.as_deref(),
                Some("ContainerAdministrator")
            );
            let selector = pod.node_selector.clone().unwrap();
            assert_eq!(selector["kubernetes.io/os"], "windows");
            let toleration = &pod.tolerations.clone().unwrap()[0];
            assert_eq!(
                (toleration.key.as_deref(), toleration.value.as_deref()),
                (Some("os"), Some("windows"))
            );
            assert_eq!(pod.termination_grace_period_seconds, Some(54000));
            let container = &pod.containers[0];
            assert!(container.liveness_probe.is_none());
            let probe = container.readiness_probe.clone().unwrap().http_get.unwrap();
            assert_eq!(
                (probe.path.as_deref(), probe.port.clone()),
                (Some("/health"), IntOrString::String("health".into()))
            );
            let command = container
                .lifecycle
                .clone()
                .unwrap()
                .pre_stop
                .unwrap()
                .exec
                .unwrap()
                .command
                .unwrap();
            assert_eq!(command[0], "powershell.exe");
            assert!(command[4].contains("'http://localhost:9442/calls'"));
            let host = mode == MediaMode::HostNetwork;
            assert_eq!(pod.host_network, host.then_some(true), "{mode:?}");
            let media_port = container
                .ports
                .clone()
                .unwrap()
                .into_iter()
                .find(|p| p.name.as_deref() == Some("media"))
                .unwrap();
            assert_eq!(media_port.container_port, 8445);
            assert_eq!(media_port.host_port, host.then_some(8445));
            if host {
                assert_eq!(selector["recording.m365.io/instance-public-ip"], "true");
            }
        }
    }
}

#[test]
fn load_balancer_mode_gives_each_instance_its_service_and_port() {
    let pro = objects(
        "Pro",
        MediaMode::LoadBalancer,
        &[("main-hue-1", "198.51.100.7")],
    );
    let services: Vec<(String, String, i32)> = pro
        .instance_services
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap();
            assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
            assert_eq!(spec.publish_not_ready_addresses, Some(true));
            assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
            let port = &spec.ports.unwrap()[0];
            assert_eq!(port.target_port, Some(IntOrString::Int(8445)));
            (
                s.name_any(),
                spec.selector.unwrap()[POD_NAME_LABEL].clone(),
                port.port,
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("main-hue-0-media".into(), "main-hue-0".into(), 20100),
            ("main-hue-1-media".into(), "main-hue-1".into(), 20101),
            (
                "main-hue-paired-0-media".into(),
                "main-hue-paired-0".into(),
                20102
            ),
            (
                "main-hue-paired-1-media".into(),
                "main-hue-paired-1".into(),
                20103
            ),
        ]
    );
    let instances = instances_of(&pro);
    assert_eq!(instances["main-hue-1"]["publicIp"], "198.51.100.7");
    assert_eq!(instances["main-hue-1"]["publicPort"], 20101);
    assert!(
        instances["main-hue-0"].get("publicIp").is_none(),
        "an address not assigned yet is absent, not made up"
    );
    assert!(workload::addresses_pending(&pro));

    // A static IP from the configuration or the service: every instance knows it at once.
    let mut config = config(MediaMode::LoadBalancer);
    config.bots.media.load_balancer.public_ip = Some("203.0.113.50".into());
    let svc = service(
        json!({"replicas": 1, "media": {"publicIp": "203.0.113.60", "portRangeStart": 20150}}),
    );
    let children = desired_objects(
        &svc,
        &tenant("Pro"),
        TENANT_ID,
        None,
        &config,
        &BTreeMap::new(),
    );
    let spec = children.instance_services[1].spec.clone().unwrap();
    assert_eq!(spec.load_balancer_ip.as_deref(), Some("203.0.113.60"));
    assert_eq!(spec.ports.unwrap()[0].port, 20151);
    assert!(!workload::addresses_pending(&children));
}

#[test]
fn host_network_mode_uses_the_nodes_address_and_no_service() {
    let essentials = objects(
        "Essentials",
        MediaMode::HostNetwork,
        &[("main-hue-0", "198.51.100.20")],
    );
    assert!(essentials.instance_services.is_empty());
    let instances = instances_of(&essentials);
    assert_eq!(instances["main-hue-0"]["publicIp"], "198.51.100.20");
    assert_eq!(instances["main-hue-0"]["publicPort"], 8445);
    assert!(instances["main-hue-1"].get("publicIp").is_none());
    assert_eq!(
        pod_security_level(&config(MediaMode::HostNetwork).bots),
        "privileged"
    );
    assert_eq!(pod_security_level(&BotsConfig::default()), "restricted");
}

#[test]
fn the_network_policy_opens_teams_signalling_and_media_and_nothing_else() {
    let children = objects("Pro", MediaMode::LoadBalancer, &[]);
    let spec = children.network_policy.spec.unwrap();
    let ports = |rules: serde_json::Value| -> Vec<String> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["ports"].as_array().unwrap().clone())
            .map(|p| match p["endPort"].as_i64() {
                Some(end) => format!("{}/{}-{end}", p["protocol"].as_str().unwrap(), p["port"]),
                None => format!("{}/{}", p["protocol"].as_str().unwrap(), p["port"]),
            })
            .collect()
    };
    assert_eq!(
        ports(serde_json::to_value(spec.ingress).unwrap()),
        ["TCP/9441", "TCP/8445"]
    );
    assert_eq!(
        ports(serde_json::to_value(spec.egress).unwrap()),
        [
            "TCP/443",
            "UDP/53",
            "TCP/53",
            "TCP/5060",
            "TCP/5061",
            "UDP/10000-20000"
        ]
    );
}

#[test]
fn credentials_come_from_secrets_never_the_configuration() {
    let mut config = config(MediaMode::LoadBalancer);
    let account = |endpoint: &str, key: Option<&str>| crate::config::AccountConfig {
        endpoint: endpoint.into(),
        credential: crate::config::SecretRef::Env("SAS".into()),
        signing_key: key.map(|k| crate::config::SecretRef::Env(k.into())),
    };
    config.storage = Some(crate::config::StorageConfig {
        accounts: [
            (
                "westeurope".to_string(),
                account("https://rec.blob.core.windows.net", Some("KEY_WEU")),
            ),
            (
                "northeurope".to_string(),
                account("https://recne.blob.core.windows.net", None),
            ),
        ]
        .into(),
        ..Default::default()
    });
    let pro = desired_objects(
        &service(json!({"replicas": 1})),
        &tenant("Pro"),
        TENANT_ID,
        None,
        &config,
        &BTreeMap::new(),
    );
    for sts in &pro.stateful_sets {
        let paired = sts.name_any().ends_with("paired");
        let role = if paired { "paired" } else { "primary" };
        let env = pod_of(sts).containers[0].env.clone().unwrap();
        let from_secret = |name: &str| {
            let var = env.iter().find(|e| e.name == name)?;
            assert!(var.value.is_none(), "{name} is never a literal");
            let r = var.value_from.clone().unwrap().secret_key_ref.unwrap();
            Some((r.name, r.key))
        };
        assert_eq!(
            from_secret("AZURE_CLIENT_SECRET"),
            Some(("main-bot-credentials".into(), format!("{role}ClientSecret")))
        );
        // The first bot's account signs SAS; the paired location's account has no key.
        let sas = from_secret("RECORDINGS_SAS");
        if paired {
            assert_eq!(sas, None);
        } else {
            assert_eq!(
                sas,
                Some(("main-bot-credentials".into(), "defaultSas".into()))
            );
        }
    }
    let (account, container) = bot_sas_source(
        &bot_config(&service(json!({})), &tenant("Pro"), TENANT_ID, &config),
        BotRole::Primary,
        config.storage.as_ref(),
    )
    .unwrap();
    assert_eq!(
        (account.endpoint.as_str(), container.as_str()),
        ("https://rec.blob.core.windows.net", "contoso")
    );
}

#[test]
fn instances_beyond_the_port_range_or_names_too_long_are_refused() {
    let mut bots = BotsConfig::default();
    bots.media.load_balancer.port_range_end = 20102;
    let ok = check_workload(&service(json!({"replicas": 1})), License::Pro, &bots);
    assert!(ok.is_empty(), "{ok:?}");
    let too_many = check_workload(&service(json!({"replicas": 2})), License::Pro, &bots);
    assert_eq!(too_many[0].field, "spec.bot.replicas");
    assert!(
        too_many[0].message.contains("20100-20103") && too_many[0].message.contains("20102"),
        "{}",
        too_many[0].message
    );
    let mut long = service(json!({"replicas": 1}));
    long.metadata.name = Some("a".repeat(45));
    let named = check_workload(&long, License::Pro, &BotsConfig::default());
    assert_eq!(named[0].field, "metadata.name");
}
