//! What a RecordingService may ask its bots to run and mount: the operator configuration's
//! `botPolicy`.
//!
//! A RecordingService is written by whoever may write in a tenant's namespace, and its bots
//! run with the tenant's recordings and a client secret. So the image must come from a
//! registry/repository the platform team allowed (optionally pinned by digest), and the Secret
//! a bot mounts must carry a label the platform team names: a service cannot make a bot mount
//! any Secret of the namespace (a token of another workload, say) by naming it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crd::validation::Violation;

/// The repository of the operator's default bot image, allowed unless the configuration says
/// otherwise.
pub const DEFAULT_ALLOWED_REPOSITORY: &str = "ghcr.io/recording-platform";

/// The label a Secret needs before a bot may mount it (value `"true"`), unless configured.
pub const DEFAULT_SECRET_LABEL: &str = "recording.m365.io/bot-secret";

/// `botPolicy` of the operator configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BotPolicy {
    /// Registries or repositories a bot image may come from, e.g. `ghcr.io/recording-platform`
    /// (every repository under it) or `registry.example.com/teams/bot` (that one). Docker Hub
    /// names are matched in full (`bot` is `docker.io/library/bot`).
    pub allowed_repositories: Vec<String>,
    /// Whether a bot image must be pinned by digest (`…@sha256:<64 hex>`).
    pub require_digest: bool,
    /// The label (value `"true"`) a Secret must carry before a bot may mount it.
    pub secret_label: String,
}

impl Default for BotPolicy {
    fn default() -> Self {
        BotPolicy {
            allowed_repositories: vec![DEFAULT_ALLOWED_REPOSITORY.to_owned()],
            require_digest: false,
            secret_label: DEFAULT_SECRET_LABEL.to_owned(),
        }
    }
}

/// An image reference split into its fully qualified repository and its digest, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub digest: Option<String>,
}

/// Parses `image` as the container runtime would resolve it: a first path segment without a
/// `.` or `:` (and not `localhost`) is a Docker Hub repository.
pub fn parse_image(image: &str) -> ImageRef {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest.to_owned())),
        None => (image, None),
    };
    // A tag is a `:` after the last `/` (a `:` before it is a registry's port).
    let last_segment = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_segment..].find(':') {
        Some(colon) => &name[..last_segment + colon],
        None => name,
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    ImageRef { repository, digest }
}

fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl BotPolicy {
    /// Problems with the policy itself, by configuration path.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.allowed_repositories.is_empty() {
            problems.push(
                "botPolicy.allowedRepositories: must name at least one registry or repository \
                 (the default bot image's is ghcr.io/recording-platform)"
                    .to_owned(),
            );
        }
        for (i, entry) in self.allowed_repositories.iter().enumerate() {
            if entry.trim().is_empty() || entry.contains(['@', ' ']) {
                problems.push(format!(
                    "botPolicy.allowedRepositories[{i}]: {entry:?} is not a registry or repository"
                ));
            }
        }
        if self.secret_label.trim().is_empty() {
            problems.push("botPolicy.secretLabel: must not be empty".to_owned());
        }
    }

    /// Why the bot image `image` (at `field`) is refused, if it is.
    pub fn image_violation(&self, field: &str, image: &str) -> Option<Violation> {
        let parsed = parse_image(image);
        let allowed = self.allowed_repositories.iter().any(|entry| {
            let entry = entry.trim().trim_end_matches('/');
            parsed.repository == entry
                || parsed
                    .repository
                    .strip_prefix(entry)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        let message = if !allowed {
            format!(
                "image {image:?} (repository {:?}) is not from a registry or repository the \
                 operator allows (botPolicy.allowedRepositories: {})",
                parsed.repository,
                self.allowed_repositories.join(", ")
            )
        } else if self.require_digest && !parsed.digest.as_deref().is_some_and(is_sha256_digest) {
            format!(
                "image {image:?} is not pinned by digest (…@sha256:<64 hex digits>), which the \
                 operator requires (botPolicy.requireDigest)"
            )
        } else {
            return None;
        };
        Some(Violation {
            field: field.to_owned(),
            message,
        })
    }

    /// Why the Secret `name` (at `field`), with `labels`, may not be mounted by a bot, if it
    /// may not.
    pub fn secret_violation(
        &self,
        field: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Violation> {
        if labels.get(&self.secret_label).map(String::as_str) == Some("true") {
            return None;
        }
        Some(Violation {
            field: field.to_owned(),
            message: format!(
                "Secret {name:?} lacks the label {}=true (botPolicy.secretLabel) that a Secret \
                 needs before a bot may mount it",
                self.secret_label
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_resolve_as_the_runtime_resolves_them() {
        let r = |image: &str| parse_image(image).repository;
        assert_eq!(r("bot"), "docker.io/library/bot");
        assert_eq!(r("bot:1.2"), "docker.io/library/bot");
        assert_eq!(r("team/bot:1.2"), "docker.io/team/bot");
        assert_eq!(r("localhost/bot"), "localhost/bot");
        assert_eq!(
            r("registry.example.com:5000/teams/bot:2.1"),
            "registry.example.com:5000/teams/bot"
        );
        let pinned = parse_image(&format!("ghcr.io/a/b@sha256:{}", "ab".repeat(32)));
        assert_eq!(pinned.repository, "ghcr.io/a/b");
        assert!(is_sha256_digest(pinned.digest.as_deref().unwrap()));
    }

    #[test]
    fn only_allowed_repositories_and_pinned_images_when_asked() {
        let policy = BotPolicy::default();
        let field = "spec.bot.image";
        assert_eq!(
            policy.image_violation(field, "ghcr.io/recording-platform/recording-bot:1.0.0"),
            None
        );
        // A prefix must end at a path segment.
        let near = policy
            .image_violation(field, "ghcr.io/recording-platform-evil/bot:1")
            .unwrap();
        assert_eq!(near.field, "spec.bot.image");
        assert!(
            near.message
                .contains("is not from a registry or repository the operator allows"),
            "{}",
            near.message
        );
        assert!(policy.image_violation(field, "bot:latest").is_some());

        let pinned_only = BotPolicy {
            require_digest: true,
            ..BotPolicy::default()
        };
        let tagged = pinned_only
            .image_violation(field, "ghcr.io/recording-platform/recording-bot:1.0.0")
            .unwrap();
        assert!(
            tagged.message.contains("botPolicy.requireDigest"),
            "{}",
            tagged.message
        );
        let digest = format!(
            "ghcr.io/recording-platform/recording-bot@sha256:{}",
            "0f".repeat(32)
        );
        assert_eq!(pinned_only.image_violation(field, &digest), None);
    }

    #[test]
    fn a_secret_needs_the_named_label() {
        let policy = BotPolicy::default();
        let field = "spec.appRegistration.clientSecretRef.name";
        let labelled = BTreeMap::from([(DEFAULT_SECRET_LABEL.to_owned(), "true".to_owned())]);
        assert_eq!(policy.secret_violation(field, "bot", &labelled), None);
        let v = policy
            .secret_violation(field, "db-password", &BTreeMap::new())
            .unwrap();
        assert_eq!(v.field, field);
        assert!(
            v.message
                .contains("lacks the label recording.m365.io/bot-secret=true"),
            "{}",
            v.message
        );
        let mut problems = Vec::new();
        BotPolicy {
            allowed_repositories: vec![],
            ..BotPolicy::default()
        }
        .check(&mut problems);
        assert!(problems[0].starts_with("botPolicy.allowedRepositories"));
    }
}
