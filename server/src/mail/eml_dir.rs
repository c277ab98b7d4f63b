//! The relay-less mode: each mail becomes one `.eml` file (RFC 5322, as it would go on the wire).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `message` under `dir` as `<unix_ms>-<random>.eml` and answers its path, so that names
/// sort by `unix_ms`. The file appears whole or not at all (temp file, then rename), so a reader
/// polling for `*.eml` never sees half a mail. The temp file starts with a dot, ends in `.tmp`.
/// Durable (file and directory fsynced) before it returns: the notifier counts the mail as sent
/// once this returns, and a power cut must not take it back.
pub(super) fn write_eml(dir: &Path, unix_ms: u128, message: &[u8]) -> io::Result<PathBuf> {
    // Again on every mail: the directory may have been removed while the server ran.
    allot_engine::create_dir_all(dir)?;
    // Zero-padded so that names sort by time as text.
    let name = format!("{unix_ms:013}-{:016x}.eml", rand::random::<u64>());
    let final_path = dir.join(&name);
    let temp_path = dir.join(format!(".{name}.tmp"));
    let written = write_then_rename(&temp_path, &final_path, message);
    if written.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&temp_path);
    }
    written.map(|()| final_path)
}

fn write_then_rename(temp_path: &Path, final_path: &Path, message: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp_path)?;
    file.write_all(message)?;
    file.sync_all()?;
    fs::rename(temp_path, final_path)?;
    let dir = final_path.parent().unwrap_or(Path::new("."));
    allot_engine::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_whose_names_sort_by_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mail_dir = dir.path().join("not/yet/there");
        // Written out of order, named in order.
        let second = write_eml(
            &mail_dir,
            1_700_000_000_002,
            b"Subject: two\r\n\r\nbody\r\n",
        )
        .expect("second");
        let first = write_eml(
            &mail_dir,
            1_700_000_000_001,
            b"Subject: one\r\n\r\nbody\r\n",
        )
        .expect("first");
        assert!(first < second, "{first:?} !< {second:?}");
        assert_eq!(
            fs::read(&first).expect("read"),
            b"Subject: one\r\n\r\nbody\r\n"
        );
        let names: Vec<_> = fs::read_dir(&mail_dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp file left behind: {names:?}");
    }
}
