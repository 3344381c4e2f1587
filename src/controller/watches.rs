//! The watches the controllers share: one per kind (Tenants, ConsentGrants,
//! RecordingServices), feeding the [`Caches`] and waking the controllers, and what they pass
//! on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};

use super::apply::AppliedCache;
use super::caches::{Caches, ResolvedTenantIds};
use super::consent;
use super::gate::Gate;
use super::grants::{self, GrantCache};
use super::index::ServiceIndex;
use super::own_writes::OwnWrites;
use super::owned;
use super::unique::UniqueIndex;
use super::wakes::Wakes;
use crate::crd::{ConsentGrant, RecordingService, Tenant};

/// What [`start`] sets up.
pub struct Watches {
    pub caches: Caches,
    /// Subscriptions to the shared Tenant watch: the Tenant, consent and RecordingService
    /// controllers'.
    pub tenants_for_tenants: ReflectHandle<Tenant>,
    pub tenants_for_consents: ReflectHandle<Tenant>,
    pub tenants_for_services: ReflectHandle<Tenant>,
    /// Grant events, as requests to reconcile their Tenant, for the Tenant controller (its
    /// consent lines) and the consent controller (the grants themselves).
    pub tenant_wake_ups: BoxStream<'static, ObjectRef<Tenant>>,
    pub consent_wake_ups: BoxStream<'static, ObjectRef<Tenant>>,
    /// The sending side of `consent_wake_ups`, for the Tenant controller to wake due re-checks.
    pub wake_consents: Wakes,
    /// Grants no Tenant's consent reconcile covers, as the watches find them.
    pub strays: futures::channel::mpsc::UnboundedReceiver<grants::Touched>,
    /// What the consent controller reads of each Tenant, to wake it on changes of that only.
    pub tenant_facts: LastSeen,
    /// The RecordingService controller's subscription to the shared service watch.
    pub services_for_services: ReflectHandle<RecordingService>,
    /// Services to reconcile because a sibling (a service of the same Tenant) came, went or
    /// changed what the rules across services read ([`service_facts`]).
    pub service_wake_ups: BoxStream<'static, ObjectRef<RecordingService>>,
    /// The watches: run them as long as the controllers.
    pub running: BoxFuture<'static, ()>,
}

/// Sets up the Tenant and ConsentGrant watches and the caches they fill.
pub fn start(client: &kube::Client) -> Watches {
    let (tenants, tenant_writer) = reflector::store_shared::<Tenant>(1024);
    let subscribe = || tenant_writer.subscribe().expect("shared store subscribes");
    let (tenants_for_tenants, tenants_for_consents, tenants_for_services) =
        (subscribe(), subscribe(), subscribe());
    let resolved_tenant_ids = ResolvedTenantIds::default();
    let tenant_facts = LastSeen::default();
    let tenants_synced = Gate::default();
    let unique = UniqueIndex::default();
    let own_writes = OwnWrites::default();
    let (wake_tenants, tenant_wake_ups) = Wakes::new();
    let grants = GrantCache::default();
    let applied = AppliedCache::default();
    let (found_strays, strays) = futures::channel::mpsc::unbounded::<grants::Touched>();
    let tenant_watch = watcher(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .map({
        let resolved = resolved_tenant_ids.clone();
        let facts = tenant_facts.clone();
        let (grants, found_strays) = (grants.clone(), found_strays.clone());
        let (unique, wake_tenants) = (unique.clone(), wake_tenants.clone());
        let own_writes = own_writes.clone();
        let synced = tenants_synced.clone();
        move |event| {
            // A Tenant that came, went or changed a value that must be unique may free what a
            // newer Tenant waits for, or take what one seen earlier holds: the Tenants that
            // shared or share a value with it look again.
            if let Ok(event) = &event {
                own_writes.observe(event);
                let touched = unique.apply(event);
                if synced.is_open() {
                    for other in touched {
                        wake_tenants.wake(&other);
                    }
                }
            }
            if let Ok(watcher::Event::Delete(gone)) = &event {
                resolved.forget(gone);
                facts.forget(&gone.name_any());
                // Its grants are strays until garbage collection takes them.
                let name = gone.name_any();
                for g in grants::naming(&name, &grants.in_namespace(&gone.namespace_name())) {
                    let _ = found_strays.unbounded_send(grants::Touched::of(&g));
                }
            }
            event
        }
    })
    .modify(slim)
    .reflect_shared(tenant_writer)
    .for_each({
        let synced = tenants_synced.clone();
        move |event| {
            synced.open_on(&event);
            std::future::ready(())
        }
    });

    let (wake_consents, consent_wake_ups) = Wakes::new();
    let grant_watch = watcher(
        Api::<ConsentGrant>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim_grant)
    .for_each({
        let (grants, tenants) = (grants.clone(), tenants.clone());
        let applied = applied.clone();
        let tenants_synced = tenants_synced.clone();
        let wake_tenants = wake_tenants.clone();
        let wake_consents = wake_consents.clone();
        move |event| {
            let Ok(event) = event else {
                // The watcher backs off and retries; the cache keeps its last view.
                return std::future::ready(());
            };
            let tenants_ready = tenants_synced.is_open();
            // A grant changed or deleted by someone else is applied again (the Tenant is
            // woken below for every grant event).
            applied.observe(&event, |_| {});
            for touched in grants.apply(event) {
                wake_tenants.wake(&touched.tenant);
                wake_consents.wake(&touched.tenant);
                // Before the Tenants are listed, the stray reconcile looks at every grant
                // once they are.
                if tenants_ready && !consent::covered(&tenants, &touched.namespace, &touched.tenant)
                {
                    let _ = found_strays.unbounded_send(touched);
                }
            }
            std::future::ready(())
        }
    });

    let (services, service_writer) = reflector::store_shared::<RecordingService>(1024);
    let services_for_services = service_writer.subscribe().expect("shared store subscribes");
    let services_synced = Gate::default();
    let service_index = ServiceIndex::default();
    let service_rule_facts = LastSeen::default();
    let (wake_services, service_wake_ups) = futures::channel::mpsc::unbounded();
    // The owned objects' watches list after the caches the reconciles wait for: at a restart
    // those lists hold two objects for each one the reconciles read, and nothing needs them
    // sooner (what was applied before is taken over from the owners' status until they
    // report; a repair waits a few seconds more).
    let owned_watch = {
        let watch = owned::watch(
            client,
            &applied,
            &owned::Owners {
                tenants: wake_tenants.clone(),
                services: wake_services.clone(),
            },
        );
        let (tenants, grants, services) = (
            tenants_synced.clone(),
            grants.clone(),
            services_synced.clone(),
        );
        async move {
            super::caches::synced(&tenants, &grants, &services).await;
            watch.await
        }
    };
    let service_watch = watcher(
        Api::<RecordingService>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    // Indexed before the store and the controller see it: a service reconciled is among its
    // Tenant's services.
    .inspect({
        let index = service_index.clone();
        move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        }
    })
    .reflect_shared(service_writer)
    .for_each({
        let (index, synced) = (service_index.clone(), services_synced.clone());
        let wake_tenants = wake_tenants.clone();
        move |event| {
            synced.open_on(&event);
            let touched = match &event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    let key = ObjectRef::from_obj(s).to_string();
                    service_rule_facts
                        .changed(&key, service_facts(s))
                        .then_some(s)
                }
                Ok(watcher::Event::Delete(s)) => {
                    service_rule_facts.forget(&ObjectRef::from_obj(s).to_string());
                    Some(s)
                }
                _ => None,
            };
            // Its Tenant counts the users in use; its siblings check short names and the
            // licence again.
            if let Some(service) = touched.filter(|_| synced.is_open()) {
                wake_tenants.wake(&service.spec.tenant_ref);
                let namespace = service.namespace().unwrap_or_default();
                let name = service.name_any();
                for sibling in index.of_tenant_in(&namespace, &service.spec.tenant_ref) {
                    if sibling != name {
                        let sibling = ObjectRef::new(&sibling).within(&namespace);
                        let _ = wake_services.unbounded_send(sibling);
                    }
                }
            }
            std::future::ready(())
        }
    });

    Watches {
        caches: Caches {
            tenants,
            tenants_synced,
            grants,
            resolved_tenant_ids,
            unique,
            own_writes,
            applied,
            services,
            service_index,
            services_synced,
            checks: Default::default(),
        },
        tenants_for_tenants,
        tenants_for_consents,
        tenants_for_services,
        tenant_wake_ups: tenant_wake_ups.boxed(),
        consent_wake_ups: consent_wake_ups.boxed(),
        wake_consents,
        strays,
        tenant_facts,
        services_for_services,
        service_wake_ups: service_wake_ups.boxed(),
        running: async move {
            futures::join!(tenant_watch, grant_watch, service_watch, owned_watch);
        }
        .boxed(),
    }
}

