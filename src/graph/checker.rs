//! [`ConsentChecker`]: the one object every reconcile shares (in an `Arc`) to ask "which
//! consents has this tenant granted?".
//!
//! - Coalescing: the consents of a tenant are checked together: each call names every consent
//!   the tenant has now (a consent no longer named is no longer checked). A call that finds a
//!   check covering its consents started less than `checkCacheTtl` ago (or still running)
//!   shares its result instead of asking again. So the five ConsentGrants of a tenant
//!   reconciled together cost one check.
//! - A due grant names how old an answer it takes ([`ConsentChecker::check_due`]): any check
//!   of its tenant started at or after that instant, so grants of one tenant that drifted onto
//!   different schedules join one check and its schedule again.
//! - Independence: each tenant has its own lock; requests have timeouts; a slow or failing
//!   tenant holds up nobody else.
//! - A tenant whose consents are all granted is only polled to notice revocation: a check
//!   younger than half the granted interval (3 h by default) is shared by its ConsentGrants
//!   even when their jittered schedules come due apart, so grants that drifted apart still
//!   share most checks; grants scheduled with [`crate::graph::schedule_rng`] from the shared
//!   `checked_at` share every one (the simulated figures are in BENCHMARKS.md).
//! - Throttling: after a `Retry-After`, the tenant is not asked about again before the wait is
//!   over; calls in between are answered `Unknown` with the time left.
//! - Counters for metrics: [`ConsentChecker::counters`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use super::client::GraphClient;
use super::consent::{CheckState, ConsentCheck, ConsentSpec, RoleNames, TenantCheck};
use super::discovery::{cloud_instance_names, Discovery};
use super::error::GraphError;
use super::http::http_client;
use super::metrics::Counters;
use super::schedule::consent_url;
use super::token::TokenProvider;
use super::verify::{check_tenant, CheckEnv, TenantCache};
use crate::config::{ConfigError, ConsentConfig, OperatorConfig, SecretRef, SecretSource};

impl ConsentSpec {
    /// The spec of a configured consent.
    pub fn from_config(key: &str, consent: &ConsentConfig) -> Self {
        ConsentSpec {
            key: key.to_owned(),
            app_id: consent.app_id.clone(),
            application_permissions: consent.application_permissions.clone(),
            delegated_scopes: consent.delegated_scopes.clone(),
            administrators: vec![],
        }
    }
}

struct LastCheck {
    started: Instant,
    /// [`fingerprint`]s of the consents it was asked about.
    specs: Vec<u64>,
    result: Arc<TenantCheck>,
}

/// What a consent check is asked about, in eight bytes: the last check of every tenant
/// keeps these rather than copies of its specs, which is all it needs to tell whether it
/// answers a later call.
fn fingerprint(spec: &ConsentSpec) -> u64 {
    crate::hash64(&(
        &spec.key,
        &spec.app_id,
        &spec.application_permissions,
        &spec.delegated_scopes,
        &spec.administrators,
    ))
}

#[derive(Default)]
struct TenantSlot {
    last: Option<LastCheck>,
    throttled_until: Option<Instant>,
    cache: TenantCache,
}

struct Inner {
    discovery: Discovery,
    authority: Url,
    graph_scope: String,
    redirect_uri: String,
    tokens: TokenProvider,
    graph: GraphClient,
    secrets: HashMap<String, SecretRef>,
    ttl: Duration,
    granted_reuse: Duration,
    role_names: Mutex<Option<RoleNames>>,
    /// The platform's Teams app manifest id, looked up in each customer's catalog.
    teams_app_id: Option<String>,
    counters: Arc<Counters>,
    tenants: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TenantSlot>>>>,
    /// All-granted results shared by the tenants' last checks ([`shared_if_granted`]).
    shared_granted: Mutex<Vec<Arc<[ConsentCheck]>>>,
}

/// Consent checks for all tenants, shared by every reconcile.
#[derive(Clone)]
pub struct ConsentChecker {
    inner: Arc<Inner>,
}

