//! The known app registration: its check with Entra, what a check found, and when to check again.

use super::*;
use crate::config::DIRECTORY_CONSENT;
use crate::graph::consent::may_read_others;
pub use crate::graph::known_app::ConsentedBy;
use crate::graph::known_app::{self, DirectoryView};

// ---------------------------------------------------------------------------------------------
// The known app registration: what a check found
// ---------------------------------------------------------------------------------------------

/// The answer about an app registration's credentials.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthOutcome {
    /// A token was issued; `expiry` is what Graph said about the client secrets, `owners`
    /// who owns the registration in the customer's directory (`None`: Graph could not tell).
    Authenticated {
        expiry: Expiry,
        owners: Option<Vec<String>>,
        /// Where the recording permissions were read.
        permissions: PermissionSource,
        /// Who consented to the app, as far as the directory audit log tells.
        consented_by: ConsentedBy,
    },
    /// Entra refused, for a reason the platform team must fix.
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// Where a known app registration's recording permissions were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermissionSource {
    /// The app's service principal's app role assignments, read through Microsoft Graph with
    /// the `directory` consent's token: the truth.
    AppRoleAssignments,
    /// The `roles` claim of the app's own token (a hint); the text says why Graph was not
    /// asked or did not answer.
    Token(String),
}

impl PermissionSource {
    /// The value of `status.recordingPermissionsSource`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PermissionSource::AppRoleAssignments => "AppRoleAssignments",
            PermissionSource::Token(_) => "TokenRoles",
        }
    }

    /// In words, for condition messages.
    pub fn describe(&self) -> String {
        match self {
            PermissionSource::AppRoleAssignments => format!(
                "read from its service principal's app role assignments with the {DIRECTORY_CONSENT} consent"
            ),
            PermissionSource::Token(why) => {
                format!("read from its token's roles claim, because {why}")
            }
        }
    }
}

/// What the platform's `directory` application can read about the app registration, or why
/// it cannot be asked.
async fn directory_view(
    sctx: &ServiceContext,
    inputs: &AuthInputs,
    sp_id: Option<&str>,
) -> Result<DirectoryView, String> {
    let ctx = sctx.shared.as_ref();
    let Some(directory) = ctx.config.consents.get(DIRECTORY_CONSENT) else {
        return Err(format!(
            "the operator's configuration has no {DIRECTORY_CONSENT} consent"
        ));
    };
    let token = ctx
        .checker
        .tokens()
        .token(
            &inputs.tenant_id,
            &directory.app_id,
            directory.client_secret.as_ref(),
        )
        .await
        .map_err(|e| {
            format!("the {DIRECTORY_CONSENT} consent is not usable in the customer's tenant ({e})")
        })?;
    if !may_read_others(&token) {
        return Err(format!(
            "the {DIRECTORY_CONSENT} consent does not hold Application.Read.All or Directory.Read.All yet"
        ));
    }
    let view = known_app::read(&sctx.graph, &token, &inputs.client_id, sp_id).await;
    if view.as_ref().is_ok_and(|v| v.audit_denied) {
        // The token's permissions are fixed at issue: the next check asks with a new one,
        // which holds AuditLog.Read.All once the customer grants it.
        ctx.checker
            .tokens()
            .invalidate(&inputs.tenant_id, &directory.app_id);
    }
    view.map_err(|e| {
        if matches!(e, GraphError::Graph { status: 401, .. }) {
            ctx.checker
                .tokens()
                .invalidate(&inputs.tenant_id, &directory.app_id);
        }
        format!(
            "Microsoft Graph could not be asked with the {DIRECTORY_CONSENT} consent's token ({e})"
        )
    })
}

/// The soonest client secret expiry of the app registration.
#[derive(Clone, Debug, PartialEq)]
pub enum Expiry {
    /// The soonest end of a secret still valid.
    At(Timestamp),
    /// Graph lists no secret that is still valid.
    NoneValid,
    /// Graph could not be asked (the message says why).
    Unreadable(String),
}

/// The app registration's id and the soonest end of its valid secrets, when known.
pub(super) fn secret_expiry<'a>(
    service: &'a RecordingService,
    auth: &AuthState,
) -> Option<(&'a str, Timestamp)> {
    let registration = service.spec.app_registration.as_ref()?;
    match auth {
        AuthState::Checked(AuthOutcome::Authenticated {
            expiry: Expiry::At(end),
            ..
        }) => Some((registration.client_id.as_str(), *end)),
        _ => None,
    }
}

/// What the status shows about the app registration.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthState {
    /// No `spec.appRegistration`.
    NotUsed,
    /// Not checked: the message says why.
    NotChecked(String),
    /// The last check could not get an answer (throttling, outage) and none is known.
    Unavailable(String),
    Checked(AuthOutcome),
}

