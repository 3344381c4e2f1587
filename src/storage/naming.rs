//! The pure rules of where a tenant's recordings go: the locations the operator provisions
//! (the default region and, for Pro, its Azure pair) and the blob container name of each.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{EnsureStorage, ManagedRole, StorageError};

/// The region holding the geo-redundant copy of `location`'s recordings.
pub fn paired_region(
    location: &str,
    pairs: &BTreeMap<String, String>,
) -> Result<String, StorageError> {
    pairs
        .get(location)
        .cloned()
        .ok_or_else(|| StorageError::NoPairedRegion {
            region: location.to_string(),
        })
}

/// The locations the operator provisions for a tenant: the default one, and for Pro
/// (`geo_redundant`) the paired region's.
pub fn plan_storage(
    tenant: &str,
    location: &str,
    license: &str,
    geo_redundant: bool,
    retention_days: Option<u32>,
    pairs: &BTreeMap<String, String>,
) -> Result<Vec<EnsureStorage>, StorageError> {
    let request = |location: String, role| EnsureStorage {
        tenant_uid: None,
        tenant: tenant.to_string(),
        location,
        role,
        retention_days,
        license: license.to_string(),
    };
    let mut plan = vec![request(location.to_string(), ManagedRole::Default)];
    if geo_redundant {
        plan.push(request(
            paired_region(location, pairs)?,
            ManagedRole::Paired,
        ));
    }
    Ok(plan)
}

/// Longest tenant part of a container name: 63 minus the longest role suffix (`-default`).
const NAME_BUDGET: usize = 63 - "-default".len();
/// Hex digits of the SHA-256 of the tenant name appended when the name had to change.
const HASH_DIGITS: usize = 10;

/// The blob container of `tenant`'s recordings in its `role` location, by Azure's rules:
/// 3–63 characters of lowercase letters, digits and hyphens, starting with a letter or digit,
/// no two hyphens in a row, none at the end.
///
/// A tenant name that already fits is kept as it is (`contoso` → `contoso-default`). Otherwise
/// it is lowercased, every other character becomes a hyphen, runs of hyphens shrink to one, and
/// a short hash of the original name is appended, so two names that sanitise alike still get
/// different containers (`Contoso.EU` → `contoso-eu-<hash>-default`). The result depends on
/// nothing but the name and the role. The operator also stamps the tenant into the container's
/// metadata and refuses to adopt a container stamped for another tenant.
pub fn container_name(tenant: &str, role: ManagedRole) -> String {
    let sanitized = sanitize(tenant);
    let base = if sanitized == tenant && sanitized.len() <= NAME_BUDGET {
        sanitized
    } else {
        let digest = Sha256::digest(tenant.as_bytes());
        let hash: String = digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..HASH_DIGITS]
            .to_string();
        let keep = NAME_BUDGET - 1 - HASH_DIGITS;
        let mut prefix: String = sanitized.chars().take(keep).collect();
        while prefix.ends_with('-') {
            prefix.pop();
        }
        if prefix.is_empty() {
            hash
        } else {
            format!("{prefix}-{hash}")
        }
    };
    format!("{base}-{}", role.as_str())
}

