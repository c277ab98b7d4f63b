//! The order saga in the engine: atomic multi-line placement, idempotency, payment attempts,
//! expiry, cancellation, shipping and returns — and a log that replays to the same state.

use std::sync::Arc;

use allot_engine::{
    CatalogError, Engine, EngineConfig, EngineError, LineRequest, ManualClock, NewProduct,
    OrderError, OrderStatus, PaymentFailure, PaymentOutcome, Placement, ProductId, Sku,
    StockCounts, StockError, UserId,
    testkit::{
        self, create, durable, general, key_of, limited, line, reason, request, request_to,
        shipment,
    },
};

const T0: u64 = 1_800_000_000_000;
const TTL: u64 = 600_000;

struct Shop {
    engine: Engine,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    config: EngineConfig,
}

fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = testkit::config(dir.path());
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    Shop {
        engine,
        clock,
        _dir: dir,
        config,
    }
}

fn product(shop: &Shop, name: &str, price: u64, stock: u32, limit: Option<u32>) -> ProductId {
    let product = NewProduct {
        per_user_limit: limit,
        ..general(name, price, stock)
    };
    create(&shop.engine, product)
}

fn place(
    shop: &Shop,
    user: u64,
    key: &str,
    lines: &[LineRequest],
) -> Result<allot_engine::Order, EngineError> {
    testkit::place(&shop.engine, UserId(user), key, lines, TTL)
}

fn stock(shop: &Shop, product: ProductId) -> StockCounts {
    shop.engine.stock(Sku(product.0)).unwrap()
}

fn counts(available: u64, reserved: u64, sold: u64) -> StockCounts {
    StockCounts {
        available,
        reserved,
        sold,
    }
}

fn pay(shop: &Shop, order: allot_engine::OrderId, outcome: PaymentOutcome) -> allot_engine::Order {
    testkit::pay(&shop.engine, order, outcome)
}

#[test]
fn a_multi_line_order_takes_every_line_or_none() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 5, None);
    let b = product(&shop, "B", 2_500, 1, None);
    assert!(matches!(
        place(&shop, 1, "k1", &[line(a, 2), line(b, 2)]),
        Err(EngineError::Stock(StockError::SoldOut { .. }))
    ));
    assert_eq!(
        stock(&shop, a),
        counts(5, 0, 0),
        "the first line's take was undone"
    );
    let order = place(&shop, 1, "k2", &[line(a, 2), line(b, 1)]).unwrap();
    assert_eq!(order.total, 2 * 1_000 + 2_500);
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(
        (order.lines[0].version, order.lines[0].unit_price),
        (1, 1_000)
    );
    assert_eq!(stock(&shop, a), counts(3, 2, 0));
    assert_eq!(stock(&shop, b), counts(0, 1, 0));
    assert!(matches!(
        place(&shop, 1, "k3", &[line(a, 1), line(a, 1)]),
        Err(EngineError::Order(OrderError::InvalidOrder(_)))
    ));
    assert!(matches!(
        place(&shop, 1, "k4", &[]),
        Err(EngineError::Order(OrderError::InvalidOrder(_)))
    ));
    assert!(matches!(
        place(&shop, 1, "k5", &[line(a, 0)]),
        Err(EngineError::Stock(StockError::InvalidQuantity { .. }))
    ));
    // A line of an order moves only with its order.
    assert!(matches!(
        shop.engine.commit(order.lines[0].reservation),
        Err(EngineError::Stock(StockError::ReservationNotActive { .. }))
    ));
}

#[test]
fn the_same_idempotency_key_answers_the_same_order() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 5, None);
    let first = place(&shop, 1, "key", &[line(a, 1)]).unwrap();
    let again = place(&shop, 1, "key", &[line(a, 1)]).unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(stock(&shop, a), counts(4, 1, 0), "one side effect per key");
    let other = shop.engine.place_order(
        UserId(1),
        &key_of("key"),
        &request_to(&[line(a, 2)], "someone else"),
        TTL,
    );
    assert!(matches!(
        other,
        Err(EngineError::Order(OrderError::IdempotencyKeyReused))
    ));
    // Keys are per user.
    let someone_else = place(&shop, 2, "key", &[line(a, 1)]).unwrap();
    assert_ne!(someone_else.id, first.id);
}

