//! A Tenant's storage as the Tenant controller sees it: one call to bring every location of a
//! tenant in line and get its `status.storage[]` lines, one call to clean up on deletion.
//!
//! - [`TenantStorage::reconcile`]: the default location, for Pro the paired region's copy, and
//!   (when BYOS is enabled) a reachability check of each customer location. Never fails as a
//!   whole: a location that cannot be provisioned or reached is a line with `ready: false` and
//!   a message saying why, so the other locations still report.
//! - [`TenantStorage::cleanup`]: for `deletionPolicy: Delete`, deletes what the operator created
//!   (never BYOS, never adopted containers). An error means "keep the finalizer and retry".

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use kube::ResourceExt;

use super::retention::{SweepFailure, SweepOutcome, SweepPlan, SweepTally};
use super::{
    plan_storage, ByosCredential, ByosLocation, DeleteOutcome, EnsureStorage, LocationReport,
    StorageBackend, StorageError, StorageRole,
};
use crate::config::{RetentionConfig, SecretRef, SecretSource, StorageConfig};
use crate::crd::tenant::{self as crd, DeletionPolicy, Tenant};

/// The key of a BYOS Secret when `secretRef.key` is not given.
pub const DEFAULT_BYOS_KEY: &str = "url";

/// Storage for Tenants: the configured backend, where secrets come from, the region pairs,
/// the namespace BYOS Secrets live in (the operator's own), and the retention sweep's settings.
#[derive(Clone)]
pub struct TenantStorage {
    backend: Arc<dyn StorageBackend>,
    secrets: Arc<dyn SecretSource>,
    region_pairs: BTreeMap<String, String>,
    operator_namespace: String,
    retention: RetentionConfig,
}

impl TenantStorage {
    pub fn new(
        config: &StorageConfig,
        backend: Arc<dyn StorageBackend>,
        secrets: Arc<dyn SecretSource>,
        operator_namespace: impl Into<String>,
    ) -> Self {
        Self {
            backend,
            secrets,
            region_pairs: config.region_pairs.clone(),
            operator_namespace: operator_namespace.into(),
            retention: config.retention.clone(),
        }
    }

    /// The retention sweep's settings (`storage.retention`).
    pub fn retention(&self) -> &RetentionConfig {
        &self.retention
    }

    /// Sweeps the locations the operator provisions for the tenant (default, and paired for
    /// Pro; never BYOS), one after the other; the first failure stops the sweep. Returns each
    /// location with its outcome.
    pub async fn sweep(
        &self,
        tenant: &Tenant,
        plan: &SweepPlan,
    ) -> Result<Vec<(EnsureStorage, SweepOutcome)>, SweepFailure> {
        let requests = match operator_locations(tenant, &self.region_pairs) {
            Ok(requests) | Err((requests, _)) => requests,
        };
        let mut done = Vec::new();
        let mut tally = SweepTally::default();
        for request in requests {
            match self.backend.sweep(&request, plan).await {
                Ok(outcome) => {
                    if let SweepOutcome::Swept(t) = &outcome {
                        tally.add(t);
                    }
                    done.push((request, outcome));
                }
                Err(mut failure) => {
                    // What the earlier locations did counts too.
                    tally.add(&failure.tally);
                    failure.tally = tally;
                    return Err(failure);
                }
            }
        }
        Ok(done)
    }

    /// Ensures the operator's locations and checks the customer's, all at once; one status
    /// line per location, default first, then paired, then BYOS in spec order.
    pub async fn reconcile(&self, tenant: &Tenant) -> Vec<crd::StorageLocationStatus> {
        let mut lines: Vec<LocationReport> = Vec::new();
        let requests = match operator_locations(tenant, &self.region_pairs) {
            Ok(requests) => requests,
            Err((requests, error)) => {
                // Pro in a region without a pair: the paired line says so, the rest goes on.
                lines.push(LocationReport::failed(
                    &tenant.spec.storage.location,
                    StorageRole::Paired,
                    None,
                    "",
                    &error,
                ));
                requests
            }
        };
        let ensured = join_all(requests.iter().map(|request| async move {
            self.backend.ensure(request).await.unwrap_or_else(|error| {
                LocationReport::failed(
                    &request.location,
                    request.role.into(),
                    None,
                    &self.backend.endpoint(request).unwrap_or_default(),
                    &error,
                )
            })
        }));
        let checked = join_all(
            byos_locations(tenant, &self.operator_namespace)
                .into_iter()
                .map(|byos| async move {
                    let checked = match ByosCredential::read(self.secrets.as_ref(), &byos).await {
                        Ok(credential) => self.backend.check_byos(&byos, &credential).await,
                        Err(error) => Err(error),
                    };
                    checked.unwrap_or_else(|error| {
                        LocationReport::failed(
                            byos.region_or_name(),
                            StorageRole::Byos,
                            Some(&byos.name),
                            "",
                            &error,
                        )
                    })
                }),
        );
        let (ensured, checked) = futures::join!(ensured, checked);
        let mut all: Vec<LocationReport> = ensured;
        all.append(&mut lines);
        all.extend(checked);
        all.into_iter().map(status_line).collect()
    }

