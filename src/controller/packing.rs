//! How a cached ConsentGrant is kept shorter, and given back whole.
//!
//! The grant cache holds every ConsentGrant for the life of the process (4.5 per tenant), and
//! several parts of a grant repeat what the operator can rebuild:
//!
//! - `spec.appId`, `spec.applicationPermissions` and `spec.delegatedScopes` are the
//!   configured consent's (`consents.<spec.consent>` in the operator configuration), from
//!   which the Tenant controller made the grant;
//! - `status.consentUrl` (about 0.3 KiB) is the checker's admin-consent URL for the grant's
//!   tenant, application and `namespace/name`: only the tenant segment is kept;
//! - `status.grantedPermissions`, when everything is granted, is the spec's application
//!   permissions followed by its delegated scopes;
//! - each condition's message is `status.message`.
//!
//! [`pack`] shortens a part only when [`unpack`] rebuilds exactly the value it replaced, so
//! every reader (reconciles, status write decisions, the Tenant's consent lines) sees the
//! grant as the API server sent it. A packed part is marked by a value the operator never
//! writes and the CRD does not admit: an empty `appId`, a list of one empty name, a
//! `consentUrl` without `://`, and conditions whose messages are all empty while
//! `status.message` is not.

use std::collections::BTreeMap;
use std::sync::Arc;

use url::Url;

use crate::config::ConsentConfig;
use crate::crd::ConsentGrant;

/// Builds the admin-consent URL of `(tenant, app_id, state)`, as the consent checker does.
pub type UrlOf<'a> = &'a dyn Fn(&str, &str, &str) -> String;

/// What packed parts are rebuilt from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The checker's admin-consent URLs.
    pub url_of: UrlOf<'a>,
    /// The operator configuration's consents, by key.
    pub consents: &'a BTreeMap<String, ConsentConfig>,
}

