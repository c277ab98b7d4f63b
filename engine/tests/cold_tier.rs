//! Two tiers: closed orders leave memory for the cold tier's sled trees, and every order reads
//! back exactly across restarts, snapshots and a lost tail — a seeded mix of placements,
//! payments, cancellations, returns, refunds, expiries and return windows that pass, checked
//! against a model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use allot_engine::{
    Clock, Engine, EngineConfig, LineRequest, ManualClock, NewProduct, Order, OrderError, OrderId,
    OrderStatus, PaymentFailure, PaymentOutcome, Placement, ProductId, UserId,
    testkit::{
        assert_mentions, create, general, internals::lose_log_after, key_of, reason, request,
        request_to, shipment,
    },
};

const T0: u64 = 1_800_000_000_000;
const TTL: u64 = 600_000;
/// Short, so that time passing in the test closes delivered orders too.
const RETURN_WINDOW: u64 = TTL / 4;
const USERS: u64 = 12;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        snapshot_on_close: false,
        return_window_ms: RETURN_WINDOW,
        // The test runs expiries itself after moving the clock: the scheduler's own tick
        // (real time) stays out of the way, so what is due is decided in one place.
        expiry_tick_ms: 3_600_000,
        ..EngineConfig::new(dir)
    }
}

/// A small deterministic generator (xorshift64*), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// A general product; `per_user_limit` makes customers' allowances count too.
fn product(engine: &Engine, name: &str, per_user_limit: Option<u32>) -> ProductId {
    let product = NewProduct {
        per_user_limit,
        ..general(name, 1_500, 100_000)
    };
    create(engine, product)
}

/// What the test expects of every order: the last answer the engine gave for it, durable.
#[derive(Default)]
struct Model {
    orders: BTreeMap<OrderId, Order>,
    /// Delivered orders whose return window passed.
    returns_closed: BTreeSet<OrderId>,
}

impl Model {
    fn closed(&self, order: &Order) -> bool {
        match order.status {
            OrderStatus::Expired => true,
            OrderStatus::Cancelled | OrderStatus::Returned => !order.refund_due || order.refunded,
            OrderStatus::Delivered => self.returns_closed.contains(&order.id),
            _ => false,
        }
    }

    fn live(&self) -> usize {
        self.orders.values().filter(|o| !self.closed(o)).count()
    }

    /// Reads every order back, each customer's list page by page, and the hot tier's size.
    fn check(&self, engine: &Engine, seed: u64, when: &str) {
        for (id, expected) in &self.orders {
            let read = engine.order(*id);
            assert_eq!(read.as_ref(), Some(expected), "seed {seed}, {when}: {id}");
        }
        for user in 0..USERS {
            let mut expected: Vec<OrderId> = self
                .orders
                .values()
                .filter(|o| o.user == UserId(user))
                .map(|o| o.id)
                .collect();
            expected.reverse();
            let mut listed = Vec::new();
            let mut before = None;
            loop {
                let page = engine.orders_of(UserId(user), before, 3);
                if page.is_empty() {
                    break;
                }
                before = page.last().map(|o| o.id);
                listed.extend(page.iter().map(|o| o.id));
            }
            assert_eq!(
                listed, expected,
                "seed {seed}, {when}: the list of user {user}"
            );
        }
        let all: Vec<OrderId> = engine
            .all_orders(None, 10_000, None)
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(all, self.orders.keys().rev().copied().collect::<Vec<_>>());
        let stats = engine.stats();
        assert_eq!(
            stats.stored_orders,
            self.orders.len(),
            "seed {seed}, {when}"
        );
        assert_eq!(
            stats.live_orders,
            self.live(),
            "seed {seed}, {when}: the hot tier"
        );
    }
}

