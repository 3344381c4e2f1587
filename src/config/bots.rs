//! The `bots` section: how the recording bots' workloads run (Windows nodes, sizing, media
//! exposure, lifecycle). Defaults follow Microsoft's compliance recording samples
//! (PolicyRecordingBot and its Kubernetes deployment).
//!
//! ```yaml
//! bots:
//!   windows:
//!     nodeSelector: { kubernetes.io/os: windows }
//!     tolerations: [{ key: os, operator: Equal, value: windows, effect: NoSchedule }]
//!     agentPools: [botpool]            # node affinity on agentPoolLabel
//!     runAsUserName: ContainerAdministrator
//!   resources:
//!     requests: { cpu: "2", memory: 4Gi, ephemeral-storage: 1Gi }
//!     limits: { cpu: "4", memory: 8Gi, ephemeral-storage: 4Gi }
//!   terminationGracePeriod: 15h
//!   callsUrl: http://localhost:9442/calls
//!   health: { path: /health, port: 9442 }
//!   media:
//!     mode: loadBalancer               # loadBalancer | hostNetwork
//!     internalPort: 8445
//!     loadBalancer: { publicIp: 203.0.113.10, portRangeStart: 20100, portRangeEnd: 20199 }
//!     hostNetwork: { nodeSelector: { recording.m365.io/instance-public-ip: "true" } }
//!   credentials: { secretSuffix: bot-credentials }
//!   defaultImage: ghcr.io/recording-platform/recording-bot:1.0.0
//!   rolloutBudget: 10                  # bot workloads rolled at once, across tenants
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

/// The bot image when the spec names none.
pub const DEFAULT_BOT_IMAGE: &str = "ghcr.io/recording-platform/recording-bot:1.0.0";

/// How the recording bots run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BotsConfig {
    /// Windows node placement and identity.
    pub windows: WindowsConfig,
    /// Requests and limits of a bot container when the service names none.
    pub resources: ResourceRequirements,
    /// How long a stopping instance may keep its calls (default 15h: a call lives on the
    /// instance that answered it, and the `preStop` hook waits for the last one to end).
    #[serde(with = "humantime_serde")]
    pub termination_grace_period: Duration,
    /// The instance's own endpoint listing its calls in progress (a JSON array, or an object
    /// whose elements are the calls): the `preStop` hook polls it until it is empty.
    pub calls_url: String,
    /// The bot's health endpoint, the readiness probe (there is no liveness probe: a restart
    /// would end the instance's calls).
    pub health: HealthEndpoint,
    /// Per-instance media exposure.
    pub media: MediaConfig,
    /// Where the bots' credentials go in the tenant namespace.
    pub credentials: CredentialsConfig,
    /// The bot image of every RecordingService whose spec names none (default: the image
    /// this operator version ships with). Changing it rolls those services' bots, paced by
    /// `rolloutBudget`.
    pub default_image: String,
    /// At most this many bot workloads (across all tenants) are being rolled by the operator
    /// at once: a change of an existing bot's workload waits until fewer than this many of
    /// the rollouts the operator started are unfinished (default 10; at least 1).
    pub rollout_budget: u32,
}

impl Default for BotsConfig {
    fn default() -> Self {
        let quantities = |cpu: &str, memory: &str, ephemeral: &str| {
            Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(memory.into())),
                    ("ephemeral-storage".to_string(), Quantity(ephemeral.into())),
                ]
                .into(),
            )
        };
        Self {
            windows: WindowsConfig::default(),
            // The samples size bot nodes above 2 vCPU (4 vCPU / 16 GiB): one instance per node.
            resources: ResourceRequirements {
                // Ephemeral storage: logs, `/tmp` (at most 256Mi) and the writable layer.
                requests: quantities("2", "4Gi", "1Gi"),
                limits: quantities("4", "8Gi", "4Gi"),
                ..Default::default()
            },
            termination_grace_period: Duration::from_secs(15 * 3600),
            calls_url: "http://localhost:9442/calls".into(),
            health: HealthEndpoint::default(),
            media: MediaConfig::default(),
            credentials: CredentialsConfig::default(),
            default_image: DEFAULT_BOT_IMAGE.to_owned(),
            rollout_budget: 10,
        }
    }
}

