//! Microsoft identity platform + Microsoft Graph simulator, for tests and the demo only.
//!
//! One HTTP server on loopback plays both hosts: the authority (OpenID discovery, JWKS,
//! admin consent, client-credentials tokens) and Microsoft Graph v1.0 (`/v1.0/...`), so both
//! base URLs of the operator's configuration point at [`M365Sim::url`]. The harness methods
//! stand in for what people do in the Entra portal: register tenants and apps, give,
//! narrow or withdraw admin consent, disable an enterprise app, and inject faults.
//!
//! Where the simulator deliberately differs from the real services is listed in
//! `sim/README.md`.

mod audit;
mod batch;
mod catalog;
mod consent;
mod directory;
mod faults;
mod graph;
mod identity;
mod jwt;
mod mail;
mod odata;
mod seed;
mod server;
mod signin;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use batch::MAX_BATCH_REQUESTS;
pub use catalog::{Permission, APP_ROLES, GRAPH_APP_ID, SCOPES};
pub use faults::{EndpointCounts, RequestCounts, Throttle};
pub use jwt::AppTokenClaims;
pub use seed::{
    AppSeed, ConsentSeed, NationalCloud, SecretSeed, Seed, Settings, TenantSeed, PLATFORM_CONSENTS,
};
pub use signin::IdTokenFault;
pub use users::UserSeed;

use directory::{ConsentScope, Directory};
use faults::Faults;

/// Errors of the simulator's set-up (harness misuse panics instead; see the methods).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        path: String,
        source: std::io::Error,
    },
    #[error("seed file is not valid YAML for the simulator: {0}")]
    SeedYaml(String),
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("{0}")]
    Harness(String),
}

/// State shared by the handle and the HTTP handlers.
pub(crate) struct Shared {
    url: String,
    settings: Settings,
    auto_consent: AtomicBool,
    /// Issue opaque access tokens (not JWTs) instead of signed ones.
    opaque_tokens: AtomicBool,
    /// The claims behind each opaque token issued, by token.
    opaque: Mutex<HashMap<String, AppTokenClaims>>,
    clock_offset: Mutex<chrono::Duration>,
    propagation_delay: Mutex<chrono::Duration>,
    dir: Mutex<Directory>,
    faults: Mutex<Faults>,
    counts: Mutex<RequestCounts>,
    mail: Mutex<Vec<SentMail>>,
    /// Users' sign-ins in progress and the authorization codes issued.
    signins: Mutex<signin::SignIns>,
}

pub use mail::SentMail;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The simulator's clock: wall time plus whatever [`M365Sim::advance_clock`] added.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + *lock(&self.clock_offset)
    }
}

/// The stop signal and the task of the HTTP server.
type ServerTask = (oneshot::Sender<()>, JoinHandle<()>);

/// A running simulator. Clones share the same server and state.
#[derive(Clone)]
pub struct M365Sim {
    shared: Arc<Shared>,
    server: Arc<Mutex<Option<ServerTask>>>,
}

impl std::fmt::Debug for M365Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M365Sim")
            .field("url", &self.shared.url)
            .finish()
    }
}

