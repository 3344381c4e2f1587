//! The Kubernetes permissions the operator needs, in one place.
//!
//! `deploy/rbac.yaml` and the Helm chart's `templates/rbac.yaml` grant exactly these rules
//! (checked by `tests/deploy_rbac.rs`, which also runs the controllers under them): when a
//! controller starts making a new API call, add the rule here and to both manifests.
//!
//! Where each rule applies, narrowest first:
//! - [`OWN_SECRETS_RULES`] and [`NAMESPACED_RULES`]: Roles in the operator's own namespace.
//!   The operator reads Secrets there and, through [`TENANT_RULES`], in tenant namespaces;
//!   nowhere else, and it never lists or watches Secrets or ConfigMaps cluster-wide (its
//!   ConfigMaps are watched in each tenant namespace).
//! - [`TENANT_RULES`]: a ClusterRole the Tenant controller binds to the operator in each
//!   `tenant-<name>` namespace with a RoleBinding it applies right after the namespace (owned
//!   by the Tenant, gone with it). Creating that binding passes the API server's escalation
//!   check because the operator may `bind` that one ClusterRole. What this does not prevent:
//!   an operator that may create RoleBindings anywhere could bind that role in another
//!   namespace; it confines the grant to what the code asks for, not what a compromised
//!   process could do (docs/operations.md says so).
//! - [`RULES`]: the ClusterRole bound cluster-wide: the operator's own resources, namespaces,
//!   the bots' watch, the bindings above and Events.
//!
//! Each verb is one the code calls, nothing more:
//! - Objects the operator creates are written with server-side apply, which the API server
//!   authorizes as `patch`, and as `create` too when the apply creates the object.
//! - `list` and `watch` only where a watch reads the kind (the Tenant, ConsentGrant and
//!   RecordingService watches, the bot StatefulSets' reflector, the Secrets' and ConfigMaps'
//!   metadata watches per tenant namespace, and the metadata-only watches of what the
//!   operator owns, which notice an object changed
//!   or deleted by someone else); `get` only where the code reads one object. What a tenant or
//!   service owns is otherwise applied and never read back (the apply's response is all the
//!   code looks at).
//! - `delete` only on what the code deletes: stale ConsentGrants, stale bots and their
//!   PodDisruptionBudgets, and the storage claims of a Tenant whose `deletionPolicy` is
//!   `Delete`. Everything else goes with its owner through garbage collection. (A cluster
//!   running the `OwnerReferencesPermissionEnforcement` admission plugin, OpenShift for one,
//!   lets only a user who may delete an object *change* its owner references. The operator
//!   sets them when it creates an object, which the plugin allows; it changes them on an
//!   existing object only to adopt one someone else made, and on the tenant's namespace when
//!   `deletionPolicy` changes under the PVC backend. There those need a `delete` granted by
//!   hand; docs/operations.md says so.)
//! - No `update` on `*/finalizers`: the operator's owner references do not set
//!   `blockOwnerDeletion` (kube's `controller_owner_ref` leaves it unset, and
//!   `tests/deploy_rbac.rs` checks it stays so); setting it would need `update` on the owner's
//!   `finalizers` subresource under that plugin. The Tenant's own finalizer is a `patch` of the
//!   Tenant.
//! - Events are published as `events.k8s.io/v1` Events, created and never patched.

/// One RBAC rule: `verbs` on `resources` (`kind` or `kind/subresource`) of `api_group`
/// (`""` is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// `resourceNames`: empty for every object of the kind.
    pub names: &'static [&'static str],
}

/// Objects the operator only creates and keeps up to date with server-side apply.
const APPLIED: &[&str] = &["create", "patch"];

