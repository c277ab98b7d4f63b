//! A snapshot that recovery cannot use is never deleted: a damaged one is set aside (tree
//! `snapshots_refused`) only once the log is known to carry the state without it, and one in a
//! format this build does not know stops the open, changing nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allot_engine::testkit::internals::open_sled;
use allot_engine::{
    CheckpointHealth, Engine, EngineConfig, EngineError, Internal, ManualClock, OpenError, Sku,
    UserId,
    testkit::{close_and_inspect, config, durable, internals::fail_next_checkpoints},
};

const T0: u64 = 1_000_000;
/// How long the test waits for the snapshotter (a bound for a loaded machine, not a speed).
const WAIT_MAX: Duration = Duration::from_secs(30);

fn open(dir: &Path) -> Result<Engine, OpenError> {
    Engine::open(config(dir), Arc::new(ManualClock::new(T0)))
}

/// Two snapshots with reservations before, between and after them; answers both seqs.
fn prepare(dir: &Path) -> (u64, u64) {
    let engine = open(dir).unwrap();
    engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
    let reserve = |user| {
        durable(engine.reserve(UserId(user), Sku(1), 1, 60_000));
    };
    reserve(1);
    let older = engine.snapshot_now().unwrap();
    reserve(2);
    let newer = engine.snapshot_now().unwrap();
    reserve(3);
    engine.close().unwrap();
    (older, newer)
}

/// Changes the stored snapshot `seq` with `how`.
fn alter_snapshot(dir: &Path, seq: u64, how: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let db = open_sled(dir);
    let tree = db.open_tree("snapshots").unwrap();
    let mut value = tree.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
    how(&mut value);
    tree.insert(seq.to_be_bytes(), value.clone()).unwrap();
    db.flush().unwrap();
    value
}

fn stored(dir: &Path, tree: &str, seq: u64) -> Option<Vec<u8>> {
    let db = open_sled(dir);
    let value = db.open_tree(tree).unwrap().get(seq.to_be_bytes()).unwrap();
    value.map(|v| v.to_vec())
}

#[test]
fn a_damaged_snapshot_is_set_aside_and_kept_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer) = prepare(dir.path());
    let damaged = alter_snapshot(dir.path(), newer, |v| {
        let last = v.len() - 1;
        v[last] ^= 0x01;
    });

    let engine = open(dir.path()).unwrap();
    let report = engine.recovery_report().clone();
    assert_eq!(report.snapshot_seq, Some(older));
    assert_eq!(report.snapshots_refused.len(), 1, "{report:?}");
    assert_eq!(engine.stock(Sku(1)).unwrap().reserved, 3);
    engine.close().unwrap();
    drop(engine);

    assert_eq!(stored(dir.path(), "snapshots", newer), None);
    assert_eq!(
        stored(dir.path(), "snapshots_refused", newer),
        Some(damaged),
        "the refused snapshot was not kept"
    );
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert_eq!(inspection.snapshots_set_aside, [newer]);
}

#[test]
fn a_snapshot_of_an_unknown_format_stops_the_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, newer) = prepare(dir.path());
    // What a newer allot with format 9 would have written.
    let newer_format = alter_snapshot(dir.path(), newer, |v| v[3] = b'9');

    let error = open(dir.path()).err().expect("the open must refuse");
    let message = error.to_string();
    assert!(
        message.contains("format 9") && message.contains("newer allot"),
        "{message}"
    );
    assert_eq!(stored(dir.path(), "snapshots", newer), Some(newer_format));
    assert_eq!(stored(dir.path(), "snapshots_refused", newer), None);
}

#[test]
fn when_no_snapshot_can_be_used_and_the_log_was_pruned_nothing_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer) = prepare(dir.path());
    // A third snapshot prunes the log up to `newer`: without a readable snapshot, the records
    // before it are gone from the log.
    {
        let engine = open(dir.path()).unwrap();
        engine.snapshot_now().unwrap();
        engine.close().unwrap();
    }
    let db = open_sled(dir.path());
    let snapshots = db.open_tree("snapshots").unwrap();
    let seqs: Vec<u64> = snapshots
        .iter()
        .keys()
        .map(|k| u64::from_be_bytes(k.unwrap().as_ref().try_into().unwrap()))
        .collect();
    assert!(!seqs.contains(&older), "{seqs:?}");
    for seq in &seqs {
        let mut value = snapshots.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        snapshots.insert(seq.to_be_bytes(), value).unwrap();
    }
    db.flush().unwrap();
    drop((snapshots, db));

    assert!(open(dir.path()).is_err(), "no state can be recovered");
    for seq in &seqs {
        assert!(
            stored(dir.path(), "snapshots", *seq).is_some(),
            "snapshot {seq} (newer {newer}) was removed by an open that failed"
        );
    }
}

/// Polls the engine's checkpoint health until `done` holds; fails after [`WAIT_MAX`].
fn wait_for_health(engine: &Engine, what: &str, done: impl Fn(&CheckpointHealth) -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let health = engine.checkpoint_health();
        if done(&health) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {health:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failed_checkpoint_is_reported_retried_and_cleared_by_the_next_success() {
    let dir = tempfile::tempdir().unwrap();
    // One asked for by hand (the snapshotter is not due for a minute) fails, says why, and
    // writes nothing.
    let engine = open(dir.path()).unwrap();
    assert_eq!(engine.checkpoint_health(), CheckpointHealth::default());
    engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
    let first = engine.snapshot_now().unwrap();
    assert_eq!(engine.checkpoint_health().last_ok_seq, Some(first));
    fail_next_checkpoints(&engine, 1);
    durable(engine.reserve(UserId(1), Sku(1), 1, 60_000));
    let failed = engine.snapshot_now().unwrap_err();
    assert!(
        matches!(failed, EngineError::Internal(Internal::Checkpoint(_))),
        "{failed:?}"
    );
    let health = engine.checkpoint_health();
    assert_eq!(health.failures_in_a_row, 1, "{health:?}");
    assert_eq!(health.failing_since_ms, Some(T0));
    assert_eq!(health.last_ok_seq, Some(first));
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("planned by the test")),
        "{health:?}"
    );
    assert_eq!(engine.stats().snapshot_seqs, [first]);
    engine.close().unwrap();
    drop(engine);

    // In the background (looking every 50 ms, due after every record), a failing checkpoint
    // is retried on the cadence and counted...
    let config = EngineConfig {
        snapshot_every_records: 1,
        snapshot_every_ms: 50,
        ..config(dir.path())
    };
    let engine = Engine::open(config, Arc::new(ManualClock::new(T0))).unwrap();
    assert_eq!(engine.checkpoint_health(), CheckpointHealth::default());
    fail_next_checkpoints(&engine, u32::MAX);
    durable(engine.reserve(UserId(2), Sku(1), 1, 60_000));
    wait_for_health(&engine, "retries of the failing checkpoint", |h| {
        h.failures_in_a_row >= 3 && h.failing_since_ms == Some(T0)
    });
    assert_eq!(engine.stats().snapshot_seqs, [first]);
    // ...and once storage takes writes again, the next one succeeds and clears the failure.
    fail_next_checkpoints(&engine, 0);
    let durable_now = engine.durable_seq();
    wait_for_health(&engine, "a checkpoint after the fault", |h| {
        h.is_ok() && h.last_ok_seq == Some(durable_now)
    });
    assert_eq!(engine.checkpoint_health().last_error, None);
    assert_eq!(engine.stats().snapshot_seqs.first(), Some(&durable_now));
    close_and_inspect(engine, dir.path());
}
