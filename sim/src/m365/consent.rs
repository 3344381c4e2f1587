//! The admin-consent endpoint (`/{tenant}/v2.0/adminconsent` and the older
//! `/{tenant}/adminconsent`). A browser lands here with the app's client id, the
//! requested scope, the redirect URI and an opaque state; the simulated Global admin
//! accepts at once (auto-consent, the default) or the page waits for the harness to grant.
//!
//! As on the real sign-in page, problems that make the redirect URI untrustworthy (unknown
//! tenant or app, unregistered redirect URI) are shown as an error page and never
//! redirected; problems after that are sent back to the redirect URI with `error=`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::catalog;
use super::directory::{ConsentScope, Directory};
use super::identity::{aad_timestamp, is_multi_tenant_alias};

/// Which admin-consent endpoint was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsentVersion {
    /// `/{tenant}/adminconsent`: grants the app's configured permissions, no `scope`.
    V1,
    /// `/{tenant}/v2.0/adminconsent`: `scope` required (`{graph}/.default` or names).
    V2,
}

/// What the browser gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsentOutcome {
    /// 302 to this URL.
    Redirect(String),
    /// 200 with this HTML: the consent prompt is showing and nobody has answered yet.
    Awaiting(String),
    /// An error page (HTML) with this status.
    ErrorPage { status: u16, html: String },
}

/// Handles one admin-consent request, granting in `dir` when the admin accepts.
pub(crate) fn admin_consent(
    dir: &mut Directory,
    version: ConsentVersion,
    tenant_segment: &str,
    params: &HashMap<String, String>,
    auto_consent: bool,
    graph_resources: &[String],
    now: DateTime<Utc>,
) -> ConsentOutcome {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let alias = is_multi_tenant_alias(tenant_segment);
    let tenant = dir.resolve_tenant(tenant_segment).cloned();
    if tenant.is_none() && !alias {
        return error_page(90002, &format!("Tenant '{tenant_segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."), now);
    }
    let Some(client_id) = param("client_id") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
            now,
        );
    };
    let directory_name = tenant
        .as_ref()
        .map(|t| t.display_name.clone())
        .unwrap_or_else(|| tenant_segment.to_string());
    let Some(app) = dir.app(client_id).cloned() else {
        return error_page(700016, &format!("Application with identifier '{client_id}' was not found in the directory '{directory_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."), now);
    };
    let redirect_uri = match param("redirect_uri") {
        Some(uri) if app.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Some(uri) => {
            return error_page(50011, &format!("The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.", app.app_id), now);
        }
        None => match app.redirect_uris.first() {
            Some(uri) => uri.clone(),
            None => {
                return error_page(
                    500113,
                    "No reply address is registered for the application.",
                    now,
                )
            }
        },
    };
    let state = param("state");
    let (scope, resource) = match version {
        ConsentVersion::V1 => (
            ConsentScope::default(),
            "https://graph.microsoft.com".to_string(),
        ),
        ConsentVersion::V2 => match requested_scope(param("scope"), graph_resources) {
            Ok(found) => found,
            Err((error, description)) => {
                return ConsentOutcome::Redirect(with_query(
                    &redirect_uri,
                    &[
                        ("error", error),
                        ("error_description", &description),
                        ("state", state.unwrap_or("")),
                    ],
                ))
            }
        },
    };
    let Some(tenant) = tenant.filter(|_| auto_consent) else {
        return ConsentOutcome::Awaiting(awaiting_page(
            &app.display_name,
            &directory_name,
            &app.application_permissions,
            &app.delegated_scopes,
        ));
    };
    let (app_perms, scopes) = dir
        .grant(&tenant.id, &app.app_id, &scope, now)
        .expect("tenant and app were resolved and permissions validated above");
    let mut query: Vec<(&str, String)> = vec![
        ("admin_consent", "True".to_string()),
        ("tenant", tenant.id.clone()),
    ];
    if let Some(state) = state {
        query.push(("state", state.to_string()));
    }
    if version == ConsentVersion::V2 {
        let granted: Vec<String> = app_perms
            .iter()
            .chain(scopes.iter())
            .map(|p| format!("{resource}/{p}"))
            .collect();
        query.push(("scope", granted.join(" ")));
    }
    let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ConsentOutcome::Redirect(with_query(&redirect_uri, &pairs))
}

