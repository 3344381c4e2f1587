//! `tenantQuota`: the hard limits of the ResourceQuota `tenant-quota` in every tenant
//! namespace. The defaults hold a few bot instances at the default sizing (2 CPU, 4Gi
//! requested each); a platform that runs more or bigger bots per tenant raises them here.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The quota's limits when the configuration names none, by resource name.
pub const DEFAULT_HARD: &[(&str, &str)] = &[
    ("pods", "40"),
    ("requests.cpu", "16"),
    ("requests.memory", "32Gi"),
    ("limits.cpu", "32"),
    ("limits.memory", "64Gi"),
    // Every bot's logs, `/tmp` and writable layer (1Gi limit each by default).
    ("requests.ephemeral-storage", "20Gi"),
    ("limits.ephemeral-storage", "40Gi"),
    ("persistentvolumeclaims", "10"),
    // A bot instance has its own media Service: room for a Pro service at 20 replicas.
    ("services", "50"),
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TenantQuotaConfig {
    /// Limits that replace or add to [`DEFAULT_HARD`], by resource name
    /// (`requests.cpu: "80"`).
    pub hard: BTreeMap<String, String>,
}

static QUANTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(crate::crd::service::QUANTITY_RE).expect("quantity pattern"));

impl TenantQuotaConfig {
    /// The limits the quota gets: the defaults with the configured ones over them.
    pub fn hard(&self) -> BTreeMap<String, String> {
        let mut hard: BTreeMap<String, String> = DEFAULT_HARD
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        hard.extend(self.hard.clone());
        hard
    }

    /// What is wrong with the section, a line per field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in &self.hard {
            if name.is_empty() || name.len() > 253 || name.chars().any(char::is_whitespace) {
                problems.push(format!(
                    "tenantQuota.hard: {name:?} is not a resource name (e.g. requests.cpu)"
                ));
            }
            if !QUANTITY.is_match(value) || value.starts_with('-') {
                problems.push(format!(
                    "tenantQuota.hard.{name}: {value:?} is not a non-negative Kubernetes quantity (e.g. 80, 500m, 160Gi)"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_limits_replace_and_add_to_the_defaults() {
        let config: TenantQuotaConfig = serde_json::from_value(serde_json::json!({
            "hard": {"requests.cpu": "80", "requests.nvidia.com/gpu": "0"}
        }))
        .unwrap();
        let hard = config.hard();
        assert_eq!(hard["requests.cpu"], "80");
        assert_eq!(hard["requests.nvidia.com/gpu"], "0");
        assert_eq!(hard["requests.memory"], "32Gi");
        assert_eq!(hard.len(), DEFAULT_HARD.len() + 1);
        assert!(config.problems().is_empty());
        assert_eq!(
            TenantQuotaConfig::default().hard().len(),
            DEFAULT_HARD.len()
        );
    }

    #[test]
    fn a_bad_limit_is_named_with_its_field() {
        let config: TenantQuotaConfig = serde_json::from_value(serde_json::json!({
            "hard": {"requests.cpu": "lots", "limits.cpu": "-4", "": "1"}
        }))
        .unwrap();
        let text = config.problems().join("\n");
        assert!(
            text.contains(
                "tenantQuota.hard.requests.cpu: \"lots\" is not a non-negative Kubernetes quantity"
            ),
            "{text}"
        );
        assert!(
            text.contains("tenantQuota.hard.limits.cpu: \"-4\""),
            "{text}"
        );
        assert!(
            text.contains("tenantQuota.hard: \"\" is not a resource name"),
            "{text}"
        );
        let unknown =
            serde_json::from_value::<TenantQuotaConfig>(serde_json::json!({"limits": {}}));
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `limits`"));
    }
}
