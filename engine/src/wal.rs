//! The write-ahead log: callers submit records and get a [`Ticket`]; ONE writer thread takes
//! everything waiting (at most `batch_records_max`), writes it as one sled value, flushes,
//! applies the batch's after-durable effects, and only then wakes the callers of that batch.
//! One fsync thus carries hundreds of decisions. "Flushes" means durable by fsync semantics
//! (the patched sled's flush, [`SledFiles`]): an acknowledged batch survives a power cut, not
//! only a killed process.

pub mod batch;
pub mod histogram;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::cold::Cold;
use crate::config::Durability;
use crate::durable::SledFiles;
use crate::error::{EngineError, LogFailure};
use crate::ids::{OrderId, UserId};
use crate::record::{Record, Seq};

/// Records an async caller of [`Wal::room`] leaves free in the queue for the writes of callers
/// that passed the check at the same moment (at most half the queue).
pub const ROOM_HEADROOM: usize = 1_024;

/// Called by the writer, in log order, once a batch is durable and before its callers wake.
/// An error means memory no longer follows the log: the log then takes no more records (a
/// restart rebuilds memory from the log, which holds the truth).
pub type DurableHook = Box<dyn FnMut(Seq, &[Record]) -> Result<(), String> + Send>;

pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    room: Condvar,
    /// The same wake as `room`, for async waiters ([`Wal::room`]).
    room_notify: tokio::sync::Notify,
    batch_records_max: usize,
    queue_records_max: usize,
    durable_seq: AtomicU64,
    durable_lock: Mutex<()>,
    durable_cv: Condvar,
    durable_notify: tokio::sync::Notify,
    failed: AtomicBool,
    failure: Mutex<Option<LogFailure>>,
    records_written: AtomicU64,
    batches_written: AtomicU64,
    /// Records per batch written.
    batch_records: histogram::Histogram,
    /// Seconds per durable flush (sled's flush and the fsyncs it makes).
    flush_seconds: histogram::Histogram,
}

struct Queue {
    /// A ring buffer: taking a batch from the front moves that batch only, never the rest.
    records: VecDeque<Record>,
    /// Sequence number of `records[0]`.
    first_seq: Seq,
    closed: bool,
}

/// Counters of the writer's work, for `db stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    pub durable_seq: Seq,
    pub batches_written: u64,
    pub records_written: u64,
}

/// The writer's histograms, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct LogHistograms {
    /// Records per batch made durable.
    pub batch_records: histogram::HistogramSnapshot,
    /// Seconds per durable flush.
    pub flush_seconds: histogram::HistogramSnapshot,
}

/// Whose order an id is, as the hot tier knows. Filled just after an order's `OrderPlaced` is
/// queued (the writer may fold that batch first, so the fold takes a placement's user from the
/// record itself) and before any later record of the order can be.
pub type UserLookup = Arc<dyn Fn(OrderId) -> Option<UserId> + Send + Sync>;

/// The trees the writer writes each batch into, all made durable by the batch's one flush.
pub struct LogTrees {
    pub log: sled::Tree,
    /// The domain events of each batch.
    pub events: crate::events::StoredEvents,
    /// The cold tier, folded with each batch, and whose order an id is (none in a bare log, as
    /// in benchmarks).
    pub cold: Option<(Cold, UserLookup)>,
}

pub struct WalOptions {
    pub durability: Durability,
    pub batch_records_max: usize,
    pub queue_records_max: usize,
}

