//! The engine's operations, their refusals, expiry and restarts, on a real data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allot_engine::{
    Engine, EngineConfig, EngineError, ManualClock, OpenError, ReleaseReason, ReservationStatus,
    Sku, StockCounts, StockError, UserId,
};

const T0: u64 = 1_800_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Engine {
    Engine::open(EngineConfig::new(dir), clock.clone()).expect("open")
}

fn counts(available: u64, reserved: u64, sold: u64) -> StockCounts {
    StockCounts {
        available,
        reserved,
        sold,
    }
}

#[test]
fn reserve_commit_release_and_restock_move_units_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    let sku = Sku(1);
    engine.create_sku(sku, 5, None).unwrap().wait().unwrap();

    let (a, ticket) = engine.reserve(UserId(1), sku, 2, 60_000).unwrap();
    ticket.wait().unwrap();
    let (b, ticket) = engine.reserve(UserId(2), sku, 3, 60_000).unwrap();
    ticket.wait().unwrap();
    assert_eq!(engine.stock(sku), Some(counts(0, 5, 0)));
    assert!(matches!(
        engine.reserve(UserId(3), sku, 1, 60_000),
        Err(EngineError::Stock(StockError::SoldOut { available: 0 }))
    ));

    engine.commit(a).unwrap().wait().unwrap();
    engine
        .release(b, ReleaseReason::Cancelled)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(engine.stock(sku), Some(counts(3, 0, 2)));
    engine.restock(sku, 4).unwrap().wait().unwrap();
    assert_eq!(engine.stock(sku), Some(counts(7, 0, 2)));

    // A reservation closes once: neither a second release nor a commit after release.
    assert!(matches!(
        engine.release(b, ReleaseReason::Cancelled),
        Err(EngineError::Stock(StockError::ReservationNotActive { .. }))
    ));
    assert!(matches!(
        engine.commit(b),
        Err(EngineError::Stock(StockError::ReservationNotActive { .. }))
    ));
    assert!(matches!(
        engine.release(a, ReleaseReason::Cancelled),
        Err(EngineError::Stock(StockError::ReservationNotActive { .. }))
    ));
    assert!(engine.image().skus[0].stock_total == 9);
    assert!(engine.image().reservations.len() == 2);
    assert_eq!(
        allot_engine::testkit::internals::check_invariants_of(&engine.image()),
        Vec::<String>::new()
    );
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    let sku = Sku(7);
    engine.create_sku(sku, 10, Some(2)).unwrap().wait().unwrap();
    let before = engine.image();

    assert!(matches!(
        engine.create_sku(sku, 1, None),
        Err(EngineError::Stock(StockError::SkuExists(_)))
    ));
    assert!(matches!(
        engine.reserve(UserId(1), sku, 0, 1_000),
        Err(EngineError::Stock(StockError::InvalidQuantity { .. }))
    ));
    assert!(matches!(
        engine.reserve(UserId(1), Sku(99), 1, 1_000),
        Err(EngineError::Stock(StockError::SkuNotFound(_)))
    ));
    assert!(matches!(
        engine.reserve(UserId(1), sku, 3, 1_000),
        Err(EngineError::Stock(StockError::PurchaseLimitExceeded {
            limit: 2
        }))
    ));
    assert!(matches!(
        engine.restock(sku, 0),
        Err(EngineError::Stock(StockError::InvalidQuantity { .. }))
    ));
    assert!(matches!(
        engine.commit(allot_engine::ReservationId(12345)),
        Err(EngineError::Stock(StockError::ReservationNotFound(_)))
    ));
    engine.barrier().wait().unwrap();
    assert_eq!(engine.image(), before);
}

#[test]
fn the_purchase_limit_counts_held_units_and_frees_them_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    let sku = Sku(3);
    engine.create_sku(sku, 10, Some(2)).unwrap().wait().unwrap();
    let user = UserId(5);
    let (first, t) = engine.reserve(user, sku, 1, 60_000).unwrap();
    t.wait().unwrap();
    let (_second, t) = engine.reserve(user, sku, 1, 60_000).unwrap();
    t.wait().unwrap();
    assert!(matches!(
        engine.reserve(user, sku, 1, 60_000),
        Err(EngineError::Stock(StockError::PurchaseLimitExceeded {
            limit: 2
        }))
    ));
    engine.commit(first).unwrap().wait().unwrap();
    // Bought units still count against the limit.
    assert!(engine.reserve(user, sku, 1, 60_000).is_err());
    // Another customer is not affected.
    assert!(engine.reserve(UserId(6), sku, 2, 60_000).is_ok());
    assert_eq!(engine.held_by(user, sku), 2);
}

