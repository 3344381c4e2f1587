//! The desired objects of a RecordingService: its bots (Deployments, their ConfigMap, Service, NetworkPolicy, PodDisruptionBudget, claims), a pure function of the service, its tenant and the configuration.

use super::*;

// ---------------------------------------------------------------------------------------------
// The bots a service runs
// ---------------------------------------------------------------------------------------------

/// One recording bot of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotRole {
    /// The recording bot, `<name>-hue`.
    Primary,
    /// Pro only: the redundant recording bot, `<name>-hue-paired`, kept away from the first.
    Paired,
}

impl BotRole {
    /// `app.kubernetes.io/component` of the bot's objects.
    pub fn component(self) -> &'static str {
        match self {
            BotRole::Primary => "primary",
            BotRole::Paired => "paired",
        }
    }

    /// Name of the bot's Deployment (the primary's is also the service's PodDisruptionBudget's).
    pub fn object_name(self, service: &str) -> String {
        match self {
            BotRole::Primary => format!("{service}-hue"),
            BotRole::Paired => format!("{service}-hue-paired"),
        }
    }

    /// The platform consent whose application the bot signs in as (without an app registration).
    pub fn consent_key(self) -> &'static str {
        match self {
            BotRole::Primary => "recording",
            BotRole::Paired => "redundantRecording",
        }
    }
}

/// The bots a license runs: one for Essentials, a pair for Pro.
pub fn bot_roles(license: License) -> Vec<BotRole> {
    match license {
        License::Essentials => vec![BotRole::Primary],
        License::Pro => vec![BotRole::Primary, BotRole::Paired],
    }
}

/// The key of the client secret inside the referenced Secret.
pub fn client_secret_key(registration: &AppRegistration) -> &str {
    registration
        .client_secret_ref
        .key
        .as_deref()
        .unwrap_or(DEFAULT_CLIENT_SECRET_KEY)
}

// ---------------------------------------------------------------------------------------------
// The desired objects: a pure function of the service, its tenant and the configuration
// ---------------------------------------------------------------------------------------------

/// Everything a recording service owns.
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    /// One per bot, primary first.
    pub deployments: Vec<Deployment>,
    /// One per Deployment, same name.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
}

/// Labels of every object of a service.
pub fn service_labels(service: &str, tenant: &str) -> BTreeMap<String, String> {
    let mut labels = owned_labels(tenant);
    labels.insert("app.kubernetes.io/name".into(), BOT_APP_NAME.into());
    labels.insert("app.kubernetes.io/instance".into(), service.into());
    labels
}

/// The labels selecting the pods of one bot (stable: a Deployment's selector is immutable).
pub(super) fn selector_labels(service: &str, role: Option<BotRole>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", BOT_APP_NAME),
        ("app.kubernetes.io/instance", service),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(role) = role {
        labels.insert(
            "app.kubernetes.io/component".into(),
            role.component().into(),
        );
    }
    labels
}