/// One random step of the saga on a random order, or a new placement.
fn step(
    engine: &Engine,
    clock: &ManualClock,
    model: &mut Model,
    rng: &mut Rng,
    products: &[ProductId],
) {
    let pick = rng.below(10);
    if pick < 4 || model.orders.is_empty() {
        let user = UserId(rng.below(USERS));
        let lines = [LineRequest {
            product: products[rng.below(products.len() as u64) as usize],
            quantity: 1 + rng.below(3) as u32,
        }];
        let key = format!("k{}", rng.below(u64::MAX));
        match engine
            .place_order(user, &key_of(&key), &request(&lines), TTL)
            .unwrap()
        {
            Placement::Placed(order, ticket) => {
                ticket.wait().unwrap();
                model.orders.insert(order.id, order);
            }
            Placement::Replayed(_) => panic!("a fresh key replayed"),
        }
        return;
    }
    if pick == 9 {
        // Time passes: unpaid orders past their deadline expire, delivered ones past their
        // return window close (and read back as they were delivered).
        clock.advance_ms(TTL / 2);
        engine.expire_due_orders();
        engine.close_due_returns();
        engine.barrier().wait().unwrap();
        let now = clock.now_ms();
        for order in model.orders.values_mut() {
            if order.status.is_unpaid() && now >= order.deadline_ms {
                *order = engine.order(order.id).unwrap();
                assert_eq!(order.status, OrderStatus::Expired);
            }
            if order.status == OrderStatus::Delivered
                && order.delivered_ms.is_some_and(|d| now > d + RETURN_WINDOW)
            {
                model.returns_closed.insert(order.id);
                assert_eq!(engine.order(order.id).as_ref(), Some(&*order));
            }
        }
        return;
    }
    let ids: Vec<OrderId> = model.orders.keys().copied().collect();
    let id = ids[rng.below(ids.len() as u64) as usize];
    let order = &model.orders[&id];
    let answered = match order.status {
        OrderStatus::PendingPayment | OrderStatus::PaymentFailed => {
            if rng.below(4) == 0 {
                engine.cancel_order(id).ok()
            } else {
                let outcome = if rng.below(3) == 0 {
                    PaymentOutcome::Failed(PaymentFailure::Declined)
                } else {
                    PaymentOutcome::Charged
                };
                engine
                    .request_payment(id)
                    .ok()
                    .and_then(|(_, attempt, ticket)| {
                        ticket.wait().unwrap();
                        engine.record_payment(id, attempt, outcome).ok()
                    })
            }
        }
        OrderStatus::Paid => {
            if rng.below(3) == 0 {
                engine.cancel_order(id).ok()
            } else {
                engine
                    .ship_order(id, shipment("DHL", &format!("T{}", id.0)))
                    .ok()
            }
        }
        OrderStatus::Shipped => engine.deliver_order(id).ok(),
        OrderStatus::Delivered if model.returns_closed.contains(&id) => {
            // Closed when its window passed: refused by the window's rule, before and after
            // a restart alike.
            assert!(matches!(
                engine.request_return(id, reason("too small")),
                Err(allot_engine::EngineError::Order(OrderError::NotReturnable(
                    _
                )))
            ));
            None
        }
        // Most customers keep what they bought: the window passes.
        OrderStatus::Delivered if rng.below(3) > 0 => None,
        OrderStatus::Delivered => engine.request_return(id, reason("too small")).ok(),
        OrderStatus::ReturnRequested => engine.approve_return(id).ok(),
        OrderStatus::Cancelled | OrderStatus::Returned if order.refund_due && !order.refunded => {
            engine.refund_issued(id).unwrap().wait().unwrap();
            Some((engine.order(id).unwrap(), engine.barrier()))
        }
        _ => {
            // A closed order takes no step, and says so as it always did.
            assert!(engine.cancel_order(id).is_err());
            None
        }
    };
    if let Some((order, ticket)) = answered {
        ticket.wait().unwrap();
        model.orders.insert(id, order);
    }
}

#[test]
fn closed_orders_leave_memory_and_every_order_reads_back_across_restarts() {
    for seed in [1_u64, 7, 2026] {
        println!("seed {seed}");
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut model = Model::default();
        let mut engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
        let products = [
            product(&engine, "tee", None),
            product(&engine, "cap", Some(10_000)),
        ];
        for round in 0..4 {
            for _ in 0..150 {
                step(&engine, &clock, &mut model, &mut rng, &products);
            }
            model.check(&engine, seed, &format!("round {round}, live"));
            // Half the rounds end with a checkpoint, so the next open starts from one.
            if round % 2 == 1 {
                engine.snapshot_now().unwrap();
            }
            engine.close().unwrap();
            drop(engine);
            let inspection = allot_engine::inspect(dir.path()).unwrap();
            assert!(
                inspection.is_clean(),
                "seed {seed}: {:?}",
                inspection.problems
            );
            assert_eq!(inspection.cold.orders as usize, model.orders.len());
            assert!(inspection.cold.compared > 0);
            // The snapshot holds the live orders only.
            assert_eq!(inspection.image.orders.len(), model.live(), "seed {seed}");
            engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
            model.check(&engine, seed, &format!("round {round}, reopened"));
        }
        let closed = model.orders.len() - model.live();
        assert!(closed > 50, "seed {seed}: only {closed} orders closed");
        assert!(
            !model.returns_closed.is_empty(),
            "seed {seed}: no return window closed"
        );
        engine.close().unwrap();
    }
}

