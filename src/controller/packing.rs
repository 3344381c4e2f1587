//! How a cached ConsentGrant's status is kept shorter, and given back whole.
//!
//! The grant cache holds every ConsentGrant for the life of the process (4.5 per tenant), and
//! three parts of a grant's status repeat what the operator can rebuild:
//!
//! - `consentUrl` (about 0.3 KiB) is the checker's admin-consent URL for the grant's tenant,
//!   application and `namespace/name`: only the tenant segment is kept;
//! - `grantedPermissions`, when everything is granted, is the spec's application permissions
//!   followed by its delegated scopes;
//! - each condition's message is `status.message`.
//!
//! [`pack`] shortens a part only when [`unpack`] rebuilds exactly the value it replaced, so
//! every reader (reconciles, status write decisions, the Tenant's consent lines) sees the
//! grant as the API server sent it. A packed part is marked by a value the operator never
//! writes: a `consentUrl` without `://`, a `grantedPermissions` of one empty name, and
//! conditions whose messages are all empty while `status.message` is not.

use std::sync::Arc;

use url::Url;

use crate::crd::ConsentGrant;

/// Builds the admin-consent URL of `(tenant, app_id, state)`, as the consent checker does.
pub type UrlOf<'a> = &'a dyn Fn(&str, &str, &str) -> String;

