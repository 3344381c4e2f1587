//! Rules across objects (SPEC §8): what the API server cannot check because it looks at one
//! object at a time.
//!
//! - `customerName`, `domain`, `shortName` and the Entra tenant id are unique across Tenants;
//! - a RecordingService's `shortName` is unique among the services of its Tenant;
//! - the `licensedUsers` of a Tenant's services add up to at most its `includedUsers`.
//!
//! The older object keeps working: objects are ordered by creation time, then by name (two
//! objects created in the same second). The newer one is told which object it collides with
//! and provisions nothing new until the older one goes or changes. Everything here is a pure
//! function of the objects as last seen; the controllers report the result.

use std::cmp::Ordering;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{RecordingService, Tenant};

/// The order in which objects claim what must be unique: creation time, then name. An object
/// the API server has not stamped yet (never the case for a stored one) comes last.
pub fn age_order(a: &ObjectMeta, b: &ObjectMeta) -> Ordering {
    let created = |m: &ObjectMeta| m.creation_timestamp.as_ref().map(|t| t.0);
    match (created(a), created(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.name.cmp(&b.name))
}

/// One value an object holds that an older object holds already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The field, e.g. `spec.domain`.
    pub field: &'static str,
    /// The value both objects hold.
    pub value: String,
    /// The older object's kind and name, e.g. `Tenant "contoso"`.
    pub holder: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is already used by {}",
            self.field, self.value, self.holder
        )
    }
}

/// Conflicts as one sentence.
pub fn describe(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(Conflict::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The values of a Tenant that must be unique across Tenants, compared without regard to
/// ASCII case (a domain or GUID in capitals is the same domain or GUID; names that differ only
/// in case would be the same customer to people).
pub fn unique_values<'a>(
    tenant: &'a Tenant,
    tenant_id: Option<&'a str>,
) -> [(&'static str, Option<&'a str>); 4] {
    [
        (
            "spec.customerName",
            Some(tenant.spec.customer_name.as_str()),
        ),
        ("spec.domain", Some(tenant.spec.domain.as_str())),
        ("spec.shortName", Some(tenant.spec.short_name.as_str())),
        ("Entra tenant id", tenant_id),
    ]
}

/// What `tenant` (whose Entra tenant id is `tenant_id`, when known) shares with Tenants older
/// than itself among `all` (which may include `tenant`).
pub fn tenant_conflicts<'a>(
    tenant: &Tenant,
    tenant_id: Option<&str>,
    all: impl IntoIterator<Item = &'a Tenant>,
) -> Vec<Conflict> {
    let mut found = Vec::new();
    let mine = unique_values(tenant, tenant_id);
    for other in all {
        if other.uid() == tenant.uid() && other.name_any() == tenant.name_any() {
            continue;
        }
        if age_order(other.meta(), tenant.meta()) != Ordering::Less {
            continue;
        }
        let theirs = unique_values(other, known_tenant_id(other));
        for ((field, value), (_, theirs)) in mine.iter().zip(theirs) {
            if let (Some(value), Some(theirs)) = (value, theirs) {
                if value.eq_ignore_ascii_case(theirs)
                    && !found.iter().any(|c: &Conflict| c.field == *field)
                {
                    found.push(Conflict {
                        field,
                        value: value.to_string(),
                        holder: format!("Tenant {:?}", other.name_any()),
                    });
                }
            }
        }
    }
    found
}

/// [`Tenant::entra_tenant_id`] borrowed, not lowercased (compared without regard to case).
fn known_tenant_id(tenant: &Tenant) -> Option<&str> {
    tenant
        .spec
        .tenant_id
        .as_deref()
        .or_else(|| tenant.status.as_ref().and_then(|s| s.tenant_id.as_deref()))
}