/// Reads a v2 `scope`: `{graph}/.default` asks for everything the app is configured with;
/// `{graph}/{Permission}` items ask for those permissions only. Returns what to grant and
/// the resource prefix the client used.
fn requested_scope(
    scope: Option<&str>,
    graph_resources: &[String],
) -> Result<(ConsentScope, String), (&'static str, String)> {
    let Some(scope) = scope else {
        return Err((
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'scope'."
                .to_string(),
        ));
    };
    let invalid = |item: &str| {
        ("invalid_scope", format!("AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {item} is not valid."))
    };
    let mut resource = None;
    let mut everything = false;
    let mut app_perms = Vec::new();
    let mut scopes = Vec::new();
    for item in scope.split_whitespace() {
        if ["openid", "profile", "email", "offline_access"].contains(&item) {
            scopes.push(item.to_string());
            continue;
        }
        let (res, name) = item.rsplit_once('/').ok_or_else(|| invalid(item))?;
        let res = res.trim_end_matches('/');
        if !graph_resources.iter().any(|g| g.eq_ignore_ascii_case(res)) {
            return Err(invalid(item));
        }
        resource.get_or_insert_with(|| res.to_string());
        if name == ".default" {
            everything = true;
        } else if catalog::app_role(name).is_some() {
            app_perms.push(name.to_string());
        } else if catalog::scope(name).is_some() {
            scopes.push(name.to_string());
        } else {
            return Err(invalid(item));
        }
    }
    let resource = resource.ok_or_else(|| invalid(scope))?;
    let consent = if everything {
        ConsentScope::default()
    } else {
        ConsentScope {
            application_permissions: Some(app_perms),
            delegated_scopes: Some(scopes),
        }
    };
    Ok((consent, resource))
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            ser.append_pair(k, v);
        }
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", ser.finish())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(code: u32, message: &str, now: DateTime<Utc>) -> ConsentOutcome {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head><body>\n<h1>Sorry, but we're having trouble signing you in.</h1>\n<p id=\"error\">AADSTS{code}: {}</p>\n<p>Timestamp: {}</p>\n</body></html>\n",
        escape(message),
        aad_timestamp(now)
    );
    ConsentOutcome::ErrorPage { status: 400, html }
}

fn awaiting_page(app: &str, directory: &str, app_perms: &[String], scopes: &[String]) -> String {
    let items: String = app_perms
        .iter()
        .chain(scopes.iter())
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><title>Permissions requested</title></head><body>\n<h1>Permissions requested</h1>\n<p><b>{}</b> wants permission to access resources in your organization <b>{}</b>:</p>\n<ul>{items}</ul>\n<p>Accept for your organization? (Simulator: waiting for the harness to grant consent.)</p>\n</body></html>\n",
        escape(app),
        escape(directory)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources() -> Vec<String> {
        vec!["https://graph.microsoft.com".to_string()]
    }

    #[test]
    fn scope_default_asks_for_everything_and_names_ask_for_themselves() {
        let (all, res) =
            requested_scope(Some("https://graph.microsoft.com/.default"), &resources()).unwrap();
        assert!(all.application_permissions.is_none() && all.delegated_scopes.is_none());
        assert_eq!(res, "https://graph.microsoft.com");
        let (some, _) = requested_scope(Some("openid https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/User.Read"), &resources()).unwrap();
        assert_eq!(some.application_permissions.unwrap(), ["User.Read.All"]);
        assert_eq!(some.delegated_scopes.unwrap(), ["openid", "User.Read"]);
        let err =
            requested_scope(Some("https://storage.azure.com/.default"), &resources()).unwrap_err();
        assert_eq!(err.0, "invalid_scope");
    }

    #[test]
    fn redirect_query_is_appended_and_encoded() {
        assert_eq!(
            with_query("https://x/cb?a=1", &[("state", "s t"), ("scope", "")]),
            "https://x/cb?a=1&state=s+t"
        );
    }
}
