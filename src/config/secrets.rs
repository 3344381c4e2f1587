//! Secrets: references in the configuration, values at run time.

use std::path::PathBuf;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

// ---------------------------------------------------------------------------------------------
// Secrets: references in the configuration, values at run time
// ---------------------------------------------------------------------------------------------

/// Where a secret value lives. Written in YAML as one of
/// `{secretRef: {namespace, name, key}}`, `{file: /path}`, `{env: VAR}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretRef {
    /// A key of a Kubernetes Secret.
    SecretRef {
        namespace: String,
        name: String,
        key: String,
    },
    /// A file, e.g. a mounted Secret volume; surrounding white space is trimmed.
    File(PathBuf),
    /// An environment variable of the operator process.
    Env(String),
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::SecretRef {
                namespace,
                name,
                key,
            } => write!(f, "Secret {namespace}/{name} key {key}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

impl SecretRef {
    pub(crate) fn check(&self, field: &str, problems: &mut Vec<String>) {
        match self {
            SecretRef::SecretRef {
                namespace,
                name,
                key,
            } => {
                for (part, value) in [("namespace", namespace), ("name", name), ("key", key)] {
                    if value.trim().is_empty() {
                        problems.push(format!("{field}.secretRef.{part}: must not be empty"));
                    }
                }
            }
            SecretRef::File(path) if !path.is_absolute() => problems.push(format!(
                "{field}.file: {} is not an absolute path",
                path.display()
            )),
            SecretRef::Env(var) if var.trim().is_empty() => {
                problems.push(format!("{field}.env: must name a variable"))
            }
            _ => {}
        }
    }
}

/// Resolves [`SecretRef`]s to values. The value is a [`SecretString`]: its `Debug` prints
/// `[REDACTED]` and it has no `Display`, so it cannot slip into a log line or an error.
pub trait SecretSource: Send + Sync {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>>;
}

fn secret_error(reference: &SecretRef, reason: impl Into<String>) -> ConfigError {
    ConfigError::Secret {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn non_empty(reference: &SecretRef, value: String) -> Result<SecretString, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        Err(secret_error(reference, "the value is empty"))
    } else {
        Ok(SecretString::from(value))
    }
}

/// Reads `{env: VAR}` references.
#[derive(Clone, Debug, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move {
            match reference {
                SecretRef::Env(var) => match std::env::var(var) {
                    Ok(value) => non_empty(reference, value),
                    Err(_) => Err(secret_error(reference, "the variable is not set")),
                },
                _ => Err(secret_error(
                    reference,
                    "not an environment variable reference",
                )),
            }
        })
    }
}

/// Reads `{file: path}` references (mounted Secret volumes).
#[derive(Clone, Debug, Default)]
pub struct FileSecrets;

impl SecretSource for FileSecrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move {
            match reference {
                SecretRef::File(path) => match tokio::fs::read_to_string(path).await {
                    Ok(value) => non_empty(reference, value),
                    Err(e) => Err(secret_error(reference, e.kind().to_string())),
                },
                _ => Err(secret_error(reference, "not a file reference")),
            }
        })
    }
}

/// Reads `{secretRef: ...}` references from the Kubernetes API.
#[derive(Clone)]
pub struct KubeSecrets {
    client: kube::Client,
}

impl KubeSecrets {
    pub fn new(client: kube::Client) -> Self {
        KubeSecrets { client }
    }
}

impl SecretSource for KubeSecrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move {
            let SecretRef::SecretRef {
                namespace,
                name,
                key,
            } = reference
            else {
                return Err(secret_error(reference, "not a Kubernetes Secret reference"));
            };
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let secret = match api.get_opt(name).await {
                Ok(Some(secret)) => secret,
                Ok(None) => return Err(secret_error(reference, "the Secret does not exist")),
                Err(e) => {
                    return Err(secret_error(
                        reference,
                        format!("the Kubernetes API refused: {e}"),
                    ))
                }
            };
            let data = secret.data.as_ref().and_then(|d| d.get(key));
            let string_data = secret.string_data.as_ref().and_then(|d| d.get(key));
            let value = match (data, string_data) {
                (Some(bytes), _) => String::from_utf8(bytes.0.clone())
                    .map_err(|_| secret_error(reference, "the value is not UTF-8"))?,
                (None, Some(text)) => text.clone(),
                (None, None) => return Err(secret_error(reference, "the Secret has no such key")),
            };
            non_empty(reference, value)
        })
    }
}

/// Dispatches each reference to the source of its kind; `secretRef` needs a Kubernetes client.
#[derive(Clone, Default)]
pub struct Secrets {
    kube: Option<KubeSecrets>,
}

impl Secrets {
    /// Files and environment only.
    pub fn local() -> Self {
        Secrets { kube: None }
    }

    /// Files, environment and Kubernetes Secrets.
    pub fn with_kube(client: kube::Client) -> Self {
        Secrets {
            kube: Some(KubeSecrets::new(client)),
        }
    }
}

impl SecretSource for Secrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        match reference {
            SecretRef::Env(_) => EnvSecrets.get(reference),
            SecretRef::File(_) => FileSecrets.get(reference),
            SecretRef::SecretRef { .. } => match &self.kube {
                Some(kube) => kube.get(reference),
                None => Box::pin(async move {
                    Err(secret_error(reference, "no Kubernetes client configured"))
                }),
            },
        }
    }
}
