//! The `state` of the admin-consent links: which ConsentGrant a consent redirect is about, and
//! the Quick Start page to send the admin back to, signed so that the public
//! `/consent/callback` believes nothing it did not write itself.
//!
//! A state is `{namespace}.{grant}.{expires}.{page}.{mac}`: the grant's namespace and name and
//! the page's Quick Start token (empty when the link is not on a page) in base64url, the
//! expiry in Unix seconds, and an HMAC-SHA256 over all of them with the Quick Start signing
//! keys ([`crate::links::SigningKeys`]; a domain of its own, so no Quick Start token is a
//! valid state or the other way round). The first key signs, every configured key verifies:
//! a rotation keeps the links in flight working for their lifetime.
//!
//! The expiry is not "now plus the validity" (the link in a grant's status would change at
//! every reconcile) but the end of the period after next, periods being half the Quick Start
//! link validity: a grant's link stays the same for a period, is valid from one and a half to
//! one validity after it was written, and changes at the next period's first reconcile.
//!
//! Everything here is pure; the callback and the writers of the links call it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use url::Url;

use crate::links::{SigningKeys, Token};

/// Domain separation of the signed message.
const SIGNED_PREFIX: &str = "recording-operator/consent-state/v1";
/// Longest state parsed at all; longer ones are refused without work.
pub const MAX_STATE_LEN: usize = 1024;

/// A state that verified: the grant it names and the Quick Start token of the page it was
/// sent from, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantState {
    pub namespace: String,
    pub name: String,
    /// The Quick Start token of the page the admin came from.
    pub page: Option<String>,
    pub expires: i64,
}

fn message(namespace: &str, name: &str, expires: i64, page: &str) -> String {
    format!("{SIGNED_PREFIX}\n{namespace}\n{name}\n{expires}\n{page}")
}

/// A Kubernetes object or namespace name (RFC 1123 subdomain): nothing that could leave its
/// URL path segment (`/`, `..`, `?`).
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !s.contains("..")
}

