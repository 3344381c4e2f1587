//! Protobuf bodies (`application/vnd.kubernetes.protobuf`), as the API server reads and writes
//! them for built-in kinds: the `k8s\0` magic, then a `runtime.Unknown` whose `typeMeta` names
//! the kind and whose `raw` is the kind's message. Messages are decoded and encoded by the
//! kube-rs project's prost bindings (`k8s-pb`) and mapped to and from the JSON the simulator
//! stores (`json`, `fields`). Custom resources have no protobuf form.

mod json;
#[rustfmt::skip]
mod fields;

use k8s_pb::api;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::Value;

use super::error::ApiError;
use json::Json;

pub use json::ConvertError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Is this media type (a `Content-Type`, or one entry of an `Accept`) protobuf?
pub fn is_protobuf(media_type: &str) -> bool {
    media_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Does the client list plain protobuf first in `Accept` (not a Table or metadata-only view)?
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| is_protobuf(first) && !first.contains("as="))
}

/// The kinds with a protobuf form: (apiVersion, kind) ⇄ the k8s-pb message of the object and
/// of its list.
macro_rules! kinds {
    ($($api_version:literal $kind:literal => $ty:ty, $list:ty;)*) => {
        fn to_json(api_version: &str, kind: &str, raw: &[u8]) -> Option<Result<Value, Failure>> {
            match (api_version, kind) {
                $(
                    ($api_version, $kind) => Some(message_to_json::<$ty>(raw)),
                    ($api_version, k) if k == concat!($kind, "List") => Some(message_to_json::<$list>(raw)),
                )*
                (_, "DeleteOptions") => Some(message_to_json::<meta::DeleteOptions>(raw)),
                (_, "Status") => Some(message_to_json::<meta::Status>(raw)),
                _ => None,
            }
        }

        fn from_json(api_version: &str, kind: &str, value: &Value) -> Option<Result<Vec<u8>, ConvertError>> {
            match (api_version, kind) {
                $(
                    ($api_version, $kind) => Some(json_to_message::<$ty>(value)),
                    ($api_version, k) if k == concat!($kind, "List") => Some(json_to_message::<$list>(value)),
                )*
                (_, "DeleteOptions") => Some(json_to_message::<meta::DeleteOptions>(value)),
                (_, "Status") => Some(json_to_message::<meta::Status>(value)),
                _ => None,
            }
        }
    };
}

kinds! {
    "v1" "Namespace" => api::core::v1::Namespace, api::core::v1::NamespaceList;
    "v1" "Secret" => api::core::v1::Secret, api::core::v1::SecretList;
    "v1" "ConfigMap" => api::core::v1::ConfigMap, api::core::v1::ConfigMapList;
    "v1" "ServiceAccount" => api::core::v1::ServiceAccount, api::core::v1::ServiceAccountList;
    "v1" "Service" => api::core::v1::Service, api::core::v1::ServiceList;
    "v1" "Event" => api::core::v1::Event, api::core::v1::EventList;
    "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim, api::core::v1::PersistentVolumeClaimList;
    "v1" "ResourceQuota" => api::core::v1::ResourceQuota, api::core::v1::ResourceQuotaList;
    "v1" "Pod" => api::core::v1::Pod, api::core::v1::PodList;
    "events.k8s.io/v1" "Event" => api::events::v1::Event, api::events::v1::EventList;
    "apps/v1" "Deployment" => api::apps::v1::Deployment, api::apps::v1::DeploymentList;
    "apps/v1" "ReplicaSet" => api::apps::v1::ReplicaSet, api::apps::v1::ReplicaSetList;
    "networking.k8s.io/v1" "NetworkPolicy" => api::networking::v1::NetworkPolicy, api::networking::v1::NetworkPolicyList;
    "policy/v1" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget, api::policy::v1::PodDisruptionBudgetList;
    "coordination.k8s.io/v1" "Lease" => api::coordination::v1::Lease, api::coordination::v1::LeaseList;
    "apiextensions.k8s.io/v1" "CustomResourceDefinition" => apiextensions::CustomResourceDefinition, apiextensions::CustomResourceDefinitionList;
    "authorization.k8s.io/v1" "SelfSubjectAccessReview" => api::authorization::v1::SelfSubjectAccessReview, api::authorization::v1::SelfSubjectAccessReview;
    "authorization.k8s.io/v1" "SubjectAccessReview" => api::authorization::v1::SubjectAccessReview, api::authorization::v1::SubjectAccessReview;
    "rbac.authorization.k8s.io/v1" "Role" => api::rbac::v1::Role, api::rbac::v1::RoleList;
    "rbac.authorization.k8s.io/v1" "RoleBinding" => api::rbac::v1::RoleBinding, api::rbac::v1::RoleBindingList;
    "rbac.authorization.k8s.io/v1" "ClusterRole" => api::rbac::v1::ClusterRole, api::rbac::v1::ClusterRoleList;
    "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding, api::rbac::v1::ClusterRoleBindingList;
}