/// The admin-consent URL's `state`: the grant's `namespace/name`.
pub fn consent_state(grant: &ConsentGrant) -> String {
    format!(
        "{}/{}",
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        grant.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Shortens what [`unpack`] can rebuild exactly; leaves everything else as it is.
pub fn pack(grant: &mut ConsentGrant, url_of: UrlOf<'_>) {
    let state = consent_state(grant);
    let spec = &grant.spec;
    let Some(status) = grant.status.as_mut() else {
        return;
    };
    if let Some(url) = status.consent_url.as_deref() {
        if let Some(tenant) = tenant_segment(url) {
            if url_of(&tenant, &spec.app_id, &state) == url {
                status.consent_url = Some(tenant);
            }
        }
    }
    if status.missing_permissions.is_empty()
        && !status.granted_permissions.is_empty()
        && status.granted_permissions.iter().eq(spec
            .application_permissions
            .iter()
            .chain(&spec.delegated_scopes))
    {
        status.granted_permissions = vec![String::new()];
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        if !status.conditions.is_empty() && status.conditions.iter().all(|c| c.message == message) {
            for c in &mut status.conditions {
                c.message = String::new();
            }
        }
    }
}

/// The grant as it was before [`pack`]; the same `Arc` when nothing was packed.
pub fn unpack(grant: Arc<ConsentGrant>, url_of: UrlOf<'_>) -> Arc<ConsentGrant> {
    let Some(status) = grant.status.as_ref() else {
        return grant;
    };
    let url_packed = status
        .consent_url
        .as_deref()
        .is_some_and(|u| !u.contains("://"));
    let granted_packed = status.granted_permissions.len() == 1
        && status.granted_permissions[0].is_empty()
        && status.missing_permissions.is_empty();
    let messages_packed = status.message.as_deref().is_some_and(|m| !m.is_empty())
        && !status.conditions.is_empty()
        && status.conditions.iter().all(|c| c.message.is_empty());
    if !(url_packed || granted_packed || messages_packed) {
        return grant;
    }

    let mut whole = ConsentGrant::clone(&grant);
    let state = consent_state(&whole);
    let spec = &whole.spec;
    let status = whole.status.as_mut().expect("checked above");
    if url_packed {
        let tenant = status.consent_url.take().unwrap_or_default();
        status.consent_url = Some(url_of(&tenant, &spec.app_id, &state));
    }
    if granted_packed {
        status.granted_permissions = spec
            .application_permissions
            .iter()
            .chain(&spec.delegated_scopes)
            .cloned()
            .collect();
    }
    if messages_packed {
        let message = status.message.clone().unwrap_or_default();
        for c in &mut status.conditions {
            c.message = message.clone();
        }
    }
    Arc::new(whole)
}

/// The tenant segment of an admin-consent URL (`…/{tenant}/v2.0/adminconsent?…`).
fn tenant_segment(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    let segments: Vec<&str> = parsed.path_segments()?.collect();
    match segments.as_slice() {
        [.., tenant, "v2.0", "adminconsent"] if !tenant.is_empty() && !tenant.contains("://") => {
            Some((*tenant).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{self, Desired, Status};
    use crate::crd::{ConsentGrantSpec, ConsentGrantStatus, ConsentState};
    use crate::graph::schedule::consent_url;
    use k8s_openapi::jiff::Timestamp;

    fn url_of(tenant: &str, app_id: &str, state: &str) -> String {
        consent_url(
            &Url::parse("https://login.microsoftonline.com/").unwrap(),
            tenant,
            app_id,
            "https://graph.microsoft.com/.default",
            Some("https://operator.example.com/consent/callback"),
            state,
        )
    }

    const TENANT_ID: &str = "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b";

    fn granted_grant() -> ConsentGrant {
        let mut g = ConsentGrant::new(
            "consent-recording",
            ConsentGrantSpec {
                tenant_ref: "fabrikam".into(),
                consent: "recording".into(),
                app_id: "5d8f4a2c-1b3e-4c6d-8e9f-0a1b2c3d4e5f".into(),
                application_permissions: vec![
                    "Calls.AccessMedia.All".into(),
                    "Calls.JoinGroupCall.All".into(),
                ],
                delegated_scopes: vec!["OnlineMeetings.Read".into()],
                display_name: None,
                optional: false,
            },
        );
        g.metadata.namespace = Some("tenant-fabrikam".into());
        let message = "all 3 required permissions granted".to_string();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        g.status = Some(ConsentGrantStatus {
            observed_generation: Some(1),
            state: Some(ConsentState::Granted),
            consent_url: Some(url_of(
                TENANT_ID,
                &g.spec.app_id,
                "tenant-fabrikam/consent-recording",
            )),
            granted_permissions: vec![
                "Calls.AccessMedia.All".into(),
                "Calls.JoinGroupCall.All".into(),
                "OnlineMeetings.Read".into(),
            ],
            message: Some(message.clone()),
            conditions: conditions::merge(
                &[],
                vec![
                    Desired::new("Granted", Status::True, "Granted", message.clone()),
                    Desired::new("Ready", Status::True, "Granted", message),
                ],
                Some(1),
                now,
            ),
            ..Default::default()
        });
        g
    }

    fn json(g: &ConsentGrant) -> serde_json::Value {
        serde_json::to_value(g).unwrap()
    }

    fn round_trip(g: &ConsentGrant) -> (ConsentGrant, ConsentGrant) {
        let mut packed = g.clone();
        pack(&mut packed, &url_of);
        let whole = unpack(Arc::new(packed.clone()), &url_of);
        (packed, ConsentGrant::clone(&whole))
    }

    #[test]
    fn a_granted_grant_is_kept_shorter_and_given_back_exactly() {
        let g = granted_grant();
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
        let status = packed.status.as_ref().unwrap();
        assert_eq!(status.consent_url.as_deref(), Some(TENANT_ID));
        assert_eq!(status.granted_permissions, [""]);
        assert!(status.conditions.iter().all(|c| c.message.is_empty()));
        let size = |g: &ConsentGrant| serde_json::to_string(g).unwrap().len();
        assert!(
            size(&packed) + 300 < size(&g),
            "{} vs {}",
            size(&packed),
            size(&g)
        );
    }

    #[test]
    fn a_pending_or_partial_grant_keeps_its_lists() {
        let mut g = granted_grant();
        let status = g.status.as_mut().unwrap();
        status.state = Some(ConsentState::Partial);
        status.granted_permissions = vec!["Calls.AccessMedia.All".into()];
        status.missing_permissions = vec![
            "Calls.JoinGroupCall.All".into(),
            "OnlineMeetings.Read".into(),
        ];
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
        let kept = packed.status.as_ref().unwrap();
        assert_eq!(kept.granted_permissions, ["Calls.AccessMedia.All"]);

        let status = g.status.as_mut().unwrap();
        status.state = Some(ConsentState::Pending);
        status.granted_permissions.clear();
        let (_, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
    }

    #[test]
    fn what_cannot_be_rebuilt_is_kept_as_it_is() {
        let mut g = granted_grant();
        let status = g.status.as_mut().unwrap();
        // A URL built with another redirect (an older configuration), one from elsewhere,
        // and a condition whose message is its own.
        status.consent_url = Some(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/adminconsent?client_id=x"
                .into(),
        );
        status.conditions[0].message = "checked by hand".into();
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
        let kept = packed.status.as_ref().unwrap();
        assert_eq!(kept.consent_url, g.status.as_ref().unwrap().consent_url);
        assert_eq!(kept.conditions[0].message, "checked by hand");
        assert!(!kept.conditions[1].message.is_empty());

        // Granted in another order than the spec's lists: kept.
        let status = g.status.as_mut().unwrap();
        status.granted_permissions.reverse();
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
        assert_eq!(packed.status.as_ref().unwrap().granted_permissions.len(), 3);
    }

    #[test]
    fn a_grant_without_status_or_url_passes_through_unchanged() {
        let mut g = granted_grant();
        g.status = None;
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&packed), json(&g));
        assert_eq!(json(&whole), json(&g));

        let mut g = granted_grant();
        g.status.as_mut().unwrap().consent_url = None;
        g.status.as_mut().unwrap().message = None;
        let (_, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
    }

    #[test]
    fn an_unpacked_grant_is_the_same_object_when_nothing_was_packed() {
        let mut g = granted_grant();
        g.status = None;
        let cached = Arc::new(g);
        assert!(Arc::ptr_eq(&unpack(cached.clone(), &url_of), &cached));
    }
}
