//! What the Tenant cache keeps of each Tenant: its name, the two facts the watches and gauges
//! read of every Tenant, and the rest as [compressed](super::compact) JSON, read back into a
//! `Tenant` when a reconcile takes it up.
//!
//! Both Tenant-driven controllers (the Tenant controller and the per-Tenant consent
//! controller) and the RecordingService controller run over one kube-runtime `Store` of
//! Tenants. A `Store` keeps an `Arc` of each object and a key of four strings; a slimmed
//! `Tenant` is about 0.85 KiB of struct (`ObjectMeta` alone 360 bytes) and some thirty
//! small strings besides, about 1.9 KiB a tenant in all. A `CachedTenant` has the name
//! as its only metadata (so the store's key is that one string) and about 0.2 KiB of
//! compressed JSON.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ClusterResourceScope;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};

use super::compact::Compact;
use crate::crd::{Health, Tenant};

/// A Tenant as the operator's Tenant cache holds it.
#[derive(Clone, Debug)]
pub struct CachedTenant {
    /// The name only: the cache's key.
    metadata: ObjectMeta,
    /// [`consent::tenant_facts`](super::consent::tenant_facts) of the Tenant.
    facts: u64,
    /// `status.health`.
    health: Option<Health>,
    /// The whole Tenant, compressed with [`DICTIONARY`].
    json: Compact,
}

/// What slimmed Tenants' JSON has in common, for LZ4 to refer to instead of repeating it in
/// every entry. Any text is correct here; this one makes a Ready tenant's JSON about a fifth
/// of its length.
const DICTIONARY: &[u8] = br#"{"apiVersion":"recording.m365.io/v1alpha1","kind":"Tenant","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","finalizers":["recording.m365.io/storage-cleanup"],"generation":1,"name":"contoso","resourceVersion":"1","uid":"00000000-0000-0000-0000-000000000000"},"spec":{"customerName":"Contoso","domain":"contoso.onmicrosoft.com","shortName":"Contoso","contactEmails":["ops@contoso.com"],"adminUpns":["admin@contoso.onmicrosoft.com"],"license":"Essentials","includedUsers":10,"allowExceedIncludedUsers":false,"storage":{"location":"westeurope","byos":{"enabled":false,"locations":[]}},"retention":{"unlimited":false,"days":365},"compliance":{"controlRecordingNotifications":false,"allowDeleteRecordings":false},"optionalConsents":[],"deletionPolicy":"Retain","suspend":false},"status":{"observedGeneration":1,"health":"Warning","licenseType":"Audio Recording","advancedStorage":false,"tenantId":"00000000-0000-0000-0000-000000000000","namespace":"tenant-contoso","storage":[{"location":"westeurope","role":"default","ready":true}],"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"AllGranted","status":"True","type":"ConsentsGranted"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Ready","status":"True","type":"StorageReady"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"every mandatory consent is granted and storage is ready","observedGeneration":1,"reason":"Ready","status":"True","type":"Ready"}]}}{"spec":{"license":"Pro"},"status":{"health":"OK","licenseType":"Audio & Redundancy","advancedStorage":true,"storage":[{"location":"northeurope","role":"paired","ready":true}]}}"#;

impl CachedTenant {
    /// The cache's entry for `tenant` (already [slimmed](super::tenant::slim_tenant)).
    pub fn of(tenant: &Tenant) -> Self {
        Self {
            metadata: ObjectMeta {
                name: tenant.metadata.name.clone(),
                ..ObjectMeta::default()
            },
            facts: super::consent::tenant_facts(tenant),
            health: tenant.status.as_ref().and_then(|s| s.health),
            json: Compact::of(tenant, DICTIONARY),
        }
    }

    /// The Tenant, read back. `None` only if the entry is unreadable, which cannot happen for
    /// one made by [`CachedTenant::of`] (it is logged).
    pub fn tenant(&self) -> Option<Arc<Tenant>> {
        match self.json.read::<Tenant>(DICTIONARY) {
            Ok(tenant) => Some(Arc::new(tenant)),
            Err(e) => {
                tracing::error!(tenant = %self.name_any(), error = %e, "cached Tenant unreadable");
                None
            }
        }
    }

