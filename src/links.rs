//! Signed, expiring links to a tenant's Quick Start page.
//!
//! A link is `{publicUrl}/quickstart/{token}`, the token `{tenant}.{expires}.{mac}`: the
//! Tenant's name (base64url), the expiry in Unix seconds, and an HMAC-SHA256 over the name,
//! the Tenant's uid and the expiry. The uid is not in the token: a Tenant deleted and created
//! again under the same name gets a new uid, and the old links stop working.
//!
//! The keys come from one Secret value, one key per line: the first signs, every one verifies,
//! so a rotation is "add the new key as the first line, remove the old one once the links it
//! signed have been renewed" (the Tenant controller renews a link once half its validity has
//! passed, and signs anew when its key is gone). The value is re-read every
//! [`KEY_CACHE_TTL`], so a rotation needs no restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use k8s_openapi::jiff::Timestamp;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::{public_url_base, OperatorConfig, SecretRef, SecretSource};

/// Path of the Quick Start pages under the public URL.
pub const PAGE_PATH: &str = "/quickstart/";
/// The shortest signing key accepted: the output size of SHA-256.
pub const MIN_KEY_BYTES: usize = 32;
/// How long the signing keys read from their Secret are used before they are read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Longest token parsed at all; longer ones are refused without work.
const MAX_TOKEN_LEN: usize = 400;
/// Domain separation of the signed message (a key used elsewhere signs nothing valid here).
const SIGNED_PREFIX: &str = "recording-operator/quickstart/v1";

type HmacSha256 = Hmac<Sha256>;

/// Errors of the signing keys.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("quickStart.signingKeys: {0}")]
    Secret(#[from] crate::config::ConfigError),
    #[error("quickStart.signingKeys: {reference}: line {line}: a signing key must be at least {MIN_KEY_BYTES} bytes long (it has {len})")]
    ShortKey {
        reference: String,
        line: usize,
        len: usize,
    },
    #[error("quickStart.signingKeys: {reference}: holds no key (one key per line)")]
    NoKey { reference: String },
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens (pure)
// ---------------------------------------------------------------------------------------------

/// The signing keys, in order: the first signs, all verify. `Debug` shows the count only.
#[derive(Clone)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} keys)", self.0.len())
    }
}

impl SigningKeys {
    /// Reads a Secret value: one key per line, blank lines ignored, surrounding space trimmed.
    /// `reference` names the Secret in errors (never the value).
    pub fn parse(value: &str, reference: &str) -> Result<Self, LinkError> {
        let mut keys = Vec::new();
        for (index, line) in value.lines().enumerate() {
            let key = line.trim();
            if key.is_empty() {
                continue;
            }
            if key.len() < MIN_KEY_BYTES {
                return Err(LinkError::ShortKey {
                    reference: reference.to_owned(),
                    line: index + 1,
                    len: key.len(),
                });
            }
            keys.push(key.as_bytes().to_vec());
        }
        if keys.is_empty() {
            return Err(LinkError::NoKey {
                reference: reference.to_owned(),
            });
        }
        Ok(SigningKeys(keys))
    }

    fn mac(key: &[u8], tenant: &str, uid: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(format!("{SIGNED_PREFIX}\n{tenant}\n{uid}\n{expires}").as_bytes());
        mac
    }

    /// HMAC-SHA256 of `message` with the first key (for other signed values, e.g. the consent
    /// links; `message` must start with a domain of its own).
    pub(crate) fn tag(&self, message: &str) -> Vec<u8> {
        let mut mac =
            HmacSha256::new_from_slice(&self.0[0]).expect("HMAC takes keys of any length");
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether one of the keys made `tag` over `message`; each comparison in constant time.
    pub(crate) fn verifies(&self, message: &str, tag: &[u8]) -> bool {
        self.0.iter().any(|key| {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message.as_bytes());
            mac.verify_slice(tag).is_ok()
        })
    }

    /// A token for the Tenant `tenant` (uid `uid`) valid until `expires`, signed with the
    /// first key.
    pub fn sign(&self, tenant: &str, uid: &str, expires: Timestamp) -> String {
        let expires = expires.as_second();
        let tag = Self::mac(&self.0[0], tenant, uid, expires)
            .finalize()
            .into_bytes();
        format!(
            "{}.{expires}.{}",
            URL_SAFE_NO_PAD.encode(tenant),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }
}

/// A token as read from a URL, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    tenant: String,
    expires: i64,
    tag: Vec<u8>,
}