#[test]
fn payment_sells_a_declined_card_can_try_again_and_a_timeout_holds_the_order() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 5, Some(2));
    let order = place(&shop, 1, "k", &[line(a, 2)]).unwrap();
    let failed = pay(
        &shop,
        order.id,
        PaymentOutcome::Failed(PaymentFailure::Declined),
    );
    assert_eq!(failed.status, OrderStatus::PaymentFailed);
    assert_eq!(
        stock(&shop, a),
        counts(3, 2, 0),
        "still held until the deadline"
    );
    let paid = pay(&shop, order.id, PaymentOutcome::Charged);
    assert_eq!(
        (paid.status, paid.paid_attempt),
        (OrderStatus::Paid, Some(2))
    );
    assert_eq!(paid.payment_key(2), format!("{}/2", order.id));
    assert_eq!(stock(&shop, a), counts(3, 0, 2));
    assert!(matches!(
        shop.engine.request_payment(order.id),
        Err(EngineError::Order(OrderError::OrderStateConflict("paid")))
    ));

    // A timeout leaves the attempt open: no expiry, no cancel, no second attempt.
    let other = place(&shop, 2, "k", &[line(a, 1)]).unwrap();
    let (_, attempt, t) = shop.engine.request_payment(other.id).unwrap();
    t.wait().unwrap();
    durable(
        shop.engine
            .record_payment(other.id, attempt, PaymentOutcome::TimedOut),
    );
    assert!(matches!(
        shop.engine.request_payment(other.id),
        Err(EngineError::Order(OrderError::PaymentInProgress))
    ));
    assert!(matches!(
        shop.engine.cancel_order(other.id),
        Err(EngineError::Order(OrderError::PaymentInProgress))
    ));
    shop.clock.advance_ms(TTL + 1);
    shop.engine.expire_due_orders();
    assert_eq!(
        shop.engine.order(other.id).unwrap().status,
        OrderStatus::PendingPayment
    );
    // Asked again, the provider had charged: paid, even past the deadline.
    let (resolved, t) = shop
        .engine
        .record_payment(other.id, attempt, PaymentOutcome::Charged)
        .unwrap();
    t.wait().unwrap();
    assert_eq!(resolved.status, OrderStatus::Paid);
}

#[test]
fn an_unpaid_order_expires_and_its_units_go_back_on_sale() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 3, Some(1));
    let order = place(&shop, 1, "k", &[line(a, 1)]).unwrap();
    shop.clock.advance_ms(TTL);
    // Whoever gets there first, the scheduler or this call, expires it exactly once.
    shop.engine.expire_due_orders();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shop.engine.order(order.id).unwrap().status != OrderStatus::Expired {
        assert!(std::time::Instant::now() < deadline, "never expired");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    shop.engine.barrier().wait().unwrap();
    assert_eq!(stock(&shop, a), counts(3, 0, 0));
    assert!(matches!(
        shop.engine.request_payment(order.id),
        Err(EngineError::Order(OrderError::OrderExpired))
    ));
    assert!(matches!(
        shop.engine.cancel_order(order.id),
        Err(EngineError::Order(OrderError::NotCancellable("expired")))
    ));
    let history: Vec<_> = shop
        .engine
        .order(order.id)
        .unwrap()
        .history
        .iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(history, [OrderStatus::PendingPayment, OrderStatus::Expired]);
    // The allowance came back with the units.
    place(&shop, 1, "k2", &[line(a, 1)]).unwrap();
}

