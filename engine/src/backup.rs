//! Offline backup and restore of a whole data directory: the store, the key file and whatever
//! else lives there (mail written as files, the payment simulator's journal).
//!
//! Both hold the source's lock while they copy, so a running server makes them fail instead of
//! copying files under its feet. Both copy into a hidden directory beside the destination
//! first, fsync every file and directory, check the copy, and only then rename it into place:
//! a crash or a failure midway leaves no half-written backup or data directory behind under
//! the given name. A restore never deletes: the directory it replaces is moved aside. A backup
//! of a directory a crash left behind is restored as opening it would: its torn tail cut and
//! its events rewritten, on the copy, before the copy is checked.
//!
//! An online backup ([`Engine::backup_online`]) copies a store a running engine is writing.
//! It holds the checkpoint lock throughout (no snapshot is written, no log batch, event or key
//! is pruned meanwhile) and copies in an order that makes the copy a state a crash could have
//! left: the newest snapshot first, then every other tree entry by entry (the cold tier, the
//! events, the consumers' offsets, `meta`), then the log up to its last batch at that moment,
//! then the files beside the store (the key file, mail, the payment simulator's journal). Each
//! tree entry copied reflects records the log held when it was read, so none is ahead of the
//! copied log; an open replays the log after the snapshot and folds it into the cold tier
//! again (stored orders carry the last record folded into them, so a fold is never applied
//! twice) and rewrites the events: exactly the repair of a crash. The backup opens its copy so
//! once, before it puts it in place; the copy then verifies clean.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::ManualClock;
use crate::crypto::Keys;
use crate::inspect::inspect_with;
use crate::progress::{Progress, Silent};
use crate::record::Seq;
use crate::store::{DirLock, Store};
use crate::{Engine, EngineConfig, OpenError};

/// The lock file of a data directory: it belongs to the directory, never to a copy of it.
const LOCK_FILE: &str = "LOCK";