    /// Deletes the operator's locations of a Tenant whose `deletionPolicy` is `Delete`; with
    /// `Retain` nothing is touched. Every location is tried; the first error is returned after
    /// all were tried, so one unreachable region does not keep the others' data.
    pub async fn cleanup(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(EnsureStorage, DeleteOutcome)>, StorageError> {
        if tenant.spec.deletion_policy != DeletionPolicy::Delete {
            return Ok(Vec::new());
        }
        // Both roles whatever the license now: a tenant once Pro may have a paired copy
        // (deleting a location that does not exist is a no-op). Without a pair there is no
        // paired copy: the default location is enough.
        let requests = match cleanup_locations(tenant, &self.region_pairs) {
            Ok(requests) | Err((requests, _)) => requests,
        };
        let essentials_now = !tenant.spec.license.advanced_storage();
        let outcomes = join_all(requests.iter().map(|r| async move {
            match self.backend.delete(r).await {
                // A tenant Essentials now, in a region whose pair has no account configured:
                // the operator cannot have made a copy there.
                Err(StorageError::NoAccountForRegion { .. })
                    if essentials_now && r.role == super::ManagedRole::Paired =>
                {
                    Ok(DeleteOutcome::AlreadyGone)
                }
                other => other,
            }
        }))
        .await;
        let mut done = Vec::new();
        let mut first_error = None;
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            match outcome {
                Ok(outcome) => done.push((request, outcome)),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }
}

/// What the operator provisions for the tenant. `Err` carries the locations that can still be
/// provisioned together with the reason the paired one cannot.
pub fn operator_locations(
    tenant: &Tenant,
    region_pairs: &BTreeMap<String, String>,
) -> Result<Vec<EnsureStorage>, (Vec<EnsureStorage>, StorageError)> {
    let spec = &tenant.spec;
    let retention_days = spec.retention.limit_days();
    let license = format!("{:?}", spec.license);
    let plan = |geo_redundant| {
        plan_storage(
            &tenant.name_any(),
            &spec.storage.location,
            &license,
            geo_redundant,
            retention_days,
            region_pairs,
        )
    };
    let stamped = |mut requests: Vec<EnsureStorage>| {
        for request in &mut requests {
            request.tenant_uid = tenant.uid();
        }
        requests
    };
    match plan(spec.license.advanced_storage()) {
        Ok(requests) => Ok(stamped(requests)),
        Err(error) => {
            // Planning without the paired copy cannot fail: only pairs are looked up.
            Err((stamped(plan(false).unwrap_or_default()), error))
        }
    }
}

/// What a deletion cleans up: the operator's locations as if the tenant were Pro, since it
/// may have been (the paired copy outlives a change to Essentials).
fn cleanup_locations(
    tenant: &Tenant,
    region_pairs: &BTreeMap<String, String>,
) -> Result<Vec<EnsureStorage>, (Vec<EnsureStorage>, StorageError)> {
    let mut as_pro = tenant.clone();
    as_pro.spec.license = crd::License::Pro;
    operator_locations(&as_pro, region_pairs)
}

/// The tenant's BYOS locations (none unless BYOS is enabled), with their Secrets in the
/// operator's namespace.
pub fn byos_locations(tenant: &Tenant, operator_namespace: &str) -> Vec<ByosLocation> {
    let byos = &tenant.spec.storage.byos;
    if !byos.enabled {
        return Vec::new();
    }
    byos.locations
        .iter()
        .map(|location| ByosLocation {
            name: location.name.clone(),
            location: location.location.clone(),
            secret: SecretRef::SecretRef {
                namespace: operator_namespace.to_string(),
                name: location.secret_ref.name.clone(),
                key: location
                    .secret_ref
                    .key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_BYOS_KEY.to_string()),
            },
        })
        .collect()
}

/// A storage line in the shape of `Tenant.status.storage[]`.
pub fn status_line(line: LocationReport) -> crd::StorageLocationStatus {
    let role = match line.role {
        StorageRole::Default => "default",
        StorageRole::Paired => "paired",
        StorageRole::Byos => "byos",
    };
    crd::StorageLocationStatus {
        location: line.location,
        role: role.to_string(),
        name: line.name,
        endpoint: Some(line.endpoint).filter(|e| !e.is_empty()),
        ready: line.ready,
        message: Some(line.message).filter(|m| !m.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_region_pairs;
    use crate::storage::ManagedRole;

    fn tenant(yaml_spec: serde_json::Value) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "contoso"},
            "spec": yaml_spec,
        }))
        .unwrap()
    }

    fn spec(license: &str, location: &str) -> serde_json::Value {
        serde_json::json!({
            "customerName": "Contoso", "domain": "contoso.onmicrosoft.com",
            "shortName": "contoso", "contactEmails": ["it@contoso.com"],
            "adminUpns": ["admin@contoso.com"], "license": license, "includedUsers": 10,
            "storage": {"location": location},
        })
    }

    #[test]
    fn pro_plans_both_locations_and_essentials_one() {
        let pairs = default_region_pairs();
        let pro = operator_locations(&tenant(spec("Pro", "westeurope")), &pairs).unwrap();
        assert_eq!(
            pro.iter()
                .map(|r| (
                    r.location.as_str(),
                    r.role,
                    r.license.as_str(),
                    r.retention_days
                ))
                .collect::<Vec<_>>(),
            [
                ("westeurope", ManagedRole::Default, "Pro", Some(365)),
                ("northeurope", ManagedRole::Paired, "Pro", Some(365))
            ]
        );
        let essentials =
            operator_locations(&tenant(spec("Essentials", "westeurope")), &pairs).unwrap();
        assert_eq!(essentials.len(), 1);
    }

    #[test]
    fn pro_without_a_pair_keeps_the_default_location_and_says_why() {
        let (default_only, error) = operator_locations(
            &tenant(spec("Pro", "israelcentral")),
            &default_region_pairs(),
        )
        .unwrap_err();
        assert_eq!(default_only.len(), 1);
        assert_eq!(default_only[0].role, ManagedRole::Default);
        assert_eq!(error.reason(), "NoPairedRegion");
    }

    #[test]
    fn unlimited_retention_has_no_days() {
        let mut s = spec("Essentials", "westeurope");
        s["retention"] = serde_json::json!({"unlimited": true});
        let plan = operator_locations(&tenant(s), &default_region_pairs()).unwrap();
        assert_eq!(plan[0].retention_days, None);
    }

    #[test]
    fn byos_secrets_live_in_the_operator_namespace_with_url_as_default_key() {
        let mut s = spec("Essentials", "westeurope");
        s["storage"]["byos"] = serde_json::json!({"enabled": true, "locations": [
            {"name": "archive", "location": "westus", "secretRef": {"name": "contoso-archive"}},
            {"name": "legal", "secretRef": {"name": "contoso-legal", "key": "sasUrl"}},
        ]});
        let locations = byos_locations(&tenant(s.clone()), "recording-operator");
        assert_eq!(
            locations[0].secret,
            SecretRef::SecretRef {
                namespace: "recording-operator".into(),
                name: "contoso-archive".into(),
                key: "url".into()
            }
        );
        assert_eq!(locations[0].region_or_name(), "westus");
        assert_eq!(locations[1].region_or_name(), "legal");
        s["storage"]["byos"]["enabled"] = serde_json::json!(false);
        assert!(byos_locations(&tenant(s), "recording-operator").is_empty());
    }

    #[test]
    fn status_lines_leave_out_empty_fields() {
        let line = status_line(LocationReport {
            location: "westeurope".into(),
            role: StorageRole::Paired,
            name: None,
            endpoint: String::new(),
            ready: false,
            message: "no pair".into(),
        });
        assert_eq!(line.role, "paired");
        assert_eq!(line.endpoint, None);
        assert_eq!(line.message.as_deref(), Some("no pair"));
    }
}
