//! Simulators used by the tests and by `recording-operator demo` — never by the production
//! operator. `kube` is a Kubernetes API server on loopback; `m365` is the Microsoft identity
//! platform (OpenID discovery, admin consent, client-credentials tokens) plus Microsoft Graph.

pub mod azurite;
pub mod kube;
pub mod m365;
