//! StatefulSets, pods' OS rules and Services of type LoadBalancer: what the API server checks
//! on write, and what the StatefulSet controller and a cloud's load-balancer controller write
//! into their status.
//!
//! The StatefulSet loop replaces instances from the highest ordinal down, at most
//! `spec.updateStrategy.rollingUpdate.maxUnavailable` (default 1) at a time and none below
//! `partition`; an instance a test marks as having calls in progress (its `preStop` still
//! waiting) stays terminating until the test clears it, and the rollout waits for it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use serde_json::{json, Value};

use super::apply::{self, Scope};
use super::cluster::{now_rfc3339, Cluster};
use super::error::{FieldError, FieldErrorKind};

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

// ----- write rules -----

/// Fields of a pod spec only Linux honours, which the API server refuses on a pod whose
/// `spec.os.name` is `windows` (and `windowsOptions`, refused on a `linux` pod).
const LINUX_POD_FIELDS: &[&str] = &[
    "seLinuxOptions",
    "seccompProfile",
    "appArmorProfile",
    "fsGroup",
    "fsGroupChangePolicy",
    "sysctls",
    "runAsUser",
    "runAsGroup",
    "supplementalGroups",
    "supplementalGroupsPolicy",
];
const LINUX_CONTAINER_FIELDS: &[&str] = &[
    "seLinuxOptions",
    "seccompProfile",
    "appArmorProfile",
    "capabilities",
    "readOnlyRootFilesystem",
    "privileged",
    "allowPrivilegeEscalation",
    "procMount",
    "runAsUser",
    "runAsGroup",
];

/// The rules of `spec.os.name` for a pod spec at `path`.
pub fn pod_os_rules(spec: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let os = match &spec["os"]["name"] {
        Value::Null => return,
        Value::String(os) if os == "windows" || os == "linux" => os.as_str(),
        other => {
            errors.push(FieldError {
                field: format!("{path}.os.name"),
                kind: FieldErrorKind::NotSupported {
                    value: super::error::go_value(other),
                    supported: vec!["linux".into(), "windows".into()],
                },
            });
            return;
        }
    };
    let mut forbid = |field: String| {
        errors.push(FieldError::forbidden(
            field,
            format!("cannot be set for a {os} pod"),
        ))
    };
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|list| {
            spec[list]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, c)| (format!("{path}.{list}[{i}].securityContext"), c))
        })
        .collect::<Vec<_>>();
    if os == "windows" {
        for field in ["hostPID", "hostIPC", "shareProcessNamespace"] {
            if !spec[field].is_null() && spec[field] != json!(false) {
                forbid(format!("{path}.{field}"));
            }
        }
        for field in LINUX_POD_FIELDS {
            if !spec["securityContext"][field].is_null() {
                forbid(format!("{path}.securityContext.{field}"));
            }
        }
        for (at, c) in &containers {
            for field in LINUX_CONTAINER_FIELDS {
                if !c["securityContext"][field].is_null() {
                    forbid(format!("{at}.{field}"));
                }
            }
        }
    } else {
        if !spec["securityContext"]["windowsOptions"].is_null() {
            forbid(format!("{path}.securityContext.windowsOptions"));
        }
        for (at, c) in &containers {
            if !c["securityContext"]["windowsOptions"].is_null() {
                forbid(format!("{at}.windowsOptions"));
            }
        }
    }
}

