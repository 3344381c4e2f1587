//! Microsoft Graph as a resource application: its well-known app id, the application
//! permissions it publishes as `appRoles` and the delegated permissions it publishes as
//! `oauth2PermissionScopes`. The ids are the ones Microsoft Graph uses in every tenant, so
//! an operator that maps names to ids through the Graph service principal gets the same
//! answers here as in a real directory.

use serde_json::{json, Value};

/// The application id of Microsoft Graph, the same in every tenant and cloud.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Display name of Microsoft Graph's service principal.
pub const GRAPH_DISPLAY_NAME: &str = "Microsoft Graph";

/// One permission Microsoft Graph publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub value: &'static str,
    pub id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
}

const fn perm(
    value: &'static str,
    id: &'static str,
    display_name: &'static str,
    description: &'static str,
) -> Permission {
    Permission {
        value,
        id,
        display_name,
        description,
    }
}

/// Application permissions (app roles, `allowedMemberTypes: ["Application"]`).
pub const APP_ROLES: &[Permission] = &[
    perm("User.Read.All", "df021288-bdef-4463-88db-98f22de89214", "Read all users' full profiles", "Allows the app to read user profiles without a signed in user."),
    perm("User.ReadWrite.All", "741f803b-c850-494e-b5df-cde7c675a1ca", "Read and write all users' full profiles", "Allows the app to read and update user profiles without a signed in user."),
    perm("Group.Read.All", "5b567255-7703-4780-807c-7be8301ae99b", "Read all groups", "Allows the app to read group properties and memberships without a signed-in user."),
    perm("Group.ReadWrite.All", "62a82d76-70ea-41e2-9197-370581804d09", "Read and write all groups", "Allows the app to create groups, read and update group properties and memberships without a signed-in user."),
    perm("Application.Read.All", "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Read all applications", "Allows the app to read all applications and service principals without a signed-in user."),
    perm("Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Read and write all applications", "Allows the app to create, read, update and delete applications and service principals without a signed-in user."),
    perm("Application.ReadWrite.OwnedBy", "18a4783c-866b-4cc7-a460-3d5e5662c884", "Manage apps that this app creates or owns", "Allows the app to manage the applications and service principals it owns, without a signed-in user."),
    perm("AppRoleAssignment.ReadWrite.All", "06b708a9-e830-4db3-a914-8e69da51d44f", "Manage app permission grants and app role assignments", "Allows the app to manage permission grants for application permissions to any API and app role assignments for any app, without a signed-in user."),
    perm("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Read directory data", "Allows the app to read data in your organization's directory, such as users, groups and apps, without a signed-in user."),
    perm("Directory.ReadWrite.All", "19dbc75e-c2e2-444c-a770-ec69d8559fc7", "Read and write directory data", "Allows the app to read and write data in your organization's directory, such as users and groups, without a signed-in user."),
    perm("Organization.Read.All", "498476ce-e0fe-48b0-b801-37ba7e2685c6", "Read organization information", "Allows the app to read the organization and related resources, without a signed-in user."),
    perm("Calls.AccessMedia.All", "a7a681dc-756e-4909-b988-f160edc6655f", "Access media streams in a call as an app", "Allows the app to get direct access to media streams in a call, without a signed-in user."),
    perm("Calls.JoinGroupCall.All", "f6b49018-60ab-4f81-83bd-22caeabfed2d", "Join group calls and meetings as an app", "Allows the app to join group calls and scheduled meetings in your organization, without a signed-in user."),
    perm("Calls.JoinGroupCallAsGuest.All", "fd7ccf6b-3d28-418b-9701-cd10f5cd2fd4", "Join group calls and meetings as a guest", "Allows the app to anonymously join group calls and scheduled meetings in your organization, without a signed-in user."),
    perm("Calls.Initiate.All", "284383ee-7f6e-4e40-a2a8-e85dcb029101", "Initiate outgoing 1 to 1 calls from the app", "Allows the app to place outbound calls to a single user and transfer calls to users in your organization's directory, without a signed-in user."),
    perm("Calls.InitiateGroupCall.All", "4c277553-8a09-487b-8023-29ee378d8324", "Initiate outgoing group calls from the app", "Allows the app to place outbound calls to multiple users and add participants to meetings in your organization, without a signed-in user."),
    perm("Mail.Send", "b633e1c5-b582-4048-a93e-9f11b44c7e96", "Send mail as any user", "Allows the app to send mail as any user without a signed-in user."),
    perm("AuditLog.Read.All", "b0afded3-3588-46d8-8b3d-9842eff778da", "Read all audit log data", "Allows the app to read and query your audit log activities, without a signed-in user."),
    perm("AppCatalog.Read.All", "e12dae10-5a57-4817-b79d-dfbec5348930", "Read all app catalogs", "Allows the app to read apps in app catalogs without a signed-in user."),
    perm("AppCatalog.ReadWrite.All", "dc149144-f292-421e-b185-5953f2e98d7f", "Read and write to all app catalogs", "Allows the app to create, read, update, and delete apps in the app catalogs without a signed-in user."),
    perm("Chat.Read.All", "6b7d71aa-70aa-4810-a8d9-5d9fb2830017", "Read all chat messages", "Allows the app to read all 1-to-1 or group chat messages in Microsoft Teams."),
    perm("ChannelMessage.Read.All", "7b2449af-6ccd-4f4d-9f78-e550c193f0d1", "Read all channel messages", "Allows the app to read all channel messages in Microsoft Teams."),
];