impl Token {
    /// Reads a token's parts; `None` for anything that is not one.
    pub fn parse(token: &str) -> Option<Token> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = token.split('.');
        let (tenant, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tenant = String::from_utf8(URL_SAFE_NO_PAD.decode(tenant).ok()?).ok()?;
        if tenant.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Token {
            tenant,
            expires: expires.parse().ok()?,
            tag: URL_SAFE_NO_PAD.decode(tag).ok()?,
        })
    }

    /// The Tenant the token claims to be for (unverified until [`Token::verify`]).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// When the token expires.
    pub fn expires(&self) -> Option<Timestamp> {
        Timestamp::from_second(self.expires).ok()
    }

    /// Whether one of `keys` signed this token for the Tenant with `uid`, and it has not
    /// expired at `now`. Each comparison takes constant time.
    pub fn verify(&self, keys: &SigningKeys, uid: &str, now: Timestamp) -> bool {
        now.as_second() < self.expires
            && keys.0.iter().any(|key| {
                SigningKeys::mac(key, &self.tenant, uid, self.expires)
                    .verify_slice(&self.tag)
                    .is_ok()
            })
    }
}

/// The link a Tenant's status should carry at `now`, and when it is due for renewal:
/// `previous` when it still verifies with `keys` and less than half its validity has passed,
/// else a new one valid for `validity`.
pub fn current_link(
    base: &str,
    keys: &SigningKeys,
    validity: Duration,
    previous: Option<&str>,
    tenant: &str,
    uid: &str,
    now: Timestamp,
) -> (String, Timestamp) {
    let half = jiff_span(validity / 2);
    let prefix = format!("{base}{PAGE_PATH}");
    let kept = previous
        .and_then(|url| url.strip_prefix(&prefix))
        .and_then(Token::parse)
        .filter(|t| t.tenant == tenant && t.verify(keys, uid, now))
        .and_then(|t| Some((t.expires()?.checked_sub(half).ok()?, t)))
        .filter(|(renew_at, _)| *renew_at > now);
    if let (Some(url), Some((renew_at, _))) = (previous, kept) {
        return (url.to_owned(), renew_at);
    }
    let expires = now
        .checked_add(jiff_span(validity))
        .unwrap_or(Timestamp::MAX);
    let token = keys.sign(tenant, uid, expires);
    let renew_at = expires.checked_sub(half).unwrap_or(now);
    (format!("{prefix}{token}"), renew_at)
}

fn jiff_span(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

// ---------------------------------------------------------------------------------------------
// The keys at run time
// ---------------------------------------------------------------------------------------------

/// The Quick Start links of a configured operator: the public URL, the validity, and the
/// signing keys read from their Secret (cached for [`KEY_CACHE_TTL`]).
#[derive(Clone)]
pub struct QuickStartLinks {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    validity: Duration,
    reference: SecretRef,
    secrets: Arc<dyn SecretSource>,
    cache: Mutex<Option<(Instant, Arc<SigningKeys>)>>,
}

impl std::fmt::Debug for QuickStartLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickStartLinks")
            .field("base", &self.inner.base)
            .field("keys", &self.inner.reference.to_string())
            .finish()
    }
}

impl QuickStartLinks {
    /// The links of a validated configuration; `None` when Quick Start is not configured.
    pub fn from_config(config: &OperatorConfig, secrets: Arc<dyn SecretSource>) -> Option<Self> {
        let reference = config.quick_start.signing_keys.clone()?;
        let base = public_url_base(config.public_url.as_deref()?).ok()?;
        Some(QuickStartLinks {
            inner: Arc::new(Inner {
                base,
                validity: config.quick_start.link_validity,
                reference,
                secrets,
                cache: Mutex::new(None),
            }),
        })
    }

    /// The public base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// How long a link stays valid (`quickStart.linkValidity`).
    pub fn validity(&self) -> Duration {
        self.inner.validity
    }

    /// The page of a token.
    pub fn page_url(&self, token: &str) -> String {
        format!("{}{PAGE_PATH}{token}", self.inner.base)
    }

