//! Access tokens: short-lived HS512 JWTs that name a user and a role.
//!
//! The signer takes the time from its caller instead of the system clock, so tests can move time
//! and every expiry decision is made against the same clock as the rest of the request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use allot_engine::{JWT_KEY_BYTES_MIN, Role, TOKEN_BYTES, UserId, random_token};

use super::ACCESS_TOKEN_TTL_MS;

/// The `iss` of every token this server issues, and the only one it accepts.
pub const TOKEN_ISSUER: &str = "allot";
/// The `aud` of every token this server issues, and the only one it accepts.
pub const TOKEN_AUDIENCE: &str = "allot";
/// Longest token text looked at; ours are about 350 bytes, so anything far longer is not ours
/// and is refused before any base64 or JSON work.
pub const ACCESS_TOKEN_BYTES_MAX: usize = 2048;
/// A `jti` is [`random_token`]: `TOKEN_BYTES` bytes as unpadded base64url.
const JTI_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);
const MS_PER_S: u64 = 1000;

/// Signs and verifies access tokens with one HS512 key.
pub struct TokenSigner {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    validation: Validation,
    /// Tokens whose signature and claims were checked, by their exact text, with what they
    /// said: a token is immutable, so checking its HS512 signature (SHA-512, in software
    /// here) again on every request of a drop would only cost time. Expiry is checked on
    /// every use; revocation and the account are the caller's checks, made every time.
    verified: Mutex<HashMap<Box<str>, AccessClaims>>,
}

/// Most verified tokens remembered; past it the memory starts over (each token is then
/// verified once more).
pub const VERIFIED_TOKENS_MAX: usize = 100_000;

/// A freshly signed access token.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    /// When the token stops being accepted (whole seconds, as the `exp` claim carries them).
    pub expires_ms: u64,
}

/// What a verified access token says.
#[derive(Debug, Clone)]
pub struct AccessClaims {
    pub user: UserId,
    pub role: Role,
    pub jti: String,
    pub expires_ms: u64,
}

/// The token is not acceptable. Deliberately without detail: a client learns nothing about which
/// check failed.
#[derive(Debug)]
pub struct TokenRejected;

impl fmt::Display for TokenRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("access token rejected")
    }
}

impl std::error::Error for TokenRejected {}

/// The claims as they travel. Every field is required: a token missing one fails to deserialize.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    aud: String,
    sub: String,
    role: String,
    jti: String,
    iat: u64,
    exp: u64,
}