    /// What the consent controller reads of the Tenant, as a hash
    /// ([`consent::tenant_facts`](super::consent::tenant_facts)).
    pub fn facts(&self) -> u64 {
        self.facts
    }

    /// The Tenant's `status.health`.
    pub fn health(&self) -> Option<Health> {
        self.health
    }

    /// The Tenant's namespace (see [`Tenant::namespace_name`]).
    pub fn namespace_name(&self) -> String {
        crate::crd::tenant_namespace(&self.name_any())
    }
}

impl Resource for CachedTenant {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Tenant::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Tenant::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Tenant::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Tenant::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube-runtime's controllers ask their object type to be readable from the API server's
/// JSON; the operator builds its entries from the Tenant watch with [`CachedTenant::of`],
/// and this reads a Tenant the same way.
impl<'de> Deserialize<'de> for CachedTenant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut tenant = Tenant::deserialize(deserializer)?;
        super::tenant::slim_tenant(&mut tenant);
        Ok(Self::of(&tenant))
    }
}

/// The cache's event for a Tenant watch event.
pub fn event_of(
    event: kube::runtime::watcher::Event<Tenant>,
) -> kube::runtime::watcher::Event<CachedTenant> {
    use kube::runtime::watcher::Event;
    match event {
        Event::Apply(t) => Event::Apply(CachedTenant::of(&t)),
        Event::Delete(t) => Event::Delete(CachedTenant::of(&t)),
        Event::Init => Event::Init,
        Event::InitApply(t) => Event::InitApply(CachedTenant::of(&t)),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TenantStatus;

    fn ready_tenant() -> Tenant {
        let mut t = super::super::tenant::tests::tenant("Pro");
        t.metadata.resource_version = Some("48213".into());
        t.metadata.finalizers = Some(vec!["recording.m365.io/storage-cleanup".into()]);
        t.status = Some(
            serde_json::from_value::<TenantStatus>(serde_json::json!({
                "observedGeneration": 1, "health": "OK", "licenseType": "Audio & Redundancy",
                "advancedStorage": true, "tenantId": "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b",
                "namespace": "tenant-contoso",
                "storage": [
                    {"location": "westeurope", "role": "default", "ready": true},
                    {"location": "northeurope", "role": "paired", "ready": true}
                ],
                "conditions": [
                    {"type": "ConsentsGranted", "status": "True", "reason": "AllGranted", "message": "",
                     "observedGeneration": 1, "lastTransitionTime": "2026-11-26T10:00:00Z"},
                    {"type": "StorageReady", "status": "True", "reason": "Ready", "message": "",
                     "observedGeneration": 1, "lastTransitionTime": "2026-11-26T10:00:00Z"},
                    {"type": "Ready", "status": "True", "reason": "Ready",
                     "message": "every mandatory consent is granted and storage is ready",
                     "observedGeneration": 1, "lastTransitionTime": "2026-11-26T10:00:01Z"}
                ]
            }))
            .unwrap(),
        );
        t
    }

    #[test]
    fn a_cached_tenant_is_its_name_and_a_fraction_of_its_json_and_reads_back_exactly() {
        let t = ready_tenant();
        let cached = CachedTenant::of(&t);
        assert_eq!(cached.name_any(), "contoso");
        assert_eq!(cached.meta().uid, None, "the key is the name alone");
        assert_eq!(cached.health(), Some(Health::Ok));
        assert_eq!(cached.facts(), super::super::consent::tenant_facts(&t));
        assert_eq!(cached.namespace_name(), t.namespace_name());
        assert!(
            cached.json.compressed_len() * 3 < cached.json.json_len(),
            "{:?}",
            cached.json
        );
        let json = |t: &Tenant| serde_json::to_value(t).unwrap();
        assert_eq!(json(&cached.tenant().unwrap()), json(&t));
    }

    #[test]
    fn a_cached_tenant_read_from_the_api_servers_json_is_slimmed_like_the_watchs() {
        let mut t = ready_tenant();
        t.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            )]
            .into(),
        );
        let cached: CachedTenant =
            serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        let mut slimmed = t.clone();
        super::super::tenant::slim_tenant(&mut slimmed);
        let json = |t: &Tenant| serde_json::to_value(t).unwrap();
        assert_eq!(json(&cached.tenant().unwrap()), json(&slimmed));
    }
}
