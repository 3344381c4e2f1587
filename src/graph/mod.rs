//! Has this customer tenant consented? Entra ID tokens, Microsoft Graph and the consent checks.
//!
//! The story, file by file:
//! - [`error`]: [`GraphError`], what can go wrong, in the operator's words;
//! - [`http`]: the HTTP client, `Retry-After`, URL joining;
//! - [`entra`]: the identity platform's error answers, read on the OAuth `error` first and
//!   refined by AADSTS code;
//! - [`discovery`]: the tenant id behind a customer's domain, and the national cloud its
//!   OpenID document names;
//! - [`token`]: client-credentials tokens per (tenant, app), opaque by contract: cached for
//!   `expires_in` less a margin, their `roles` a hint when they decode;
//! - [`client`]: Microsoft Graph reads: paging, `$batch` (20 per request), `Retry-After`,
//!   OData errors;
//! - [`consent`]: the rules of a tenant's consents — pure functions over roles, service
//!   principals, app role assignments and permission grants;
//! - [`verify`]: the I/O that gathers them (one `$batch` per steady-state poll);
//! - [`checker`]: [`ConsentChecker`], shared by all reconciles: coalesces concurrent checks of a
//!   tenant, keeps tenants independent, remembers throttling, counts requests;
//! - [`schedule`]: when to check again ([`next_check_after`]) and the admin-consent URL
//!   ([`consent_url`]);
//! - [`admins`]: the customer's administrators (`spec.adminUpns`) as the directory knows them;
//! - [`teams_catalog`]: whether the platform's Teams app is published in the customer's
//!   organisation catalog;
//! - [`application`]: a platform app's client-secret expiry, from its home tenant;
//! - [`known_app`]: a RecordingService's own app registration as the customer's directory
//!   describes it (permissions, secrets, owners, who consented), read with the directory
//!   consent's token;
//! - [`platform_apps`]: the platform's own applications' secrets, read in the home tenant for
//!   the expiry gauge.

pub mod admins;
pub mod application;
pub mod checker;
pub mod client;
pub mod consent;
pub mod discovery;
pub mod entra;
pub mod error;
pub mod http;
pub mod known_app;
pub mod metrics;
pub mod platform_apps;
pub mod schedule;
pub mod teams_catalog;
pub mod token;
pub mod verify;

pub use checker::ConsentChecker;
pub use consent::{CheckState, ConsentCheck, ConsentSpec, TenantCheck, MICROSOFT_GRAPH_APP_ID};
pub use error::{GraphError, Service};
pub use http::{http_client, parse_retry_after};
pub use metrics::{Counters, GraphOutcome, TokenOutcome};
pub use schedule::{consent_url, next_check_after, schedule_rng};