    /// The signing keys, read from their Secret at most every [`KEY_CACHE_TTL`].
    pub async fn keys(&self) -> Result<Arc<SigningKeys>, LinkError> {
        if let Some((at, keys)) = self.inner.cache.lock().expect("key cache lock").as_ref() {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(keys.clone());
            }
        }
        let reference = &self.inner.reference;
        let value = self.inner.secrets.get(reference).await?;
        let keys = Arc::new(SigningKeys::parse(
            value.expose_secret(),
            &reference.to_string(),
        )?);
        *self.inner.cache.lock().expect("key cache lock") = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// The link `tenant`'s status should carry at `now`, and how long until it is due for
    /// renewal. Signing keys that cannot be read keep the link the status has (logged: the
    /// page refuses every link until the keys are fixed).
    pub async fn for_tenant(
        &self,
        tenant: &crate::crd::Tenant,
        now: Timestamp,
    ) -> Option<(String, Option<Duration>)> {
        let previous = tenant
            .status
            .as_ref()
            .and_then(|s| s.quick_start_url.clone());
        let keys = match self.keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign Quick Start links");
                return previous.map(|url| (url, None));
            }
        };
        let name = kube::ResourceExt::name_any(tenant);
        let uid = tenant.metadata.uid.as_deref().unwrap_or_default();
        let (url, renew_at) = self.current_link(&keys, previous.as_deref(), &name, uid, now);
        let wait = Duration::try_from(renew_at.duration_since(now)).unwrap_or_default();
        Some((url, Some(wait.max(Duration::from_secs(1)))))
    }

    /// [`current_link`] with this operator's base URL and validity.
    pub fn current_link(
        &self,
        keys: &SigningKeys,
        previous: Option<&str>,
        tenant: &str,
        uid: &str,
        now: Timestamp,
    ) -> (String, Timestamp) {
        current_link(
            &self.inner.base,
            keys,
            self.inner.validity,
            previous,
            tenant,
            uid,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://onboarding.example.com";
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn keys(lines: &[&str]) -> SigningKeys {
        SigningKeys::parse(&lines.join("\n"), "Secret ns/name key keys").unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_signed_token_verifies_for_its_tenant_until_it_expires() {
        let k = keys(&[A]);
        let token = Token::parse(&k.sign("contoso", "uid-1", at(2_000))).unwrap();
        assert_eq!(token.tenant(), "contoso");
        assert!(token.verify(&k, "uid-1", at(1_999)));
        assert!(!token.verify(&k, "uid-1", at(2_000)), "expired");
        assert!(
            !token.verify(&k, "uid-2", at(1_000)),
            "a Tenant created again under the same name"
        );
        assert!(!token.verify(&keys(&[B]), "uid-1", at(1_000)), "other key");
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let k = keys(&[A]);
        let good = k.sign("contoso", "uid", at(2_000));
        let (name, rest) = good.split_once('.').unwrap();
        let (expires, tag) = rest.split_once('.').unwrap();
        let other_name = URL_SAFE_NO_PAD.encode("fabrikam");
        for bad in [
            format!("{other_name}.{expires}.{tag}"),
            format!("{name}.9{expires}.{tag}"),
            format!("{name}.{expires}.{}", &tag[1..]),
            format!("{name}.{expires}.A{}", &tag[1..]),
            format!("{name}.{expires}"),
            format!("{name}.-5.{tag}"),
            format!("{good}.x"),
            "x".repeat(1000),
            String::new(),
        ] {
            let ok = Token::parse(&bad).is_some_and(|t| t.verify(&k, "uid", at(1_000)));
            assert!(!ok, "{bad}");
        }
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = keys(&[A]);
        let rotated = keys(&[B, A]);
        let from_old = Token::parse(&old.sign("t", "u", at(2_000))).unwrap();
        assert!(
            from_old.verify(&rotated, "u", at(1_000)),
            "links in flight survive"
        );
        let from_new = Token::parse(&rotated.sign("t", "u", at(2_000))).unwrap();
        assert!(!from_new.verify(&old, "u", at(1_000)), "signed with B");
        assert!(from_new.verify(&keys(&[B]), "u", at(1_000)));
    }

    #[test]
    fn keys_are_checked_line_by_line_without_showing_them() {
        let err = SigningKeys::parse(&format!("{A}\n\n short-key \n"), "Secret ns/s key k")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "quickStart.signingKeys: Secret ns/s key k: line 3: a signing key must be at least 32 bytes long (it has 9)"
        );
        assert!(!err.contains("short-key"));
        assert!(SigningKeys::parse(" \n", "r")
            .unwrap_err()
            .to_string()
            .contains("holds no key"));
        assert_eq!(format!("{:?}", keys(&[A, B])), "SigningKeys(2 keys)");
    }

    #[test]
    fn a_link_is_kept_until_half_its_validity_then_renewed() {
        let k = keys(&[A]);
        let now = at(1_000_000);
        let (first, renew_at) = current_link(BASE, &k, 14 * DAY, None, "contoso", "u", now);
        assert!(first.starts_with("https://onboarding.example.com/quickstart/"));
        assert_eq!(renew_at, at(1_000_000 + 7 * 86_400));
        let later = at(1_000_000 + 6 * 86_400);
        let (kept, same) = current_link(BASE, &k, 14 * DAY, Some(&first), "contoso", "u", later);
        assert_eq!((kept.as_str(), same), (first.as_str(), renew_at));
        let (renewed, next) =
            current_link(BASE, &k, 14 * DAY, Some(&first), "contoso", "u", renew_at);
        assert_ne!(renewed, first);
        assert_eq!(next, at(1_000_000 + 14 * 86_400));
        // The key that signed it is gone: a new link at once.
        let (resigned, _) = current_link(
            BASE,
            &keys(&[B]),
            14 * DAY,
            Some(&first),
            "contoso",
            "u",
            later,
        );
        assert_ne!(resigned, first);
        // Another base URL (the operator moved): a new link.
        let (moved, _) = current_link(
            "https://elsewhere.example.com",
            &k,
            14 * DAY,
            Some(&first),
            "contoso",
            "u",
            later,
        );
        assert!(moved.starts_with("https://elsewhere.example.com/quickstart/"));
    }
}
