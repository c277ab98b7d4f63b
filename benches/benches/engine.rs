//! The engine's figures (see RESULTS.md):
//!
//! - `take`: the lock-free counter alone, one thread and two threads contending on one SKU.
//! - `group_commit`: durable reservations through the engine's log writer with fsync on, and,
//!   in the same run, the raw ceiling under it: sled writing pre-encoded 1,024-record batches
//!   with one flush each. Both report records per second.
//! - `recovery`: `Engine::open` over a 1 M-record log, from the log alone and from a snapshot.
//!
//! Sample counts and times are small so that the whole run stays within a few minutes on two
//! cores; every figure is a wall-clock time of real work, with setup outside the clock.

use std::cell::{Cell, OnceCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

use allot_benches::{
    BATCH_RECORDS_MAX, RawLog, add_snapshot, build_log, copy_dir, create_stock,
    encoded_reservation_batches, open_for_throughput, reserve_durably, timed_open, timed_takes,
};
use allot_engine::Durability;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// Producers of durable reservations: one per core of the machine the targets were set for.
const PRODUCERS: usize = 2;
/// Records in the log the recovery benchmark opens.
const RECOVERY_RECORDS: u64 = 1_000_000;

fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("allot-bench-")
        .tempdir()
        .expect("a temporary directory")
}

fn take(c: &mut Criterion) {
    let mut group = c.benchmark_group("take");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for threads in [1, 2] {
        let name = if threads == 1 {
            "1_thread"
        } else {
            "2_threads"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|takes| timed_takes(threads, takes));
        });
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    // The ratio of these two figures is the point, on a noisy shared machine: more samples
    // than elsewhere, so that one disturbed sample moves the estimate less.
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));

    // Records and batches the engine's writer wrote, over every run: how full an fsync was.
    let written = Cell::new((0u64, 0u64));
    // Each sample gets a fresh data directory and engine: every reservation stays in memory
    // (nothing commits or expires), so one engine across all samples would grow without bound,
    // and the raw ceiling below starts from an empty database too. Snapshots are off
    // (`throughput_config`): one would compete for the disk in the middle of the measurement.
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine_reserve_fsync_2_producers", |b| {
        b.iter_custom(|reservations| {
            let dir = bench_dir();
            let engine = open_for_throughput(dir.path(), Durability::Fsync).expect("open");
            let skus = create_stock(&engine, reservations).expect("stock");
            let before = engine.stats().wal;
            let elapsed =
                reserve_durably(&engine, &skus, PRODUCERS, reservations).expect("reserve");
            let after = engine.stats().wal;
            let (records, batches) = written.get();
            written.set((
                records + after.records_written - before.records_written,
                batches + after.batches_written - before.batches_written,
            ));
            engine.close().expect("close");
            elapsed
        });
    });
    let (records, batches) = written.get();
    if batches > 0 {
        eprintln!(
            "engine_reserve_fsync_2_producers: {records} records in {batches} fsynced batches, \
             {:.0} records per batch on average",
            records as f64 / batches as f64
        );
    }

    // Bytes per batch matter to sled: a value over a quarter of its 512 KiB segment is written
    // as a file of its own ("blob") instead of into the log.
    let batch_bytes = encoded_reservation_batches(1)[0].1.len();
    eprintln!("sled_raw_1024_record_batches_fsync: {batch_bytes} bytes per encoded batch");
    group.throughput(Throughput::Elements(BATCH_RECORDS_MAX as u64));
    group.bench_function("sled_raw_1024_record_batches_fsync", |b| {
        b.iter_custom(|batches| {
            let dir = bench_dir();
            let raw = RawLog::open(dir.path()).expect("open sled");
            let encoded = encoded_reservation_batches(batches);
            let started = std::time::Instant::now();
            raw.write_fsynced(encoded).expect("write");
            started.elapsed()
        });
    });
    group.finish();
}

/// Two data directories holding the same 1 M-record log, one also a snapshot covering all of it.
struct RecoveryDirs {
    _root: tempfile::TempDir,
    log_only: PathBuf,
    snapshot: PathBuf,
}

impl RecoveryDirs {
    fn build() -> Self {
        let root = bench_dir();
        let (log_only, snapshot) = (root.path().join("log_only"), root.path().join("snapshot"));
        build_log(&log_only, RECOVERY_RECORDS).expect("build the log");
        copy_dir(&log_only, &snapshot).expect("copy the data directory");
        add_snapshot(&snapshot).expect("snapshot");
        Self {
            _root: root,
            log_only,
            snapshot,
        }
    }
}

fn recovery(c: &mut Criterion) {
    // Built on first use, so that a run filtered to other benchmarks does not pay for it.
    let dirs = OnceCell::new();
    let mut group = c.benchmark_group("recovery_1m_records");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("replay_log_no_snapshot", |b| {
        let dirs = dirs.get_or_init(RecoveryDirs::build);
        b.iter_custom(|opens| timed_opens(&dirs.log_only, opens, None));
    });
    group.bench_function("load_snapshot", |b| {
        let dirs = dirs.get_or_init(RecoveryDirs::build);
        b.iter_custom(|opens| timed_opens(&dirs.snapshot, opens, Some(RECOVERY_RECORDS)));
    });
    group.finish();
}

/// Sums the time of `opens` opens of `dir`, checking each recovered all of it the expected way.
fn timed_opens(dir: &Path, opens: u64, snapshot_seq: Option<u64>) -> Duration {
    (0..opens)
        .map(|_| {
            let (elapsed, report) = timed_open(dir).expect("open");
            assert_eq!(report.snapshot_seq, snapshot_seq);
            assert_eq!(report.last_seq, RECOVERY_RECORDS);
            if snapshot_seq.is_none() {
                assert_eq!(report.records_replayed, RECOVERY_RECORDS);
            }
            elapsed
        })
        .sum()
}

criterion_group!(benches, take, group_commit, recovery);
criterion_main!(benches);