/// Why a backup or a restore did not happen (or, for `RollbackFailed`, what is left to do).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source has no store: not a data directory.
    #[error("{0} is not an allot data directory (no store in it)")]
    NotADataDirectory(String),
    /// The destination is the source or inside it.
    #[error("{target} is inside {source_dir} (or is it): the copy would copy itself")]
    Overlap {
        /// The directory copied.
        source_dir: String,
        /// Where the copy was to go.
        target: String,
    },
    /// Something exists at the backup's destination already.
    #[error("{0} already exists; choose a new path")]
    DestinationExists(String),
    /// A restore into a directory that holds something, without `--force`.
    #[error("{0} is not empty; pass --force to replace it (it is moved aside, not deleted)")]
    DestinationNotEmpty(String),
    /// A symbolic link, socket or the like in the directory copied.
    #[error("{path} is not a plain file or directory; a data directory holds no others")]
    Unexpected {
        /// The entry.
        path: String,
    },
    /// The backup to restore does not verify clean.
    #[error("the backup {path} fails verification: {problems}")]
    NotClean {
        /// The backup.
        path: String,
        /// What verifying it found.
        problems: String,
    },
    /// The copy's key file is missing or does not read.
    #[error("the key file of {path}: {reason}")]
    Keys {
        /// The key file.
        path: String,
        /// Why it does not read.
        reason: String,
    },
    /// Opening a store (the source's lock, the copy's store) failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A restore failed, and so did putting the replaced directory back.
    #[error(
        "{failure}; the directory that was replaced is at {aside} and could not be put back \
         ({rollback}): move it back by hand"
    )]
    RollbackFailed {
        /// What made the restore fail.
        failure: Box<BackupError>,
        /// Where the replaced directory is now.
        aside: String,
        /// Why it could not be moved back.
        rollback: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a backup or a restore did.
#[derive(Debug)]
pub struct CopyReport {
    /// The files copied (the directory's lock file is never copied).
    pub files: u64,
    /// The bytes of those files, in total.
    pub bytes: u64,
    /// The copy's last record, as `db verify` replays it.
    pub last_seq: Seq,
    /// What `db verify` of the copy found (always empty after a restore).
    pub problems: Vec<String>,
    /// A restore opened the copy as a server would, and that cut a torn tail.
    pub tail_cut: bool,
    /// Where a restore moved the directory it replaced.
    pub moved_aside: Option<PathBuf>,
    /// Done, but the rename may not survive a power cut: syncing its directory failed.
    pub unsynced: Option<String>,
}

/// Copies the data directory `data_dir` (not in use) to `to`, which must not exist, and
/// verifies the copy and its key file. A copy with problems, or one that cannot be read at all,
/// is kept (it is what there is), and reported: the caller decides how loudly.
pub fn backup(data_dir: &Path, to: &Path) -> Result<CopyReport, BackupError> {
    backup_with(data_dir, to, &Silent)
}

/// [`backup`], telling `progress` how far the copy (in bytes) and its check have come.
pub fn backup_with(
    data_dir: &Path,
    to: &Path,
    progress: &dyn Progress,
) -> Result<CopyReport, BackupError> {
    require_data_dir(data_dir)?;
    if to.exists() {
        return Err(BackupError::DestinationExists(to.display().to_string()));
    }
    refuse_overlap(data_dir, to)?;
    let _lock = DirLock::acquire(data_dir)?;
    let staging = beside(to, "partial")?;
    let copied = copy_tree(data_dir, &staging, progress).and_then(|totals| {
        std::fs::rename(&staging, to).map_err(io(to))?;
        Ok(totals)
    });
    finish_backup(copied, &staging, to, progress)
}

/// The end of a backup: a failed copy's staging directory removed, or the copy (in place at
/// `to`) verified and its key file read, with its rename made durable.
fn finish_backup(
    copied: Result<(u64, u64), BackupError>,
    staging: &Path,
    to: &Path,
    progress: &dyn Progress,
) -> Result<CopyReport, BackupError> {
    let (files, bytes) = match copied {
        Ok(totals) => totals,
        Err(error) => {
            let _ = std::fs::remove_dir_all(staging);
            return Err(error);
        }
    };
    let unsynced = sync_parent(to);
    let (last_seq, mut problems) = match inspect_with(to, progress) {
        Ok(inspection) => (inspection.last_seq, inspection.problems),
        Err(error) => (0, vec![format!("the copy cannot be read: {error}")]),
    };
    if let Err(error) = check_keys(to) {
        problems.push(error.to_string());
    }
    Ok(CopyReport {
        files,
        bytes,
        last_seq,
        problems,
        tail_cut: false,
        moved_aside: None,
        unsynced,
    })
}

/// The trees an online backup copies in its own way: the snapshots (the newest only, first),
/// the refused ones (not at all: they are kept for a person to look at, in the source), and
/// the log (last).
const TREES_COPIED_APART: [&[u8]; 3] = [b"snapshots", b"snapshots_refused", b"log"];
/// The store's directory in a data directory.
const STORE_DIR: &str = "store";

impl Engine {
    /// Copies the data directory this engine is running on to `to` (which must not exist)
    /// while it keeps serving, then verifies the copy as `db verify` does. The copy holds
    /// every record the log held when the copy of the log began (every order acknowledged
    /// before the backup started among them). Snapshots and log pruning wait until it is done;
    /// placements, payments and reads do not.
    pub fn backup_online(&self, to: &Path) -> Result<CopyReport, BackupError> {
        let data_dir = &self.config().data_dir;
        if to.exists() {
            return Err(BackupError::DestinationExists(to.display().to_string()));
        }
        refuse_overlap(data_dir, to)?;
        let staging = beside(to, "partial")?;
        let copied = copy_live(self.store(), data_dir, &staging).and_then(|totals| {
            // The copy is a state a crash could have left: repaired as an open repairs that
            // (the cold tier and the events caught up with the copied log), it is whole at rest.
            open_as_a_server_would(&staging)?;
            std::fs::rename(&staging, to).map_err(io(to))?;
            Ok(totals)
        });
        finish_backup(copied, &staging, to, &Silent)
    }
}

/// The copy of [`Engine::backup_online`] into the new directory `to`: the store tree by tree
/// in the order the module's docs give, then the files beside it. Answers the entries and
/// files copied, and their bytes.
fn copy_live(source: &Store, data_dir: &Path, to: &Path) -> Result<(u64, u64), BackupError> {
    let storage = |e: sled::Error| BackupError::Open(OpenError::Storage(e));
    std::fs::create_dir(to).map_err(io(to))?;
    let permissions = std::fs::metadata(data_dir)
        .map_err(io(data_dir))?
        .permissions();
    std::fs::set_permissions(to, permissions).map_err(io(to))?;
    let mut totals = (0, 0);
    {
        let _no_checkpoint = source.checkpointing.lock();
        let copy = Store::open(&EngineConfig::new(to))?;
        let mut put = |tree: &sled::Tree, key: &[u8], value: &[u8]| {
            totals.0 += 1;
            totals.1 += (key.len() + value.len()) as u64;
            tree.insert(key, value).map(|_| ()).map_err(storage)
        };
        if let Some((key, value)) = source.snapshots.last().map_err(storage)? {
            put(&copy.snapshots, &key, &value)?;
        }
        for name in source.db.tree_names() {
            if TREES_COPIED_APART.contains(&name.as_ref()) {
                continue;
            }
            let from = source.db.open_tree(&name).map_err(storage)?;
            let into = copy.db.open_tree(&name).map_err(storage)?;
            for entry in from.iter() {
                let (key, value) = entry.map_err(storage)?;
                put(&into, &key, &value)?;
            }
        }
        // The log last, up to its last batch now: every entry copied above reflects batches
        // the log held when it was read.
        if let Some((last, _)) = source.log.last().map_err(storage)? {
            for entry in source.log.range(..=last) {
                let (key, value) = entry.map_err(storage)?;
                put(&copy.log, &key, &value)?;
            }
        }
        copy.flush().map_err(storage)?;
    }
    crate::durable::sync_dir(&to.join(STORE_DIR)).map_err(io(to))?;
    // The key file, mail, the payment simulator's journal: after the log, so that a charge
    // the copied log asked for is in the copied journal.
    copy_entries(data_dir, to, &[LOCK_FILE, STORE_DIR], &mut totals, &Silent)?;
    sync_dir(to)?;
    Ok(totals)
}

/// Replaces the data directory `data_dir` with a copy of the backup `from` (locked meanwhile
/// if it was ever a live directory), once the copy has been opened as a server would open it
/// and then passed verification. An existing non-empty `data_dir` is replaced only with
/// `replace`, and is then moved aside to `<data_dir>.before-restore-<ms>`.
pub fn restore(from: &Path, data_dir: &Path, replace: bool) -> Result<CopyReport, BackupError> {
    restore_with(from, data_dir, replace, &Silent)
}

/// [`restore`], telling `progress` how far the copy (in bytes) and its check have come.
pub fn restore_with(
    from: &Path,
    data_dir: &Path,
    replace: bool,
    progress: &dyn Progress,
) -> Result<CopyReport, BackupError> {
    require_data_dir(from)?;
    refuse_overlap(from, data_dir)?;
    let occupied = is_occupied(data_dir)?;
    if occupied && !replace {
        return Err(BackupError::DestinationNotEmpty(
            data_dir.display().to_string(),
        ));
    }
    // A backup someone is writing to would be copied half-written; a backup is not written to.
    let _source_lock = DirLock::acquire_if_present(from)?;
    // Held until the end: no server may open the directory while it is being replaced.
    let _lock = if occupied {
        Some(DirLock::acquire(data_dir)?)
    } else {
        None
    };
    let staging = beside(data_dir, "restoring")?;
    let prepared = copy_tree(from, &staging, progress).and_then(|totals| {
        check_keys(&staging)?;
        let tail_cut = open_as_a_server_would(&staging)?;
        let inspection = inspect_with(&staging, progress)?;
        if !inspection.is_clean() {
            return Err(BackupError::NotClean {
                path: from.display().to_string(),
                problems: inspection.problems.join("; "),
            });
        }
        Ok((totals, tail_cut, inspection.last_seq))
    });
    let ((files, bytes), tail_cut, last_seq) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    let moved_aside = match put_in_place(&staging, data_dir, occupied) {
        Ok(aside) => aside,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    Ok(CopyReport {
        files,
        bytes,
        last_seq,
        problems: Vec::new(),
        tail_cut,
        moved_aside,
        unsynced: sync_parent(data_dir),
    })
}

/// Opens the copy as `allot serve` would, so that it is repaired as that would repair it (a
/// torn tail cut, a crash's missing events written), with a clock at the epoch so that
/// nothing expires meanwhile. Answers whether a tail was cut.
fn open_as_a_server_would(dir: &Path) -> Result<bool, BackupError> {
    let config = EngineConfig {
        snapshot_on_close: false,
        ..EngineConfig::new(dir)
    };
    let engine = Engine::open(config, Arc::new(ManualClock::new(0)))?;
    let tail_cut = engine.recovery_report().tail_cut.is_some();
    engine
        .close()
        .map_err(|e| OpenError::Corrupt(format!("closing the restored copy: {e}")))?;
    Ok(tail_cut)
}

/// Moves an occupied `data_dir` aside (answering where to) or removes an empty one, then
/// renames `staging` to `data_dir`. If that rename fails, what was there is put back.
fn put_in_place(
    staging: &Path,
    data_dir: &Path,
    occupied: bool,
) -> Result<Option<PathBuf>, BackupError> {
    if !occupied {
        if data_dir.exists() {
            std::fs::remove_dir(data_dir).map_err(io(data_dir))?;
        }
        std::fs::rename(staging, data_dir).map_err(io(data_dir))?;
        return Ok(None);
    }
    let aside = aside_name(data_dir)?;
    std::fs::rename(data_dir, &aside).map_err(io(data_dir))?;
    if let Err(error) = std::fs::rename(staging, data_dir) {
        let failure = io(data_dir)(error);
        return match std::fs::rename(&aside, data_dir) {
            Ok(()) => Err(failure),
            Err(rollback) => Err(BackupError::RollbackFailed {
                failure: Box::new(failure),
                aside: aside.display().to_string(),
                rollback,
            }),
        };
    }
    Ok(Some(aside))
}

/// Makes a rename in `path`'s directory durable; a failure is reported, not fatal: the rename
/// itself happened.
fn sync_parent(path: &Path) -> Option<String> {
    let synced = split(path).and_then(|(parent, _)| sync_dir(&parent));
    synced.err().map(|e| e.to_string())
}

fn require_data_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.join("store").is_dir() {
        Ok(())
    } else {
        Err(BackupError::NotADataDirectory(dir.display().to_string()))
    }
}

/// Whether `dir` exists with anything in it (a file where it should be is an error).
fn is_occupied(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(dir)(e)),
    }
}

