//! The cluster's state and every operation on it, independent of HTTP: admission (defaults,
//! validation, metadata), create/update/patch/apply/delete, finalizers, namespace
//! termination, owner-reference garbage collection and the Deployment status loop.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::admission::{builtin_admission, validate_metadata, validate_name};
use super::apply::{self, Scope};
use super::error::{go_quote, ApiError, FieldError, Target};
use super::patch::{self, PatchType};
use super::resources::{crd_invalid, crd_resource_types, Registry, ResourceType, StoreKey};
use super::schema;
use super::selectors::Filter;
use super::store::{Change, Store};

pub fn now_rfc3339() -> String {
    // Formatted once per second and thread: a write asks for the time several times.
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let now = chrono::Utc::now();
    LAST.with_borrow_mut(|(second, text)| {
        if *second != now.timestamp() {
            *second = now.timestamp();
            *text = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        text.clone()
    })
}

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// `fieldManager`, or the manager derived from the User-Agent.
    pub field_manager: String,
    /// `fieldValidation=Strict`: unknown fields are an error instead of a warning.
    pub strict: bool,
    pub force: bool,
}

/// The outcome of a write: the object and any `Warning` headers.
pub struct Written {
    /// Shared with the store when the stored object is already in its served form.
    pub object: Arc<Value>,
    /// The change that stored `object` as it is served, whose JSON the response can share
    /// with the watches sending it.
    pub change: Option<Arc<Change>>,
    pub warnings: Vec<String>,
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

pub struct Cluster {
    pub registry: Registry,
    pub store: Store,
    pub ready_delay: Duration,
    /// Deployments held unavailable by a test: (namespace, name).
    pub held: BTreeSet<(String, String)>,
    /// When each progressing Deployment becomes available.
    deployment_due: BTreeMap<(String, String), Instant>,
    /// The StatefulSet loop's state and what tests set for it.
    pub workloads: super::workloads::StatefulSets,
}

fn target<'a>(rt: &'a ResourceType, name: &'a str) -> Target<'a> {
    Target {
        group: &rt.group,
        plural: &rt.plural,
        name,
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Equal apart from the fields named in `skip` (compared in place, without copies).
fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |m: &'_ serde_json::Map<String, Value>| {
                m.keys().filter(|k| !skip.contains(&k.as_str())).count()
            };
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Does the new version change what bumps `generation`: everything but metadata (and
/// status, when it is a subresource)?
fn generation_relevant_change(rt: &ResourceType, new: &Value, old: &Value) -> bool {
    let skip: &[&str] = if rt.status_subresource {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    !same_except(new, old, skip)
}

/// The same object, its managedFields and resourceVersion aside.
fn same_content(a: &Value, b: &Value) -> bool {
    same_except(a, b, &["metadata"])
        && same_except(
            &a["metadata"],
            &b["metadata"],
            &["managedFields", "resourceVersion"],
        )
}

impl Cluster {
    pub fn new(store: Store, ready_delay: Duration) -> Self {
        let mut cluster = Cluster {
            registry: Registry::default(),
            store,
            ready_delay,
            held: BTreeSet::new(),
            deployment_due: BTreeMap::new(),
            workloads: Default::default(),
        };
        cluster.bootstrap();
        cluster
    }

    /// A brand-new cluster: built-in kinds only, no objects; resourceVersions keep rising so
    /// that anything cached from before is too old.
    pub fn reset(&mut self) {
        self.registry = Registry::default();
        self.store.wipe();
        self.held.clear();
        self.deployment_due.clear();
        self.workloads = Default::default();
        self.bootstrap();
    }

    /// The namespaces every cluster starts with.
    pub fn bootstrap(&mut self) {
        let ns = self
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces are built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if self.store.get(&ns.store_key(), "", name).is_none() {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                let opts = WriteOptions {
                    field_manager: "kube-apiserver".into(),
                    ..Default::default()
                };
                let _ = self.create(&ns, "", body, &opts);
            }
        }
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.registry.find(group, version, plural)
    }

    // ----- reads -----

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.store
            .get(&rt.store_key(), ns, name)
            .map(|o| served(rt, o))
            .ok_or_else(|| ApiError::not_found(target(rt, name)))
    }

    /// Objects matching a filter, in key order, starting after `continue_after`: at most
    /// `limit` of them, the key of the last one when more match, and how many more match.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: &str,
        filter: &Filter,
        limit: Option<usize>,
        continue_after: Option<&(String, String)>,
    ) -> (Vec<Value>, Option<(String, String)>, usize) {
        let mut matching = self
            .store
            .objects_after(&rt.store_key(), ns, continue_after)
            .filter(|(_, o)| filter.selects_all() || filter.matches(&served(rt, o)));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        for (key, object) in matching.by_ref().take(limit) {
            items.push(served(rt, object));
            last = Some(key);
        }
        let remaining = matching.count();
        let next = last.filter(|_| remaining > 0).cloned();
        (items, next, remaining)
    }

    fn namespace_check(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let key: StoreKey = (String::new(), "namespaces".into());
        match self.store.get(&key, "", ns) {
            None => Err(ApiError::not_found(Target {
                group: "",
                plural: "namespaces",
                name: ns,
            })),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                let mut e = ApiError::forbidden(
                    target(rt, name),
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                );
                if let Some(d) = e.details.as_mut() {
                    d["causes"] = json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
                }
                Err(e)
            }
            Some(_) => Ok(()),
        }
    }