/// Whether `service` belongs to the same Tenant as `other`: the same `tenantRef`, in the same
/// namespace (a service elsewhere is invalid and claims nothing).
fn siblings(service: &RecordingService, other: &RecordingService) -> bool {
    other.spec.tenant_ref == service.spec.tenant_ref && other.namespace() == service.namespace()
}

/// The older service of the same Tenant whose `shortName` `service` repeats, if any.
pub fn service_conflict<'a>(
    service: &RecordingService,
    all: impl IntoIterator<Item = &'a RecordingService>,
) -> Option<Conflict> {
    all.into_iter()
        .filter(|other| siblings(service, other) && other.name_any() != service.name_any())
        .filter(|other| age_order(other.meta(), service.meta()) == Ordering::Less)
        .filter(|other| {
            other
                .spec
                .short_name
                .eq_ignore_ascii_case(&service.spec.short_name)
        })
        .min_by(|a, b| age_order(a.meta(), b.meta()))
        .map(|other| Conflict {
            field: "spec.shortName",
            value: service.spec.short_name.clone(),
            holder: format!("RecordingService {:?}", other.name_any()),
        })
}

/// How a Tenant's licence is shared among its services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LicenceUse {
    /// Users of the services admitted, oldest first.
    pub in_use: i64,
    /// The Tenant's `includedUsers`.
    pub included: i64,
    /// Services admitted.
    pub admitted: Vec<String>,
    /// Services refused: `(name, its licensedUsers, users in use by older services)`.
    pub refused: Vec<(String, i64, i64)>,
}

impl LicenceUse {
    /// Why `service` is refused, in numbers, if it is.
    pub fn refusal(&self, service: &str) -> Option<String> {
        let (_, own, before) = self.refused.iter().find(|(name, _, _)| name == service)?;
        Some(format!(
            "licensedUsers {own} would bring the tenant's licensed users to {} of {} included (older services use {before})",
            before + own,
            self.included
        ))
    }
}

