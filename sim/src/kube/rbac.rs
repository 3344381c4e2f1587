//! Who is asking, and may they: bearer tokens map to users (the harness's admin token is in
//! `system:masters`; service-account tokens are handed out by the simulator), the admin may
//! impersonate (`kubectl --as`), and everyone else is authorized by the RBAC objects stored
//! in the cluster (Roles, ClusterRoles and their bindings), as the real RBAC authorizer does.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::ApiError;
use super::store::Store;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> User {
        User {
            name: "kube-sim-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    pub fn service_account(namespace: &str, name: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Tokens the server accepts.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: BTreeMap<String, User>,
}

impl Tokens {
    pub fn new(admin_token: &str) -> Tokens {
        let mut by_token = BTreeMap::new();
        by_token.insert(admin_token.to_string(), User::admin());
        Tokens { by_token }
    }

    /// A token for a service account (the same one each time it is asked for).
    pub fn service_account_token(&mut self, namespace: &str, name: &str) -> String {
        let user = User::service_account(namespace, name);
        if let Some((t, _)) = self.by_token.iter().find(|(_, u)| **u == user) {
            return t.clone();
        }
        let token = format!("kube-sim-sa-{}", uuid::Uuid::new_v4().simple());
        self.by_token.insert(token.clone(), user);
        token
    }

    pub fn user(&self, token: &str) -> Option<&User> {
        self.by_token.get(token)
    }
}

/// Apply `Impersonate-User`/`Impersonate-Group`: only masters may impersonate here.
pub fn impersonate(
    user: User,
    as_user: Option<&str>,
    as_groups: Vec<String>,
) -> Result<User, ApiError> {
    let Some(name) = as_user else {
        return Ok(user);
    };
    if !user.is_master() {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("users \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope", user.name),
        ));
    }
    let mut groups = as_groups;
    groups.push("system:authenticated".into());
    if let Some(rest) = name.strip_prefix("system:serviceaccount:") {
        if let Some((ns, _)) = rest.split_once(':') {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
    }
    Ok(User {
        name: name.to_string(),
        groups,
    })
}

/// What a request wants to do.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

fn has(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let resource_ok = rule["resources"].as_array().is_some_and(|list| {
        list.iter().any(|r| {
            let r = r.as_str().unwrap_or_default();
            match a.subresource {
                None => r == "*" || r == a.resource,
                Some(sub) => {
                    r == "*" || r == format!("{}/{sub}", a.resource) || r == format!("*/{sub}")
                }
            }
        })
    });
    let names = rule["resourceNames"].as_array().filter(|n| !n.is_empty());
    let name_ok = match names {
        None => true,
        Some(names) => a.name.is_some_and(|n| names.iter().any(|x| x == n)),
    };
    has(&rule["verbs"], a.verb) && has(&rule["apiGroups"], a.group) && resource_ok && name_ok
}