    /// Quota admission: a create that would take a namespace past a ResourceQuota's `hard`
    /// object counts (`services`, `count/deployments.apps`, …) or `requests.storage` is
    /// refused, as the real quota admission plugin does.
    fn check_quota(&self, rt: &ResourceType, ns: &str, object: &Value) -> Result<(), ApiError> {
        if ns.is_empty() {
            return Ok(());
        }
        let quotas: StoreKey = (String::new(), "resourcequotas".into());
        let count_key = if rt.group.is_empty() {
            format!("count/{}", rt.plural)
        } else {
            format!("count/{}.{}", rt.plural, rt.group)
        };
        let legacy_key = matches!(
            rt.plural.as_str(),
            "pods"
                | "services"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "resourcequotas"
        ) && rt.group.is_empty();
        // Counted when a quota limits this resource's count (most writes meet none).
        let mut existing: Option<f64> = None;
        for quota in self.store.list(&quotas, ns) {
            let Some(hard) = quota["spec"]["hard"].as_object() else {
                continue;
            };
            let mut exceeded: Vec<(String, String, String, String)> = Vec::new();
            for (key, limit) in hard {
                let limit_text = limit
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| limit.to_string());
                let Some(max) = quantity(&limit_text) else {
                    continue;
                };
                let (requested, used) = if *key == count_key || (legacy_key && *key == rt.plural) {
                    let used = *existing
                        .get_or_insert_with(|| self.store.count(&rt.store_key(), ns) as f64);
                    (1.0, used)
                } else if key == "requests.storage"
                    && rt.kind == "PersistentVolumeClaim"
                    && rt.group.is_empty()
                {
                    let size = |o: &Value| {
                        o["spec"]["resources"]["requests"]["storage"]
                            .as_str()
                            .and_then(quantity)
                            .unwrap_or(0.0)
                    };
                    let used: f64 = self
                        .store
                        .list(&rt.store_key(), ns)
                        .into_iter()
                        .map(size)
                        .sum();
                    (size(object), used)
                } else {
                    continue;
                };
                if used + requested > max {
                    exceeded.push((
                        key.clone(),
                        format_quantity(requested),
                        format_quantity(used),
                        limit_text,
                    ));
                }
            }
            if !exceeded.is_empty() {
                let join = |f: fn(&(String, String, String, String)) -> String| {
                    exceeded.iter().map(f).collect::<Vec<_>>().join(",")
                };
                let why = format!(
                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                    meta_str(quota, "name"),
                    join(|e| format!("{}={}", e.0, e.1)),
                    join(|e| format!("{}={}", e.0, e.2)),
                    join(|e| format!("{}={}", e.0, e.3)),
                );
                return Err(ApiError::forbidden(
                    target(rt, meta_str(object, "name")),
                    &why,
                ));
            }
        }
        Ok(())
    }

    // ----- writes -----

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        self.create_owned(rt, ns, body, opts, None)
    }

    /// A create; `managed` is the managedFields of a server-side apply that creates the
    /// object (the applier owns what it sent), otherwise the creator owns every field as an
    /// Update. Either way the object is written once: one resourceVersion, one ADDED event.
    fn create_owned(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
        managed: Option<Value>,
    ) -> Result<Written, ApiError> {
        check_type(rt, &mut body)?;
        if !meta_str(&body, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta_str(&body, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&body, "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    "",
                    &[FieldError::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
            name = format!("{prefix}{}", random_suffix());
            body["metadata"]["name"] = json!(name);
        }
        set_namespace(rt, ns, &mut body)?;
        self.namespace_check(rt, ns, &name)?;
        if self.store.get(&rt.store_key(), ns, &name).is_some() {
            return Err(ApiError::already_exists(target(rt, &name)));
        }
        if rt.status_subresource && rt.is_custom() {
            if let Some(map) = body.as_object_mut() {
                map.remove("status");
            }
        }
        let meta = body["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("managedFields");
        if rt.generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        let (mut object, warnings) = self.admit(rt, None, body, opts)?;
        self.check_quota(rt, ns, &object)?;
        match managed {
            Some(managed) => object["metadata"]["managedFields"] = managed,
            None => {
                let (api_version, now) = (rt.api_version(), now_rfc3339());
                apply::record_update(
                    None,
                    &mut object,
                    &writer(rt, &opts.field_manager, &api_version, main_scope(rt), &now),
                );
            }
        }
        let (object, change) = self.persist(rt, object, opts.dry_run, None)?;
        Ok(Written {
            object,
            change,
            warnings,
            created: true,
        })
    }

    /// PUT: replace the object (or only its status through `/status`).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_type(rt, &mut body)?;
        let body_name = meta_str(&body, "name").to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        body["metadata"]["name"] = json!(name);
        set_namespace(rt, ns, &mut body)?;
        let old = self
            .store
            .shared(&rt.store_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(target(rt, name)))?;
        let rv = meta_str(&body, "resourceVersion").to_string();
        if rv.is_empty() {
            if rt.is_custom() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    name,
                    &[FieldError::invalid(
                        "metadata.resourceVersion",
                        &json!("0x0"),
                        "must be specified for an update",
                    )
                    .with_raw_value("0x0")],
                ));
            }
        } else if rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(target(rt, name)));
        }
        self.write_over(rt, &old, body, status, opts, None)
    }

    /// Apply a request's new version of an existing object: scope, admission, finalizers.
    fn write_over(
        &mut self,
        rt: &ResourceType,
        stored: &Arc<Value>,
        mut body: Value,
        status: bool,
        opts: &WriteOptions,
        applied_fields: Option<Value>,
    ) -> Result<Written, ApiError> {
        let old: &Value = stored;
        let name = meta_str(old, "name").to_string();
        // Ownership the client sent (kubectl's client-side to server-side apply migration
        // rewrites managedFields this way) becomes the baseline of this write.
        let requested = body["metadata"]["managedFields"].clone();
        let baseline = match requested.as_array() {
            Some(list)
                if applied_fields.is_none()
                    && !list.is_empty()
                    && requested != old["metadata"]["managedFields"] =>
            {
                let mut o = old.clone();
                let kept: Vec<Value> = list
                    .iter()
                    .filter(|e| e.as_object().is_some_and(|m| !m.is_empty()))
                    .cloned()
                    .collect();
                o["metadata"]["managedFields"] = json!(kept);
                Cow::Owned(o)
            }
            _ => Cow::Borrowed(old),
        };
        let new = if status {
            let mut merged = old.clone();
            merged["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null() {
                merged.as_object_mut().expect("object").remove("status");
            }
            merged
        } else {
            if rt.status_subresource {
                match old.get("status") {
                    Some(s) => body["status"] = s.clone(),
                    None => {
                        body.as_object_mut().expect("object").remove("status");
                    }
                }
            }
            // System metadata comes from the stored object.
            let meta = body["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.remove("managedFields");
            if let Some(mf) = baseline["metadata"].get("managedFields") {
                meta.insert("managedFields".into(), mf.clone());
            }
            body
        };
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before: BTreeSet<String> = finalizers(old).into_iter().collect();
            if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
                return Err(ApiError::invalid(&rt.kind, &rt.group, &name, &[FieldError::forbidden(
                    "metadata.finalizers",
                    format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}", go_quote(&added)),
                )]));
            }
        }
        let (mut object, warnings) = self.admit(rt, Some(old), new, opts)?;
        if rt.generation && !status && generation_relevant_change(rt, &object, old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(g);
        }
        let scope = if status {
            Scope::Status
        } else {
            main_scope(rt)
        };
        match applied_fields {
            Some(applied) => object["metadata"]["managedFields"] = applied,
            None => {
                let (api_version, now) = (rt.api_version(), now_rfc3339());
                apply::record_update(
                    Some(&baseline),
                    &mut object,
                    &writer(rt, &opts.field_manager, &api_version, scope, &now),
                )
            }
        }
        // A write that changes nothing (managedFields timestamps aside) is a no-op.
        if same_content(&object, old) && same_ownership(old, &object) {
            return Ok(Written {
                object: served_shared(rt, stored),
                change: None,
                warnings,
                created: false,
            });
        }
        let (object, change) = self.persist(rt, object, opts.dry_run, Some(old))?;
        Ok(Written {
            object,
            change,
            warnings,
            created: false,
        })
    }

    /// PATCH of every kind; server-side apply creates the object when it is missing.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let current = self.store.shared(&rt.store_key(), ns, name);
        if kind == PatchType::Apply {
            return self.server_side_apply(rt, ns, name, current, body, status, opts);
        }
        let current = current.ok_or_else(|| ApiError::not_found(target(rt, name)))?;
        let base = served_cow(rt, &current);
        let patched = match kind {
            PatchType::Json => patch::json_patch(&base, body)?,
            PatchType::Merge => patch::merge_patch(&base, body)?,
            PatchType::Strategic => {
                if rt.is_custom() {
                    return Err(ApiError::unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                patch::strategic_merge_patch(&base, body)?
            }
            PatchType::Apply => unreachable!("handled above"),
        };
        let rv = meta_str(&patched, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&current, "resourceVersion") {
            return Err(ApiError::stale(target(rt, name)));
        }
        self.write_over(rt, &current, patched, status, opts, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn server_side_apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: Option<Arc<Value>>,
        body: &[u8],
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if opts.field_manager.is_empty() {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        let mut applied: Value = serde_json::from_slice(body)
            .or_else(|_| serde_saphyr::from_slice::<Value>(body))
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        check_type(rt, &mut applied)?;
        let applied_name = meta_str(&applied, "name");
        if applied_name.is_empty() {
            applied["metadata"]["name"] = json!(name);
        } else if applied_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({applied_name}) does not match the name on the URL ({name})"
            )));
        }
        set_namespace(rt, ns, &mut applied)?;
        let scope = if status {
            Scope::Status
        } else {
            main_scope(rt)
        };
        let now = now_rfc3339();
        match current {
            None => {
                if status {
                    return Err(ApiError::not_found(target(rt, name)));
                }
                let api_version = rt.api_version();
                let w = writer(rt, &opts.field_manager, &api_version, scope, &now);
                let mut merged = apply::apply(None, &applied, opts.force, &w)?;
                // Creation through apply: the applier owns the fields it sent.
                let managed = merged["metadata"]["managedFields"].take();
                self.create_owned(rt, ns, merged, opts, Some(managed))
            }
            Some(live) => {
                let rv = meta_str(&applied, "resourceVersion");
                if !rv.is_empty() && rv != meta_str(&live, "resourceVersion") {
                    return Err(ApiError::stale(target(rt, name)));
                }
                let api_version = rt.api_version();
                let w = writer(rt, &opts.field_manager, &api_version, scope, &now);
                let mut merged =
                    apply::apply(Some(&served_cow(rt, &live)), &applied, opts.force, &w)?;
                let managed = merged["metadata"]["managedFields"].take();
                self.write_over(rt, &live, merged, status, opts, Some(managed))
            }
        }
    }

    /// Defaults and validation for a new version of an object (`old` on update).
    fn admit(
        &mut self,
        rt: &ResourceType,
        old: Option<&Value>,
        mut object: Value,
        opts: &WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let name = meta_str(&object, "name").to_string();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if old.is_none() {
            errors.extend(validate_name(rt, &name));
        }
        errors.extend(validate_metadata(&object));
        if let Some(crd) = &rt.crd {
            if let Some(schema_v) = &crd.schema {
                let pruned = schema::prune(schema_v, &mut object);
                if !pruned.is_empty() {
                    if opts.strict {
                        let list: Vec<String> = pruned
                            .iter()
                            .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
                            .collect();
                        return Err(ApiError::bad_request(format!(
                            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                            rt.kind, rt.version, rt.kind, list.join(", ")
                        )));
                    }
                    warnings.extend(
                        pruned
                            .iter()
                            .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.'))),
                    );
                }
                schema::apply_defaults(schema_v, &mut object);
                errors.extend(schema::validate(schema_v, &object, old));
                let old_served = old
                    .filter(|_| schema::has_cel_rules(crd))
                    .map(|o| served_cow(rt, o));
                errors.extend(schema::validate_cel(crd, &object, old_served.as_deref()));
            }
        } else {
            builtin_admission(rt, old, &mut object, &mut errors);
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &rt.group, &name, &errors));
        }
        if rt.is_events_v1() {
            object = super::convert::event_to_core(object);
            object["apiVersion"] = json!("v1");
        }
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            let types = crd_resource_types(&object).map_err(|e| crd_invalid(&object, &e))?;
            if !opts.dry_run {
                self.registry.register_crd(types);
            }
            mark_crd_established(&mut object);
        }
        Ok((object, warnings))
    }

    /// Store the object (unless dry-run) and react to it: removal once the last finalizer is
    /// gone, namespace defaults, the Deployment loop.
    fn persist(
        &mut self,
        rt: &ResourceType,
        object: Value,
        dry_run: bool,
        old: Option<&Value>,
    ) -> Result<(Arc<Value>, Option<Arc<Change>>), ApiError> {
        if dry_run {
            return Ok((Arc::new(served_owned(rt, object)), None));
        }
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        if deleting && finalizers(&object).is_empty() && rt.kind != "Namespace" {
            let ns = meta_str(&object, "namespace").to_string();
            let name = meta_str(&object, "name").to_string();
            self.store.put(&rt.store_key(), object);
            let removed = self
                .store
                .remove(&rt.store_key(), &ns, &name)
                .expect("just stored");
            self.after_removal(rt, &removed);
            return Ok((served_shared(rt, &removed), None));
        }
        let change = self.store.put_change(&rt.store_key(), object);
        let stored = change.object.clone();
        if old.is_none() && rt.kind == "Namespace" && rt.group.is_empty() {
            let ns = meta_str(&stored, "name").to_string();
            self.namespace_defaults(&ns);
        }
        let change = in_served_form(rt, &stored).then_some(change);
        Ok((served_shared(rt, &stored), change))
    }

    /// What the service-account controller adds to every new namespace.
    fn namespace_defaults(&mut self, ns: &str) {
        let Some(sa) = self.registry.find("", "v1", "serviceaccounts") else {
            return;
        };
        let opts = WriteOptions {
            field_manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        let _ = self.create(&sa, ns, body, &opts);
    }

    // ----- deletion -----

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let current = self
            .store
            .shared(&rt.store_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(target(rt, name)))?;
        let uid = meta_str(&current, "uid").to_string();
        if let Some(p) = &opts.precondition_uid {
            if *p != uid {
                return Err(ApiError::conflict(
                    target(rt, name),
                    &format!(
                        "Precondition failed: UID in precondition: {p}, UID in object meta: {uid}"
                    ),
                ));
            }
        }
        if let Some(p) = &opts.precondition_rv {
            let rv = meta_str(&current, "resourceVersion");
            if p != rv {
                return Err(ApiError::conflict(target(rt, name), &format!(
                    "Precondition failed: ResourceVersion in precondition: {p}, ResourceVersion in meta: {rv}"
                )));
            }
        }
        if opts.dry_run {
            return Ok(served(rt, &current));
        }
        if !current["metadata"]["deletionTimestamp"].is_null() {
            return Ok(served(rt, &current));
        }
        match opts.propagation.as_deref() {
            Some("Orphan") => self.orphan_dependents(&uid),
            Some("Foreground") => self.delete_dependents(&uid),
            _ => {}
        }
        if rt.kind == "Namespace" && rt.group.is_empty() {
            return Ok(self.terminate_namespace(rt, Arc::unwrap_or_clone(current)));
        }
        if !finalizers(&current).is_empty() {
            let mut marked = Arc::unwrap_or_clone(current);
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if let Some(g) = marked["metadata"]["generation"].as_i64().filter(|g| *g > 0) {
                marked["metadata"]["generation"] = json!(g + 1);
            }
            return Ok(served(rt, &self.store.put(&rt.store_key(), marked)));
        }
        let removed = self
            .store
            .remove(&rt.store_key(), ns, name)
            .expect("present");
        self.after_removal(rt, &removed);
        if rt.is_custom() {
            Ok(served(rt, &removed))
        } else {
            let mut details = json!({"name": name, "kind": rt.plural, "uid": uid});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            )
        }
    }

    fn terminate_namespace(&mut self, rt: &ResourceType, current: Value) -> Value {
        let ns = meta_str(&current, "name").to_string();
        let mut marked = current;
        marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        marked["status"]["phase"] = json!("Terminating");
        let stored = self.store.put(&rt.store_key(), marked);
        for (key, name) in self.store.in_namespace(&ns) {
            if let Some(t) = self.registry.by_store_key(&key) {
                let _ = self.delete(&t, &ns, &name, &DeleteOptions::default());
            }
        }
        self.finish_namespace(&ns);
        served(rt, &stored)
    }

    /// Remove a terminating namespace once it is empty.
    fn finish_namespace(&mut self, ns: &str) {
        let key: StoreKey = (String::new(), "namespaces".into());
        let terminating = self
            .store
            .get(&key, "", ns)
            .is_some_and(|n| !n["metadata"]["deletionTimestamp"].is_null());
        let empty = self.store.in_namespace(ns).is_empty();
        if terminating && empty {
            if let Some(removed) = self.store.remove(&key, "", ns) {
                let rt = self
                    .registry
                    .by_store_key(&key)
                    .expect("namespaces are built in");
                self.after_removal(&rt, &removed);
            }
        }
    }

    fn orphan_dependents(&mut self, owner_uid: &str) {
        for (key, _, mut dependent) in self.dependents(owner_uid) {
            if let Some(refs) = dependent["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != owner_uid);
            }
            self.store.put(&key, dependent);
        }
    }

    fn delete_dependents(&mut self, owner_uid: &str) {
        for (key, (ns, name), _) in self.dependents(owner_uid) {
            if let Some(t) = self.registry.by_store_key(&key) {
                let _ = self.delete(&t, &ns, &name, &DeleteOptions::default());
            }
        }
    }

    fn dependents(&self, owner_uid: &str) -> Vec<(StoreKey, (String, String), Value)> {
        self.store.dependents(owner_uid)
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.store.uid_exists(uid)
    }

    /// Garbage collection (background propagation) and bookkeeping after an object is gone.
    fn after_removal(&mut self, rt: &ResourceType, removed: &Value) {
        let uid = meta_str(removed, "uid").to_string();
        for (key, (ns, name), dependent) in self.dependents(&uid) {
            let other_owner_alive = dependent["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != uid.as_str())
                .any(|r| self.uid_exists(r["uid"].as_str().unwrap_or_default()));
            if other_owner_alive {
                let mut o = dependent;
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid.as_str());
                }
                self.store.put(&key, o);
            } else if let Some(t) = self.registry.by_store_key(&key) {
                let _ = self.delete(&t, &ns, &name, &DeleteOptions::default());
            }
        }
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            let key: StoreKey = (
                removed["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                removed["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let objects: Vec<(String, String)> = self
                .store
                .list(&key, "")
                .iter()
                .map(|o| {
                    (
                        meta_str(o, "namespace").to_string(),
                        meta_str(o, "name").to_string(),
                    )
                })
                .collect();
            for (ns, name) in objects {
                if let Some(gone) = self.store.remove(&key, &ns, &name) {
                    if let Some(t) = self.registry.by_store_key(&key) {
                        self.after_removal(&t, &gone);
                    }
                }
            }
            self.registry.unregister(&key);
        }
        if rt.kind == "StatefulSet" {
            self.workloads.rollouts.remove(&(
                meta_str(removed, "namespace").to_string(),
                meta_str(removed, "name").to_string(),
            ));
        }
        if rt.kind == "Deployment" {
            self.deployment_due.remove(&(
                meta_str(removed, "namespace").to_string(),
                meta_str(removed, "name").to_string(),
            ));
        }
        let ns = meta_str(removed, "namespace").to_string();
        if !ns.is_empty() {
            self.finish_namespace(&ns);
        }
    }

    // ----- the Deployment loop -----

    /// One pass of the simulated deployment controller; returns true when it wrote anything.
    pub fn reconcile_deployments(&mut self, now: Instant) -> bool {
        let Some(rt) = self.registry.find("apps", "v1", "deployments") else {
            return false;
        };
        let deployments: Vec<Value> = self
            .store
            .list(&rt.store_key(), "")
            .into_iter()
            .cloned()
            .collect();
        let mut wrote = false;
        for d in deployments {
            if !d["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let key = (
                meta_str(&d, "namespace").to_string(),
                meta_str(&d, "name").to_string(),
            );
            let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let observed = d["status"]["observedGeneration"].as_i64();
            let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
            let ready_now = available == replicas
                && d["status"]["readyReplicas"].as_i64().unwrap_or(0) == replicas
                && d["status"]["replicas"].as_i64() == Some(replicas);
            let status = if observed != Some(generation) {
                self.deployment_due
                    .insert(key.clone(), now + self.ready_delay);
                Some(deployment_status(&d, generation, replicas, false))
            } else if self.held.contains(&key) {
                (available != 0).then(|| deployment_status(&d, generation, replicas, false))
            } else if !ready_now {
                let due = *self
                    .deployment_due
                    .entry(key.clone())
                    .or_insert(now + self.ready_delay);
                (now >= due).then(|| deployment_status(&d, generation, replicas, true))
            } else {
                None
            };
            if let Some(status) = status {
                let mut updated = d.clone();
                updated["status"] = status;
                let now = now_rfc3339();
                apply::record_update(
                    Some(&d),
                    &mut updated,
                    &writer(
                        &rt,
                        "kube-controller-manager",
                        "apps/v1",
                        Scope::Status,
                        &now,
                    ),
                );
                self.store.put(&rt.store_key(), updated);
                wrote = true;
            }
        }
        wrote
    }
}

