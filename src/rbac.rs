//! The Kubernetes permissions the operator needs, in one place.
//!
//! `deploy/rbac.yaml` and the Helm chart's `templates/rbac.yaml` grant exactly these rules
//! (checked by `tests/deploy_rbac.rs`, which also runs the controllers under them): when a
//! controller starts making a new API call, add the rule here and to both manifests.
//!
//! Each verb is one the code calls, nothing more:
//! - Objects the operator creates are written with server-side apply, which the API server
//!   authorizes as `patch`, and as `create` too when the apply creates the object.
//! - `list` and `watch` only where a watch reads the kind (the Tenant, ConsentGrant and
//!   RecordingService watches, the bot Deployments' reflector, the Secrets' metadata watch);
//!   `get` only where the code reads one object. What a tenant or service owns besides that is
//!   applied and never read back (the apply's response is all the code looks at).
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
}

/// Objects the operator only creates and keeps up to date with server-side apply.
const APPLIED: &[&str] = &["create", "patch"];

/// Cluster-wide rules (the ClusterRole).
pub const RULES: &[Rule] = &[
    // Tenants: watched; read by the public listener (a Quick Start page shows its Tenant's
    // live state); patched for the storage finalizer.
    Rule {
        api_group: "recording.m365.io",
        resources: &["tenants"],
        verbs: &["get", "list", "watch", "patch"],
    },
    // The RecordingService controller's watch.
    Rule {
        api_group: "recording.m365.io",
        resources: &["recordingservices"],
        verbs: &["list", "watch"],
    },
    // ConsentGrants: applied and deleted by the Tenant controller, watched, and annotated
    // (merge patch) to ask for a re-check.
    Rule {
        api_group: "recording.m365.io",
        resources: &["consentgrants"],
        verbs: &["create", "patch", "delete", "list", "watch"],
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
    },
    // A tenant's namespace, quota and network policy; a service's ServiceAccount, ConfigMap,
    // Service and network policy.
    Rule {
        api_group: "",
        resources: &[
            "namespaces",
            "resourcequotas",
            "configmaps",
            "serviceaccounts",
            "services",
        ],
        verbs: APPLIED,
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: APPLIED,
    },
    // The bots: applied, watched (the controller owns them), deleted when no longer needed.
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: &["create", "patch", "delete", "list", "watch"],
    },
    // The paired bot's budget: applied, deleted with the paired bot.
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["create", "patch", "delete"],
    },
    // The PVC storage backend's claims: applied, and on cleanup read (to check the labels
    // say they are the operator's) and deleted.
    Rule {
        api_group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["create", "patch", "get", "delete"],
    },
    // Read only: BYOS credentials, app registration secrets and the platform applications'
    // client secrets (get), and the metadata-only watch that notices a rotated client secret
    // (list, watch).
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create"],
    }, // The bots' calling webhook (src/controller/service/webhook.rs): Ingresses and
    // cert-manager Certificates applied; callback Services listed and deleted when no longer
    // needed, the Ingress read and deleted when a service no longer has its own app
    // registration.
    Rule {
        api_group: "",
        resources: &["services"],
        verbs: &["list", "delete"],
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["create", "patch", "get", "delete"],
    },
    Rule {
        api_group: "cert-manager.io",
        resources: &["certificates"],
        verbs: APPLIED,
    },
    // The bots' policy report (src/http/report.rs): the bots' ServiceAccount token reviewed,
    // the reporting service read.
    Rule {
        api_group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
    },
    Rule {
        api_group: "recording.m365.io",
        resources: &["recordingservices"],
        verbs: &["get"],
    },
];

/// Rules in the operator's own namespace (the Role): the leader election Lease.
pub const NAMESPACED_RULES: &[Rule] = &[Rule {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "update"],
}];

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
