//! How an engine is opened. One typed value, built once at the edge and passed down.

use std::path::PathBuf;

/// Whether a batch is flushed to disk (fsync) before its callers are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every batch is durable by fsync semantics before any caller of it is answered: sled's
    /// `Db::flush`, which the patched sled makes durable (`fdatasync` of its data file, `fsync`
    /// of each blob file and its directory; `crate::durable::SledFiles`). The only setting for
    /// a shop. What it promises: a record acknowledged survives the process being killed
    /// (tested with SIGKILL) and a power cut or kernel crash (tested on LazyFS), on a disk that
    /// honours a flush of its write cache.
    Fsync,
    /// Batches reach the OS but are not fsynced; a power cut loses them. For benchmarks only.
    NoneBenchmarkOnly,
}

/// Everything `Engine::open` needs to know; `EngineConfig::new` gives the defaults for a shop.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data directory: the store, its lock and (by default) the key file.
    pub data_dir: PathBuf,
    /// Whether batches are fsynced before callers are answered.
    pub durability: Durability,
    /// Most records written (and fsynced) as one batch.
    pub batch_records_max: usize,
    /// Most records waiting for the writer; submitters wait for room beyond it.
    pub queue_records_max: usize,
    /// A snapshot is written once this many records were logged since the last one…
    pub snapshot_every_records: u64,
    /// …or this long after the last one, if anything was logged since.
    pub snapshot_every_ms: u64,
    /// Write a snapshot when the engine is closed cleanly.
    pub snapshot_on_close: bool,
    /// Longest sleep of the expiry scheduler; bounds how late an expiry can be.
    pub expiry_tick_ms: u64,
    /// Whether the expiry scheduler runs. Offline maintenance (`allot db snapshot`, `admin
    /// create-admin`) opens without it: it must not expire a shop's reservations and orders
    /// while the shop is stopped, which the server would do at its next start anyway.
    pub run_expiry: bool,
    /// The size of sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// The key file (JWT, personal-data and index keys); `<data_dir>/keys` unless set.
    pub keys_file: Option<PathBuf>,
    /// Log records kept before the oldest kept snapshot when the log is pruned (0: prune all
    /// that a snapshot covers).
    pub log_tail_kept_records: u64,
    /// At most the events of the newest this many records are kept: an event beyond them is
    /// pruned after a snapshot, whatever its age…
    pub events_kept_records: u64,
    /// …and so is one older than this, whatever their number. Either limit is a cap; neither
    /// protects. Never pruned: an event a consumer has not finished with, or whose record the
    /// log still holds.
    pub events_kept_ms: u64,
    /// How long a closed order's Idempotency-Key still answers it; then the same key places a
    /// new order. A live order's key always answers it.
    pub keys_kept_ms: u64,
    /// How long after delivery a return may be asked for. When it has passed, the order is
    /// closed for good (a `ReturnWindowClosed` record) and leaves memory.
    pub return_window_ms: u64,
}

/// A closed order's Idempotency-Key answers it for 30 days after the close.
pub const KEYS_KEPT_MS_DEFAULT: u64 = 30 * 24 * 60 * 60 * 1000;
/// A return may be asked for within 7 days of delivery.
pub const RETURN_WINDOW_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;

/// Events of the newest 10,000,000 records are kept, at the least.
pub const EVENTS_KEPT_RECORDS_DEFAULT: u64 = 10_000_000;
/// Events younger than 30 days are kept, at the least.
pub const EVENTS_KEPT_MS_DEFAULT: u64 = 30 * 24 * 60 * 60 * 1000;

impl EngineConfig {
    /// A configuration for `data_dir` with the defaults: fsync durability, the retention
    /// defaults of this module, and the expiry scheduler running.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
            batch_records_max: 1024,
            queue_records_max: 65_536,
            snapshot_every_records: 1_000_000,
            snapshot_every_ms: 60_000,
            snapshot_on_close: true,
            expiry_tick_ms: 50,
            run_expiry: true,
            cache_bytes: 256 * 1024 * 1024,
            keys_file: None,
            log_tail_kept_records: 0,
            events_kept_records: EVENTS_KEPT_RECORDS_DEFAULT,
            events_kept_ms: EVENTS_KEPT_MS_DEFAULT,
            return_window_ms: RETURN_WINDOW_MS_DEFAULT,
            keys_kept_ms: KEYS_KEPT_MS_DEFAULT,
        }
    }

    /// Where the key file is read: `keys_file` if set, else `<data_dir>/keys`.
    pub fn keys_path(&self) -> PathBuf {
        self.keys_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }
}
