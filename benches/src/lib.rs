//! The workloads behind the engine benchmarks. They live apart from the criterion wiring
//! (`benches/engine.rs`) so that the tests below can run them small and check that each one does
//! what its figure claims: every reservation durable, every record replayed.
//!
//! Work spread over threads is timed by the threads themselves: each reads the clock after a
//! common barrier and again when it is done, and the span runs from the earliest start to the
//! latest end. A coordinating thread reading the clock instead could, on two cores, be scheduled
//! only after a worker finished, and would under-measure.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use allot_engine::{
    Clock, Durability, Engine, EngineConfig, EngineError, OpenError, Record, RecoveryReport,
    ReservationId, Seq, Sku, SkuCounter, StockCounts, StockError, SystemClock, UserId,
    testkit::internals::SledFiles, testkit::internals::batch,
};

/// Records per log batch: the engine's default `batch_records_max`, and the batch the raw
/// ceiling writes.
pub const BATCH_RECORDS_MAX: usize = 1024;

/// Long enough that nothing expires while a benchmark runs, so the expiry scheduler stays idle.
pub const RESERVATION_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// User ids of different producers never meet: producer `p` uses `p * USERS_PER_PRODUCER_MAX..`.
const USERS_PER_PRODUCER_MAX: u64 = 1 << 40;

/// The span from the earliest start to the latest end of `(start, end)` windows.
fn span(windows: &[(Instant, Instant)]) -> Duration {
    let start = windows
        .iter()
        .map(|w| w.0)
        .min()
        .expect("at least one window");
    let end = windows
        .iter()
        .map(|w| w.1)
        .max()
        .expect("at least one window");
    end - start
}

fn open_engine(config: EngineConfig) -> Result<Engine, OpenError> {
    Engine::open(config, Arc::new(SystemClock::new()))
}

// ----- (a) the counter alone -----------------------------------------------------------------

/// Full counters holding at least `takes` units between them.
pub fn full_counters(takes: u64) -> Vec<SkuCounter> {
    let count = takes.div_ceil(u64::from(UNITS_PER_SKU)).max(1);
    (0..count)
        .map(|_| {
            SkuCounter::new(StockCounts {
                available: u64::from(UNITS_PER_SKU),
                ..StockCounts::default()
            })
        })
        .collect()
}

/// Takes one unit `takes` times, moving on to the next counter when one is empty. Threads that
/// share `counters` can each move on by themselves: nothing gives units back, so a counter that
/// refused a take stays empty, and the counters hold enough units for every thread's takes.
pub fn take_units(counters: &[SkuCounter], takes: u64) {
    let mut index = 0;
    for _ in 0..takes {
        loop {
            let counter = counters
                .get(index)
                .expect("the counters hold a unit for every take");
            match counter.take(1) {
                Ok(counts) => {
                    black_box(counts);
                    break;
                }
                Err(_) => index += 1,
            }
        }
    }
}