/// Windows node placement and the user the bot runs as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WindowsConfig {
    /// Node labels the bot pods need (default `kubernetes.io/os: windows`).
    pub node_selector: BTreeMap<String, String>,
    /// Taints of the Windows nodes the bots tolerate (default `os=windows:NoSchedule`).
    pub tolerations: Vec<Toleration>,
    /// Node pools the bots may run on (a required node affinity on `agentPoolLabel`); any
    /// pool when empty.
    pub agent_pools: Vec<String>,
    /// The node label naming a node's pool (default AKS's `kubernetes.azure.com/agentpool`).
    pub agent_pool_label: String,
    /// The Windows user the container runs as (default `ContainerAdministrator`: the samples'
    /// entrypoint imports the certificate into the machine store and binds it with `netsh`).
    pub run_as_user_name: String,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            node_selector: [("kubernetes.io/os".to_string(), "windows".to_string())].into(),
            tolerations: vec![Toleration {
                key: Some("os".into()),
                operator: Some("Equal".into()),
                value: Some("windows".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            agent_pools: Vec::new(),
            agent_pool_label: "kubernetes.azure.com/agentpool".into(),
            run_as_user_name: "ContainerAdministrator".into(),
        }
    }
}

/// An HTTP endpoint of the bot container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HealthEndpoint {
    pub path: String,
    pub port: i32,
}

impl Default for HealthEndpoint {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            port: 9442,
        }
    }
}

/// How each instance is reached on its own public IP and port for media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaMode {
    /// A `LoadBalancer` Service per instance, public port `portRangeStart + instance`.
    #[default]
    LoadBalancer,
    /// Host networking on nodes with instance-level public IPs: the media port is the node's.
    HostNetwork,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MediaConfig {
    pub mode: MediaMode,
    /// The media port inside the instance (default 8445, as the samples).
    pub internal_port: i32,
    pub load_balancer: LoadBalancerConfig,
    pub host_network: HostNetworkConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            mode: MediaMode::LoadBalancer,
            internal_port: 8445,
            load_balancer: LoadBalancerConfig::default(),
            host_network: HostNetworkConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// A static public IP every instance Service asks for (`spec.loadBalancerIP`); without it
    /// each Service gets the address the cloud assigns, read back from its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// First public media port; instance `i` of a service gets `portRangeStart + i` (the paired
    /// bot's instances follow the first bot's).
    pub port_range_start: i32,
    /// Last public media port a service may use.
    pub port_range_end: i32,
    /// `spec.loadBalancerClass` of the instance Services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Annotations of the instance Services (e.g. the cloud's resource group of the IP).
    pub annotations: BTreeMap<String, String>,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        Self {
            public_ip: None,
            port_range_start: 20100,
            port_range_end: 20199,
            load_balancer_class: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HostNetworkConfig {
    /// Labels of the nodes that have an instance-level public IP.
    pub node_selector: BTreeMap<String, String>,
}

impl Default for HostNetworkConfig {
    fn default() -> Self {
        Self {
            node_selector: [(
                "recording.m365.io/instance-public-ip".to_string(),
                "true".to_string(),
            )]
            .into(),
        }
    }
}

/// The Secret of the bots' credentials in each tenant namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Name suffix of the Secret the operator writes per service: `<service>-<suffix>`.
    pub secret_suffix: String,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            secret_suffix: "bot-credentials".into(),
        }
    }
}

