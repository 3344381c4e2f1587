//! E-mail notifications to a customer's contacts (`spec.contactEmails`).
//!
//! - the `notifications` section of the operator configuration is
//!   [`crate::config::NotificationsConfig`];
//! - [`due`]: which notifications are due, a pure function of the Tenant's status, its
//!   grants and services and what was already sent;
//! - [`message`]: one template per kind, plain text + HTML;
//! - [`transport`]: SMTP or Microsoft Graph `sendMail`.
//!
//! The Tenant controller calls [`reconcile`] once per reconcile, after the Tenant's status is
//! written. What is due is first recorded in `status.notifications` (state `Sending`, with its
//! own field manager, so the Tenant controller's status writes never touch it), then sent,
//! then recorded `Sent` or `Failed`. The records this process wrote are also kept in memory
//! until the Tenant cache shows them, so a reconcile that runs before the watch delivers the
//! write does not send again.

pub mod due;
pub mod message;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use lettre::message::Mailbox;
use serde_json::json;

use crate::config::{OperatorConfig, SecretSource};
use crate::controller::events::Events;
use crate::crd::{
    ConsentGrant, NotificationKind, NotificationRecord, RecordingService, Tenant, TenantStatus,
};
use crate::metrics::Metrics;
use due::{Due, Facts, GrantFacts, Policy, ServiceFacts};
use message::{ConsentLine, Letter, RetentionNotice};
use transport::{GraphMail, SendError, Transport};

/// The field manager of `status.notifications`.
pub const FIELD_MANAGER: &str = "recording-operator-notifications";

/// Services are listed again after this long (secret expiry moves in days).
const SERVICES_FRESH_FOR: Duration = Duration::from_secs(600);

/// Errors of setting notifications up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifications: {0}")]
    Config(String),
}

/// Sends the notifications of every tenant.
pub struct Notifier {
    transport: Transport,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    policy: Policy,
    send_timeout: Duration,
    secrets: Arc<dyn SecretSource>,
    metrics: Metrics,
    /// The records this process last wrote, by Tenant uid, until the cache shows them.
    written: Mutex<HashMap<String, Vec<NotificationRecord>>>,
    /// Services with an app registration, by Tenant uid, and when they were listed.
    services: Mutex<HashMap<String, (std::time::Instant, Vec<ServiceFacts>)>>,
}

impl Notifier {
    /// The notifier of the configuration; `None` (logged once) when no transport is set up.
    pub fn from_config(
        config: &OperatorConfig,
        secrets: Arc<dyn SecretSource>,
        metrics: Metrics,
        counters: Arc<crate::graph::Counters>,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(n) = &config.notifications else {
            tracing::info!("notifications: no transport configured (no `notifications` section): no e-mail is sent to the customers' contacts");
            return Ok(None);
        };
        let mut problems = Vec::new();
        n.check(&mut problems);
        if !problems.is_empty() {
            return Err(NotifyError::Config(problems.join("; ")));
        }
        let parse =
            |v: &str| message::parse_mailbox(v).map_err(|e| NotifyError::Config(e.to_string()));
        let transport = match (&n.smtp, &n.graph) {
            (Some(smtp), _) => Transport::Smtp(smtp.clone()),
            (None, Some(graph)) => {
                let authority = config.cloud.authority_host().map_err(NotifyError::Config)?;
                let graph_endpoint = config.cloud.graph_endpoint().map_err(NotifyError::Config)?;
                let http = crate::graph::http_client(n.send_timeout);
                Transport::Graph(Box::new(GraphMail {
                    config: graph.clone(),
                    tokens: crate::graph::token::TokenProvider::new(
                        http.clone(),
                        authority,
                        crate::config::graph_default_scope(&graph_endpoint),
                        config.polling.token_renew_before,
                        secrets.clone(),
                        counters,
                    ),
                    graph_endpoint,
                    http,
                }))
            }
            (None, None) => unreachable!("checked above"),
        };
        tracing::info!(transport = %transport.describe(), from = %n.from, "notifications: e-mail to the customers' contacts");
        Ok(Some(Notifier {
            transport,
            from: parse(&n.from)?,
            reply_to: n.reply_to.as_deref().map(parse).transpose()?,
            policy: Policy {
                storage_grace: n.storage_grace,
                max_per_hour: n.max_per_hour,
                retry_initial: n.retry_initial,
            },
            send_timeout: n.send_timeout,
            secrets,
            metrics,
            written: Mutex::default(),
            services: Mutex::default(),
        }))
    }

    /// The records as this process knows them: the cached Tenant's, and what it wrote since.
    fn records(&self, uid: &str, cached: &[NotificationRecord]) -> Vec<NotificationRecord> {
        let mut written = self.written.lock().expect("notifier lock");
        match written.get(uid) {
            Some(mine) => {
                let merged = due::merge(cached, mine);
                if merged.as_slice() == cached {
                    written.remove(uid);
                }
                merged
            }
            None => cached.to_vec(),
        }
    }