impl Wal {
    /// Starts the writer. `last_seq` is the last record already in the log.
    pub fn start(
        db: sled::Db,
        files: Arc<SledFiles>,
        trees: LogTrees,
        last_seq: Seq,
        options: WalOptions,
        hook: DurableHook,
    ) -> std::io::Result<Self> {
        assert!(options.batch_records_max > 0 && options.queue_records_max > 0);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                records: VecDeque::new(),
                first_seq: last_seq + 1,
                closed: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            room_notify: tokio::sync::Notify::new(),
            batch_records_max: options.batch_records_max,
            queue_records_max: options.queue_records_max,
            durable_seq: AtomicU64::new(last_seq),
            durable_lock: Mutex::new(()),
            durable_cv: Condvar::new(),
            durable_notify: tokio::sync::Notify::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            records_written: AtomicU64::new(0),
            batches_written: AtomicU64::new(0),
            batch_records: histogram::Histogram::new(&histogram::BATCH_RECORDS_BOUNDS),
            flush_seconds: histogram::Histogram::new(&histogram::FLUSH_SECONDS_BOUNDS),
        });
        let writer = Writer {
            shared: shared.clone(),
            db,
            files,
            trees,
            durability: options.durability,
            hook,
        };
        let handle = std::thread::Builder::new()
            .name("allot-wal-writer".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Waits while the queue is full. Call it BEFORE taking any entity lock: the writer takes
    /// entity locks in its after-durable hook, so waiting for room while holding one could
    /// deadlock. The bound is therefore soft by at most the number of concurrent submitters.
    pub fn wait_for_room(&self) -> Result<(), EngineError> {
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(error) = self.shared.refusal(&queue) {
                return Err(error);
            }
            if queue.records.len() < self.shared.queue_records_max {
                return Ok(());
            }
            // Backpressure: a full queue means the disk is the bottleneck; wait for one flush.
            self.shared.room.wait(&mut queue);
        }
    }

    /// Waits, without blocking the thread, until the queue has room with [`ROOM_HEADROOM`]
    /// records to spare, or answers why the log takes no records. An async caller awaits this
    /// before an engine write, so that a full queue (a slow disk) makes its request wait while
    /// the thread goes on serving others; the write's own [`wait_for_room`](Self::wait_for_room)
    /// then finds room unless more than the headroom was queued in between.
    pub async fn room(&self) -> Result<(), EngineError> {
        let limit = self
            .shared
            .queue_records_max
            .saturating_sub(ROOM_HEADROOM.min(self.shared.queue_records_max / 2))
            .max(1);
        let has_room = || -> Result<bool, EngineError> {
            let queue = self.shared.queue.lock();
            match self.shared.refusal(&queue) {
                Some(error) => Err(error),
                None => Ok(queue.records.len() < limit),
            }
        };
        // The common case, without registering as a waiter.
        if has_room()? {
            return Ok(());
        }
        loop {
            let notified = self.shared.room_notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the check and the await is kept.
            notified.as_mut().enable();
            if has_room()? {
                return Ok(());
            }
            notified.await;
        }
    }

    /// Queues one record; never waits for the writer. The caller holds the lock of the entity
    /// the record changes, so that one entity's records enter the log in the order they happened.
    pub fn append(&self, record: Record) -> Result<Ticket, EngineError> {
        let mut queue = self.shared.queue.lock();
        if let Some(error) = self.shared.refusal(&queue) {
            return Err(error);
        }
        queue.records.push_back(record);
        let seq = queue.first_seq + queue.records.len() as Seq - 1;
        drop(queue);
        self.shared.work.notify_one();
        Ok(Ticket {
            seq,
            shared: self.shared.clone(),
        })
    }

    pub fn durable_seq(&self) -> Seq {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    /// Whether a write failed (or the writer died): the log takes no more records.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            durable_seq: self.durable_seq(),
            batches_written: self.shared.batches_written.load(Ordering::Relaxed),
            records_written: self.shared.records_written.load(Ordering::Relaxed),
        }
    }

    /// Records per batch and time per flush, so far.
    pub fn histograms(&self) -> LogHistograms {
        LogHistograms {
            batch_records: self.shared.batch_records.snapshot(),
            flush_seconds: self.shared.flush_seconds.snapshot(),
        }
    }

    /// A ticket for record `seq`: durable once the log is durable up to it. For a reader who
    /// saw the effects of `seq` in a tree the writer wrote before its flush.
    pub fn ticket_at(&self, seq: Seq) -> Ticket {
        Ticket {
            seq,
            shared: self.shared.clone(),
        }
    }

    /// A ticket for everything queued so far.
    pub fn barrier(&self) -> Ticket {
        let queue = self.shared.queue.lock();
        Ticket {
            seq: queue.first_seq + queue.records.len() as Seq - 1,
            shared: self.shared.clone(),
        }
    }

    /// Refuses new records, lets the writer write everything queued, and stops it.
    pub fn close(&self) {
        self.shared.queue.lock().closed = true;
        self.shared.work.notify_all();
        self.shared.wake_room();
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn refusal(&self, queue: &Queue) -> Option<EngineError> {
        if self.failed.load(Ordering::Acquire) {
            let failure = self.failure.lock().clone();
            return Some(failure.map_or(EngineError::ShuttingDown, EngineError::LogFailed));
        }
        queue.closed.then_some(EngineError::ShuttingDown)
    }

    /// Marks the log failed and wakes everyone: submitters get an error, waiters too.
    fn fail(&self, failure: LogFailure) {
        *self.failure.lock() = Some(failure);
        self.failed.store(true, Ordering::Release);
        self.wake_room();
        self.wake_waiters();
    }

    fn wake_room(&self) {
        self.room.notify_all();
        self.room_notify.notify_waiters();
    }

    fn wake_waiters(&self) {
        // Taking the lock orders this wake after any waiter's check-then-sleep.
        drop(self.durable_lock.lock());
        self.durable_cv.notify_all();
        self.durable_notify.notify_waiters();
    }

    fn wait_error(&self) -> EngineError {
        let failure = self.failure.lock().clone();
        failure.map_or(EngineError::ShuttingDown, EngineError::LogFailed)
    }
}

