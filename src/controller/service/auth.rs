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
    let key = crate::controller::object_key(service);
    let inputs = AuthInputs::new(
        registration,
        client_secret_version(service, registration, sctx),
        service.annotations().get(RECHECK_ANNOTATION).cloned(),
    );
    let memo = remembered(&sctx.checks, &key, |m| m.inputs == inputs);
    let failed = remembered(&sctx.failing, &key, |f| f.inputs == inputs);
    if let Some(answer) = answer_without_checking(memo.as_ref(), failed.as_ref(), Instant::now()) {
        return answer;
    }
    match check_registration(service, registration, &inputs, sctx).await {
        Ok((outcome, valid_for)) => {
            remember_answer(service, &key, inputs, &outcome, valid_for, sctx);
            (AuthState::Checked(outcome), valid_for)
        }
        Err((message, retry_after)) => {
            let wait = remember_failure(service, &key, inputs, &message, retry_after, sctx);
            // The last answer for the same inputs still stands until a check gets through.
            (standing_state(memo.as_ref(), message), wait)
        }
    }
}

impl AuthInputs {
    fn new(
        registration: &AppRegistration,
        secret_version: Option<String>,
        recheck: Option<String>,
    ) -> Self {
        AuthInputs {
            tenant_id: registration.tenant_id.to_ascii_lowercase(),
            client_id: registration.client_id.to_ascii_lowercase(),
            secret_name: registration.client_secret_ref.name.clone(),
            secret_key: client_secret_key(registration).to_string(),
            secret_version,
            recheck,
        }
    }
}

/// What is remembered of the service (a check's answer or failure), when `current` holds.
fn remembered<T: Clone>(
    memory: &Mutex<HashMap<String, T>>,
    key: &str,
    current: impl Fn(&T) -> bool,
) -> Option<T> {
    memory
        .lock()
        .expect("auth memory lock")
        .get(key)
        .filter(|m| current(m))
        .cloned()
}

/// The answer without asking Entra, from what is remembered for the same inputs: the last
/// answer while it is valid; after throttling or an outage, the last answer (or that it is
/// unavailable) until the wait is over, so other changes to the service or its bots do not
/// hammer a throttled token endpoint. `None`: check now.
fn answer_without_checking(
    memo: Option<&AuthMemo>,
    failed: Option<&FailedCheck>,
    now: Instant,
) -> Option<(AuthState, Duration)> {
    if let Some(memo) = memo {
        let age = now.saturating_duration_since(memo.checked_at);
        if age < memo.valid_for {
            return Some((
                AuthState::Checked(memo.outcome.clone()),
                memo.valid_for - age,
            ));
        }
    }
    let failed = failed.filter(|f| f.retry_at > now)?;
    Some((
        standing_state(memo, failed.message.clone()),
        failed.retry_at - now,
    ))
}

/// What the status shows while a check gets no answer: the last answer, else that none came.
fn standing_state(memo: Option<&AuthMemo>, message: String) -> AuthState {
    match memo {
        Some(memo) => AuthState::Checked(memo.outcome.clone()),
        None => AuthState::Unavailable(message),
    }
}

