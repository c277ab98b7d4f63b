//! Durable on disk by fsync semantics: what PostgreSQL (`wal_sync_method=fdatasync`) and
//! MariaDB (`innodb_flush_log_at_trx_commit=1`) acknowledge after. Data that is durable this way
//! survives a power cut or a kernel crash, not only a killed process.
//!
//! Two parts:
//! - [`sync_dir`] and [`create_dir_all`]: a new, renamed or removed directory entry survives a
//!   power cut only once its directory is fsynced too.
//! - [`SledFiles`]: sled 0.34's `Db::flush` is not enough on its own (see its doc).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// `std::fs::create_dir_all`, and every directory it created made durable in its parent.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    // Outermost first, so that each entry is synced into a parent that is durable itself.
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// sled's data file, under its directory.
const DATA_FILE: &str = "db";
/// Values (and tree nodes) too large for a segment, one file each, under sled's directory.
const BLOBS_DIR: &str = "blobs";

/// Makes everything a sled `Db::flush` wrote durable by fsync semantics.
///
/// sled 0.34.7 (pinned in Cargo.toml, because this relies on its file layout) makes a flush
/// "stable" with `pwrite` and then `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on Linux
/// (`pagecache/iobuf.rs`). That writes the file's dirty pages to the device, but not the file's
/// metadata (its size, when the file grew), not the device's volatile write cache, and on a FUSE
/// or network file system it asks nothing of the file system at all; sled's own `fsync` runs
/// only every 500 ms, in its background flusher. Values too large for a segment go to a file of
/// their own under `blobs/`, which sled writes without ever syncing it (`pagecache/blob_io.rs`).
/// Measured on LazyFS, a file system that drops what was not fsynced when told to (a power cut),
/// acknowledged orders were lost that way.
///
/// So when sled has opened, [`SledFiles::open`] fsyncs what sled wrote while opening and never
/// again (`config.rs`, `pagecache/snapshot.rs`): its `conf`, its `snap.*` page table (sled
/// fsyncs that file itself but not the rename that puts it in place) and its directory. After
/// each flush, [`SledFiles::sync`] fsyncs the rest: the data file `db` (`fdatasync`: its data
/// and its size), and every blob file not synced at its present size before, with the blob
/// directory when its entries changed.
///
/// Why a blob is synced "at its present size": a blob is written once, by the thread whose
/// write needs it, and before that write's pointer to it enters sled's log. A blob that a flush
/// made stable is therefore complete when the flush returns; one still being written by another
/// thread may be synced early, and is synced again at the next sync that finds it grown.
pub struct SledFiles {
    dir: PathBuf,
    data: File,
    /// Blob files and the size each was synced at.
    blobs: Mutex<BTreeMap<OsString, u64>>,
}

impl SledFiles {
    /// The files of the sled database at `dir`, opened after sled opened it: what sled wrote
    /// while opening, other than its data and its blobs, is synced here. The first
    /// [`sync`](Self::sync) syncs the data file and every blob.
    pub fn open(dir: &Path) -> io::Result<SledFiles> {
        let data = File::open(dir.join(DATA_FILE))?;
        for name in names(dir)? {
            if name != DATA_FILE && name != BLOBS_DIR {
                sync_file(&dir.join(name))?;
            }
        }
        sync_dir(dir)?;
        Ok(SledFiles {
            dir: dir.to_path_buf(),
            data,
            blobs: Mutex::new(BTreeMap::new()),
        })
    }

    /// `db.flush()`, then [`sync`](Self::sync): what was written to `db` before the call is
    /// durable once this returns.
    pub fn flush(&self, db: &sled::Db) -> Result<(), sled::Error> {
        db.flush()?;
        self.sync().map_err(sled::Error::Io)
    }

    /// Call after `Db::flush` returned: once this returns too, what the flush wrote is durable.
    pub fn sync(&self) -> io::Result<()> {
        self.data.sync_data()?;
        let dir = self.dir.join(BLOBS_DIR);
        let present = match names(&dir) {
            Ok(names) => names,
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => return Err(error),
        };
        let mut synced = self.blobs.lock();
        let before = synced.len();
        synced.retain(|name, _| present.contains(name));
        let mut changed = synced.len() != before;
        for name in present {
            let path = dir.join(&name);
            // The size before the sync: whatever was written up to it is in what is synced.
            let size = match std::fs::metadata(&path) {
                Ok(metadata) => metadata.len(),
                // Collected by sled meanwhile.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if synced.get(&name) == Some(&size) {
                continue;
            }
            match sync_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
            changed |= synced.insert(name, size).is_none();
        }
        if changed {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

/// Makes a file's data and metadata durable (its directory entry is [`sync_dir`]'s job).
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_makes_every_missing_level() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        // Again: nothing to do.
        create_dir_all(&deep).unwrap();
    }

    #[test]
    fn every_file_sled_keeps_is_one_the_sync_knows() {
        // If a sled upgrade added a kind of file, this would name it.
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("store");
        let db = sled::Config::new().path(&path).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        // Large enough to be written as a blob of its own.
        tree.insert("big", vec![7u8; 1 << 20]).unwrap();
        tree.insert("small", &b"x"[..]).unwrap();
        db.flush().unwrap();
        let files = SledFiles::open(&path).unwrap();
        files.sync().unwrap();
        let blobs = files.blobs.lock().len();
        assert!(blobs >= 1, "the large value was expected in a blob file");
        drop(db);
        for name in names(&path).unwrap() {
            let name = name.to_string_lossy().into_owned();
            let known = name == DATA_FILE
                || name == BLOBS_DIR
                || name == "conf"
                || name.starts_with("snap.");
            assert!(known, "sled keeps a file the sync does not know: {name}");
        }
    }

    #[test]
    fn a_blob_that_grew_is_synced_again() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("store");
        let db = sled::Config::new().path(&path).open().unwrap();
        db.flush().unwrap();
        let files = SledFiles::open(&path).unwrap();
        let blobs = path.join(BLOBS_DIR);
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("42"), b"half").unwrap();
        files.sync().unwrap();
        assert_eq!(files.blobs.lock().get(&OsString::from("42")), Some(&4));
        std::fs::write(blobs.join("42"), b"half and the rest").unwrap();
        files.sync().unwrap();
        assert_eq!(files.blobs.lock().get(&OsString::from("42")), Some(&17));
        std::fs::remove_file(blobs.join("42")).unwrap();
        files.sync().unwrap();
        assert!(files.blobs.lock().is_empty());
    }
}