/// Lowercase letters and digits kept, anything else a single hyphen, none at either end.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Whether `name` follows Azure's container naming rules.
pub fn is_valid_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_region_pairs;

    #[test]
    fn a_name_that_fits_is_kept() {
        assert_eq!(
            container_name("contoso", ManagedRole::Default),
            "contoso-default"
        );
        assert_eq!(
            container_name("contoso", ManagedRole::Paired),
            "contoso-paired"
        );
        assert_eq!(container_name("a", ManagedRole::Default), "a-default");
        assert_eq!(
            container_name("7-eleven", ManagedRole::Paired),
            "7-eleven-paired"
        );
    }

    #[test]
    fn names_that_need_changing_get_a_hash_of_the_original() {
        let dotted = container_name("contoso.eu", ManagedRole::Default);
        let hyphened = container_name("contoso-eu", ManagedRole::Default);
        assert_eq!(hyphened, "contoso-eu-default");
        assert!(dotted.starts_with("contoso-eu-"), "{dotted}");
        assert_ne!(
            dotted, hyphened,
            "names that sanitise alike must not share a container"
        );
        assert_eq!(
            dotted.len(),
            "contoso-eu-".len() + HASH_DIGITS + "-default".len()
        );
        // Stable: the same name always gives the same container.
        assert_eq!(dotted, container_name("contoso.eu", ManagedRole::Default));
        // Upper case, runs of odd characters and odd ends.
        let odd = container_name("--Contoso..__Ltd--", ManagedRole::Paired);
        assert!(odd.starts_with("contoso-ltd-"), "{odd}");
        assert!(is_valid_container_name(&odd), "{odd}");
    }

    #[test]
    fn long_names_are_cut_to_63_characters_and_stay_distinct() {
        let long_a = format!("{}a", "x".repeat(250));
        let long_b = format!("{}b", "x".repeat(250));
        for role in [ManagedRole::Default, ManagedRole::Paired] {
            let a = container_name(&long_a, role);
            let b = container_name(&long_b, role);
            assert!(a.len() <= 63 && is_valid_container_name(&a), "{a}");
            assert_ne!(a, b);
        }
        // Exactly at the budget: kept; one more: hashed.
        let at_budget = "y".repeat(NAME_BUDGET);
        assert_eq!(
            container_name(&at_budget, ManagedRole::Default),
            format!("{at_budget}-default")
        );
        assert_eq!(container_name(&at_budget, ManagedRole::Default).len(), 63);
        let over = "y".repeat(NAME_BUDGET + 1);
        let hashed = container_name(&over, ManagedRole::Default);
        assert_eq!(hashed.len(), 63);
        assert!(is_valid_container_name(&hashed));
    }

    #[test]
    fn a_name_without_letters_or_digits_still_gets_a_valid_container() {
        let name = container_name("...", ManagedRole::Default);
        assert!(is_valid_container_name(&name), "{name}");
        assert_eq!(name.len(), HASH_DIGITS + "-default".len());
        assert_ne!(name, container_name("..", ManagedRole::Default));
    }

    #[test]
    fn every_generated_name_follows_azure_rules() {
        for tenant in [
            "a",
            "ab",
            "a.b",
            "A_B",
            "x-",
            "-x",
            "ä-ö",
            "tenant.with.dots.example.com",
        ] {
            for role in [ManagedRole::Default, ManagedRole::Paired] {
                let name = container_name(tenant, role);
                assert!(is_valid_container_name(&name), "{tenant} → {name}");
            }
        }
    }

    #[test]
    fn container_rules_at_the_edges() {
        assert!(is_valid_container_name("abc"));
        assert!(!is_valid_container_name("ab"));
        assert!(is_valid_container_name(&"a".repeat(63)));
        assert!(!is_valid_container_name(&"a".repeat(64)));
        assert!(!is_valid_container_name("-abc"));
        assert!(!is_valid_container_name("abc-"));
        assert!(!is_valid_container_name("a--b"));
        assert!(!is_valid_container_name("Abc"));
        assert!(is_valid_container_name("1ab"));
    }

    #[test]
    fn pairs_follow_azure_including_one_way_pairs() {
        let pairs = default_region_pairs();
        assert_eq!(paired_region("westeurope", &pairs).unwrap(), "northeurope");
        assert_eq!(paired_region("northeurope", &pairs).unwrap(), "westeurope");
        assert_eq!(paired_region("westus3", &pairs).unwrap(), "eastus");
        // eastus pairs with westus, not back with westus3.
        assert_eq!(paired_region("eastus", &pairs).unwrap(), "westus");
        assert_eq!(
            paired_region("brazilsouth", &pairs).unwrap(),
            "southcentralus"
        );
        assert_eq!(
            paired_region("southcentralus", &pairs).unwrap(),
            "northcentralus"
        );
        assert_eq!(paired_region("westindia", &pairs).unwrap(), "southindia");
    }

    #[test]
    fn a_region_without_pair_is_a_clear_error() {
        let err = paired_region("israelcentral", &default_region_pairs()).unwrap_err();
        assert_eq!(err.reason(), "NoPairedRegion");
        assert_eq!(
            err.to_string(),
            "region \"israelcentral\" has no paired region configured, so the Pro geo-redundant \
             copy has nowhere to go; add \"israelcentral\" to storage.regionPairs"
        );
    }

    #[test]
    fn plan_has_the_paired_copy_only_for_pro() {
        let pairs = default_region_pairs();
        let essentials = plan_storage(
            "contoso",
            "westeurope",
            "Essentials",
            false,
            Some(365),
            &pairs,
        )
        .unwrap();
        assert_eq!(essentials.len(), 1);
        assert_eq!(essentials[0].role, ManagedRole::Default);
        let pro = plan_storage("contoso", "westeurope", "Pro", true, None, &pairs).unwrap();
        assert_eq!(
            pro.iter()
                .map(|r| (r.location.as_str(), r.role))
                .collect::<Vec<_>>(),
            [
                ("westeurope", ManagedRole::Default),
                ("northeurope", ManagedRole::Paired)
            ]
        );
        assert!(plan_storage("contoso", "israelcentral", "Pro", true, None, &pairs).is_err());
    }
}
