//! The key file: one secret per line, as `name=<standard base64, padded>`.
//!
//! ```text
//! # comments and blank lines are ignored; spaces around `=` are allowed
//! jwt=<64+ bytes>            HS512 signing key
//! blind_index=<32+ bytes>    HMAC key of the email blind index
//! secret_hash=<32+ bytes>    HMAC key of codes and tokens
//! pii.1=<32 bytes>           AES-256-GCM key for personal data, id 1
//! pii.2=<32 bytes>           ... id 2 (after a rotation)
//! pii_current=2              the id new encryptions use
//! ```
//!
//! Each name appears once. Error messages name the line but never echo its content, since the
//! content is a secret.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

use super::field_cipher::{PII_KEY_BYTES, PiiKeyId};
use super::{FieldCipher, HMAC_KEY_BYTES_MIN, JWT_KEY_BYTES_MIN, Keys};

/// A key file holds a few hundred bytes; anything far larger is not one.
const KEY_FILE_BYTES_MAX: usize = 64 * 1024;
/// Mode bits that let anyone but the owner read or replace the keys.
#[cfg(unix)]
const MODE_GROUP_OTHER_MASK: u32 = 0o077;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const HEADER: &str = "\
# allot key file: the secrets of this installation. Keep it out of any repository and readable
# by the service's user only (mode 0600). Without it, encrypted personal data cannot be read.
#
# Rotating the key for personal data: add `pii.<next id>=` followed by 32 random bytes in base64
# (for example from `head -c 32 /dev/urandom | base64`), set `pii_current` to that id, restart.
# Keep the old `pii.<id>` lines: rows encrypted under them name them.
# Replacing `jwt` signs everyone out; replacing `blind_index` or `secret_hash` orphans every
# stored email index and every pending code or token.
";

/// Why the key file could not be loaded or created. Every kind is for the operator to mend in
/// the file; no message quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be opened, read or created.
    #[error("key file {}: {source}", .path.display())]
    Io {
        /// The key file's path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// On Unix: the file's mode lets group or others access it, so it is refused unread.
    #[error(
        "key file {} has mode {mode:04o}: group or others may access it; allow the owner only (chmod 600)",
        .path.display()
    )]
    Permissions {
        /// The key file's path.
        path: PathBuf,
        /// Its permission bits, as found.
        mode: u32,
    },
    /// A line breaks the format: not `name=value`, not base64, an unknown or repeated name, a
    /// bad key id or a PII key over 32 bytes.
    #[error("key file {}, line {line}: {reason}", .path.display())]
    Malformed {
        /// The key file's path.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// Which rule the line breaks.
        reason: String,
    },
    /// A problem of the file as a whole: a missing entry, a dangling `pii_current`, its size.
    #[error("key file {}: {reason}", .path.display())]
    Invalid {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key is shorter than its use needs (such as 64 bytes for `jwt`).
    #[error(
        "key file {}, line {line}: `{entry}` holds {len} bytes, at least {min} are required",
        .path.display()
    )]
    KeyTooShort {
        /// The key file's path.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// The entry's name, such as `jwt`.
        entry: String,
        /// The key's length, in bytes.
        len: usize,
        /// The least length accepted, in bytes.
        min: usize,
    },
}

pub(super) fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
    let io_error = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    match File::open(path) {
        Ok(file) => return read(path, file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error(error)),
    }

    let keys = Keys::generate();
    match create(path, &to_text(&keys)) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new key file");
            Ok(keys)
        }
        // Another process created it between our open and our link: its keys win.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let file = File::open(path).map_err(io_error)?;
            read(path, file)
        }
        Err(error) => Err(io_error(error)),
    }
}

