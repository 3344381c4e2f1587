//! The bot configuration: what the bots read from their ConfigMap.

use super::*;

// ---------------------------------------------------------------------------------------------
// The bot configuration: what the bots read from their ConfigMap (never a secret)
// ---------------------------------------------------------------------------------------------

/// The bot configuration, written as JSON into the ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotConfig {
    /// The Tenant object's name.
    pub tenant: String,
    /// The customer's Entra tenant id.
    pub tenant_id: String,
    pub customer_name: String,
    /// The recording service's short name.
    pub short_name: String,
    pub licensed_users: i32,
    /// `Essentials` or `Pro`.
    pub license: License,
    /// License type shown to people.
    pub license_type: String,
    pub retention: RetentionConfig,
    pub compliance: ComplianceConfig,
    /// Where recordings go, per storage location of the tenant (endpoints without credentials).
    pub storage: Vec<StorageEndpoint>,
    /// Identity platform and Graph hosts of the tenant's cloud.
    pub authority_host: String,
    pub graph_endpoint: String,
    /// The application each bot signs in as.
    pub bots: Vec<BotIdentity>,
    /// The customer's default administrators found in its directory (UPNs), whom the
    /// platform grants default access.
    #[serde(default)]
    pub administrators: Vec<String>,
    /// The public host of the bots' calling webhook (`webhook.platformHost`, or the service's
    /// own host with its own app registration): the bots' notification URLs are
    /// `https://<host>/api/calling/<role>/<ordinal>/<tenantId>` (see `src/webhook.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_host: Option<String>,
    /// The SHA-1 thumbprint (upper-case hex) of the webhook's TLS certificate, which the Teams
    /// media platform names the bot's certificate by (see `thumbprint.rs`); absent while the
    /// certificate's Secret is missing or holds no certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_thumbprint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionConfig {
    pub unlimited: bool,
    /// Days recordings are kept; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceConfig {
    pub control_recording_notifications: bool,
    pub allow_delete_recordings: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageEndpoint {
    /// `default`, `paired` or `byos`.
    pub role: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub endpoint: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotIdentity {
    /// `primary` or `paired`.
    pub role: String,
    /// The tenant the bot requests tokens in.
    pub tenant_id: String,
    /// The application (client) id the bot signs in as.
    pub client_id: String,
    /// `appRegistration` (the customer's own, secret from a Secret) or `platform`.
    pub source: String,
}

/// Computes the bot configuration of a service.
pub fn bot_config(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    config: &OperatorConfig,
) -> BotConfig {
    let spec = &tenant.spec;
    let storage = tenant
        .status
        .as_ref()
        .map(|s| s.storage.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            Some(StorageEndpoint {
                role: l.role.clone(),
                location: l.location.clone(),
                name: l.name.clone(),
                endpoint: l.endpoint.clone()?,
            })
        })
        .collect();
    let bots = bot_roles(spec.license)
        .into_iter()
        .map(|role| match &service.spec.app_registration {
            Some(reg) => BotIdentity {
                role: role.component().into(),
                tenant_id: reg.tenant_id.to_ascii_lowercase(),
                client_id: reg.client_id.to_ascii_lowercase(),
                source: "appRegistration".into(),
            },
            None => BotIdentity {
                role: role.component().into(),
                tenant_id: tenant_id.to_string(),
                client_id: config
                    .consents
                    .get(role.consent_key())
                    .map(|c| c.app_id.clone())
                    .unwrap_or_default(),
                source: "platform".into(),
            },
        })
        .collect();
    BotConfig {
        tenant: tenant.name_any(),
        tenant_id: tenant_id.to_string(),
        customer_name: spec.customer_name.clone(),
        short_name: service.spec.short_name.clone(),
        licensed_users: service.spec.licensed_users,
        license: spec.license,
        license_type: spec.license.display_type().to_string(),
        retention: RetentionConfig {
            unlimited: spec.retention.limit_days().is_none(),
            days: spec
                .retention
                .limit_days()
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        },
        compliance: ComplianceConfig {
            control_recording_notifications: spec.compliance.control_recording_notifications,
            allow_delete_recordings: spec.compliance.allow_delete_recordings,
        },
        storage,
        authority_host: config
            .cloud
            .authority_host()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        graph_endpoint: config
            .cloud
            .graph_endpoint()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        bots,
        administrators: crate::controller::tenant::verified_administrators(tenant),
        webhook_host: config
            .webhook
            .as_ref()
            .and_then(|w| match &service.spec.app_registration {
                Some(_) => w.service_host_for(
                    &service.name_any(),
                    &service.namespace().unwrap_or_default(),
                    &tenant.name_any(),
                ),
                None => w.platform_host.clone(),
            }),
        certificate_thumbprint: None,
    }
}