/// `threads` threads share `takes` takes of one unit, all contending on the same counter.
pub fn timed_takes(threads: usize, takes: u64) -> Duration {
    assert!(threads > 0);
    let counters = full_counters(takes);
    let start = Barrier::new(threads);
    let windows: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let share = takes / threads as u64 + u64::from(t < takes % threads as u64);
                let (counters, start) = (&counters, &start);
                scope.spawn(move || {
                    start.wait();
                    let started = Instant::now();
                    take_units(counters, share);
                    (started, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a taker panicked"))
            .collect()
    });
    let left: u64 = counters.iter().map(|c| c.load().available).sum();
    assert_eq!(
        counters.len() as u64 * u64::from(UNITS_PER_SKU) - left,
        takes,
        "every take happened exactly once"
    );
    span(&windows)
}

// ----- (b) durable reservations ----------------------------------------------------------------

/// The engine as the throughput benchmark runs it: the given durability and the default batch
/// and queue bounds, but no snapshot at all. A periodic snapshot would replay the log and write
/// the whole state in the middle of the measurement; that cost belongs to its own figure.
pub fn throughput_config(dir: &Path, durability: Durability) -> EngineConfig {
    EngineConfig {
        durability,
        snapshot_every_records: u64::MAX,
        snapshot_every_ms: u64::MAX,
        snapshot_on_close: false,
        ..EngineConfig::new(dir)
    }
}

pub fn open_for_throughput(dir: &Path, durability: Durability) -> Result<Engine, OpenError> {
    open_engine(throughput_config(dir, durability))
}

/// Units each benchmark SKU starts with: far below a counter's bound, so that a run spreads
/// its takes over several SKUs as a shop's catalog would.
pub const UNITS_PER_SKU: u32 = 2_000_000;

/// Creates SKUs (`sku_1`, `sku_2`, …) holding at least `units` units between them, without a
/// per-customer limit, and waits until they are durable.
pub fn create_stock(engine: &Engine, units: u64) -> Result<Vec<Sku>, EngineError> {
    let count = units.div_ceil(u64::from(UNITS_PER_SKU)).max(1);
    let skus: Vec<Sku> = (1..=count).map(Sku).collect();
    let mut last = None;
    for &sku in &skus {
        last = Some(engine.create_sku(sku, UNITS_PER_SKU, None)?);
    }
    if let Some(ticket) = last {
        ticket.wait()?;
    }
    Ok(skus)
}

/// `producers` threads make `reservations` one-unit reservations in total, all on the same SKU
/// until it is sold out, then on the next. A producer never waits for one reservation: like a
/// server with thousands of requests in flight it keeps only its last ticket and waits on that
/// at the end (the log is written in order, so that covers all of its reservations). The queue
/// bound is its only brake. Answers the time from the first reservation until the last is
/// durable.
pub fn reserve_durably(
    engine: &Engine,
    skus: &[Sku],
    producers: usize,
    reservations: u64,
) -> Result<Duration, EngineError> {
    assert!(producers > 0);
    let durable_before = engine.stats().wal.durable_seq;
    let start = Barrier::new(producers);
    let windows = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..producers as u64)
            .map(|p| {
                let share = reservations / producers as u64
                    + u64::from(p < reservations % producers as u64);
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let started = Instant::now();
                    produce(engine, skus, p * USERS_PER_PRODUCER_MAX, share)?;
                    Ok((started, Instant::now()))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a producer panicked"))
            .collect::<Result<Vec<_>, EngineError>>()
    })?;
    let durable = engine.stats().wal.durable_seq - durable_before;
    assert!(
        durable >= reservations,
        "{reservations} reservations made, only {durable} records durable"
    );
    Ok(span(&windows))
}

fn produce(
    engine: &Engine,
    skus: &[Sku],
    first_user: u64,
    reservations: u64,
) -> Result<(), EngineError> {
    let mut sku_index = 0;
    let mut last = None;
    let mut made = 0;
    while made < reservations {
        let sku = *skus
            .get(sku_index)
            .expect("create_stock made units for every reservation");
        match engine.reserve(UserId(first_user + made), sku, 1, RESERVATION_TTL_MS) {
            Ok((_, ticket)) => {
                last = Some(ticket);
                made += 1;
            }
            Err(EngineError::Stock(StockError::SoldOut { .. })) => sku_index += 1,
            Err(error) => return Err(error),
        }
    }
    last.map_or(Ok(()), |ticket| ticket.wait())
}

// ----- (c) the raw ceiling ---------------------------------------------------------------------

/// A bare sled log, opened exactly as the engine's store opens its database, and written
/// exactly as the engine's log writer writes a batch: one insert, one flush.
pub struct RawLog {
    db: sled::Db,
    files: SledFiles,
    log: sled::Tree,
}