#[test]
fn expired_reservations_are_released_by_the_scheduler_and_cannot_be_committed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    let sku = Sku(1);
    engine.create_sku(sku, 3, Some(1)).unwrap().wait().unwrap();
    let (id, t) = engine.reserve(UserId(1), sku, 1, 10_000).unwrap();
    t.wait().unwrap();

    clock.advance_ms(10_001);
    assert!(matches!(
        engine.commit(id),
        Err(EngineError::Stock(StockError::ReservationExpired { .. }))
    ));
    // The scheduler, not this test, releases it (it polls at least every expiry tick).
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stock(sku) != Some(counts(3, 0, 0)) {
        assert!(Instant::now() < deadline, "expiry never happened");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reservation = engine.reservation(id).unwrap();
    assert_eq!(
        reservation.status,
        ReservationStatus::Released(ReleaseReason::Expired)
    );
    // The allowance came back with the units.
    assert_eq!(engine.held_by(UserId(1), sku), 0);
    assert!(engine.reserve(UserId(1), sku, 1, 10_000).is_ok());
}

/// A store, closed, whose one reservation (both units of SKU 1) is past its deadline on the
/// clock answered with it.
fn a_closed_store_with_a_due_reservation() -> (
    tempfile::TempDir,
    Arc<ManualClock>,
    Sku,
    allot_engine::ReservationId,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let sku = Sku(1);
    let id = {
        let engine = open(dir.path(), &clock);
        engine.create_sku(sku, 2, None).unwrap().wait().unwrap();
        let (id, t) = engine.reserve(UserId(1), sku, 2, 5_000).unwrap();
        t.wait().unwrap();
        engine.close().unwrap();
        id
    };
    clock.advance_ms(6_000);
    (dir, clock, sku, id)
}