/// What a refused token request means for a known app registration: `Ok` a definitive answer
/// (the condition's reason and message), `Err` a passing problem to retry.
pub fn classify_auth_error(
    error: &GraphError,
    registration: &AppRegistration,
    namespace: &str,
) -> Result<AuthOutcome, String> {
    let app = &registration.client_id;
    let tenant = &registration.tenant_id;
    let secret = format!(
        "Secret {namespace}/{} key {}",
        registration.client_secret_ref.name,
        client_secret_key(registration)
    );
    let rejected =
        |reason: &'static str, message: String| Ok(AuthOutcome::Rejected { reason, message });
    match error {
        GraphError::InvalidSecret { .. } => rejected(
            reason::INVALID_CLIENT_SECRET,
            format!("Entra refused the client secret in {secret} for application {app} (AADSTS7000215): store the secret's value, not its id"),
        ),
        GraphError::SecretExpired { .. } => rejected(
            reason::CLIENT_SECRET_EXPIRED,
            format!("the client secret in {secret} for application {app} has expired (AADSTS7000222): create a new one and update the Secret"),
        ),
        GraphError::TenantNotFound { .. } => rejected(
            reason::TENANT_NOT_FOUND,
            format!("tenant {tenant} of the app registration does not exist (AADSTS90002): check spec.appRegistration.tenantId"),
        ),
        GraphError::NotConsented { code, .. } => rejected(
            reason::APP_NOT_FOUND,
            format!("application {app} is not known in tenant {tenant} (AADSTS{code}): check spec.appRegistration.clientId and tenantId"),
        ),
        GraphError::MissingSecret { reason, .. } => rejected(reason::SECRET_NOT_FOUND, format!("the client secret cannot be read: {reason}")),
        GraphError::TokenRejected { .. }
        | GraphError::Misconfigured { .. }
        | GraphError::OtherCloud { .. } => rejected(reason::TOKEN_REJECTED, error.to_string()),
        GraphError::Throttled { .. }
        | GraphError::Unavailable { .. }
        | GraphError::Graph { .. }
        | GraphError::Protocol { .. } => Err(error.to_string()),
    }
}

/// Why the expiry could not be read, in words for the platform team.
pub(super) fn expiry_problem(error: &GraphError, app: &str) -> String {
    match error {
        GraphError::Graph { status: 403, .. } => format!(
            "Graph refused to read application {app}: the app registration needs the application permission Application.Read.All (admin-consented in its home tenant) to report its secrets' expiry"
        ),
        GraphError::Graph { status: 404, .. } => format!(
            "application {app} is not registered in tenant of spec.appRegistration.tenantId, so its secrets' expiry cannot be read there"
        ),
        other => format!("the client secrets' expiry could not be read: {other}"),
    }
}

/// A check that got no answer (throttling, outage) and when to try again.
#[derive(Clone)]
pub(super) struct FailedCheck {
    inputs: AuthInputs,
    retry_at: Instant,
    message: String,
}

/// What the app registration check last answered, and for which inputs.
#[derive(Clone)]
pub(super) struct AuthMemo {
    inputs: AuthInputs,
    checked_at: Instant,
    valid_for: Duration,
    outcome: AuthOutcome,
}

/// Everything a check's answer depends on; a change means checking again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AuthInputs {
    tenant_id: String,
    client_id: String,
    secret_name: String,
    secret_key: String,
    /// The Secret's `resourceVersion`: a rotated (or deleted) secret is checked at once.
    secret_version: Option<String>,
    /// The service's `recording.m365.io/recheck-at` annotation: a new value asks for a check
    /// at once.
    recheck: Option<String>,
}

/// The `resourceVersion` of the Secret holding the service's client secret, from the Secrets'
/// metadata watch: it changes whenever the secret is rotated.
pub(super) fn client_secret_version(
    service: &RecordingService,
    registration: &AppRegistration,
    sctx: &ServiceContext,
) -> Option<String> {
    sctx.secrets.version(
        &service.namespace().unwrap_or_default(),
        &registration.client_secret_ref.name,
    )
}