enum Failure {
    Wire(prost::DecodeError),
    Json(ConvertError),
}

fn message_to_json<M: Message + Default + Json>(raw: &[u8]) -> Result<Value, Failure> {
    let message = M::decode(raw).map_err(Failure::Wire)?;
    message.to_json("").map_err(Failure::Json)
}

fn json_to_message<M: Message + Json>(value: &Value) -> Result<Vec<u8>, ConvertError> {
    M::from_json(value, "").map(|m| m.encode_to_vec())
}

/// A protobuf request body as the JSON object it stands for (with `apiVersion` and `kind`).
/// `expected` is the (apiVersion, kind) the URL calls for; the body must be that kind.
pub fn decode(body: &[u8], expected: (&str, &str)) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(format!(
            "provided data does not appear to be a protobuf message, expected prefix {:?}",
            MAGIC
        ))
    })?;
    let unknown = Unknown::decode(envelope).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the protobuf body",
        ));
    }
    let (expected_version, expected_kind) = expected;
    let is_options = matches!(expected_kind, "DeleteOptions");
    if !is_options && api_version != expected_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected_version})"
        )));
    }
    if kind != expected_kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({expected_kind})"
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let mut value = match to_json(&api_version, &kind, &raw) {
        None => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (no protobuf form for {api_version}, Kind={kind})"
            )))
        }
        Some(Err(Failure::Wire(e))) => {
            return Err(ApiError::bad_request(format!(
                "the body of the request could not be decoded as {kind}: {e}"
            )))
        }
        Some(Err(Failure::Json(e))) => {
            return Err(ApiError::bad_request(format!(
                "the body of the request could not be decoded as {kind}: {e}"
            )))
        }
        Some(Ok(v)) => v,
    };
    if !is_options {
        value["apiVersion"] = Value::String(api_version);
        value["kind"] = Value::String(kind);
    }
    Ok(value)
}

/// Does this object (by its `apiVersion` and `kind`) have a protobuf form?
pub fn encodable(value: &Value) -> bool {
    let (api_version, kind) = type_of(value);
    from_json(api_version, kind, &Value::Null).is_some()
}

fn type_of(value: &Value) -> (&str, &str) {
    (
        value["apiVersion"].as_str().unwrap_or_default(),
        value["kind"].as_str().unwrap_or_default(),
    )
}

/// A JSON object (with `apiVersion` and `kind`) as a protobuf body.
pub fn encode(value: &Value) -> Result<Vec<u8>, ApiError> {
    let (api_version, kind) = type_of(value);
    let raw = match from_json(api_version, kind, value) {
        Some(Ok(raw)) => raw,
        Some(Err(e)) => {
            return Err(ApiError::new(
                500,
                "InternalError",
                format!("cannot encode {kind} as protobuf: {e}"),
            ))
        }
        None => {
            return Err(ApiError::new(
                406,
                "NotAcceptable",
                format!("{api_version}, Kind={kind} has no protobuf form"),
            ))
        }
    };
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    envelope
        .encode(&mut out)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