/// The admin-consent URL's `state`: the grant's `namespace/name`.
pub fn consent_state(grant: &ConsentGrant) -> String {
    format!(
        "{}/{}",
        grant.metadata.namespace.as_deref().unwrap_or_default(),
        grant.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The marker of a packed list: one empty name.
fn packed_list() -> Vec<String> {
    vec![String::new()]
}

fn is_packed_list(list: &[String]) -> bool {
    list.len() == 1 && list[0].is_empty()
}

/// Shortens what [`unpack`] can rebuild exactly; leaves everything else as it is.
pub fn pack(grant: &mut ConsentGrant, from: Sources<'_>) {
    pack_status(grant, from.url_of);
    // After the status, whose packing compares with the spec's lists.
    let spec = &mut grant.spec;
    if let Some(configured) = from.consents.get(&spec.consent) {
        if !spec.app_id.is_empty() && spec.app_id == configured.app_id {
            spec.app_id = String::new();
        }
        let lists = [
            (
                &mut spec.application_permissions,
                &configured.application_permissions,
            ),
            (&mut spec.delegated_scopes, &configured.delegated_scopes),
        ];
        for (list, configured) in lists {
            if !list.is_empty() && list == configured {
                *list = packed_list();
            }
        }
    }
}

fn pack_status(grant: &mut ConsentGrant, url_of: UrlOf<'_>) {
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
        status.granted_permissions = packed_list();
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
pub fn unpack(grant: Arc<ConsentGrant>, from: Sources<'_>) -> Arc<ConsentGrant> {
    let spec = &grant.spec;
    let configured = from.consents.get(&spec.consent);
    let spec_packed = configured.is_some()
        && (spec.app_id.is_empty()
            || is_packed_list(&spec.application_permissions)
            || is_packed_list(&spec.delegated_scopes));
    let status = grant.status.as_ref();
    let url_packed = status
        .and_then(|s| s.consent_url.as_deref())
        .is_some_and(|u| !u.contains("://"));
    let granted_packed = status.is_some_and(|s| {
        is_packed_list(&s.granted_permissions) && s.missing_permissions.is_empty()
    });
    let messages_packed = status.is_some_and(|s| {
        s.message.as_deref().is_some_and(|m| !m.is_empty())
            && !s.conditions.is_empty()
            && s.conditions.iter().all(|c| c.message.is_empty())
    });
    if !(spec_packed || url_packed || granted_packed || messages_packed) {
        return grant;
    }

    let mut whole = Arc::unwrap_or_clone(grant);
    // The spec first: the status is rebuilt from it.
    if let Some(configured) = configured.filter(|_| spec_packed) {
        let spec = &mut whole.spec;
        if spec.app_id.is_empty() {
            spec.app_id = configured.app_id.clone();
        }
        if is_packed_list(&spec.application_permissions) {
            spec.application_permissions = configured.application_permissions.clone();
        }
        if is_packed_list(&spec.delegated_scopes) {
            spec.delegated_scopes = configured.delegated_scopes.clone();
        }
    }
    let state = consent_state(&whole);
    let spec = &whole.spec;
    if let Some(status) = whole.status.as_mut() {
        if url_packed {
            let tenant = status.consent_url.take().unwrap_or_default();
            status.consent_url = Some((from.url_of)(&tenant, &spec.app_id, &state));
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
            "https://operator.example.com/consent/callback",
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

    /// The configured consents the test grants were made from.
    fn configured() -> BTreeMap<String, ConsentConfig> {
        let g = granted_grant();
        BTreeMap::from([(
            "recording".to_string(),
            ConsentConfig {
                app_id: g.spec.app_id.clone(),
                display_name: "recording-hue".into(),
                client_secret: None,
                application_permissions: g.spec.application_permissions.clone(),
                delegated_scopes: g.spec.delegated_scopes.clone(),
                mandatory: Default::default(),
            },
        )])
    }

    fn round_trip_with(
        g: &ConsentGrant,
        consents: &BTreeMap<String, ConsentConfig>,
    ) -> (ConsentGrant, ConsentGrant) {
        let from = Sources {
            url_of: &url_of,
            consents,
        };
        let mut packed = g.clone();
        pack(&mut packed, from);
        let whole = unpack(Arc::new(packed.clone()), from);
        (packed, ConsentGrant::clone(&whole))
    }

    fn round_trip(g: &ConsentGrant) -> (ConsentGrant, ConsentGrant) {
        round_trip_with(g, &configured())
    }

    #[test]
    fn a_granted_grant_is_kept_shorter_and_given_back_exactly() {
        let g = granted_grant();
        let (packed, whole) = round_trip(&g);
        assert_eq!(json(&whole), json(&g));
        assert_eq!(packed.spec.app_id, "");
        assert_eq!(packed.spec.application_permissions, [""]);
        assert_eq!(packed.spec.delegated_scopes, [""]);
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
    fn a_spec_unlike_its_configured_consent_is_kept_as_it_is() {
        // Another configuration: other permissions, another application; and a consent key
        // the configuration does not have.
        let mut consents = configured();
        let recording = consents.get_mut("recording").unwrap();
        recording
            .application_permissions
            .push("Chat.Read.All".into());
        recording.app_id = "0c0ffee0-0000-4000-8000-000000000009".into();
        let g = granted_grant();
        let (packed, whole) = round_trip_with(&g, &consents);
        assert_eq!(json(&whole), json(&g));
        assert_eq!(packed.spec.app_id, g.spec.app_id);
        assert_eq!(packed.spec.application_permissions.len(), 2);
        assert_eq!(packed.spec.delegated_scopes, [""]);
        // The status is still packed against the grant's own spec.
        assert_eq!(packed.status.as_ref().unwrap().granted_permissions, [""]);

        let (packed, whole) = round_trip_with(&g, &BTreeMap::new());
        assert_eq!(json(&whole), json(&g));
        assert_eq!(packed.spec, g.spec);
    }

    #[test]
    fn a_grant_without_status_or_url_passes_through_unchanged() {
        let mut g = granted_grant();
        g.status = None;
        let (packed, whole) = round_trip(&g);
        assert_eq!(packed.spec.delegated_scopes, [""]);
        assert_eq!(json(&whole), json(&g));
        let (packed, whole) = round_trip_with(&g, &BTreeMap::new());
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
        let from = Sources {
            url_of: &url_of,
            consents: &BTreeMap::new(),
        };
        assert!(Arc::ptr_eq(&unpack(cached.clone(), from), &cached));
    }
}