/// A Kubernetes quantity (`10`, `500m`, `2Gi`, `1G`, `1e3`) as a number.
fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn format_quantity(n: f64) -> String {
    let gi = 1024.0_f64.powi(3);
    if n >= gi && (n / gi).fract() == 0.0 {
        format!("{}Gi", n / gi)
    } else {
        format!("{n}")
    }
}

/// The same managers own the same fields, the times of their entries aside.
fn same_ownership(old: &Value, new: &Value) -> bool {
    let (old, new) = (
        &old["metadata"]["managedFields"],
        &new["metadata"]["managedFields"],
    );
    match (old.as_array(), new.as_array()) {
        (Some(old), Some(new)) => {
            old.len() == new.len()
                && old
                    .iter()
                    .zip(new)
                    .all(|(a, b)| same_except(a, b, &["time"]))
        }
        _ => old == new,
    }
}

fn deployment_status(d: &Value, generation: i64, replicas: i64, ready: bool) -> Value {
    let now = now_rfc3339();
    let rs = format!(
        "{}-{}",
        meta_str(d, "name"),
        &meta_str(d, "uid").replace('-', "")[..10.min(meta_str(d, "uid").replace('-', "").len())]
    );
    let condition = |kind: &str, status: &str, reason: &str, message: String| json!({"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message});
    if ready || replicas == 0 {
        json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into()),
                condition("Progressing", "True", "NewReplicaSetAvailable", format!("ReplicaSet \"{rs}\" has successfully progressed.")),
            ],
        })
    } else {
        json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "unavailableReplicas": replicas,
            "conditions": [
                condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into()),
                condition("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing.")),
            ],
        })
    }
}