/// A promise that a record will be durable. Waiting on a ticket waits for every record queued
/// before it too: durability follows log order.
#[must_use = "a record is not durable until its ticket is waited on"]
pub struct Ticket {
    seq: Seq,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

impl Ticket {
    /// The log position of the record this ticket stands for.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Whether the record is durable already; never blocks.
    pub fn is_durable(&self) -> bool {
        self.shared.durable_seq.load(Ordering::Acquire) >= self.seq
    }

    /// Blocks the thread until the record is durable (and its after-durable effects applied).
    /// A ticket is only issued while the log is open, and a clean close writes everything
    /// queued, so the only way a ticket never becomes durable is a failed write.
    pub fn wait(self) -> Result<(), EngineError> {
        if self.is_durable() {
            return Ok(());
        }
        let mut guard = self.shared.durable_lock.lock();
        loop {
            if self.is_durable() {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.wait_error());
            }
            self.shared.durable_cv.wait(&mut guard);
        }
    }

    /// Waits without blocking the thread, for async callers.
    pub async fn durable(self) -> Result<(), EngineError> {
        loop {
            let notified = self.shared.durable_notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the check and the await is kept.
            notified.as_mut().enable();
            if self.is_durable() {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.wait_error());
            }
            notified.await;
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    db: sled::Db,
    /// Makes each flush durable by fsync semantics (sled's own flush does not).
    files: Arc<SledFiles>,
    trees: LogTrees,
    durability: Durability,
    hook: DurableHook,
}

impl Writer {
    fn run(mut self) {
        // A panic here (a bug in a hook, say) must not leave every waiter blocked forever.
        let _guard = FailOnUnwind(self.shared.clone());
        loop {
            let (first_seq, batch) = {
                let mut queue = self.shared.queue.lock();
                while queue.records.is_empty() {
                    if queue.closed {
                        drop(queue);
                        self.shared.wake_waiters();
                        return;
                    }
                    self.shared.work.wait(&mut queue);
                }
                let first_seq = queue.first_seq;
                let take = queue.records.len().min(self.shared.batch_records_max);
                let batch: Vec<Record> = queue.records.drain(..take).collect();
                queue.first_seq += batch.len() as Seq;
                (first_seq, batch)
            };
            self.shared.wake_room();

            if let Err(error) = self.write(first_seq, &batch) {
                tracing::error!(%error, first_seq, "the log could not be written; refusing further writes");
                self.shared.fail(LogFailure::Write {
                    first_seq,
                    reason: error,
                });
                return;
            }
            let completed = (self.hook)(first_seq, &batch);
            let last_seq = first_seq + batch.len() as Seq - 1;
            self.shared
                .records_written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.shared.batches_written.fetch_add(1, Ordering::Relaxed);
            self.shared.batch_records.record(batch.len() as f64);
            self.shared.durable_seq.store(last_seq, Ordering::Release);
            self.shared.wake_waiters();
            if let Err(reason) = completed {
                // The batch is durable (its callers are answered truly); what memory made of it
                // is not. Stop loudly rather than decide on state that differs from the log.
                tracing::error!(%reason, first_seq, "a durable batch could not be completed; refusing further writes");
                self.shared
                    .fail(LogFailure::Incomplete { first_seq, reason });
                return;
            }
        }
    }

