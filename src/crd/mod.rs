//! The three custom resources of API group `recording.m365.io/v1alpha1`, their shared field
//! rules, and `crdgen` output.
//!
//! Every rule a manifest must obey is written once, into the generated CRD schema (OpenAPI
//! patterns, lengths, enums, bounds and CEL `x-kubernetes-validations`). The API server enforces
//! it at `kubectl apply` time; [`validation`] evaluates the very same schema inside the
//! reconcilers, for clusters without CEL and for objects stored before a rule existed.

pub mod consent;
pub mod service;
pub mod tenant;
pub mod validation;

pub use consent::{ConsentGrant, ConsentGrantSpec, ConsentGrantStatus, ConsentState};
pub use service::{RecordingService, RecordingServiceSpec, RecordingServiceStatus};
pub use tenant::{
    tenant_namespace, AdministratorState, AdministratorStatus, Health, License, NotificationKind,
    NotificationRecord, NotificationState, TeamsAppStatus, Tenant, TenantSpec, TenantStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every resource of the operator.
pub const GROUP: &str = "recording.m365.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "recording-operator";
/// Label naming the Tenant an object belongs to.
pub const TENANT_LABEL: &str = "recording.m365.io/tenant";
/// The uid of the Tenant an object was made for: stamped on the tenant's namespace and its
/// storage claims, checked before the operator adopts one that already exists.
pub const TENANT_UID_LABEL: &str = "recording.m365.io/tenant-uid";
/// Annotation whose change asks for an immediate consent re-check (the GitOps way to say
/// "the admin has just accepted").
pub const RECHECK_ANNOTATION: &str = "recording.m365.io/recheck-at";

/// Every Unicode white space character (the `White_Space` property), spelled out for a
/// character class. Not `\s`: in RE2, which the API server's CEL runs, `\s` is the ASCII
/// `[\t\n\f\r ]` only, while the regex engine of the operator's and the simulator's CEL reads
/// it as Unicode white space. A name with a no-break space would then pass the API server and
/// fail the operator's own check. This list means the same to both: the ASCII controls tab to
/// carriage return, next line (U+0085) and the separators (`\p{Z}`: the space, no-break and
/// ideographic spaces among them, line and paragraph separators).
macro_rules! white_space {
    () => {
        r"\t\n\v\f\r\x{85}\p{Z}"
    };
}

/// Character rule shared by `customerName`, `shortName` and the service short name: none of
/// `\ / : * ? " < > |`, no full stop, no white space; hyphens allowed but never first, last or
/// doubled. Written once as an RE2 expression (the dialect of CEL's `matches`).
pub(crate) const NAME_CHARS_RE: &str = concat!(
    r#"^[^\\/:*?"<>|."#,
    white_space!(),
    r#"-]+(-[^\\/:*?"<>|."#,
    white_space!(),
    r#"-]+)*$"#
);
/// The same rule without the hyphen constraints (service short names).
pub(crate) const SERVICE_NAME_CHARS_RE: &str =
    concat!(r#"^[^\\/:*?"<>|."#, white_space!(), r#"]+$"#);

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, ending in a
/// letters-only top-level label.
pub(crate) const DNS_NAME_RE: &str =
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$";
/// An Entra tenant or application id.
pub(crate) const GUID_RE: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// An e-mail address: a local part of the RFC 5322 "atext" characters and inner dots, `@`, a DNS name.
pub(crate) const EMAIL_RE: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$";
/// A User Principal Name: a prefix of the characters Entra allows (no leading, trailing or
/// doubled full stop), `@`, a DNS domain.
pub(crate) const UPN_RE: &str = r"^[A-Za-z0-9'_!#^~+-]+(\.[A-Za-z0-9'_!#^~+-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$";
/// An Azure region name such as `westeurope`.
pub(crate) const REGION_RE: &str = r"^[a-z][a-z0-9]{1,39}$";
/// A Kubernetes object name (DNS-1123 subdomain).
pub(crate) const OBJECT_NAME_RE: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A consent key such as `redundantRecording`.
pub(crate) const CONSENT_KEY_RE: &str = r"^[a-z][A-Za-z0-9]*$";
/// A Graph permission or scope name such as `Calls.AccessMedia.All` or `openid`.
pub(crate) const PERMISSION_RE: &str = r"^[A-Za-z][A-Za-z0-9._-]*$";

/// A DNS-1123 label (RFC 1123): lower-case letters, digits and inner hyphens.
pub(crate) const DNS_LABEL_RE: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1035 label (RFC 1035), what a Service's name must be: a DNS-1123 label that starts
/// with a letter.
pub(crate) const DNS_1035_LABEL_RE: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// The longest Tenant name: its namespace `tenant-<name>` is a DNS label (63).
pub const MAX_TENANT_NAME: u64 = 63 - "tenant-".len() as u64;
/// The longest RecordingService name: its paired bot's Deployment and Service
/// `<name>-hue-paired` are DNS labels (63).
pub const MAX_SERVICE_NAME: u64 = 63 - "-hue-paired".len() as u64;

/// The three CRDs, in the order `crdgen` prints them.
///
/// The Tenant's and the RecordingService's names become other objects' names, so their CRDs
/// restrict `metadata.name` (the one field of metadata a CRD schema may restrict, besides
/// `generateName`): the API server refuses a name that would make an invalid namespace,
/// Deployment or Service name, and the reconcilers' validation reads the same schema.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        with_name_rule(Tenant::crd(), MAX_TENANT_NAME, DNS_LABEL_RE),
        ConsentGrant::crd(),
        with_name_rule(RecordingService::crd(), MAX_SERVICE_NAME, DNS_1035_LABEL_RE),
    ]
    .into_iter()
    .map(with_condition_rules)
    .collect()
}