fn writer<'a>(
    rt: &'a ResourceType,
    manager: &'a str,
    api_version: &'a str,
    scope: Scope,
    now: &'a str,
) -> apply::Writer<'a> {
    apply::Writer {
        manager,
        api_version,
        scope,
        lists: rt,
        now,
    }
}

fn main_scope(rt: &ResourceType) -> Scope {
    Scope::Main {
        exclude_status: rt.status_subresource,
    }
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Is the object already as this resource serves it (a stored object written through the
/// same version)?
pub fn in_served_form(rt: &ResourceType, object: &Value) -> bool {
    if rt.is_events_v1() || object["kind"].as_str() != Some(rt.kind.as_str()) {
        return false;
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    if rt.group.is_empty() {
        api_version == rt.version
    } else {
        api_version
            .strip_prefix(rt.group.as_str())
            .and_then(|v| v.strip_prefix('/'))
            == Some(rt.version.as_str())
    }
}

/// The object as served, borrowed when it already is in that form (no copy).
pub fn served_cow<'a>(rt: &ResourceType, object: &'a Value) -> Cow<'a, Value> {
    if in_served_form(rt, object) {
        Cow::Borrowed(object)
    } else {
        Cow::Owned(served(rt, object))
    }
}

/// The stored object as served, shared with the store when it already is in that form.
pub fn served_shared(rt: &ResourceType, object: &Arc<Value>) -> Arc<Value> {
    if in_served_form(rt, object) {
        object.clone()
    } else {
        Arc::new(served(rt, object))
    }
}

/// [`served`] of an object the caller owns, converted in place.
fn served_owned(rt: &ResourceType, object: Value) -> Value {
    let mut o = if rt.is_events_v1() {
        super::convert::event_to_v1(object)
    } else {
        object
    };
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

/// The object as served at this resource's version.
pub fn served(rt: &ResourceType, object: &Value) -> Value {
    let mut o = if rt.is_events_v1() {
        super::convert::event_to_v1(object.clone())
    } else {
        object.clone()
    };
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

/// apiVersion/kind in a body must name this resource; missing ones are filled in.
fn check_type(rt: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let expected = rt.api_version();
    match body["apiVersion"].as_str() {
        Some(v) if !v.is_empty() && v != expected => {
            let (g, _) = super::resources::split_api_version(v);
            if g != rt.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected})"
                )));
            }
        }
        _ => {}
    }
    match body["kind"].as_str() {
        Some(k) if !k.is_empty() && k != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        _ => {}
    }
    body["apiVersion"] = json!(expected);
    body["kind"] = json!(rt.kind);
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    Ok(())
}

fn set_namespace(rt: &ResourceType, ns: &str, body: &mut Value) -> Result<(), ApiError> {
    let given = meta_str(body, "namespace").to_string();
    if rt.namespaced {
        if !given.is_empty() && given != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        body["metadata"]["namespace"] = json!(ns);
    } else if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    Ok(())
}

fn mark_crd_established(crd: &mut Value) {
    let now = now_rfc3339();
    let names = crd["spec"]["names"].clone();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .collect();
    let mut accepted = names;
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!(
            "{}List",
            crd["spec"]["names"]["kind"].as_str().unwrap_or_default()
        ));
    }
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "acceptedNames": accepted,
        "storedVersions": storage,
    });
}