    fn remember(&self, uid: &str, records: &[NotificationRecord]) {
        self.written
            .lock()
            .expect("notifier lock")
            .insert(uid.to_string(), records.to_vec());
    }

    /// Forgets a deleted Tenant.
    pub fn forget(&self, uid: &str) {
        self.written.lock().expect("notifier lock").remove(uid);
        self.services.lock().expect("notifier lock").remove(uid);
    }
}

/// The grants of a tenant, as the decision reads them.
pub fn grant_facts(grants: &[Arc<ConsentGrant>]) -> Vec<GrantFacts> {
    grants
        .iter()
        .map(|g| {
            let status = g.status.as_ref();
            GrantFacts {
                key: g.spec.consent.clone(),
                optional: g.spec.optional,
                state: status.and_then(|s| s.state),
                since: status
                    .and_then(|s| crate::conditions::find(&s.conditions, "Granted"))
                    .map(|c| c.last_transition_time.0),
            }
        })
        .collect()
}

/// A service, as the decision reads it.
pub fn service_facts(service: &RecordingService) -> Option<ServiceFacts> {
    service.spec.app_registration.as_ref()?;
    let status = service.status.as_ref()?;
    Some(ServiceFacts {
        name: service.name_any(),
        expires_in_days: status.client_secret_expires_in_days,
        expiry_since: crate::conditions::find(&status.conditions, crate::conditions::SECRET_EXPIRY)
            .map(|c| c.last_transition_time.0),
    })
}

/// The letter of one due notification.
pub fn letter(
    tenant: &Tenant,
    status: &TenantStatus,
    config: &OperatorConfig,
    due: &Due,
    services: &[ServiceFacts],
) -> Letter {
    let line = |c: &crate::crd::tenant::ConsentSummary| ConsentLine {
        app_name: config
            .consents
            .get(&c.name)
            .map(|k| k.display_name.clone())
            .unwrap_or_else(|| c.name.clone()),
        allows: message::allows(&c.name).to_string(),
        optional: c.optional,
        url: c.consent_url.clone(),
        state: c.state.as_str().to_string(),
    };
    let consents = match due.kind {
        NotificationKind::OnboardingStarted => status.consents.iter().map(line).collect(),
        NotificationKind::ConsentRevoked => status
            .consents
            .iter()
            .filter(|c| due.about.contains(&c.name))
            .map(line)
            .collect(),
        _ => Vec::new(),
    };
    let storage_problem = (due.kind == NotificationKind::StorageFailing).then(|| {
        let failing: Vec<String> = status
            .storage
            .iter()
            .filter(|l| !l.ready)
            .map(|l| format!("{} storage in {}", l.role, l.location))
            .collect();
        let since = due
            .occurrence
            .split_once('@')
            .map(|(_, at)| at.to_string())
            .unwrap_or_default();
        (failing.join(", "), since)
    });
    let secret = due.about.first().and_then(|name| {
        services
            .iter()
            .find(|s| &s.name == name)
            .and_then(|s| Some((s.name.clone(), s.expires_in_days?)))
    });
    let retention = (due.kind == NotificationKind::RetentionShortened)
        .then(|| pending_retention(tenant))
        .flatten()
        .map(|p| RetentionNotice {
            days: p.days,
            applies: p.applies_time.0.strftime("%Y-%m-%d %H:%M UTC").to_string(),
            recordings: p.blobs_affected,
        });
    Letter {
        kind: due.kind,
        customer: tenant.spec.customer_name.clone(),
        license_type: tenant.spec.license.display_type().to_string(),
        quick_start_url: status.quick_start_url.clone().or_else(|| {
            tenant
                .status
                .as_ref()
                .and_then(|s| s.quick_start_url.clone())
        }),
        consents,
        storage_problem,
        secret,
        retention,
    }
}

/// The shortened retention the sweep announced, as last observed.
fn pending_retention(tenant: &Tenant) -> Option<&crate::crd::tenant::PendingRetention> {
    tenant.status.as_ref()?.retention.as_ref()?.pending.as_ref()
}

/// What sending needs of the Tenant controller: the cluster, the configuration and the Events.
pub struct Handles<'a> {
    pub client: &'a kube::Client,
    pub config: &'a OperatorConfig,
    pub events: &'a Events,
}

