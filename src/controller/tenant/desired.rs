//! What a Tenant needs: its namespace, quota, network policy and ConsentGrants, pure functions of the spec and the configuration.

use super::*;

// ---------------------------------------------------------------------------------------------
// What the tenant needs: pure functions of the spec and the configuration
// ---------------------------------------------------------------------------------------------

/// One consent a tenant must (or may) grant.
#[derive(Clone, Debug, PartialEq)]
pub struct RequiredConsent<'a> {
    pub key: &'a str,
    pub config: &'a ConsentConfig,
    pub optional: bool,
}

/// The consents a tenant needs: the mandatory ones for its license, plus the optional ones its
/// spec asks for. Unknown optional keys are reported by the caller, not silently dropped.
pub fn required_consents<'a>(
    tenant: &'a Tenant,
    config: &'a OperatorConfig,
) -> Vec<RequiredConsent<'a>> {
    let pro = tenant.spec.license.advanced_storage();
    config
        .consents
        .iter()
        .filter_map(|(key, c)| {
            let wanted = match c.mandatory {
                Mandatory::Always => Some(false),
                Mandatory::ProOnly => pro.then_some(false),
                Mandatory::Never => tenant
                    .spec
                    .optional_consents
                    .iter()
                    .any(|k| k == key)
                    .then_some(true),
            };
            wanted.map(|optional| RequiredConsent {
                key: key.as_str(),
                config: c,
                optional,
            })
        })
        .collect()
}

/// Optional consents the spec names that the configuration does not know.
pub fn unknown_optional_consents(tenant: &Tenant, config: &OperatorConfig) -> Vec<String> {
    tenant
        .spec
        .optional_consents
        .iter()
        .filter(|k| !config.consents.contains_key(k.as_str()))
        .cloned()
        .collect()
}

/// Object name of a consent's ConsentGrant: the key in kebab case (`redundantRecording` →
/// `redundant-recording`), since object names are lowercase.
pub fn consent_grant_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The objects a tenant owns in the cluster.
#[derive(Clone, Debug)]
pub struct Children {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub network_policy: NetworkPolicy,
    /// Grants the operator [`crate::rbac::TENANT_RULES`] in the namespace; applied before
    /// anything else there.
    pub role_binding: RoleBinding,
    pub grants: Vec<ConsentGrant>,
}

impl Children {
    /// The digest of every child's body (`status.appliedHash`).
    pub fn digest(&self) -> String {
        use crate::controller::apply::{digest, Body};
        let fixed: [&dyn Body; 4] = [
            &self.namespace,
            &self.quota,
            &self.network_policy,
            &self.role_binding,
        ];
        digest(
            fixed
                .into_iter()
                .chain(self.grants.iter().map(|g| g as &dyn Body)),
        )
    }

    /// Takes every child as applied (see [`assume_applied`](crate::controller::apply::assume_applied)).
    pub fn assume_applied(&self, cache: &crate::controller::apply::AppliedCache) {
        use crate::controller::apply::assume_applied;
        assume_applied(cache, &self.namespace);
        assume_applied(cache, &self.quota);
        assume_applied(cache, &self.network_policy);
        assume_applied(cache, &self.role_binding);
        for grant in &self.grants {
            assume_applied(cache, grant);
        }
    }
}

/// Whether the tenant's recordings are claims in its namespace that must outlive the Tenant
/// (the PVC backend with `deletionPolicy: Retain`).
pub fn keeps_claims_in_namespace(tenant: &Tenant, config: &OperatorConfig) -> bool {
    tenant.spec.deletion_policy == DeletionPolicy::Retain
        && config
            .storage
            .as_ref()
            .is_some_and(|s| s.backend == crate::config::BackendKind::Pvc)
}

/// Computes the desired namespace, quota, network policy and ConsentGrants of a tenant.
pub fn desired_children(tenant: &Tenant, config: &OperatorConfig) -> Children {
    let name = tenant.name_any();
    let ns = tenant.namespace_name();
    let owner = owner_reference(tenant);
    let meta = |object_name: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(object_name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(owned_labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let mut ns_meta = meta(&ns, None);
    if keeps_claims_in_namespace(tenant, config) {
        // The recordings' claims live in this namespace: owned by the Tenant, it would be
        // deleted with it, and every claim in it. `Retain` keeps the namespace instead.
        ns_meta.owner_references = None;
    }
    // Pods of the tenant run under the restricted Pod Security Standard (the bots are Windows
    // pods: restricted's Linux-only checks do not apply to them), unless their media uses host
    // networking, which only the privileged level admits.
    let labels = ns_meta.labels.get_or_insert_with(Default::default);
    // Made for this Tenant (see [`adoption_refusal`]).
    labels.insert(TENANT_UID_LABEL.into(), tenant.uid().unwrap_or_default());
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        crate::controller::service::pod_security_level(&config.bots).into(),
    );
    let namespace = Namespace {
        metadata: ns_meta,
        ..Default::default()
    };

    let hard: BTreeMap<String, Quantity> = config
        .tenant_quota
        .hard()
        .into_iter()
        .map(|(k, v)| (k, Quantity(v)))
        .collect();
    let quota = ResourceQuota {
        metadata: meta("tenant-quota", Some(&ns)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    };

    let network_policy = NetworkPolicy {
        metadata: meta("default-deny", Some(&ns)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        }),
    };

    let access = &config.tenant_access;
    let role_binding = RoleBinding {
        metadata: meta("recording-operator", Some(&ns)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: access.cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: access.service_account.clone(),
            namespace: Some(config.operator_namespace.clone()),
            ..Default::default()
        }]),
    };

    let grants = required_consents(tenant, config)
        .into_iter()
        .map(|c| ConsentGrant {
            metadata: meta(&consent_grant_name(c.key), Some(&ns)),
            spec: ConsentGrantSpec {
                tenant_ref: name.clone(),
                consent: c.key.to_string(),
                app_id: c.config.app_id.clone(),
                display_name: Some(c.config.display_name.clone()),
                application_permissions: c.config.application_permissions.clone(),
                delegated_scopes: c.config.delegated_scopes.clone(),
                optional: c.optional,
            },
            status: None,
        })
        .collect();

    Children {
        namespace,
        quota,
        network_policy,
        role_binding,
        grants,
    }
}

/// Why the existing namespace `existing` must not be taken over for `tenant`, if it must not:
/// a force apply would adopt it, and garbage collection would then delete it, and everything in
/// it, with the Tenant. The operator's own namespaces carry the Tenant's uid in
/// [`TENANT_UID_LABEL`] (or, from before that label, an owner reference to the Tenant).
pub fn adoption_refusal(existing: &Namespace, tenant: &Tenant) -> Option<String> {
    let uid = tenant.uid().unwrap_or_default();
    let stamped = existing.labels().get(TENANT_UID_LABEL);
    let owned = existing.owner_references().iter().any(|o| o.uid == uid);
    if stamped == Some(&uid) || (stamped.is_none() && owned) {
        return None;
    }
    let whose = match stamped {
        Some(other) => format!("it is labelled {TENANT_UID_LABEL}={other}, another Tenant's uid"),
        None => format!("it has no {TENANT_UID_LABEL} label: someone else made it"),
    };
    Some(format!(
        "namespace {:?} already exists and was not made by the operator for this Tenant ({whose}); \
         nothing is applied there. Rename the Tenant, delete the namespace, or label it \
         {TENANT_UID_LABEL}={uid} to hand it over (the Tenant would then own it, and delete it \
         with itself unless deletionPolicy keeps it)",
        existing.name_any()
    ))
}
