//! The Kubernetes permissions the operator needs, in one place.
//!
//! `deploy/rbac.yaml` and the Helm chart's `templates/rbac.yaml` grant exactly these rules
//! (checked by `tests/deploy_rbac.rs`): when a controller starts touching a new kind, add the
//! rule here and to both manifests.

/// One RBAC rule: `verbs` on `resources` (`kind` or `kind/subresource`) of `api_group`
/// (`""` is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// Objects the operator provisions and owns: created, server-side applied, deleted, watched.
const OWNED: &[&str] = &["create", "patch", "delete", "get", "list", "watch"];
/// Objects the operator only reads.
const READ: &[&str] = &["get", "list", "watch"];

/// Cluster-wide rules (the ClusterRole).
pub const RULES: &[Rule] = &[
    // The operator's own resources: read, and patched for finalizers and annotations.
    Rule {
        api_group: "recording.m365.io",
        resources: &["tenants", "recordingservices"],
        verbs: &["get", "list", "watch", "patch"],
    },
    // ConsentGrants are also created and deleted by the Tenant controller.
    Rule {
        api_group: "recording.m365.io",
        resources: &["consentgrants"],
        verbs: OWNED,
    },
    Rule {
        api_group: "recording.m365.io",
        resources: &[
            "tenants/status",
            "consentgrants/status",
            "recordingservices/status",
        ],
        verbs: &["get", "patch"],
    },
    // Owner references with blockOwnerDeletion need update on the owner's finalizers.
    Rule {
        api_group: "recording.m365.io",
        resources: &[
            "tenants/finalizers",
            "consentgrants/finalizers",
            "recordingservices/finalizers",
        ],
        verbs: &["update"],
    },
    Rule {
        api_group: "",
        resources: &[
            "namespaces",
            "resourcequotas",
            "configmaps",
            "serviceaccounts",
            "services",
            "persistentvolumeclaims",
        ],
        verbs: OWNED,
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: OWNED,
    },
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: OWNED,
    },
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: OWNED,
    },
    // BYOS credentials, app registration secrets, the platform apps' client secrets.
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: READ,
    },
    Rule {
        api_group: "",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
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
