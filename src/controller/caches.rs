//! What the reconciles read instead of asking the API server: the Tenant and ConsentGrant
//! caches the shared watches fill (the `watches` module sets them up), and what the operator
//! remembers of its own writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

use super::apply::AppliedCache;
use super::consent::UnwrittenChecks;
use super::gate::Gate;
use super::grants::{self, GrantCache};
use super::index::ServiceIndex;
use super::own_writes::OwnWrites;
use super::unique::UniqueIndex;
use crate::crd::{ConsentGrant, RecordingService, Tenant};

/// The caches every reconcile shares.
pub struct Caches {
    /// Every Tenant, as last seen (kube-runtime's reflector store).
    pub tenants: Store<Tenant>,
    /// Open once the Tenant store has its first list.
    pub tenants_synced: Gate,
    /// Every ConsentGrant, as last seen, by namespace.
    pub grants: GrantCache,
    /// Tenant ids resolved and not yet seen in a Tenant's status.
    pub resolved_tenant_ids: ResolvedTenantIds,
    /// The Tenant versions the Tenant controller's own writes returned.
    pub own_writes: OwnWrites,
    /// Which Tenants hold each value that must be unique across Tenants.
    pub unique: UniqueIndex,
    /// What was last applied, so an unchanged object is not sent again.
    pub applied: AppliedCache,
    /// Every RecordingService, as last seen.
    pub services: Store<RecordingService>,
    /// The RecordingServices' names by namespace and by Tenant (the rules across services
    /// read a Tenant's services only).
    pub service_index: ServiceIndex,
    /// Open once the RecordingService store has its first list.
    pub services_synced: Gate,
    /// When granted consents were last checked without a status write.
    pub checks: UnwrittenChecks,
}

impl Caches {
    /// Returns once the Tenant and ConsentGrant caches hold the cluster's objects (each
    /// watch's first list is complete); at once after that.
    ///
    /// Every reconcile waits for it before reading them. kube-runtime holds a controller's
    /// reconciles until the store it runs on is ready, but not until the others it reads are:
    /// after a restart the Tenant list (one object per tenant) completes before the grant
    /// list (four or five per tenant), and a Tenant reconciled in between found no grants,
    /// wrote "checking consents", then Ready again with a new `lastTransitionTime` and a
    /// second Ready Event. A status computed from a cache that has not synced is a guess.
    pub async fn synced(&self) {
        synced(&self.tenants_synced, &self.grants, &self.services_synced).await;
    }

    /// The RecordingServices as last seen.
    pub fn services(&self) -> Vec<Arc<RecordingService>> {
        self.services.state()
    }

    /// The RecordingServices in `namespace` that name the Tenant `tenant`, as last seen: a
    /// Tenant's services when `namespace` is its namespace.
    pub fn services_of(&self, namespace: &str, tenant: &str) -> Vec<Arc<RecordingService>> {
        self.service_index
            .of_tenant_in(namespace, tenant)
            .iter()
            .filter_map(|name| self.services.get(&ObjectRef::new(name).within(namespace)))
            .collect()
    }

    /// The Tenant named `name`, as last seen.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(&ObjectRef::new(name))
    }

    /// The ConsentGrants in `namespace` that belong to the Tenant named `tenant`, as last
    /// seen.
    pub fn grants_of(&self, namespace: &str, tenant: &str) -> Vec<Arc<ConsentGrant>> {
        grants::naming(tenant, &self.grants_in(namespace))
    }

    /// The ConsentGrants in `namespace`, as last seen.
    pub fn grants_in(&self, namespace: &str) -> Vec<Arc<ConsentGrant>> {
        self.grants.in_namespace(namespace)
    }
}

/// Returns once the Tenant, ConsentGrant and RecordingService watches have each completed
/// their first list: [`Caches::synced`], for what starts before the `Caches` exist.
pub async fn synced(tenants: &Gate, grants: &GrantCache, services: &Gate) {
    tenants.wait().await;
    grants.wait_until_ready().await;
    services.wait().await;
}

/// Entra tenant ids the Tenant controller resolved (OpenID discovery of `spec.domain`) whose
/// Tenant's status does not show them yet, by Tenant uid.
///
/// A new Tenant's ConsentGrants are created before its first status write lands in the
/// cache; a grant reconciled in between would otherwise report "waiting for the tenant id"
/// (a status write, and later a ConsentGranted Event that is no news) and try again five
/// seconds later. An entry lives only until the Tenant's status carries the id.
#[derive(Clone, Default)]
pub struct ResolvedTenantIds {
    ids: Arc<Mutex<HashMap<String, String>>>,
}

impl ResolvedTenantIds {
    fn uid(tenant: &Tenant) -> Option<&str> {
        tenant.meta().uid.as_deref()
    }

    /// The id resolved for this Tenant (the same object: same uid), if any.
    pub fn get(&self, tenant: &Tenant) -> Option<String> {
        let uid = Self::uid(tenant)?;
        self.ids
            .lock()
            .expect("resolved ids lock")
            .get(uid)
            .cloned()
    }

    pub fn remember(&self, tenant: &Tenant, id: &str) {
        if let Some(uid) = Self::uid(tenant) {
            self.ids
                .lock()
                .expect("resolved ids lock")
                .insert(uid.to_string(), id.to_string());
        }
    }

    /// Forgets the Tenant's entry (its status carries the id, or it is being deleted or
    /// gone).
    pub fn forget(&self, tenant: &Tenant) {
        if let Some(uid) = Self::uid(tenant) {
            self.ids.lock().expect("resolved ids lock").remove(uid);
        }
    }
}
