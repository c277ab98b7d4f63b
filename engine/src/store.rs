//! The data directory on disk: a lock file and one sled database with nine trees:
//! `log` (record batches keyed by first sequence number), `snapshots` (state images keyed by the
//! last sequence number they cover), `snapshots_refused` (snapshots a recovery could not use,
//! set aside, never deleted by allot), `events` (domain events keyed by their record's sequence
//! number, kept when the log is pruned), `consumers` (durable offsets of event consumers),
//! `meta` (the format version, how far the cold tier has folded the log) and the cold tier's
//! `orders` (keyed by user and order), `order_keys` and `order_keys_by_close` ([`Cold`]).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::cold::Cold;
use crate::config::EngineConfig;
use crate::durable::SledFiles;
use crate::error::OpenError;
use crate::record::{Record, Seq};
use crate::state::{StateImage, StateImageV1, StateImageV2, StateImageV3};
use crate::wal::batch;

/// The store format this build writes. Format 1 (before the cold tier) is upgraded on open:
/// its snapshots hold every order, which seed the cold tier ([`Store::needs_cold_seed`]).
const FORMAT: &[u8] = b"allot-store-2";
const FORMAT_BEFORE_COLD: &[u8] = b"allot-store-1";
/// A snapshot starts with `ALS` and its format version, one ASCII digit.
const SNAPSHOT_MAGIC_PREFIX: &[u8; 3] = b"ALS";
/// The snapshot format this build writes and reads. A change of `StateImage` that rkyv lays
/// out differently is a new version: an older build then refuses the snapshot (and the open)
/// instead of taking it for damage.
/// Format 4: the disabled accounts (`disabled_users`). Format 3 (no account was ever
/// disabled), format 2 (SKU counts of 64 bits, no delivered order ever left the hot tier) and
/// format 1 (32-bit counts) are still read ([`StateImageV3`], [`StateImageV2`],
/// [`StateImageV1`]).
const SNAPSHOT_FORMAT: u8 = b'4';
const SNAPSHOT_FORMAT_V3: u8 = b'3';
const SNAPSHOT_FORMAT_V2: u8 = b'2';
const SNAPSHOT_FORMAT_V1: u8 = b'1';
/// Every format this build reads.
const SNAPSHOT_FORMATS_READ: [u8; 4] = [
    SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_V3,
    SNAPSHOT_FORMAT_V2,
    SNAPSHOT_FORMAT_V1,
];
const SNAPSHOT_HEADER_BYTES: usize = 20;
/// Snapshots kept: the newest, and one before it in case the newest turns out unreadable.
const SNAPSHOTS_KEPT: usize = 2;

#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub log: sled::Tree,
    pub snapshots: sled::Tree,
    pub snapshots_refused: sled::Tree,
    pub events: crate::events::StoredEvents,
    pub consumers: sled::Tree,
    pub meta: sled::Tree,
    /// Orders, materialised with the log.
    pub cold: Cold,
    /// What makes a flush durable by fsync semantics ([`Store::flush`]).
    pub files: Arc<SledFiles>,
    /// Held through a checkpoint (snapshot, log pruning, retention), so that the snapshotter
    /// and `Engine::snapshot_now` never write and prune at the same moment.
    pub checkpointing: Arc<parking_lot::Mutex<()>>,
    /// How the checkpoints of this run are going.
    pub checkpoints: Arc<crate::checkpoint::Checkpoints>,
}

