//! A bot's pod template: a Windows pod (the media library runs on Windows Server only) on the
//! configured Windows nodes, with its credentials from Secrets, its readiness from the bot's
//! health endpoint, no liveness probe, and a `preStop` hook that waits for its calls to end.

use super::*;
use crate::config::{BotsConfig, MediaMode};

/// Environment variable naming the instance's media file (`<pod name>` → public IP and port).
pub const MEDIA_CONFIG_ENV: &str = "BOT_MEDIA_CONFIG_PATH";

/// What a bot's pod template is made from.
pub(super) struct PodInputs<'a> {
    pub service: &'a RecordingService,
    pub role: BotRole,
    pub pro: bool,
    pub config: &'a BotConfig,
    pub bots: &'a BotsConfig,
    pub config_hash: &'a str,
    pub storage: Option<&'a crate::config::StorageConfig>,
}

/// The Azure Blob location a bot records to, when the operator signs it a SAS for its
/// container (the location's account has a `signingKey`): (account, its key, container).
pub fn bot_sas_source<'a>(
    config: &BotConfig,
    role: BotRole,
    storage: Option<&'a crate::config::StorageConfig>,
) -> Option<(&'a crate::config::AccountConfig, String)> {
    let location = config.storage.iter().find(|s| s.role == role.location())?;
    if location.endpoint.starts_with("pvc://") {
        return None;
    }
    let account = storage?.accounts.get(&location.location)?;
    account.signing_key.as_ref()?;
    let container = location.endpoint.trim_end_matches('/').rsplit('/').next()?;
    Some((account, container.to_string()))
}

/// The Pod Security Standard level the tenant namespace enforces for its bots: `restricted`
/// (for a pod with `spec.os.name: windows` it checks no Linux-only field, and the bots ask for
/// no host access), or `privileged` with host-networking media (`hostNetwork` and `hostPort`
/// are refused by `baseline` already).
pub fn pod_security_level(bots: &BotsConfig) -> &'static str {
    match bots.media.mode {
        MediaMode::LoadBalancer => "restricted",
        MediaMode::HostNetwork => "privileged",
    }
}

/// The pod template of one bot's StatefulSet.
pub(super) fn bot_pod_template(inputs: &PodInputs) -> PodTemplateSpec {
    let name = inputs.service.name_any();
    let claim = recordings_claim(inputs.config, inputs.role);
    let host_network = inputs.bots.media.mode == MediaMode::HostNetwork;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(selector_labels(&name, Some(inputs.role))),
            annotations: Some(
                [(
                    CONFIG_HASH_ANNOTATION.to_string(),
                    inputs.config_hash.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            os: Some(PodOS {
                name: "windows".into(),
            }),
            service_account_name: Some(format!("{name}-bot")),
            automount_service_account_token: Some(false),
            security_context: Some(windows_security_context(inputs.bots)),
            containers: vec![bot_container(inputs, claim.is_some())],
            volumes: Some(bot_volumes(&name, claim)),
            node_selector: Some(node_selector(inputs.bots)),
            tolerations: Some(inputs.bots.windows.tolerations.clone()).filter(|t| !t.is_empty()),
            affinity: bot_affinity(&name, inputs.role, inputs.bots),
            topology_spread_constraints: zone_spread(&name, inputs.pro),
            host_network: host_network.then_some(true),
            dns_policy: host_network.then(|| "ClusterFirstWithHostNet".into()),
            termination_grace_period_seconds: Some(
                inputs.bots.termination_grace_period.as_secs() as i64
            ),
            ..Default::default()
        }),
    }
}