/// Sends what is due for `tenant` given the status just computed; returns when to look
/// again. Failures are recorded in status, Events and metrics; only a failure to record is
/// an error (nothing is sent unrecorded).
pub async fn reconcile(
    tenant: &Tenant,
    status: &TenantStatus,
    grants: &[Arc<ConsentGrant>],
    notifier: &Notifier,
    ctx: &Handles<'_>,
) -> Result<Option<Duration>, kube::Error> {
    let Some(uid) = tenant.meta().uid.clone() else {
        return Ok(None);
    };
    let cached = tenant
        .status
        .as_ref()
        .map(|s| s.notifications.clone())
        .unwrap_or_default();
    let mut records = notifier.records(&uid, &cached);
    let mine = crate::controller::grants::naming(&tenant.name_any(), grants);
    let grant_facts = grant_facts(&mine);
    let services = services_of(notifier, tenant, &uid, ctx).await?;
    let plan_at = |records: &[NotificationRecord], now: Timestamp| {
        let facts = Facts {
            uid: &uid,
            status,
            grants: &grant_facts,
            services: &services,
            retention: pending_retention(tenant),
            records,
            now,
        };
        due::plan(&facts, &notifier.policy)
    };
    let now = Timestamp::now();
    let plan = plan_at(&records, now);
    if !plan.held.is_empty() {
        tracing::info!(tenant = %tenant.name_any(), held = plan.held.len(), "notifications: hourly cap reached; the rest waits");
    }
    if plan.send.is_empty() {
        return Ok(plan.wake);
    }

    let to: Vec<Mailbox> = tenant
        .spec
        .contact_emails
        .iter()
        .filter_map(|a| match message::parse_mailbox(a) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(tenant = %tenant.name_any(), error = %e, "notifications: spec.contactEmails entry skipped");
                None
            }
        })
        .collect();
    if to.is_empty() {
        return Ok(plan.wake);
    }

    // 1. Recorded before anything is sent.
    records = due::begin(&records, &plan.send, to.len(), now);
    write(tenant, &records, ctx).await?;
    notifier.remember(&uid, &records);

    // 2. Sent, one message per occurrence.
    for d in &plan.send {
        let rendered = message::render(&letter(tenant, status, ctx.config, d, &services));
        let outcome =
            match message::build(&notifier.from, notifier.reply_to.as_ref(), &to, &rendered) {
                Ok(m) => {
                    notifier
                        .transport
                        .send(&m, &notifier.secrets, notifier.send_timeout)
                        .await
                }
                Err(e) => Err(SendError::Config(e.to_string())),
            };
        let kind = d.kind.as_str();
        match &outcome {
            Ok(()) => {
                notifier.metrics.notification_sent(kind);
                tracing::info!(tenant = %tenant.name_any(), kind, recipients = to.len(), "notification sent");
                ctx.events
                    .publish(
                        tenant,
                        false,
                        "Notified",
                        "Notify",
                        format!(
                            "{kind} e-mail sent to {} contact(s): {}",
                            to.len(),
                            rendered.subject
                        ),
                    )
                    .await;
            }
            Err(e) => {
                notifier.metrics.notification_failed(kind, e.reason());
                tracing::warn!(tenant = %tenant.name_any(), kind, reason = e.reason(), error = %e, "notification failed");
                ctx.events
                    .publish(
                        tenant,
                        true,
                        "NotificationFailed",
                        "Notify",
                        format!("{kind} e-mail not sent: {e}"),
                    )
                    .await;
            }
        }
        due::finish(
            &notifier.policy,
            &mut records,
            d.kind,
            &d.occurrence,
            outcome.map_err(|e| e.to_string()),
            Timestamp::now(),
        );
    }

    // 3. The outcome, recorded.
    write(tenant, &records, ctx).await?;
    notifier.remember(&uid, &records);
    let again = plan_at(&records, Timestamp::now());
    Ok(match again.send.is_empty() {
        true => again.wake,
        false => Some(Duration::from_secs(1)),
    })
}

/// The tenant's services with an app registration, listed at most every ten minutes.
async fn services_of(
    notifier: &Notifier,
    tenant: &Tenant,
    uid: &str,
    ctx: &Handles<'_>,
) -> Result<Vec<ServiceFacts>, kube::Error> {
    if let Some((at, facts)) = notifier.services.lock().expect("notifier lock").get(uid) {
        if at.elapsed() < SERVICES_FRESH_FOR {
            return Ok(facts.clone());
        }
    }
    let api: Api<RecordingService> = Api::namespaced(ctx.client.clone(), &tenant.namespace_name());
    let name = tenant.name_any();
    let facts: Vec<ServiceFacts> = match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter(|s| s.spec.tenant_ref == name)
            .filter_map(service_facts)
            .collect(),
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e),
    };
    notifier
        .services
        .lock()
        .expect("notifier lock")
        .insert(uid.to_string(), (std::time::Instant::now(), facts.clone()));
    Ok(facts)
}

/// Writes `status.notifications` with the notifications' own field manager.
async fn write(
    tenant: &Tenant,
    records: &[NotificationRecord],
    ctx: &Handles<'_>,
) -> Result<(), kube::Error> {
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "status": {"notifications": records},
    });
    api.patch_status(
        &tenant.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