impl BotsConfig {
    /// Adds a problem per field that breaks a rule.
    pub(crate) fn check(&self, problems: &mut Vec<String>) {
        let grace = self.termination_grace_period.as_secs();
        if grace < 30 {
            problems.push(format!(
                "bots.terminationGracePeriod: {grace}s is too short for calls to end (at least 30s)"
            ));
        }
        match url::Url::parse(&self.calls_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => problems.push(format!(
                "bots.callsUrl: {:?} is not an absolute http(s) URL",
                self.calls_url
            )),
        }
        if self.calls_url.contains('\'') {
            problems.push("bots.callsUrl: must not contain a single quote".into());
        }
        if !self.health.path.starts_with('/') {
            problems.push(format!(
                "bots.health.path: {:?} must start with '/'",
                self.health.path
            ));
        }
        for (field, port) in [
            ("bots.health.port", self.health.port),
            ("bots.media.internalPort", self.media.internal_port),
            (
                "bots.media.loadBalancer.portRangeStart",
                self.media.load_balancer.port_range_start,
            ),
            (
                "bots.media.loadBalancer.portRangeEnd",
                self.media.load_balancer.port_range_end,
            ),
        ] {
            if !(1..=65535).contains(&port) {
                problems.push(format!("{field}: {port} is not a port (1-65535)"));
            }
        }
        let lb = &self.media.load_balancer;
        if lb.port_range_end < lb.port_range_start {
            problems.push(format!(
                "bots.media.loadBalancer.portRangeEnd: {} is below portRangeStart {}",
                lb.port_range_end, lb.port_range_start
            ));
        }
        if let Some(ip) = &lb.public_ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                problems.push(format!(
                    "bots.media.loadBalancer.publicIp: {ip:?} is not an IP address"
                ));
            }
        }
        if self.windows.run_as_user_name.trim().is_empty() {
            problems.push("bots.windows.runAsUserName: must not be empty".into());
        }
        if self.credentials.secret_suffix.trim().is_empty() {
            problems.push("bots.credentials.secretSuffix: must not be empty".into());
        }
        if self.default_image.trim().is_empty() {
            problems.push("bots.defaultImage: must not be empty".into());
        }
        if self.rollout_budget == 0 {
            problems.push("bots.rolloutBudget: must be at least 1".into());
        }
        resource_problems(&self.resources, problems);
    }

    /// Public media ports a service may use.
    pub fn port_range_len(&self) -> i32 {
        let lb = &self.media.load_balancer;
        (lb.port_range_end - lb.port_range_start + 1).max(0)
    }
}

/// What the API server would refuse in a bot container's `resources` (Kubernetes'
/// container resource validation), found at start rather than at the first apply: each
/// resource a standard container resource or a domain-qualified extended one, each quantity a
/// non-negative Kubernetes quantity, no request above its limit, the request of huge pages or
/// of an extended resource equal to its limit, and no resource claims (the bot pods declare none).
fn resource_problems(resources: &ResourceRequirements, problems: &mut Vec<String>) {
    let fields = [
        ("requests", resources.requests.as_ref()),
        ("limits", resources.limits.as_ref()),
    ];
    for (field, quantities) in fields {
        for (name, Quantity(value)) in quantities.into_iter().flatten() {
            let path = format!("bots.resources.{field}.{name}");
            if !container_resource(name) {
                problems.push(format!(
                    "{path}: {name:?} is not a container resource (cpu, memory, \
                     ephemeral-storage, hugepages-<size>, or an extended resource such as \
                     example.com/device)"
                ));
            }
            if quantity(value).is_none() {
                problems.push(format!(
                    "{path}: {value:?} is not a non-negative Kubernetes quantity (e.g. 2, 500m, 4Gi)"
                ));
            }
        }
    }
    let limits = resources.limits.clone().unwrap_or_default();
    for (name, Quantity(request)) in resources.requests.iter().flatten() {
        let Some(Quantity(limit)) = limits.get(name) else {
            if !overcommit_allowed(name) && container_resource(name) {
                problems.push(format!(
                    "bots.resources.limits.{name}: required: {name} cannot be overcommitted, \
                     its limit must equal its request {request:?}"
                ));
            }
            continue;
        };
        let (Some(r), Some(l)) = (quantity(request), quantity(limit)) else {
            continue;
        };
        if r > l {
            problems.push(format!(
                "bots.resources.requests.{name}: {request:?} must be less than or equal to the \
                 {name} limit {limit:?}"
            ));
        } else if !overcommit_allowed(name) && r != l {
            problems.push(format!(
                "bots.resources.requests.{name}: {request:?} must equal the {name} limit \
                 {limit:?} ({name} cannot be overcommitted)"
            ));
        }
    }
    if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        problems.push(
            "bots.resources.claims: must be empty: the bot pods declare no resource claims".into(),
        );
    }
}

/// A quantity's value when it is a valid, non-negative Kubernetes quantity.
fn quantity(value: &str) -> Option<kube_quantity::ParsedQuantity> {
    static SYNTAX: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(crate::crd::service::QUANTITY_RE).expect("quantity pattern")
    });
    if !SYNTAX.is_match(value) || value.starts_with('-') {
        return None;
    }
    kube_quantity::ParsedQuantity::try_from(value).ok()
}

