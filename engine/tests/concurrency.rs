//! Many threads race for few units: exactly the stock is sold, never a unit more, and no
//! customer gets past the per-customer limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allot_engine::{Engine, EngineConfig, EngineError, Sku, SystemClock, UserId};

const THREADS: u64 = 8;
const ATTEMPTS: u64 = 100_000;
const UNITS: u32 = 1_000;
const USERS: u64 = 500;
const LIMIT: u32 = 3;

#[test]
fn eight_threads_race_100k_attempts_for_1000_units() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path()), Arc::new(SystemClock::new())).unwrap();
    let sku = Sku(1);
    engine
        .create_sku(sku, UNITS, Some(LIMIT))
        .unwrap()
        .wait()
        .unwrap();

    let bought = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engine, bought, refused, start) = (
                engine.clone(),
                bought.clone(),
                refused.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                let mut purchases = Vec::new();
                start.wait();
                for i in 0..ATTEMPTS / THREADS {
                    let user = UserId((i * THREADS + t) % USERS);
                    match engine.reserve(user, sku, 1, 600_000) {
                        Ok((id, ticket)) => {
                            ticket.wait().unwrap();
                            engine.commit(id).unwrap().wait().unwrap();
                            bought.fetch_add(1, Ordering::Relaxed);
                            purchases.push(user);
                        }
                        Err(
                            EngineError::SoldOut { .. } | EngineError::PurchaseLimitExceeded { .. },
                        ) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected refusal: {other}"),
                    }
                }
                purchases
            })
        })
        .collect();
    let mut per_user = std::collections::HashMap::<UserId, u32>::new();
    for thread in threads {
        for user in thread.join().unwrap() {
            *per_user.entry(user).or_default() += 1;
        }
    }

    assert_eq!(bought.load(Ordering::Relaxed), u64::from(UNITS));
    assert_eq!(
        bought.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed),
        ATTEMPTS
    );
    let counts = engine.stock(sku).unwrap();
    assert_eq!(
        (counts.available, counts.reserved, counts.sold),
        (0, 0, UNITS)
    );
    assert!(
        per_user.values().all(|&n| n <= LIMIT),
        "a customer got past the limit"
    );
    for (user, n) in &per_user {
        assert_eq!(engine.held_by(*user, sku), *n);
    }
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert_eq!(inspection.image.skus[0].sold, UNITS);
}

#[test]
fn racing_releases_and_takes_never_oversell() {
    // Units go back while others take them: the give-back is applied only once durable, so a
    // take that uses a returned unit is always logged after the return.
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path()), Arc::new(SystemClock::new())).unwrap();
    let sku = Sku(2);
    engine.create_sku(sku, 20, None).unwrap().wait().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..2_000u64 {
                    if let Ok((id, _)) = engine.reserve(UserId(t), sku, 1 + (i % 2) as u32, 600_000)
                    {
                        let result = if i % 3 == 0 {
                            engine.commit(id)
                        } else {
                            engine.release(id, allot_engine::ReleaseReason::Cancelled)
                        };
                        let _ = result.unwrap();
                    }
                    let counts = engine.stock(sku).unwrap();
                    assert!(counts.total() >= 20 && counts.total() <= 20, "{counts:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    engine.barrier().wait().unwrap();
    let live = engine.image();
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert_eq!(inspection.image, live);
}