impl M365Sim {
    /// Starts on an ephemeral loopback port.
    pub async fn start(seed: Seed) -> Result<M365Sim, SimError> {
        M365Sim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, seed: Seed) -> Result<M365Sim, SimError> {
        if ![7000229, 700016].contains(&seed.settings.missing_service_principal_aadsts) {
            return Err(SimError::Seed(format!(
                "settings.missing_service_principal_aadsts must be 7000229 or 700016, not {}",
                seed.settings.missing_service_principal_aadsts
            )));
        }
        let directory = Directory::from_seed(&seed, Utc::now())?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            url: format!("http://{local}"),
            auto_consent: AtomicBool::new(seed.settings.auto_consent),
            opaque_tokens: AtomicBool::new(false),
            opaque: Mutex::new(HashMap::new()),
            settings: seed.settings,
            clock_offset: Mutex::new(chrono::Duration::zero()),
            propagation_delay: Mutex::new(chrono::Duration::zero()),
            dir: Mutex::new(directory),
            faults: Mutex::new(Faults::default()),
            counts: Mutex::new(RequestCounts::default()),
            mail: Mutex::new(Vec::new()),
            signins: Mutex::new(signin::SignIns::default()),
        });
        let app = server::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "m365 simulator stopped serving");
            }
        });
        tracing::info!(url = %shared.url, "m365 simulator listening");
        Ok(M365Sim {
            shared,
            server: Arc::new(Mutex::new(Some((stop, task)))),
        })
    }

    /// Base URL of both the authority and Graph, e.g. `http://127.0.0.1:43121`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        lock(&self.shared.dir)
    }

    fn harness<T>(&self, what: &str, result: Result<T, SimError>) -> T {
        result.unwrap_or_else(|e| panic!("M365Sim::{what}: {e}"))
    }

    /// Adds a tenant. Panics when the id is not a GUID or the tenant or a domain exists.
    pub fn add_tenant(&self, tenant_id: &str, domains: &[&str]) {
        let seed = TenantSeed {
            id: tenant_id.to_string(),
            display_name: None,
            domains: domains.iter().map(|d| d.to_string()).collect(),
        };
        let now = self.shared.now();
        let result = self.directory().add_tenant(&seed, now);
        self.harness("add_tenant", result);
    }

    /// Adds a tenant of another national cloud: OpenID discovery through this (public)
    /// authority finds it and names its cloud; the token endpoint refuses it (AADSTS900382).
    /// Panics as [`M365Sim::add_tenant`] does.
    pub fn add_tenant_in_cloud(&self, tenant_id: &str, domains: &[&str], cloud: NationalCloud) {
        self.add_tenant(tenant_id, domains);
        let result = self.directory().set_national_cloud(tenant_id, cloud);
        self.harness("add_tenant_in_cloud", result);
    }

    /// Registers a multi-tenant app in its home tenant. Panics on an invalid app.
    pub fn add_app(&self, app: AppSeed) {
        let now = self.shared.now();
        let result = self.directory().add_app(&app, now);
        self.harness("add_app", result);
    }

    /// Makes a user of the app's home tenant an owner of its registration (Graph lists it at
    /// `/applications(appId='…')/owners`). Panics when the app or the user is unknown.
    pub fn add_app_owner(&self, app_id: &str, upn: &str) {
        let result = self.directory().add_app_owner(app_id, upn);
        self.harness("add_app_owner", result);
    }

    /// The customer's Global admin accepts every permission the app requires.
    pub fn grant_consent(&self, tenant: &str, app_id: &str) {
        let now = self.shared.now();
        let result = self
            .directory()
            .grant(tenant, app_id, &ConsentScope::default(), now);
        self.harness("grant_consent", result);
    }

    /// [`M365Sim::grant_consent`] by the tenant's user `upn` (an administrator): the directory
    /// audit log then has a "Consent to application" record naming them, as Entra logs it.
    /// Panics on an unknown tenant, app or user.
    pub fn grant_consent_as(&self, tenant: &str, app_id: &str, upn: &str) {
        let now = self.shared.now();
        let mut dir = self.directory();
        let result = dir
            .grant(tenant, app_id, &ConsentScope::default(), now)
            .and_then(|_| dir.record_consent(tenant, app_id, upn, now));
        drop(dir);
        self.harness("grant_consent_as", result);
    }

    /// Puts the platform's Teams app (by the id of its manifest, Graph's `externalId`) in the
    /// tenant's organisation catalog with an app definition in `publishing_state`
    /// (`published`, `submitted` for awaiting review, or `rejected`). Panics on an unknown
    /// tenant or state.
    pub fn put_teams_app(
        &self,
        tenant: &str,
        external_id: &str,
        display_name: &str,
        publishing_state: &str,
    ) {
        let result =
            self.directory()
                .put_teams_app(tenant, external_id, display_name, publishing_state);
        self.harness("put_teams_app", result);
    }

    /// Consent to some permissions only (e.g. an older consent before the app asked for
    /// more). Adds to what is already granted.
    pub fn grant_partial(
        &self,
        tenant: &str,
        app_id: &str,
        app_permissions: &[&str],
        scopes: &[&str],
    ) {
        let scope = ConsentScope {
            application_permissions: Some(app_permissions.iter().map(|s| s.to_string()).collect()),
            delegated_scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        };
        let now = self.shared.now();
        let result = self.directory().grant(tenant, app_id, &scope, now);
        self.harness("grant_partial", result);
    }

    /// A user of the tenant consents for themselves (no admin): the app's service principal
    /// appears with a `consentType: Principal` grant of its delegated scopes for that user
    /// (a GUID) only. Panics on an unknown tenant or app, or an app without delegated scopes.
    pub fn user_consent(&self, tenant: &str, app_id: &str, user_id: &str) {
        let now = self.shared.now();
        let result = self.directory().user_consent(tenant, app_id, user_id, now);
        self.harness("user_consent", result);
    }

    /// The e-mails accepted by `sendMail`, oldest first.
    pub fn sent_mail(&self) -> Vec<SentMail> {
        lock(&self.shared.mail).clone()
    }

    /// Deletes the app's enterprise application (service principal) in the tenant, with
    /// its assignments and grants. Nothing happens when there is none.
    pub fn revoke_consent(&self, tenant: &str, app_id: &str) {
        let result = self.directory().revoke_consent(tenant, app_id);
        self.harness("revoke_consent", result);
    }

    /// Removes one granted application permission or delegated scope.
    pub fn revoke_permission(&self, tenant: &str, app_id: &str, permission: &str) {
        let result = self
            .directory()
            .revoke_permission(tenant, app_id, permission);
        self.harness("revoke_permission", result);
    }

    /// Adds a user account that can sign in (`upn` in one of the tenant's domains) and that
    /// Graph's `/users` finds; returns its object id. Panics on an unknown tenant, a domain
    /// not the tenant's or a UPN taken.
    pub fn add_user(&self, tenant: &str, upn: &str, password: &str) -> String {
        let seed = UserSeed {
            tenant: tenant.to_string(),
            upn: upn.to_string(),
            password: password.to_string(),
            display_name: None,
            account_enabled: true,
        };
        let result = self.directory().add_user(&seed);
        self.harness("add_user", result)
    }

    /// Blocks (or unblocks) a user's sign-in (`accountEnabled`). Panics on an unknown user.
    pub fn set_user_enabled(&self, tenant: &str, upn: &str, enabled: bool) {
        let result = self.directory().set_user_enabled(tenant, upn, enabled);
        self.harness("set_user_enabled", result);
    }

    /// Deletes a user. Panics on an unknown user.
    pub fn remove_user(&self, tenant: &str, upn: &str) {
        let result = self.directory().remove_user(tenant, upn);
        self.harness("remove_user", result);
    }

    /// Adds a redirect URI to an app registration (as in the portal's Authentication
    /// blade). Panics on an unknown app.
    pub fn add_redirect_uri(&self, app_id: &str, uri: &str) {
        let mut dir = self.directory();
        let app = dir
            .apps
            .get_mut(&app_id.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("M365Sim::add_redirect_uri: unknown app `{app_id}`"));
        if !app.redirect_uris.iter().any(|u| u == uri) {
            app.redirect_uris.push(uri.to_string());
        }
    }

    /// Makes every ID token issued from now on defective in this way (`None` to stop).
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        lock(&self.shared.signins).fault = fault;
    }

    /// "Enabled for users to sign in?" of the enterprise application (`accountEnabled`).
    pub fn set_service_principal_enabled(&self, tenant: &str, app_id: &str, enabled: bool) {
        let result = self.directory().set_sp_enabled(tenant, app_id, enabled);
        self.harness("set_service_principal_enabled", result);
    }

    /// When on (the default), opening an admin-consent URL grants at once; when off, the
    /// page shows the prompt (200) and only the harness grants.
    pub fn set_auto_consent(&self, on: bool) {
        self.shared.auto_consent.store(on, Ordering::SeqCst);
    }

    /// Throttles Graph (see [`Throttle`]). Panics on an unknown tenant or a status other
    /// than 429, 503 or 504.
    pub fn throttle(&self, t: Throttle) {
        let t = self.resolve_throttle("throttle", t);
        lock(&self.shared.faults).add_graph(t);
    }

    /// Throttles the token endpoint.
    pub fn throttle_token(&self, t: Throttle) {
        let t = self.resolve_throttle("throttle_token", t);
        lock(&self.shared.faults).add_token(t);
    }

    /// Answers the next `count` Graph units of work of `tenant` (plain requests, or single
    /// `$batch` items: the batch itself still answers 200) with 401
    /// `InvalidAuthenticationToken`, as Graph does for a token it stopped accepting.
    pub fn reject_tokens_on_graph(&self, tenant: &str, count: u32) {
        let t = self.resolve_throttle(
            "reject_tokens_on_graph",
            Throttle {
                tenant: Some(tenant.to_string()),
                status: 401,
                retry_after_secs: None,
                count,
            },
        );
        lock(&self.shared.faults).add_graph(t);
    }

    /// When on, the token endpoint issues opaque access tokens (random text, not a JWT), as
    /// Microsoft may at any time: a client must not depend on reading them. Graph still
    /// accepts them. Off by default.
    pub fn set_opaque_tokens(&self, on: bool) {
        self.shared.opaque_tokens.store(on, Ordering::SeqCst);
    }

    /// Removes every pending throttle.
    pub fn clear_throttles(&self) {
        lock(&self.shared.faults).clear();
    }

    fn resolve_throttle(&self, what: &str, mut t: Throttle) -> Throttle {
        let allowed: &[u16] = match what {
            "reject_tokens_on_graph" => &[401],
            _ => &[429, 503, 504],
        };
        if !allowed.contains(&t.status) {
            panic!(
                "M365Sim::{what}: status {} is not one of {allowed:?}",
                t.status
            );
        }
        if let Some(name) = &t.tenant {
            let id = self
                .directory()
                .resolve_tenant(name)
                .map(|x| x.id.clone())
                .unwrap_or_else(|| panic!("M365Sim::{what}: unknown tenant `{name}`"));
            t.tenant = Some(id);
        }
        t
    }

    /// Delay every response by `d` (zero to stop).
    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared.faults).latency = d;
    }

    /// Delay the responses of one tenant (token endpoint, discovery, Graph) by `d`, on top
    /// of [`M365Sim::set_latency`]; zero removes it. Panics on an unknown tenant.
    pub fn set_tenant_latency(&self, tenant: &str, d: Duration) {
        let id = self
            .tenant_id(tenant)
            .unwrap_or_else(|| panic!("M365Sim::set_tenant_latency: unknown tenant `{tenant}`"));
        let mut faults = lock(&self.shared.faults);
        if d.is_zero() {
            faults.tenant_latency.remove(&id);
        } else {
            faults.tenant_latency.insert(id, d);
        }
    }

    /// Moves the simulator's clock forward: tokens and client secrets expire accordingly.
    pub fn advance_clock(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).expect("duration fits");
        *lock(&self.shared.clock_offset) += by;
    }

    /// Makes consents reach the token endpoint `d` after they are given, as directory
    /// replication does: until then a new service principal still answers AADSTS7000229 and
    /// new app-role assignments are missing from `roles`. Graph reads see them at once.
    /// Zero (the default) turns it off; combine with [`M365Sim::advance_clock`].
    pub fn set_consent_propagation_delay(&self, d: Duration) {
        *lock(&self.shared.propagation_delay) =
            chrono::Duration::from_std(d).expect("duration fits");
    }

    /// The tenant id of a domain (or of an id, normalised).
    pub fn tenant_id(&self, tenant: &str) -> Option<String> {
        self.directory()
            .resolve_tenant(tenant)
            .map(|t| t.id.clone())
    }

    /// Object id of the app's service principal in the tenant, if consent exists.
    pub fn service_principal_id(&self, tenant: &str, app_id: &str) -> Option<String> {
        self.directory()
            .resolve_tenant(tenant)?
            .sp_by_app_id(app_id)
            .map(|sp| sp.id.clone())
    }

    /// Requests seen so far.
    pub fn counts(&self) -> RequestCounts {
        lock(&self.shared.counts).clone()
    }

    /// Sets every counter back to zero.
    pub fn reset_counts(&self) {
        *lock(&self.shared.counts) = RequestCounts::default();
    }

    /// Stops the server and waits for it (idempotent across clones).
    pub async fn shutdown(self) {
        let server = lock(&self.server).take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