#[test]
fn deadlines_survive_a_restart() {
    let (dir, clock, sku, id) = a_closed_store_with_a_due_reservation();
    let engine = open(dir.path(), &clock);
    // Whoever gets there first, the scheduler at start or this call, releases it exactly once.
    engine.release_expired();
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stock(sku) != Some(counts(2, 0, 0)) {
        assert!(
            Instant::now() < deadline,
            "the recovered deadline never expired"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.barrier().wait().unwrap();
    assert_eq!(engine.release_expired(), 0);
    assert_eq!(
        engine.reservation(id).unwrap().status,
        ReservationStatus::Released(ReleaseReason::Expired)
    );
}

/// Offline maintenance (`allot db snapshot`, `admin create-admin`) opens without the expiry
/// scheduler: a reservation past its deadline stays held, in memory and in what it writes,
/// until the shop itself starts again.
#[test]
fn an_open_without_expiry_leaves_due_reservations_to_the_shop() {
    let (dir, clock, sku, id) = a_closed_store_with_a_due_reservation();
    let offline = EngineConfig {
        run_expiry: false,
        expiry_tick_ms: 1,
        ..EngineConfig::new(dir.path())
    };
    let last_seq = {
        let engine = Engine::open(offline.clone(), clock.clone()).expect("open offline");
        // What the maintenance does: a checkpoint, then a clean close (its own snapshot).
        engine.snapshot_now().unwrap();
        assert_eq!(engine.stock(sku), Some(counts(0, 2, 0)));
        assert_eq!(
            engine.reservation(id).unwrap().status,
            ReservationStatus::Active
        );
        let seq = engine.stats().wal.durable_seq;
        engine.close().unwrap();
        seq
    };
    {
        // Nothing was written by the offline open: the log ends where it did.
        let engine = Engine::open(offline, clock.clone()).expect("open offline again");
        assert_eq!(engine.stats().wal.durable_seq, last_seq);
        assert_eq!(engine.stock(sku), Some(counts(0, 2, 0)));
        engine.close().unwrap();
    }
    // The shop's next start expires it, once.
    let engine = open(dir.path(), &clock);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stock(sku) != Some(counts(2, 0, 0)) {
        assert!(
            Instant::now() < deadline,
            "the due reservation never expired"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        engine.reservation(id).unwrap().status,
        ReservationStatus::Released(ReleaseReason::Expired)
    );
}

#[test]
fn state_survives_a_restart_with_and_without_a_snapshot() {
    for snapshot_on_close in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let config = EngineConfig {
            snapshot_on_close,
            ..EngineConfig::new(dir.path())
        };
        let before = {
            let engine = Engine::open(config.clone(), clock.clone()).unwrap();
            let _ = engine.create_sku(Sku(1), 100, Some(5)).unwrap();
            for user in 0..30 {
                let (id, _) = engine.reserve(UserId(user), Sku(1), 2, 60_000).unwrap();
                if user % 3 == 0 {
                    engine.barrier().wait().unwrap();
                    let _ = engine.commit(id).unwrap();
                }
            }
            engine.barrier().wait().unwrap();
            let image = engine.image();
            engine.close().unwrap();
            image
        };
        let engine = Engine::open(config, clock.clone()).unwrap();
        assert_eq!(
            engine.recovery_report().snapshot_seq.is_some(),
            snapshot_on_close
        );
        assert_eq!(engine.image(), before);
    }
}

#[test]
fn a_data_directory_is_opened_by_one_engine_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    assert!(matches!(
        Engine::open(EngineConfig::new(dir.path()), clock.clone()),
        Err(OpenError::Locked(_))
    ));
    assert!(matches!(
        allot_engine::inspect(dir.path()),
        Err(OpenError::Locked(_))
    ));
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
}

#[test]
fn periodic_snapshots_prune_the_log_and_verify_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = EngineConfig {
        snapshot_every_records: 200,
        batch_records_max: 16,
        ..EngineConfig::new(dir.path())
    };
    let before = {
        let engine = Engine::open(config.clone(), clock.clone()).unwrap();
        let _ = engine.create_sku(Sku(1), 100_000, None).unwrap();
        for round in 0..20 {
            for user in 0..50 {
                let _ = engine.reserve(UserId(user), Sku(1), 1, 60_000).unwrap();
            }
            engine.barrier().wait().unwrap();
            if round % 5 == 4 {
                // Give the snapshotter (1 s tick, woken by the writer) a chance to run.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.stats().snapshot_seqs.len() < 2 {
            assert!(Instant::now() < deadline, "no periodic snapshots");
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = engine.stats();
        // Pruned: the batches the older snapshot covers are gone, the first among them.
        assert!(
            stats.log_first_seq.is_some_and(|first| first > 1),
            "log not pruned: {stats:?}"
        );
        let image = engine.image();
        engine.close().unwrap();
        image
    };
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert!(!inspection.snapshots_compared.is_empty());
    assert_eq!(inspection.image, before);
}

/// A SKU's lifetime is no business limit: restocked past 2^40 units (and sold from), it keeps
/// exact counts through a restart; only a bound no shop reaches (2^42 − 1) refuses a restock.
#[test]
fn a_sku_holds_more_than_2_pow_40_units_over_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(dir.path(), &clock);
    let sku = Sku(40);
    engine
        .create_sku(sku, 3_000_000, None)
        .unwrap()
        .wait()
        .unwrap();
    let mut last = None;
    // 257 restocks of u32::MAX: past 2^40.
    for _ in 0..257 {
        last = Some(engine.restock(sku, u32::MAX).unwrap());
    }
    last.unwrap().wait().unwrap();
    let total = 3_000_000 + 257 * u64::from(u32::MAX);
    assert!(total > 1 << 40);
    let (reservation, t) = engine.reserve(UserId(1), sku, 1_000, 60_000).unwrap();
    t.wait().unwrap();
    engine.commit(reservation).unwrap().wait().unwrap();
    assert_eq!(engine.stock(sku).unwrap(), counts(total - 1_000, 0, 1_000));
    // Up to the bound, and no further: the refused restock changes nothing.
    let room = allot_engine::SKU_UNITS_MAX - total;
    let mut last = None;
    for _ in 0..room / u64::from(u32::MAX) {
        last = Some(engine.restock(sku, u32::MAX).unwrap());
    }
    last.unwrap().wait().unwrap();
    let before = engine.stock(sku).unwrap();
    assert!(matches!(
        engine.restock(sku, u32::MAX),
        Err(EngineError::Stock(StockError::StockLimitExceeded { .. }))
    ));
    engine.barrier().wait().unwrap();
    assert_eq!(engine.stock(sku).unwrap(), before);
    let image = engine.image();
    engine.close().unwrap();
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(engine.stock(sku).unwrap(), before);
    assert_eq!(engine.image(), image);
}
