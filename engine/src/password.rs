//! Password policy and hashing.
//!
//! Hashing is argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane): about 20-50 ms of
//! one core per hash, so callers run it on a bounded blocking pool, never on the async runtime.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use const_format::concatcp;

/// Shortest password accepted, in characters (Unicode scalar values).
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Long passphrases are welcome; the bound keeps one hash from costing more than the rest.
pub const PASSWORD_CHARS_MAX: usize = 256;

/// Memory per hash, in KiB (19 MiB, OWASP's argon2id recommendation).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

/// A stored hash asking for more than this is refused rather than computed: a tampered or
/// corrupt hash must not make one login allocate gigabytes or spin for minutes.
const VERIFY_MEMORY_KIB_MAX: u32 = 256 * 1024;
const VERIFY_PASSES_MAX: u32 = 16;
const VERIFY_LANES_MAX: u32 = 8;

const ARGON2_PARAMS: Params =
    match Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None) {
        Ok(params) => params,
        Err(_) => panic!("the argon2 parameters are within argon2's bounds"),
    };

/// Lower-case, one per line, `#` starts a comment line.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("password/common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// The hash [`verify_dummy`] checks against: computed once, on first use, with the same
/// parameters as real hashes so that the time spent is the same.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a password anyone has: the hash of unknown accounts"));

/// Why `check_policy` refused a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct WeakPassword {
    /// The rule it broke, in a sentence fit to show to the user.
    pub reason: &'static str,
}

const TOO_SHORT: &str = concatcp!(
    "the password needs at least ",
    PASSWORD_CHARS_MIN,
    " characters"
);
const TOO_LONG: &str = concatcp!(
    "the password may have at most ",
    PASSWORD_CHARS_MAX,
    " characters"
);
const CONTROL_CHARACTER: &str = "the password may not contain control characters";
const NO_LETTER: &str = "the password needs at least one letter";
const NO_DIGIT: &str = "the password needs at least one digit";
const NO_SPECIAL: &str =
    "the password needs at least one special character (not a letter or a digit)";
const TOO_COMMON: &str = "the password is one of the most common passwords; choose another";

/// Accepts a password of [`PASSWORD_CHARS_MIN`] to [`PASSWORD_CHARS_MAX`] characters (Unicode
/// scalar values, not bytes) with a letter, a digit and a special (non-alphanumeric) character,
/// without control characters, that is not one of the most common passwords (case-insensitive).
///
/// Each refusal has its own reason, fit to show to the user.
pub fn check_policy(password: &str) -> Result<(), WeakPassword> {
    let weak = |reason| Err(WeakPassword { reason });
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return weak(TOO_SHORT);
    }
    if chars > PASSWORD_CHARS_MAX {
        return weak(TOO_LONG);
    }
    // Control characters (newlines, NUL) are typed by no one and break clients that handle them.
    if password.chars().any(char::is_control) {
        return weak(CONTROL_CHARACTER);
    }
    if !password.chars().any(char::is_alphabetic) {
        return weak(NO_LETTER);
    }
    if !password.chars().any(char::is_numeric) {
        return weak(NO_DIGIT);
    }
    if password.chars().all(char::is_alphanumeric) {
        return weak(NO_SPECIAL);
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return weak(TOO_COMMON);
    }
    Ok(())
}

/// Hashes with argon2id (m = 19456 KiB, t = 2, p = 1) and a random 16-byte salt; returns the PHC
/// string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
///
/// # Panics
/// If the operating system's random generator fails, which leaves nothing safe to do.
pub fn hash_password(password: &str) -> String {
    argon2()
        .hash_password(password.as_bytes())
        // Fails only if the OS has no randomness or the password exceeds 4 GiB.
        .expect("argon2id hashes any password below 4 GiB given a working OS random generator")
        .to_string()
}