/// `status.conditions[]` items with the rules of `metav1.Condition` (the type's Go markers,
/// which k8s-openapi's schema leaves out): `status` one of True, False, Unknown; `reason` and
/// `type` in their CamelCase shapes and lengths; `message` at most 32 KiB.
fn with_condition_rules(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSON,
    };
    for version in &mut crd.spec.versions {
        let item = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut()?.get_mut("status"))
            .and_then(|status| status.properties.as_mut()?.get_mut("conditions"))
            .and_then(|conditions| match conditions.items.as_mut()? {
                JSONSchemaPropsOrArray::Schema(item) => Some(item),
                JSONSchemaPropsOrArray::Schemas(_) => None,
            });
        let Some(fields) = item.and_then(|item| item.properties.as_mut()) else {
            continue;
        };
        if let Some(status) = fields.get_mut("status") {
            status.enum_ = Some(
                ["True", "False", "Unknown"]
                    .map(|v| JSON(serde_json::Value::from(v)))
                    .to_vec(),
            );
        }
        if let Some(reason) = fields.get_mut("reason") {
            reason.min_length = Some(1);
            reason.max_length = Some(1024);
            reason.pattern = Some(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$".into());
        }
        if let Some(type_) = fields.get_mut("type") {
            type_.max_length = Some(316);
            type_.pattern = Some(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$".into(),
            );
        }
        if let Some(message) = fields.get_mut("message") {
            message.max_length = Some(32768);
        }
        if let Some(generation) = fields.get_mut("observedGeneration") {
            generation.minimum = Some(0.0);
        }
    }
    crd
}

/// `crd` with `metadata.name` limited to `max` characters matching `pattern`.
fn with_name_rule(
    mut crd: CustomResourceDefinition,
    max: u64,
    pattern: &str,
) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    for version in &mut crd.spec.versions {
        let root = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .expect("derived CRDs carry an openAPIV3Schema");
        let name = JSONSchemaProps {
            type_: Some("string".into()),
            max_length: Some(max as i64),
            pattern: Some(pattern.into()),
            ..Default::default()
        };
        let metadata = JSONSchemaProps {
            type_: Some("object".into()),
            properties: Some([("name".to_string(), name)].into()),
            ..Default::default()
        };
        root.properties
            .get_or_insert_with(Default::default)
            .insert("metadata".into(), metadata);
    }
    crd
}

/// One CRD as the YAML document `crdgen` prints and `crds/` holds.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("a CRD serializes to YAML")
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| format!("---\n{}", crd_yaml(crd)))
        .collect()
}

/// File name of a CRD inside `crds/` and the chart's `crds/`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"))
}