/// Checks the app registration when due (first time, inputs changed, the Secret changed, or a
/// day passed), else answers from the last check. Returns what the status shows and when to
/// look again.
pub(super) async fn authenticate(
    service: &RecordingService,
    registration: &AppRegistration,
    sctx: &ServiceContext,
) -> (AuthState, Duration) {
    let ctx = sctx.shared.as_ref();
    let namespace = service.namespace().unwrap_or_default();
    let key = crate::controller::object_key(service);
    let secret_name = registration.client_secret_ref.name.clone();
    let secret_key = client_secret_key(registration).to_string();
    let inputs = AuthInputs {
        tenant_id: registration.tenant_id.to_ascii_lowercase(),
        client_id: registration.client_id.to_ascii_lowercase(),
        secret_version: client_secret_version(service, registration, sctx),
        secret_name,
        secret_key,
        recheck: service.annotations().get(RECHECK_ANNOTATION).cloned(),
    };

    let remembered = sctx
        .checks
        .lock()
        .expect("auth checks lock")
        .get(&key)
        .cloned();
    if let Some(memo) = remembered.as_ref().filter(|m| m.inputs == inputs) {
        let age = memo.checked_at.elapsed();
        if age < memo.valid_for {
            return (
                AuthState::Checked(memo.outcome.clone()),
                memo.valid_for - age,
            );
        }
    }

    // After throttling or an outage, not before the wait is over (other changes to the
    // service or its bots must not hammer a throttled token endpoint).
    let waiting = sctx
        .failing
        .lock()
        .expect("failed checks lock")
        .get(&key)
        .filter(|f| f.inputs == inputs)
        .cloned();
    if let Some(failed) = waiting {
        let now = Instant::now();
        if failed.retry_at > now {
            let state = match remembered.filter(|m| m.inputs == inputs) {
                Some(memo) => AuthState::Checked(memo.outcome),
                None => AuthState::Unavailable(failed.message),
            };
            return (state, failed.retry_at - now);
        }
    }

    // A fresh token request is the check: a cached token would vouch for an old secret.
    // Cached apart from the platform's tokens, even for a platform app's id.
    let tokens = ctx.checker.tokens();
    let reference = SecretRef::SecretRef {
        namespace: namespace.clone(),
        name: inputs.secret_name.clone(),
        key: inputs.secret_key.clone(),
    };
    tokens.invalidate_foreign(&inputs.tenant_id, &inputs.client_id, &reference);
    let answer = match tokens
        .foreign_token(&inputs.tenant_id, &inputs.client_id, &reference)
        .await
    {
        Ok(token) => {
            // The directory consent's view first: the truth about the permissions, and the
            // secrets, owners and consent in the same request.
            let view = directory_view(sctx, &inputs, token.object_id.as_deref()).await;
            let (held, permissions) = match &view {
                Ok(v) => match &v.roles {
                    Ok(roles) => (Some(roles.as_slice()), PermissionSource::AppRoleAssignments),
                    Err(e) => (
                        token.roles.as_deref(),
                        PermissionSource::Token(format!(
                            "Microsoft Graph did not list the app's app role assignments ({e})"
                        )),
                    ),
                },
                Err(why) => (token.roles.as_deref(), PermissionSource::Token(why.clone())),
            };
            if let Some(missing) = recording_permissions_missing(held, &ctx.config) {
                Ok((
                    AuthOutcome::Rejected {
                        reason: reason::RECORDING_PERMISSIONS_MISSING,
                        message: format!(
                            "Entra issued a token for application {} in tenant {}, but {missing} ({}): the customer's Global admin must grant them to the app registration (admin consent)",
                            inputs.client_id, inputs.tenant_id, permissions.describe()
                        ),
                    },
                    AUTH_RECHECK,
                ))
            } else {
                let view = view.ok();
                let credentials = match view.as_ref().map(|v| v.credentials.clone()) {
                    Some(Ok(read)) => Ok(read),
                    // Not readable by the directory application: the app itself may.
                    _ => password_credentials(&sctx.graph, &token, &inputs.client_id).await,
                };
                let (expiry, valid_for) = match credentials {
                    Ok(credentials) => {
                        match soonest_future_expiry(&credentials, Timestamp::now()) {
                            Some(end) => (Expiry::At(end), AUTH_RECHECK),
                            None => (Expiry::NoneValid, AUTH_RECHECK),
                        }
                    }
                    Err(e) => {
                        let wait = if e.is_transient() {
                            e.retry_after().unwrap_or(EXPIRY_RETRY)
                        } else {
                            AUTH_RECHECK
                        };
                        (
                            Expiry::Unreadable(expiry_problem(&e, &inputs.client_id)),
                            wait,
                        )
                    }
                };
                // Who registered the app (its owners), when Graph lets either app read them.
                let owners = match view.as_ref().map(|v| v.owners.clone()) {
                    Some(Ok(owners)) => Some(owners),
                    _ => match application::owners(&sctx.graph, &token, &inputs.client_id).await {
                        Ok(owners) => Some(owners),
                        Err(e) => {
                            tracing::debug!(service = %service.name_any(), error = %e, "could not read the app registration's owners");
                            None
                        }
                    },
                };
                let consented_by = match &view {
                    Some(v) => v.consented_by.clone(),
                    None => ConsentedBy::Unknown(format!(
                        "the directory audit log is read with the {DIRECTORY_CONSENT} consent, which cannot be used: {}",
                        permissions.describe()
                    )),
                };
                Ok((
                    AuthOutcome::Authenticated {
                        expiry,
                        owners,
                        permissions,
                        consented_by,
                    },
                    valid_for,
                ))
            }
        }
        Err(e) => classify_auth_error(&e, registration, &namespace)
            .map(|o| (o, AUTH_RECHECK))
            .map_err(|m| (m, e.retry_after())),
    };

    match answer {
        Ok((outcome, valid_for)) => {
            tracing::info!(service = %service.name_any(), namespace = %namespace, outcome = ?outcome_label(&outcome), "checked the app registration");
            let mut checks = sctx.checks.lock().expect("auth checks lock");
            // Deleted services (no finalizer: no last reconcile) are forgotten here.
            let live: BTreeSet<String> = sctx
                .services
                .state()
                .iter()
                .map(|s| crate::controller::object_key(s.as_ref()))
                .collect();
            checks.retain(|k, _| live.contains(k));
            // Nor is a namespace without a service left watched for its Secrets (it may be on
            // its way out with its Tenant and the RoleBinding that lets the operator read it).
            sctx.secrets.retain(
                &sctx
                    .services
                    .state()
                    .iter()
                    .filter_map(|s| s.namespace())
                    .collect(),
            );
            ctx.metrics
                .retain_client_secrets(sctx.services.state().iter().map(|s| s.as_ref()));
            sctx.failing
                .lock()
                .expect("failed checks lock")
                .retain(|k, _| k != &key && live.contains(k));
            checks.insert(
                key.clone(),
                AuthMemo {
                    inputs,
                    checked_at: Instant::now(),
                    valid_for,
                    outcome: outcome.clone(),
                },
            );
            drop(checks);
            ctx.backoff.succeeded(&key, Retried::Auth);
            (AuthState::Checked(outcome), valid_for)
        }
        Err((message, retry_after)) => {
            let wait = retry_after.unwrap_or_else(|| ctx.backoff.failed(&key, Retried::Auth));
            tracing::warn!(service = %service.name_any(), namespace = %namespace, error = %message, retry_in = ?wait, "could not check the app registration");
            sctx.failing.lock().expect("failed checks lock").insert(
                key.clone(),
                FailedCheck {
                    inputs: inputs.clone(),
                    retry_at: Instant::now() + wait,
                    message: message.clone(),
                },
            );
            // The last answer for the same inputs still stands until a check gets through.
            let state = match remembered.filter(|m| m.inputs == inputs) {
                Some(memo) => AuthState::Checked(memo.outcome),
                None => AuthState::Unavailable(message),
            };
            (state, wait)
        }
    }
}

