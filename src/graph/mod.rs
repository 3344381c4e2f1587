//! Has this customer tenant consented? Entra ID tokens, Microsoft Graph and the consent checks.
//!
//! The story, file by file:
//! - [`discovery`]: the tenant id behind a customer's domain (OpenID discovery document);
//! - [`token`]: client-credentials tokens per (tenant, app), cached until shortly before they
//!   expire, with the token endpoint's AADSTS codes turned into [`GraphError`] variants;
//! - [`client`]: Microsoft Graph reads: paging, `$batch` (20 per request), `Retry-After`,
//!   OData errors;
//! - [`consent`]: the check of one tenant's consents — pure rules over tokens' `roles` and the
//!   tenant's service principals, app role assignments and permission grants, plus the thin
//!   I/O that gathers them (one `$batch` per steady-state poll);
//! - [`checker`]: [`ConsentChecker`], shared by all reconciles: coalesces concurrent checks of a
//!   tenant, keeps tenants independent, remembers throttling, counts requests;
//! - [`schedule`]: when to check again ([`next_check_after`]) and the admin-consent URL
//!   ([`consent_url`]).

pub mod application;
pub mod checker;
pub mod client;
pub mod consent;
pub mod discovery;
pub mod entra;
pub mod error;
pub mod http;
pub mod metrics;
pub mod schedule;
pub mod token;

pub use checker::ConsentChecker;
pub use consent::{CheckState, ConsentCheck, ConsentSpec, TenantCheck, MICROSOFT_GRAPH_APP_ID};
pub use error::{GraphError, Service};
pub use http::{http_client, parse_retry_after};
pub use metrics::{Counters, GraphOutcome, TokenOutcome};
pub use schedule::{consent_url, next_check_after, schedule_rng};
