//! Per-instance media exposure: every bot instance is reached on its own public IP and port.
//!
//! - `loadBalancer` (default): a `LoadBalancer` Service per instance selecting exactly its pod
//!   (`statefulset.kubernetes.io/pod-name`), public port `portRangeStart + n` where `n` counts
//!   the service's instances (the first bot's, then the paired bot's), forwarded to the
//!   instance's internal media port; the static public IP when one is configured, else the
//!   address the cloud assigns (read back from the Service's `status.loadBalancer.ingress`).
//! - `hostNetwork`: the pods use the node's network on nodes with an instance public IP; the
//!   public port is the internal media port and the public IP the node's `ExternalIP`.
//!
//! Each instance's address reaches it through the `<service>-bot-media` ConfigMap, one entry
//! per pod name (a StatefulSet has one pod template, so a per-ordinal value cannot be an
//! environment variable). The map is not part of the configuration hash: an address learnt
//! later does not roll the other instances; the kubelet refreshes the mounted file.

use super::*;
use crate::config::{BotsConfig, MediaMode};

/// File of the instance addresses inside the media ConfigMap.
pub const INSTANCES_FILE: &str = "instances.json";
/// The label the StatefulSet controller puts on each of its pods, naming it.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// Name of the ConfigMap of the instances' media addresses.
pub fn media_config_map_name(service: &str) -> String {
    format!("{service}-bot-media")
}

/// One bot instance: its pod and where Teams reaches its media.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// `<statefulset>-<ordinal>`.
    pub pod: String,
    #[serde(skip)]
    pub role: Option<BotRole>,
    /// The public IP, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    pub public_port: i32,
    pub internal_port: i32,
}

/// The public IP and first port of a service's instances: the service's override, else the
/// configuration's.
fn load_balancer_of<'a>(
    service: &'a RecordingService,
    bots: &'a BotsConfig,
) -> (Option<&'a str>, i32) {
    let media = service.spec.bot.media.as_ref();
    let lb = &bots.media.load_balancer;
    (
        media
            .and_then(|m| m.public_ip.as_deref())
            .or(lb.public_ip.as_deref()),
        media
            .and_then(|m| m.port_range_start)
            .unwrap_or(lb.port_range_start),
    )
}

/// Every instance of a service, the first bot's then the paired bot's, with its public port.
/// `observed` gives a pod's public IP when the configuration does not (the instance Service's
/// assigned address, or in host mode the node's).
pub fn instances(
    service: &RecordingService,
    license: License,
    bots: &BotsConfig,
    observed: &BTreeMap<String, String>,
) -> Vec<Instance> {
    let name = service.name_any();
    let replicas = service.spec.bot.replicas.unwrap_or(1);
    let (ip, start) = load_balancer_of(service, bots);
    let internal = bots.media.internal_port;
    bot_roles(license)
        .into_iter()
        .flat_map(|role| (0..replicas).map(move |ordinal| (role, ordinal)))
        .enumerate()
        .map(|(n, (role, ordinal))| {
            let pod = format!("{}-{ordinal}", role.object_name(&name));
            let (public_ip, public_port) = match bots.media.mode {
                MediaMode::LoadBalancer => (
                    ip.map(str::to_string)
                        .or_else(|| observed.get(&pod).cloned()),
                    start + n as i32,
                ),
                MediaMode::HostNetwork => (observed.get(&pod).cloned(), internal),
            };
            Instance {
                pod,
                role: Some(role),
                public_ip,
                public_port,
                internal_port: internal,
            }
        })
        .collect()
}

