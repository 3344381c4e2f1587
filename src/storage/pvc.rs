//! PersistentVolumeClaim backend, for clusters without Azure Storage.
//!
//! Each location the operator provisions is a claim `recordings-<role>` in the tenant's
//! namespace (`tenant-<name>`), server-side applied with the field manager
//! `recording-operator`, labelled `app.kubernetes.io/managed-by=recording-operator`,
//! `recording.m365.io/tenant=<name>`, `recording.m365.io/tenant-uid=<the Tenant's uid>` and
//! `recording.m365.io/storage-role=<role>`, with the
//! StorageClass configured for its region (none configured: the cluster's default class).
//! No owner reference: with `deletionPolicy: Retain` the claim outlives the Tenant object, and
//! so does its namespace, which the Tenant then does not own either
//! ([`keeps_claims_in_namespace`](crate::controller::tenant::keeps_claims_in_namespace)).
//!
//! Readiness: a claim is ready once it exists and has not lost its volume. A `Bound` claim
//! says so; a `Pending` one is still ready, because with `WaitForFirstConsumer` storage classes
//! (the usual kind) a volume is bound only when the recording bot first mounts the claim, so
//! waiting for `Bound` would hold the tenant back forever. The message tells which it is. (The
//! project's Kubernetes simulator binds no volumes, so there claims stay without a phase.)
//!
//! BYOS locations are Azure containers whatever the platform's own backend is; they are
//! checked with [`ByosProbe`](super::azure::ByosProbe).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;

use super::azure::ByosProbe;
use super::{
    tenant_namespace, ByosCredential, ByosLocation, DeleteOutcome, EnsureStorage, LocationReport,
    ManagedRole, StorageBackend, StorageError,
};
use crate::config::{PvcConfig, StorageConfig};
use crate::crd::FIELD_MANAGER;

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_TENANT: &str = "recording.m365.io/tenant";
/// The Tenant's uid, as the Azure backend stamps its containers: a claim left by a deleted
/// Tenant of the same name (`deletionPolicy: Retain`) is neither reused nor deleted by a new
/// one. A claim without it (from before the stamp) counts as the tenant's and gets it.
pub const LABEL_TENANT_UID: &str = crate::crd::TENANT_UID_LABEL;
pub const LABEL_ROLE: &str = "recording.m365.io/storage-role";
pub const ANNOTATION_LOCATION: &str = "recording.m365.io/location";
pub const ANNOTATION_RETENTION: &str = "recording.m365.io/retention-days";
pub const ANNOTATION_LICENSE: &str = "recording.m365.io/license";

/// A PersistentVolumeClaim per tenant location.
pub struct PvcBackend {
    client: kube::Client,
    config: PvcConfig,
    byos: ByosProbe,
}

impl PvcBackend {
    pub fn new(config: &StorageConfig, client: kube::Client) -> Self {
        Self {
            client,
            config: config.pvc.clone(),
            byos: ByosProbe::new(std::time::Duration::from_secs(
                config.request_timeout_seconds,
            )),
        }
    }
}

/// The claim's name for a location role.
pub fn claim_name(role: ManagedRole) -> String {
    format!("recordings-{}", role.as_str())
}