fn check_keys(dir: &Path) -> Result<(), BackupError> {
    let path = EngineConfig::new(dir).keys_path();
    let fail = |reason: String| BackupError::Keys {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    Keys::parse(&text, &path).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// A hidden sibling of `target` to build a copy in.
fn beside(target: &Path, purpose: &str) -> Result<PathBuf, BackupError> {
    let (parent, name) = split(target)?;
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let mut hidden = OsString::from(".");
    hidden.push(name);
    hidden.push(format!(".{purpose}-{}", std::process::id()));
    let staging = parent.join(hidden);
    if staging.exists() {
        // Left by an earlier run of this very process id that died: nobody else names it so.
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    Ok(staging)
}

fn aside_name(data_dir: &Path) -> Result<PathBuf, BackupError> {
    let (parent, mut name) = split(data_dir)?;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    name.push(format!(".before-restore-{ms}"));
    Ok(parent.join(name))
}

fn split(path: &Path) -> Result<(PathBuf, OsString), BackupError> {
    let absolute = std::path::absolute(path).map_err(io(path))?;
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_owned())),
        _ => Err(BackupError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "needs a named directory, not a root",
            ),
        }),
    }
}

/// Refuses a `target` inside `source` (or the same): its copy would be copied into itself.
fn refuse_overlap(source: &Path, target: &Path) -> Result<(), BackupError> {
    if resolved(target)?.starts_with(resolved(source)?) {
        return Err(BackupError::Overlap {
            source_dir: source.display().to_string(),
            target: target.display().to_string(),
        });
    }
    Ok(())
}