/// Asks Entra for a fresh token of the app registration — the token request is the check: a
/// cached token would vouch for an old secret — then, with it, Graph for the secrets' expiry
/// and the registration's owners. `Err`: no answer (the message, and any wait Entra asked
/// for).
async fn check_registration(
    service: &RecordingService,
    registration: &AppRegistration,
    inputs: &AuthInputs,
    sctx: &ServiceContext,
) -> Result<(AuthOutcome, Duration), (String, Option<Duration>)> {
    let ctx = sctx.shared.as_ref();
    let namespace = service.namespace().unwrap_or_default();
    // Cached apart from the platform's tokens, even for a platform app's id.
    let tokens = ctx.checker.tokens();
    let reference = SecretRef::SecretRef {
        namespace: namespace.clone(),
        name: inputs.secret_name.clone(),
        key: inputs.secret_key.clone(),
    };
    tokens.invalidate_foreign(&inputs.tenant_id, &inputs.client_id, &reference);
    let token = match tokens
        .foreign_token(&inputs.tenant_id, &inputs.client_id, &reference)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            return classify_auth_error(&e, registration, &namespace)
                .map(|o| (o, AUTH_RECHECK))
                .map_err(|m| (m, e.retry_after()))
        }
    };
    // The directory consent's view first: the truth about the permissions, and the secrets,
    // owners and consent in the same request.
    let view = directory_view(sctx, inputs, token.object_id.as_deref()).await;
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
    if let Some(rejection) = permissions_rejection(held, &permissions, &ctx.config, inputs) {
        return Ok((rejection, AUTH_RECHECK));
    }
    let view = view.ok();
    let credentials = match view.as_ref().map(|v| v.credentials.clone()) {
        Some(Ok(read)) => Ok(read),
        // Not readable by the directory application: the app itself may.
        _ => password_credentials(&sctx.graph, &token, &inputs.client_id).await,
    };
    let (expiry, valid_for) = expiry_answer(credentials, &inputs.client_id, Timestamp::now());
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
    let outcome = AuthOutcome::Authenticated {
        expiry,
        owners,
        permissions,
        consented_by,
    };
    Ok((outcome, valid_for))
}

/// A token Entra issued without every recording permission: refused, for the customer's
/// admin to grant them.
fn permissions_rejection(
    roles: Option<&[String]>,
    source: &PermissionSource,
    config: &OperatorConfig,
    inputs: &AuthInputs,
) -> Option<AuthOutcome> {
    let missing = recording_permissions_missing(roles, config)?;
    Some(AuthOutcome::Rejected {
        reason: reason::RECORDING_PERMISSIONS_MISSING,
        message: format!(
            "Entra issued a token for application {} in tenant {}, but {missing} ({}): the customer's Global admin must grant them to the app registration (admin consent)",
            inputs.client_id,
            inputs.tenant_id,
            source.describe()
        ),
    })
}

/// What Graph's list of the app's client secrets says about their expiry at `now`, and how
/// long that answer holds: a day, or until the wait Graph asked for when it could not answer.
fn expiry_answer(
    credentials: Result<Vec<application::PasswordCredential>, GraphError>,
    app: &str,
    now: Timestamp,
) -> (Expiry, Duration) {
    match credentials {
        Ok(credentials) => match soonest_future_expiry(&credentials, now) {
            Some(end) => (Expiry::At(end), AUTH_RECHECK),
            None => (Expiry::NoneValid, AUTH_RECHECK),
        },
        Err(e) => {
            let wait = if e.is_transient() {
                e.retry_after().unwrap_or(EXPIRY_RETRY)
            } else {
                AUTH_RECHECK
            };
            (Expiry::Unreadable(expiry_problem(&e, app)), wait)
        }
    }
}

/// Remembers a check's answer, and forgets what belongs to services that are gone.
fn remember_answer(
    service: &RecordingService,
    key: &str,
    inputs: AuthInputs,
    outcome: &AuthOutcome,
    valid_for: Duration,
    sctx: &ServiceContext,
) {
    let namespace = service.namespace().unwrap_or_default();
    tracing::info!(service = %service.name_any(), namespace = %namespace, outcome = ?outcome_label(outcome), "checked the app registration");
    sctx.failing.lock().expect("auth memory lock").remove(key);
    sctx.checks.lock().expect("auth memory lock").insert(
        key.to_owned(),
        AuthMemo {
            inputs,
            checked_at: Instant::now(),
            valid_for,
            outcome: outcome.clone(),
        },
    );
    sctx.shared.backoff.succeeded(key, Retried::Auth);
}

