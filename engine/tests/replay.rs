//! Property: any interleaving of reserve / commit / release / expire / restock keeps the SKU
//! invariant at every step, and replaying the log reproduces exactly the state the live run had.

use std::sync::Arc;

use allot_engine::{Engine, EngineConfig, ManualClock, ReleaseReason, ReservationId, Sku, UserId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Reserve { user: u64, sku: u64, quantity: u32 },
    Commit(usize),
    Release(usize),
    Advance(u64),
    Expire,
    Restock { sku: u64, quantity: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..4, 0u64..3, 1u32..4).prop_map(|(user, sku, quantity)| Op::Reserve { user, sku, quantity }),
        2 => any::<prop::sample::Index>().prop_map(|i| Op::Commit(i.index(1 << 16))),
        2 => any::<prop::sample::Index>().prop_map(|i| Op::Release(i.index(1 << 16))),
        1 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => (0u64..3, 1u32..5).prop_map(|(sku, quantity)| Op::Restock { sku, quantity }),
    ]
}

fn run(ops: &[Op], snapshot_on_close: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = EngineConfig {
        snapshot_on_close,
        // Small batches and frequent snapshots exercise batch boundaries and pruning.
        batch_records_max: 3,
        snapshot_every_records: 7,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    let _ = engine.create_sku(Sku(0), 5, Some(2)).unwrap();
    let _ = engine.create_sku(Sku(1), 3, None).unwrap();
    let _ = engine.create_sku(Sku(2), 0, Some(1)).unwrap();
    let mut reservations: Vec<ReservationId> = Vec::new();
    for op in ops {
        match *op {
            Op::Reserve {
                user,
                sku,
                quantity,
            } => {
                if let Ok((id, _)) = engine.reserve(UserId(user), Sku(sku), quantity, 2_000) {
                    reservations.push(id);
                }
            }
            Op::Commit(i) if !reservations.is_empty() => {
                let _ = engine.commit(reservations[i % reservations.len()]);
            }
            Op::Release(i) if !reservations.is_empty() => {
                let _ = engine.release(
                    reservations[i % reservations.len()],
                    ReleaseReason::Cancelled,
                );
            }
            Op::Advance(ms) => clock.advance_ms(ms),
            Op::Expire => {
                engine.release_expired();
            }
            Op::Restock { sku, quantity } => {
                let _ = engine.restock(Sku(sku), quantity);
            }
            _ => {}
        }
        // The counter's triple is read in one load, so it adds up at every instant, even with
        // records in flight.
        for sku in 0..3 {
            let counts = engine.stock(Sku(sku)).unwrap();
            let image = engine.image();
            let total = image.skus[sku as usize].stock_total;
            prop_assert!(counts.total() <= total, "{counts:?} over {total}");
        }
    }
    // Closing stops the expiry scheduler and drains the log: only then is the state still.
    engine.close().unwrap();
    let live = engine.image();
    prop_assert_eq!(
        allot_engine::testkit::internals::check_invariants_of(&live),
        Vec::<String>::new()
    );
    drop(engine);

    let inspection = allot_engine::inspect(dir.path()).unwrap();
    prop_assert!(inspection.is_clean(), "{:?}", inspection.problems);
    prop_assert_eq!(&inspection.image, &live);
    // Reopened at the start time, so the expiry scheduler has nothing due and cannot move the
    // state on before it is compared.
    let reopened = Engine::open(config, Arc::new(ManualClock::new(1_000_000))).unwrap();
    prop_assert_eq!(reopened.image(), live);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replay_reproduces_the_live_state(ops in prop::collection::vec(op(), 1..120), snapshot_on_close in any::<bool>()) {
        run(&ops, snapshot_on_close)?;
    }
}
