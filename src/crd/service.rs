//! `RecordingService` (namespaced, in the tenant's namespace; short name `rsvc`): a recording
//! service of a tenant, run as recording-bot Deployments.
// Each `printcolumn(...)` of the derive repeats the keys `type_` and `priority`; that is its
// syntax, not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::tenant::SecretKeyRef;
use super::{GUID_RE, OBJECT_NAME_RE, SERVICE_NAME_CHARS_RE};

/// A recording service of a tenant.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "recording.m365.io",
    version = "v1alpha1",
    kind = "RecordingService",
    namespaced,
    shortname = "rsvc",
    category = "recording",
    status = "RecordingServiceStatus",
    doc = "A recording service of a tenant: the recording bot (and its paired bot for Pro).",
    printcolumn(name = "Short Name", type_ = "string", json_path = ".spec.shortName"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".spec.licensedUsers"),
    printcolumn(name = "Bots", type_ = "string", json_path = ".status.botsReady"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenantRef",
        priority = 1
    ),
    printcolumn(
        name = "Secret Expires In Days",
        type_ = "integer",
        json_path = ".status.clientSecretExpiresInDays",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RecordingServiceSpec {
    /// Name of the Tenant; the service must live in that tenant's namespace.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_RE))]
    pub tenant_ref: String,

    /// Unique short name of the service: 3-15 characters, none of \ / : * ? " < > |, no full
    /// stop, no white space.
    #[schemars(length(min = 3, max = 15))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{SERVICE_NAME_CHARS_RE}')"))
        .message("shortName must not contain \\ / : * ? \" < > |, a full stop or white space"))]
    pub short_name: String,

    /// Licensed users of this service, 1-500.
    #[schemars(range(min = 1, max = 500))]
    pub licensed_users: i32,

    /// "Use known app registration": the customer's own app registration the bots sign in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_registration: Option<AppRegistration>,

    /// The recording bot.
    #[serde(default)]
    pub bot: BotSpec,
}

/// A known app registration of the customer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistration {
    /// Entra tenant id of the app registration.
    #[schemars(length(max = 36), pattern(GUID_RE))]
    pub tenant_id: String,
    /// Application (client) id.
    #[schemars(length(max = 36), pattern(GUID_RE))]
    pub client_id: String,
    /// Secret (in the service's namespace) holding the client secret.
    pub client_secret_ref: SecretKeyRef,
}

/// The recording bot's Deployment settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotSpec {
    /// Container image; the operator's configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Replicas of each bot Deployment (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: Option<i32>,
    /// Resource requests and limits of each bot container; sane defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bot_resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// This service's media exposure, over the operator configuration's `bots.media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<BotMedia>,
}

/// Per-service media exposure (load-balancer mode): where this service's instances are
/// reached, when the platform gives services their own IP or port block.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotMedia {
    /// The static public IP of this service's instance Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9a-fA-F.:]+$"))]
    pub public_ip: Option<String>,
    /// The first public media port of this service's instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port_range_start: Option<i32>,
}

/// A Kubernetes resource quantity such as `500m`, `2`, `1.5Gi` or `1e3` (the API server's
/// own syntax for `resource.Quantity`).
pub(crate) const QUANTITY_RE: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// The schema of `bot.resources`: `requests` and `limits` maps of quantities, each checked
/// against the quantity syntax. The container type's own schema would accept any string, and
/// a bad one would then fail only when the operator applies the Deployment.
fn bot_resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = |what: &str| {
        serde_json::json!({
            "description": format!("{what} by resource name (`cpu`, `memory`, ...), as quantities such as `500m` or `1Gi`."),
            "type": "object",
            "maxProperties": 16,
            "additionalProperties": {
                "pattern": QUANTITY_RE,
                "x-kubernetes-int-or-string": true
            }
        })
    };
    serde_json::from_value(serde_json::json!({
        "description": "Resource requests and limits of each bot container; sane defaults when absent.",
        "type": "object",
        "nullable": true,
        "properties": {
            "limits": quantities("Limits"),
            "requests": quantities("Requests")
        }
    }))
    .expect("a valid schema")
}

/// Observed state of a recording service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordingServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready/desired replicas per bot Deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bots: Vec<BotStatus>,
    /// Summary for the `BOTS` column, e.g. `2/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bots_ready: Option<String>,
    /// Days until the soonest-expiring client secret of the known app registration expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_in_days: Option<i64>,
    /// The administrators who registered the known app registration (its owners in the
    /// customer's directory, as Graph lists them), when the app may read them
    /// (`Application.Read.All`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_registration_owners: Vec<String>,
    /// Where the known app registration's recording permissions were last read:
    /// `AppRoleAssignments` (its service principal's app role assignments, read through
    /// Microsoft Graph with the platform's `directory` consent: the truth) or `TokenRoles`
    /// (its token's `roles` claim, while the `directory` consent cannot be used; the
    /// `Authenticated` condition says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_permissions_source: Option<String>,
    /// The administrators who consented to the known app registration in the customer's
    /// tenant, newest first, from the directory audit log's "Consent to application" records
    /// (read with the `directory` consent when it holds `AuditLog.Read.All`; Entra keeps them
    /// 7 or 30 days). Empty when Graph cannot tell; the `Authenticated` condition says why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_registration_consented_by: Vec<String>,
    /// When a bot first received a policy-based invite for a user of the tenant (RFC 3339),
    /// as the bots reported it: the customer's compliance recording policy works. Written by
    /// the report endpoint under its own field manager, never by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_policy_invite: Option<String>,
    /// A digest (128 bits of SHA-256, hex) of the bots and the objects around them as the
    /// operator last applied them. A restarted operator whose desired objects have this
    /// digest sends none of them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// `Authenticated` and `SecretExpiry` (when an app registration is used; `SecretExpiry` is
    /// False below 30 days), `BotsReady`, `RecordingPolicy`, `Ready`, and `Stalled` while the spec is invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One bot Deployment, as observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotStatus {
    /// Deployment name.
    pub name: String,
    /// Ready replicas.
    pub ready: i32,
    /// Desired replicas.
    pub desired: i32,
}