/// The Windows identity of the pod. No Linux field (UID, GID, fsGroup, seccomp): the API
/// server refuses them on a pod whose `spec.os.name` is `windows`.
pub(super) fn windows_security_context(bots: &BotsConfig) -> PodSecurityContext {
    PodSecurityContext {
        windows_options: Some(WindowsSecurityContextOptions {
            run_as_user_name: Some(bots.windows.run_as_user_name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Windows nodes, plus in host-networking mode the nodes with an instance public IP.
pub(super) fn node_selector(bots: &BotsConfig) -> BTreeMap<String, String> {
    let mut selector = bots.windows.node_selector.clone();
    if bots.media.mode == MediaMode::HostNetwork {
        selector.extend(bots.media.host_network.node_selector.clone());
    }
    selector
}

/// The configured node pools (a required node affinity), and for the paired bot never the
/// first bot's node.
pub(super) fn bot_affinity(service: &str, role: BotRole, bots: &BotsConfig) -> Option<Affinity> {
    let pools = &bots.windows.agent_pools;
    let node_affinity = (!pools.is_empty()).then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: bots.windows.agent_pool_label.clone(),
                    operator: "In".into(),
                    values: Some(pools.clone()),
                }]),
                ..Default::default()
            }],
        }),
        ..Default::default()
    });
    let pod_anti_affinity = (role == BotRole::Paired).then(|| PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(service, Some(BotRole::Primary))),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    (node_affinity.is_some() || pod_anti_affinity.is_some()).then(|| Affinity {
        node_affinity,
        pod_anti_affinity,
        ..Default::default()
    })
}

/// A Pro pair spreads over zones.
pub(super) fn zone_spread(service: &str, pro: bool) -> Option<Vec<TopologySpreadConstraint>> {
    pro.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(service, None)),
                ..Default::default()
            }),
            ..Default::default()
        }]
    })
}