/// Holds the data directory's lock for as long as it lives.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self, OpenError> {
        crate::durable::create_dir_all(dir)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(OpenError::Locked(dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(OpenError::Io(e)),
        }
    }

    /// Locks a directory that may be read-only, such as a backup, without writing to it: its
    /// existing lock file is locked through a read-only handle. Without one, no allot process
    /// ever had the directory open, and there is nothing to lock.
    pub fn acquire_if_present(dir: &Path) -> Result<Option<Self>, OpenError> {
        let file = match File::open(dir.join("LOCK")) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpenError::Io(e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(OpenError::Locked(dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(OpenError::Io(e)),
        }
    }
}

impl Store {
    pub fn open(config: &EngineConfig) -> Result<Self, OpenError> {
        let path = config.data_dir.join("store");
        let created = !path.exists();
        let sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        let db = open_sled(&sled_config)?;
        // Syncs what sled wrote while opening (its `conf`, its page table).
        let files = Arc::new(SledFiles::open(&path)?);
        files.sync()?;
        if created {
            crate::durable::sync_dir(&config.data_dir)?;
        }
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(found) if found.as_ref() == FORMAT_BEFORE_COLD => {}
            Some(found) if found.as_ref() != FORMAT => {
                return Err(OpenError::Corrupt(format!(
                    "unknown store format {:?}",
                    String::from_utf8_lossy(&found)
                )));
            }
            Some(_) => {}
            None => {
                meta.insert("format", FORMAT)?;
            }
        }
        Ok(Self {
            log: db.open_tree("log")?,
            snapshots: db.open_tree("snapshots")?,
            snapshots_refused: db.open_tree("snapshots_refused")?,
            events: crate::events::StoredEvents(db.open_tree("events")?),
            consumers: db.open_tree("consumers")?,
            cold: Cold::open(&db, meta.clone())?,
            meta,
            db,
            files,
            checkpointing: Arc::new(parking_lot::Mutex::new(())),
            checkpoints: Arc::default(),
        })
    }

    /// Whether the store was written by a build before the cold tier: its orders are in its
    /// snapshots only, and the open seeds the cold tier from them.
    pub fn needs_cold_seed(&self) -> Result<bool, sled::Error> {
        Ok(self.meta.get("format")?.as_deref() == Some(FORMAT_BEFORE_COLD))
    }

    /// Marks the store as of this build's format (after the cold tier was seeded); durable.
    pub fn mark_current_format(&self) -> Result<(), sled::Error> {
        self.meta.insert("format", FORMAT)?;
        self.flush()
    }

    /// Writes everything written so far to stable storage by fsync semantics (the patched
    /// sled's flush, [`SledFiles`]). Nothing is durable before this returns.
    pub fn flush(&self) -> Result<(), sled::Error> {
        self.files.flush(&self.db)
    }

    // ----- the log ---------------------------------------------------------------------------

    /// The log's batches from the one holding `from_seq` on, validated one by one. Stops at the
    /// first defect, which it yields as the last item.
    pub fn batches_from(&self, from_seq: Seq) -> impl Iterator<Item = BatchRead> + '_ {
        let start = self
            .log
            .range(..=batch::key(from_seq))
            .next_back()
            .and_then(Result::ok)
            .and_then(|(k, _)| batch::seq_of_key(&k))
            .unwrap_or(from_seq);
        let mut expected: Option<Seq> = None;
        let mut stopped = false;
        self.log.range(batch::key(start)..).map_while(move |item| {
            if stopped {
                return None;
            }
            let read = read_batch(item, expected);
            match &read {
                BatchRead::Good { first_seq, records } => {
                    expected = Some(first_seq + records.len() as Seq);
                }
                BatchRead::Defect { .. } | BatchRead::Unreadable(_) => stopped = true,
            }
            Some(read)
        })
    }

    /// Removes the batch keyed `from_key` and every later one: the cut of a damaged tail.
    pub fn cut_log_from(&self, from_key: Seq) -> Result<usize, sled::Error> {
        let keys: Vec<_> = self
            .log
            .range(batch::key(from_key)..)
            .keys()
            .collect::<Result<_, _>>()?;
        for key in &keys {
            self.log.remove(key)?;
        }
        self.flush()?;
        Ok(keys.len())
    }

    /// Whether `key` is the newest batch of the log.
    pub fn is_last_batch(&self, key: Seq) -> Result<bool, sled::Error> {
        Ok(self
            .log
            .last()?
            .and_then(|(k, _)| batch::seq_of_key(&k))
            .is_some_and(|last| last == key))
    }

    /// The last record of the log, as its newest batch says; `None` for an empty log or a newest
    /// batch that does not decode (a torn tail, which the open cuts).
    pub fn log_last_seq(&self) -> Result<Option<Seq>, sled::Error> {
        let Some((key, value)) = self.log.last()? else {
            return Ok(None);
        };
        let last = batch::seq_of_key(&key).and_then(|first_seq| {
            let records = batch::decode(first_seq, &value).ok()?;
            Some(first_seq + (records.len() as Seq).checked_sub(1)?)
        });
        Ok(last)
    }

    /// The key (first sequence number) of the log's oldest batch.
    pub fn log_first_key(&self) -> Result<Option<Seq>, sled::Error> {
        Ok(self.log.first()?.and_then(|(k, _)| batch::seq_of_key(&k)))
    }

    /// First key of the log, and how many batches it holds. Counting reads every batch (sled
    /// has no count of a tree but a walk over it, values included): for offline tools only,
    /// never on an open or a request.
    pub fn log_extent(&self) -> Result<(Option<Seq>, usize), sled::Error> {
        Ok((self.log_first_key()?, self.log.len()))
    }

    // ----- snapshots -------------------------------------------------------------------------

    /// Sequence numbers of the stored snapshots, newest first.
    pub fn snapshot_seqs(&self) -> Result<Vec<Seq>, sled::Error> {
        self.snapshots
            .iter()
            .keys()
            .rev()
            .map(|k| k.map(|k| batch::seq_of_key(&k).unwrap_or(0)))
            .collect()
    }

    pub fn read_snapshot(&self, seq: Seq) -> Result<StateImage, SnapshotRefused> {
        let value = self
            .snapshots
            .get(batch::key(seq))
            .map_err(|e| SnapshotRefused::Unreadable(e.to_string()))?
            .ok_or_else(|| SnapshotRefused::Unreadable("missing".into()))?;
        decode_snapshot(seq, &value)
    }

    /// Moves a snapshot that cannot be used into `snapshots_refused`: out of the way of pruning
    /// (which must never count it), but kept, since it may hold what nothing else does.
    pub fn set_snapshot_aside(&self, seq: Seq) -> Result<(), sled::Error> {
        let key = batch::key(seq);
        if let Some(value) = self.snapshots.get(key)? {
            self.snapshots_refused.insert(key, value)?;
            self.snapshots.remove(key)?;
        }
        self.flush()?;
        Ok(())
    }

    /// Sequence numbers of the snapshots set aside, oldest first.
    pub fn refused_snapshot_seqs(&self) -> Result<Vec<Seq>, sled::Error> {
        self.snapshots_refused
            .iter()
            .keys()
            .map(|k| k.map(|k| batch::seq_of_key(&k).unwrap_or(0)))
            .collect()
    }

    pub fn snapshot_bytes(&self, seq: Seq) -> u64 {
        self.snapshots
            .get(batch::key(seq))
            .ok()
            .flatten()
            .map_or(0, |v| v.len() as u64)
    }

    /// Writes a snapshot durably, then drops what it makes unnecessary: snapshots beyond the
    /// newest [`SNAPSHOTS_KEPT`], and log batches that the OLDEST kept snapshot covers (so the
    /// older snapshot can still be replayed forward if the newest is ever unreadable).
    /// `tail_kept` records before the oldest kept snapshot stay in the log too.
    pub fn write_snapshot(&self, image: &StateImage, tail_kept: Seq) -> Result<(), String> {
        if self.checkpoints.take_fault() {
            return Err("storage: a fault planned by the test".into());
        }
        let value = encode_snapshot(image)?;
        self.write_snapshot_value(image.seq, value, tail_kept)
            .map_err(|e| format!("storage: {e}"))
    }

    fn write_snapshot_value(
        &self,
        seq: Seq,
        value: Vec<u8>,
        tail_kept: Seq,
    ) -> Result<(), sled::Error> {
        self.snapshots.insert(batch::key(seq), value)?;
        self.flush()?;
        let seqs = self.snapshot_seqs()?;
        let Some(&oldest_snapshot) = seqs.get(SNAPSHOTS_KEPT - 1) else {
            return Ok(());
        };
        for seq in seqs.iter().skip(SNAPSHOTS_KEPT) {
            self.snapshots.remove(batch::key(*seq))?;
        }
        // What pruning may take: what the oldest kept snapshot covers, less the tail kept.
        let oldest_kept = oldest_snapshot.saturating_sub(tail_kept);
        // A batch ends where the next begins; it is covered when it ends at or before the snapshot.
        let keys: Vec<Seq> = self
            .log
            .range(..=batch::key(oldest_kept + 1))
            .keys()
            .filter_map(|k| k.ok().and_then(|k| batch::seq_of_key(&k)))
            .collect();
        for pair in keys.windows(2) {
            if pair[1] - 1 <= oldest_kept {
                self.log.remove(batch::key(pair[0]))?;
            }
        }
        self.flush()?;
        Ok(())
    }

    /// Retention of events: removes the events of records before `before_seq` that are of a
    /// record at or before `by_count`, or older than `older_than_ms`, a stored entry (a log
    /// batch's events) at a time. Events are kept in order of their records, so it stops at the
    /// first entry kept. Answers how many events went.
    pub fn prune_events(
        &self,
        before_seq: Seq,
        by_count: Seq,
        older_than_ms: crate::clock::Millis,
    ) -> Result<u64, sled::Error> {
        let pruned = self.events.prune(before_seq, by_count, older_than_ms)?;
        if pruned > 0 {
            self.flush()?;
        }
        Ok(pruned)
    }

    /// Every event consumer's name and durable offset (an entry that is not an offset skipped).
    pub fn consumer_offsets(&self) -> Result<Vec<(sled::IVec, Seq)>, sled::Error> {
        let mut offsets = Vec::new();
        for item in self.consumers.iter() {
            let (name, offset) = item?;
            if let Ok(offset) = <[u8; 8]>::try_from(offset.as_ref()).map(Seq::from_be_bytes) {
                offsets.push((name, offset));
            }
        }
        Ok(offsets)
    }

    /// The lowest offset of any event consumer (`None` without consumers).
    pub fn consumers_min_offset(&self) -> Result<Option<Seq>, sled::Error> {
        Ok(self.consumer_offsets()?.into_iter().map(|(_, o)| o).min())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// One step of reading the log.
pub enum BatchRead {
    Good {
        first_seq: Seq,
        records: Vec<Record>,
    },
    /// The batch's bytes do not check out: if it is the newest batch, a torn write.
    Defect { key: Seq, reason: String },
    /// Not a torn write: the store failed, or the log has a hole. Never cut.
    Unreadable(String),
}

/// Opens sled, waiting a moment if its own file lock is still held. The directory's `LOCK`
/// is ours already, so no other process has the store: a held sled lock is this process's
/// previous engine, closed a moment ago, whose last sled worker thread is still letting go.
pub(crate) fn open_sled(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    const TRIES: u32 = 100;
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock") && tries < TRIES =>
            {
                tries += 1;
                std::thread::sleep(PAUSE);
            }
            opened => return opened,
        }
    }
}

