//! The RecordingService controller: from a recording service of a tenant to its recording
//! bots, and the service's status.
//!
//! One reconcile: validate the spec (the CRD's own rules, the Tenant exists, the service
//! lives in that tenant's namespace, its name fits the bot objects' names) → compute the
//! desired objects from the service, the Tenant and the configuration (ServiceAccount,
//! ConfigMap with the bot configuration, Service, NetworkPolicy, Deployment `<name>-hue`,
//! for Pro also `<name>-hue-paired`, one PodDisruptionBudget over all bot pods) → server-side
//! apply them and delete owned bots no longer desired (Pro → Essentials) → when the service
//! brings its own app registration, check its credentials with a client-credentials token and
//! read its client secrets' expiry through Graph (daily, and whenever the Secret changes) →
//! compute the status from the Deployments' status → write it only when it changed, with an
//! Event per condition transition.
//!
//! Conditions: `Authenticated` (only with `spec.appRegistration`), `SecretExpiry` (only once
//! authenticated: `True` while the soonest client secret is 30 days or more from expiry,
//! `False` with reason `ClientSecretExpiring` below), `BotsReady`, `Ready` (the tenant is
//! Ready, the bots are available, and the app registration authenticates when used), and
//! `Stalled` while the spec is invalid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Future, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::apply::{apply, apply_in, forget, owner_reference};
use super::{owned_labels, Context, Error, Result, Retried};
use crate::conditions::{self, reason, Desired, Status, READY};
use crate::config::{OperatorConfig, SecretRef};
use crate::crd::service::{AppRegistration, BotStatus};
use crate::crd::validation::{validate_recording_service, Violation, Violations};
use crate::crd::{License, RecordingService, RecordingServiceStatus, Tenant, FIELD_MANAGER};
use crate::graph::application::{password_credentials, soonest_future_expiry};
use crate::graph::client::GraphClient;
use crate::graph::GraphError;

pub use crate::conditions::{AUTHENTICATED, BOTS_READY, SECRET_EXPIRY, STALLED};

/// `app.kubernetes.io/name` of everything a recording service owns.
pub const BOT_APP_NAME: &str = "recording-bot";
/// The bot image when the spec names none.
pub const DEFAULT_BOT_IMAGE: &str = "ghcr.io/recording-platform/recording-bot:1.0.0";
/// Key of the client secret inside the referenced Secret when the spec names none.
pub const DEFAULT_CLIENT_SECRET_KEY: &str = "clientSecret";
/// The bot's call-signalling (HTTPS notification) port.
pub const SIGNALING_PORT: i32 = 9441;
/// The bot's application-hosted media port.
pub const MEDIA_PORT: i32 = 8445;
/// A client secret expiring within this many days is a warning.
pub const SECRET_WARNING_DAYS: i64 = 30;
/// File name of the bot configuration inside the ConfigMap and the bot's file system.
pub const BOT_CONFIG_FILE: &str = "bot-config.json";
/// Pod template annotation carrying a hash of the bot configuration, so a changed
/// configuration rolls the bots.
pub const CONFIG_HASH_ANNOTATION: &str = "recording.m365.io/config-hash";

/// Where the bot configuration is mounted.
const CONFIG_DIR: &str = "/etc/recording-bot";
/// Where a bot finds its recordings' claim, with the PVC storage backend.
pub const RECORDINGS_DIR: &str = "/var/lib/recording-bot/recordings";
/// The non-root user the bots run as.
const BOT_UID: i64 = 10001;
/// How often a service is looked at again even when nothing changed.
const RESYNC: Duration = Duration::from_secs(600);
/// How often a working app registration is checked again (client secret expiry counts days).
const AUTH_RECHECK: Duration = Duration::from_secs(24 * 3600);
/// How soon an expiry that could not be read for a passing reason is read again.
const EXPIRY_RETRY: Duration = Duration::from_secs(300);

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
// Validation: the CRD's rules plus what only the reconciler can see
// ---------------------------------------------------------------------------------------------

