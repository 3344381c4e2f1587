//! Simulators used by the tests and by `recording-operator demo` — never by the production
//! operator. `kube` is a Kubernetes API server on loopback; `m365` is the Microsoft identity
//! platform (OpenID discovery, admin consent, client-credentials tokens) plus Microsoft Graph.
//! `azurite` runs the Azure Storage emulator; `process` starts such child processes so that they
//! never outlive the process that started them.

pub mod azurite;
pub mod kube;
pub mod m365;
pub mod process;