impl ConsentChecker {
    /// Builds the checker from a validated configuration; secret values come from `secrets`
    /// when a token is needed.
    pub fn new(
        config: &OperatorConfig,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let invalid = |e: String| ConfigError::Invalid(vec![e]);
        let authority = config.cloud.authority_host().map_err(invalid)?;
        let graph_endpoint = config.cloud.graph_endpoint().map_err(invalid)?;
        let graph_scope = config.cloud.graph_scope().map_err(invalid)?;
        let counters = Arc::new(Counters::default());
        let http = http_client(config.polling.request_timeout);
        let tokens = TokenProvider::new(
            http.clone(),
            authority.clone(),
            graph_scope.clone(),
            config.polling.token_renew_before,
            secrets,
            counters.clone(),
        );
        let graph = GraphClient::new(http.clone(), &graph_endpoint, counters.clone());
        let secrets = config
            .consents
            .values()
            .filter_map(|c| Some((c.app_id.to_ascii_lowercase(), c.client_secret.clone()?)))
            .collect();
        Ok(ConsentChecker {
            inner: Arc::new(Inner {
                discovery: Discovery {
                    http,
                    authority: authority.clone(),
                    cloud: cloud_instance_names(config.cloud.preset),
                    counters: counters.clone(),
                },
                authority,
                graph_scope,
                redirect_uri: config.consent_redirect_uri.clone().unwrap_or_default(),
                tokens,
                graph,
                secrets,
                ttl: config.polling.check_cache_ttl,
                granted_reuse: config.polling.granted_interval / 2,
                role_names: Mutex::new(None),
                teams_app_id: config.teams_app_id.clone(),
                counters,
                tenants: Mutex::new(HashMap::new()),
                shared_granted: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Request counters for the metrics endpoint.
    pub fn counters(&self) -> Arc<Counters> {
        self.inner.counters.clone()
    }

    /// The token provider (e.g. to validate a RecordingService's own app registration).
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// Checks `specs` — every consent the tenant has now — in `tenant_id`, sharing a check of
    /// the same tenant started within `checkCacheTtl`. Pick a consent's result with
    /// [`TenantCheck::get`].
    pub async fn check(&self, tenant_id: &str, specs: &[ConsentSpec]) -> Arc<TenantCheck> {
        self.run(tenant_id, specs, false, None).await
    }

    /// Like [`ConsentChecker::check`], and also shares any check that started at or after
    /// `since`: sibling ConsentGrants scheduled for the same instant are answered by the first
    /// check of that instant however long they waited in the controller's queue, and a grant
    /// that names an earlier `since` (the ConsentGrant controller's `share_from`: halfway
    /// through its wait) joins a sibling's recent check instead of starting its own.
    pub async fn check_due(
        &self,
        tenant_id: &str,
        specs: &[ConsentSpec],
        since: std::time::SystemTime,
    ) -> Arc<TenantCheck> {
        self.run(tenant_id, specs, false, Some(since)).await
    }

    /// Checks at once, ignoring earlier results (the consent callback: the admin has just
    /// accepted). Still shares a check that started after this call.
    pub async fn check_now(&self, tenant_id: &str, specs: &[ConsentSpec]) -> Arc<TenantCheck> {
        self.run(tenant_id, specs, true, None).await
    }

    /// Forgets a tenant entirely (its Tenant is gone).
    pub fn forget_tenant(&self, tenant_id: &str) {
        self.inner.tokens.forget_tenant(tenant_id);
        self.inner
            .tenants
            .lock()
            .expect("tenant slots lock")
            .remove(&tenant_id.to_ascii_lowercase());
    }

    /// The tenant id behind a domain (OpenID discovery).
    pub async fn resolve_tenant_id(&self, domain: &str) -> Result<String, GraphError> {
        self.inner.discovery.resolve_tenant_id(domain).await
    }

    /// The admin-consent URL of an application for a tenant.
    pub fn consent_url(&self, tenant: &str, app_id: &str, state: &str) -> String {
        consent_url(
            &self.inner.authority,
            tenant,
            app_id,
            &self.inner.graph_scope,
            &self.inner.redirect_uri,
            state,
        )
    }

    fn slot(&self, tenant_id: &str) -> Arc<tokio::sync::Mutex<TenantSlot>> {
        self.inner
            .tenants
            .lock()
            .expect("tenant slots lock")
            .entry(tenant_id.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    async fn run(
        &self,
        tenant_id: &str,
        specs: &[ConsentSpec],
        force: bool,
        due: Option<std::time::SystemTime>,
    ) -> Arc<TenantCheck> {
        let asked = Instant::now();
        let slot = self.slot(tenant_id);
        // Waiting here is waiting for the check of this tenant already running.
        let mut slot = slot.lock().await;

        if let Some(last) = &slot.last {
            let covers = specs.iter().all(|s| last.specs.contains(&fingerprint(s)));
            let all_granted = last
                .result
                .consents
                .iter()
                .all(|c| c.state == CheckState::Granted);
            let window = if all_granted {
                self.inner.ttl.max(self.inner.granted_reuse)
            } else {
                self.inner.ttl
            };
            let recent = if force {
                last.started >= asked
            } else {
                last.started.elapsed() < window
                    || due.is_some_and(|due| last.result.checked_at >= due)
            };
            if covers && recent {
                self.inner.counters.check_coalesced();
                return last.result.clone();
            }
        }

        let now = Instant::now();
        if let Some(until) = slot.throttled_until.filter(|until| *until > now) {
            self.inner.counters.check_coalesced();
            return Arc::new(still_throttled(tenant_id, specs, until - now));
        }

        self.inner.counters.check_run();
        let started = Instant::now();
        let env = CheckEnv {
            tokens: &self.inner.tokens,
            graph: &self.inner.graph,
            secrets: &self.inner.secrets,
            role_names: &self.inner.role_names,
            discovery: &self.inner.discovery,
            teams_app_id: self.inner.teams_app_id.as_deref(),
        };
        let mut result = check_tenant(&env, &mut slot.cache, tenant_id, specs).await;
        result.consents = shared_if_granted(&self.inner.shared_granted, result.consents);
        let result = Arc::new(result);
        slot.throttled_until = result
            .consents
            .iter()
            .filter(|c| c.state == CheckState::Unknown)
            .filter_map(|c| c.retry_after)
            .max()
            .map(|wait| started + wait);
        slot.last = Some(LastCheck {
            started,
            specs: specs.iter().map(fingerprint).collect(),
            result: result.clone(),
        });
        if result
            .consents
            .iter()
            .all(|c| c.state == CheckState::Granted)
        {
            // Not checked again for hours: its tokens would expire unused in the cache.
            self.inner.tokens.release_unless_fresh_at(
                tenant_id,
                specs.iter().map(|s| s.app_id.as_str()),
                std::time::SystemTime::now() + self.inner.granted_reuse,
            );
        }
        result
    }
}

/// At most this many distinct all-granted results are shared; past it the table starts
/// again (it only grows when the configured consents change).
const SHARED_GRANTED_MAX: usize = 64;

/// `consents` itself, or an equal list already kept in `shared` by another tenant's last
/// check.
///
/// Every tenant that has granted all of a given set of consents gets the same results: same
/// keys, applications, permissions and messages. Kept once per set rather than once per
/// tenant, they cost a pointer a tenant instead of a copy. Results with anything short of
/// granted carry tenant-specific messages and are never shared.
fn shared_if_granted(
    shared: &Mutex<Vec<Arc<[ConsentCheck]>>>,
    consents: Arc<[ConsentCheck]>,
) -> Arc<[ConsentCheck]> {
    if consents.is_empty()
        || !consents
            .iter()
            .all(|c| c.state == CheckState::Granted && c.retry_after.is_none())
    {
        return consents;
    }
    let mut shared = shared.lock().expect("shared results lock");
    if let Some(same) = shared.iter().find(|kept| kept[..] == consents[..]) {
        return same.clone();
    }
    if shared.len() >= SHARED_GRANTED_MAX {
        shared.clear();
    }
    shared.push(consents.clone());
    consents
}

/// The answer while a tenant's `Retry-After` has not passed: no request, state unknown.
fn still_throttled(tenant_id: &str, specs: &[ConsentSpec], left: Duration) -> TenantCheck {
    let wait = Duration::from_secs(left.as_secs_f64().ceil() as u64);
    TenantCheck {
        tenant_id: tenant_id.to_owned(),
        checked_at: std::time::SystemTime::now(),
        consents: specs
            .iter()
            .map(|s| ConsentCheck {
                key: s.key.clone(),
                app_id: s.app_id.clone(),
                state: CheckState::Unknown,
                granted: vec![],
                missing: vec![],
                message: format!(
                    "throttled by Microsoft: not checking again for {}s",
                    wait.as_secs()
                ),
                retry_after: Some(wait),
            })
            .collect(),
        administrators: vec![],
        teams_app: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, permissions: &[&str]) -> ConsentSpec {
        ConsentSpec {
            key: key.to_owned(),
            app_id: "0c0ffee0-0000-4000-8000-000000000001".to_owned(),
            application_permissions: permissions.iter().map(|p| p.to_string()).collect(),
            delegated_scopes: vec![],
            administrators: vec![],
        }
    }

    fn check(key: &str, state: CheckState, message: &str) -> ConsentCheck {
        ConsentCheck {
            key: key.to_owned(),
            app_id: "0c0ffee0-0000-4000-8000-000000000001".to_owned(),
            state,
            granted: vec!["Calls.AccessMedia.All".to_owned()],
            missing: vec![],
            message: message.to_owned(),
            retry_after: None,
        }
    }

    #[test]
    fn tenants_that_granted_everything_share_one_result_list() {
        let table = Mutex::new(Vec::new());
        let granted = || -> Arc<[ConsentCheck]> {
            vec![
                check(
                    "directory",
                    CheckState::Granted,
                    "all 1 required permissions granted",
                ),
                check(
                    "recording",
                    CheckState::Granted,
                    "all 1 required permissions granted",
                ),
            ]
            .into()
        };
        let first = shared_if_granted(&table, granted());
        let second = shared_if_granted(&table, granted());
        assert!(
            Arc::ptr_eq(&first, &second),
            "equal all-granted results are one list"
        );
        assert_eq!(second[..], granted()[..]);

        // Another set of consents granted: a list of its own.
        let fewer: Arc<[ConsentCheck]> = vec![check(
            "directory",
            CheckState::Granted,
            "all 1 required permissions granted",
        )]
        .into();
        let kept = shared_if_granted(&table, fewer.clone());
        assert!(Arc::ptr_eq(&kept, &fewer));
        assert!(!Arc::ptr_eq(&kept, &first));

        // Anything short of granted stays the tenant's own and is not kept.
        let pending = || -> Arc<[ConsentCheck]> {
            vec![
                check(
                    "directory",
                    CheckState::Granted,
                    "all 1 required permissions granted",
                ),
                check("recording", CheckState::Pending, "not granted in tenant t1"),
            ]
            .into()
        };
        let (a, b) = (
            shared_if_granted(&table, pending()),
            shared_if_granted(&table, pending()),
        );
        assert!(!Arc::ptr_eq(&a, &b));
        let mut throttled = check("recording", CheckState::Granted, "all granted");
        throttled.retry_after = Some(Duration::from_secs(5));
        let throttled: Arc<[ConsentCheck]> = vec![throttled].into();
        assert!(Arc::ptr_eq(
            &shared_if_granted(&table, throttled.clone()),
            &throttled
        ));
        assert_eq!(table.lock().unwrap().len(), 2);

        // The table is bounded: past its size it starts again.
        for i in 0..SHARED_GRANTED_MAX + 1 {
            let own: Arc<[ConsentCheck]> =
                vec![check(&format!("k{i}"), CheckState::Granted, "all granted")].into();
            shared_if_granted(&table, own);
        }
        assert!(table.lock().unwrap().len() <= SHARED_GRANTED_MAX);
    }

    #[test]
    fn a_spec_asking_for_anything_else_has_another_fingerprint() {
        let recording = spec("recording", &["Calls.AccessMedia.All"]);
        assert_eq!(fingerprint(&recording), fingerprint(&recording.clone()));
        assert_ne!(
            fingerprint(&recording),
            fingerprint(&spec(
                "recording",
                &["Calls.AccessMedia.All", "Chat.Read.All"]
            ))
        );
        assert_ne!(
            fingerprint(&recording),
            fingerprint(&spec("redundantRecording", &["Calls.AccessMedia.All"]))
        );
        let mut other_app = recording.clone();
        other_app.app_id = "0c0ffee0-0000-4000-8000-000000000002".to_owned();
        assert_ne!(fingerprint(&recording), fingerprint(&other_app));
        let mut scoped = recording.clone();
        scoped.delegated_scopes = vec!["User.Read".to_owned()];
        assert_ne!(fingerprint(&recording), fingerprint(&scoped));
    }
}