/// StatefulSet defaults and rules: its pod template as any workload's, and only `replicas`,
/// `template`, `updateStrategy`, `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy`,
/// `minReadySeconds` and `ordinals` may change.
pub fn stateful_set_admission(old: Option<&Value>, o: &mut Value, errors: &mut Vec<FieldError>) {
    let spec = &mut o["spec"];
    for (field, default) in [
        ("replicas", json!(1)),
        ("podManagementPolicy", json!("OrderedReady")),
        ("revisionHistoryLimit", json!(10)),
        (
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        ),
        (
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        ),
    ] {
        if spec[field].is_null() {
            spec[field] = default;
        }
    }
    if !matches!(
        spec["podManagementPolicy"].as_str(),
        Some("OrderedReady") | Some("Parallel")
    ) {
        errors.push(FieldError {
            field: "spec.podManagementPolicy".into(),
            kind: FieldErrorKind::NotSupported {
                value: super::error::go_value(&spec["podManagementPolicy"]),
                supported: vec!["OrderedReady".into(), "Parallel".into()],
            },
        });
    }
    super::admission::template_admission(old, o, errors);
    if let Some(old) = old {
        const MUTABLE: &[&str] = &[
            "replicas",
            "template",
            "updateStrategy",
            "revisionHistoryLimit",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "ordinals",
        ];
        let changed = |v: &Value| -> Value {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.retain(|k, _| !MUTABLE.contains(&k.as_str()));
            }
            v
        };
        if changed(&old["spec"]) != changed(&o["spec"]) {
            errors.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

/// A `NodePort` or `LoadBalancer` Service gets a node port per port (kept across updates).
pub fn service_node_ports(old: Option<&Value>, o: &mut Value) {
    let kind = o["spec"]["type"].as_str().unwrap_or_default().to_string();
    if kind != "NodePort" && kind != "LoadBalancer" {
        return;
    }
    let old_ports: BTreeMap<String, Value> = old
        .and_then(|o| o["spec"]["ports"].as_array())
        .into_iter()
        .flatten()
        .map(|p| (port_key(p), p["nodePort"].clone()))
        .collect();
    if o["spec"]["externalTrafficPolicy"].is_null() {
        o["spec"]["externalTrafficPolicy"] = json!("Cluster");
    }
    if kind == "LoadBalancer"
        && o["spec"]["externalTrafficPolicy"] == "Local"
        && o["spec"]["healthCheckNodePort"].is_null()
    {
        o["spec"]["healthCheckNodePort"] = json!(30000 + random_port());
    }
    if let Some(ports) = o["spec"]["ports"].as_array_mut() {
        for p in ports {
            if p["nodePort"].is_null() {
                p["nodePort"] = old_ports
                    .get(&port_key(p))
                    .filter(|v| !v.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!(30000 + random_port()));
            }
        }
    }
}

fn port_key(p: &Value) -> String {
    format!("{}/{}", p["port"], p["protocol"])
}

fn random_port() -> i64 {
    let b = uuid::Uuid::new_v4();
    i64::from(u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]]) % 2768)
}

// ----- the StatefulSet loop -----

/// What the simulated StatefulSet controller knows of one StatefulSet's instances.
#[derive(Debug, Default)]
pub struct Rollout {
    revision: String,
    replicas: i64,
    /// Ordinals running the update revision.
    updated: BTreeSet<i64>,
    /// Ordinals being (re)started: unavailable until their time comes.
    starting: BTreeMap<i64, Instant>,
}

/// The StatefulSet loop's state and what tests set.
#[derive(Debug, Default)]
pub struct StatefulSets {
    pub rollouts: BTreeMap<(String, String), Rollout>,
    /// StatefulSets held with no instance ready: (namespace, name).
    pub held: BTreeSet<(String, String)>,
    /// Instances with calls in progress: a stop waits for them (namespace, pod name).
    pub busy: BTreeSet<(String, String)>,
    /// Load-balancer addresses handed out so far.
    pub assigned: u32,
}

fn revision_of(sts: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sts["spec"]["template"].to_string().hash(&mut hasher);
    format!(
        "{}-{:010x}",
        meta_str(sts, "name"),
        hasher.finish() & 0xff_ffff_ffff
    )
}

fn max_unavailable(sts: &Value, replicas: i64) -> i64 {
    match &sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] {
        Value::Number(n) => n.as_i64().unwrap_or(1).max(1),
        Value::String(p) if p.ends_with('%') => {
            let pct: i64 = p.trim_end_matches('%').parse().unwrap_or(0);
            (replicas * pct / 100).max(1)
        }
        _ => 1,
    }
}