/// The recording permissions (the application permissions of the platform's `recording`
/// consent) a known app registration's token lacks, in words; `None` when it holds them all.
/// The token's `roles` claim is what Entra granted the app in the customer's tenant; a token
/// whose claims cannot be read proves nothing.
pub fn recording_permissions_missing(
    roles: Option<&[String]>,
    config: &OperatorConfig,
) -> Option<String> {
    let required = config
        .consents
        .get(RECORDING_CONSENT)
        .map(|c| c.application_permissions.as_slice())
        .unwrap_or_default();
    if required.is_empty() {
        return None;
    }
    let Some(roles) = roles else {
        return Some(format!(
            "its token cannot be read, so the recording permissions ({}) cannot be checked",
            required.join(", ")
        ));
    };
    let missing: Vec<&str> = required
        .iter()
        .filter(|p| !roles.iter().any(|r| r.eq_ignore_ascii_case(p)))
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "its token lacks the recording permission(s) {}",
            missing.join(", ")
        )
    })
}

/// A known app registration must be registered in the Tenant's own Entra tenant: its
/// credentials are the customer's, and the bots sign in to the customer's calls with them.
pub fn wrong_tenant(registration: &AppRegistration, tenant_id: &str) -> Option<AuthOutcome> {
    (!registration.tenant_id.eq_ignore_ascii_case(tenant_id)).then(|| AuthOutcome::Rejected {
        reason: reason::WRONG_TENANT,
        message: format!(
            "spec.appRegistration.tenantId {} is not the Entra tenant of the Tenant ({tenant_id}): a known app registration must belong to the customer's own tenant",
            registration.tenant_id
        ),
    })
}

pub(super) fn outcome_label(outcome: &AuthOutcome) -> &'static str {
    match outcome {
        AuthOutcome::Authenticated { .. } => "Authenticated",
        AuthOutcome::Rejected { reason, .. } => reason,
    }
}
