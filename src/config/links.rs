//! `quickStart` of the operator configuration: the Quick Start links' signing keys and
//! validity, checked together with `publicUrl`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::SecretRef;

/// `quickStart` in the operator configuration.
///
/// ```yaml
/// publicUrl: https://onboarding.example.com
/// quickStart:
///   signingKeys: { secretRef: { namespace: recording-operator-system, name: quickstart-signing, key: keys } }
///   linkValidity: 14d
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct QuickStartConfig {
    /// Where the link signing keys are: one key per line, at least 32 bytes each; the first
    /// signs, all verify. Without it (and `publicUrl`) there are no Quick Start links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<SecretRef>,
    /// How long a link stays valid (default 14d); it is renewed once half of it has passed.
    #[serde(with = "humantime_serde")]
    pub link_validity: Duration,
}

impl Default for QuickStartConfig {
    fn default() -> Self {
        QuickStartConfig {
            signing_keys: None,
            link_validity: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl QuickStartConfig {
    /// Shortest and longest link validity accepted.
    const VALIDITY: (Duration, Duration) = (
        Duration::from_secs(3600),
        Duration::from_secs(90 * 24 * 3600),
    );

    /// Checks the section with the configuration's `publicUrl`: both or neither.
    pub(crate) fn check(&self, public_url: Option<&str>, problems: &mut Vec<String>) {
        match (&self.signing_keys, public_url) {
            (None, None) => {}
            (Some(_), None) => problems.push(
                "publicUrl: required with quickStart.signingKeys (the Quick Start links start with it)".to_owned(),
            ),
            (None, Some(_)) => problems.push(
                "quickStart.signingKeys: required with publicUrl (a Secret key holding the link signing keys, one per line)".to_owned(),
            ),
            (Some(reference), Some(url)) => {
                reference.check("quickStart.signingKeys", problems);
                if let Err(e) = public_url_base(url) {
                    problems.push(format!("publicUrl: {url:?} {e}"));
                }
            }
        }
        let (min, max) = Self::VALIDITY;
        if !(min..=max).contains(&self.link_validity) {
            problems.push(format!(
                "quickStart.linkValidity: {} is not between 1h and 90d",
                humantime_serde::re::humantime::format_duration(self.link_validity)
            ));
        }
    }
}

/// The public URL as a base: absolute http(s), no query or fragment, no trailing slash.
pub(crate) fn public_url_base(raw: &str) -> Result<String, &'static str> {
    let url = Url::parse(raw).map_err(|_| "is not an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("is not an http(s) URL with a host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query and no fragment");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_needs_a_public_url_and_a_sane_validity() {
        let mut problems = Vec::new();
        let reference = SecretRef::SecretRef {
            namespace: "ns".into(),
            name: "quickstart".into(),
            key: "keys".into(),
        };
        let config = QuickStartConfig {
            signing_keys: Some(reference.clone()),
            link_validity: Duration::from_secs(60),
        };
        config.check(None, &mut problems);
        config.check(Some("ftp://x"), &mut problems);
        config.check(Some("https://x.example.com/?a=1"), &mut problems);
        QuickStartConfig::default().check(Some("https://x.example.com"), &mut problems);
        QuickStartConfig::default().check(None, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("publicUrl: required with quickStart.signingKeys"),
            "{text}"
        );
        assert!(
            text.contains("publicUrl: \"ftp://x\" is not an http(s) URL"),
            "{text}"
        );
        assert!(text.contains("must have no query"), "{text}");
        assert!(
            text.contains("quickStart.linkValidity: 1m is not between 1h and 90d"),
            "{text}"
        );
        assert!(
            text.contains("quickStart.signingKeys: required with publicUrl"),
            "{text}"
        );
        assert_eq!(problems.len(), 7, "{text}");
        assert_eq!(
            public_url_base("https://x.example.com/onboarding/").unwrap(),
            "https://x.example.com/onboarding"
        );
    }
}
