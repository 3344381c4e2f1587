//! Client secrets by name, as the Secrets of a cluster would hold them, for tests that build a
//! [`ConsentChecker`](recording_operator::graph::ConsentChecker) without a cluster.

use std::collections::HashMap;

use futures::future::BoxFuture;
use recording_operator::config::{ConfigError, SecretRef, SecretSource};
use secrecy::SecretString;

/// Answers `{env: NAME}` references from a map (the tests only use env references).
pub struct MapSecrets(pub HashMap<String, String>);

impl SecretSource for MapSecrets {
    fn get<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<SecretString, ConfigError>> {
        Box::pin(async move {
            let SecretRef::Env(name) = reference else {
                unreachable!("the tests only use env references")
            };
            self.0
                .get(name)
                .map(|v| SecretString::from(v.as_str()))
                .ok_or_else(|| ConfigError::Secret {
                    reference: reference.to_string(),
                    reason: "not set".into(),
                })
        })
    }
}