/// Verifies `password` against a PHC string from [`hash_password`], in constant time with
/// respect to the hash. False for a wrong password and for a malformed hash or one asking for
/// unreasonable costs; never panics.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > VERIFY_MEMORY_KIB_MAX
        || params.t_cost() > VERIFY_PASSES_MAX
        || params.p_cost() > VERIFY_LANES_MAX
    {
        tracing::warn!(
            m_cost = params.m_cost(),
            t_cost = params.t_cost(),
            p_cost = params.p_cost(),
            "refused to verify against a password hash with excessive costs"
        );
        return false;
    }
    // The algorithm, version and parameters come from the hash, so hashes made with other
    // parameters in the past still verify.
    argon2().verify_password(password.as_bytes(), &hash).is_ok()
}

/// Spends the time of [`verify_password`] against a real hash, for a login to an unknown
/// account: the answer then takes as long as for a known one and does not reveal whether an
/// email has an account. The first call also computes the dummy hash (one extra hash).
pub fn verify_dummy(password: &str) {
    black_box(verify_password(password, &DUMMY_HASH));
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, ARGON2_PARAMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_accepts_good_passwords() {
        let passphrase = "correct horse battery staple, 42 times over the moon and back again!";
        assert!(passphrase.chars().count() >= 64);
        assert_eq!(check_policy(passphrase), Ok(()));
        assert_eq!(check_policy("k7#Vq2!m"), Ok(()));
        // Non-ASCII letters and digits count, and length is in characters, not bytes.
        assert_eq!(check_policy("ŝtéfañ٣!"), Ok(()));
        let longest: String = "aB3$".repeat(PASSWORD_CHARS_MAX / 4);
        assert_eq!(check_policy(&longest), Ok(()));
    }

    #[test]
    fn policy_rejects_each_weak_case_with_its_own_reason() {
        let too_long = "aB3$".repeat(PASSWORD_CHARS_MAX / 4) + "x";
        let cases = [
            ("a1!b2@c", TOO_SHORT),
            // 7 characters, 14 bytes: still too short.
            ("é1!é2@é", TOO_SHORT),
            (too_long.as_str(), TOO_LONG),
            ("abc1!def\n", CONTROL_CHARACTER),
            ("12345678!", NO_LETTER),
            ("abcdefgh!", NO_DIGIT),
            ("abcd1234", NO_SPECIAL),
            ("P@ssw0rd", TOO_COMMON),
            ("Passw0rd!", TOO_COMMON),
            ("QWERTY123!", TOO_COMMON),
            ("Welcome1!", TOO_COMMON),
        ];
        for (password, reason) in cases {
            assert_eq!(
                check_policy(password),
                Err(WeakPassword { reason }),
                "{password:?}"
            );
        }
        let reasons: HashSet<&str> = cases.iter().map(|(_, reason)| *reason).collect();
        assert_eq!(reasons.len(), 7, "every rule has a reason of its own");
        assert_eq!(
            WeakPassword { reason: NO_DIGIT }.to_string(),
            "the password needs at least one digit"
        );
    }

    #[test]
    fn common_list_is_loaded_and_lower_case() {
        assert!(COMMON_PASSWORDS.len() > 300, "{}", COMMON_PASSWORDS.len());
        for password in COMMON_PASSWORDS.iter() {
            assert_eq!(*password, password.to_lowercase(), "{password}");
        }
    }

    #[test]
    fn hash_verifies_the_right_password_only() {
        let hash = hash_password("correct horse 7!");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse 7!", &hash));
        assert!(!verify_password("correct horse 8!", &hash));
        assert!(!verify_password("", &hash));
        // A fresh salt each time.
        assert_ne!(hash, DUMMY_HASH.as_str());
    }

    #[test]
    fn malformed_or_extravagant_hashes_are_false() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=19456,t=100000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        ] {
            assert!(!verify_password("correct horse 7!", phc), "{phc:?}");
        }
    }

    #[test]
    fn verify_dummy_runs_a_real_verification() {
        assert!(DUMMY_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        verify_dummy("anything");
    }
}