/// `path` absolute, with the symbolic links of its existing part resolved.
fn resolved(path: &Path) -> Result<PathBuf, BackupError> {
    let absolute = std::path::absolute(path).map_err(io(path))?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    while !existing.exists() {
        let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
            return Err(BackupError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a path to be created may not go through `..`",
                ),
            });
        };
        missing.push(name);
        existing = parent;
    }
    let mut resolved = existing.canonicalize().map_err(io(existing))?;
    resolved.extend(missing.iter().rev());
    Ok(resolved)
}

/// Copies the tree `from` into the new directory `to`, every file and directory fsynced, the
/// top-level lock file left out. Answers the files and bytes copied.
fn copy_tree(from: &Path, to: &Path, progress: &dyn Progress) -> Result<(u64, u64), BackupError> {
    progress.start("copying (bytes)", bytes_in(from)?);
    let mut totals = (0, 0);
    copy_dir(from, to, &[LOCK_FILE], &mut totals, progress)?;
    Ok(totals)
}

/// The bytes of the plain files under `dir`, for a progress bar's length.
fn bytes_in(dir: &Path) -> Result<u64, BackupError> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_dir() {
            bytes += bytes_in(&entry.path())?;
        } else if kind.is_file() {
            bytes += entry.metadata().map_err(io(&entry.path()))?.len();
        }
    }
    Ok(bytes)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    skip: &[&str],
    totals: &mut (u64, u64),
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    std::fs::create_dir(to).map_err(io(to))?;
    copy_entries(from, to, skip, totals, progress)?;
    // As private as the original (a data directory holds mail and keys).
    let permissions = std::fs::metadata(from).map_err(io(from))?.permissions();
    std::fs::set_permissions(to, permissions).map_err(io(to))?;
    sync_dir(to)
}

