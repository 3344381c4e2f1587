//! The simulated Entra directories: tenants with their domains, the applications registered
//! in them, and per tenant the service principals (enterprise applications),
//! appRoleAssignments (granted application permissions) and oauth2PermissionGrants
//! (granted delegated scopes) that admin consent creates and revocation removes.
//!
//! Everything here is plain data and pure operations; the HTTP layers read and change it
//! under a lock.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::catalog::{self, GRAPH_APP_ID, GRAPH_DISPLAY_NAME};
use super::seed::{parse_instant, AppSeed, NationalCloud, Seed, TenantSeed};
use super::SimError;

#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub name: String,
    pub is_default: bool,
    pub is_initial: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub id: String,
    pub display_name: String,
    pub domains: Vec<Domain>,
    /// The national cloud the tenant lives in, when not the one the simulator plays.
    pub national_cloud: Option<NationalCloud>,
    pub created: DateTime<Utc>,
    pub service_principals: Vec<ServicePrincipal>,
    pub assignments: Vec<AppRoleAssignment>,
    pub grants: Vec<PermissionGrant>,
    /// The tenant's user accounts (see `users.rs`).
    pub users: Vec<super::users::User>,
    /// "Consent to application" records of the directory audit log (see `audit.rs`).
    pub audits: Vec<super::audit::ConsentAudit>,
    /// The organisation's Teams app catalog (see `audit.rs`).
    pub teams_apps: Vec<super::audit::TeamsApp>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub app_owner_tenant: String,
    pub reply_urls: Vec<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    pub principal_id: String,
    pub principal_display_name: String,
    pub resource_id: String,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct PermissionGrant {
    pub id: String,
    pub client_id: String,
    pub resource_id: String,
    /// `None` for an admin's consent for all users (`consentType: AllPrincipals`); the user's
    /// object id for a user's own consent (`consentType: Principal`).
    pub principal_id: Option<String>,
    /// Space-separated delegated scopes.
    pub scope: String,
}

impl PermissionGrant {
    /// `AllPrincipals` or `Principal`, as Graph names the two kinds.
    pub fn consent_type(&self) -> &'static str {
        match self.principal_id {
            None => "AllPrincipals",
            Some(_) => "Principal",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Secret {
    pub value: String,
    pub key_id: String,
    pub display_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Application {
    pub object_id: String,
    pub app_id: String,
    pub display_name: String,
    pub home_tenant: String,
    pub created: DateTime<Utc>,
    pub secrets: Vec<Secret>,
    pub redirect_uris: Vec<String>,
    pub application_permissions: Vec<String>,
    pub delegated_scopes: Vec<String>,
    /// Object ids of the users of the home tenant who own the registration (who registered
    /// it, or were made owners since).
    pub owners: Vec<String>,
}

/// What a consent grants: `None` means everything the app requires.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsentScope {
    pub application_permissions: Option<Vec<String>>,
    pub delegated_scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Directory {
    pub tenants: BTreeMap<String, Tenant>,
    pub apps: BTreeMap<String, Application>,
}

pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Ids of appRoleAssignments and oauth2PermissionGrants are opaque base64url strings in
/// Graph, not GUIDs.
fn new_opaque_id() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..32])
}

pub(crate) fn is_guid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok() && text.len() == 36
}

impl Tenant {
    pub fn default_domain(&self) -> &str {
        self.domains
            .iter()
            .find(|d| d.is_default)
            .map(|d| d.name.as_str())
            .unwrap_or(self.id.as_str())
    }

    pub fn graph_sp_id(&self) -> &str {
        self.sp_by_app_id(GRAPH_APP_ID)
            .map(|sp| sp.id.as_str())
            .expect("every tenant has the Microsoft Graph service principal")
    }

    pub fn sp_by_app_id(&self, app_id: &str) -> Option<&ServicePrincipal> {
        self.service_principals
            .iter()
            .find(|sp| sp.app_id.eq_ignore_ascii_case(app_id))
    }

