//! App-only access tokens: the claims the Microsoft identity platform puts in a
//! client-credentials token for Microsoft Graph (v1.0 token format, as Graph receives
//! them), signed RS256 with the simulator's key, whose public half the discovery
//! document's `jwks_uri` serves.
//!
//! The key is a fixed, published test key (like Azurite's well-known account key): it
//! protects nothing and exists so signatures verify the way real ones do.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// PKCS#1 DER of the simulator's RSA-2048 signing key (test key, not a secret).
const SIGNING_KEY_DER: &[u8] = include_bytes!("signing-key.der");

/// Base64url modulus of the signing key, for the JWKS document.
const MODULUS_B64URL: &str = "wyoCaSiNSHN2Ny4t3RVEM3WEGIoQzMx-Z-QlYrdCKr2i9TQNfgbdqWCzPMrGDwLZGbH8P1eT9gm3F1dgXOyjY33b_2SgcrxmZVh4-h2ZEwhOU4dzjyL9f95igmLW0FVWBUGg5Mj8WAKvTxktNuvn3d3gsZiNLSUYI9uTipmb8fLmFlLOUuE6bDPDwwj181uhVNuElcombzztuHu5F4cPXjyzhrQ_K_oCRs7XauQd31n7GtAsRn-VCEh7F7_2JTlBmLhKoTrb0X6B3gp1X3ei91tCKp75uQzpe4oVosVw33EwvQ8NGjIT623gh1LKi-Feo4XSE5ifPJ3C1It7pGIajw";
const EXPONENT_B64URL: &str = "AQAB";

/// Key id (and `x5t`) of the signing key: base64url SHA-1 of its public key.
pub const KEY_ID: &str = "AO3GWXj6fnnJVN3jgJfZcT2-lkE";

/// Claims of an app-only token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppTokenClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub app_displayname: String,
    pub appid: String,
    pub appidacr: String,
    pub idp: String,
    pub idtyp: String,
    pub oid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub sub: String,
    pub tid: String,
    pub uti: String,
    pub ver: String,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("Access token is empty.")]
    Missing,
    #[error("IDX14100: JWT is not well formed, there are no dots (.).")]
    Malformed,
    #[error("Access token validation failure.")]
    BadSignature,
    #[error("Access token validation failure. Invalid audience.")]
    WrongAudience,
    #[error("Lifetime validation failed, the token is expired.")]
    Expired,
}

/// Signs `claims` (an access or ID token's) as a JWT.
pub fn sign<T: Serialize>(claims: &T) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_string());
    header.x5t = Some(KEY_ID.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(SIGNING_KEY_DER))
        .expect("signing with the built-in RSA key cannot fail")
}

/// An opaque access token: random base64url text with no dots, which no JWT library reads.
pub fn opaque_token() -> String {
    use base64::Engine as _;
    let mut bytes = Vec::with_capacity(48);
    for _ in 0..3 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a bearer token as Graph does: signed by this issuer, meant for one of
/// `audiences`, not expired at `now` (seconds since the epoch).
pub fn verify(
    token: &str,
    audiences: &[String],
    now: i64,
) -> Result<AppTokenClaims, TokenRejection> {
    if token.is_empty() {
        return Err(TokenRejection::Missing);
    }
    if token.split('.').count() != 3 {
        return Err(TokenRejection::Malformed);
    }
    let key = DecodingKey::from_rsa_components(MODULUS_B64URL, EXPONENT_B64URL)
        .expect("built-in key components are valid");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AppTokenClaims>(token, &key, &validation)
        .map_err(|_| TokenRejection::BadSignature)?;
    let claims = data.claims;
    if !audiences.iter().any(|a| a == &claims.aud) {
        return Err(TokenRejection::WrongAudience);
    }
    if claims.exp <= now {
        return Err(TokenRejection::Expired);
    }
    Ok(claims)
}

/// The JWKS document served at `jwks_uri`.
pub fn jwks(issuer_of_keys: &str) -> Value {
    json!({
        "keys": [{
            "kty": "RSA",
            "use": "sig",
            "kid": KEY_ID,
            "x5t": KEY_ID,
            "n": MODULUS_B64URL,
            "e": EXPONENT_B64URL,
            "issuer": issuer_of_keys,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AppTokenClaims {
        AppTokenClaims {
            aud: "https://graph.microsoft.com".into(),
            iss: "https://sts.windows.net/t/".into(),
            iat: 0,
            nbf: 0,
            exp,
            app_displayname: "a".into(),
            appid: "app".into(),
            appidacr: "1".into(),
            idp: "https://sts.windows.net/t/".into(),
            idtyp: "app".into(),
            oid: "o".into(),
            roles: Some(vec!["User.Read.All".into()]),
            sub: "o".into(),
            tid: "t".into(),
            uti: "u".into(),
            ver: "1.0".into(),
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let aud = vec!["https://graph.microsoft.com".to_string()];
        let token = sign(&claims(100));
        assert_eq!(verify(&token, &aud, 50).unwrap(), claims(100));
        assert_eq!(verify(&token, &aud, 100), Err(TokenRejection::Expired));
        assert_eq!(
            verify(&token, &["other".to_string()], 50),
            Err(TokenRejection::WrongAudience)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = sign(&claims(999));
        let forged_payload = forged.split('.').nth(1).unwrap();
        parts[1] = forged_payload;
        assert_eq!(
            verify(&parts.join("."), &aud, 50),
            Err(TokenRejection::BadSignature)
        );
        assert_eq!(verify("abc", &aud, 50), Err(TokenRejection::Malformed));
    }
}