/// Delegated permissions (`oauth2PermissionScopes`, admin or user consentable).
pub const SCOPES: &[Permission] = &[
    perm("openid", "37f7f235-527c-4136-accd-4a02d197296e", "Sign users in", "Allows users to sign in to the app with their work or school accounts."),
    perm("profile", "14dad69e-099b-42c9-810b-d002981feec1", "View users' basic profile", "Allows the app to see your users' basic profile."),
    perm("email", "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0", "View users' email address", "Allows the app to read your users' primary email address."),
    perm("offline_access", "7427e0e9-2fba-42fe-b0c0-848c9e6a8182", "Maintain access to data you have given it access to", "Allows the app to see and update the data you gave it access to, even when users are not currently using the app."),
    perm("User.Read", "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "Sign in and read user profile", "Allows users to sign-in to the app, and allows the app to read the profile of signed-in users."),
    perm("User.ReadBasic.All", "b340eb25-3456-403f-be2f-af7a0d370277", "Read all users' basic profiles", "Allows the app to read a basic set of profile properties of other users in your organization on behalf of the signed-in user."),
    perm("AppCatalog.Submit", "3db89e36-7fa6-4012-b281-85f3d9d9fd2e", "Submit application packages to the catalog and cancel pending submissions", "Allows the app to submit application packages to the catalog and cancel submissions that are pending review on behalf of the signed-in user."),
];

/// The application permission called `value`, if Microsoft Graph publishes one.
pub fn app_role(value: &str) -> Option<&'static Permission> {
    APP_ROLES.iter().find(|p| p.value == value)
}

/// The application permission with app role id `id`.
pub fn app_role_by_id(id: &str) -> Option<&'static Permission> {
    APP_ROLES.iter().find(|p| p.id.eq_ignore_ascii_case(id))
}

/// The delegated permission called `value`, if Microsoft Graph publishes one.
pub fn scope(value: &str) -> Option<&'static Permission> {
    SCOPES.iter().find(|p| p.value == value)
}

/// `appRoles` of the Graph service principal, as Graph serialises them.
pub fn app_roles_json() -> Value {
    APP_ROLES
        .iter()
        .map(|p| {
            json!({
                "allowedMemberTypes": ["Application"],
                "description": p.description,
                "displayName": p.display_name,
                "id": p.id,
                "isEnabled": true,
                "origin": "Application",
                "value": p.value,
            })
        })
        .collect()
}

/// `oauth2PermissionScopes` of the Graph service principal, as Graph serialises them.
pub fn scopes_json() -> Value {
    SCOPES
        .iter()
        .map(|p| {
            json!({
                "adminConsentDescription": p.description,
                "adminConsentDisplayName": p.display_name,
                "id": p.id,
                "isEnabled": true,
                "type": if p.value.ends_with(".All") || p.value == "AppCatalog.Submit" { "Admin" } else { "User" },
                "userConsentDescription": p.description,
                "userConsentDisplayName": p.display_name,
                "value": p.value,
            })
        })
        .collect()
}