/// cpu, memory and ephemeral storage: what a container may ask for below its limit (not huge
/// pages nor extended resources).
fn overcommit_allowed(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
}

/// A resource a container may name: a standard one (huge pages included), or an extended
/// resource (a domain-qualified name outside `kubernetes.io`, e.g. `nvidia.com/gpu`).
fn container_resource(name: &str) -> bool {
    if overcommit_allowed(name) || name.starts_with("hugepages-") {
        return true;
    }
    let Some((domain, resource)) = name.split_once('/') else {
        return false;
    };
    let label = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    domain.contains('.')
        && !domain.ends_with("kubernetes.io")
        && domain.len() <= 253
        && domain.split('.').all(|l| label(l, &[]))
        && label(resource, &['_', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_samples_and_validate() {
        let bots = BotsConfig::default();
        let mut problems = Vec::new();
        bots.check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(bots.media.internal_port, 8445);
        assert_eq!(bots.media.mode, MediaMode::LoadBalancer);
        assert_eq!(bots.termination_grace_period.as_secs(), 54000);
        assert_eq!(bots.port_range_len(), 100);
    }

    #[test]
    fn bad_fields_are_named_with_their_rule() {
        let bots: BotsConfig = serde_saphyr::from_str(
            "terminationGracePeriod: 5s\ncallsUrl: localhost/calls\nhealth: { path: health }\nmedia:\n  loadBalancer: { publicIp: not-an-ip, portRangeStart: 30000, portRangeEnd: 20000 }\ndefaultImage: ' '\nrolloutBudget: 0\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        bots.check(&mut problems);
        let text = problems.join("\n");
        for needle in [
            "bots.terminationGracePeriod",
            "bots.callsUrl",
            "bots.health.path",
            "bots.media.loadBalancer.portRangeEnd: 20000 is below portRangeStart 30000",
            "bots.media.loadBalancer.publicIp",
            "bots.defaultImage: must not be empty",
            "bots.rolloutBudget: must be at least 1",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
    }

    #[test]
    fn resources_the_api_server_would_refuse_are_named_at_start() {
        let bots: BotsConfig = serde_saphyr::from_str(
            "resources:\n  requests: { cpu: lots, memory: 8Gi, gpu: '1', example.com/fpga: '1', ephemeral-storage: '-1Gi' }\n  limits: { cpu: '4', memory: 4Gi, example.com/fpga: '2', example.com/dongle: '1' }\n  claims: [{ name: gpu }]\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        bots.check(&mut problems);
        let text = problems.join("\n");
        for needle in [
            "bots.resources.requests.cpu: \"lots\" is not a non-negative Kubernetes quantity",
            "bots.resources.requests.ephemeral-storage: \"-1Gi\" is not a non-negative",
            "bots.resources.requests.memory: \"8Gi\" must be less than or equal to the memory limit \"4Gi\"",
            "bots.resources.requests.gpu: \"gpu\" is not a container resource",
            "bots.resources.requests.example.com/fpga: \"1\" must equal the example.com/fpga limit \"2\"",
            "bots.resources.claims: must be empty",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
        assert_eq!(problems.len(), 6, "{text}");
        // A request alone is capped by nothing; an extended resource's needs its limit.
        let mut ok: BotsConfig = serde_saphyr::from_str(
            "resources:\n  requests: { cpu: 1500m, memory: 3.5Gi, hugepages-2Mi: 64Mi, nvidia.com/gpu: '1' }\n  limits: { cpu: '2', hugepages-2Mi: 64Mi, nvidia.com/gpu: '1' }\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        ok.check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        ok.resources.limits = None;
        ok.check(&mut problems);
        assert_eq!(
            problems,
            [
                "bots.resources.limits.hugepages-2Mi: required: hugepages-2Mi cannot be \
                 overcommitted, its limit must equal its request \"64Mi\"",
                "bots.resources.limits.nvidia.com/gpu: required: nvidia.com/gpu cannot be \
                 overcommitted, its limit must equal its request \"1\"",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_saphyr::from_str::<BotsConfig>("media: { mdoe: hostNetwork }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mdoe"), "{err}");
    }
}