impl RawLog {
    pub fn open(dir: &Path) -> sled::Result<Self> {
        let db = sled::Config::new()
            .path(dir.join("store"))
            .cache_capacity(EngineConfig::new(dir).cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let log = db.open_tree("log")?;
        let files = SledFiles::open(&dir.join("store"))?;
        Ok(Self { db, files, log })
    }

    /// Writes each batch with its own flush, in order, durable as the engine's log writer makes
    /// a batch: sled's flush and the fsyncs it leaves out ([`SledFiles::flush`]).
    pub fn write_fsynced(&self, batches: Vec<(Seq, Vec<u8>)>) -> sled::Result<()> {
        for (first_seq, value) in batches {
            self.log.insert(batch::key(first_seq), value)?;
            self.files.flush(&self.db)?;
        }
        Ok(())
    }

    pub fn batch_count(&self) -> usize {
        self.log.len()
    }
}

/// `batches` full batches of reservation records, encoded as the log stores them, in log order
/// from seq 1. Encoding is the writer's work, not the disk's, so it happens before the clock runs.
pub fn encoded_reservation_batches(batches: u64) -> Vec<(Seq, Vec<u8>)> {
    let deadline_ms = SystemClock::new().now_ms() + RESERVATION_TTL_MS;
    let mut records = Vec::with_capacity(BATCH_RECORDS_MAX);
    (0..batches)
        .map(|b| {
            let first_seq = 1 + b * BATCH_RECORDS_MAX as u64;
            records.clear();
            records.extend(
                (first_seq..first_seq + BATCH_RECORDS_MAX as u64).map(|seq| {
                    Record::StockReserved {
                        reservation: ReservationId(seq),
                        sku: Sku(1 + seq / u64::from(UNITS_PER_SKU)),
                        user: UserId(seq),
                        quantity: 1,
                        deadline_ms,
                    }
                }),
            );
            (first_seq, batch::encode(first_seq, &records))
        })
        .collect()
}

// ----- (d) recovery ----------------------------------------------------------------------------

/// What a measured open runs with: no snapshot of any kind, so opening leaves the directory as
/// it found it and every measured open recovers the same thing.
pub fn recovery_config(dir: &Path) -> EngineConfig {
    throughput_config(dir, Durability::Fsync)
}

/// Fills a fresh data directory with exactly `records` log records and no snapshot: one SKU
/// created, then reservations of which every second one is committed at once, the shape of a
/// drop's log. Written without fsync (the content is the same), then closed cleanly, so the
/// directory is complete. Answers the last seq.
pub fn build_log(dir: &Path, records: u64) -> Result<Seq, EngineError> {
    assert!(records >= 1);
    let engine = open_for_throughput(dir, Durability::NoneBenchmarkOnly)?;
    let skus = create_stock(&engine, records)?;
    let mut logged = 1;
    let mut user = 0;
    while logged < records {
        let (id, _) = engine.reserve(UserId(user), skus[0], 1, RESERVATION_TTL_MS)?;
        logged += 1;
        if user % 2 == 1 && logged < records {
            let _ = engine.commit(id)?;
            logged += 1;
        }
        user += 1;
    }
    engine.barrier().wait()?;
    let last_seq = engine.stats().wal.durable_seq;
    engine.close()?;
    assert_eq!(last_seq, records, "exactly the records asked for");
    Ok(last_seq)
}

/// Opens the directory once with a snapshot on close, so that it then holds a snapshot
/// covering its whole log.
pub fn add_snapshot(dir: &Path) -> Result<(), EngineError> {
    let engine = open_engine(EngineConfig {
        snapshot_on_close: true,
        ..recovery_config(dir)
    })?;
    engine.close()?;
    drop(engine);
    Ok(())
}

/// Copies a closed data directory, file by file.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Times `Engine::open` until it returns, then closes the engine outside the timing.
pub fn timed_open(dir: &Path) -> Result<(Duration, RecoveryReport), EngineError> {
    let started = Instant::now();
    let engine = open_engine(recovery_config(dir))?;
    let elapsed = started.elapsed();
    let report = engine.recovery_report().clone();
    engine.close()?;
    drop(engine);
    Ok((elapsed, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_on_shared_counters_each_happen_once() {
        // Crosses a counter boundary with both threads.
        let takes = u64::from(UNITS_PER_SKU) + 1_000;
        timed_takes(2, takes);
        timed_takes(1, 3);
    }

    #[test]
    fn every_reservation_is_durable_when_the_producers_return() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_for_throughput(dir.path(), Durability::Fsync).unwrap();
        let skus = create_stock(&engine, 5_001).unwrap();
        reserve_durably(&engine, &skus, 2, 5_001).unwrap();
        let stats = engine.stats();
        assert_eq!(stats.reservations, 5_001);
        assert_eq!(stats.wal.durable_seq, skus.len() as u64 + 5_001);
    }

    #[test]
    fn raw_batches_decode_as_the_engine_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let batches = encoded_reservation_batches(3);
        let raw = RawLog::open(dir.path()).unwrap();
        raw.write_fsynced(batches.clone()).unwrap();
        assert_eq!(raw.batch_count(), 3);
        for (first_seq, value) in batches {
            assert_eq!(
                batch::decode(first_seq, &value).unwrap().len(),
                BATCH_RECORDS_MAX
            );
        }
    }

    #[test]
    fn recovery_dirs_replay_or_load_every_record_and_stay_unchanged() {
        let root = tempfile::tempdir().unwrap();
        let (plain, snapshotted) = (root.path().join("plain"), root.path().join("snapshotted"));
        assert_eq!(build_log(&plain, 10_000).unwrap(), 10_000);
        copy_dir(&plain, &snapshotted).unwrap();
        add_snapshot(&snapshotted).unwrap();
        for _ in 0..2 {
            let (_, report) = timed_open(&plain).unwrap();
            assert_eq!(report.snapshot_seq, None);
            assert_eq!(report.records_replayed, 10_000);
            let (_, report) = timed_open(&snapshotted).unwrap();
            assert_eq!(report.snapshot_seq, Some(10_000));
            assert_eq!(report.records_replayed, 0);
            assert_eq!(report.last_seq, 10_000);
        }
    }
}