/// Forgets the checks, failures and client-secret gauges of the services deleted since the
/// last call (no finalizer: no last reconcile; the service watch tells of them, see
/// [`ServiceIndex::take_gone`](crate::controller::index::ServiceIndex::take_gone)). Nor is a
/// namespace left without a service watched for its Secrets and ConfigMaps (it may be on its way out with
/// its Tenant and the RoleBinding that lets the operator read it).
pub(super) fn forget_gone_services(sctx: &ServiceContext) {
    let index = &sctx.shared.caches.service_index;
    let gone = index.take_gone();
    if gone.is_empty() {
        return;
    }
    let mut checks = sctx.checks.lock().expect("auth memory lock");
    let mut failing = sctx.failing.lock().expect("auth memory lock");
    for service in gone {
        let key = service.to_string();
        checks.remove(&key);
        failing.remove(&key);
        let namespace = service.namespace.as_deref().unwrap_or_default();
        sctx.shared
            .metrics
            .forget_client_secret(namespace, &service.name);
        if !index.holds_namespace(namespace) {
            sctx.secrets.forget(namespace);
            sctx.config_maps.forget(namespace);
        }
    }
}

/// Remembers a check that got no answer; returns the wait before the next: the one Entra
/// asked for, else the service's backoff.
fn remember_failure(
    service: &RecordingService,
    key: &str,
    inputs: AuthInputs,
    message: &str,
    retry_after: Option<Duration>,
    sctx: &ServiceContext,
) -> Duration {
    let wait = retry_after.unwrap_or_else(|| sctx.shared.backoff.failed(key, Retried::Auth));
    let namespace = service.namespace().unwrap_or_default();
    tracing::warn!(service = %service.name_any(), namespace = %namespace, error = %message, retry_in = ?wait, "could not check the app registration");
    sctx.failing.lock().expect("auth memory lock").insert(
        key.to_owned(),
        FailedCheck {
            inputs,
            retry_at: Instant::now() + wait,
            message: message.to_owned(),
        },
    );
    wait
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::application::PasswordCredential;

    fn registration() -> AppRegistration {
        serde_json::from_value(json!({
            "tenantId": "5B0E7D3A-2C4F-4A8E-B1D6-7E9F0A2C4B6D",
            "clientId": "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7",
            "clientSecretRef": {"name": "app"}
        }))
        .unwrap()
    }

    fn inputs() -> AuthInputs {
        AuthInputs::new(&registration(), Some("41".into()), None)
    }

    fn authenticated() -> AuthOutcome {
        AuthOutcome::Authenticated {
            expiry: Expiry::NoneValid,
            owners: None,
            permissions: PermissionSource::AppRoleAssignments,
            consented_by: ConsentedBy::Unknown("no record".into()),
        }
    }

    fn memo(checked_at: Instant) -> AuthMemo {
        AuthMemo {
            inputs: inputs(),
            checked_at,
            valid_for: AUTH_RECHECK,
            outcome: authenticated(),
        }
    }

    fn failed(retry_at: Instant) -> FailedCheck {
        FailedCheck {
            inputs: inputs(),
            retry_at,
            message: "Microsoft Entra ID is throttling requests".into(),
        }
    }

    #[test]
    fn inputs_ignore_the_case_of_ids_and_see_a_rotated_secret_or_a_recheck_request() {
        let mut upper = registration();
        upper.client_id = upper.client_id.to_ascii_uppercase();
        assert_eq!(AuthInputs::new(&upper, Some("41".into()), None), inputs());
        assert_eq!(inputs().tenant_id, "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d");
        assert_ne!(AuthInputs::new(&upper, Some("42".into()), None), inputs());
        let asked = AuthInputs::new(
            &upper,
            Some("41".into()),
            Some("2026-12-07T10:00:00Z".into()),
        );
        assert_ne!(asked, inputs());
    }

    #[test]
    fn a_remembered_answer_stands_for_a_day_then_the_registration_is_checked_again() {
        let checked = Instant::now();
        let hour = Duration::from_secs(3600);
        let (state, wait) = answer_without_checking(Some(&memo(checked)), None, checked + hour)
            .expect("answered from memory");
        assert_eq!(state, AuthState::Checked(authenticated()));
        assert_eq!(wait, AUTH_RECHECK - hour);
        assert!(
            answer_without_checking(Some(&memo(checked)), None, checked + AUTH_RECHECK).is_none()
        );
        assert!(answer_without_checking(None, None, checked).is_none());
    }

    #[test]
    fn after_throttling_nothing_is_asked_until_the_wait_is_over() {
        let now = Instant::now();
        let wait = Duration::from_secs(30);
        let stale = memo(now);
        let later = now + AUTH_RECHECK;
        // The last answer stands while the wait runs, even once it is due.
        let (state, left) =
            answer_without_checking(Some(&stale), Some(&failed(later + wait)), later).unwrap();
        assert_eq!(state, AuthState::Checked(authenticated()));
        assert_eq!(left, wait);
        // With no answer yet, the status says why there is none.
        let (state, left) = answer_without_checking(None, Some(&failed(now + wait)), now).unwrap();
        assert_eq!(
            state,
            AuthState::Unavailable("Microsoft Entra ID is throttling requests".into())
        );
        assert_eq!(left, wait);
        // Once the wait is over, the registration is checked again.
        assert!(answer_without_checking(None, Some(&failed(now)), now + wait).is_none());
    }

    #[test]
    fn the_expiry_is_the_soonest_secret_still_valid_and_a_failed_read_says_when_to_retry() {
        let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let secret = |end: &str| PasswordCredential {
            key_id: None,
            display_name: None,
            end: Some(end.parse().unwrap()),
        };
        let app = "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7";
        let listed = vec![
            secret("2026-01-01T00:00:00Z"),
            secret("2027-06-01T00:00:00Z"),
            secret("2027-03-01T00:00:00Z"),
        ];
        assert_eq!(
            expiry_answer(Ok(listed), app, now),
            (
                Expiry::At("2027-03-01T00:00:00Z".parse().unwrap()),
                AUTH_RECHECK
            )
        );
        assert_eq!(
            expiry_answer(Ok(vec![secret("2026-01-01T00:00:00Z")]), app, now),
            (Expiry::NoneValid, AUTH_RECHECK)
        );
        let throttled = GraphError::Throttled {
            service: crate::graph::Service::Graph,
            retry_after: Duration::from_secs(7),
        };
        let (expiry, wait) = expiry_answer(Err(throttled), app, now);
        assert!(matches!(expiry, Expiry::Unreadable(_)));
        assert_eq!(wait, Duration::from_secs(7));
        let outage = GraphError::Graph {
            status: 503,
            code: "serviceNotAvailable".into(),
            message: "try later".into(),
        };
        assert_eq!(expiry_answer(Err(outage), app, now).1, EXPIRY_RETRY);
        let refused = GraphError::Graph {
            status: 403,
            code: "Authorization_RequestDenied".into(),
            message: "Insufficient privileges".into(),
        };
        let (expiry, wait) = expiry_answer(Err(refused), app, now);
        assert_eq!(wait, AUTH_RECHECK);
        let Expiry::Unreadable(message) = expiry else {
            panic!("{expiry:?}")
        };
        assert!(message.contains("Application.Read.All"), "{message}");
    }

    #[test]
    fn a_token_without_the_recording_permissions_is_refused_naming_the_app_and_tenant() {
        let config = super::super::tests::config();
        let roles = ["Calls.AccessMedia.All".to_string()];
        let Some(AuthOutcome::Rejected { reason, message }) = permissions_rejection(
            Some(&roles),
            &PermissionSource::AppRoleAssignments,
            &config,
            &inputs(),
        ) else {
            panic!("not refused")
        };
        assert_eq!(reason, reason::RECORDING_PERMISSIONS_MISSING);
        assert!(
            message.contains("6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7"),
            "{message}"
        );
        assert!(
            message.contains("5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d"),
            "{message}"
        );
        assert!(message.contains("Calls.JoinGroupCall.All"), "{message}");
        assert!(
            message.contains("read from its service principal's app role assignments"),
            "the message says where the permissions were read: {message}"
        );
    }
}