pub(super) fn parse(text: &str, origin: &Path) -> Result<Keys, KeyError> {
    let malformed = |line: usize, reason: &str| KeyError::Malformed {
        path: origin.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let invalid = |reason: String| KeyError::Invalid {
        path: origin.to_owned(),
        reason,
    };
    let decode = |line: usize, entry: &str, value: &str, min: usize| {
        let bytes = Zeroizing::new(BASE64.decode(value).map_err(|_| {
            // The decoder's message quotes the offending character: a piece of the secret.
            malformed(line, "the value is not base64 (standard alphabet, padded)")
        })?);
        if bytes.len() < min {
            return Err(KeyError::KeyTooShort {
                path: origin.to_owned(),
                line,
                entry: entry.to_owned(),
                len: bytes.len(),
                min,
            });
        }
        Ok(bytes)
    };

    let mut jwt = None;
    let mut blind_index = None;
    let mut secret_hash = None;
    let mut pii_current: Option<(usize, PiiKeyId)> = None;
    let mut pii_keys = BTreeMap::new();

    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let Some((name, value)) = entry.split_once('=') else {
            return Err(malformed(line, "expected `name=value`"));
        };
        let (name, value) = (name.trim(), value.trim());
        let slot = match name {
            "jwt" => Some((&mut jwt, JWT_KEY_BYTES_MIN)),
            "blind_index" => Some((&mut blind_index, HMAC_KEY_BYTES_MIN)),
            "secret_hash" => Some((&mut secret_hash, HMAC_KEY_BYTES_MIN)),
            _ => None,
        };
        if let Some((slot, min)) = slot {
            if slot.is_some() {
                return Err(malformed(line, &format!("`{name}` appears twice")));
            }
            *slot = Some(decode(line, name, value, min)?);
        } else if name == "pii_current" {
            if pii_current.is_some() {
                return Err(malformed(line, "`pii_current` appears twice"));
            }
            let id = parse_key_id(value).ok_or_else(|| {
                malformed(line, "`pii_current` must be a key id (0 to 4294967295)")
            })?;
            pii_current = Some((line, id));
        } else if let Some(id) = name.strip_prefix("pii.") {
            let id = parse_key_id(id).ok_or_else(|| {
                malformed(
                    line,
                    "a PII key is named `pii.<id>`, id from 0 to 4294967295",
                )
            })?;
            let bytes = decode(line, name, value, PII_KEY_BYTES)?;
            if bytes.len() != PII_KEY_BYTES {
                return Err(malformed(
                    line,
                    &format!(
                        "`{name}` holds {} bytes; an AES-256 key is exactly {PII_KEY_BYTES}",
                        bytes.len()
                    ),
                ));
            }
            let mut key = Zeroizing::new([0u8; PII_KEY_BYTES]);
            key.copy_from_slice(&bytes);
            if pii_keys.insert(id, key).is_some() {
                return Err(malformed(line, &format!("`{name}` appears twice")));
            }
        } else {
            // The name is not echoed: a line of bare base64 ending in `=` splits there.
            return Err(malformed(
                line,
                "unknown entry; expected jwt, blind_index, secret_hash, pii.<id> or pii_current",
            ));
        }
    }

    let missing = |name: &str| invalid(format!("`{name}` is missing"));
    let jwt = jwt.ok_or_else(|| missing("jwt"))?;
    let blind_index = blind_index.ok_or_else(|| missing("blind_index"))?;
    let secret_hash = secret_hash.ok_or_else(|| missing("secret_hash"))?;
    if pii_keys.is_empty() {
        return Err(missing("pii.<id>"));
    }
    let (current_line, current) = pii_current.ok_or_else(|| missing("pii_current"))?;
    if !pii_keys.contains_key(&current) {
        return Err(malformed(
            current_line,
            &format!("`pii_current` names key id {current}, but there is no `pii.{current}` line"),
        ));
    }

    Ok(Keys {
        jwt,
        blind_index,
        secret_hash,
        cipher: FieldCipher::new(current, pii_keys),
    })
}

/// The text of a key file holding `keys`; [`parse`] reads it back to equal keys.
pub(super) fn to_text(keys: &Keys) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(1024));
    text.push_str(HEADER);
    let mut line = |name: &str, key: &[u8]| {
        text.push_str(name);
        text.push('=');
        BASE64.encode_string(key, &mut text);
        text.push('\n');
    };
    line("jwt", &keys.jwt);
    line("blind_index", &keys.blind_index);
    line("secret_hash", &keys.secret_hash);
    for (id, key) in keys.cipher.keys() {
        line(&format!("pii.{id}"), key.as_slice());
    }
    text.push_str(&format!("pii_current={}\n", keys.cipher.current_key_id()));
    text
}