    /// The batch first, then what it makes (the cold tier's orders, the events): sled keeps
    /// writes in order across a crash, so what a batch made is never on disk without it.
    fn write(&self, first_seq: Seq, batch: &Vec<Record>) -> Result<(), String> {
        let value = batch::encode(first_seq, batch);
        self.trees
            .log
            .insert(batch::key(first_seq), value)
            .map_err(|e| e.to_string())?;
        if let Some((cold, user_of)) = &self.trees.cold {
            let folded = cold
                .fold(first_seq, batch, user_of.as_ref())
                .map_err(|e| e.to_string())?;
            if folded.orphans > 0 {
                return Err(format!(
                    "batch {first_seq}: {} records for orders the cold tier does not hold",
                    folded.orphans
                ));
            }
        }
        if let Some(events) = crate::events::entry_for(first_seq, batch) {
            self.trees
                .events
                .insert(events)
                .map_err(|e| e.to_string())?;
        }
        if self.durability == Durability::Fsync {
            let started = std::time::Instant::now();
            self.files.flush(&self.db).map_err(|e| e.to_string())?;
            self.shared
                .flush_seconds
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

struct FailOnUnwind(Arc<Shared>);

impl Drop for FailOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the log writer panicked; refusing further writes");
            self.0.fail(LogFailure::WriterPanicked);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::ids::{ReservationId, Sku, UserId};

    /// A store under `dir` and the log's trees in it, without a cold tier.
    fn open_store(dir: &std::path::Path) -> (sled::Db, Arc<SledFiles>, LogTrees) {
        let path = dir.join("store");
        let db = sled::Config::new().path(&path).open().unwrap();
        let files = Arc::new(SledFiles::open(&path).unwrap());
        let trees = LogTrees {
            log: db.open_tree("log").unwrap(),
            events: crate::events::StoredEvents(db.open_tree("events").unwrap()),
            cold: None,
        };
        (db, files, trees)
    }

    fn record(n: u64) -> Record {
        Record::StockReserved {
            reservation: ReservationId(n),
            sku: Sku(1),
            user: UserId(n),
            quantity: 1,
            deadline_ms: 0,
        }
    }

    /// A full queue behind a stalled writer: an async waiter for room does not hold its thread
    /// (another task on the same single thread goes on), and goes on itself once there is room.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_room_holds_no_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (db, files, trees) = open_store(dir.path());
        // The hook of the first batch waits for the test: the writer stalls, the queue fills.
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let hook: DurableHook = Box::new(move |_, _| {
            let _ = released.lock().recv_timeout(Duration::from_secs(30));
            Ok(())
        });
        let options = WalOptions {
            durability: Durability::NoneBenchmarkOnly,
            batch_records_max: 1,
            queue_records_max: 4,
        };
        let wal = Arc::new(Wal::start(db, files, trees, 0, options, hook).unwrap());
        let _first = wal.append(record(1)).unwrap();
        // The writer takes the first record and stalls in its hook; fill the queue behind it.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !wal.shared.queue.lock().records.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never took a record"
            );
            tokio::task::yield_now().await;
        }
        for n in 2..=5 {
            let _queued = wal.append(record(n)).unwrap();
        }
        let waiter = tokio::spawn({
            let wal = wal.clone();
            async move { wal.room().await }
        });
        // Another task on the one thread still runs while the waiter waits.
        let other = tokio::spawn(async { 42 });
        assert_eq!(other.await.unwrap(), 42);
        assert!(!waiter.is_finished(), "room was found in a full queue");
        // The writer goes on: one batch per release.
        for _ in 0..8 {
            let _ = release.send(());
        }
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter).await;
        assert!(matches!(waited, Ok(Ok(Ok(())))), "{waited:?}");
        for _ in 0..8 {
            let _ = release.send(());
        }
        wal.close();
    }

    /// A batch whose completion fails is durable, and its caller is answered so; then the log
    /// refuses every further record, and says why.
    #[test]
    fn a_batch_that_cannot_complete_stops_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (db, files, trees) = open_store(dir.path());
        let hook: DurableHook = Box::new(|first_seq, _| match first_seq {
            2 => Err("record 2 contradicts the state".into()),
            _ => Ok(()),
        });
        let options = WalOptions {
            durability: Durability::NoneBenchmarkOnly,
            batch_records_max: 1,
            queue_records_max: 16,
        };
        let wal = Wal::start(db, files, trees, 0, options, hook).unwrap();
        wal.append(record(1)).unwrap().wait().unwrap();
        assert!(!wal.is_failed());
        wal.append(record(2)).unwrap().wait().unwrap();
        assert_eq!(wal.durable_seq(), 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !wal.is_failed() {
            assert!(std::time::Instant::now() < deadline, "the log goes on");
            std::thread::yield_now();
        }
        let refused = wal.append(record(3)).map(drop);
        assert!(
            matches!(&refused, Err(EngineError::LogFailed(LogFailure::Incomplete { reason, .. })) if reason.contains("record 2 contradicts")),
            "{refused:?}"
        );
        wal.close();
    }
}