    pub fn sp_by_id(&self, id: &str) -> Option<&ServicePrincipal> {
        self.service_principals
            .iter()
            .find(|sp| sp.id.eq_ignore_ascii_case(id))
    }

    /// Names of the Graph application permissions assigned to service principal `sp_id`
    /// no later than `cutoff`.
    pub fn granted_roles(&self, sp_id: &str, cutoff: DateTime<Utc>) -> Vec<String> {
        let graph = self.graph_sp_id();
        self.assignments
            .iter()
            .filter(|a| a.principal_id == sp_id && a.resource_id == graph && a.created <= cutoff)
            .filter_map(|a| catalog::app_role_by_id(&a.app_role_id))
            .map(|p| p.value.to_string())
            .collect()
    }

    /// Delegated scopes granted to service principal `sp_id` for all users.
    #[cfg(test)]
    pub fn granted_scopes(&self, sp_id: &str) -> Vec<String> {
        self.grants
            .iter()
            .filter(|g| g.client_id == sp_id && g.principal_id.is_none())
            .flat_map(|g| g.scope.split_whitespace().map(str::to_string))
            .collect()
    }
}

impl Directory {
    /// Builds the directory a seed describes, validating every reference in it.
    pub fn from_seed(seed: &Seed, now: DateTime<Utc>) -> Result<Directory, SimError> {
        let mut dir = Directory::default();
        for t in &seed.tenants {
            dir.add_tenant(t, now)?;
        }
        for a in &seed.apps {
            dir.add_app(a, now)?;
        }
        for u in &seed.users {
            dir.add_user(u)?;
        }
        for c in &seed.consents {
            if let Some(user) = &c.user {
                if c.application_permissions.is_some() || c.delegated_scopes.is_some() {
                    return Err(SimError::Seed(format!(
                        "consent of app `{}` by user `{user}`: a user consents to the app's delegated scopes as a whole; drop application_permissions and delegated_scopes",
                        c.app_id
                    )));
                }
                dir.user_consent(&c.tenant, &c.app_id, user, now)
                    .map_err(|e| SimError::Seed(e.to_string()))?;
                continue;
            }
            let scope = ConsentScope {
                application_permissions: c.application_permissions.clone(),
                delegated_scopes: c.delegated_scopes.clone(),
            };
            dir.grant(&c.tenant, &c.app_id, &scope, now)?;
        }
        Ok(dir)
    }