/// Copies what `from` holds, but the names in `skip`, into the existing directory `to`:
/// directories whole ([`copy_dir`]), files fsynced, anything else refused.
fn copy_entries(
    from: &Path,
    to: &Path,
    skip: &[&str],
    totals: &mut (u64, u64),
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let source = entry.path();
        if skip.iter().any(|name| entry.file_name() == *name) {
            continue;
        }
        let kind = match entry.file_type() {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            kind => kind.map_err(io(&source))?,
        };
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&source, &target, &[], totals, progress)?;
        } else if kind.is_file() {
            let Some(bytes) = copy_file(&source, &target)? else {
                continue;
            };
            totals.1 += bytes;
            totals.0 += 1;
            progress.advance(bytes);
        } else {
            return Err(BackupError::Unexpected {
                path: source.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Copies the file `source` to `target` and syncs the copy; answers its bytes, or `None` if
/// `source` was gone by then. An online backup lists the files beside the store while the
/// server writes them: a mail written to a temporary name and renamed, for one, may be listed
/// under the name it had a moment before. A file that vanished is left out, as a copy taken a
/// moment earlier or later would leave it; its new name is copied if the listing holds it.
fn copy_file(source: &Path, target: &Path) -> Result<Option<u64>, BackupError> {
    match std::fs::copy(source, target) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !source.exists() => Ok(None),
        copied => {
            let bytes = copied.map_err(io(source))?;
            crate::durable::sync_file(target).map_err(io(target))?;
            Ok(Some(bytes))
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    crate::durable::sync_dir(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gone_before_it_is_copied_is_left_out_and_other_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join(".mail.eml.tmp");
        assert_eq!(copy_file(&gone, &dir.path().join("copy")).unwrap(), None);
        assert!(!dir.path().join("copy").exists());

        let kept = dir.path().join("mail.eml");
        std::fs::write(&kept, b"Subject: hi").unwrap();
        let target = dir.path().join("copied.eml");
        assert_eq!(copy_file(&kept, &target).unwrap(), Some(11));
        assert_eq!(std::fs::read(&target).unwrap(), b"Subject: hi");
        // A target that cannot be written is a failure, not a file left out.
        let nowhere = dir.path().join("no-such-dir").join("copy");
        assert!(copy_file(&kept, &nowhere).is_err());
    }

    #[test]
    fn a_copy_leaves_the_lock_file_out_and_refuses_what_a_data_directory_never_holds() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("store/blobs")).unwrap();
        std::fs::write(from.join(LOCK_FILE), b"").unwrap();
        std::fs::write(from.join("keys"), b"k").unwrap();
        std::fs::write(from.join("store/db"), b"0123456789").unwrap();
        std::fs::write(from.join("store/blobs/LOCK"), b"not the top one").unwrap();
        let to = dir.path().join("to");
        assert_eq!(copy_tree(&from, &to, &Silent).unwrap(), (3, 26));
        assert!(!to.join(LOCK_FILE).exists());
        assert_eq!(std::fs::read(to.join("store/db")).unwrap(), b"0123456789");
        assert!(to.join("store/blobs/LOCK").exists());

        std::os::unix::fs::symlink("/etc/passwd", from.join("store/link")).unwrap();
        let again = dir.path().join("again");
        assert!(matches!(
            copy_tree(&from, &again, &Silent),
            Err(BackupError::Unexpected { .. })
        ));
    }

    #[test]
    fn a_copy_into_its_own_source_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("store")).unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        for to in [
            data.join("backup"),
            data.join("store/deeper/backup"),
            dir.path().join("elsewhere/../data/backup"),
        ] {
            let refused = backup(&data, &to);
            assert!(
                matches!(refused, Err(BackupError::Overlap { .. })),
                "{to:?}: {refused:?}"
            );
        }
        std::os::unix::fs::symlink(&data, dir.path().join("link")).unwrap();
        let refused = backup(&data, &dir.path().join("link/backup"));
        assert!(matches!(refused, Err(BackupError::Overlap { .. })));
        // Nor into itself or a directory inside it.
        for target in [data.clone(), data.join("store/restored")] {
            let refused = restore(&data, &target, true);
            assert!(
                matches!(refused, Err(BackupError::Overlap { .. })),
                "{target:?}: {refused:?}"
            );
        }
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["store"]);
    }

    #[test]
    fn an_empty_or_missing_directory_is_not_occupied_and_a_file_is() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_occupied(&dir.path().join("missing")).unwrap());
        assert!(!is_occupied(dir.path()).unwrap());
        std::fs::write(dir.path().join("x"), b"").unwrap();
        assert!(is_occupied(dir.path()).unwrap());
    }
}