impl Cluster {
    /// One pass of the simulated StatefulSet controller; returns true when it wrote anything.
    pub fn reconcile_stateful_sets(&mut self, now: Instant) -> bool {
        let Some(rt) = self.registry.find("apps", "v1", "statefulsets") else {
            return false;
        };
        let all: Vec<Value> = self
            .store
            .list(&rt.store_key(), "")
            .into_iter()
            .cloned()
            .collect();
        let delay = self.ready_delay;
        let mut wrote = false;
        for sts in all {
            if !sts["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let ns = meta_str(&sts, "namespace").to_string();
            let key = (ns.clone(), meta_str(&sts, "name").to_string());
            let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
            let partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                .as_i64()
                .unwrap_or(0);
            let revision = revision_of(&sts);
            let busy = &self.workloads.busy;
            let rollout = self.workloads.rollouts.entry(key.clone()).or_default();
            if rollout.revision.is_empty() {
                // Created: every instance starts at once (or in order: same end state).
                rollout.revision = revision.clone();
                rollout.starting = (0..replicas).map(|o| (o, now + delay)).collect();
            } else if rollout.revision != revision {
                rollout.revision = revision.clone();
                rollout.updated.clear();
            }
            if rollout.replicas != replicas {
                for ordinal in rollout.replicas..replicas {
                    rollout.starting.entry(ordinal).or_insert(now + delay);
                }
                rollout.updated.retain(|o| *o < replicas);
                rollout.starting.retain(|o, _| *o < replicas);
                rollout.replicas = replicas;
            }
            // Started instances run the update revision.
            let pod = |o: i64| (ns.clone(), format!("{}-{o}", key.1));
            let done: Vec<i64> = rollout
                .starting
                .iter()
                .filter(|(o, due)| now >= **due && !busy.contains(&pod(**o)))
                .map(|(o, _)| *o)
                .collect();
            for o in done {
                rollout.starting.remove(&o);
                rollout.updated.insert(o);
            }
            // Replace old instances, highest ordinal first, within maxUnavailable.
            let budget = max_unavailable(&sts, replicas) - rollout.starting.len() as i64;
            let next: Vec<i64> = (partition..replicas)
                .rev()
                .filter(|o| !rollout.updated.contains(o) && !rollout.starting.contains_key(o))
                .take(budget.max(0) as usize)
                .collect();
            for o in next {
                rollout.starting.insert(o, now + delay);
            }
            let updated = rollout.updated.len() as i64;
            let unavailable = rollout.starting.len() as i64;
            let held = self.workloads.held.contains(&key);
            let ready = if held { 0 } else { replicas - unavailable };
            let complete = (partition..replicas).all(|o| rollout.updated.contains(&o));
            let current_revision = if complete {
                revision.clone()
            } else {
                sts["status"]["currentRevision"]
                    .as_str()
                    .unwrap_or(&revision)
                    .to_string()
            };
            let status = json!({
                "observedGeneration": sts["metadata"]["generation"].as_i64().unwrap_or(1),
                "replicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": if complete { replicas } else { replicas - updated },
                "updatedReplicas": updated,
                "currentRevision": current_revision,
                "updateRevision": revision,
                "collisionCount": 0,
            });
            if sts["status"] != status {
                let mut next = sts.clone();
                next["status"] = status;
                self.write_status(&rt, &sts, next, "kube-controller-manager", "apps/v1");
                wrote = true;
            }
        }
        wrote
    }

    /// A cloud's load-balancer controller: each `LoadBalancer` Service gets its requested
    /// `loadBalancerIP`, else the next documentation address (203.0.113.0/24).
    pub fn reconcile_load_balancers(&mut self) -> bool {
        let Some(rt) = self.registry.find("", "v1", "services") else {
            return false;
        };
        let waiting: Vec<Value> = self
            .store
            .list(&rt.store_key(), "")
            .into_iter()
            .filter(|s| {
                s["spec"]["type"] == "LoadBalancer"
                    && s["status"]["loadBalancer"]["ingress"].is_null()
                    && s["metadata"]["deletionTimestamp"].is_null()
            })
            .cloned()
            .collect();
        let wrote = !waiting.is_empty();
        for service in waiting {
            let ip = match service["spec"]["loadBalancerIP"].as_str() {
                Some(ip) => ip.to_string(),
                None => {
                    self.workloads.assigned += 1;
                    format!("203.0.113.{}", self.workloads.assigned % 254 + 1)
                }
            };
            let mut next = service.clone();
            next["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}});
            self.write_status(&rt, &service, next, "cloud-controller-manager", "v1");
        }
        wrote
    }

    fn write_status(
        &mut self,
        rt: &super::resources::ResourceType,
        old: &Value,
        mut next: Value,
        manager: &str,
        api_version: &str,
    ) {
        let now = now_rfc3339();
        apply::record_update(
            Some(old),
            &mut next,
            &apply::Writer {
                manager,
                api_version,
                scope: Scope::Status,
                lists: rt,
                now: &now,
            },
        );
        self.store.put(&rt.store_key(), next);
    }
}