fn subject_matches(subject: &Value, user: &User, binding_namespace: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rbac_key(plural: &str) -> (String, String) {
    ("rbac.authorization.k8s.io".into(), plural.into())
}

/// Is the request allowed? Masters always are; others need a matching rule through a
/// ClusterRoleBinding, or a RoleBinding in the request's namespace.
pub fn allowed(store: &Store, user: &User, a: &Attributes) -> bool {
    // The bootstrap policy (system:basic-user): anyone may ask what they may do.
    if user.is_master()
        || (a.group == "authorization.k8s.io" && a.resource == "selfsubjectaccessreviews")
    {
        return true;
    }
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let (plural, ns) = if kind == "ClusterRole" {
            ("clusterroles", "")
        } else {
            ("roles", ns)
        };
        store
            .get(&rbac_key(plural), ns, name)
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    let grants = |binding: &Value, ns: &str| -> bool {
        let bound = binding["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns)));
        bound
            && role_rules(
                binding["roleRef"]["kind"].as_str().unwrap_or_default(),
                binding["roleRef"]["name"].as_str().unwrap_or_default(),
                ns,
            )
            .iter()
            .any(|r| rule_allows(r, a))
    };
    let cluster = store
        .list(&rbac_key("clusterrolebindings"), "")
        .into_iter()
        .any(|b| grants(b, ""));
    cluster
        || (!a.namespace.is_empty()
            && store
                .list(&rbac_key("rolebindings"), a.namespace)
                .into_iter()
                .any(|b| grants(b, a.namespace)))
}

/// The RBAC API's own rule for writing a RoleBinding or ClusterRoleBinding (the real server's
/// escalation check): the writer must be allowed to `bind` the role it refers to (in the
/// binding's namespace), or already hold every permission that role grants there. Without it,
/// anyone who may create bindings could grant themselves anything.
pub fn check_binding(
    store: &Store,
    user: &User,
    binding: (&str, &str, &str),
    role_ref: &Value,
) -> Result<(), ApiError> {
    let (plural, namespace, name) = binding;
    if user.is_master() {
        return Ok(());
    }
    let role_kind = role_ref["kind"].as_str().unwrap_or_default();
    let role_name = role_ref["name"].as_str().unwrap_or_default();
    let role_plural = if role_kind == "ClusterRole" {
        "clusterroles"
    } else {
        "roles"
    };
    let bind = Attributes {
        verb: "bind",
        group: "rbac.authorization.k8s.io",
        resource: role_plural,
        subresource: None,
        namespace,
        name: Some(role_name),
    };
    if allowed(store, user, &bind) {
        return Ok(());
    }
    let role_ns = if role_kind == "ClusterRole" {
        ""
    } else {
        namespace
    };
    let rules = store
        .get(&rbac_key(role_plural), role_ns, role_name)
        .and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    };
    let mut missing = Vec::new();
    for rule in &rules {
        let names = strings(&rule["resourceNames"]);
        let names: Vec<Option<&str>> = if names.is_empty() {
            vec![None]
        } else {
            names.iter().map(|n| Some(n.as_str())).collect()
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((r, sub)) => (r.to_string(), Some(sub.to_string())),
                    None => (resource.clone(), None),
                };
                for verb in strings(&rule["verbs"]) {
                    for n in &names {
                        let a = Attributes {
                            verb: &verb,
                            group: &group,
                            resource: &resource,
                            subresource: subresource.as_deref(),
                            namespace,
                            name: *n,
                        };
                        if !allowed(store, user, &a) {
                            let full = match &subresource {
                                Some(sub) => format!("{resource}/{sub}"),
                                None => resource.clone(),
                            };
                            let named = n
                                .map(|n| format!(", ResourceNames:[{n:?}]"))
                                .unwrap_or_default();
                            missing.push(format!(
                                "{{APIGroups:[{group:?}], Resources:[{full:?}]{named}, Verbs:[{verb:?}]}}"
                            ));
                        }
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let groups = user
        .groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{plural}.rbac.authorization.k8s.io {name:?} is forbidden: user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            missing.join("\n")
        ),
    );
    e.details = Some(json!({"name": name, "group": "rbac.authorization.k8s.io", "kind": plural}));
    Err(e)
}

/// The real server's 403 for a denied request.
pub fn forbidden(user: &User, a: &Attributes) -> ApiError {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let qualified = if a.group.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = match a.name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, a.verb, a.group
        ),
    );
    let mut details = json!({"kind": a.resource});
    if let Some(n) = a.name {
        details["name"] = json!(n);
    }
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    e.details = Some(details);
    e
}