/// Cluster-wide rules (the ClusterRole bound by a ClusterRoleBinding). No Secrets, and no
/// writes of what lives in a tenant's namespace but the ConsentGrants: those are
/// [`TENANT_RULES`], granted namespace by namespace.
pub const RULES: &[Rule] = &[
    // Tenants: watched; read by the public listener (a Quick Start page shows its Tenant's
    // live state); patched for the storage finalizer.
    Rule {
        api_group: "recording.m365.io",
        resources: &["tenants"],
        verbs: &["get", "list", "watch", "patch"],
        names: &[],
    },
    // The RecordingService controller's watch; read by the bots' policy report
    // (src/http/report.rs).
    Rule {
        api_group: "recording.m365.io",
        resources: &["recordingservices"],
        verbs: &["get", "list", "watch"],
        names: &[],
    },
    // The bots' policy report: the bots' ServiceAccount token reviewed.
    Rule {
        api_group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
        names: &[],
    },
    // ConsentGrants: applied by the Tenant controller, and deleted when no longer needed
    // after a read that shows the operator made them; watched; annotated (merge patch) to ask
    // for a re-check.
    Rule {
        api_group: "recording.m365.io",
        resources: &["consentgrants"],
        verbs: &["create", "patch", "get", "delete", "list", "watch"],
        names: &[],
    },
    // Status is written with server-side apply and never read through the subresource.
    Rule {
        api_group: "recording.m365.io",
        resources: &[
            "tenants/status",
            "consentgrants/status",
            "recordingservices/status",
        ],
        verbs: &["patch"],
        names: &[],
    },
    // A tenant's namespace: read once before it is first applied (an existing namespace not
    // made for the Tenant is not adopted), then applied.
    Rule {
        api_group: "",
        resources: &["namespaces"],
        verbs: &["create", "patch", "get"],
        names: &[],
    },
    // What the Tenants and RecordingServices own, watched metadata only and selected by the
    // label every owned object carries (src/controller/owned.rs), so that an object changed
    // or deleted behind the operator's back is applied again at once rather than on a timer.
    // Read-only and cluster-wide: RBAC cannot narrow a list by label. Not the ConfigMaps,
    // whose data could be anyone's secrets: those are watched one tenant namespace at a time
    // under [`TENANT_RULES`].
    Rule {
        api_group: "",
        resources: &[
            "namespaces",
            "resourcequotas",
            "serviceaccounts",
            "services",
        ],
        verbs: &["list", "watch"],
        names: &[],
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: &["list", "watch"],
        names: &[],
    },
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["list", "watch"],
        names: &[],
    },
    Rule {
        api_group: "rbac.authorization.k8s.io",
        resources: &["rolebindings"],
        verbs: &["list", "watch"],
        names: &[],
    },
    // The bots: watched across the tenant namespaces (the controller owns them); written
    // under [`TENANT_RULES`].
    Rule {
        api_group: "apps",
        resources: &["statefulsets"],
        verbs: &["list", "watch"],
        names: &[],
    },
    // Host-networking media: an instance's public IP is its node's annotation or ExternalIP
    // (nodes are cluster-scoped, so this cannot be granted namespace by namespace).
    Rule {
        api_group: "",
        resources: &["nodes"],
        verbs: &["get"],
        names: &[],
    },
    // The RoleBinding in each tenant namespace that grants the operator [`TENANT_RULES`]
    // there, and the right to bind that one ClusterRole (the API server's escalation check).
    Rule {
        api_group: "rbac.authorization.k8s.io",
        resources: &["rolebindings"],
        verbs: APPLIED,
        names: &[],
    },
    Rule {
        api_group: "rbac.authorization.k8s.io",
        resources: &["clusterroles"],
        verbs: &["bind"],
        names: &[TENANT_CLUSTER_ROLE],
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create"],
        names: &[],
    },
];

/// The name of the ClusterRole holding [`TENANT_RULES`] in `deploy/` (the chart prefixes
/// its release's name); the operator learns the installed name from
/// [`TenantAccess::cluster_role`].
pub const TENANT_CLUSTER_ROLE: &str = "recording-operator-tenant";