fn read_batch(item: sled::Result<(sled::IVec, sled::IVec)>, expected: Option<Seq>) -> BatchRead {
    let (key, value) = match item {
        Ok(kv) => kv,
        Err(e) => return BatchRead::Unreadable(format!("storage error: {e}")),
    };
    let Some(first_seq) = batch::seq_of_key(&key) else {
        return BatchRead::Unreadable("a log key that is not a sequence number".into());
    };
    if let Some(expected) = expected
        && first_seq != expected
    {
        return BatchRead::Unreadable(format!(
            "a gap in the log: batch {first_seq} follows where {expected} was due"
        ));
    }
    match batch::decode(first_seq, &value) {
        Ok(records) if records.is_empty() => BatchRead::Defect {
            key: first_seq,
            reason: "empty batch".into(),
        },
        Ok(records) => BatchRead::Good { first_seq, records },
        Err(defect) => BatchRead::Defect {
            key: first_seq,
            reason: defect.to_string(),
        },
    }
}

/// Why a stored snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRefused {
    /// Damaged, or not a snapshot: set aside, recovery uses an older one.
    Unreadable(String),
    /// A snapshot format this build does not know (written by a newer allot): the open stops.
    UnknownFormat(char),
}

impl std::fmt::Display for SnapshotRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotRefused::Unreadable(reason) => f.write_str(reason),
            SnapshotRefused::UnknownFormat(version) => write!(
                f,
                "snapshot format {version}, which this build of allot cannot read (it reads \
                 format {}): it was written by a newer allot",
                SNAPSHOT_FORMAT as char
            ),
        }
    }
}