/// A SelfSubjectAccessReview or SubjectAccessReview, answered (never stored).
pub fn review(store: &Store, requester: &User, kind: &str, mut body: Value) -> Value {
    let user = if kind == "SubjectAccessReview" {
        User {
            name: body["spec"]["user"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            groups: body["spec"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
        }
    } else {
        requester.clone()
    };
    let attrs = &body["spec"]["resourceAttributes"];
    let allowed = if attrs.is_object() {
        let s = |k: &str| attrs[k].as_str().unwrap_or_default().to_string();
        let (verb, group, resource, sub, ns, name) = (
            s("verb"),
            s("group"),
            s("resource"),
            s("subresource"),
            s("namespace"),
            s("name"),
        );
        let a = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            subresource: Some(sub.as_str()).filter(|s| !s.is_empty()),
            namespace: &ns,
            name: Some(name.as_str()).filter(|n| !n.is_empty()),
        };
        allowed(store, &user, &a)
    } else {
        // Non-resource URLs (discovery, /healthz): open to every authenticated user.
        true
    };
    // Like the RBAC authorizer, a denial carries no reason (kubectl prints a bare "no").
    body["status"] = json!({"allowed": allowed});
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(verb: &'a str, resource: &'a str, namespace: &'a str) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            subresource: None,
            namespace,
            name: None,
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let rule = json!({"apiGroups": [""], "resources": ["configmaps", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &attrs("list", "configmaps", "a")));
        assert!(!rule_allows(&rule, &attrs("delete", "configmaps", "a")));
        let mut sub = attrs("get", "pods", "a");
        sub.subresource = Some("log");
        assert!(rule_allows(&rule, &sub));
        let named =
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["x"]});
        assert!(!rule_allows(&named, &attrs("list", "secrets", "a")));
        let mut get_x = attrs("get", "secrets", "a");
        get_x.name = Some("x");
        assert!(rule_allows(&named, &get_x));
    }

    #[test]
    fn a_binding_needs_bind_on_its_role_or_every_permission_it_grants() {
        let mut store = Store::new(tokio::sync::broadcast::channel(16).0, 1);
        store.put(
            &rbac_key("clusterroles"),
            json!({"metadata": {"name": "tenant"}, "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        );
        store.put(
            &rbac_key("clusterroles"),
            json!({"metadata": {"name": "binder"}, "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                 "verbs": ["bind"], "resourceNames": ["tenant"]}]}),
        );
        let user = User::service_account("ops", "op");
        let role_ref = json!({"kind": "ClusterRole", "name": "tenant"});
        let e = check_binding(&store, &user, ("rolebindings", "t1", "b"), &role_ref).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message
                .contains("is attempting to grant RBAC permissions not currently held")
                && e.message
                    .contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"),
            "{}",
            e.message
        );
        store.put(
            &rbac_key("clusterrolebindings"),
            json!({"metadata": {"name": "binder"},
                   "roleRef": {"kind": "ClusterRole", "name": "binder"},
                   "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]}),
        );
        check_binding(&store, &user, ("rolebindings", "t1", "b"), &role_ref).unwrap();
        // `bind` names one role: another is still checked permission by permission.
        store.put(
            &rbac_key("clusterroles"),
            json!({"metadata": {"name": "admin"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        );
        let admin = json!({"kind": "ClusterRole", "name": "admin"});
        assert!(check_binding(&store, &user, ("rolebindings", "t1", "b"), &admin).is_err());
    }

    #[test]
    fn forbidden_messages_name_user_verb_resource_and_scope() {
        let user = User::service_account("ops", "bot");
        let e = forbidden(&user, &attrs("list", "secrets", "default"));
        assert_eq!(
            e.message,
            "secrets is forbidden: User \"system:serviceaccount:ops:bot\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        );
        let mut a = attrs("patch", "tenants", "");
        a.group = "recording.m365.io";
        a.subresource = Some("status");
        a.name = Some("t");
        assert_eq!(
            forbidden(&user, &a).message,
            "tenants.recording.m365.io \"t\" is forbidden: User \"system:serviceaccount:ops:bot\" cannot patch resource \"tenants/status\" in API group \"recording.m365.io\" at the cluster scope"
        );
    }
}