impl TokenSigner {
    /// Panics if `key` is shorter than [`JWT_KEY_BYTES_MIN`]: the keys come from the key file,
    /// which refuses short keys, so a short key here is a programming error found at startup.
    pub fn new(key: &[u8]) -> Self {
        assert!(
            key.len() >= JWT_KEY_BYTES_MIN,
            "the HS512 key must be at least {JWT_KEY_BYTES_MIN} bytes"
        );
        // Exactly one algorithm: `alg: none`, HS256 and every public-key algorithm are refused
        // before the signature is looked at.
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The library checks `exp` against the system clock with a leeway; `verify` checks it
        // against the caller's clock with none instead (see there).
        validation.validate_exp = false;
        validation.leeway = 0;
        Self {
            encoding_key: EncodingKey::from_secret(key),
            decoding_key: DecodingKey::from_secret(key),
            validation,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn issue(&self, user: UserId, role: Role, now_ms: u64) -> IssuedToken {
        let iat = now_ms / MS_PER_S;
        let exp = (now_ms + ACCESS_TOKEN_TTL_MS) / MS_PER_S;
        let jti = random_token();
        let claims = WireClaims {
            iss: TOKEN_ISSUER.to_owned(),
            aud: TOKEN_AUDIENCE.to_owned(),
            sub: user.to_string(),
            role: role.as_str().to_owned(),
            jti: jti.clone(),
            iat,
            exp,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding_key)
                .expect("HS512 signing with an HMAC key of valid length does not fail");
        IssuedToken {
            token,
            jti,
            expires_ms: exp * MS_PER_S,
        }
    }

    /// Accepts a token only if it carries a valid HS512 signature under our key, `iss` and `aud`
    /// are ours, `sub` is a canonical user id, `role` is a known role, `jti` looks like one we
    /// issue, and `now_ms` is before `exp`.
    ///
    /// No leeway on `exp`: logout revokes a `jti` only until the token's expiry, so a token
    /// accepted past `exp` would be a revoked token accepted again.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<AccessClaims, TokenRejected> {
        if token.len() > ACCESS_TOKEN_BYTES_MAX {
            return Err(TokenRejected);
        }
        let remembered = self.remembered().get(token).cloned();
        if let Some(claims) = remembered {
            return if now_ms < claims.expires_ms {
                Ok(claims)
            } else {
                self.remembered().remove(token);
                Err(TokenRejected)
            };
        }
        let claims = self.check(token, now_ms)?;
        let mut remembered = self.remembered();
        if remembered.len() >= VERIFIED_TOKENS_MAX {
            remembered.clear();
        }
        remembered.insert(token.into(), claims.clone());
        Ok(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, AccessClaims>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The full check of a token not seen before.
    fn check(&self, token: &str, now_ms: u64) -> Result<AccessClaims, TokenRejected> {
        let data = jsonwebtoken::decode::<WireClaims>(token, &self.decoding_key, &self.validation)
            .map_err(|_| TokenRejected)?;
        // We never set `crit`; a token that asks for extensions we do not understand is not ours.
        if data.header.crit.is_some() {
            return Err(TokenRejected);
        }
        let claims = data.claims;
        let expires_ms = claims.exp.checked_mul(MS_PER_S).ok_or(TokenRejected)?;
        if now_ms >= expires_ms || claims.iat > claims.exp {
            return Err(TokenRejected);
        }
        if !is_jti(&claims.jti) {
            return Err(TokenRejected);
        }
        let user: UserId = claims.sub.parse().map_err(|_| TokenRejected)?;
        let role = parse_role(&claims.role).ok_or(TokenRejected)?;
        Ok(AccessClaims {
            user,
            role,
            jti: claims.jti,
            expires_ms,
        })
    }
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never in logs.
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("jti", &self.jti)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

fn parse_role(text: &str) -> Option<Role> {
    [Role::Customer, Role::Admin]
        .into_iter()
        .find(|role| role.as_str() == text)
}

fn is_jti(text: &str) -> bool {
    text.len() == JTI_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;

    const NOW_MS: u64 = 1_750_000_000_123;

    fn key(byte: u8) -> Vec<u8> {
        vec![byte; JWT_KEY_BYTES_MIN]
    }

    fn signer() -> TokenSigner {
        TokenSigner::new(&key(7))
    }

    fn good_claims() -> Value {
        json!({
            "iss": "allot", "aud": "allot", "sub": "usr_42", "role": "customer",
            "jti": random_token(), "iat": NOW_MS / 1000, "exp": NOW_MS / 1000 + 900,
        })
    }

    fn sign(alg: Algorithm, key: &[u8], claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key))
            .expect("test token signs")
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn issued_token_verifies_to_its_claims() {
        let signer = signer();
        let issued = signer.issue(UserId(42), Role::Admin, NOW_MS);
        assert_eq!(
            issued.expires_ms,
            (NOW_MS + ACCESS_TOKEN_TTL_MS) / 1000 * 1000
        );
        assert_eq!(issued.jti.len(), JTI_CHARS);

        let claims = signer
            .verify(&issued.token, NOW_MS)
            .expect("own token verifies");
        assert_eq!(claims.user, UserId(42));
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.jti, issued.jti);
        assert_eq!(claims.expires_ms, issued.expires_ms);

        let payload = issued.token.split('.').nth(1).expect("three parts");
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
                .expect("json");
        assert_eq!(payload["sub"], "usr_42");
        assert_eq!(payload["role"], "admin");
        assert_eq!(payload["iss"], "allot");
        assert_eq!(payload["aud"], "allot");
        assert_eq!(payload["iat"], NOW_MS / 1000);
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_one_is_not_remembered() {
        let signer = signer();
        let issued = signer.issue(UserId(42), Role::Customer, NOW_MS);
        for _ in 0..3 {
            let claims = signer.verify(&issued.token, NOW_MS).expect("verifies");
            assert_eq!(claims.user, UserId(42));
        }
        assert!(signer.verify(&issued.token, issued.expires_ms - 1).is_ok());
        assert!(signer.verify(&issued.token, issued.expires_ms).is_err());
        assert!(
            signer.verify(&issued.token, NOW_MS).is_ok(),
            "checked afresh"
        );

        // Another signature over the same claims is another text: checked in full, refused.
        let mut parts: Vec<String> = issued.token.split('.').map(str::to_owned).collect();
        parts[2] = URL_SAFE_NO_PAD.encode([7u8; 64]);
        assert!(signer.verify(&parts.join("."), NOW_MS).is_err());
        // Verified by another signer (another key): not this signer's memory.
        assert!(
            TokenSigner::new(&key(8))
                .verify(&issued.token, NOW_MS)
                .is_err()
        );
    }

    #[test]
    fn every_token_gets_its_own_jti() {
        let signer = signer();
        let a = signer.issue(UserId(1), Role::Customer, NOW_MS);
        let b = signer.issue(UserId(1), Role::Customer, NOW_MS);
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn a_hand_built_good_token_is_accepted() {
        // Sanity check for the rejection tests below: they differ from this one in one point.
        let token = sign(Algorithm::HS512, &key(7), &good_claims());
        assert!(signer().verify(&token, NOW_MS).is_ok());
    }

    #[test]
    fn expired_token_is_rejected_without_leeway() {
        let signer = signer();
        let issued = signer.issue(UserId(1), Role::Customer, NOW_MS);
        assert!(signer.verify(&issued.token, issued.expires_ms - 1).is_ok());
        assert!(signer.verify(&issued.token, issued.expires_ms).is_err());
        assert!(
            signer
                .verify(&issued.token, issued.expires_ms + 1_000)
                .is_err()
        );
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let signer = signer();
        let issued = signer.issue(UserId(1), Role::Customer, NOW_MS);
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
                .expect("json");
        claims["role"] = json!("admin");
        let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert!(signer.verify(&forged, NOW_MS).is_err());
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = json!({"alg": "none", "typ": "JWT"});
        let body = b64(&good_claims());
        for token in [
            format!("{}.{body}.", b64(&header)),
            format!("{}.{body}", b64(&header)),
            format!("{}.{body}.", b64(&json!({"alg": "None"}))),
        ] {
            assert!(signer().verify(&token, NOW_MS).is_err(), "{token}");
        }
    }

    #[test]
    fn hs256_with_the_right_key_is_rejected() {
        let token = sign(Algorithm::HS256, &key(7), &good_claims());
        assert!(signer().verify(&token, NOW_MS).is_err());
    }

    #[test]
    fn hs512_header_with_an_hs256_signature_is_rejected() {
        let hs256 = sign(Algorithm::HS256, &key(7), &good_claims());
        let parts: Vec<&str> = hs256.split('.').collect();
        let header = b64(&json!({"alg": "HS512", "typ": "JWT"}));
        let token = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(signer().verify(&token, NOW_MS).is_err());
    }

    #[test]
    fn token_signed_with_another_key_is_rejected() {
        let token = sign(Algorithm::HS512, &key(8), &good_claims());
        assert!(signer().verify(&token, NOW_MS).is_err());
        let other = TokenSigner::new(&key(8)).issue(UserId(1), Role::Customer, NOW_MS);
        assert!(signer().verify(&other.token, NOW_MS).is_err());
    }

    #[test]
    fn missing_or_malformed_claims_are_rejected() {
        for field in ["jti", "sub", "iss", "aud", "exp", "iat", "role"] {
            let mut claims = good_claims();
            claims
                .as_object_mut()
                .expect("object")
                .remove(field)
                .expect("field present");
            let token = sign(Algorithm::HS512, &key(7), &claims);
            assert!(signer().verify(&token, NOW_MS).is_err(), "without {field}");
        }
        for (field, value) in [
            ("jti", json!("")),
            ("jti", json!("short")),
            ("jti", json!("a".repeat(JTI_CHARS - 1) + "=")),
            ("jti", json!(42)),
            ("sub", json!("usr_007")),
            ("sub", json!("sku_1")),
            ("sub", json!("42")),
            ("role", json!("root")),
            ("exp", json!("soon")),
            ("exp", json!(u64::MAX)),
            ("iat", json!(NOW_MS / 1000 + 10_000)),
        ] {
            let mut claims = good_claims();
            claims[field] = value.clone();
            let token = sign(Algorithm::HS512, &key(7), &claims);
            assert!(
                signer().verify(&token, NOW_MS).is_err(),
                "{field} = {value}"
            );
        }
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        for (field, value) in [
            ("iss", json!("someone-else")),
            ("aud", json!("someone-else")),
            ("aud", json!(["someone-else"])),
            // Ours in an array still is not the shape we issue.
            ("aud", json!(["allot", "someone-else"])),
        ] {
            let mut claims = good_claims();
            claims[field] = value.clone();
            let token = sign(Algorithm::HS512, &key(7), &claims);
            assert!(
                signer().verify(&token, NOW_MS).is_err(),
                "{field} = {value}"
            );
        }
    }

    #[test]
    fn garbage_and_oversized_tokens_are_rejected() {
        let signer = signer();
        for token in ["", ".", "..", "a.b.c", "not a token", "a.b.c.d"] {
            assert!(signer.verify(token, NOW_MS).is_err(), "{token:?}");
        }
        let mut claims = good_claims();
        claims["pad"] = json!("x".repeat(ACCESS_TOKEN_BYTES_MAX));
        let token = sign(Algorithm::HS512, &key(7), &claims);
        assert!(signer.verify(&token, NOW_MS).is_err());
    }

    #[test]
    fn crit_header_is_rejected() {
        let mut header = Header::new(Algorithm::HS512);
        header.crit = Some(vec!["exp".to_owned()]);
        let token =
            jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(&key(7)))
                .expect("signs");
        assert!(signer().verify(&token, NOW_MS).is_err());
    }

    #[test]
    #[should_panic(expected = "at least")]
    fn short_key_is_refused_at_construction() {
        let _ = TokenSigner::new(&[1; JWT_KEY_BYTES_MIN - 1]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let signer = signer();
        let issued = signer.issue(UserId(1), Role::Customer, NOW_MS);
        assert!(!format!("{issued:?}").contains(&issued.token));
        assert!(format!("{signer:?}").contains("redacted"));
    }
}