/// The image encoded and framed; an error (never a panic) when it cannot be, for instance an
/// image too large for rkyv's 32-bit relative pointers or for the header's 32-bit length.
fn encode_snapshot(image: &StateImage) -> Result<Vec<u8>, String> {
    let payload = rkyv::to_bytes::<rancor::Error>(image)
        .map_err(|e| format!("the state image cannot be encoded: {e}"))?;
    frame_snapshot(SNAPSHOT_FORMAT, image.seq, &payload)
}

fn frame_snapshot(format: u8, seq: Seq, payload: &[u8]) -> Result<Vec<u8>, String> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        format!(
            "the state image is {} bytes, over a snapshot's 4 GiB",
            payload.len()
        )
    })?;
    let mut value = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    value.extend_from_slice(SNAPSHOT_MAGIC_PREFIX);
    value.push(format);
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&len.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&value[4..16]);
    hasher.update(payload);
    value.extend_from_slice(&hasher.finalize().to_le_bytes());
    value.extend_from_slice(payload);
    Ok(value)
}

fn decode_snapshot(key_seq: Seq, value: &[u8]) -> Result<StateImage, SnapshotRefused> {
    if let [b'A', b'L', b'S', version, ..] = value
        && !SNAPSHOT_FORMATS_READ.contains(version)
        && version.is_ascii_digit()
    {
        return Err(SnapshotRefused::UnknownFormat(*version as char));
    }
    decode_snapshot_payload(key_seq, value).map_err(SnapshotRefused::Unreadable)
}

