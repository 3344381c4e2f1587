//! Service SAS for one blob container: what a recording bot gets to write its recordings,
//! signed with the storage account's key (Azure's service SAS, version 2020-12-06 string to
//! sign), valid for that container only.
//!
//! The token is a pure function of the container, the permissions and the validity window, and
//! the window is aligned to fixed periods: every reconcile within a period signs the very same
//! token, so the bots' Secret (and pods) change once per period, not on every pass.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::StorageError;

/// The SAS version signed (the string to sign carries the encryption scope since 2020-12-06).
pub const SAS_VERSION: &str = "2020-12-06";
/// Container permissions a recording bot gets: read, add, create, write, list; never delete
/// (retention and the customer's deletions go through the platform).
pub const BOT_PERMISSIONS: &str = "racwl";
/// A token is signed for the period it is in and the next one.
pub const SAS_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);
/// Start this much before the period, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The validity window of the token signed at `now`: from just before the start of its period
/// to the end of the next period (so at least one full period left at any time).
pub fn window(now: SystemTime) -> (SystemTime, SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let period = SAS_PERIOD.as_secs();
    let start = UNIX_EPOCH + Duration::from_secs(since / period * period);
    (start - CLOCK_SKEW, start + 2 * SAS_PERIOD)
}

fn iso(t: SystemTime) -> String {
    let seconds = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    azure_core::time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        })
        .unwrap_or_default()
}

/// The account name of a blob endpoint: the first host label
/// (`https://{account}.blob.core.windows.net`), or for an emulator's path-style endpoint the
/// first path segment (`http://127.0.0.1:10000/{account}`).
pub fn account_name(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url.host_str()?;
    let path_style = host.parse::<std::net::IpAddr>().is_ok() || host == "localhost";
    let name = if path_style {
        url.path_segments()?.find(|s| !s.is_empty())?.to_string()
    } else {
        host.split('.').next()?.to_string()
    };
    (!name.is_empty()).then_some(name)
}

/// Signs a service SAS token (query string, without `?`) for `container` of `account` with the
/// account's base64 `key`, valid from `start` to `expiry`.
pub fn container_sas(
    account: &str,
    key: &SecretString,
    container: &str,
    permissions: &str,
    (start, expiry): (SystemTime, SystemTime),
) -> Result<SecretString, StorageError> {
    let key =
        BASE64
            .decode(key.expose_secret().trim())
            .map_err(|_| StorageError::InvalidCredential {
                reason: "the account key is not base64".into(),
            })?;
    let (st, se) = (iso(start), iso(expiry));
    let resource = format!("/blob/{account}/{container}");
    // permissions, start, expiry, resource, identifier, IP, protocol, version, resource type,
    // snapshot time, encryption scope, then the five response header overrides.
    let to_sign = [
        permissions,
        &st,
        &se,
        &resource,
        "",
        "",
        "",
        SAS_VERSION,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).expect("HMAC-SHA256 takes a key of any length");
    mac.update(to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
    Ok(SecretString::from(format!(
        "sv={SAS_VERSION}&sr=c&sp={permissions}&st={}&se={}&sig={}",
        enc(&st),
        enc(&se),
        enc(&signature)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_same_all_period_and_leaves_a_period() {
        let t = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 3_600);
        let later = t + Duration::from_secs(5 * 86_400);
        assert_eq!(window(t), window(later));
        let (start, expiry) = window(t);
        assert!(start < t && expiry > t + SAS_PERIOD);
    }

    #[test]
    fn account_names_from_both_endpoint_styles() {
        assert_eq!(
            account_name("https://recweu.blob.core.windows.net").as_deref(),
            Some("recweu")
        );
        assert_eq!(
            account_name("http://127.0.0.1:10000/westeurope").as_deref(),
            Some("westeurope")
        );
        assert_eq!(account_name("not a url"), None);
    }

    #[test]
    fn tokens_are_deterministic_and_scoped_to_their_container() {
        let key = SecretString::from(BASE64.encode([7u8; 64]));
        let w = window(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let a = container_sas("acct", &key, "one", BOT_PERMISSIONS, w).unwrap();
        let again = container_sas("acct", &key, "one", BOT_PERMISSIONS, w).unwrap();
        let other = container_sas("acct", &key, "two", BOT_PERMISSIONS, w).unwrap();
        assert_eq!(a.expose_secret(), again.expose_secret());
        assert_ne!(a.expose_secret(), other.expose_secret());
        assert!(a
            .expose_secret()
            .starts_with("sv=2020-12-06&sr=c&sp=racwl&st="));
        let bad = container_sas("acct", &SecretString::from("%%%"), "one", "r", w).unwrap_err();
        assert!(bad.to_string().contains("not base64"), "{bad}");
    }
}
