//! A damaged newest batch is detected on open, reported, cut, and never applied: the state is
//! the one before that batch.

use std::sync::Arc;

use allot_engine::testkit::internals::open_sled;
use allot_engine::{
    Engine, EngineConfig, ManualClock, Sku, StateImage, UserId,
    testkit::{assert_mentions, config, durable},
};

/// Writes some batches, closes, and answers (state before the last batch, last batch's key).
fn prepare(dir: &std::path::Path) -> (StateImage, u64) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let before = {
        let engine = Engine::open(config(dir), clock.clone()).unwrap();
        engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
        for user in 0..10 {
            durable(engine.reserve(UserId(user), Sku(1), 1, 60_000));
        }
        let image = engine.image();
        engine.close().unwrap();
        image
    };
    let engine = Engine::open(config(dir), clock).unwrap();
    let (_, ticket) = engine.reserve(UserId(99), Sku(1), 3, 60_000).unwrap();
    let last_key = ticket.seq();
    ticket.wait().unwrap();
    engine.close().unwrap();
    (before, last_key)
}

fn damage(dir: &std::path::Path, key: u64, how: impl FnOnce(&mut Vec<u8>)) {
    let db = open_sled(dir);
    let log = db.open_tree("log").unwrap();
    let mut value = log
        .get(key.to_be_bytes())
        .unwrap()
        .expect("last batch")
        .to_vec();
    how(&mut value);
    log.insert(key.to_be_bytes(), value).unwrap();
    db.flush().unwrap();
}

fn reopen_and_check(dir: &std::path::Path, before: &StateImage, key: u64) {
    let inspection = allot_engine::inspect(dir).unwrap();
    assert_mentions(&inspection.problems, &[&format!("log batch {key}")]);
    let engine = Engine::open(config(dir), Arc::new(ManualClock::new(1_000_000))).unwrap();
    let cut = engine
        .recovery_report()
        .tail_cut
        .clone()
        .expect("tail reported");
    assert_eq!((cut.at_key, cut.batches_removed), (key, 1));
    assert_eq!(&engine.image(), before);
    // The cut is final and the log goes on from there.
    durable(engine.reserve(UserId(5), Sku(1), 1, 60_000));
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
}

#[test]
fn a_flipped_byte_in_the_newest_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (before, key) = prepare(dir.path());
    damage(dir.path(), key, |v| {
        let at = v.len() - 5;
        v[at] ^= 0x01;
    });
    reopen_and_check(dir.path(), &before, key);
}

#[test]
fn a_truncated_newest_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (before, key) = prepare(dir.path());
    damage(dir.path(), key, |v| v.truncate(v.len() / 2));
    reopen_and_check(dir.path(), &before, key);
}

#[test]
fn a_well_formed_but_impossible_record_is_reported_and_never_applied() {
    // A batch with a valid checksum that releases an already released reservation (a unit
    // would come back twice): verify names it, and opening refuses rather than apply it.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (id, next_seq) = {
        let engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
        engine.create_sku(Sku(1), 5, None).unwrap().wait().unwrap();
        let (id, ticket) = engine.reserve(UserId(1), Sku(1), 2, 60_000).unwrap();
        ticket.wait().unwrap();
        let ticket = engine
            .release(id, allot_engine::ReleaseReason::Cancelled)
            .unwrap();
        let next_seq = ticket.seq() + 1;
        ticket.wait().unwrap();
        engine.close().unwrap();
        (id, next_seq)
    };
    {
        let db = open_sled(dir.path());
        let forged = vec![allot_engine::Record::ReservationReleased {
            reservation: id,
            reason: allot_engine::ReleaseReason::Cancelled,
        }];
        db.open_tree("log")
            .unwrap()
            .insert(
                next_seq.to_be_bytes(),
                allot_engine::testkit::internals::batch::encode(next_seq, &forged),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert_mentions(
        &inspection.problems,
        &[&format!("record {next_seq} cannot be applied")],
    );
    assert!(matches!(
        Engine::open(config(dir.path()), clock),
        Err(allot_engine::OpenError::Corrupt(_))
    ));
}

#[test]
fn damage_before_intact_batches_refuses_to_open_and_cuts_nothing() {
    // Not a torn write: cutting there would drop acknowledged records that follow it.
    let dir = tempfile::tempdir().unwrap();
    let (_, middle_key) = prepare(dir.path());
    {
        let engine =
            Engine::open(config(dir.path()), Arc::new(ManualClock::new(1_000_000))).unwrap();
        durable(engine.reserve(UserId(7), Sku(1), 1, 60_000));
        engine.close().unwrap();
    }
    damage(dir.path(), middle_key, |v| {
        let at = v.len() - 5;
        v[at] ^= 0x01;
    });
    let batches_before = sled_batches(dir.path());
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert_mentions(&inspection.problems, &["later batches follow"]);
    let refused = Engine::open(config(dir.path()), Arc::new(ManualClock::new(1_000_000)));
    assert!(matches!(refused, Err(allot_engine::OpenError::Corrupt(_))));
    assert_eq!(sled_batches(dir.path()), batches_before, "nothing was cut");
}

fn sled_batches(dir: &std::path::Path) -> usize {
    let db = open_sled(dir);
    db.open_tree("log").unwrap().len()
}

#[test]
fn an_unreadable_snapshot_is_refused_replayed_around_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let with_snapshots = || EngineConfig {
        snapshot_on_close: true,
        ..EngineConfig::new(dir.path())
    };
    // Two snapshots, so the older one (and the log after it) can stand in for the newer.
    for user in 0..2 {
        let engine = Engine::open(with_snapshots(), clock.clone()).unwrap();
        if user == 0 {
            engine.create_sku(Sku(1), 50, None).unwrap().wait().unwrap();
        }
        durable(engine.reserve(UserId(user), Sku(1), 1, 60_000));
        engine.close().unwrap();
    }
    let before = {
        let engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
        let image = engine.image();
        engine.close().unwrap();
        image
    };
    let newest = {
        let db = open_sled(dir.path());
        let snapshots = db.open_tree("snapshots").unwrap();
        assert_eq!(snapshots.len(), 2);
        let (key, value) = snapshots.last().unwrap().unwrap();
        let mut damaged = value.to_vec();
        let at = damaged.len() - 3;
        damaged[at] ^= 0x10;
        snapshots.insert(&key, damaged).unwrap();
        db.flush().unwrap();
        key
    };
    let engine = Engine::open(config(dir.path()), clock).unwrap();
    assert_eq!(engine.recovery_report().snapshots_refused.len(), 1);
    assert_eq!(engine.image(), before, "replayed from the older snapshot");
    engine.close().unwrap();
    drop(engine);
    let db = open_sled(dir.path());
    let snapshots = db.open_tree("snapshots").unwrap();
    assert!(
        snapshots.get(&newest).unwrap().is_none(),
        "the unreadable snapshot is gone"
    );
}
