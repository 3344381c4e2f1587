//! recording-operator: onboards Microsoft 365 customer tenants onto a Teams compliance-recording
//! platform. The CRD types live in [`crd`], the controllers in [`controller`], the Entra/Graph
//! client in [`graph`], per-tenant storage in [`storage`].

pub mod conditions;
pub mod config;
pub mod controller;
pub mod crd;
#[cfg(feature = "demo")]
pub mod demo;
pub mod graph;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod storage;
pub mod telemetry;
