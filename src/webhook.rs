//! The bots' calling webhook: the names every part agrees on (the Ingress and Services the
//! RecordingService controller makes, the platform's router, the bots' configuration). The
//! operator configuration's `webhook` section is [`crate::config::WebhookConfig`].
//!
//! Teams reaches an application-hosted media bot through one HTTPS **calling webhook** per
//! application registration, and each instance at a notification URL of its own. Here:
//!
//! - the calling webhook of a bot is `https://<host>/api/calling/<role>` (`role` is `primary`
//!   or `paired`, the bot's `app.kubernetes.io/component`);
//! - instance `n` of that bot takes its notifications at
//!   `https://<host>/api/calling/<role>/<n>/<tenant id>` (`n` is the StatefulSet ordinal; the
//!   customer's tenant id last, so the router needs no payload to route them, and an Ingress
//!   routes on the `/api/calling/<role>/<n>` prefix).
//!
//! With the platform's applications (no `spec.appRegistration`) every tenant's calls arrive at
//! the one `platformHost`, where the router reads the tenant id from the notification and
//! forwards to that tenant's bots. A service with its own app registration gets its own host
//! (`serviceHost`, a template) and an Ingress in its namespace.

/// Path prefix of every calling webhook and notification route.
pub const CALLING_PREFIX: &str = "/api/calling";
/// Suffix of the Secret a cert-manager `Certificate` of a service's webhook fills.
pub const CERTIFICATE_SECRET_SUFFIX: &str = "-webhook-tls";

// ---------------------------------------------------------------------------------------------
// Routes and the Services behind them
// ---------------------------------------------------------------------------------------------

/// The calling webhook path of a bot (`role`: `primary` or `paired`).
pub fn calling_path(role: &str) -> String {
    format!("{CALLING_PREFIX}/{role}")
}

/// The notification path of one instance of a bot.
pub fn instance_path(role: &str, ordinal: u32) -> String {
    format!("{CALLING_PREFIX}/{role}/{ordinal}")
}

/// The headless Service over every bot pod of a service, `publishNotReadyAddresses` so a
/// draining instance keeps its DNS name: the bots' StatefulSets name it as `serviceName`,
/// which gives each pod `<pod>.<this>.<namespace>.svc`.
pub fn headless_service(service: &str) -> String {
    format!("{service}-bots")
}

/// Short tag of a role in the callback Services' names (the names stay within 63 characters
/// for every valid service name).
fn role_tag(role: &str) -> &'static str {
    match role {
        "paired" => "pp",
        _ => "p",
    }
}

/// The ClusterIP Service over the ready pods of one bot: where new calls (the calling
/// webhook) go.
pub fn calling_service(service: &str, role: &str) -> String {
    format!("{service}-cb-{}", role_tag(role))
}

/// The ClusterIP Service over one instance (ready or draining): where that instance's
/// notifications go through an Ingress.
pub fn instance_service(service: &str, role: &str, ordinal: u32) -> String {
    format!("{service}-cb-{}{ordinal}", role_tag(role))
}

/// A pod of a bot's StatefulSet: `<statefulset>-<ordinal>`.
pub fn pod_name(statefulset: &str, ordinal: u32) -> String {
    format!("{statefulset}-{ordinal}")
}

/// The notification URL of one instance of a bot whose webhook host is `host`, for the
/// customer tenant `tenant_id`.
pub fn notification_url(host: &str, role: &str, ordinal: u32, tenant_id: &str) -> String {
    format!("https://{host}{}/{tenant_id}", instance_path(role, ordinal))
}

/// What a path under [`CALLING_PREFIX`] addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallingRoute {
    /// `/api/calling/<role>`: a new call for any ready instance.
    Bot { role: String },
    /// `/api/calling/<role>/<n>[/<tenant id>]`: a notification for instance `n`.
    Instance {
        role: String,
        ordinal: u32,
        /// The customer tenant named in the path (lowercase), when it names one.
        tenant: Option<String>,
    },
}

/// Parses a request path; `None` for anything but the two route shapes with a known role.
pub fn parse_calling_path(path: &str) -> Option<CallingRoute> {
    let rest = path.strip_prefix(CALLING_PREFIX)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let role = parts.next()?;
    if role != "primary" && role != "paired" {
        return None;
    }
    match parts.next() {
        None | Some("") => Some(CallingRoute::Bot { role: role.into() }),
        Some(n) => {
            // Digits only (no sign, no leading zeros but "0"): one spelling per instance.
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || n.len() > 1 && n.starts_with('0')
            {
                return None;
            }
            let ordinal = n.parse().ok()?;
            let tenant = match parts.next() {
                None | Some("") => None,
                Some(t) if crate::config::is_guid(t) => Some(t.to_ascii_lowercase()),
                Some(_) => return None,
            };
            Some(CallingRoute::Instance {
                role: role.into(),
                ordinal,
                tenant,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_bot_and_the_instance() {
        assert_eq!(calling_path("primary"), "/api/calling/primary");
        assert_eq!(instance_path("paired", 3), "/api/calling/paired/3");
        assert_eq!(
            parse_calling_path("/api/calling/primary"),
            Some(CallingRoute::Bot {
                role: "primary".into()
            })
        );
        assert_eq!(
            parse_calling_path("/api/calling/paired/12"),
            Some(CallingRoute::Instance {
                role: "paired".into(),
                ordinal: 12,
                tenant: None
            })
        );
        let url = notification_url(
            "calls.example.com",
            "primary",
            0,
            "5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D",
        );
        assert_eq!(
            url,
            "https://calls.example.com/api/calling/primary/0/5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D"
        );
        assert_eq!(
            parse_calling_path(url.strip_prefix("https://calls.example.com").unwrap()),
            Some(CallingRoute::Instance {
                role: "primary".into(),
                ordinal: 0,
                tenant: Some("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d".into())
            })
        );
        for bad in [
            "/api/calling",
            "/api/calling/",
            "/api/calling/other",
            "/api/calling/primary/-1",
            "/api/calling/primary/01",
            "/api/calling/primary/x",
            "/api/calling/primary/0/not-a-tenant",
            "/api/calling/primary/0/5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d/more",
            "/api/callingprimary",
            "/metrics",
        ] {
            assert_eq!(parse_calling_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn callback_service_names_fit_for_the_longest_service_name() {
        let longest = "a".repeat(crate::crd::MAX_SERVICE_NAME as usize);
        assert!(instance_service(&longest, "paired", 19).len() <= 63);
        assert!(calling_service(&longest, "paired").len() <= 63);
        assert!(headless_service(&longest).len() <= 63);
        assert_ne!(
            calling_service("a", "primary"),
            calling_service("a", "paired")
        );
        assert_ne!(
            instance_service("a", "primary", 1),
            instance_service("a", "paired", 1)
        );
    }
}
