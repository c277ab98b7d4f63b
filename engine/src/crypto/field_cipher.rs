//! AES-256-GCM encryption of single fields of personal data, with key ids for rotation.
//!
//! A sealed field is `[key id: u32 BE][nonce: 12 bytes][ciphertext][tag: 16 bytes]`. The key id
//! tells decryption which key to use, so rows written before a rotation stay readable while new
//! rows use the current key. The associated data binds the key id, the row id and the field name:
//! a ciphertext copied into another row or another field fails to decrypt instead of silently
//! showing one customer's address on another's profile.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use zeroize::Zeroizing;

/// Identifies one key for personal data; stored in front of every sealed field.
pub type PiiKeyId = u32;

/// Bytes of an AES-256 key.
pub(crate) const PII_KEY_BYTES: usize = 32;
const KEY_ID_BYTES: usize = 4;
/// A 96-bit nonce, random per encryption: with at most 2^32 encryptions per key the chance of a
/// repeat stays below 2^-32 (NIST SP 800-38D, 8.3). Rotate the key well before that.
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = KEY_ID_BYTES + NONCE_BYTES;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed with key id {key_id}, which the key file does not hold")]
    UnknownKeyId { key_id: PiiKeyId },
    #[error("not a sealed field: {len} bytes, at least {min} expected", min = HEADER_BYTES + TAG_BYTES)]
    Malformed { len: usize },
    /// Wrong key, tampered bytes, or a ciphertext moved to another row or field.
    #[error("the sealed field failed authentication")]
    AuthenticationFailed,
}

/// Encrypts and decrypts fields of personal data. `Debug` shows key ids only.
pub struct FieldCipher {
    current: PiiKeyId,
    keys: BTreeMap<PiiKeyId, Zeroizing<[u8; PII_KEY_BYTES]>>,
}

impl FieldCipher {
    /// `keys` must hold `current`; the key file parser checks that before calling.
    pub(crate) fn new(
        current: PiiKeyId,
        keys: BTreeMap<PiiKeyId, Zeroizing<[u8; PII_KEY_BYTES]>>,
    ) -> FieldCipher {
        assert!(
            keys.contains_key(&current),
            "the current PII key must be among the keys"
        );
        FieldCipher { current, keys }
    }

    pub(crate) fn generate() -> FieldCipher {
        let mut key = Zeroizing::new([0u8; PII_KEY_BYTES]);
        rand::fill(&mut key[..]);
        FieldCipher::new(1, BTreeMap::from([(1, key)]))
    }

    /// The id new encryptions use.
    pub fn current_key_id(&self) -> PiiKeyId {
        self.current
    }

    pub(crate) fn keys(&self) -> &BTreeMap<PiiKeyId, Zeroizing<[u8; PII_KEY_BYTES]>> {
        &self.keys
    }

    /// Encrypts `plaintext` under the current key with a fresh random nonce, bound to `row` and
    /// `field`. Output: `[key id: u32 BE][nonce 12][ciphertext+tag]`.
    pub fn encrypt(&self, row: &str, field: &str, plaintext: &str) -> Vec<u8> {
        let key_id = self.current;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::fill(&mut nonce[..]);
        let aad = associated_data(key_id, row, field);
        let ciphertext = self
            .aead(key_id)
            .expect("the current key is always present (checked in new)")
            .encrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // AES-GCM refuses only messages over 64 GiB; a field of personal data never is.
            .expect("a field of personal data is far below the AES-GCM message limit");

        let mut sealed = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        sealed.extend_from_slice(&key_id.to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        debug_assert_eq!(sealed.len(), HEADER_BYTES + plaintext.len() + TAG_BYTES);
        sealed
    }

    /// Decrypts a field sealed by [`FieldCipher::encrypt`] for the same `row` and `field`, with
    /// the key named in the sealed bytes.
    pub fn decrypt(&self, row: &str, field: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        let malformed = || CryptoError::Malformed { len: sealed.len() };
        if sealed.len() < HEADER_BYTES + TAG_BYTES {
            return Err(malformed());
        }
        let (key_id, rest) = sealed.split_at(KEY_ID_BYTES);
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let key_id = PiiKeyId::from_be_bytes(key_id.try_into().map_err(|_| malformed())?);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| malformed())?;

        let aead = self
            .aead(key_id)
            .ok_or(CryptoError::UnknownKeyId { key_id })?;
        let aad = associated_data(key_id, row, field);
        let plaintext = aead
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::AuthenticationFailed)?;
        // Only `encrypt` (which takes a `&str`) produces authentic ciphertexts, so this holds.
        String::from_utf8(plaintext).map_err(|_| malformed())
    }

    /// The cipher for `key_id`, keyed afresh per call: the AES key schedule is cheap next to a
    /// store access, and keeping only the raw keys means only [`Zeroizing`] memory holds them.
    fn aead(&self, key_id: PiiKeyId) -> Option<Aes256Gcm> {
        let key = self.keys.get(&key_id)?;
        Some(Aes256Gcm::new_from_slice(key.as_slice()).expect("PII keys are 32 bytes"))
    }
}

