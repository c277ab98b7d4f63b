//! The secrets of an installation and what is done with them: the JWT signing key, the AES-256-GCM
//! keys for personal data (with key ids, so they can be rotated), the key of the email blind index
//! and the key that hashes short-lived secrets (codes, verification and refresh tokens).
//!
//! The keys live in a key file outside the data they protect (see `key_file` for its format), so a
//! copy of the data directory alone reveals neither personal data nor, thanks to the keyed hashes,
//! a 6-digit code by brute force. Every key is wiped from memory when [`Keys`] is dropped.

mod field_cipher;
mod key_file;

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use field_cipher::FieldCipher;
pub use key_file::KeyError;

/// HS512 signs with a key as long as its block; shorter keys weaken it (RFC 7518, 3.2).
pub const JWT_KEY_BYTES_MIN: usize = 64;
/// Keys of the two HMAC-SHA256 functions: at least the output size.
pub const HMAC_KEY_BYTES_MIN: usize = 32;
/// Random bytes in a token handed to a client: 256 bits cannot be guessed.
pub const TOKEN_BYTES: usize = 32;
/// The exclusive upper bound of a 6-digit code.
const CODE_SPACE: u32 = 1_000_000;

/// All secrets of an installation. Built once at startup and shared; `Debug` shows no secret.
pub struct Keys {
    jwt: Zeroizing<Vec<u8>>,
    blind_index: Zeroizing<Vec<u8>>,
    secret_hash: Zeroizing<Vec<u8>>,
    cipher: FieldCipher,
}

impl Keys {
    /// Loads the key file, or creates it (mode 0600, parent directory created with mode 0700)
    /// with fresh random keys if it does not exist.
    ///
    /// Refuses a key file that group or others may access (any of the mode bits 0o077), a
    /// malformed one (the error names the line) and keys shorter than their minimum.
    pub fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
        key_file::load_or_create(path)
    }

    /// Parses the text of a key file (for example taken from the environment); `origin` only
    /// names the source in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Keys, KeyError> {
        key_file::parse(text, origin)
    }

    /// Fresh random keys in memory (tests, and the content of a new key file).
    pub fn generate() -> Keys {
        Keys {
            jwt: random_key(JWT_KEY_BYTES_MIN),
            blind_index: random_key(HMAC_KEY_BYTES_MIN),
            secret_hash: random_key(HMAC_KEY_BYTES_MIN),
            cipher: FieldCipher::generate(),
        }
    }

    /// The HS512 signing key, at least [`JWT_KEY_BYTES_MIN`] bytes.
    pub fn jwt_key(&self) -> &[u8] {
        &self.jwt
    }

    /// The AES-256-GCM cipher that seals and opens personal-data fields with the `pii` keys.
    pub fn cipher(&self) -> &FieldCipher {
        &self.cipher
    }

    /// Keyed HMAC-SHA256 blind index of an (already normalized) email: equal emails give equal
    /// indexes, so an account can be found by email without storing the email in the clear, and
    /// without the key the index cannot be tested against a list of addresses.
    pub fn blind_index(&self, normalized_email: &str) -> [u8; 32] {
        hmac_sha256(&self.blind_index, &[normalized_email.as_bytes()])
    }

    /// Keyed HMAC-SHA256 of a secret (6-digit codes, verification tokens, refresh tokens).
    ///
    /// `purpose` separates domains: the same secret hashed for two purposes gives unrelated
    /// hashes, so a hash stored for one use can never be presented as another. The purpose is
    /// length-prefixed, so no (purpose, secret) pair collides with another by shifting bytes.
    pub fn secret_hash(&self, purpose: &str, secret: &[u8]) -> [u8; 32] {
        let purpose_len = (purpose.len() as u64).to_be_bytes();
        hmac_sha256(
            &self.secret_hash,
            &[&purpose_len, purpose.as_bytes(), secret],
        )
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("jwt", &"<redacted>")
            .field("blind_index", &"<redacted>")
            .field("secret_hash", &"<redacted>")
            .field("cipher", &self.cipher)
            .finish()
    }
}

/// 32 random bytes as unpadded base64url (43 characters): tokens handed to clients.
pub fn random_token() -> String {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    rand::fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice())
}

/// A uniformly random 6-digit code, zero-padded ("004217").
pub fn random_code() -> String {
    // `random_range` rejects samples instead of taking a modulo, so every code is equally likely.
    let code = rand::random_range(0..CODE_SPACE);
    format!("{code:06}")
}

/// Constant-time equality of two byte strings (the time depends on the lengths only).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `bytes_count` bytes from the thread-local CSPRNG (ChaCha, seeded and reseeded from the OS).
fn random_key(bytes_count: usize) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; bytes_count]);
    rand::fill(&mut key[..]);
    key
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_every_secret() {
        let keys = Keys::generate();
        let shown = format!("{keys:?}");
        let b64 = base64::engine::general_purpose::STANDARD;
        for secret in [&keys.jwt, &keys.blind_index, &keys.secret_hash] {
            assert!(!shown.contains(&b64.encode(secret.as_slice())));
            assert!(!shown.contains(&format!("{:?}", secret.as_slice())));
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn generated_keys_have_their_lengths_and_differ() {
        let keys = Keys::generate();
        assert_eq!(keys.jwt_key().len(), JWT_KEY_BYTES_MIN);
        assert_ne!(keys.blind_index.as_slice(), keys.secret_hash.as_slice());
        assert_ne!(keys.jwt_key(), Keys::generate().jwt_key());
    }

    #[test]
    fn blind_index_is_deterministic_and_keyed() {
        let keys = Keys::generate();
        let index = keys.blind_index("ada@example.com");
        assert_eq!(index, keys.blind_index("ada@example.com"));
        assert_ne!(index, keys.blind_index("bob@example.com"));
        assert_ne!(index, Keys::generate().blind_index("ada@example.com"));
        // The blind index and the secret hash use separate keys.
        assert_ne!(index, keys.secret_hash("", b"ada@example.com"));
    }

    #[test]
    fn secret_hash_separates_purposes() {
        let keys = Keys::generate();
        let hash = keys.secret_hash("email_code", b"004217");
        assert_eq!(hash, keys.secret_hash("email_code", b"004217"));
        assert_ne!(hash, keys.secret_hash("email_code", b"004218"));
        assert_ne!(hash, keys.secret_hash("refresh", b"004217"));
        // Moving bytes between purpose and secret changes the hash.
        assert_ne!(keys.secret_hash("ab", b"c"), keys.secret_hash("a", b"bc"));
        assert_ne!(hash, Keys::generate().secret_hash("email_code", b"004217"));
    }

    #[test]
    fn random_token_is_43_url_safe_characters() {
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token);
        assert_eq!(decoded.map(|bytes| bytes.len()), Ok(TOKEN_BYTES));
        assert_ne!(token, random_token());
    }

    #[test]
    fn random_code_is_six_digits_and_spread() {
        let codes: Vec<String> = (0..2_000).map(|_| random_code()).collect();
        assert!(
            codes
                .iter()
                .all(|code| code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        );
        // 2,000 draws from a million values: a leading zero shows up with probability
        // 1 - 0.9^2000, and more than a handful of repeats would mean a broken generator.
        assert!(codes.iter().any(|code| code.starts_with('0')));
        let distinct: std::collections::HashSet<&String> = codes.iter().collect();
        assert!(distinct.len() > 1_980);
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