/// The claim the operator wants for `request` (pure; what gets server-side applied).
pub fn desired_claim(request: &EnsureStorage, config: &PvcConfig) -> PersistentVolumeClaim {
    let retention = request
        .retention_days
        .map_or_else(|| "unlimited".to_string(), |days| days.to_string());
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        (LABEL_TENANT.to_string(), request.tenant.clone()),
        (LABEL_ROLE.to_string(), request.role.as_str().to_string()),
    ]);
    if let Some(uid) = &request.tenant_uid {
        labels.insert(LABEL_TENANT_UID.to_string(), uid.clone());
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(request.role)),
            namespace: Some(tenant_namespace(&request.tenant)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_LOCATION.to_string(), request.location.clone()),
                (ANNOTATION_RETENTION.to_string(), retention),
                (ANNOTATION_LICENSE.to_string(), request.license.clone()),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: config
                .storage_class_by_region
                .get(&request.location)
                .cloned(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(config.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The uid of the other Tenant `existing` was made for, if it was stamped for one that is not
/// `request`'s.
pub fn other_tenant_uid(
    existing: &PersistentVolumeClaim,
    request: &EnsureStorage,
) -> Option<String> {
    let stamped = existing.metadata.labels.as_ref()?.get(LABEL_TENANT_UID)?;
    match &request.tenant_uid {
        Some(uid) if uid != stamped => Some(stamped.clone()),
        _ => None,
    }
}

/// A claim's class and size cannot change once it exists (the API server refuses the write,
/// and would for every reconcile after): `desired` keeps what `existing` has, and the note
/// says what the configuration asks for instead.
pub fn keep_immutable(
    desired: &mut PersistentVolumeClaim,
    existing: &PersistentVolumeClaim,
) -> Option<String> {
    let (Some(want), Some(have)) = (desired.spec.as_mut(), existing.spec.as_ref()) else {
        return None;
    };
    let mut notes = Vec::new();
    if want.storage_class_name.is_some() && want.storage_class_name != have.storage_class_name {
        notes.push(format!(
            "StorageClass {} (configured: {})",
            have.storage_class_name.as_deref().unwrap_or("none"),
            want.storage_class_name.as_deref().unwrap_or_default()
        ));
        want.storage_class_name = have.storage_class_name.clone();
    }
    let size = |s: &PersistentVolumeClaimSpec| -> Option<Quantity> {
        s.resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage")
            .cloned()
    };
    if let (Some(configured), Some(held)) = (size(want), size(have)) {
        if configured != held {
            notes.push(format!("size {} (configured: {})", held.0, configured.0));
            want.resources = have.resources.clone();
        }
    }
    (!notes.is_empty()).then(|| {
        format!(
            "the claim keeps its {}: a claim's class and size do not change once it exists",
            notes.join(" and ")
        )
    })
}

/// Whether the claim can take recordings, and what to tell people about it.
pub fn claim_readiness(claim: &PersistentVolumeClaim) -> (bool, String) {
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .map_or_else(
            || "the cluster's default StorageClass".to_string(),
            |c| format!("StorageClass {c}"),
        );
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        Some("Bound") => {
            let volume = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("a volume");
            (true, format!("claim bound to {volume} ({class})"))
        }
        Some("Lost") => (
            false,
            format!("claim lost its volume ({class}); recordings cannot be written"),
        ),
        Some(other) => (
            true,
            format!(
                "claim created ({class}), {other}: the volume is bound when it is provisioned or \
                 when the recording bot first mounts it"
            ),
        ),
        None => (
            true,
            format!(
                "claim created ({class}), not bound yet: the volume is bound when it is \
                 provisioned or when the recording bot first mounts it"
            ),
        ),
    }
}

fn kube_error(action: String, namespace: &str, error: kube::Error) -> StorageError {
    let detail = match &error {
        kube::Error::Api(status) if status.code == 404 && action.starts_with("applying") => {
            format!(
                "namespace {namespace} does not exist (yet): {}",
                status.message
            )
        }
        _ => error.to_string(),
    };
    StorageError::Kubernetes { action, detail }
}

#[async_trait]
impl StorageBackend for PvcBackend {
    fn endpoint(&self, request: &EnsureStorage) -> Option<String> {
        Some(format!(
            "pvc://{}/{}",
            tenant_namespace(&request.tenant),
            claim_name(request.role)
        ))
    }

    async fn ensure(&self, request: &EnsureStorage) -> Result<LocationReport, StorageError> {
        let namespace = tenant_namespace(&request.tenant);
        let name = claim_name(request.role);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let mut claim = desired_claim(request, &self.config);
        let existing = api.get_opt(&name).await.map_err(|e| {
            kube_error(
                format!("reading PersistentVolumeClaim {namespace}/{name}"),
                &namespace,
                e,
            )
        })?;
        if let Some(owner_uid) = existing
            .as_ref()
            .and_then(|existing| other_tenant_uid(existing, request))
        {
            return Err(StorageError::ClaimOfAnotherTenant {
                endpoint: format!("pvc://{namespace}/{name}"),
                tenant: request.tenant.clone(),
                owner_uid,
            });
        }
        let kept = existing
            .as_ref()
            .and_then(|existing| keep_immutable(&mut claim, existing));
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&claim),
            )
            .await
            .map_err(|e| {
                kube_error(
                    format!("applying PersistentVolumeClaim {namespace}/{name}"),
                    &namespace,
                    e,
                )
            })?;
        let (ready, mut message) = claim_readiness(&applied);
        if let Some(kept) = kept {
            message = format!("{message}; {kept}");
        }
        Ok(LocationReport {
            location: request.location.clone(),
            role: request.role.into(),
            name: None,
            endpoint: format!("pvc://{namespace}/{name}"),
            ready,
            message,
        })
    }

    async fn check_byos(
        &self,
        byos: &ByosLocation,
        credential: &ByosCredential,
    ) -> Result<LocationReport, StorageError> {
        self.byos.check(byos, credential).await
    }

    async fn delete(&self, request: &EnsureStorage) -> Result<DeleteOutcome, StorageError> {
        let namespace = tenant_namespace(&request.tenant);
        let name = claim_name(request.role);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let action = || format!("deleting PersistentVolumeClaim {namespace}/{name}");
        let Some(found) = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_error(action(), &namespace, e))?
        else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        if let Some(other) = other_tenant_uid(&found, request) {
            return Ok(DeleteOutcome::Kept {
                reason: format!(
                    "PersistentVolumeClaim {namespace}/{name} was made for another Tenant named \
                     {} (uid {other})",
                    request.tenant
                ),
            });
        }
        let labels = found.metadata.labels.unwrap_or_default();
        let ours = labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER)
            && labels.get(LABEL_TENANT) == Some(&request.tenant);
        if !ours {
            return Ok(DeleteOutcome::Kept {
                reason: format!(
                    "PersistentVolumeClaim {namespace}/{name} is not labelled as the operator's \
                     for tenant {}",
                    request.tenant
                ),
            });
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(kube_error(action(), &namespace, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;

    fn request(role: ManagedRole, location: &str) -> EnsureStorage {
        EnsureStorage {
            tenant: "contoso".into(),
            location: location.into(),
            role,
            retention_days: Some(730),
            license: "Pro".into(),
            tenant_uid: None,
        }
    }

    fn config() -> PvcConfig {
        PvcConfig {
            storage_class_by_region: BTreeMap::from([(
                "westeurope".to_string(),
                "managed-csi".to_string(),
            )]),
            size: "50Gi".into(),
        }
    }

    #[test]
    fn claims_carry_the_tenant_uid_and_another_tenants_claim_is_recognised() {
        let mut mine = request(ManagedRole::Default, "westeurope");
        mine.tenant_uid = Some("uid-now".into());
        let claim = desired_claim(&mine, &config());
        assert_eq!(
            claim
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(LABEL_TENANT_UID),
            Some(&"uid-now".to_string())
        );
        assert_eq!(other_tenant_uid(&claim, &mine), None);
        let mut before = request(ManagedRole::Default, "westeurope");
        before.tenant_uid = Some("uid-before".into());
        let left_behind = desired_claim(&before, &config());
        assert_eq!(
            other_tenant_uid(&left_behind, &mine).as_deref(),
            Some("uid-before")
        );
        // Unstamped claims (made before the stamp) are the tenant's.
        let unstamped = desired_claim(&request(ManagedRole::Default, "westeurope"), &config());
        assert_eq!(other_tenant_uid(&unstamped, &mine), None);
    }

    #[test]
    fn an_existing_claim_keeps_its_class_and_size() {
        let existing = desired_claim(&request(ManagedRole::Default, "westeurope"), &config());
        let mut changed = config();
        changed
            .storage_class_by_region
            .insert("westeurope".into(), "premium-csi".into());
        changed.size = "100Gi".into();
        let mut desired = desired_claim(&request(ManagedRole::Default, "westeurope"), &changed);
        let note = keep_immutable(&mut desired, &existing).unwrap();
        assert_eq!(desired.spec, existing.spec);
        assert_eq!(
            note,
            "the claim keeps its StorageClass managed-csi (configured: premium-csi) and size 50Gi (configured: 100Gi): a claim's class and size do not change once it exists"
        );
        // Unchanged configuration: nothing to say. No class configured: the one the cluster
        // gave the claim is not the operator's to repeat.
        let mut same = desired_claim(&request(ManagedRole::Default, "westeurope"), &config());
        assert_eq!(keep_immutable(&mut same, &existing), None);
        let mut defaulted = desired_claim(&request(ManagedRole::Paired, "northeurope"), &config());
        assert_eq!(keep_immutable(&mut defaulted, &existing), None);
        assert_eq!(defaulted.spec.unwrap().storage_class_name, None);
    }

    #[test]
    fn the_claim_carries_class_size_labels_and_annotations() {
        let claim = desired_claim(&request(ManagedRole::Default, "westeurope"), &config());
        assert_eq!(claim.metadata.name.as_deref(), Some("recordings-default"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("tenant-contoso"));
        let labels = claim.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "recording-operator");
        assert_eq!(labels[LABEL_TENANT], "contoso");
        assert_eq!(labels[LABEL_ROLE], "default");
        let annotations = claim.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[ANNOTATION_RETENTION], "730");
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("managed-csi"));
        assert_eq!(
            spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("50Gi".into())
        );
    }

    #[test]
    fn a_region_without_class_uses_the_cluster_default() {
        let claim = desired_claim(&request(ManagedRole::Paired, "northeurope"), &config());
        assert_eq!(claim.metadata.name.as_deref(), Some("recordings-paired"));
        assert_eq!(claim.spec.as_ref().unwrap().storage_class_name, None);
        let (ready, message) = claim_readiness(&claim);
        assert!(ready);
        assert_eq!(
            message,
            "claim created (the cluster's default StorageClass), not bound yet: the volume is \
             bound when it is provisioned or when the recording bot first mounts it"
        );
    }

    #[test]
    fn readiness_follows_the_phase() {
        let mut claim = desired_claim(&request(ManagedRole::Default, "westeurope"), &config());
        claim.spec.as_mut().unwrap().volume_name = Some("pv-123".into());
        claim.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        assert_eq!(
            claim_readiness(&claim),
            (
                true,
                "claim bound to pv-123 (StorageClass managed-csi)".to_string()
            )
        );
        claim.status.as_mut().unwrap().phase = Some("Lost".into());
        assert!(!claim_readiness(&claim).0);
    }
}
