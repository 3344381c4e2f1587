//! The user accounts of a simulated tenant: who can sign in (UPN and password) and whether
//! the account is enabled, and the Graph `user` resource (`/users/{id | userPrincipalName}`)
//! the operator reads to verify a customer's administrators.
//!
//! Plain data and pure operations; the directory lock guards them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::directory::{new_guid, Directory, Tenant};
use super::SimError;

/// A user account in a tenant.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    /// What the login form checks (a test password, never a real one).
    pub password: String,
    pub account_enabled: bool,
}

/// A user in the seed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    /// The tenant (id or one of its domains).
    pub tenant: String,
    /// User principal name, `name@domain`; the domain must be one of the tenant's.
    pub upn: String,
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "enabled")]
    pub account_enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Tenant {
    /// The user with this UPN or object id (UPNs compare regardless of case, as in Entra).
    pub fn user(&self, key: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.upn.eq_ignore_ascii_case(key) || u.id.eq_ignore_ascii_case(key))
    }
}

impl Directory {
    /// Makes the user `upn` of the app's home tenant an owner of the app registration.
    pub fn add_app_owner(&mut self, app_id: &str, upn: &str) -> Result<(), SimError> {
        let app = self
            .apps
            .get(app_id)
            .ok_or_else(|| SimError::Seed(format!("no app {app_id}")))?;
        let user = self
            .tenants
            .get(&app.home_tenant)
            .and_then(|t| t.user(upn))
            .ok_or_else(|| {
                SimError::Seed(format!("no user {upn} in the home tenant of app {app_id}"))
            })?
            .id
            .clone();
        let app = self.apps.get_mut(app_id).expect("found above");
        if !app.owners.contains(&user) {
            app.owners.push(user);
        }
        Ok(())
    }

    /// Adds a user to `tenant`; returns its object id. The UPN's domain must be one of the
    /// tenant's verified domains, and unique in the tenant.
    pub fn add_user(&mut self, seed: &UserSeed) -> Result<String, SimError> {
        let tenant_id = self
            .resolve_tenant(&seed.tenant)
            .map(|t| t.id.clone())
            .ok_or_else(|| {
                SimError::Seed(format!(
                    "user {}: unknown tenant `{}`",
                    seed.upn, seed.tenant
                ))
            })?;
        let tenant = self.tenants.get_mut(&tenant_id).expect("resolved above");
        let Some((name, domain)) = seed.upn.split_once('@') else {
            return Err(SimError::Seed(format!(
                "user `{}`: a UPN is name@domain",
                seed.upn
            )));
        };
        if name.is_empty()
            || !tenant
                .domains
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(domain))
        {
            return Err(SimError::Seed(format!(
                "user `{}`: the domain is not one of tenant {}'s",
                seed.upn, tenant.id
            )));
        }
        if tenant.user(&seed.upn).is_some() {
            return Err(SimError::Seed(format!(
                "user `{}` exists already",
                seed.upn
            )));
        }
        let id = new_guid();
        tenant.users.push(User {
            id: id.clone(),
            upn: seed.upn.clone(),
            display_name: seed
                .display_name
                .clone()
                .unwrap_or_else(|| name.to_string()),
            password: seed.password.clone(),
            account_enabled: seed.account_enabled,
        });
        Ok(id)
    }

    /// "Block sign-in" in the Entra portal (`accountEnabled`).
    pub fn set_user_enabled(&mut self, tenant: &str, upn: &str, on: bool) -> Result<(), SimError> {
        let user = self.user_mut(tenant, upn)?;
        user.account_enabled = on;
        Ok(())
    }

    /// Deletes a user.
    pub fn remove_user(&mut self, tenant: &str, upn: &str) -> Result<(), SimError> {
        self.user_mut(tenant, upn)?;
        let id = self
            .resolve_tenant(tenant)
            .map(|t| t.id.clone())
            .expect("checked");
        let t = self.tenants.get_mut(&id).expect("checked");
        t.users.retain(|u| !u.upn.eq_ignore_ascii_case(upn));
        Ok(())
    }

    fn user_mut(&mut self, tenant: &str, upn: &str) -> Result<&mut User, SimError> {
        let id = self
            .resolve_tenant(tenant)
            .map(|t| t.id.clone())
            .ok_or_else(|| SimError::Harness(format!("unknown tenant `{tenant}`")))?;
        self.tenants
            .get_mut(&id)
            .and_then(|t| t.users.iter_mut().find(|u| u.upn.eq_ignore_ascii_case(upn)))
            .ok_or_else(|| SimError::Harness(format!("no user `{upn}` in tenant `{tenant}`")))
    }

    /// The tenant and user a sign-in name belongs to: the tenant of the UPN's domain.
    pub fn find_user(&self, upn: &str) -> Option<(&Tenant, &User)> {
        let (_, domain) = upn.split_once('@')?;
        let tenant = self.resolve_tenant(domain)?;
        tenant.user(upn).map(|u| (tenant, u))
    }
}

/// The Graph `user` entity (v1.0 property names).
pub(crate) fn user_json(user: &User) -> Value {
    let mail = Value::String(user.upn.clone());
    json!({
        "id": user.id,
        "userPrincipalName": user.upn,
        "displayName": user.display_name,
        "mail": mail,
        "accountEnabled": user.account_enabled,
    })
}
