//! Many threads race for few units: exactly the stock is sold, never a unit more, and no
//! customer gets past the per-customer limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allot_engine::testkit::close_and_inspect;
use allot_engine::{Engine, EngineConfig, EngineError, Sku, StockError, SystemClock, UserId};

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
                            EngineError::Stock(StockError::SoldOut { .. })
                            | EngineError::Stock(StockError::PurchaseLimitExceeded { .. }),
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
        (0, 0, u64::from(UNITS))
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
    assert_eq!(inspection.image.skus[0].sold, u64::from(UNITS));
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
    assert_eq!(close_and_inspect(engine, dir.path()).image, live);
}

/// Fails the test instead of hanging CI if `work` does not finish in time.
fn within(seconds: u64, what: &str, work: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(seconds))
        .unwrap_or_else(|_| panic!("{what} did not finish within {seconds} s: a deadlock?"));
}

#[test]
fn creating_products_while_listing_by_status_does_not_deadlock() {
    use allot_engine::{NewProduct, ProductDetails, ProductKind, ProductStatus};
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path()), Arc::new(SystemClock::new())).unwrap();
    let keep = dir.path().to_path_buf();
    within(60, "creating while listing", move || {
        let _keep = keep;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    for i in 0..300 {
                        if t % 2 == 0 {
                            let product = NewProduct {
                                kind: ProductKind::General,
                                details: ProductDetails {
                                    name: format!("p{t}-{i}"),
                                    description: String::new(),
                                    price: 1,
                                    currency: "KRW".into(),
                                },
                                sale_opens_ms: None,
                                sale_closes_ms: None,
                                per_user_limit: None,
                                stock_total: 1,
                            };
                            let _ = engine.create_product(product).unwrap();
                        } else {
                            let _ =
                                engine.list_products(None, 100, None, Some(ProductStatus::OnSale));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        engine.close().unwrap();
    });
}

#[test]
fn a_commit_racing_its_own_reservation_is_logged_after_it() {
    // A second thread commits ids as soon as they could exist; whatever it wins, the log must
    // replay (a commit logged before its reservation would make the directory unopenable).
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::new(dir.path());
    let engine = Engine::open(config.clone(), Arc::new(SystemClock::new())).unwrap();
    engine
        .create_sku(Sku(1), 5_000, None)
        .unwrap()
        .wait()
        .unwrap();
    let committer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for id in 1..=3_000 {
                while engine.commit(allot_engine::ReservationId(id)).is_err() {
                    if engine
                        .reservation(allot_engine::ReservationId(id))
                        .is_some()
                    {
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
        })
    };
    for user in 0..3_000 {
        let _ = engine.reserve(UserId(user), Sku(1), 1, 600_000).unwrap();
    }
    committer.join().unwrap();
    engine.close().unwrap();
    drop(engine);
    let reopened = Engine::open(config, Arc::new(SystemClock::new())).unwrap();
    assert!(allot_engine::testkit::internals::check_invariants_of(&reopened.image()).is_empty());
}
