//! Durable on disk by fsync semantics: what PostgreSQL (`wal_sync_method=fdatasync`) and
//! MariaDB (`innodb_flush_log_at_trx_commit=1`) acknowledge after. Data that is durable this way
//! survives a power cut or a kernel crash, not only a killed process.
//!
//! Two parts:
//! - [`sync_dir`] and [`create_dir_all`]: a new, renamed or removed directory entry survives a
//!   power cut only once its directory is fsynced too.
//! - [`SledFiles`]: what makes a sled `Db::flush` durable (the patched sled, and the files it
//!   writes while opening; see its doc).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::Path;

// Without the patched sled (vendor/sled), `Db::flush` is not durable: refuse to build.
const _: () = assert!(sled::ALLOT_DURABILITY_PATCHES >= 1);

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

/// What it takes for a sled `Db::flush` to be durable by fsync semantics.
///
/// sled 0.34.7 as published makes a flush "stable" with `pwrite` and `sync_file_range`, which is
/// not durable (it writes the file's dirty pages, but not its size, not the device's cache, and
/// on a FUSE or network file system nothing at all), never syncs the blob files it writes under
/// `blobs/`, and deletes the blobs a stable write replaced. Measured on LazyFS (a file system
/// that drops what was not fsynced, as a power cut does), acknowledged orders were lost that way,
/// even with the data file fsynced after every flush: a deleted blob cannot be synced back. So
/// allot builds sled with the patches of `vendor/sled/PATCHES.md` (sled `fdatasync`s where it
/// called `sync_file_range`, and syncs each blob and its directory entry before the blob's
/// pointer enters the log): with them, what `Db::flush` returns on is durable.
///
/// What remains is what sled writes while opening and never again (`config.rs`,
/// `pagecache/snapshot.rs`, the recovery's own writes to the data file): [`SledFiles::open`]
/// fsyncs its `conf`, its `snap.*` page table, the directory, and the data file.
pub struct SledFiles {
    data: File,
}

impl SledFiles {
    /// The files of the sled database at `dir`, opened after sled opened it: what sled wrote
    /// while opening, other than its data and its blobs, is synced here; [`sync`](Self::sync)
    /// syncs the data file.
    pub fn open(dir: &Path) -> io::Result<SledFiles> {
        let data = File::open(dir.join(DATA_FILE))?;
        for name in names(dir)? {
            if name != DATA_FILE && name != BLOBS_DIR {
                sync_file(&dir.join(name))?;
            }
        }
        sync_dir(dir)?;
        Ok(SledFiles { data })
    }

    /// `db.flush()`: with the patched sled, what was written to `db` before the call is durable
    /// once this returns.
    pub fn flush(&self, db: &sled::Db) -> Result<(), sled::Error> {
        db.flush()?;
        Ok(())
    }

    /// Makes the data file durable, with what the recovery wrote to it while sled opened.
    pub fn sync(&self) -> io::Result<()> {
        self.data.sync_data()
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
        let blobs = names(&path.join(BLOBS_DIR)).unwrap().len();
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
}