/// Rules in each tenant namespace (the ClusterRole [`TENANT_CLUSTER_ROLE`], bound there by the
/// RoleBinding the Tenant controller applies right after the namespace).
pub const TENANT_RULES: &[Rule] = &[
    // The tenant's quota; a service's ServiceAccount, ConfigMap and Service.
    Rule {
        api_group: "",
        resources: &[
            "resourcequotas",
            "configmaps",
            "serviceaccounts",
            "services",
        ],
        verbs: APPLIED,
        names: &[],
    },
    // A service's ConfigMaps, watched metadata only and by the operator's label in each
    // tenant namespace with a service (src/controller/service/namespace_watch.rs): a change
    // or deletion by someone else is repaired at once.
    Rule {
        api_group: "",
        resources: &["configmaps"],
        verbs: &["list", "watch"],
        names: &[],
    },
    // The tenant's default-deny policy and a service's policy.
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: APPLIED,
        names: &[],
    },
    // The bots: applied, deleted when no longer needed.
    Rule {
        api_group: "apps",
        resources: &["statefulsets"],
        verbs: &["create", "patch", "delete"],
        names: &[],
    },
    // The bot Deployments of earlier versions: read (owner check), deleted once replaced.
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: &["get", "delete"],
        names: &[],
    },
    // Instance Services: the assigned load-balancer address read back; those of instances
    // no longer there listed and deleted.
    Rule {
        api_group: "",
        resources: &["services"],
        verbs: &["get", "list", "delete"],
        names: &[],
    },
    // Host-networking media: the node an instance's pod runs on.
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["get"],
        names: &[],
    },
    // The paired bot's budget: applied, deleted with the paired bot.
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["create", "patch", "delete"],
        names: &[],
    },
    // The PVC storage backend's claims: read (an existing claim keeps its class and size, and
    // on cleanup its labels must say it is the operator's), applied, deleted on cleanup.
    Rule {
        api_group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["create", "patch", "get", "delete"],
        names: &[],
    },
    // A service's client secret (get), and the metadata-only watch of the namespace's Secrets
    // that notices a rotation (list, watch).
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch"],
        names: &[],
    },
    // The bots' credentials Secret per service (the platform applications' client secrets
    // copied into the tenant namespace, where the pods reference them): server-side applied.
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: APPLIED,
        names: &[],
    },
    // The bots' calling webhook (src/controller/service/webhook.rs): Ingresses and
    // cert-manager Certificates applied; the Ingress read and deleted when a service no longer
    // has its own app registration. (Callback Services: listed and deleted with the instance
    // Services above.)
    Rule {
        api_group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["create", "patch", "get", "delete"],
        names: &[],
    },
    Rule {
        api_group: "cert-manager.io",
        resources: &["certificates"],
        verbs: APPLIED,
        names: &[],
    },
];

/// Rules in the operator's own namespace (the Role): the leader election Lease.
pub const NAMESPACED_RULES: &[Rule] = &[Rule {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "update"],
    names: &[],
}];

/// Rules in the operator's own namespace (a second Role): its own Secrets (the platform
/// applications' client secrets, the customers' BYOS credentials, link signing keys), read one
/// by one.
pub const OWN_SECRETS_RULES: &[Rule] = &[Rule {
    api_group: "",
    resources: &["secrets"],
    verbs: &["get"],
    names: &[],
}];

/// The platform webhook router's ClusterRole (`recording-operator router`, src/router.rs):
/// its two reflectors list and watch Tenants and RecordingServices cluster-wide; it reads no
/// object by name and writes nothing.
pub const ROUTER_RULES: &[Rule] = &[Rule {
    api_group: "recording.m365.io",
    resources: &["tenants", "recordingservices"],
    verbs: &["list", "watch"],
    names: &[],
}];

/// Who the RoleBinding in each tenant namespace binds to what (configuration
/// `tenantAccess`, each field defaulting from the environment the manifests set).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantAccess {
    /// The operator's ServiceAccount, in the operator's namespace (default:
    /// `POD_SERVICE_ACCOUNT`, else `recording-operator`).
    pub service_account: String,
    /// The ClusterRole of [`TENANT_RULES`] (default: `TENANT_CLUSTER_ROLE`, else
    /// `recording-operator-tenant`).
    pub cluster_role: String,
}

impl Default for TenantAccess {
    fn default() -> Self {
        TenantAccessFile::default().resolve()
    }
}

/// [`TenantAccess`] as the configuration file gives it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantAccessFile {
    service_account: Option<String>,
    cluster_role: Option<String>,
}

impl TenantAccessFile {
    pub fn resolve(self) -> TenantAccess {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        TenantAccess {
            service_account: self
                .service_account
                .or_else(|| env("POD_SERVICE_ACCOUNT"))
                .unwrap_or_else(|| "recording-operator".to_owned()),
            cluster_role: self
                .cluster_role
                .or_else(|| env("TENANT_CLUSTER_ROLE"))
                .unwrap_or_else(|| TENANT_CLUSTER_ROLE.to_owned()),
        }
    }
}

/// `(api group, resource, verb)` for every permission `rules` grant, sorted and deduplicated:
/// the form in which two rule lists compare.
pub fn grants(rules: &[Rule]) -> std::collections::BTreeSet<(String, String, String)> {
    rules
        .iter()
        .flat_map(|rule| {
            rule.resources.iter().flat_map(move |resource| {
                rule.verbs.iter().map(move |verb| {
                    (
                        rule.api_group.to_owned(),
                        (*resource).to_owned(),
                        (*verb).to_owned(),
                    )
                })
            })
        })
        .collect()
}
