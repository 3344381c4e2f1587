//! recording-operator: onboards Microsoft 365 customer tenants onto a Teams compliance-recording
//! platform. The CRD types live in [`crd`], the controllers in [`controller`], the Entra/Graph
//! client in [`graph`], per-tenant storage in [`storage`].

pub mod bot_policy;
pub mod conditions;
pub mod config;
pub mod consent_link;
pub mod controller;
pub mod crd;
#[cfg(feature = "demo")]
pub mod demo;
pub mod graph;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod links;
pub mod metrics;
pub mod notify;
pub mod rbac;
pub mod retention;
pub mod signals;
pub mod signin;
pub mod storage;
pub mod telemetry;

/// A 64-bit digest of `value`: std's SipHash with its fixed keys, so the same value gives
/// the same digest in every process. The caches, fingerprints and write decisions keep these
/// in place of the values themselves.
pub fn hash64<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
