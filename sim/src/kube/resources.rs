//! The resource types the simulated server knows: the built-in kinds the operator touches plus
//! whatever CustomResourceDefinitions register, and the discovery documents describing them.

use std::sync::Arc;

use serde_json::{json, Value};

use super::apply::ListType;
use super::error::{ApiError, FieldError};

/// Where objects of one resource live in the store: all served versions of a CRD share it.
pub type StoreKey = (String, String); // (group, plural)

/// What a CRD version adds to a resource: its schema, compiled CEL rules and printer columns.
pub struct CrdVersion {
    pub schema: Option<Value>,
    pub compiled: Option<kube_cel::CompiledSchema>,
    /// The rules a create runs and the rules that answer for unchanged values on an update.
    pub variants: Option<super::schema::RuleVariants>,
    pub printer_columns: Vec<Value>,
    /// What the compiled rules answered to inputs seen before.
    pub cel_verdicts: super::schema::CelVerdicts,
}

/// One served group/version/resource.
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// `metadata.generation` is maintained (and bumped on non-metadata/status changes).
    pub generation: bool,
    /// Field selectors beyond metadata.name/metadata.namespace.
    pub selectable_fields: Vec<String>,
    pub crd: Option<CrdVersion>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// events.k8s.io Events share the core Events' storage.
    pub fn store_key(&self) -> StoreKey {
        if self.is_events_v1() {
            return (String::new(), "events".into());
        }
        (self.group.clone(), self.plural.clone())
    }

    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    fn verbs(&self) -> Vec<&'static str> {
        if self.group == "authorization.k8s.io" {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

impl ResourceType {
    /// This resource in aggregated discovery (`apidiscovery.k8s.io/v2`).
    fn aggregated_entry(&self) -> Value {
        let kind = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let mut r = json!({
            "resource": self.plural,
            "responseKind": kind,
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            r["categories"] = json!(self.categories);
        }
        if self.status_subresource {
            r["subresources"] = json!([{"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}]);
        }
        r
    }
}

/// List types for server-side apply: the CRD schema's `x-kubernetes-list-type`, or the
/// merge keys of the built-in types.
impl super::apply::ListTypes for ResourceType {
    fn list_type(&self, path: &[String]) -> ListType {
        match path {
            [m, f] if m == "metadata" && f == "finalizers" => return ListType::Set,
            [m, f] if m == "metadata" && f == "ownerReferences" => {
                return ListType::Map(vec!["uid".into()])
            }
            _ => {}
        }
        if let Some(schema) = self.crd.as_ref().and_then(|c| c.schema.as_ref()) {
            return schema_list_type(schema, path);
        }
        match path.split_last() {
            Some((field, parents)) => match super::patch::merge_key(parents, field) {
                Some(key) => ListType::Map(vec![key.to_string()]),
                None => ListType::Atomic,
            },
            None => ListType::Atomic,
        }
    }
}

fn schema_list_type(schema: &Value, path: &[String]) -> ListType {
    let mut node = schema;
    for segment in path {
        while node["type"] == "array" && node.get("items").is_some() {
            node = &node["items"];
        }
        node = node["properties"]
            .get(segment)
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
            .unwrap_or(&Value::Null);
    }
    match node["x-kubernetes-list-type"].as_str() {
        Some("map") => ListType::Map(
            node["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect(),
        ),
        Some("set") => ListType::Set,
        _ => ListType::Atomic,
    }
}

struct Builtin {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    generation: bool,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "ResourceQuota",
        plural: "resourcequotas",
        namespaced: true,
        short_names: &["quota"],
        categories: &[],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        status: true,
        generation: false,
    },
    Builtin {
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        status: true,
        generation: true,
    },
    // Served so that clients which look up a Deployment's ReplicaSets (Helm's readiness wait)
    // find the resource; no controller creates any.
    Builtin {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "networking.k8s.io",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
        short_names: &["netpol"],
        categories: &[],
        status: false,
        generation: true,
    },
    Builtin {
        group: "policy",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
        status: true,
        generation: true,
    },
    Builtin {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "authorization.k8s.io",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "authorization.k8s.io",
        kind: "SubjectAccessReview",
        plural: "subjectaccessreviews",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        generation: false,
    },
];

/// The field selectors the real server supports per built-in kind.
fn builtin_field_selectors(group: &str, kind: &str) -> Vec<String> {
    let fields: &[&str] = match (group, kind) {
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Namespace") => &["status.phase"],
        ("", "Secret") => &["type"],
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
        _ => &[],
    };
    fields.iter().map(|f| f.to_string()).collect()
}

/// The set of served resources.
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        let types = BUILTINS
            .iter()
            .map(|b| {
                Arc::new(ResourceType {
                    group: b.group.to_string(),
                    version: "v1".to_string(),
                    kind: b.kind.to_string(),
                    plural: b.plural.to_string(),
                    singular: b.kind.to_lowercase(),
                    namespaced: b.namespaced,
                    short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                    categories: b.categories.iter().map(|s| s.to_string()).collect(),
                    status_subresource: b.status,
                    generation: b.generation,
                    selectable_fields: builtin_field_selectors(b.group, b.kind),
                    crd: None,
                })
            })
            .collect();
        Registry { types }
    }
}

impl Registry {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Any served version of a group/kind (for owner lookups and printing).
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .or_else(|| {
                self.types
                    .iter()
                    .find(|t| t.group == group && t.kind == kind)
            })
            .cloned()
    }

    /// One representative type per store key (the first served version).
    pub fn by_store_key(&self, key: &StoreKey) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == key.0 && t.plural == key.1)
            .cloned()
    }

    /// Register (or re-register) the served versions of a CRD; returns the store key.
    pub fn register_crd(&mut self, types: Vec<ResourceType>) {
        if let Some(first) = types.first() {
            let key = first.store_key();
            self.types
                .retain(|t| t.store_key() != key || t.crd.is_none());
        }
        self.types.extend(types.into_iter().map(Arc::new));
    }

    pub fn unregister(&mut self, key: &StoreKey) {
        self.types
            .retain(|t| !(t.store_key() == *key && t.crd.is_some()));
    }

    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// `/api` (core) or `/apis` (every other group) as an `APIGroupDiscoveryList`, the
    /// aggregated discovery document clients ask for first.
    pub fn aggregated(&self, core: bool) -> Value {
        let groups: Vec<(String, Vec<String>)> = if core {
            vec![(String::new(), vec!["v1".to_string()])]
        } else {
            self.groups()
        };
        let items: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = self
                            .types
                            .iter()
                            .filter(|t| t.group == group && t.version == *v)
                            .map(|t| t.aggregated_entry())
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": group}, "versions": versions})
            })
            .collect();
        json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
    }

    /// `/apis`: the `APIGroupList`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(name, versions)| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                    .collect();
                let preferred = vs[0].clone();
                json!({"name": name, "versions": vs, "preferredVersion": preferred})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/{group}`: one `APIGroup`.
    pub fn group(&self, group: &str) -> Option<Value> {
        let list = self.group_list();
        list["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == group)
            .map(|g| {
                let mut g = g.clone();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                g
            })
    }

    /// `/api/v1` or `/apis/{group}/{version}`: the `APIResourceList`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let types: Vec<&Arc<ResourceType>> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect();
        if types.is_empty() {
            return None;
        }
        let resources: Vec<Value> = types.iter().flat_map(|t| t.discovery_entries()).collect();
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }
}

/// `/openapi/v3`: one entry per group/version, whose URL changes whenever its content does
/// (clients cache these documents by hash).
pub fn openapi_root(registry: &Registry) -> Value {
    let mut gvs: Vec<(String, String)> = registry
        .types
        .iter()
        .map(|t| (t.group.clone(), t.version.clone()))
        .collect();
    gvs.sort();
    gvs.dedup();
    let mut paths = serde_json::Map::new();
    for (g, v) in gvs {
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let doc = openapi_document(registry, &g, &v)
            .map(|d| d.to_string())
            .unwrap_or_default();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            doc.hash(&mut h);
            format!("{:016X}", h.finish())
        };
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{g}/{v}`: the operations of each resource with
/// their query parameters, which is what `kubectl` reads to learn that the server validates
/// fields itself (`fieldValidation`), plus the CRD schemas.
pub fn openapi_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&Arc<ResourceType>> = registry
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation"),
        param("force")
    ]);
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let op = |id: &str| json!({"operationId": format!("{id}{}", t.kind), "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": {}});
        paths.insert(
            base.clone(),
            json!({"post": op("create"), "get": op("list")}),
        );
        paths.insert(format!("{base}/{{name}}"), json!({"get": op("read"), "put": op("replace"), "patch": op("patch"), "delete": op("delete")}));
        let schema_name = format!(
            "{}.{}.{}",
            if t.group.is_empty() {
                "io.k8s.api.core"
            } else {
                &t.group
            },
            t.version,
            t.kind
        );
        let mut schema = t
            .crd
            .as_ref()
            .and_then(|c| c.schema.clone())
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Validate a CustomResourceDefinition and derive the resource types it serves.
pub fn crd_resource_types(crd: &Value) -> Result<Vec<ResourceType>, Vec<FieldError>> {
    let spec = &crd["spec"];
    let mut errors = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        errors.push(FieldError {
            field: "spec.scope".into(),
            kind: super::error::FieldErrorKind::NotSupported {
                value: super::error::go_value(&spec["scope"]),
                supported: vec!["Cluster".into(), "Namespaced".into()],
            },
        });
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            &json!(versions),
            format!("must have exactly one version marked as storage version, status.storedVersions[{storage}]"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    // Schemas are required, and their CEL rules must compile (checked once, here).
    let mut compiled_versions = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match v
            .pointer("/schema/openAPIV3Schema")
            .filter(|s| !s.is_null())
        {
            None => errors.push(FieldError::required(at, "schemas are required")),
            Some(schema) => {
                let compiled = kube_cel::compile_schema(schema);
                rule_errors(&compiled, &at, &mut errors);
                compiled_versions.push(compiled);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(versions
        .iter()
        .zip(compiled_versions)
        .filter(|(v, _)| v["served"] != json!(false))
        .map(|(v, compiled)| {
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .filter(|s| !s.is_null());
            let variants = schema
                .as_ref()
                .map(|s| super::schema::RuleVariants::of(s, &compiled));
            let compiled = Some(compiled);
            ResourceType {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: scope == "Namespaced",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v.pointer("/subresources/status").is_some(),
                generation: true,
                selectable_fields: v["selectableFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["jsonPath"].as_str())
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect(),
                crd: Some(CrdVersion {
                    schema,
                    compiled,
                    variants,
                    cel_verdicts: Default::default(),
                    printer_columns: v["additionalPrinterColumns"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                }),
            }
        })
        .collect())
}

/// Report every CEL rule of a compiled schema that does not compile, at its schema path.
fn rule_errors(schema: &kube_cel::CompiledSchema, at: &str, errors: &mut Vec<FieldError>) {
    for (i, v) in schema.validations.iter().enumerate() {
        if let Err(e) = v {
            errors.push(FieldError::invalid(
                format!("{at}.x-kubernetes-validations[{i}].rule"),
                &Value::Null,
                format!("compilation failed: {e}"),
            ));
        }
    }
    let mut props: Vec<(&String, &kube_cel::CompiledSchema)> = schema.properties.iter().collect();
    props.sort_by(|a, b| a.0.cmp(b.0));
    for (name, child) in props {
        rule_errors(child, &format!("{at}.properties[{name}]"), errors);
    }
    if let Some(items) = &schema.items {
        rule_errors(items, &format!("{at}.items"), errors);
    }
    if let Some(additional) = &schema.additional_properties {
        rule_errors(additional, &format!("{at}.additionalProperties"), errors);
    }
}

/// `/version`
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

/// Unused-parameter-free error for a CRD that cannot be served.
pub fn crd_invalid(crd: &Value, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        crd["metadata"]["name"].as_str().unwrap_or_default(),
        errors,
    )
}