/// What the rules across a Tenant's services read of one service, hashed: its Tenant,
/// namespace, short name and licensed users.
pub fn service_facts(service: &RecordingService) -> u64 {
    crate::hash64(&(
        &service.spec.tenant_ref,
        service.namespace(),
        service.spec.short_name.to_ascii_lowercase(),
        service.spec.licensed_users,
        service.meta().deletion_timestamp.is_some(),
    ))
}

/// The last value seen per object name, to pass on only the changes of one aspect of an
/// object (see [`consent::tenant_facts`]). Keys and values are 64-bit hashes: 16 bytes an
/// object.
#[derive(Clone, Default)]
pub struct LastSeen {
    inner: Arc<Mutex<HashMap<u64, u64>>>,
}

fn name_key(name: &str) -> u64 {
    crate::hash64(name)
}

impl LastSeen {
    /// Records `value` for `name`; true when it differs from the last one (or is the first).
    pub fn changed(&self, name: &str, value: u64) -> bool {
        let mut seen = self.inner.lock().expect("last seen lock");
        seen.insert(name_key(name), value) != Some(value)
    }

    /// Forgets `name`, so its next value counts as a change.
    pub fn forget(&self, name: &str) {
        self.inner
            .lock()
            .expect("last seen lock")
            .remove(&name_key(name));
    }
}

/// Drops what no reconcile reads from a cached Tenant or ConsentGrant: `managedFields` (often
/// larger than the object itself), the labels, and every annotation but
/// [`RECHECK_ANNOTATION`](crate::crd::RECHECK_ANNOTATION) (among them the client-side apply
/// annotation, a full copy of the object).
///
/// The caches hold every Tenant and ConsentGrant for the whole life of the process, so each
/// byte here is paid once per object. The reconcilers find a tenant's grants through
/// [`GrantCache`] (by namespace) and a grant's Tenant through `spec.tenantRef`, never through
/// labels.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == crate::crd::RECHECK_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`slim`], and what a cached ConsentGrant needs least: its `ownerReferences` (the Tenant
/// controller finds a grant's Tenant by `spec.tenantRef`), `spec.displayName` (shown to the
/// customer by Entra, never read here) and `resourceVersion` (grant writes are server-side
/// applies, which need none; kube-runtime copies it into every reference to the grant it
/// queues).
pub fn slim_grant(grant: &mut ConsentGrant) {
    slim(grant);
    grant.metadata.owner_references = None;
    grant.metadata.resource_version = None;
    grant.spec.display_name = None;
}