    pub fn add_tenant(&mut self, seed: &TenantSeed, now: DateTime<Utc>) -> Result<(), SimError> {
        if !is_guid(&seed.id) {
            return Err(SimError::Seed(format!(
                "tenant id `{}` is not a GUID",
                seed.id
            )));
        }
        let id = seed.id.to_ascii_lowercase();
        if self.tenants.contains_key(&id) {
            return Err(SimError::Seed(format!("tenant `{id}` is declared twice")));
        }
        for d in &seed.domains {
            if let Some(other) = self.resolve_tenant(d) {
                return Err(SimError::Seed(format!(
                    "domain `{d}` already belongs to tenant `{}`",
                    other.id
                )));
            }
        }
        let first_label = seed
            .domains
            .first()
            .and_then(|d| d.split('.').next())
            .unwrap_or("tenant")
            .to_string();
        let display_name = seed
            .display_name
            .clone()
            .unwrap_or_else(|| first_label.clone());
        let mut names: Vec<String> = seed
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if !names.iter().any(|d| d.ends_with(".onmicrosoft.com")) {
            let initial: String = first_label
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            names.push(format!("{initial}.onmicrosoft.com"));
        }
        let initial = names
            .iter()
            .position(|d| d.ends_with(".onmicrosoft.com"))
            .unwrap_or(0);
        let domains = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| Domain {
                name,
                is_default: i == 0,
                is_initial: i == initial,
            })
            .collect();
        let graph_sp = ServicePrincipal {
            id: new_guid(),
            app_id: GRAPH_APP_ID.to_string(),
            display_name: GRAPH_DISPLAY_NAME.to_string(),
            account_enabled: true,
            app_owner_tenant: "f8cdef31-a31e-4b4a-93e4-5f571e91255a".to_string(),
            reply_urls: Vec::new(),
            created: now,
        };
        self.tenants.insert(
            id.clone(),
            Tenant {
                id,
                display_name,
                domains,
                national_cloud: None,
                created: now,
                service_principals: vec![graph_sp],
                assignments: Vec::new(),
                grants: Vec::new(),
                users: Vec::new(),
                audits: Vec::new(),
                teams_apps: Vec::new(),
            },
        );
        Ok(())
    }

    /// Registers an app in its home tenant. As when an app is registered in the Entra
    /// portal, the home tenant gets the app's service principal (with nothing granted).
    pub fn add_app(&mut self, seed: &AppSeed, now: DateTime<Utc>) -> Result<(), SimError> {
        if !is_guid(&seed.app_id) {
            return Err(SimError::Seed(format!(
                "app id `{}` is not a GUID",
                seed.app_id
            )));
        }
        let app_id = seed.app_id.to_ascii_lowercase();
        if self.apps.contains_key(&app_id) {
            return Err(SimError::Seed(format!("app `{app_id}` is declared twice")));
        }
        let home = self
            .resolve_tenant(&seed.home_tenant)
            .ok_or_else(|| {
                SimError::Seed(format!(
                    "app `{}`: home tenant `{}` is not declared",
                    seed.display_name, seed.home_tenant
                ))
            })?
            .id
            .clone();
        for p in &seed.application_permissions {
            if catalog::app_role(p).is_none() {
                return Err(SimError::Seed(format!(
                    "app `{}`: `{p}` is not a Microsoft Graph application permission the simulator knows",
                    seed.display_name
                )));
            }
        }
        for s in &seed.delegated_scopes {
            if catalog::scope(s).is_none() {
                return Err(SimError::Seed(format!(
                    "app `{}`: `{s}` is not a Microsoft Graph delegated permission the simulator knows",
                    seed.display_name
                )));
            }
        }
        let mut secrets = Vec::new();
        for (i, s) in seed.secrets.iter().enumerate() {
            let field = format!("app `{}` secret #{}", seed.display_name, i + 1);
            secrets.push(Secret {
                value: s.value.clone(),
                key_id: s.key_id.clone().unwrap_or_else(new_guid),
                display_name: s.display_name.clone(),
                start: match &s.start_date_time {
                    Some(t) => parse_instant(&format!("{field} start_date_time"), t)?,
                    None => now,
                },
                end: parse_instant(&format!("{field} end_date_time"), &s.end_date_time)?,
            });
        }
        let app = Application {
            object_id: new_guid(),
            app_id: app_id.clone(),
            display_name: seed.display_name.clone(),
            home_tenant: home.clone(),
            created: now,
            secrets,
            redirect_uris: seed.redirect_uris.clone(),
            application_permissions: seed.application_permissions.clone(),
            delegated_scopes: seed.delegated_scopes.clone(),
            owners: Vec::new(),
        };
        let sp = service_principal_for(&app, now);
        self.apps.insert(app_id, app);
        self.tenants
            .get_mut(&home)
            .expect("home tenant resolved above")
            .service_principals
            .push(sp);
        Ok(())
    }

    /// The tenant a path segment names: its id or one of its domains (case-insensitive).
    pub fn resolve_tenant(&self, segment: &str) -> Option<&Tenant> {
        let key = segment.to_ascii_lowercase();
        self.tenants.get(&key).or_else(|| {
            self.tenants
                .values()
                .find(|t| t.domains.iter().any(|d| d.name == key))
        })
    }

    pub fn app(&self, app_id: &str) -> Option<&Application> {
        self.apps.get(&app_id.to_ascii_lowercase())
    }

    fn tenant_mut(&mut self, segment: &str) -> Result<&mut Tenant, SimError> {
        let id = self
            .resolve_tenant(segment)
            .map(|t| t.id.clone())
            .ok_or_else(|| SimError::Harness(format!("unknown tenant `{segment}`")))?;
        Ok(self.tenants.get_mut(&id).expect("resolved above"))
    }

    /// What the admin's acceptance does: the app's service principal in the tenant (created
    /// when missing), one appRoleAssignment per application permission not yet assigned,
    /// and the delegated scopes merged into the AllPrincipals grant. Returns the granted
    /// application permissions and scopes.
    pub fn grant(
        &mut self,
        tenant: &str,
        app_id: &str,
        scope: &ConsentScope,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, Vec<String>), SimError> {
        let app = self
            .app(app_id)
            .cloned()
            .ok_or_else(|| SimError::Harness(format!("unknown app `{app_id}`")))?;
        let app_perms = match &scope.application_permissions {
            Some(list) => list.clone(),
            None => app.application_permissions.clone(),
        };
        let scopes = match &scope.delegated_scopes {
            Some(list) => list.clone(),
            None => app.delegated_scopes.clone(),
        };
        let mut role_ids = Vec::new();
        for p in &app_perms {
            let role = catalog::app_role(p).ok_or_else(|| {
                SimError::Harness(format!(
                    "`{p}` is not a Microsoft Graph application permission the simulator knows"
                ))
            })?;
            role_ids.push(role.id);
        }
        for s in &scopes {
            if catalog::scope(s).is_none() {
                return Err(SimError::Harness(format!(
                    "`{s}` is not a Microsoft Graph delegated permission the simulator knows"
                )));
            }
        }
        let t = self.tenant_mut(tenant)?;
        if t.sp_by_app_id(&app.app_id).is_none() {
            t.service_principals.push(service_principal_for(&app, now));
        }
        let sp = t.sp_by_app_id(&app.app_id).expect("present").clone();
        let graph = t.graph_sp_id().to_string();
        for role_id in role_ids {
            let exists = t
                .assignments
                .iter()
                .any(|a| a.principal_id == sp.id && a.app_role_id == role_id);
            if !exists {
                t.assignments.push(AppRoleAssignment {
                    id: new_opaque_id(),
                    app_role_id: role_id.to_string(),
                    principal_id: sp.id.clone(),
                    principal_display_name: sp.display_name.clone(),
                    resource_id: graph.clone(),
                    created: now,
                });
            }
        }
        if !scopes.is_empty() {
            match t.grants.iter_mut().find(|g| {
                g.client_id == sp.id && g.resource_id == graph && g.principal_id.is_none()
            }) {
                Some(g) => {
                    let mut have: Vec<String> =
                        g.scope.split_whitespace().map(str::to_string).collect();
                    for s in &scopes {
                        if !have.contains(s) {
                            have.push(s.clone());
                        }
                    }
                    g.scope = have.join(" ");
                }
                None => t.grants.push(PermissionGrant {
                    id: new_opaque_id(),
                    client_id: sp.id.clone(),
                    resource_id: graph.clone(),
                    principal_id: None,
                    scope: scopes.join(" "),
                }),
            }
        }
        Ok((app_perms, scopes))
    }

    /// What a user's own consent does (no admin involved): the app's service principal in
    /// the tenant (created when missing) and a `Principal` grant of the app's delegated
    /// scopes for that user alone. No application permission can be consented this way.
    pub fn user_consent(
        &mut self,
        tenant: &str,
        app_id: &str,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SimError> {
        if !is_guid(user_id) {
            return Err(SimError::Harness(format!(
                "user id `{user_id}` is not a GUID"
            )));
        }
        let app = self
            .app(app_id)
            .cloned()
            .ok_or_else(|| SimError::Harness(format!("unknown app `{app_id}`")))?;
        if app.delegated_scopes.is_empty() {
            return Err(SimError::Harness(format!(
                "app `{app_id}` asks for no delegated scope: a user cannot consent to it"
            )));
        }
        let t = self.tenant_mut(tenant)?;
        if t.sp_by_app_id(&app.app_id).is_none() {
            t.service_principals.push(service_principal_for(&app, now));
        }
        let sp = t.sp_by_app_id(&app.app_id).expect("present").id.clone();
        let graph = t.graph_sp_id().to_string();
        let user = user_id.to_ascii_lowercase();
        t.grants
            .retain(|g| !(g.client_id == sp && g.principal_id.as_deref() == Some(&user)));
        t.grants.push(PermissionGrant {
            id: new_opaque_id(),
            client_id: sp,
            resource_id: graph,
            principal_id: Some(user),
            scope: app.delegated_scopes.join(" "),
        });
        Ok(())
    }

    /// Deleting the enterprise application: the service principal goes, and with it every
    /// assignment and grant it held. Returns whether there was one.
    pub fn revoke_consent(&mut self, tenant: &str, app_id: &str) -> Result<bool, SimError> {
        let t = self.tenant_mut(tenant)?;
        let Some(sp_id) = t.sp_by_app_id(app_id).map(|sp| sp.id.clone()) else {
            return Ok(false);
        };
        t.service_principals.retain(|sp| sp.id != sp_id);
        t.assignments.retain(|a| a.principal_id != sp_id);
        t.grants.retain(|g| g.client_id != sp_id);
        Ok(true)
    }

    /// Removes one application permission (its appRoleAssignment) or one delegated scope
    /// (from the grant; the grant goes when it is left empty). Returns whether anything was
    /// removed.
    pub fn revoke_permission(
        &mut self,
        tenant: &str,
        app_id: &str,
        permission: &str,
    ) -> Result<bool, SimError> {
        let t = self.tenant_mut(tenant)?;
        let Some(sp_id) = t.sp_by_app_id(app_id).map(|sp| sp.id.clone()) else {
            return Ok(false);
        };
        if let Some(role) = catalog::app_role(permission) {
            let before = t.assignments.len();
            t.assignments
                .retain(|a| !(a.principal_id == sp_id && a.app_role_id == role.id));
            if t.assignments.len() != before {
                return Ok(true);
            }
        }
        let mut removed = false;
        for g in t.grants.iter_mut().filter(|g| g.client_id == sp_id) {
            let kept: Vec<&str> = g
                .scope
                .split_whitespace()
                .filter(|s| *s != permission)
                .collect();
            if kept.len() != g.scope.split_whitespace().count() {
                removed = true;
                g.scope = kept.join(" ");
            }
        }
        t.grants.retain(|g| !g.scope.trim().is_empty());
        Ok(removed)
    }

    /// Moves a tenant to another national cloud.
    pub fn set_national_cloud(
        &mut self,
        tenant: &str,
        cloud: NationalCloud,
    ) -> Result<(), SimError> {
        self.tenant_mut(tenant)?.national_cloud = Some(cloud);
        Ok(())
    }

    pub fn set_sp_enabled(
        &mut self,
        tenant: &str,
        app_id: &str,
        enabled: bool,
    ) -> Result<bool, SimError> {
        let t = self.tenant_mut(tenant)?;
        match t
            .service_principals
            .iter_mut()
            .find(|sp| sp.app_id.eq_ignore_ascii_case(app_id))
        {
            Some(sp) => {
                sp.account_enabled = enabled;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn service_principal_for(app: &Application, now: DateTime<Utc>) -> ServicePrincipal {
    ServicePrincipal {
        id: new_guid(),
        app_id: app.app_id.clone(),
        display_name: app.display_name.clone(),
        account_enabled: true,
        app_owner_tenant: app.home_tenant.clone(),
        reply_urls: app.redirect_uris.clone(),
        created: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::m365::seed::SecretSeed;

    const HOME: &str = "11111111-1111-1111-1111-111111111111";
    const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
    const APP: &str = "33333333-3333-3333-3333-333333333333";

    fn directory() -> Directory {
        let mut d = Directory::default();
        let now = Utc::now();
        d.add_tenant(
            &TenantSeed {
                id: HOME.into(),
                display_name: None,
                domains: vec!["platform.example".into()],
            },
            now,
        )
        .unwrap();
        d.add_tenant(
            &TenantSeed {
                id: CUSTOMER.into(),
                display_name: Some("Contoso".into()),
                domains: vec!["contoso.onmicrosoft.com".into()],
            },
            now,
        )
        .unwrap();
        d.add_app(
            &AppSeed {
                app_id: APP.into(),
                display_name: "rec-aad".into(),
                home_tenant: "platform.example".into(),
                secrets: vec![SecretSeed {
                    value: "s".into(),
                    key_id: None,
                    display_name: None,
                    start_date_time: None,
                    end_date_time: "2099-01-01T00:00:00Z".into(),
                }],
                redirect_uris: vec![],
                application_permissions: vec![
                    "User.Read.All".into(),
                    "Application.Read.All".into(),
                ],
                delegated_scopes: vec!["openid".into(), "profile".into()],
            },
            now,
        )
        .unwrap();
        d
    }

    #[test]
    fn tenants_resolve_by_id_or_any_domain_and_get_an_initial_domain() {
        let d = directory();
        assert_eq!(
            d.resolve_tenant("CONTOSO.onmicrosoft.com").unwrap().id,
            CUSTOMER
        );
        let home = d.resolve_tenant(HOME).unwrap();
        assert_eq!(home.default_domain(), "platform.example");
        assert!(home
            .domains
            .iter()
            .any(|x| x.is_initial && x.name == "platform.onmicrosoft.com"));
    }

    #[test]
    fn consent_then_partial_revocation_then_full_revocation() {
        let mut d = directory();
        assert!(d
            .resolve_tenant(CUSTOMER)
            .unwrap()
            .sp_by_app_id(APP)
            .is_none());
        d.grant(CUSTOMER, APP, &ConsentScope::default(), Utc::now())
            .unwrap();
        let t = d.resolve_tenant(CUSTOMER).unwrap();
        let sp = t.sp_by_app_id(APP).unwrap().id.clone();
        assert_eq!(
            t.granted_roles(&sp, Utc::now()),
            ["User.Read.All", "Application.Read.All"]
        );
        assert_eq!(t.granted_scopes(&sp), ["openid", "profile"]);
        // consenting again changes nothing
        d.grant(CUSTOMER, APP, &ConsentScope::default(), Utc::now())
            .unwrap();
        assert_eq!(d.resolve_tenant(CUSTOMER).unwrap().assignments.len(), 2);
        assert!(d.revoke_permission(CUSTOMER, APP, "User.Read.All").unwrap());
        assert!(d.revoke_permission(CUSTOMER, APP, "openid").unwrap());
        let t = d.resolve_tenant(CUSTOMER).unwrap();
        assert_eq!(t.granted_roles(&sp, Utc::now()), ["Application.Read.All"]);
        assert_eq!(t.granted_scopes(&sp), ["profile"]);
        assert!(d.revoke_consent(CUSTOMER, APP).unwrap());
        let t = d.resolve_tenant(CUSTOMER).unwrap();
        assert!(t.sp_by_app_id(APP).is_none() && t.assignments.is_empty() && t.grants.is_empty());
    }

    #[test]
    fn unknown_permissions_are_refused() {
        let mut d = directory();
        let scope = ConsentScope {
            application_permissions: Some(vec!["Mail.Nope".into()]),
            delegated_scopes: None,
        };
        let err = d.grant(CUSTOMER, APP, &scope, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("Mail.Nope"));
    }
}