/// Canonical decimal only (no sign, no leading zero), so each id has one spelling.
fn parse_key_id(text: &str) -> Option<PiiKeyId> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn read(path: &Path, mut file: File) -> Result<Keys, KeyError> {
    let io_error = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let invalid = |reason: &str| KeyError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    // The open handle is checked, not the path, so the file read is the file checked.
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(invalid("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & MODE_GROUP_OTHER_MASK != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }

    // Capacity for the whole limit up front: a growing buffer would leave copies of the keys
    // behind in freed memory that is never wiped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_BYTES_MAX + 1));
    (&mut file)
        .take(KEY_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() > KEY_FILE_BYTES_MAX {
        return Err(invalid("larger than 64 KiB, which no key file is"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not UTF-8 text"))?;
    parse(text, path)
}

/// Writes a new key file that appears complete or not at all, and never replaces one that exists.
fn create(path: &Path, text: &str) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the key file path has no file name",
        )
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_private_dir(parent)?;

    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let temporary = parent.join(temporary_name);

    let written = write_private_file(&temporary, text)
        // A hard link publishes the complete file atomically and, unlike a rename, fails instead
        // of replacing a key file another process created meanwhile.
        .and_then(|()| fs::hard_link(&temporary, path));
    if let Err(error) = fs::remove_file(&temporary)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %temporary.display(), %error, "could not remove a temporary key file");
    }
    written?;
    // The new directory entry durable, so that a crash cannot lose a key file already in use.
    crate::durable::sync_dir(parent)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn write_private_file(path: &Path, text: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn b64(byte: u8, len: usize) -> String {
        BASE64.encode(vec![byte; len])
    }

    fn valid_text() -> String {
        format!(
            "# test keys\n\njwt = {}\nblind_index={}\nsecret_hash={}\npii.1={}\npii.2={}\npii_current=2\n",
            b64(1, 64),
            b64(2, 32),
            b64(3, 32),
            b64(4, 32),
            b64(5, 32),
        )
    }

    fn parse_text(text: &str) -> Result<Keys, KeyError> {
        parse(text, Path::new("keys.txt"))
    }

    fn write_with_mode(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).expect("write key file");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn assert_same_keys(a: &Keys, b: &Keys) {
        assert_eq!(a.jwt_key(), b.jwt_key());
        assert_eq!(
            a.blind_index("ada@example.com"),
            b.blind_index("ada@example.com")
        );
        assert_eq!(
            a.secret_hash("code", b"123456"),
            b.secret_hash("code", b"123456")
        );
        assert_eq!(a.cipher().current_key_id(), b.cipher().current_key_id());
        let sealed = a.cipher().encrypt("usr_1", "email", "ada@example.com");
        assert_eq!(
            b.cipher().decrypt("usr_1", "email", &sealed).as_deref(),
            Ok("ada@example.com")
        );
    }

    #[test]
    fn created_with_mode_0600_and_reloaded_gives_the_same_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config").join("keys");

        let created = Keys::load_or_create(&path).expect("create");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&dir.path().join("config")), 0o700);
        let entries: Vec<_> = fs::read_dir(dir.path().join("config"))
            .expect("read dir")
            .collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");

        let reloaded = Keys::load_or_create(&path).expect("reload");
        assert_same_keys(&created, &reloaded);
        assert_eq!(reloaded.jwt_key().len(), JWT_KEY_BYTES_MIN);
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            write_with_mode(&path, &valid_text(), mode);
            match Keys::load_or_create(&path) {
                Err(KeyError::Permissions { mode: found, .. }) => assert_eq!(found, mode),
                other => panic!("mode {mode:o}: expected a permissions error, got {other:?}"),
            }
        }
        let message = Keys::load_or_create(&path).expect_err("0620").to_string();
        assert!(
            message.contains("0620") && message.contains("chmod 600"),
            "{message}"
        );

        write_with_mode(&path, &valid_text(), 0o400);
        assert!(Keys::load_or_create(&path).is_ok());
    }

    #[test]
    fn a_valid_file_with_rotated_keys_loads() {
        let keys = parse_text(&valid_text()).expect("valid");
        assert_eq!(keys.jwt_key(), &[1u8; 64][..]);
        assert_eq!(keys.cipher().current_key_id(), 2);

        // A row sealed before the rotation, under pii.1 alone.
        let before = FieldCipher::new(1, BTreeMap::from([(1, Zeroizing::new([4u8; 32]))]));
        let old = before.encrypt("usr_7", "phone", "+33 6 12 34 56 78");
        assert_eq!(
            keys.cipher().decrypt("usr_7", "phone", &old).as_deref(),
            Ok("+33 6 12 34 56 78")
        );
        let new = keys.cipher().encrypt("usr_7", "phone", "+33 6 12 34 56 78");
        assert_eq!(new[..4], 2u32.to_be_bytes());
    }

    #[test]
    fn written_text_parses_back_to_the_same_keys() {
        let keys = parse_text(&valid_text()).expect("valid");
        let again = parse_text(&to_text(&keys)).expect("round trip");
        assert_same_keys(&keys, &again);
        assert_eq!(again.cipher().keys().len(), 2);
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        let text = valid_text();
        let replace = |from: &str, to: &str| text.replacen(from, to, 1);
        let cases: Vec<(String, usize, &str)> = vec![
            (
                replace("pii_current=2", "pii_current 2"),
                8,
                "expected `name=value`",
            ),
            (replace("blind_index=", "blind_index=!"), 4, "not base64"),
            (
                replace("pii_current=2", "pii_current=3"),
                8,
                "no `pii.3` line",
            ),
            (
                replace("pii_current=2", "pii_current=02"),
                8,
                "must be a key id",
            ),
            (replace("pii.2=", "pii.x="), 7, "`pii.<id>`"),
            (replace("pii.2=", "pii.1="), 7, "`pii.1` appears twice"),
            (replace("jwt =", "jwt_key ="), 3, "unknown entry"),
            (
                format!("{text}secret_hash={}\n", b64(9, 32)),
                9,
                "`secret_hash` appears twice",
            ),
            (
                replace(
                    &format!("pii.2={}", b64(5, 32)),
                    &format!("pii.2={}", b64(5, 33)),
                ),
                7,
                "exactly 32",
            ),
        ];
        for (text, line, fragment) in cases {
            let error = parse_text(&text).expect_err(fragment);
            let message = error.to_string();
            assert!(
                matches!(error, KeyError::Malformed { line: l, .. } if l == line),
                "{fragment}: {error:?}"
            );
            assert!(message.contains(fragment), "{message}");
            assert!(message.contains(&format!("line {line}")), "{message}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        let text = valid_text().replacen(
            &format!("jwt = {}", b64(1, 64)),
            &format!("jwt = {}", b64(1, 32)),
            1,
        );
        let error = parse_text(&text).expect_err("short jwt");
        assert!(
            matches!(
                &error,
                KeyError::KeyTooShort { line: 3, entry, len: 32, min: 64, .. } if entry == "jwt"
            ),
            "{error:?}"
        );
        let text = valid_text().replacen(
            &format!("secret_hash={}", b64(3, 32)),
            &format!("secret_hash={}", b64(3, 16)),
            1,
        );
        assert!(matches!(
            parse_text(&text),
            Err(KeyError::KeyTooShort {
                line: 5,
                len: 16,
                min: 32,
                ..
            })
        ));
        let text = valid_text().replacen(
            &format!("pii.1={}", b64(4, 32)),
            &format!("pii.1={}", b64(4, 31)),
            1,
        );
        let error = parse_text(&text).expect_err("short PII key");
        assert!(
            matches!(
                error,
                KeyError::KeyTooShort {
                    line: 6,
                    len: 31,
                    min: 32,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn missing_entries_are_named() {
        let text = valid_text();
        for (name, without) in [
            ("jwt", text.replacen("jwt =", "# jwt =", 1)),
            ("secret_hash", text.replacen("secret_hash=", "#", 1)),
            ("pii_current", text.replacen("pii_current=2", "", 1)),
        ] {
            let message = parse_text(&without).expect_err(name).to_string();
            assert!(
                message.contains(&format!("`{name}` is missing")),
                "{message}"
            );
        }
        let no_pii: String = text
            .lines()
            .filter(|line| !line.starts_with("pii"))
            .map(|line| format!("{line}\n"))
            .collect();
        let message = parse_text(&no_pii).expect_err("no pii").to_string();
        assert!(message.contains("`pii.<id>` is missing"), "{message}");
    }

    #[test]
    fn errors_never_quote_a_secret() {
        let secret = b64(7, 64);
        let text = valid_text().replacen(&b64(1, 64), &format!("{secret}%"), 1);
        let message = parse_text(&text).expect_err("bad base64").to_string();
        assert!(!message.contains(&secret[..16]), "{message}");
        let message = parse_text(&format!("{secret}\n"))
            .expect_err("bare")
            .to_string();
        assert!(!message.contains(&secret[..16]), "{message}");
    }

    #[test]
    fn oversized_and_binary_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        write_with_mode(&path, &"#".repeat(KEY_FILE_BYTES_MAX + 1), 0o600);
        assert!(matches!(
            Keys::load_or_create(&path),
            Err(KeyError::Invalid { .. })
        ));
        fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        let message = Keys::load_or_create(&path).expect_err("binary").to_string();
        assert!(message.contains("not UTF-8"), "{message}");
    }
}