/// What only the workload can check: the names the StatefulSets give (the
/// `controller-revision-hash` label `<statefulset>-<hash>` and the instance Services'
/// `<pod>-media` must stay within 63 characters) and, in load-balancer mode, that the
/// instances fit in the service's port range.
pub fn check_workload(
    service: &RecordingService,
    license: License,
    bots: &BotsConfig,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let replicas = service.spec.bot.replicas.unwrap_or(1);
    for role in bot_roles(license) {
        let stateful_set = role.object_name(&service.name_any());
        let longest = [
            format!("{stateful_set}-{}", "x".repeat(10)),
            format!("{stateful_set}-{}-media", replicas - 1),
        ];
        if let Some(long) = longest.iter().find(|n| n.len() > 63) {
            violations.push(Violation {
                field: "metadata.name".into(),
                message: format!(
                    "too long for the bot instances' names: {long:?} would exceed 63 characters"
                ),
            });
            break;
        }
    }
    if bots.media.mode == MediaMode::LoadBalancer {
        let (_, start) = load_balancer_of(service, bots);
        let count = bot_roles(license).len() as i32 * replicas;
        let end = bots.media.load_balancer.port_range_end;
        let last = start + count - 1;
        if last > end || last > 65535 {
            violations.push(Violation {
                field: "spec.bot.replicas".into(),
                message: format!(
                    "{count} bot instances need public media ports {start}-{last}, beyond the end of the range ({end}, bots.media.loadBalancer.portRangeEnd)"
                ),
            });
        }
    }
    violations
}

/// The instance Services (load-balancer mode; none with host networking).
pub fn instance_services(
    service: &RecordingService,
    instances: &[Instance],
    bots: &BotsConfig,
    meta: impl Fn(String) -> ObjectMeta,
) -> Vec<Service> {
    if bots.media.mode != MediaMode::LoadBalancer {
        return Vec::new();
    }
    let lb = &bots.media.load_balancer;
    let (ip, _) = load_balancer_of(service, bots);
    instances
        .iter()
        .map(|instance| {
            let mut metadata = meta(format!("{}-media", instance.pod));
            if !lb.annotations.is_empty() {
                metadata.annotations = Some(lb.annotations.clone());
            }
            Service {
                metadata,
                spec: Some(ServiceSpec {
                    type_: Some("LoadBalancer".into()),
                    selector: Some([(POD_NAME_LABEL.to_string(), instance.pod.clone())].into()),
                    ports: Some(vec![ServicePort {
                        name: Some("media".into()),
                        port: instance.public_port,
                        target_port: Some(IntOrString::Int(instance.internal_port)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    load_balancer_ip: ip.map(str::to_string),
                    load_balancer_class: lb.load_balancer_class.clone(),
                    // The media reaches the instance's node directly, keeping the caller's
                    // address; a draining (not ready) instance keeps its calls' media.
                    external_traffic_policy: Some("Local".into()),
                    publish_not_ready_addresses: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// The ConfigMap of the instances' addresses, keyed by pod name.
pub fn media_config_map(instances: &[Instance], meta: ObjectMeta) -> ConfigMap {
    let by_pod: BTreeMap<&str, &Instance> = instances.iter().map(|i| (i.pod.as_str(), i)).collect();
    ConfigMap {
        metadata: meta,
        data: Some(
            [(
                INSTANCES_FILE.to_string(),
                serde_json::to_string_pretty(&by_pod).expect("instances serialize"),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The bots may be called on their signalling (webhook) port and reached on their media port
/// (the kubelet's probes are not subject to the policy), and may reach HTTPS endpoints (Graph, Teams, storage), DNS and
/// Teams' signalling (TCP 5060/5061) and media (UDP 10000-20000); everything else stays denied
/// by the tenant's default policy.
pub(super) fn bot_network_policy(service: &str, bots: &BotsConfig) -> NetworkPolicySpec {
    let port = |p: i32, protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    let media_udp = NetworkPolicyPort {
        port: Some(IntOrString::Int(10000)),
        end_port: Some(20000),
        protocol: Some("UDP".into()),
    };
    NetworkPolicySpec {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(service, None)),
            ..Default::default()
        }),
        policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        ingress: Some(vec![NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![
                port(SIGNALING_PORT, "TCP"),
                port(bots.media.internal_port, "TCP"),
            ]),
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
            NetworkPolicyEgressRule {
                to: None,
                ports: Some(vec![port(5060, "TCP"), port(5061, "TCP"), media_udp]),
            },
        ]),
    }
}