/// Computes the objects a valid service of `tenant` (whose Entra tenant id is `tenant_id`) owns.
pub fn desired_objects(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    client_secret_version: Option<&str>,
    config: &OperatorConfig,
) -> Children {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let labels = service_labels(&name, &tenant.name_any());
    let owner = owner_reference(service);
    let meta = |object_name: String, extra: Option<(&str, &str)>| {
        let mut labels = labels.clone();
        if let Some((k, v)) = extra {
            labels.insert(k.into(), v.into());
        }
        ObjectMeta {
            name: Some(object_name),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        }
    };

    let service_account = ServiceAccount {
        metadata: meta(format!("{name}-bot"), None),
        automount_service_account_token: Some(false),
        ..Default::default()
    };

    let bot_config = bot_config(service, tenant, tenant_id, config);
    let config_json =
        serde_json::to_string_pretty(&bot_config).expect("the bot configuration serializes");
    // The pods' configuration: the bot config and, with a known app registration, the
    // version of the client secret's Secret, which the pods read once at start (an
    // environment variable): a rotated secret rolls the bots onto it.
    let mut hasher = Sha256::new();
    hasher.update(config_json.as_bytes());
    if let Some(version) = client_secret_version {
        hasher.update(b"\0client-secret:");
        hasher.update(version.as_bytes());
    }
    let config_hash = format!("{:x}", hasher.finalize());
    let config_map = ConfigMap {
        metadata: meta(format!("{name}-bot-config"), None),
        data: Some([(BOT_CONFIG_FILE.to_string(), config_json)].into()),
        ..Default::default()
    };

    let bot_service = Service {
        metadata: meta(format!("{name}-hue"), None),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name, None)),
            ports: Some(vec![
                ServicePort {
                    name: Some("signaling".into()),
                    port: SIGNALING_PORT,
                    target_port: Some(IntOrString::String("signaling".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("media".into()),
                    port: MEDIA_PORT,
                    target_port: Some(IntOrString::String("media".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let network_policy = NetworkPolicy {
        metadata: meta(format!("{name}-bot"), None),
        spec: Some(bot_network_policy(&name)),
    };

    let roles = bot_roles(tenant.spec.license);
    let pro = roles.contains(&BotRole::Paired);
    let deployments = roles
        .iter()
        .map(|&role| Deployment {
            metadata: meta(
                role.object_name(&name),
                Some(("app.kubernetes.io/component", role.component())),
            ),
            spec: Some(bot_deployment_spec(
                service,
                role,
                pro,
                &bot_config,
                &config_hash,
                &config.bots.default_image,
            )),
            ..Default::default()
        })
        .collect();
    // One budget over every bot pod of the service: one pod at a time may be disrupted, so a
    // drain never takes a Pro tenant's first and paired bot at once, and a single replica
    // never blocks a node forever. (One budget, not one per bot: the eviction API refuses to
    // evict a pod that more than one budget covers.)
    let disruption_budgets = vec![PodDisruptionBudget {
        metadata: meta(BotRole::Primary.object_name(&name), None),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name, None)),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }];

    Children {
        service_account,
        config_map,
        service: bot_service,
        network_policy,
        deployments,
        disruption_budgets,
    }
}

/// The bots may be called on their signalling and media ports, and may reach HTTPS endpoints
/// (Graph, Teams, storage) and DNS; everything else stays denied by the tenant's default policy.
pub(super) fn bot_network_policy(service: &str) -> NetworkPolicySpec {
    let port = |p: i32, protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    NetworkPolicySpec {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(service, None)),
            ..Default::default()
        }),
        policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        ingress: Some(vec![NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![port(SIGNALING_PORT, "TCP"), port(MEDIA_PORT, "TCP")]),
        }]),
        egress: Some(vec![
            NetworkPolicyEgressRule {
                to: None,
                ports: Some(vec![port(443, "TCP")]),
            },
            NetworkPolicyEgressRule {
                to: None,
                ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
            },
        ]),
    }
}