/// The state for grant `namespace/name`, from the page of Quick Start token `page` if any,
/// valid until `expires`, signed with the first key.
pub fn sign(
    keys: &SigningKeys,
    namespace: &str,
    name: &str,
    page: Option<&str>,
    expires: Timestamp,
) -> String {
    let expires = expires.as_second();
    let page = page.unwrap_or_default();
    let tag = keys.tag(&message(namespace, name, expires, page));
    format!(
        "{}.{}.{expires}.{}.{}",
        URL_SAFE_NO_PAD.encode(namespace),
        URL_SAFE_NO_PAD.encode(name),
        URL_SAFE_NO_PAD.encode(page),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The grant a state names, when one of `keys` signed it and it has not expired at `now`;
/// `None` for anything else (malformed, tampered with, expired, unknown key).
pub fn open(keys: &SigningKeys, state: &str, now: Timestamp) -> Option<GrantState> {
    if state.len() > MAX_STATE_LEN {
        return None;
    }
    let mut parts = state.split('.');
    let mut next = || parts.next();
    let (namespace, name, expires, page, tag) = (next()?, next()?, next()?, next()?, next()?);
    if next().is_some() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = |part: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok();
    let (namespace, name, page) = (text(namespace)?, text(name)?, text(page)?);
    let expires: i64 = expires.parse().ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if now.as_second() >= expires
        || !keys.verifies(&message(&namespace, &name, expires, &page), &tag)
        || !is_object_name(&namespace)
        || !is_object_name(&name)
    {
        return None;
    }
    Some(GrantState {
        namespace,
        name,
        page: (!page.is_empty()).then_some(page),
        expires,
    })
}

/// When a state written at `now` expires, for a link validity of `validity`: the end of the
/// period after next, periods being half the validity (see the module's documentation).
pub fn expiry(now: Timestamp, validity: std::time::Duration) -> Timestamp {
    let half = i64::try_from((validity / 2).as_secs())
        .unwrap_or(i64::MAX)
        .max(1);
    let period = now.as_second().div_euclid(half);
    period
        .checked_add(3)
        .and_then(|p| p.checked_mul(half))
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The `state` query parameter of a URL.
pub fn state_of(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
}

/// `consent_url` with its state signed anew to carry the Quick Start token `page` (same grant,
/// same expiry), so the consent callback sends the admin back to that page. A URL whose state
/// does not verify, or a page token that is not one, is left as it is.
pub fn returning_to_page(
    consent_url: &str,
    keys: &SigningKeys,
    page: &str,
    now: Timestamp,
) -> String {
    let Ok(mut url) = Url::parse(consent_url) else {
        return consent_url.to_owned();
    };
    let Some(grant) = state_of(consent_url).and_then(|s| open(keys, &s, now)) else {
        return consent_url.to_owned();
    };
    if Token::parse(page).is_none() {
        return consent_url.to_owned();
    }
    let expires = Timestamp::from_second(grant.expires).unwrap_or(Timestamp::MAX);
    let state = sign(keys, &grant.namespace, &grant.name, Some(page), expires);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                state.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn keys(lines: &[&str]) -> SigningKeys {
        SigningKeys::parse(&lines.join("\n"), "Secret ns/name key keys").unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_state_names_its_grant_and_page_until_it_expires() {
        let k = keys(&[A]);
        let state = sign(&k, "tenant-contoso", "recording", None, at(2_000));
        let opened = open(&k, &state, at(1_999)).unwrap();
        assert_eq!(
            (opened.namespace.as_str(), opened.name.as_str(), opened.page),
            ("tenant-contoso", "recording", None)
        );
        assert_eq!(open(&k, &state, at(2_000)), None, "expired");
        assert_eq!(open(&keys(&[B]), &state, at(1_000)), None, "another key");

        let with_page = sign(&k, "tenant-contoso", "login", Some("p.1.q"), at(2_000));
        assert_eq!(
            open(&k, &with_page, at(1_000)).unwrap().page.as_deref(),
            Some("p.1.q")
        );
    }

    #[test]
    fn a_forged_or_tampered_state_is_refused() {
        let k = keys(&[A]);
        let good = sign(&k, "tenant-contoso", "recording", None, at(2_000));
        let parts: Vec<&str> = good.split('.').collect();
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let forged_path = sign(&k, "tenant-contoso", "../../secrets", None, at(2_000));
        for bad in [
            // Today's plain `<namespace>/<grant>` state.
            "tenant-contoso/recording".to_owned(),
            format!(
                "{}.{}.{}.{}.{}",
                b64("tenant-fabrikam"),
                parts[1],
                parts[2],
                parts[3],
                parts[4]
            ),
            format!(
                "{}.{}.9{}.{}.{}",
                parts[0], parts[1], parts[2], parts[3], parts[4]
            ),
            format!(
                "{}.{}.{}.{}.{}",
                parts[0],
                parts[1],
                parts[2],
                b64("x.1.y"),
                parts[4]
            ),
            format!(
                "{}.{}.{}.{}.A{}",
                parts[0],
                parts[1],
                parts[2],
                parts[3],
                &parts[4][1..]
            ),
            format!("{good}.x"),
            parts[..4].join("."),
            // Signed, but a name that is not an object name is not believed either.
            forged_path,
            "x".repeat(5000),
            String::new(),
        ] {
            assert_eq!(open(&k, &bad, at(1_000)), None, "{bad}");
        }
        // A Quick Start token signed with the same key is no state.
        let page = k.sign("contoso", "uid", at(2_000));
        assert_eq!(open(&k, &page, at(1_000)), None);
    }

    #[test]
    fn links_in_flight_survive_a_key_rotation() {
        let old = keys(&[A]);
        let rotated = keys(&[B, A]);
        let state = sign(&old, "tenant-contoso", "recording", None, at(2_000));
        assert!(open(&rotated, &state, at(1_000)).is_some());
        let new = sign(&rotated, "tenant-contoso", "recording", None, at(2_000));
        assert!(open(&keys(&[B]), &new, at(1_000)).is_some());
        assert!(open(&old, &new, at(1_000)).is_none());
    }

    #[test]
    fn the_expiry_is_stable_within_a_period_and_at_least_one_validity_ahead() {
        let validity = Duration::from_secs(14 * 86_400);
        let half = 7 * 86_400;
        let start = at(100 * half);
        assert_eq!(expiry(start, validity), at(103 * half));
        assert_eq!(expiry(at(101 * half - 1), validity), at(103 * half));
        assert_eq!(expiry(at(101 * half), validity), at(104 * half));
        for t in [100 * half, 100 * half + 1, 101 * half - 1] {
            let left = expiry(at(t), validity).as_second() - t;
            assert!(left > 2 * half && left <= 3 * half, "{left}");
        }
    }

    #[test]
    fn a_page_link_carries_the_page_in_a_state_signed_anew() {
        let k = keys(&[A]);
        let now = at(1_000);
        let page = k.sign("contoso", "uid", at(5_000));
        let state = sign(&k, "tenant-contoso", "recording", None, at(2_000));
        let mut url =
            Url::parse("https://login.example.com/t/v2.0/adminconsent?client_id=1").unwrap();
        url.query_pairs_mut().append_pair("state", &state);
        let on_page = returning_to_page(url.as_str(), &k, &page, now);
        let grant = open(&k, &state_of(&on_page).unwrap(), now).unwrap();
        assert_eq!(grant.page.as_deref(), Some(page.as_str()));
        assert_eq!((grant.name.as_str(), grant.expires), ("recording", 2_000));
        assert!(on_page.contains("client_id=1"), "{on_page}");
        // A link without a valid state is left alone.
        let plain = "https://login.example.com/t/v2.0/adminconsent?client_id=1&state=a%2Fb";
        assert_eq!(returning_to_page(plain, &k, &page, now), plain);
    }
}
