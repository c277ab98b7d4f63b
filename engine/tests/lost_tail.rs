//! What a lost tail looks like, reported: a log shorter than a consumer's offset or a snapshot
//! claims. The log is made shorter here by removing its newest batches directly in sled, as a
//! disk that dropped acknowledged writes would leave it.

use std::path::Path;
use std::sync::Arc;

use allot_engine::{
    Engine, ManualClock, Sku, UserId,
    testkit::{assert_mentions, config, internals::lose_log_after},
};

fn open(dir: &Path) -> Engine {
    Engine::open(config(dir), Arc::new(ManualClock::new(1_000_000))).unwrap()
}

/// Reserves one unit per user in `users`, one durable batch each; answers the last seq.
fn reserve(engine: &Engine, users: std::ops::Range<u64>) -> u64 {
    let mut last = 0;
    for user in users {
        let (_, ticket) = engine.reserve(UserId(user), Sku(1), 1, 60_000).unwrap();
        last = ticket.seq();
        ticket.wait().unwrap();
    }
    last
}

#[test]
fn a_consumer_past_the_end_of_the_log_is_reported_by_verify_and_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept = {
        let engine = open(dir.path());
        engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
        let kept = reserve(&engine, 0..5);
        let end = reserve(&engine, 5..10);
        engine.save_consumer_offset("notifier", end).unwrap();
        engine.close().unwrap();
        kept
    };
    lose_log_after(dir.path(), kept);

    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(!inspection.is_clean());
    assert!(
        inspection.problems.iter().any(|p| p.contains("lost tail")
            && p.contains("\"notifier\"")
            && p.contains(&format!("the log ends at {kept}"))),
        "{:?}",
        inspection.problems
    );

    let engine = open(dir.path());
    let report = engine.recovery_report().clone();
    assert_eq!(report.last_seq, kept);
    assert_eq!(report.lost_tail.len(), 1, "{:?}", report.lost_tail);
    assert!(report.lost_tail[0].contains("\"notifier\""));
    // The open moves the consumer back to the end, so it does not skip what comes next.
    assert_eq!(engine.consumer_offset("notifier").unwrap(), kept);
    engine.close().unwrap();
    drop(engine);
    assert!(open(dir.path()).recovery_report().lost_tail.is_empty());
}

#[test]
fn a_snapshot_past_the_end_of_the_log_is_reported_by_verify_and_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, snapshot) = {
        let engine = open(dir.path());
        engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
        let kept = reserve(&engine, 0..5);
        reserve(&engine, 5..10);
        let snapshot = engine.snapshot_now().unwrap();
        engine.close().unwrap();
        (kept, snapshot)
    };
    lose_log_after(dir.path(), kept);

    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(
        inspection.problems.iter().any(|p| p.contains("lost tail")),
        "{:?}",
        inspection.problems
    );

    let engine = open(dir.path());
    let report = engine.recovery_report();
    assert_eq!(report.snapshot_seq, Some(snapshot));
    assert_eq!(
        report.last_seq, snapshot,
        "the snapshot still holds its records"
    );
    assert_mentions(&report.lost_tail, &[&format!("the log ends at {kept}")]);
    engine.close().unwrap();
}

#[test]
fn a_clean_directory_reports_no_lost_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
        let end = reserve(&engine, 0..5);
        engine.save_consumer_offset("notifier", end).unwrap();
        engine.snapshot_now().unwrap();
        reserve(&engine, 5..8);
        engine.close().unwrap();
    }
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert!(open(dir.path()).recovery_report().lost_tail.is_empty());
}