#[test]
fn cancel_ship_deliver_and_return() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 10, None);
    // Cancelled before payment: units back.
    let pending = place(&shop, 1, "p", &[line(a, 2)]).unwrap();
    let (cancelled, t) = shop.engine.cancel_order(pending.id).unwrap();
    t.wait().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.refund_due),
        (OrderStatus::Cancelled, false)
    );
    assert_eq!(stock(&shop, a), counts(10, 0, 0));
    // Cancelled after payment: sold units back on sale, refund due once.
    let paid = place(&shop, 1, "q", &[line(a, 3)]).unwrap();
    pay(&shop, paid.id, PaymentOutcome::Charged);
    assert_eq!(stock(&shop, a), counts(7, 0, 3));
    let (cancelled, t) = shop.engine.cancel_order(paid.id).unwrap();
    t.wait().unwrap();
    assert!(cancelled.refund_due);
    assert_eq!(stock(&shop, a), counts(10, 0, 0));
    shop.engine.refund_issued(paid.id).unwrap().wait().unwrap();
    assert!(matches!(
        shop.engine.refund_issued(paid.id),
        Err(EngineError::Order(OrderError::OrderStateConflict(_)))
    ));

    // Shipped orders cannot be cancelled; delivered ones can be returned within the window.
    let order = place(&shop, 2, "r", &[line(a, 1)]).unwrap();
    assert!(matches!(
        shop.engine.ship_order(order.id, shipment("CJ", "123")),
        Err(EngineError::Order(OrderError::OrderStateConflict(
            "pending_payment"
        )))
    ));
    pay(&shop, order.id, PaymentOutcome::Charged);
    assert!(matches!(
        shop.engine.request_return(order.id, reason("too big")),
        Err(EngineError::Order(OrderError::NotReturnable(_)))
    ));
    let (shipped, t) = shop
        .engine
        .ship_order(order.id, shipment("CJ", "123"))
        .unwrap();
    t.wait().unwrap();
    assert_eq!(shipped.tracking, Some(("CJ".into(), "123".into())));
    assert!(matches!(
        shop.engine.cancel_order(order.id),
        Err(EngineError::Order(OrderError::NotCancellable("shipped")))
    ));
    durable(shop.engine.deliver_order(order.id));
    shop.clock.advance_ms(7 * 86_400_000);
    let (requested, t) = shop
        .engine
        .request_return(order.id, reason("too big"))
        .unwrap();
    t.wait().unwrap();
    assert_eq!(requested.status, OrderStatus::ReturnRequested);
    let (returned, t) = shop.engine.approve_return(order.id).unwrap();
    t.wait().unwrap();
    assert_eq!(
        (returned.status, returned.refund_due),
        (OrderStatus::Returned, true)
    );
    assert_eq!(
        stock(&shop, a),
        counts(10, 0, 0),
        "returned units are back on sale"
    );
    let statuses: Vec<_> = returned.history.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "pending_payment",
            "paid",
            "shipped",
            "delivered",
            "return_requested",
            "returned"
        ]
    );

    // Past the window.
    let late = place(&shop, 3, "s", &[line(a, 1)]).unwrap();
    pay(&shop, late.id, PaymentOutcome::Charged);
    durable(shop.engine.ship_order(late.id, shipment("CJ", "9")));
    durable(shop.engine.deliver_order(late.id));
    shop.clock.advance_ms(7 * 86_400_000 + 1);
    assert!(matches!(
        shop.engine.request_return(late.id, reason("late")),
        Err(EngineError::Order(OrderError::NotReturnable(_)))
    ));
}

#[test]
fn a_users_orders_come_newest_first_from_their_index() {
    let shop = shop();
    let a = product(&shop, "A", 1_000, 100, None);
    let mine: Vec<_> = (0..7)
        .map(|i| place(&shop, 1, &format!("k{i}"), &[line(a, 1)]).unwrap().id)
        .collect();
    place(&shop, 2, "other", &[line(a, 1)]).unwrap();
    let first: Vec<_> = shop
        .engine
        .orders_of(UserId(1), None, 3)
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(first, [mine[6], mine[5], mine[4]]);
    let next: Vec<_> = shop
        .engine
        .orders_of(UserId(1), Some(mine[4]), 10)
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(next, [mine[3], mine[2], mine[1], mine[0]]);
    assert_eq!(
        shop.engine
            .shipping_address(&shop.engine.order(mine[0]).unwrap())
            .unwrap(),
        Some(allot_engine::testkit::address())
    );
}

#[test]
fn orders_replay_to_the_live_state_with_and_without_a_snapshot() {
    for snapshot_on_close in [false, true] {
        let shop = shop();
        let config = EngineConfig {
            snapshot_on_close,
            ..shop.config.clone()
        };
        let a = product(&shop, "A", 1_000, 20, Some(5));
        let b = product(&shop, "B", 3_000, 4, None);
        let expired = place(&shop, 1, "e", &[line(a, 1), line(b, 1)]).unwrap();
        let paid = place(&shop, 2, "p", &[line(a, 2)]).unwrap();
        pay(
            &shop,
            paid.id,
            PaymentOutcome::Failed(PaymentFailure::CardLimitExceeded),
        );
        pay(&shop, paid.id, PaymentOutcome::Charged);
        let returned = place(&shop, 3, "r", &[line(b, 2)]).unwrap();
        pay(&shop, returned.id, PaymentOutcome::Charged);
        durable(shop.engine.ship_order(returned.id, shipment("CJ", "1")));
        durable(shop.engine.deliver_order(returned.id));
        durable(shop.engine.request_return(returned.id, reason("no")));
        durable(shop.engine.approve_return(returned.id));
        let cancelled = place(&shop, 4, "c", &[line(a, 1)]).unwrap();
        durable(shop.engine.cancel_order(cancelled.id));
        shop.clock.advance_ms(TTL + 1);
        shop.engine.expire_due_orders();

        shop.engine.close().unwrap();
        let live = shop.engine.image();
        assert_eq!(
            allot_engine::testkit::internals::check_invariants_of(&live),
            Vec::<String>::new()
        );
        assert_eq!(
            shop.engine.order(expired.id).unwrap().status,
            OrderStatus::Expired
        );
        let dir = shop.config.data_dir.clone();
        drop(shop.engine);
        let inspection = allot_engine::inspect(&dir).unwrap();
        assert!(inspection.is_clean(), "{:?}", inspection.problems);
        assert_eq!(inspection.image, live);
        let reopened = Engine::open(config, Arc::new(ManualClock::new(T0 + TTL + 1))).unwrap();
        assert_eq!(
            reopened.image(),
            live,
            "snapshot_on_close = {snapshot_on_close}"
        );
        // Idempotency keys and the per-user index survive too.
        let again = reopened
            .place_order(UserId(2), &key_of("p"), &request(&[line(a, 2)]), TTL)
            .unwrap();
        assert!(matches!(again, Placement::Replayed(o) if o.id == paid.id));
        assert_eq!(reopened.orders_of(UserId(2), None, 5)[0].id, paid.id);
        drop(shop._dir);
    }
}