/// Resources of a bot container: the spec's, completed so every container has CPU and memory
/// requests and limits (the tenant namespace's ResourceQuota demands both); defaults when the
/// spec names none. A request without a limit gets the request as limit, and vice versa.
pub fn bot_resources(spec: Option<&ResourceRequirements>) -> ResourceRequirements {
    let defaults = [("cpu", "500m", "2"), ("memory", "512Mi", "2Gi")];
    let mut requests = spec.and_then(|r| r.requests.clone()).unwrap_or_default();
    let mut limits = spec.and_then(|r| r.limits.clone()).unwrap_or_default();
    for (resource, default_request, default_limit) in defaults {
        match (
            requests.get(resource).cloned(),
            limits.get(resource).cloned(),
        ) {
            (None, None) => {
                requests.insert(resource.into(), Quantity(default_request.into()));
                limits.insert(resource.into(), Quantity(default_limit.into()));
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

/// The claim a bot of `role` records to: the name in its location's `pvc://<namespace>/<claim>`
/// endpoint, when the tenant's storage is on claims.
pub(super) fn recordings_claim(config: &BotConfig, role: BotRole) -> Option<String> {
    let location = match role {
        BotRole::Primary => "default",
        BotRole::Paired => "paired",
    };
    config
        .storage
        .iter()
        .find(|s| s.role == location)
        .and_then(|s| s.endpoint.strip_prefix("pvc://"))
        .and_then(|path| path.rsplit_once('/'))
        .map(|(_, claim)| claim.to_string())
}

pub(super) fn bot_deployment_spec(
    service: &RecordingService,
    role: BotRole,
    pro: bool,
    config: &BotConfig,
    config_hash: &str,
    default_image: &str,
) -> DeploymentSpec {
    let name = service.name_any();
    let bot = &service.spec.bot;
    let pod_labels = selector_labels(&name, Some(role));
    let identity = config.bots.iter().find(|b| b.role == role.component());
    // With the PVC backend the bot writes to its location's claim: the first bot to the
    // default location's, the paired bot to the paired copy's.
    let claim = recordings_claim(config, role);

    let env_value = |key: &str, value: &str| EnvVar {
        name: key.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let env_field = |key: &str, path: &str| EnvVar {
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
    let mut env = vec![
        env_value("BOT_ROLE", role.component()),
        env_value(
            "BOT_CONFIG_PATH",
            &format!("{CONFIG_DIR}/{BOT_CONFIG_FILE}"),
        ),
        env_value(
            "AZURE_TENANT_ID",
            identity.map(|i| i.tenant_id.as_str()).unwrap_or_default(),
        ),
        env_value(
            "AZURE_CLIENT_ID",
            identity.map(|i| i.client_id.as_str()).unwrap_or_default(),
        ),
    ];
    if let Some(reg) = &service.spec.app_registration {
        // The secret reaches the pod straight from its Secret; the operator never copies it.
        env.push(EnvVar {
            name: "AZURE_CLIENT_SECRET".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: reg.client_secret_ref.name.clone(),
                    key: client_secret_key(reg).to_string(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    env.push(env_field("POD_NAME", "metadata.name"));
    env.push(env_field("POD_IP", "status.podIP"));

    let probe = |initial: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("signaling".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        ..Default::default()
    };
    let runtime_default = || SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    };
    let container = Container {
        name: "bot".into(),
        image: Some(
            bot.image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("signaling".into()),
                container_port: SIGNALING_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("media".into()),
                container_port: MEDIA_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        resources: Some(bot_resources(bot.resources.as_ref())),
        readiness_probe: Some(probe(5)),
        liveness_probe: Some(probe(30)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(claim.as_ref().map(|_| VolumeMount {
                name: "recordings".into(),
                mount_path: RECORDINGS_DIR.into(),
                ..Default::default()
            }))
            .collect(),
        ),
        ..Default::default()
    };

    // The paired bot never shares a node with the first, and a Pro pair spreads over zones.
    let affinity = (role == BotRole::Paired).then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(&name, Some(BotRole::Primary))),
                    ..Default::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let spread = pro.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name, None)),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });

    DeploymentSpec {
        replicas: Some(bot.replicas.unwrap_or(1)),
        selector: LabelSelector {
            match_labels: Some(pod_labels.clone()),
            ..Default::default()
        },
        strategy: Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        }),
        revision_history_limit: Some(5),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels),
                annotations: Some(
                    [(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())].into(),
                ),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(format!("{name}-bot")),
                automount_service_account_token: Some(false),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(BOT_UID),
                    run_as_group: Some(BOT_UID),
                    fs_group: Some(BOT_UID),
                    seccomp_profile: Some(runtime_default()),
                    ..Default::default()
                }),
                containers: vec![container],
                volumes: Some(
                    vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: format!("{name}-bot-config"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Default::default()
                        },
                    ]
                    .into_iter()
                    .chain(claim.map(|claim_name| Volume {
                        name: "recordings".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name,
                            read_only: None,
                        }),
                        ..Default::default()
                    }))
                    .collect(),
                ),
                affinity,
                topology_spread_constraints: spread,
                termination_grace_period_seconds: Some(60),
                ..Default::default()
            }),
        },
        ..Default::default()
    }
}