/// The CRD's rules (its name among them: `<name>-hue-paired` must be a DNS label), plus: the
/// Tenant exists and the service lives in the tenant's namespace.
pub fn validate(service: &RecordingService, tenant: Option<&Tenant>) -> Result<(), Violations> {
    let mut violations = validate_recording_service(service, None)
        .err()
        .map(|v| v.0)
        .unwrap_or_default();
    match tenant {
        None => violations.push(Violation {
            field: "spec.tenantRef".into(),
            message: format!("Tenant {:?} does not exist", service.spec.tenant_ref),
        }),
        Some(t) => {
            let expected = t.namespace_name();
            if service.namespace().as_deref() != Some(expected.as_str()) {
                violations.push(Violation {
                    field: "metadata.namespace".into(),
                    message: format!(
                        "a RecordingService of Tenant {:?} must live in that tenant's namespace {expected:?}",
                        service.spec.tenant_ref
                    ),
                });
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Violations(violations))
    }
}

// ---------------------------------------------------------------------------------------------
// The bot configuration: what the bots read from their ConfigMap (never a secret)
// ---------------------------------------------------------------------------------------------

/// The bot configuration, written as JSON into the ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotConfig {
    /// The Tenant object's name.
    pub tenant: String,
    /// The customer's Entra tenant id.
    pub tenant_id: String,
    pub customer_name: String,
    /// The recording service's short name.
    pub short_name: String,
    pub licensed_users: i32,
    /// `Essentials` or `Pro`.
    pub license: License,
    /// License type shown to people.
    pub license_type: String,
    pub retention: RetentionConfig,
    pub compliance: ComplianceConfig,
    /// Where recordings go, per storage location of the tenant (endpoints without credentials).
    pub storage: Vec<StorageEndpoint>,
    /// Identity platform and Graph hosts of the tenant's cloud.
    pub authority_host: String,
    pub graph_endpoint: String,
    /// The application each bot signs in as.
    pub bots: Vec<BotIdentity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionConfig {
    pub unlimited: bool,
    /// Days recordings are kept; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceConfig {
    pub control_recording_notifications: bool,
    pub allow_delete_recordings: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageEndpoint {
    /// `default`, `paired` or `byos`.
    pub role: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub endpoint: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotIdentity {
    /// `primary` or `paired`.
    pub role: String,
    /// The tenant the bot requests tokens in.
    pub tenant_id: String,
    /// The application (client) id the bot signs in as.
    pub client_id: String,
    /// `appRegistration` (the customer's own, secret from a Secret) or `platform`.
    pub source: String,
}

/// Computes the bot configuration of a service.
pub fn bot_config(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    config: &OperatorConfig,
) -> BotConfig {
    let spec = &tenant.spec;
    let storage = tenant
        .status
        .as_ref()
        .map(|s| s.storage.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            Some(StorageEndpoint {
                role: l.role.clone(),
                location: l.location.clone(),
                name: l.name.clone(),
                endpoint: l.endpoint.clone()?,
            })
        })
        .collect();
    let bots = bot_roles(spec.license)
        .into_iter()
        .map(|role| match &service.spec.app_registration {
            Some(reg) => BotIdentity {
                role: role.component().into(),
                tenant_id: reg.tenant_id.to_ascii_lowercase(),
                client_id: reg.client_id.to_ascii_lowercase(),
                source: "appRegistration".into(),
            },
            None => BotIdentity {
                role: role.component().into(),
                tenant_id: tenant_id.to_string(),
                client_id: config
                    .consents
                    .get(role.consent_key())
                    .map(|c| c.app_id.clone())
                    .unwrap_or_default(),
                source: "platform".into(),
            },
        })
        .collect();
    BotConfig {
        tenant: tenant.name_any(),
        tenant_id: tenant_id.to_string(),
        customer_name: spec.customer_name.clone(),
        short_name: service.spec.short_name.clone(),
        licensed_users: service.spec.licensed_users,
        license: spec.license,
        license_type: spec.license.display_type().to_string(),
        retention: RetentionConfig {
            unlimited: spec.retention.unlimited,
            days: (!spec.retention.unlimited).then_some(spec.retention.days),
        },
        compliance: ComplianceConfig {
            control_recording_notifications: spec.compliance.control_recording_notifications,
            allow_delete_recordings: spec.compliance.allow_delete_recordings,
        },
        storage,
        authority_host: config
            .cloud
            .authority_host()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        graph_endpoint: config
            .cloud
            .graph_endpoint()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        bots,
    }
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
fn selector_labels(service: &str, role: Option<BotRole>) -> BTreeMap<String, String> {
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
fn bot_network_policy(service: &str) -> NetworkPolicySpec {
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
fn recordings_claim(config: &BotConfig, role: BotRole) -> Option<String> {
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

fn bot_deployment_spec(
    service: &RecordingService,
    role: BotRole,
    pro: bool,
    config: &BotConfig,
    config_hash: &str,
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
                .unwrap_or_else(|| DEFAULT_BOT_IMAGE.to_string()),
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

// ---------------------------------------------------------------------------------------------
// The known app registration: what a check found
// ---------------------------------------------------------------------------------------------

/// The answer about an app registration's credentials.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthOutcome {
    /// A token was issued; `expiry` is what Graph said about the client secrets.
    Authenticated { expiry: Expiry },
    /// Entra refused, for a reason the platform team must fix.
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// The soonest client secret expiry of the app registration.
#[derive(Clone, Debug, PartialEq)]
pub enum Expiry {
    /// The soonest end of a secret still valid.
    At(Timestamp),
    /// Graph lists no secret that is still valid.
    NoneValid,
    /// Graph could not be asked (the message says why).
    Unreadable(String),
}

/// What the status shows about the app registration.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthState {
    /// No `spec.appRegistration`.
    NotUsed,
    /// Not checked: the message says why.
    NotChecked(String),
    /// The last check could not get an answer (throttling, outage) and none is known.
    Unavailable(String),
    Checked(AuthOutcome),
}

/// What a refused token request means for a known app registration: `Ok` a definitive answer
/// (the condition's reason and message), `Err` a passing problem to retry.
pub fn classify_auth_error(
    error: &GraphError,
    registration: &AppRegistration,
    namespace: &str,
) -> Result<AuthOutcome, String> {
    let app = &registration.client_id;
    let tenant = &registration.tenant_id;
    let secret = format!(
        "Secret {namespace}/{} key {}",
        registration.client_secret_ref.name,
        client_secret_key(registration)
    );
    let rejected =
        |reason: &'static str, message: String| Ok(AuthOutcome::Rejected { reason, message });
    match error {
        GraphError::InvalidSecret { .. } => rejected(
            reason::INVALID_CLIENT_SECRET,
            format!("Entra refused the client secret in {secret} for application {app} (AADSTS7000215): store the secret's value, not its id"),
        ),
        GraphError::SecretExpired { .. } => rejected(
            reason::CLIENT_SECRET_EXPIRED,
            format!("the client secret in {secret} for application {app} has expired (AADSTS7000222): create a new one and update the Secret"),
        ),
        GraphError::TenantNotFound { .. } => rejected(
            reason::TENANT_NOT_FOUND,
            format!("tenant {tenant} of the app registration does not exist (AADSTS90002): check spec.appRegistration.tenantId"),
        ),
        GraphError::NotConsented { code, .. } => rejected(
            reason::APP_NOT_FOUND,
            format!("application {app} is not known in tenant {tenant} (AADSTS{code}): check spec.appRegistration.clientId and tenantId"),
        ),
        GraphError::MissingSecret { reason, .. } => rejected(reason::SECRET_NOT_FOUND, format!("the client secret cannot be read: {reason}")),
        GraphError::TokenRejected { .. } => rejected(reason::TOKEN_REJECTED, error.to_string()),
        GraphError::Throttled { .. }
        | GraphError::Unavailable { .. }
        | GraphError::Graph { .. }
        | GraphError::Protocol { .. } => Err(error.to_string()),
    }
}

/// Why the expiry could not be read, in words for the platform team.
fn expiry_problem(error: &GraphError, app: &str) -> String {
    match error {
        GraphError::Graph { status: 403, .. } => format!(
            "Graph refused to read application {app}: the app registration needs the application permission Application.Read.All (admin-consented in its home tenant) to report its secrets' expiry"
        ),
        GraphError::Graph { status: 404, .. } => format!(
            "application {app} is not registered in tenant of spec.appRegistration.tenantId, so its secrets' expiry cannot be read there"
        ),
        other => format!("the client secrets' expiry could not be read: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The service's status: a pure function of what was observed
// ---------------------------------------------------------------------------------------------

/// Why a reconcile did not provision.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocker {
    /// The spec breaks a rule; nothing is provisioned until it is fixed.
    InvalidSpec(Violations),
    /// The Tenant does not know its Entra tenant id yet.
    TenantIdUnknown(String),
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub service: &'a RecordingService,
    pub tenant: Option<&'a Tenant>,
    pub blocker: Option<Blocker>,
    /// Available/desired replicas per desired bot Deployment (empty when blocked).
    pub bots: Vec<BotStatus>,
    pub auth: AuthState,
    pub now: Timestamp,
}

/// Computes the service's status.
pub fn compute_status(o: &Observed<'_>) -> RecordingServiceStatus {
    let service = o.service;
    let generation = service.meta().generation;
    let previous = service.status.clone().unwrap_or_default();
    let mut conditions: Vec<Desired> = Vec::new();
    let mut expires_in_days = None;

    // The app registration.
    let app = service
        .spec
        .app_registration
        .as_ref()
        .map(|r| r.client_id.as_str())
        .unwrap_or_default();
    let auth_problem: Option<(String, String)> = match &o.auth {
        AuthState::NotUsed => None,
        AuthState::NotChecked(why) => {
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::Unknown,
                reason::NOT_CHECKED,
                why.clone(),
            ));
            Some((reason::AUTHENTICATION_PENDING.into(), why.clone()))
        }
        AuthState::Unavailable(why) => {
            let message = format!("the credentials could not be checked: {why}");
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::Unknown,
                reason::CHECK_FAILED,
                message.clone(),
            ));
            Some((reason::AUTHENTICATION_PENDING.into(), message))
        }
        AuthState::Checked(AuthOutcome::Rejected { reason, message }) => {
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::False,
                *reason,
                message.clone(),
            ));
            Some((reason.to_string(), message.clone()))
        }
        AuthState::Checked(AuthOutcome::Authenticated { expiry }) => {
            let tenant = service
                .spec
                .app_registration
                .as_ref()
                .map(|r| r.tenant_id.as_str())
                .unwrap_or_default();
            conditions.push(Desired::new(
                AUTHENTICATED,
                Status::True,
                "Authenticated",
                format!("Entra issued a client-credentials token for application {app} in tenant {tenant}"),
            ));
            conditions.push(match expiry {
                Expiry::At(end) => {
                    let days = crate::graph::application::days_until(*end, o.now);
                    expires_in_days = Some(days);
                    let when = format!("expires in {days} day(s), on {}", end.strftime("%Y-%m-%d"));
                    if days < SECRET_WARNING_DAYS {
                        Desired::new(
                            SECRET_EXPIRY,
                            Status::False,
                            reason::CLIENT_SECRET_EXPIRING,
                            format!("the soonest client secret of application {app} {when}: add a new secret, update the Secret, then remove the old one"),
                        )
                    } else {
                        Desired::new(SECRET_EXPIRY, Status::True, reason::CLIENT_SECRET_VALID, format!("the soonest client secret of application {app} {when}"))
                    }
                }
                Expiry::NoneValid => Desired::new(
                    SECRET_EXPIRY,
                    Status::Unknown,
                    reason::EXPIRY_UNKNOWN,
                    format!("Graph lists no unexpired client secret of application {app}"),
                ),
                Expiry::Unreadable(why) => Desired::new(SECRET_EXPIRY, Status::Unknown, reason::EXPIRY_UNKNOWN, why.clone()),
            });
            None
        }
    };

    // The bots.
    let provisioned = o.blocker.is_none();
    let not_ready: Vec<String> = o
        .bots
        .iter()
        .filter(|b| b.ready < b.desired)
        .map(|b| format!("{} {}/{}", b.name, b.ready, b.desired))
        .collect();
    let bots_ok = provisioned && not_ready.is_empty();
    let ready_total: i32 = o.bots.iter().map(|b| b.ready.min(b.desired)).sum();
    let desired_total: i32 = o.bots.iter().map(|b| b.desired).sum();
    conditions.push(if !provisioned {
        Desired::new(
            BOTS_READY,
            Status::Unknown,
            reason::NOT_PROVISIONED,
            "the bots are provisioned once the service is valid and its tenant id known",
        )
    } else if bots_ok {
        Desired::new(
            BOTS_READY,
            Status::True,
            "BotsReady",
            format!("{ready_total}/{desired_total} bot replicas available"),
        )
    } else {
        Desired::new(
            BOTS_READY,
            Status::False,
            reason::BOTS_NOT_READY,
            format!("bot replicas available: {}", not_ready.join(", ")),
        )
    });

    // The aggregate.
    let tenant_ready = o
        .tenant
        .and_then(|t| t.status.as_ref())
        .and_then(|s| conditions::find(&s.conditions, READY))
        .map(|c| (c.status == "True", c.message.clone()));
    let (ready, reason, message) = match (&o.blocker, auth_problem) {
        (Some(Blocker::InvalidSpec(v)), _) => (false, reason::INVALID_SPEC.to_string(), format!("the spec breaks these rules: {v}")),
        (Some(Blocker::TenantIdUnknown(m)), _) => (false, reason::TENANT_NOT_READY.to_string(), m.clone()),
        (None, Some((reason, message))) => (false, reason, message),
        (None, None) => match tenant_ready {
            Some((true, _)) if bots_ok => (true, "Ready".to_string(), format!("the tenant is ready and {ready_total}/{desired_total} bot replicas are available")),
            Some((true, _)) => (false, reason::BOTS_NOT_READY.to_string(), format!("bot replicas available: {}", not_ready.join(", "))),
            Some((false, why)) => (false, reason::TENANT_NOT_READY.to_string(), format!("Tenant {:?} is not ready: {why}", service.spec.tenant_ref)),
            None => (false, reason::TENANT_NOT_READY.to_string(), format!("Tenant {:?} has not reported its status yet", service.spec.tenant_ref)),
        },
    };
    conditions.push(Desired::new(
        READY,
        Status::from_bool(ready),
        reason,
        message,
    ));
    if matches!(o.blocker, Some(Blocker::InvalidSpec(_))) {
        conditions.push(Desired::new(
            STALLED,
            Status::True,
            reason::INVALID_SPEC,
            "fix the spec; nothing is provisioned until then",
        ));
    }

    RecordingServiceStatus {
        observed_generation: generation,
        bots: o.bots.clone(),
        bots_ready: provisioned.then(|| format!("{ready_total}/{desired_total}")),
        client_secret_expires_in_days: expires_in_days,
        conditions: conditions::merge(&previous.conditions, conditions, generation, o.now),
    }
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn status_changed(old: Option<&RecordingServiceStatus>, new: &RecordingServiceStatus) -> bool {
    let Some(old) = old else { return true };
    let (mut a, mut b) = (old.clone(), new.clone());
    let same_conditions = conditions::same_ignoring_time(&a.conditions, &b.conditions);
    a.conditions.clear();
    b.conditions.clear();
    a != b || !same_conditions
}

/// The Events a status change deserves, one per condition whose status or reason changed:
/// `(warning, reason, note)`. Conditions that became `True` are Normal, the others Warnings.
pub fn transition_events(
    old: Option<&RecordingServiceStatus>,
    new: &RecordingServiceStatus,
) -> Vec<(bool, String, String)> {
    let before = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    [AUTHENTICATED, SECRET_EXPIRY, BOTS_READY, READY]
        .into_iter()
        .filter_map(|type_| {
            let now = conditions::find(&new.conditions, type_)?;
            let was = conditions::find(before, type_);
            if was.is_some_and(|w| w.status == now.status && w.reason == now.reason) {
                return None;
            }
            Some((
                now.status != "True",
                now.reason.clone(),
                now.message.clone(),
            ))
        })
        .collect()
}

/// The pods of a Deployment that run its current template and are available: the rules
/// kstatus applies. Nothing while the Deployment controller has not seen the latest spec;
/// otherwise the available pods minus those of an older template still running (with
/// `maxUnavailable: 0` the old pods stay available until the new ones are). So a rollout that
/// cannot finish (a bad image, an unschedulable pod) never counts as ready, though the old
/// pod keeps serving.
pub fn rolled_out_and_available(deployment: &Deployment) -> i32 {
    let Some(status) = deployment.status.as_ref() else {
        return 0;
    };
    if status.observed_generation < deployment.metadata.generation {
        return 0;
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let old = status.replicas.unwrap_or(0).saturating_sub(updated).max(0);
    status
        .available_replicas
        .unwrap_or(0)
        .saturating_sub(old)
        .clamp(0, updated)
}

/// Ready/desired replicas of each desired Deployment, from the observed Deployments.
pub fn observe_bots(
    desired: &[Deployment],
    observed: impl Fn(&str) -> Option<Arc<Deployment>>,
) -> Vec<BotStatus> {
    desired
        .iter()
        .map(|d| {
            let name = d.name_any();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            BotStatus {
                name,
                ready: observed(&d.name_any()).map_or(0, |o| rolled_out_and_available(&o)),
                desired: want,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The async shell
// ---------------------------------------------------------------------------------------------

/// What the service controller keeps beside the shared [`Context`].
pub struct ServiceContext {
    pub shared: Arc<Context>,
    /// The operator's bot Deployments, as last seen.
    pub deployments: Store<Deployment>,
    /// Every Secret's metadata (never its data: a metadata-only watch), as last seen.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Every RecordingService, as last seen.
    pub services: Store<RecordingService>,
    /// Open once the Deployment and Secret stores have their first list (the services'
    /// store is ready before any reconcile runs: kube-runtime holds them until then).
    deployments_synced: super::Gate,
    secrets_synced: super::Gate,
    graph: GraphClient,
    /// The last app registration check per service (by object key).
    checks: Mutex<HashMap<String, AuthMemo>>,
    /// Checks that could not get an answer, per service: not tried again before `retry_at`.
    failing: Mutex<HashMap<String, FailedCheck>>,
}

impl ServiceContext {
    /// Returns once every cache a RecordingService reconcile reads has its first list: the
    /// shared ones, the bot Deployments and the Secrets (a Secret not seen yet would change the
    /// bots' configuration hash and roll them). See [`Context::caches_synced`].
    pub async fn caches_synced(&self) {
        self.shared.caches_synced().await;
        self.deployments_synced.wait().await;
        self.secrets_synced.wait().await;
    }
}

/// A check that got no answer (throttling, outage) and when to try again.
#[derive(Clone)]
struct FailedCheck {
    inputs: AuthInputs,
    retry_at: Instant,
    message: String,
}

/// What the app registration check last answered, and for which inputs.
#[derive(Clone)]
struct AuthMemo {
    inputs: AuthInputs,
    checked_at: Instant,
    valid_for: Duration,
    outcome: AuthOutcome,
}

/// Everything a check's answer depends on; a change means checking again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AuthInputs {
    tenant_id: String,
    client_id: String,
    secret_name: String,
    secret_key: String,
    /// The Secret's `resourceVersion`: a rotated (or deleted) secret is checked at once.
    secret_version: Option<String>,
}

/// Builds the RecordingService controller; the returned future runs it until `shutdown`.
/// `tenants` is a subscription to the shared Tenant watch.
pub fn controller(
    ctx: Arc<Context>,
    tenants: impl Stream<Item = Arc<Tenant>> + Send + 'static,
    config: controller::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send {
    let client = ctx.client.clone();

    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let bot_selector = format!(
        "app.kubernetes.io/name={BOT_APP_NAME},app.kubernetes.io/managed-by=recording-operator"
    );
    let deployments_synced = super::Gate::default();
    let deployment_events = reflector::reflector(
        deployment_writer,
        watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default().labels(&bot_selector),
        ),
    )
    .default_backoff()
    .inspect({
        let synced = deployments_synced.clone();
        move |event| synced.open_on(event)
    })
    .touched_objects();

    let (secrets, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let secrets_synced = super::Gate::default();
    let secret_events = reflector::reflector(
        secret_writer,
        watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .inspect({
        let synced = secrets_synced.clone();
        move |event| synced.open_on(event)
    })
    .touched_objects();

    let graph_endpoint = ctx
        .config
        .cloud
        .graph_endpoint()
        .expect("the Graph endpoint was validated when the consent checker was built");
    let graph = GraphClient::new(
        crate::graph::http_client(ctx.config.polling.request_timeout),
        &graph_endpoint,
        ctx.checker.counters(),
    );

    let controller = Controller::new(
        Api::<RecordingService>::all(client),
        watcher::Config::default().any_semantic(),
    );
    let services = controller.store();
    let services_of_tenant = {
        let services = services.clone();
        move |tenant: Arc<Tenant>| {
            let name = tenant.name_any();
            services
                .state()
                .into_iter()
                .filter(|s| s.spec.tenant_ref == name)
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let services_of_secret = {
        let services = services.clone();
        move |secret: PartialObjectMeta<Secret>| {
            let (namespace, name) = (secret.namespace(), secret.name_any());
            services
                .state()
                .into_iter()
                .filter(|s| {
                    s.namespace() == namespace
                        && s.spec
                            .app_registration
                            .as_ref()
                            .is_some_and(|r| r.client_secret_ref.name == name)
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        }
    };

    let sctx = Arc::new(ServiceContext {
        shared: ctx,
        deployments,
        secrets,
        services,
        deployments_synced,
        secrets_synced,
        graph,
        checks: Mutex::new(HashMap::new()),
        failing: Mutex::new(HashMap::new()),
    });
    controller
        .owns_stream(deployment_events)
        .watches_shared_stream(tenants, services_of_tenant)
        .watches_stream(secret_events, services_of_secret)
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, sctx)
        .for_each(|_| std::future::ready(()))
}

/// Reconciles one RecordingService.
pub async fn reconcile(
    service: Arc<RecordingService>,
    sctx: Arc<ServiceContext>,
) -> Result<Action> {
    sctx.caches_synced().await;
    let timer = sctx.shared.metrics.reconcile_started("recordingservice");
    let result = reconcile_inner(service, &sctx).await;
    if let Err(e) = &result {
        timer.error(e.metric_label());
    }
    result
}

async fn reconcile_inner(service: Arc<RecordingService>, sctx: &ServiceContext) -> Result<Action> {
    let ctx = sctx.shared.as_ref();
    let key = super::object_key(service.as_ref());
    if service.meta().deletion_timestamp.is_some() {
        // Owned objects go with the service through garbage collection.
        sctx.checks.lock().expect("auth checks lock").remove(&key);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();

    // 1. The spec and the tenant.
    let tenant = ctx.tenant(&service.spec.tenant_ref);
    let tenant_id = tenant.as_deref().and_then(Tenant::entra_tenant_id);
    let blocker = match (validate(&service, tenant.as_deref()), &tenant_id) {
        (Err(v), _) => Some(Blocker::InvalidSpec(v)),
        (Ok(()), None) => Some(Blocker::TenantIdUnknown(format!(
            "waiting for Tenant {:?} to learn its Entra tenant id",
            service.spec.tenant_ref
        ))),
        (Ok(()), Some(_)) => None,
    };

    // 2. The bots, only for a valid service of a tenant with a known tenant id.
    let mut bots = Vec::new();
    if let (None, Some(tenant), Some(tenant_id)) = (&blocker, &tenant, &tenant_id) {
        let secret_version = service
            .spec
            .app_registration
            .as_ref()
            .and_then(|r| client_secret_version(&service, r, sctx));
        let children = desired_objects(
            &service,
            tenant,
            tenant_id,
            secret_version.as_deref(),
            &ctx.config,
        );
        provision(&service, &children, sctx).await?;
        bots = observe_bots(&children.deployments, |name| {
            sctx.deployments
                .get(&ObjectRef::new(name).within(&service.namespace().unwrap_or_default()))
        });
    }

    // 3. The known app registration.
    let mut next_check = None;
    let auth = match (&service.spec.app_registration, &blocker) {
        (None, _) => AuthState::NotUsed,
        (Some(_), Some(Blocker::InvalidSpec(_))) => {
            AuthState::NotChecked("the credentials are checked once the spec is valid".into())
        }
        (Some(registration), _) => {
            let (state, wait) = authenticate(&service, registration, sctx).await;
            next_check = Some(wait);
            state
        }
    };

    // 4. Status.
    let observed = Observed {
        service: &service,
        tenant: tenant.as_deref(),
        blocker: blocker.clone(),
        bots,
        auth,
        now,
    };
    let status = compute_status(&observed);
    write_status(&service, status, ctx).await?;

    ctx.backoff.succeeded(&key, Retried::Reconcile);
    Ok(match blocker {
        // The Tenant and Secret watches bring the service back when something changes.
        Some(Blocker::InvalidSpec(_)) => Action::await_change(),
        _ => {
            let resync = super::jittered(RESYNC, 0.1);
            Action::requeue(next_check.map_or(resync, |n| n.min(resync)))
        }
    })
}

/// Applies the service's objects and deletes the bots it no longer needs (Pro → Essentials
/// removes the paired bot).
async fn provision(
    service: &RecordingService,
    children: &Children,
    sctx: &ServiceContext,
) -> Result<()> {
    let ctx = sctx.shared.as_ref();
    let client = ctx.client.clone();
    let ns = service.namespace().unwrap_or_default();
    apply_in(&client, &children.service_account, &ctx.applied).await?;
    apply_in(&client, &children.config_map, &ctx.applied).await?;
    apply_in(&client, &children.service, &ctx.applied).await?;
    apply_in(&client, &children.network_policy, &ctx.applied).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for deployment in &children.deployments {
        // Deleted behind the operator's back (or going): apply it again now, not when the
        // remembered apply expires.
        let present = sctx
            .deployments
            .get(&ObjectRef::new(&deployment.name_any()).within(&ns))
            .is_some_and(|d| d.metadata.deletion_timestamp.is_none());
        if !present {
            forget(&ctx.applied, deployment);
        }
        apply(&deployments, deployment, &ctx.applied).await?;
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    for budget in &children.disruption_budgets {
        if apply(&budgets, budget, &ctx.applied).await? {
            // Earlier versions kept a budget per bot; the paired bot's would now cover its
            // pods a second time and block their eviction. Looked for whenever the budget is
            // applied (once per service and process, and after changes).
            delete_if_present(&budgets, &BotRole::Paired.object_name(&service.name_any())).await?;
        }
    }

    let wanted: BTreeSet<String> = children.deployments.iter().map(|d| d.name_any()).collect();
    let uid = service.uid();
    let stale = sctx.deployments.state().into_iter().filter(|d| {
        d.namespace().as_deref() == Some(ns.as_str())
            && d.metadata.deletion_timestamp.is_none()
            && !wanted.contains(&d.name_any())
            && d.owner_references()
                .iter()
                .any(|r| Some(&r.uid) == uid.as_ref())
    });
    for deployment in stale {
        let name = deployment.name_any();
        // The budget first: should the Deployment's deletion fail, the next pass finds it again.
        delete_if_present(&budgets, &name).await?;
        forget(
            &ctx.applied,
            &PodDisruptionBudget {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let deleted = delete_if_present(&deployments, &name).await?;
        forget(&ctx.applied, deployment.as_ref());
        if !deleted {
            // Already gone: the cache had not seen it yet, and the Event was published then.
            continue;
        }
        ctx.events
            .publish(
                service,
                false,
                "BotRemoved",
                "Reconcile",
                format!("bot {name} is no longer needed by the tenant's license"),
            )
            .await;
    }
    Ok(())
}

/// Deletes an object; `false` when it was already gone.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The `resourceVersion` of the Secret holding the service's client secret, from the Secrets'
/// metadata watch: it changes whenever the secret is rotated.
fn client_secret_version(
    service: &RecordingService,
    registration: &AppRegistration,
    sctx: &ServiceContext,
) -> Option<String> {
    sctx.secrets
        .get(
            &ObjectRef::new(&registration.client_secret_ref.name)
                .within(&service.namespace().unwrap_or_default()),
        )
        .and_then(|m| m.resource_version())
}

/// Checks the app registration when due (first time, inputs changed, the Secret changed, or a
/// day passed), else answers from the last check. Returns what the status shows and when to
/// look again.
async fn authenticate(
    service: &RecordingService,
    registration: &AppRegistration,
    sctx: &ServiceContext,
) -> (AuthState, Duration) {
    let ctx = sctx.shared.as_ref();
    let namespace = service.namespace().unwrap_or_default();
    let key = super::object_key(service);
    let secret_name = registration.client_secret_ref.name.clone();
    let secret_key = client_secret_key(registration).to_string();
    let inputs = AuthInputs {
        tenant_id: registration.tenant_id.to_ascii_lowercase(),
        client_id: registration.client_id.to_ascii_lowercase(),
        secret_version: client_secret_version(service, registration, sctx),
        secret_name,
        secret_key,
    };

    let remembered = sctx
        .checks
        .lock()
        .expect("auth checks lock")
        .get(&key)
        .cloned();
    if let Some(memo) = remembered.as_ref().filter(|m| m.inputs == inputs) {
        let age = memo.checked_at.elapsed();
        if age < memo.valid_for {
            return (
                AuthState::Checked(memo.outcome.clone()),
                memo.valid_for - age,
            );
        }
    }

    // After throttling or an outage, not before the wait is over (other changes to the
    // service or its bots must not hammer a throttled token endpoint).
    let waiting = sctx
        .failing
        .lock()
        .expect("failed checks lock")
        .get(&key)
        .filter(|f| f.inputs == inputs)
        .cloned();
    if let Some(failed) = waiting {
        let now = Instant::now();
        if failed.retry_at > now {
            let state = match remembered.filter(|m| m.inputs == inputs) {
                Some(memo) => AuthState::Checked(memo.outcome),
                None => AuthState::Unavailable(failed.message),
            };
            return (state, failed.retry_at - now);
        }
    }

    // A fresh token request is the check: a cached token would vouch for an old secret.
    let tokens = ctx.checker.tokens();
    tokens.invalidate(&inputs.tenant_id, &inputs.client_id);
    let reference = SecretRef::SecretRef {
        namespace: namespace.clone(),
        name: inputs.secret_name.clone(),
        key: inputs.secret_key.clone(),
    };
    let answer = match tokens
        .token(&inputs.tenant_id, &inputs.client_id, Some(&reference))
        .await
    {
        Ok(token) => {
            let (expiry, valid_for) =
                match password_credentials(&sctx.graph, &token, &inputs.client_id).await {
                    Ok(credentials) => {
                        match soonest_future_expiry(&credentials, Timestamp::now()) {
                            Some(end) => (Expiry::At(end), AUTH_RECHECK),
                            None => (Expiry::NoneValid, AUTH_RECHECK),
                        }
                    }
                    Err(e) => {
                        let wait = if e.is_transient() {
                            e.retry_after().unwrap_or(EXPIRY_RETRY)
                        } else {
                            AUTH_RECHECK
                        };
                        (
                            Expiry::Unreadable(expiry_problem(&e, &inputs.client_id)),
                            wait,
                        )
                    }
                };
            Ok((AuthOutcome::Authenticated { expiry }, valid_for))
        }
        Err(e) => classify_auth_error(&e, registration, &namespace)
            .map(|o| (o, AUTH_RECHECK))
            .map_err(|m| (m, e.retry_after())),
    };

    match answer {
        Ok((outcome, valid_for)) => {
            tracing::info!(service = %service.name_any(), namespace = %namespace, outcome = ?outcome_label(&outcome), "checked the app registration");
            let mut checks = sctx.checks.lock().expect("auth checks lock");
            // Deleted services (no finalizer: no last reconcile) are forgotten here.
            let live: BTreeSet<String> = sctx
                .services
                .state()
                .iter()
                .map(|s| super::object_key(s.as_ref()))
                .collect();
            checks.retain(|k, _| live.contains(k));
            sctx.failing
                .lock()
                .expect("failed checks lock")
                .retain(|k, _| k != &key && live.contains(k));
            checks.insert(
                key.clone(),
                AuthMemo {
                    inputs,
                    checked_at: Instant::now(),
                    valid_for,
                    outcome: outcome.clone(),
                },
            );
            drop(checks);
            ctx.backoff.succeeded(&key, Retried::Auth);
            (AuthState::Checked(outcome), valid_for)
        }
        Err((message, retry_after)) => {
            let wait = retry_after.unwrap_or_else(|| ctx.backoff.failed(&key, Retried::Auth));
            tracing::warn!(service = %service.name_any(), namespace = %namespace, error = %message, retry_in = ?wait, "could not check the app registration");
            sctx.failing.lock().expect("failed checks lock").insert(
                key.clone(),
                FailedCheck {
                    inputs: inputs.clone(),
                    retry_at: Instant::now() + wait,
                    message: message.clone(),
                },
            );
            // The last answer for the same inputs still stands until a check gets through.
            let state = match remembered.filter(|m| m.inputs == inputs) {
                Some(memo) => AuthState::Checked(memo.outcome),
                None => AuthState::Unavailable(message),
            };
            (state, wait)
        }
    }
}

fn outcome_label(outcome: &AuthOutcome) -> &'static str {
    match outcome {
        AuthOutcome::Authenticated { .. } => "Authenticated",
        AuthOutcome::Rejected { reason, .. } => reason,
    }
}

/// Writes the status when it changed, with an Event per condition transition.
async fn write_status(
    service: &RecordingService,
    status: RecordingServiceStatus,
    ctx: &Context,
) -> Result<()> {
    let old = service.status.as_ref();
    if !status_changed(old, &status) {
        return Ok(());
    }
    let api: Api<RecordingService> =
        Api::namespaced(ctx.client.clone(), &service.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "status": status,
    });
    api.patch_status(
        &service.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    for (warning, reason, note) in transition_events(old, &status) {
        ctx.events
            .publish(service, warning, &reason, "Reconcile", note)
            .await;
    }
    Ok(())
}

/// What to do after a failed reconcile: retry with per-service exponential backoff.
pub fn error_policy(
    service: Arc<RecordingService>,
    error: &Error,
    sctx: Arc<ServiceContext>,
) -> Action {
    let delay = sctx
        .shared
        .backoff
        .failed(&super::object_key(service.as_ref()), Retried::Reconcile);
    tracing::warn!(service = %service.name_any(), namespace = ?service.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    const TENANT_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

    fn tenant(license: &str, ready: bool) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "contoso", "uid": "tenant-uid", "generation": 1},
            "spec": {
                "customerName": "contoso-customer",
                "domain": "contoso.onmicrosoft.com",
                "tenantId": TENANT_ID,
                "shortName": "contoso",
                "contactEmails": ["ops@example.com"],
                "adminUpns": ["admin@contoso.onmicrosoft.com"],
                "license": license,
                "includedUsers": 100,
                "storage": {"location": "westeurope"},
                "retention": {"unlimited": true, "days": 365}
            },
            "status": {
                "storage": [
                    {"location": "westeurope", "role": "default", "endpoint": "https://rec.blob.core.windows.net/contoso", "ready": true},
                    {"location": "northeurope", "role": "paired", "ready": false}
                ],
                "conditions": [{
                    "type": "Ready", "status": if ready { "True" } else { "False" },
                    "reason": if ready { "Ready" } else { reason::CONSENTS_MISSING },
                    "message": if ready { "all good" } else { "The customer's Global admin must grant consent for recording." },
                    "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 1
                }]
            }
        }))
        .unwrap()
    }

    fn service(name: &str, namespace: &str, spec: serde_json::Value) -> RecordingService {
        let mut full = json!({"tenantRef": "contoso", "shortName": "Contoso", "licensedUsers": 25});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "RecordingService",
            "metadata": {"name": name, "namespace": namespace, "uid": "service-uid", "generation": 3},
            "spec": full
        }))
        .unwrap()
    }

    fn with_app_registration() -> RecordingService {
        service(
            "main",
            "tenant-contoso",
            json!({"appRegistration": {
                "tenantId": TENANT_ID,
                "clientId": "6D2F9A41-3B5C-4E7D-8F10-A2B3C4D5E6F7",
                "clientSecretRef": {"name": "bot-credentials"}
            }}),
        )
    }

    fn config() -> OperatorConfig {
        let mut config = OperatorConfig::default();
        for (i, consent) in config.consents.values_mut().enumerate() {
            consent.app_id = format!("00000000-0000-4000-8000-{i:012}");
        }
        config
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<(&'a str, &'a str)> {
        conditions::find(conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn essentials_runs_one_bot_and_pro_a_pair_kept_apart() {
        let svc = service("main", "tenant-contoso", json!({}));
        let essentials = desired_objects(
            &svc,
            &tenant("Essentials", true),
            TENANT_ID,
            None,
            &config(),
        );
        let names: Vec<String> = essentials
            .deployments
            .iter()
            .map(|d| d.name_any())
            .collect();
        assert_eq!(names, ["main-hue"]);
        assert_eq!(essentials.disruption_budgets.len(), 1);
        let pod = essentials.deployments[0]
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap();
        assert!(pod.affinity.is_none() && pod.topology_spread_constraints.is_none());

        let pro = desired_objects(&svc, &tenant("Pro", true), TENANT_ID, None, &config());
        let names: Vec<String> = pro.deployments.iter().map(|d| d.name_any()).collect();
        assert_eq!(names, ["main-hue", "main-hue-paired"]);
        assert_eq!(pro.disruption_budgets.len(), 1, "one budget over both bots");
        let budget = pro.disruption_budgets[0].spec.clone().unwrap();
        assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
        let selected = budget.selector.unwrap().match_labels.unwrap();
        assert!(
            !selected.contains_key("app.kubernetes.io/component"),
            "the first and the paired bot: {selected:?}"
        );
        let primary = pro.deployments[0].spec.clone().unwrap();
        let paired = pro.deployments[1].spec.clone().unwrap();
        let term = &paired
            .template
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(
            term.label_selector.as_ref().unwrap().match_labels.as_ref(),
            primary.selector.match_labels.as_ref(),
            "the paired bot avoids exactly the first bot's pods"
        );
        for spec in [&primary, &paired] {
            let spread = spec
                .template
                .spec
                .as_ref()
                .unwrap()
                .topology_spread_constraints
                .clone()
                .unwrap();
            assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
            assert_eq!(spread[0].max_skew, 1);
        }
        assert_ne!(
            primary.selector, paired.selector,
            "the two Deployments never select each other's pods"
        );

        // Everything is owned by the service and carries the tenant and instance labels.
        let metas = [
            &pro.service_account.metadata,
            &pro.config_map.metadata,
            &pro.service.metadata,
            &pro.network_policy.metadata,
            &pro.deployments[1].metadata,
            &pro.disruption_budgets[0].metadata,
        ];
        for meta in metas {
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("service-uid", Some(true))
            );
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["recording.m365.io/tenant"], "contoso");
            assert_eq!(labels["app.kubernetes.io/instance"], "main");
            assert_eq!(labels["app.kubernetes.io/name"], "recording-bot");
            assert_eq!(meta.namespace.as_deref(), Some("tenant-contoso"));
        }
    }

    #[test]
    fn the_bot_configuration_carries_the_tenant_and_never_a_secret() {
        let svc = with_app_registration();
        let children = desired_objects(&svc, &tenant("Pro", true), TENANT_ID, None, &config());
        let text = &children.config_map.data.as_ref().unwrap()[BOT_CONFIG_FILE];
        let parsed: BotConfig = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.tenant_id, TENANT_ID);
        assert_eq!(
            parsed.retention,
            RetentionConfig {
                unlimited: true,
                days: None
            }
        );
        assert_eq!(parsed.storage.len(), 1, "only locations with an endpoint");
        assert_eq!(
            parsed.storage[0].endpoint,
            "https://rec.blob.core.windows.net/contoso"
        );
        assert_eq!(parsed.bots.len(), 2);
        assert!(parsed
            .bots
            .iter()
            .all(|b| b.client_id == "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7"
                && b.source == "appRegistration"));
        assert!(
            !text.contains("bot-credentials"),
            "not even the Secret's name is needed"
        );

        // The secret reaches the pods only by reference, under the default key.
        for deployment in &children.deployments {
            let env = deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .env
                .clone()
                .unwrap();
            let secret = env
                .iter()
                .find(|e| e.name == "AZURE_CLIENT_SECRET")
                .unwrap();
            assert!(secret.value.is_none());
            let selector = secret
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                (selector.name.as_str(), selector.key.as_str()),
                ("bot-credentials", DEFAULT_CLIENT_SECRET_KEY)
            );
        }

        // Without an app registration the bots sign in as the platform's recording apps.
        let platform = bot_config(
            &service("main", "tenant-contoso", json!({})),
            &tenant("Pro", true),
            TENANT_ID,
            &config(),
        );
        let cfg = config();
        assert_eq!(platform.bots[0].client_id, cfg.consents["recording"].app_id);
        assert_eq!(
            platform.bots[1].client_id,
            cfg.consents["redundantRecording"].app_id
        );
    }

    /// The configuration hash on the first bot's pod template.
    fn config_hash_of(children: &Children) -> String {
        children.deployments[0]
            .spec
            .clone()
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    }

    #[test]
    fn a_changed_configuration_rolls_the_bots() {
        let svc = service("main", "tenant-contoso", json!({}));
        let hash =
            |t: &Tenant| config_hash_of(&desired_objects(&svc, t, TENANT_ID, None, &config()));
        let before = tenant("Essentials", true);
        let mut after = before.clone();
        after.spec.retention = crate::crd::tenant::RetentionSpec {
            unlimited: false,
            days: 90,
        };
        assert_eq!(hash(&before), hash(&before.clone()));
        assert_ne!(hash(&before), hash(&after));
    }

    #[test]
    fn on_claims_each_bot_mounts_its_locations_claim() {
        let svc = service("main", "tenant-contoso", json!({}));
        let mut t = tenant("Pro", true);
        t.status.as_mut().unwrap().storage = serde_json::from_value(json!([
            {"location": "westeurope", "role": "default", "endpoint": "pvc://tenant-contoso/recordings-default", "ready": true},
            {"location": "northeurope", "role": "paired", "endpoint": "pvc://tenant-contoso/recordings-paired", "ready": true}
        ]))
        .unwrap();
        let claims = |t: &Tenant| -> Vec<(Option<String>, Option<String>)> {
            desired_objects(&svc, t, TENANT_ID, None, &config())
                .deployments
                .iter()
                .map(|d| {
                    let pod = d.spec.clone().unwrap().template.spec.unwrap();
                    let claim = pod
                        .volumes
                        .unwrap_or_default()
                        .into_iter()
                        .find_map(|v| v.persistent_volume_claim)
                        .map(|c| c.claim_name);
                    let mount = pod.containers[0]
                        .volume_mounts
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .find(|m| m.name == "recordings")
                        .map(|m| m.mount_path);
                    (claim, mount)
                })
                .collect()
        };
        let dir = Some(RECORDINGS_DIR.to_string());
        assert_eq!(
            claims(&t),
            [
                (Some("recordings-default".into()), dir.clone()),
                (Some("recordings-paired".into()), dir)
            ]
        );
        // On Azure Blob the bots write over HTTPS: no claim.
        assert_eq!(claims(&tenant("Pro", true)), [(None, None), (None, None)]);
    }

    #[test]
    fn a_rotated_client_secret_rolls_the_bots() {
        let svc = service("main", "tenant-contoso", json!({}));
        let t = tenant("Essentials", true);
        let hash = |version: Option<&str>| {
            config_hash_of(&desired_objects(&svc, &t, TENANT_ID, version, &config()))
        };
        assert_eq!(hash(Some("41")), hash(Some("41")));
        assert_ne!(hash(Some("41")), hash(Some("57")), "the Secret was updated");
        assert_ne!(hash(None), hash(Some("41")));
    }

    #[test]
    fn bots_count_as_ready_once_their_rollout_is_done() {
        let deployment =
            |generation: i64, observed: i64, replicas: i32, updated: i32, available: i32| {
                Deployment {
                    metadata: ObjectMeta {
                        name: Some("main-hue".into()),
                        generation: Some(generation),
                        ..Default::default()
                    },
                    status: Some(k8s_openapi::api::apps::v1::DeploymentStatus {
                        observed_generation: Some(observed),
                        replicas: Some(replicas),
                        updated_replicas: Some(updated),
                        available_replicas: Some(available),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            };
        // Settled.
        assert_eq!(rolled_out_and_available(&deployment(2, 2, 1, 1, 1)), 1);
        // A new spec the Deployment controller has not seen yet.
        assert_eq!(rolled_out_and_available(&deployment(3, 2, 1, 1, 1)), 0);
        // Rolling: the old pod serves, the new one is not ready (or never will be).
        assert_eq!(rolled_out_and_available(&deployment(3, 3, 2, 1, 1)), 0);
        // Scaling 1 → 2 on the same template: one of two.
        assert_eq!(rolled_out_and_available(&deployment(4, 4, 2, 2, 1)), 1);
        // No status yet.
        assert_eq!(rolled_out_and_available(&Deployment::default()), 0);
    }

    #[test]
    fn resources_always_have_requests_and_limits() {
        let defaults = bot_resources(None);
        assert_eq!(defaults.requests.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(defaults.limits.as_ref().unwrap()["memory"].0, "2Gi");
        let partial: ResourceRequirements = serde_json::from_value(json!({
            "requests": {"cpu": "1"},
            "limits": {"memory": "4Gi"}
        }))
        .unwrap();
        let completed = bot_resources(Some(&partial));
        let requests = completed.requests.unwrap();
        let limits = completed.limits.unwrap();
        assert_eq!(
            (requests["cpu"].0.as_str(), limits["cpu"].0.as_str()),
            ("1", "1")
        );
        assert_eq!(
            (requests["memory"].0.as_str(), limits["memory"].0.as_str()),
            ("4Gi", "4Gi")
        );
    }

    #[test]
    fn the_reconciler_rejects_what_the_api_server_would_and_what_only_it_can_see() {
        let t = tenant("Essentials", true);
        assert_eq!(
            validate(&service("main", "tenant-contoso", json!({})), Some(&t)),
            Ok(())
        );
        for short in ["ab", "abcdefghijklmnop", "con.toso", "con toso"] {
            let v = validate(
                &service("main", "tenant-contoso", json!({"shortName": short})),
                Some(&t),
            )
            .unwrap_err();
            assert!(v.names_field("spec.shortName"), "{short:?}: {v}");
        }
        let v = validate(
            &service("main", "tenant-contoso", json!({"licensedUsers": 501})),
            Some(&t),
        )
        .unwrap_err();
        assert!(v.names_field("spec.licensedUsers"), "{v}");
        let v = validate(&service("main", "default", json!({})), Some(&t)).unwrap_err();
        assert_eq!(v.to_string(), "metadata.namespace: a RecordingService of Tenant \"contoso\" must live in that tenant's namespace \"tenant-contoso\"");
        let v = validate(&service("main", "tenant-contoso", json!({})), None).unwrap_err();
        assert_eq!(
            v.to_string(),
            "spec.tenantRef: Tenant \"contoso\" does not exist"
        );
        let long = "a".repeat(53);
        assert!(
            validate(&service(&long, "tenant-contoso", json!({})), Some(&t))
                .unwrap_err()
                .names_field("metadata.name")
        );
        assert_eq!(
            validate(
                &service(&"a".repeat(52), "tenant-contoso", json!({})),
                Some(&t)
            ),
            Ok(())
        );
        assert!(
            validate(&service("9lives", "tenant-contoso", json!({})), Some(&t))
                .unwrap_err()
                .names_field("metadata.name")
        );
    }

    #[test]
    fn an_invalid_service_is_stalled_and_provisions_nothing() {
        let t = tenant("Essentials", true);
        let svc = service("main", "tenant-contoso", json!({"shortName": "a.b"}));
        let violations = validate(&svc, Some(&t)).unwrap_err();
        let status = compute_status(&Observed {
            service: &svc,
            tenant: Some(&t),
            blocker: Some(Blocker::InvalidSpec(violations)),
            bots: vec![],
            auth: AuthState::NotUsed,
            now: at("2026-11-23T12:00:00Z"),
        });
        assert_eq!(
            find(&status.conditions, READY),
            Some(("False", reason::INVALID_SPEC))
        );
        assert_eq!(
            find(&status.conditions, STALLED),
            Some(("True", reason::INVALID_SPEC))
        );
        assert_eq!(
            find(&status.conditions, BOTS_READY),
            Some(("Unknown", reason::NOT_PROVISIONED))
        );
        assert!(conditions::find(&status.conditions, READY)
            .unwrap()
            .message
            .contains("spec.shortName"));
        assert_eq!(status.bots_ready, None);
        assert!(status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3)));
    }

    fn bot(name: &str, ready: i32, desired: i32) -> BotStatus {
        BotStatus {
            name: name.into(),
            ready,
            desired,
        }
    }

    fn status_with(
        t: &Tenant,
        svc: &RecordingService,
        bots: Vec<BotStatus>,
        auth: AuthState,
    ) -> RecordingServiceStatus {
        compute_status(&Observed {
            service: svc,
            tenant: Some(t),
            blocker: None,
            bots,
            auth,
            now: at("2026-11-23T12:00:00Z"),
        })
    }

    #[test]
    fn ready_needs_the_tenant_the_bots_and_the_credentials() {
        let svc = service("main", "tenant-contoso", json!({}));
        let ok = status_with(
            &tenant("Pro", true),
            &svc,
            vec![bot("main-hue", 1, 1), bot("main-hue-paired", 1, 1)],
            AuthState::NotUsed,
        );
        assert_eq!(find(&ok.conditions, READY), Some(("True", "Ready")));
        assert_eq!(ok.bots_ready.as_deref(), Some("2/2"));
        assert_eq!(find(&ok.conditions, AUTHENTICATED), None);

        let down = status_with(
            &tenant("Pro", true),
            &svc,
            vec![bot("main-hue", 1, 1), bot("main-hue-paired", 0, 1)],
            AuthState::NotUsed,
        );
        assert_eq!(
            find(&down.conditions, BOTS_READY),
            Some(("False", reason::BOTS_NOT_READY))
        );
        assert_eq!(
            conditions::find(&down.conditions, BOTS_READY)
                .unwrap()
                .message,
            "bot replicas available: main-hue-paired 0/1"
        );
        assert_eq!(down.bots_ready.as_deref(), Some("1/2"));
        assert_eq!(
            find(&down.conditions, READY),
            Some(("False", reason::BOTS_NOT_READY))
        );

        let tenant_down = status_with(
            &tenant("Pro", false),
            &svc,
            vec![bot("main-hue", 1, 1)],
            AuthState::NotUsed,
        );
        let ready = conditions::find(&tenant_down.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::TENANT_NOT_READY)
        );
        assert!(
            ready.message.contains("must grant consent for recording"),
            "{}",
            ready.message
        );

        let reg = with_app_registration();
        let refused = status_with(
            &tenant("Essentials", true),
            &reg,
            vec![bot("main-hue", 1, 1)],
            AuthState::Checked(AuthOutcome::Rejected {
                reason: reason::INVALID_CLIENT_SECRET,
                message: "refused".into(),
            }),
        );
        assert_eq!(
            find(&refused.conditions, AUTHENTICATED),
            Some(("False", reason::INVALID_CLIENT_SECRET))
        );
        assert_eq!(
            find(&refused.conditions, READY),
            Some(("False", reason::INVALID_CLIENT_SECRET))
        );
        assert_eq!(find(&refused.conditions, SECRET_EXPIRY), None);
        assert_eq!(refused.client_secret_expires_in_days, None);

        let pending = status_with(
            &tenant("Essentials", true),
            &reg,
            vec![bot("main-hue", 1, 1)],
            AuthState::Unavailable("throttled".into()),
        );
        assert_eq!(
            find(&pending.conditions, AUTHENTICATED),
            Some(("Unknown", reason::CHECK_FAILED))
        );
        assert_eq!(
            find(&pending.conditions, READY),
            Some(("False", reason::AUTHENTICATION_PENDING))
        );
    }

    #[test]
    fn a_secret_under_thirty_days_from_expiry_is_a_warning_but_still_ready() {
        let reg = with_app_registration();
        let t = tenant("Essentials", true);
        let expiring_at = |end: &str| {
            status_with(
                &t,
                &reg,
                vec![bot("main-hue", 1, 1)],
                AuthState::Checked(AuthOutcome::Authenticated {
                    expiry: Expiry::At(at(end)),
                }),
            )
        };
        let fine = expiring_at("2026-12-23T12:00:00Z");
        assert_eq!(fine.client_secret_expires_in_days, Some(30));
        assert_eq!(
            find(&fine.conditions, SECRET_EXPIRY),
            Some(("True", reason::CLIENT_SECRET_VALID))
        );
        let soon = expiring_at("2026-12-23T11:59:59Z");
        assert_eq!(soon.client_secret_expires_in_days, Some(29));
        assert_eq!(
            find(&soon.conditions, SECRET_EXPIRY),
            Some(("False", reason::CLIENT_SECRET_EXPIRING))
        );
        assert_eq!(
            find(&soon.conditions, AUTHENTICATED),
            Some(("True", "Authenticated"))
        );
        assert_eq!(find(&soon.conditions, READY), Some(("True", "Ready")));
        assert_eq!(
            conditions::find(&soon.conditions, SECRET_EXPIRY).unwrap().message,
            "the soonest client secret of application 6D2F9A41-3B5C-4E7D-8F10-A2B3C4D5E6F7 expires in 29 day(s), on 2026-12-23: add a new secret, update the Secret, then remove the old one"
        );

        let events = transition_events(Some(&fine), &soon);
        assert_eq!(events.len(), 1, "only the changed condition: {events:?}");
        assert_eq!(
            (events[0].0, events[0].1.as_str()),
            (true, reason::CLIENT_SECRET_EXPIRING)
        );
        assert!(transition_events(Some(&soon), &soon).is_empty());

        let unreadable = status_with(
            &t,
            &reg,
            vec![bot("main-hue", 1, 1)],
            AuthState::Checked(AuthOutcome::Authenticated {
                expiry: Expiry::Unreadable("no permission".into()),
            }),
        );
        assert_eq!(
            find(&unreadable.conditions, SECRET_EXPIRY),
            Some(("Unknown", reason::EXPIRY_UNKNOWN))
        );
        assert_eq!(unreadable.client_secret_expires_in_days, None);
    }

    #[test]
    fn entra_refusals_become_reasons_and_passing_trouble_a_retry() {
        let svc = with_app_registration();
        let reg = svc.spec.app_registration.as_ref().unwrap();
        let reason = |e: GraphError| match classify_auth_error(&e, reg, "tenant-contoso") {
            Ok(AuthOutcome::Rejected { reason, message }) => (reason, message),
            other => panic!("{other:?}"),
        };
        let app = "x".to_string();
        let (r, m) = reason(GraphError::InvalidSecret {
            app_id: app.clone(),
        });
        assert_eq!(r, reason::INVALID_CLIENT_SECRET);
        assert!(
            m.contains("Secret tenant-contoso/bot-credentials key clientSecret"),
            "{m}"
        );
        assert_eq!(
            reason(GraphError::SecretExpired {
                app_id: app.clone()
            })
            .0,
            reason::CLIENT_SECRET_EXPIRED
        );
        assert_eq!(
            reason(GraphError::TenantNotFound {
                tenant: TENANT_ID.into()
            })
            .0,
            reason::TENANT_NOT_FOUND
        );
        assert_eq!(
            reason(GraphError::NotConsented {
                tenant: TENANT_ID.into(),
                app_id: app.clone(),
                code: 700016,
                detail: None,
            })
            .0,
            reason::APP_NOT_FOUND
        );
        assert_eq!(
            reason(GraphError::MissingSecret {
                app_id: app.clone(),
                reason: "the Secret does not exist".into()
            })
            .0,
            reason::SECRET_NOT_FOUND
        );
        let throttled = GraphError::Throttled {
            service: crate::graph::Service::Identity,
            retry_after: Duration::from_secs(3),
        };
        assert!(classify_auth_error(&throttled, reg, "tenant-contoso").is_err());
    }

    #[test]
    fn events_follow_transitions_only() {
        let svc = service("main", "tenant-contoso", json!({}));
        let t = tenant("Essentials", true);
        let starting = status_with(&t, &svc, vec![bot("main-hue", 0, 1)], AuthState::NotUsed);
        let first = transition_events(None, &starting);
        let reasons: Vec<&str> = first.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(
            reasons,
            [reason::BOTS_NOT_READY, reason::BOTS_NOT_READY],
            "BotsReady and Ready both start False"
        );
        assert!(first.iter().all(|e| e.0), "False conditions are Warnings");
        let running = status_with(&t, &svc, vec![bot("main-hue", 1, 1)], AuthState::NotUsed);
        let next = transition_events(Some(&starting), &running);
        assert_eq!(
            next.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
            [(false, "BotsReady"), (false, "Ready")]
        );
        assert!(!status_changed(
            Some(&running),
            &status_with(&t, &svc, vec![bot("main-hue", 1, 1)], AuthState::NotUsed)
        ));
    }
}