#[test]
fn an_order_a_millisecond_before_the_opening_is_refused_and_one_at_it_succeeds() {
    let shop = shop();
    let opens = T0 + 60_000;
    let closes = opens + 30_000;
    let drop = create(
        &shop.engine,
        limited("Drop", 250_000, 3, (opens, closes), 1),
    );
    shop.clock.set_ms(opens - 1);
    assert!(matches!(
        place(&shop, 1, "early", &[line(drop, 1)]),
        Err(EngineError::Order(OrderError::SaleNotOpen(_)))
    ));
    assert_eq!(
        stock(&shop, drop),
        counts(3, 0, 0),
        "a refused order takes nothing"
    );
    shop.clock.set_ms(opens);
    let order = place(&shop, 1, "on-time", &[line(drop, 1)]).unwrap();
    assert_eq!(order.status, OrderStatus::PendingPayment);
    shop.clock.set_ms(closes - 1);
    place(&shop, 2, "last-moment", &[line(drop, 1)]).unwrap();
    shop.clock.set_ms(closes);
    assert!(matches!(
        place(&shop, 3, "late", &[line(drop, 1)]),
        Err(EngineError::Order(OrderError::SaleClosed(_)))
    ));
    // The clock was moved by hand here; a real one never goes back: `SystemClock` is wall time
    // read once at start and advanced by the monotonic clock, so a host whose wall clock is set
    // back cannot reopen a closed sale.
}

#[test]
fn a_certain_refusal_is_found_without_placing_and_never_for_a_key_used_before() {
    let shop = shop();
    let tote = product(&shop, "Tote", 1_000, 2, Some(1));
    let refusal = |user: u64, key: &str, quantity: u32| {
        shop.engine
            .certain_refusal(UserId(user), &key_of(key), &[line(tote, quantity)])
    };
    assert!(refusal(1, "a", 1).is_none());
    place(&shop, 1, "a", &[line(tote, 1)]).unwrap();
    // The limit is used up: refused before anything is taken, as the placement would be.
    assert!(matches!(
        refusal(1, "b", 1),
        Some(EngineError::Stock(StockError::PurchaseLimitExceeded {
            limit: 1
        }))
    ));
    assert!(matches!(
        place(&shop, 1, "b", &[line(tote, 1)]),
        Err(EngineError::Stock(StockError::PurchaseLimitExceeded {
            limit: 1
        }))
    ));
    place(&shop, 2, "c", &[line(tote, 1)]).unwrap();
    assert!(matches!(
        refusal(3, "d", 1),
        Some(EngineError::Stock(StockError::SoldOut { available: 0 }))
    ));
    assert!(matches!(
        refusal(3, "d", 0),
        Some(EngineError::Stock(StockError::InvalidQuantity { .. }))
    ));
    assert!(matches!(
        shop.engine
            .certain_refusal(UserId(3), &key_of("e"), &[line(ProductId(99), 1)]),
        Some(EngineError::Catalog(CatalogError::ProductNotFound(
            ProductId(99)
        )))
    ));
    // Sold out, but a key used before answers its order again: no refusal here.
    assert!(refusal(1, "a", 1).is_none());
    assert!(refusal(2, "c", 1).is_none());
    assert_eq!(stock(&shop, tote), counts(0, 2, 0));

    // Lines in two currencies are the placement's to refuse, with its own answer.
    let mut mug = general("Mug", 12, 3);
    mug.details.currency = "USD".into();
    let both = [line(create(&shop.engine, mug), 1), line(tote, 1)];
    assert!(
        shop.engine
            .certain_refusal(UserId(4), &key_of("f"), &both)
            .is_none()
    );
    assert!(matches!(
        place(&shop, 4, "f", &both),
        Err(EngineError::Order(OrderError::InvalidOrder(_)))
    ));
}