/// The bot container.
pub(super) fn bot_container(inputs: &PodInputs, with_claim: bool) -> Container {
    let bot = &inputs.service.spec.bot;
    let bots = inputs.bots;
    let host_network = bots.media.mode == MediaMode::HostNetwork;
    let port = |name: &str, port: i32, host: bool| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        // With host networking the media port is the node's own.
        host_port: host.then_some(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Container {
        name: "bot".into(),
        image: Some(
            bot.image
                .clone()
                .unwrap_or_else(|| bots.default_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(bot_env(inputs)),
        ports: Some(vec![
            port("signaling", SIGNALING_PORT, false),
            port("media", bots.media.internal_port, host_network),
            port("health", bots.health.port, false),
        ]),
        resources: Some(bot_resources(bot.resources.as_ref(), &bots.resources)),
        readiness_probe: Some(readiness_probe(bots)),
        // No liveness probe: a restart ends every call of the instance.
        liveness_probe: None,
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(drain_command(&bots.calls_url)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(bot_volume_mounts(with_claim)),
        ..Default::default()
    }
}

/// Ready when the bot's health endpoint answers 2xx.
pub(super) fn readiness_probe(bots: &BotsConfig) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(bots.health.path.clone()),
            port: IntOrString::String("health".into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// The `preStop` command: PowerShell (in every Windows Server Core image) polling the instance's
/// calls endpoint every 10 s until it lists no call. A bot that no longer listens has no call
/// left; any other failure (a slow answer) keeps waiting, at most the grace period.
pub fn drain_command(calls_url: &str) -> Vec<String> {
    let script = format!(
        "while ($true) {{ \
         try {{ $calls = Invoke-RestMethod -UseBasicParsing -TimeoutSec 5 -Uri '{calls_url}'; \
         if (($calls | Measure-Object).Count -eq 0) {{ exit 0 }} }} \
         catch [System.Net.WebException] {{ if ($_.Exception.Status -eq 'ConnectFailure') {{ exit 0 }} }} \
         catch {{ }}; \
         Start-Sleep -Seconds 10 }}"
    );
    vec![
        "powershell.exe".into(),
        "-NoProfile".into(),
        "-NonInteractive".into(),
        "-Command".into(),
        script,
    ]
}

/// The bot's environment: its role and configuration files, the identity it signs in as, its
/// client secret and storage SAS straight from Secrets (never a ConfigMap), and its pod name
/// (the key of its media entry).
pub(super) fn bot_env(inputs: &PodInputs) -> Vec<EnvVar> {
    let (service, role) = (inputs.service, inputs.role);
    let identity = inputs
        .config
        .bots
        .iter()
        .find(|b| b.role == role.component());
    let value = |key: &str, value: &str| EnvVar {
        name: key.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let field = |key: &str, path: &str| EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secret = |key: &str, secret: &str, secret_key: &str| EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: secret_key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![
        value("BOT_ROLE", role.component()),
        value(
            "BOT_CONFIG_PATH",
            &format!("{CONFIG_DIR}\\{BOT_CONFIG_FILE}"),
        ),
        value(MEDIA_CONFIG_ENV, &format!("{MEDIA_DIR}\\{INSTANCES_FILE}")),
        value(
            "MEDIA_INTERNAL_PORT",
            &inputs.bots.media.internal_port.to_string(),
        ),
        value(
            "AZURE_TENANT_ID",
            identity.map(|i| i.tenant_id.as_str()).unwrap_or_default(),
        ),
        value(
            "AZURE_CLIENT_ID",
            identity.map(|i| i.client_id.as_str()).unwrap_or_default(),
        ),
    ];
    // The client secret reaches the pod straight from its Secret: the customer's own with a
    // known app registration, else the copy of the platform application's the operator keeps
    // in the service's credentials Secret.
    let credentials = credentials_secret_name(&service.name_any(), inputs.bots);
    match &service.spec.app_registration {
        Some(reg) => env.push(secret(
            "AZURE_CLIENT_SECRET",
            &reg.client_secret_ref.name,
            client_secret_key(reg),
        )),
        None => env.push(secret(
            "AZURE_CLIENT_SECRET",
            &credentials,
            &client_secret_entry(role),
        )),
    }
    // The SAS of the bot's own container, when its location is on Azure Blob and the
    // operator signs one.
    if bot_sas_source(inputs.config, role, inputs.storage).is_some() {
        env.push(secret(
            "RECORDINGS_SAS",
            &credentials,
            &sas_entry(role.location()),
        ));
    }
    env.push(field("POD_NAME", "metadata.name"));
    env.push(field("POD_IP", "status.podIP"));
    env
}

fn bot_volume_mounts(with_claim: bool) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("media", MEDIA_DIR, true),
        mount("tmp", TMP_DIR, false),
    ];
    if with_claim {
        mounts.push(mount("recordings", RECORDINGS_DIR, false));
    }
    mounts
}

fn bot_volumes(service: &str, claim: Option<String>) -> Vec<Volume> {
    let config_map = |volume: &str, name: String| Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut volumes = vec![
        config_map("config", format!("{service}-bot-config")),
        config_map("media", media_config_map_name(service)),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(bot_tmp()),
            ..Default::default()
        },
    ];
    if let Some(claim_name) = claim {
        volumes.push(Volume {
            name: "recordings".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Default::default()
        });
    }
    volumes
}

/// How much a bot may write to its `/tmp` before the kubelet evicts it.
pub const BOT_TMP_SIZE_LIMIT: &str = "256Mi";

/// The bot's `/tmp`: an emptyDir bounded by [`BOT_TMP_SIZE_LIMIT`] (an unbounded emptyDir
/// could fill the node's disk).
pub fn bot_tmp() -> EmptyDirVolumeSource {
    EmptyDirVolumeSource {
        size_limit: Some(Quantity(BOT_TMP_SIZE_LIMIT.into())),
        ..Default::default()
    }
}

/// Resources of a bot container: the spec's, completed so every container has CPU, memory and
/// ephemeral-storage requests and limits (the tenant namespace's ResourceQuota demands them); the configured
/// defaults when the spec names none. A request without a limit gets the request as limit, and
/// vice versa.
pub fn bot_resources(
    spec: Option<&ResourceRequirements>,
    defaults: &ResourceRequirements,
) -> ResourceRequirements {
    let mut requests = spec.and_then(|r| r.requests.clone()).unwrap_or_default();
    let mut limits = spec.and_then(|r| r.limits.clone()).unwrap_or_default();
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        let default = |of: &Option<BTreeMap<String, Quantity>>| {
            of.as_ref().and_then(|m| m.get(resource)).cloned()
        };
        match (
            requests.get(resource).cloned(),
            limits.get(resource).cloned(),
        ) {
            (None, None) => {
                let request = default(&defaults.requests).or(default(&defaults.limits));
                let limit = default(&defaults.limits).or(request.clone());
                if let (Some(request), Some(limit)) = (request, limit) {
                    requests.insert(resource.into(), request);
                    limits.insert(resource.into(), limit);
                }
            }
            (Some(request), None) => {
                limits.insert(resource.into(), request);
            }
            (None, Some(limit)) => {
                requests.insert(resource.into(), limit);
            }
            (Some(_), Some(_)) => {}
        }
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..Default::default()
    }
}