#[test]
fn the_key_of_a_closed_order_answers_it_and_refuses_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
    let tee = product(&engine, "tee", None);
    let lines = [LineRequest {
        product: tee,
        quantity: 2,
    }];
    let Placement::Placed(order, ticket) = engine
        .place_order(UserId(1), &key_of("once"), &request(&lines), TTL)
        .unwrap()
    else {
        panic!("placed twice");
    };
    ticket.wait().unwrap();
    let (cancelled, ticket) = engine.cancel_order(order.id).unwrap();
    ticket.wait().unwrap();
    assert_eq!(
        engine.stats().live_orders,
        0,
        "a cancelled order left the hot tier"
    );
    let mut engine = Some(engine);
    for reopen in [false, true] {
        let engine = match engine.take() {
            Some(engine) if !reopen => engine,
            _ => Engine::open(config(dir.path()), clock.clone()).unwrap(),
        };
        let again = engine
            .place_order(UserId(1), &key_of("once"), &request(&lines), TTL)
            .unwrap();
        assert!(
            matches!(&again, Placement::Replayed(o) if *o == cancelled),
            "{again:?}"
        );
        assert!(matches!(
            engine.place_order(
                UserId(1),
                &key_of("once"),
                &request_to(&lines, "someone else"),
                TTL
            ),
            Err(allot_engine::EngineError::Order(
                OrderError::IdempotencyKeyReused
            ))
        ));
        // Its steps are refused as they were while it was live.
        assert!(matches!(
            engine.cancel_order(order.id),
            Err(allot_engine::EngineError::Order(
                OrderError::NotCancellable("cancelled")
            ))
        ));
        assert!(
            engine
                .certain_refusal(UserId(1), &key_of("once"), &lines)
                .is_none()
        );
        engine.close().unwrap();
    }
}

#[test]
fn a_lost_tail_takes_back_what_the_cold_tier_folded_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (kept, lost) = {
        let engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
        let tee = product(&engine, "tee", None);
        let lines = [LineRequest {
            product: tee,
            quantity: 1,
        }];
        let place = |key: &str| match engine
            .place_order(UserId(1), &key_of(key), &request(&lines), TTL)
            .unwrap()
        {
            Placement::Placed(order, ticket) => {
                ticket.wait().unwrap();
                order
            }
            Placement::Replayed(_) => panic!("replayed"),
        };
        let kept = place("a");
        let end = engine.durable_seq();
        let (_, attempt, ticket) = engine.request_payment(kept.id).unwrap();
        ticket.wait().unwrap();
        let lost = place("b");
        engine.close().unwrap();
        let _ = attempt;
        ((kept, end), lost)
    };
    let (kept, end) = kept;
    // The disk drops every batch after `end`, but not the trees the writer folded them into.
    lose_log_after(dir.path(), end);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert_eq!(inspection.cold.past_end, 2, "{:?}", inspection.cold);
    assert_mentions(&inspection.problems, &["lost tail", "cold tier"]);

    let engine = Engine::open(config(dir.path()), clock.clone()).unwrap();
    let report = engine.recovery_report().clone();
    let repaired = report.cold_repaired;
    assert_eq!(
        (repaired.restored, repaired.removed),
        (1, 1),
        "{repaired:?}"
    );
    assert_mentions(&report.lost_tail, &["cold tier"]);
    // The order reads as the log says (no payment in flight); the lost placement is gone.
    assert_eq!(engine.order(kept.id), Some(kept.clone()));
    assert_eq!(engine.order(lost.id), None);
    assert_eq!(
        engine
            .orders_of(UserId(1), None, 10)
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        [kept.id]
    );
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert_eq!(inspection.cold.past_end, 0, "{:?}", inspection.cold);
    assert!(inspection.cold.compared > 0);
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
}