/// Shares `tenant`'s `includedUsers` among its services (of `all`, those naming it and living in
/// its namespace) oldest first. A service whose users fit in what is left is admitted and
/// counts; one that does not fit is refused and counts for nothing, so a smaller, newer one may
/// still fit. Services that repeat an older sibling's short name are left out: they run nothing.
pub fn licence_use<'a>(
    tenant: &Tenant,
    all: impl IntoIterator<Item = &'a RecordingService>,
) -> LicenceUse {
    let name = tenant.name_any();
    let namespace = tenant.namespace_name();
    let mut services: Vec<&RecordingService> = all
        .into_iter()
        .filter(|s| {
            s.spec.tenant_ref == name && s.namespace().as_deref() == Some(namespace.as_str())
        })
        .filter(|s| s.meta().deletion_timestamp.is_none())
        .collect();
    services.sort_by(|a, b| age_order(a.meta(), b.meta()));
    let mut licence = LicenceUse {
        included: i64::from(tenant.spec.included_users),
        ..Default::default()
    };
    for (i, service) in services.iter().enumerate() {
        if service_conflict(service, services[..i].iter().copied()).is_some() {
            continue;
        }
        let own = i64::from(service.spec.licensed_users);
        if licence.in_use + own <= licence.included {
            licence.in_use += own;
            licence.admitted.push(service.name_any());
        } else {
            licence
                .refused
                .push((service.name_any(), own, licence.in_use));
        }
    }
    licence
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn meta(name: &str, created: i64, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(str::to_string),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
            ..Default::default()
        }
    }

    fn tenant(name: &str, created: i64, customer: &str, domain: &str, short: &str) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {
                "customerName": customer, "domain": domain, "shortName": short,
                "contactEmails": ["ops@example.com"], "adminUpns": ["admin@example.com"],
                "license": "Essentials", "includedUsers": 100,
                "storage": {"location": "westeurope"}
            }
        }))
        .unwrap();
        t.metadata = meta(name, created, None);
        t
    }

    fn service(
        name: &str,
        created: i64,
        tenant: &str,
        short: &str,
        users: i32,
    ) -> RecordingService {
        let mut s: RecordingService = serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "RecordingService",
            "metadata": {"name": name},
            "spec": {"tenantRef": tenant, "shortName": short, "licensedUsers": users}
        }))
        .unwrap();
        s.metadata = meta(name, created, Some(&format!("tenant-{tenant}")));
        s
    }

    #[test]
    fn the_newer_tenant_is_told_which_older_one_holds_each_value() {
        let older = tenant("contoso", 100, "Contoso", "contoso.onmicrosoft.com", "cts");
        let newer = tenant(
            "contoso2",
            200,
            "contoso",
            "CONTOSO.onmicrosoft.com",
            "other",
        );
        let all = [&older, &newer];
        assert_eq!(tenant_conflicts(&older, None, all), []);
        let conflicts = tenant_conflicts(&newer, None, all);
        assert_eq!(
            describe(&conflicts),
            r#"spec.customerName "contoso" is already used by Tenant "contoso"; spec.domain "CONTOSO.onmicrosoft.com" is already used by Tenant "contoso""#
        );
    }

    #[test]
    fn the_entra_tenant_id_counts_once_known_and_a_tie_in_time_goes_by_name() {
        let mut a = tenant("b-tenant", 100, "A", "a.example.com", "a");
        a.spec.tenant_id = Some("5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D".into());
        let b = tenant("a-tenant", 100, "B", "b.example.com", "b");
        // Same second: "a-tenant" is older by name.
        assert_eq!(
            tenant_conflicts(&b, Some("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d"), [&a, &b]),
            []
        );
        let conflicts = tenant_conflicts(&a, a.entra_tenant_id().as_deref(), [&a, &b]);
        assert_eq!(conflicts, []);
        let c = tenant("c-tenant", 300, "C", "c.example.com", "c");
        let conflicts = tenant_conflicts(
            &c,
            Some("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d"),
            [&a, &b, &c],
        );
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].field, "Entra tenant id");
        assert_eq!(conflicts[0].holder, r#"Tenant "b-tenant""#);
        // Not known yet: nothing to compare.
        assert_eq!(tenant_conflicts(&c, None, [&a, &b, &c]), []);
    }

    #[test]
    fn a_service_short_name_is_unique_within_its_tenant_only() {
        let first = service("first", 100, "contoso", "Rec", 10);
        let second = service("second", 200, "contoso", "rec", 10);
        let elsewhere = service("third", 50, "fabrikam", "Rec", 10);
        let all = [&elsewhere, &first, &second];
        assert_eq!(service_conflict(&first, all), None);
        assert_eq!(
            service_conflict(&second, all).unwrap().to_string(),
            r#"spec.shortName "rec" is already used by RecordingService "first""#
        );
    }

    #[test]
    fn the_service_that_tips_the_licence_over_is_refused_and_a_smaller_newer_one_fits() {
        let t = tenant("contoso", 1, "C", "c.example.com", "c");
        let a = service("a", 100, "contoso", "aaa", 50);
        let b = service("b", 200, "contoso", "bbb", 40);
        let c = service("c", 300, "contoso", "ccc", 30);
        let d = service("d", 400, "contoso", "ddd", 5);
        let dup = service("dup", 150, "contoso", "AAA", 100);
        let other = service("x", 50, "fabrikam", "xxx", 500);
        let licence = licence_use(&t, [&d, &c, &b, &a, &dup, &other]);
        assert_eq!(licence.in_use, 95);
        assert_eq!(licence.admitted, ["a", "b", "d"]);
        assert_eq!(licence.refused, [("c".to_string(), 30, 90)]);
        assert_eq!(
            licence.refusal("c").unwrap(),
            "licensedUsers 30 would bring the tenant's licensed users to 120 of 100 included (older services use 90)"
        );
        assert_eq!(licence.refusal("a"), None);
    }
}
