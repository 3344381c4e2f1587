//! The known app registration: its check with Entra, what a check found, and when to check again.

use super::*;

// ---------------------------------------------------------------------------------------------
// The known app registration: what a check found
// ---------------------------------------------------------------------------------------------

/// The answer about an app registration's credentials.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthOutcome {
    /// A token was issued; `expiry` is what Graph said about the client secrets.
    Authenticated { expiry: Expiry },
    /// Entra refused, for a reason the platform team must fix.
    Rejected {
        reason: &'static str,
        message: String,
    },
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
            let (expiry, valid_for) =
                match password_credentials(&sctx.graph, &token, &inputs.client_id).await {
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
            Ok((AuthOutcome::Authenticated { expiry }, valid_for))
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

pub(super) fn outcome_label(outcome: &AuthOutcome) -> &'static str {
    match outcome {
        AuthOutcome::Authenticated { .. } => "Authenticated",
        AuthOutcome::Rejected { reason, .. } => reason,
    }
}