impl fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldCipher")
            .field("current_key_id", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// `[key id: u32 BE][row length: u64 BE][row][field]`: the length prefix keeps ("usr_1", "2x")
/// and ("usr_12", "x") apart.
fn associated_data(key_id: PiiKeyId, row: &str, field: &str) -> Vec<u8> {
    let row_len = row.len() as u64;
    let mut aad = Vec::with_capacity(KEY_ID_BYTES + 8 + row.len() + field.len());
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad.extend_from_slice(&row_len.to_be_bytes());
    aad.extend_from_slice(row.as_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Zeroizing<[u8; PII_KEY_BYTES]> {
        Zeroizing::new([byte; PII_KEY_BYTES])
    }

    #[test]
    fn round_trip() {
        let cipher = FieldCipher::generate();
        for text in ["ada@example.com", "", "Zoë Ångström, 12 Rue de l'Église"] {
            let sealed = cipher.encrypt("usr_12", "email", text);
            assert_eq!(
                cipher.decrypt("usr_12", "email", &sealed),
                Ok(text.to_owned())
            );
        }
    }

    #[test]
    fn layout_and_fresh_nonces() {
        let cipher = FieldCipher::generate();
        let a = cipher.encrypt("usr_12", "email", "ada@example.com");
        let b = cipher.encrypt("usr_12", "email", "ada@example.com");
        assert_eq!(a.len(), 4 + 12 + "ada@example.com".len() + 16);
        assert_eq!(a[..4], 1u32.to_be_bytes());
        assert!(!a.windows(3).any(|w| w == b"ada"));
        assert_ne!(a[4..16], b[4..16], "a nonce must never repeat");
        assert_ne!(a, b);
    }

    #[test]
    fn moved_to_another_row_or_field_fails() {
        let cipher = FieldCipher::generate();
        let sealed = cipher.encrypt("usr_12", "email", "ada@example.com");
        for (row, field) in [
            ("usr_13", "email"),
            ("usr_12", "phone"),
            ("usr_1", "2email"),
            ("", "usr_12email"),
        ] {
            assert_eq!(
                cipher.decrypt(row, field, &sealed),
                Err(CryptoError::AuthenticationFailed),
                "({row}, {field})"
            );
        }
    }

    #[test]
    fn any_flipped_byte_fails() {
        let cipher = FieldCipher::generate();
        let sealed = cipher.encrypt("usr_12", "name", "Ada");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            let result = cipher.decrypt("usr_12", "name", &tampered);
            // A flipped key id names a key that does not exist; anything else fails the tag.
            let expected = if i < KEY_ID_BYTES {
                Err(CryptoError::UnknownKeyId {
                    key_id: u32::from_be_bytes([
                        tampered[0],
                        tampered[1],
                        tampered[2],
                        tampered[3],
                    ]),
                })
            } else {
                Err(CryptoError::AuthenticationFailed)
            };
            assert_eq!(result, expected, "byte {i}");
        }
    }

    #[test]
    fn truncated_input_is_malformed() {
        let cipher = FieldCipher::generate();
        let sealed = cipher.encrypt("usr_12", "name", "");
        assert_eq!(sealed.len(), HEADER_BYTES + TAG_BYTES);
        assert_eq!(
            cipher.decrypt("usr_12", "name", &sealed[..sealed.len() - 1]),
            Err(CryptoError::Malformed { len: 31 })
        );
        assert_eq!(
            cipher.decrypt("usr_12", "name", &[]),
            Err(CryptoError::Malformed { len: 0 })
        );
    }

    #[test]
    fn rotation_keeps_old_rows_readable() {
        let before = FieldCipher::new(1, BTreeMap::from([(1, key(1))]));
        let old = before.encrypt("usr_12", "email", "ada@example.com");

        let after = FieldCipher::new(2, BTreeMap::from([(1, key(1)), (2, key(2))]));
        assert_eq!(
            after.decrypt("usr_12", "email", &old),
            Ok("ada@example.com".to_owned())
        );
        let new = after.encrypt("usr_12", "email", "ada@example.com");
        assert_eq!(new[..4], 2u32.to_be_bytes());
        assert_eq!(
            after.decrypt("usr_12", "email", &new),
            Ok("ada@example.com".to_owned())
        );
        assert_eq!(
            before.decrypt("usr_12", "email", &new),
            Err(CryptoError::UnknownKeyId { key_id: 2 })
        );
    }

    #[test]
    fn another_key_under_the_same_id_fails() {
        let sealed = FieldCipher::new(1, BTreeMap::from([(1, key(1))])).encrypt("r", "f", "x");
        let other = FieldCipher::new(1, BTreeMap::from([(1, key(9))]));
        assert_eq!(
            other.decrypt("r", "f", &sealed),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let cipher = FieldCipher::new(2, BTreeMap::from([(1, key(0xAB)), (2, key(0xCD))]));
        let shown = format!("{cipher:?}");
        assert!(shown.contains("current_key_id: 2"), "{shown}");
        assert!(shown.contains("[1, 2]"), "{shown}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
    }
}