fn decode_snapshot_payload(key_seq: Seq, value: &[u8]) -> Result<StateImage, String> {
    if value.len() < SNAPSHOT_HEADER_BYTES || &value[0..3] != SNAPSHOT_MAGIC_PREFIX {
        return Err("not a snapshot".into());
    }
    let format = value[3];
    if !SNAPSHOT_FORMATS_READ.contains(&format) {
        return Err("not a snapshot".into());
    }
    let seq = u64::from_le_bytes(value[4..12].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(value[12..16].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(value[16..20].try_into().expect("4 bytes"));
    let payload = &value[SNAPSHOT_HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!("payload length {len} but {} stored", payload.len()));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&value[4..16]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Err("checksum mismatch".into());
    }
    if seq != key_seq {
        return Err(format!("keyed {key_seq} but covers {seq}"));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let image = match format {
        SNAPSHOT_FORMAT_V1 => {
            rkyv::from_bytes::<StateImageV1, rancor::Error>(&aligned).map(StateImage::from)
        }
        SNAPSHOT_FORMAT_V2 => {
            rkyv::from_bytes::<StateImageV2, rancor::Error>(&aligned).map(StateImage::from)
        }
        SNAPSHOT_FORMAT_V3 => {
            rkyv::from_bytes::<StateImageV3, rancor::Error>(&aligned).map(StateImage::from)
        }
        _ => rkyv::from_bytes::<StateImage, rancor::Error>(&aligned),
    }
    .map_err(|e| format!("undecodable: {e}"))?;
    if image.seq != seq {
        return Err("header and image disagree".into());
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{SkuImageV1, StateImageV1};

    /// A snapshot of format 1 (32-bit SKU counts) still reads, as the same image in 64 bits.
    #[test]
    fn a_snapshot_of_format_1_reads_as_the_current_image() {
        let v1 = StateImageV1 {
            seq: 9,
            next_reservation: 3,
            skus: vec![SkuImageV1 {
                sku: crate::ids::Sku(1),
                stock_total: u32::MAX,
                available: u32::MAX - 7,
                reserved: 2,
                sold: 5,
                per_user_limit: Some(4),
            }],
            ..Default::default()
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&v1).unwrap();
        let value = frame_snapshot(SNAPSHOT_FORMAT_V1, 9, &payload).unwrap();
        let image = decode_snapshot(9, &value).unwrap();
        assert_eq!(image, StateImage::from(v1.clone()));
        assert_eq!(image.skus[0].stock_total, u64::from(u32::MAX));
        assert_eq!(image.skus[0].available, u64::from(u32::MAX - 7));
        // Written again, it is the current format, and reads back the same.
        let again = encode_snapshot(&image).unwrap();
        assert_eq!(again[3], SNAPSHOT_FORMAT);
        assert_eq!(decode_snapshot(9, &again).unwrap(), image);
    }

    /// A snapshot of format 2 (before delivered orders could leave the hot tier) reads as the
    /// same image with nothing retired.
    #[test]
    fn a_snapshot_of_format_2_reads_as_the_current_image() {
        let v2 = StateImageV2 {
            seq: 11,
            next_reservation: 3,
            skus: vec![crate::state::SkuImage {
                sku: crate::ids::Sku(1),
                stock_total: 1 << 41,
                available: (1 << 41) - 7,
                reserved: 2,
                sold: 5,
                per_user_limit: None,
            }],
            ..Default::default()
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&v2).unwrap();
        let value = frame_snapshot(SNAPSHOT_FORMAT_V2, 11, &payload).unwrap();
        let image = decode_snapshot(11, &value).unwrap();
        assert_eq!(image, StateImage::from(v2));
        assert_eq!(image.retired, crate::state::RetiredImage::default());
        assert_eq!(image.skus[0].stock_total, 1 << 41);
        let again = encode_snapshot(&image).unwrap();
        assert_eq!(again[3], SNAPSHOT_FORMAT);
        assert_eq!(decode_snapshot(11, &again).unwrap(), image);
    }

    /// A snapshot of format 3 (before accounts could be disabled) reads as the same image
    /// with no account disabled.
    #[test]
    fn a_snapshot_of_format_3_reads_as_the_current_image() {
        let v3 = StateImageV3 {
            seq: 13,
            next_order: 5,
            retired: crate::state::RetiredImage {
                sold: vec![(crate::ids::Sku(2), 4)],
                held: Vec::new(),
            },
            ..Default::default()
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&v3).unwrap();
        let value = frame_snapshot(SNAPSHOT_FORMAT_V3, 13, &payload).unwrap();
        let image = decode_snapshot(13, &value).unwrap();
        assert_eq!(image, StateImage::from(v3));
        assert!(image.disabled_users.is_empty());
        assert_eq!(image.retired.sold, vec![(crate::ids::Sku(2), 4)]);
        let again = encode_snapshot(&image).unwrap();
        assert_eq!(again[3], SNAPSHOT_FORMAT);
        assert_eq!(decode_snapshot(13, &again).unwrap(), image);
    }
}
