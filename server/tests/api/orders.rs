//! Orders through HTTP, like two customers and an admin: placement and its refusals, the
//! Idempotency-Key, every card of the payment simulator, cancel, ship, deliver, return, expiry,
//! the lists, and who may see or move which order. Wherever units move, the test reads
//! GET /products/{id}/stock.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::{Answer, AppOptions, Client, TestApp, Units, assert_problem};
use crate::support::shop::{
    self, CARD_APPROVED, CARD_DECLINED, CARD_LIMIT_EXCEEDED, CARD_TIMEOUT_CHARGED,
    CARD_TIMEOUT_NOT_CHARGED, MIN_JI_EMAIL, Shop, customer, pay, pay_with,
};
use crate::support::smtp::{SmtpServer, body_text, free_port, header};
use crate::support::wait::{SETTLE_WAIT, eventually};
use allot_engine::{ProductKind, parse_rfc3339};
use allot_server::mail::MailTransportConfig;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// The server's default reservation TTL, which every test but the expiry one runs with.
const DEFAULT_RESERVATION_TTL_MS: u64 = 10 * MINUTE_MS;
/// The expiry test's reservation TTL: short, yet long enough to pay one order in time on a
/// loaded machine.
const SHORT_RESERVATION_TTL_MS: u64 = 2_000;

// ----- requests ----------------------------------------------------------------------------

fn address() -> Value {
    allot_engine::testkit::address_json()
}

/// An order body for `lines` of (product id, quantity), shipped to [`address`].
fn order_of<P: AsRef<str>>(lines: &[(P, u32)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(product, quantity)| json!({ "product_id": product.as_ref(), "quantity": quantity }))
        .collect();
    json!({ "items": items, "shipping_address": address() })
}

/// Places `lines` under `key`; answers the new order.
async fn place_ok<P: AsRef<str>>(client: &mut Client, key: &str, lines: &[(P, u32)]) -> Value {
    let placed = client.place(key, order_of(lines)).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "pending_payment");
    placed.body
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().unwrap().to_string()
}

/// Places and pays `lines`; answers the paid order's id.
async fn paid_order<P: AsRef<str>>(client: &mut Client, key: &str, lines: &[(P, u32)]) -> String {
    let id = id_of(&place_ok(client, key, lines).await);
    let paid = pay(client, &id, CARD_APPROVED).await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    id
}

async fn cancel(client: &mut Client, order: &str) -> Answer {
    client
        .post(&format!("/orders/{order}/cancel"), json!({}))
        .await
}

async fn ship(admin: &mut Client, order: &str) -> Answer {
    admin
        .post(
            &format!("/admin/orders/{order}/ship"),
            json!({ "carrier": "CJ", "tracking_number": "123" }),
        )
        .await
}

async fn deliver(admin: &mut Client, order: &str) -> Answer {
    admin
        .post(&format!("/admin/orders/{order}/deliver"), json!({}))
        .await
}

async fn request_return(client: &mut Client, order: &str) -> Answer {
    client
        .post(
            &format!("/orders/{order}/return"),
            json!({ "reason": "too small" }),
        )
        .await
}

async fn approve_return(admin: &mut Client, order: &str) -> Answer {
    admin
        .post(&format!("/admin/orders/{order}/return/approve"), json!({}))
        .await
}

async fn order(client: &mut Client, id: &str) -> Value {
    let read = client.get(&format!("/orders/{id}")).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    read.body
}

/// Reads the order until `done` holds; answers it.
async fn wait_for_order(
    client: &mut Client,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("{id} is {what}"), async || {
        let read = order(client, id).await;
        if done(&read) { Ok(read) } else { Err(read) }
    })
    .await
}

/// Waits for a refund that may still be `refund_pending` to be `refunded`.
async fn wait_for_refund(client: &mut Client, id: &str) -> Value {
    wait_for_order(client, id, "refunded", |o| {
        o["payment"]["status"] == "refunded"
    })
    .await
}

/// Reads the product's units until they are `expected`.
async fn wait_for_stock(client: &mut Client, product: &str, expected: Units) {
    eventually(&format!("{product} holds {expected:?}"), async || {
        let units = client.stock(product).await;
        if units == expected {
            Ok(())
        } else {
            Err(units)
        }
    })
    .await;
}

// ----- checks ------------------------------------------------------------------------------

/// The statuses of the order's history, in order, each at an RFC 3339 time no earlier than the
/// one before.
#[track_caller]
fn assert_history(order: &Value, expected: &[&str]) {
    let history = order["history"].as_array().expect("a history");
    let statuses: Vec<&str> = history
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, expected, "{order:?}");
    let times: Vec<u64> = history
        .iter()
        .map(|h| parse_rfc3339(h["at"].as_str().unwrap()).expect("an RFC 3339 time"))
        .collect();
    assert!(times.is_sorted(), "{order:?}");
    assert_eq!(order["status"], *expected.last().unwrap());
}

#[track_caller]
fn time_of(order: &Value, field: &str) -> u64 {
    let text = order[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}"));
    parse_rfc3339(text).unwrap_or_else(|| panic!("{field} {text} is not RFC 3339"))
}

// ----- placing -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_an_order_holds_its_units_and_answers_the_whole_order() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let sneaker = shop
        .app
        .product("Aurora Sneaker", ProductKind::Limited, 259000, 5)
        .await;
    let version = shop.min_ji.get(&format!("/products/{tote}")).await.body["version"].clone();
    assert!(version.is_u64(), "{version:?}");

    let placed = place_ok(
        &mut shop.min_ji,
        "first-order",
        &[(&tote, 2), (&sneaker, 1)],
    )
    .await;
    let id = id_of(&placed);
    assert!(id.starts_with("ord_"), "{id}");
    assert_eq!(
        placed["items"],
        json!([
            {
                "product_id": tote,
                "product_version": version,
                "name": "Canvas Tote",
                "unit_price": 39000,
                "quantity": 2,
            },
            {
                "product_id": sneaker,
                "product_version": version,
                "name": "Aurora Sneaker",
                "unit_price": 259000,
                "quantity": 1,
            },
        ])
    );
    assert_eq!(placed["total"], 2 * 39000 + 259000);
    assert_eq!(placed["currency"], "KRW");
    assert_eq!(placed["shipping_address"], address());
    assert_eq!(placed["payment"], json!({ "status": "none" }));
    assert!(placed.get("tracking").is_none(), "{placed:?}");
    assert_history(&placed, &["pending_payment"]);
    let created = time_of(&placed, "created_at");
    assert_eq!(
        time_of(&placed, "reservation_expires_at") - created,
        DEFAULT_RESERVATION_TTL_MS
    );
    assert_eq!(placed["history"][0]["at"], placed["created_at"]);

    // The units are held, not sold; the order reads back as it was answered.
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(8, 2, 0));
    assert_eq!(shop.min_ji.stock(&sneaker).await, Units::new(4, 1, 0));
    assert_eq!(order(&mut shop.min_ji, &id).await, placed);

    // line2 may be left out.
    let mut body = order_of(&[(&tote, 1)]);
    body["shipping_address"]
        .as_object_mut()
        .unwrap()
        .remove("line2");
    let without_line2 = shop.min_ji.place("no-line2", body).await;
    assert_eq!(without_line2.status, 201, "{:?}", without_line2.body);
    let shipped_to = &without_line2.body["shipping_address"];
    assert!(
        shipped_to.get("line2").is_none_or(Value::is_null),
        "{shipped_to:?}"
    );
    for field in [
        "recipient",
        "phone",
        "line1",
        "city",
        "postal_code",
        "country",
    ] {
        assert_eq!(shipped_to[field], address()[field], "{field}");
    }
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(7, 3, 0));

    // A bad address, no Idempotency-Key or no session: refused, nothing taken.
    for (n, (case, field, value)) in [
        ("a country name", "country", json!("Korea")),
        ("a lowercase country", "country", json!("kr")),
        ("an empty recipient", "recipient", json!("")),
        ("a blank line1", "line1", json!("   ")),
        ("an empty city", "city", json!("")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = order_of(&[(&tote, 1)]);
        body["shipping_address"][field] = value;
        let refused = shop.min_ji.place(&format!("bad-address-{n}"), body).await;
        assert_eq!(
            refused.kind(),
            "invalid_address",
            "{case}: {:?}",
            refused.body
        );
        assert_problem(&refused, 422, "invalid_address");
    }
    let unkeyed = shop.min_ji.post("/orders", order_of(&[(&tote, 1)])).await;
    assert_problem(&unkeyed, 400, "idempotency_key_required");
    let anonymous = shop
        .app
        .client()
        .place("anonymous", order_of(&[(&tote, 1)]))
        .await;
    assert_problem(&anonymous, 401, "unauthenticated");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(7, 3, 0));
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_answers_the_same_order_once_per_customer() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let first = place_ok(&mut shop.min_ji, "checkout-1", &[(&tote, 2)]).await;
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(8, 2, 0));

    // A retry of the same request: the same order, no second take.
    let again = shop
        .min_ji
        .place("checkout-1", order_of(&[(&tote, 2)]))
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.body["id"], first["id"]);
    assert_eq!(again.body["items"], first["items"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(8, 2, 0));

    // The same key with another body is refused, and takes nothing.
    let reused = shop
        .min_ji
        .place("checkout-1", order_of(&[(&tote, 3)]))
        .await;
    assert_problem(&reused, 422, "idempotency_key_reused");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(8, 2, 0));

    // Keys belong to one customer: another's same key is another order.
    let other = place_ok(&mut shop.ji_woo, "checkout-1", &[(&tote, 2)]).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(6, 4, 0));

    // A new key is a new order.
    let second = place_ok(&mut shop.min_ji, "checkout-2", &[(&tote, 2)]).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(4, 6, 0));
    let mine = shop.min_ji.get("/orders").await;
    assert_eq!(mine.ids(), [id_of(&second), id_of(&first)]);
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_order_takes_no_units() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 3)
        .await;
    let hour = i64::try_from(HOUR_MS).unwrap();
    let minute = i64::try_from(MINUTE_MS).unwrap();
    let upcoming = shop.limited("Next Drop", (hour, 2 * hour), None, 5).await;
    let closed = shop.limited("Past Drop", (-2 * hour, -hour), None, 5).await;
    let capped = shop
        .limited("Capped Drop", (-minute, hour), Some(2), 10)
        .await;

    let refusals = [
        ("more than remain", order_of(&[(&tote, 4)]), 409, "sold_out"),
        (
            "a line that is not on sale yet",
            order_of(&[(&tote, 1), (&upcoming, 1)]),
            409,
            "sale_not_open",
        ),
        (
            "a line whose sale closed",
            order_of(&[(&tote, 1), (&closed, 1)]),
            409,
            "sale_closed",
        ),
        (
            "over the per-customer limit",
            order_of(&[(&tote, 1), (&capped, 3)]),
            409,
            "purchase_limit_exceeded",
        ),
        (
            "quantity 0",
            order_of(&[(&tote, 0)]),
            422,
            "invalid_quantity",
        ),
        (
            "quantity over 1000",
            order_of(&[(&tote, 1001)]),
            422,
            "invalid_quantity",
        ),
        ("no items", order_of::<&str>(&[]), 422, "invalid_order"),
        (
            "one product twice",
            order_of(&[(&tote, 1), (&tote, 1)]),
            422,
            "invalid_order",
        ),
        (
            "an unknown product",
            order_of(&[(tote.as_str(), 1), ("prd_999", 1)]),
            404,
            "product_not_found",
        ),
    ];
    for (n, (case, body, status, kind)) in refusals.into_iter().enumerate() {
        let refused = shop.min_ji.place(&format!("refused-{n}"), body).await;
        assert_eq!(refused.kind(), kind, "{case}: {:?}", refused.body);
        assert_problem(&refused, status, kind);
        // All lines or none: the tote line of a refused order holds nothing.
        assert_eq!(
            shop.min_ji.stock(&tote).await,
            Units::new(3, 0, 0),
            "{case}"
        );
    }
    for product in [&upcoming, &closed] {
        assert_eq!(shop.min_ji.stock(product).await, Units::new(5, 0, 0));
    }
    assert_eq!(shop.min_ji.stock(&capped).await, Units::new(10, 0, 0));
    assert_eq!(shop.min_ji.get("/orders").await.ids(), Vec::<String>::new());

    // The per-customer limit counts what the customer holds, and only theirs.
    place_ok(&mut shop.min_ji, "capped-1", &[(&capped, 2)]).await;
    let over = shop
        .min_ji
        .place("capped-2", order_of(&[(&capped, 1)]))
        .await;
    assert_problem(&over, 409, "purchase_limit_exceeded");
    place_ok(&mut shop.ji_woo, "capped-1", &[(&capped, 2)]).await;
    assert_eq!(shop.min_ji.stock(&capped).await, Units::new(6, 4, 0));

    // Sold out once every unit is held.
    place_ok(&mut shop.min_ji, "all-totes", &[(&tote, 3)]).await;
    let gone = shop.ji_woo.place("one-tote", order_of(&[(&tote, 1)])).await;
    assert_problem(&gone, 409, "sold_out");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(0, 3, 0));
    shop.close().await;
}

// ----- paying ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_simulator_card_answers_as_promised() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;

    // Approved: the held units are sold; the deadline is gone.
    let approved = id_of(&place_ok(&mut shop.min_ji, "approved", &[(&tote, 1)]).await);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(9, 1, 0));
    let paid = pay(&mut shop.min_ji, &approved, CARD_APPROVED).await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    assert_eq!(paid.body["payment"], json!({ "status": "succeeded" }));
    assert!(
        paid.body
            .get("reservation_expires_at")
            .is_none_or(Value::is_null),
        "{:?}",
        paid.body
    );
    assert_history(&paid.body, &["pending_payment", "paid"]);
    assert_eq!(order(&mut shop.min_ji, &approved).await, paid.body);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(9, 0, 1));
    let twice = pay(&mut shop.min_ji, &approved, CARD_APPROVED).await;
    assert_problem(&twice, 409, "invalid_transition");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(9, 0, 1));

    // Declined, then over the limit: payable again, the units still held.
    let retried = id_of(&place_ok(&mut shop.min_ji, "retried", &[(&tote, 2)]).await);
    let declined = pay(&mut shop.min_ji, &retried, CARD_DECLINED).await;
    assert_problem(&declined, 402, "payment_declined");
    let failed = order(&mut shop.min_ji, &retried).await;
    assert_eq!(
        failed["payment"],
        json!({ "status": "failed", "failure_reason": "declined" })
    );
    assert_history(&failed, &["pending_payment", "payment_failed"]);
    assert!(failed["reservation_expires_at"].is_string(), "{failed:?}");
    let limited = pay(&mut shop.min_ji, &retried, CARD_LIMIT_EXCEEDED).await;
    assert_problem(&limited, 402, "card_limit_exceeded");
    let failed = order(&mut shop.min_ji, &retried).await;
    assert_eq!(
        failed["payment"],
        json!({ "status": "failed", "failure_reason": "card_limit_exceeded" })
    );
    assert_eq!(failed["status"], "payment_failed");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(7, 2, 1));
    let paid = pay(&mut shop.min_ji, &retried, CARD_APPROVED).await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    assert_eq!(paid.body["payment"], json!({ "status": "succeeded" }));
    assert_history(&paid.body, &["pending_payment", "payment_failed", "paid"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(7, 0, 3));

    // Any other well-formed number is approved.
    let other_card = id_of(&place_ok(&mut shop.min_ji, "other-card", &[(&tote, 1)]).await);
    let paid = pay(&mut shop.min_ji, &other_card, "5555-5555-5555-4444").await;
    assert_eq!((paid.status, &paid.body["status"]), (200, &json!("paid")));

    // A malformed card is refused before the provider is asked: no attempt, nothing moves.
    let unpaid = id_of(&place_ok(&mut shop.min_ji, "malformed", &[(&tote, 1)]).await);
    for (case, number, expiry, cvc) in [
        ("too short", "4242 4242", "12/30", "123"),
        ("wrong check digit", "4242 4242 4242 4241", "12/30", "123"),
        ("a letter", "4242 4242 4242 424x", "12/30", "123"),
        ("month 13", CARD_APPROVED, "13/30", "123"),
        ("expired", CARD_APPROVED, "01/20", "123"),
        ("no slash", CARD_APPROVED, "1230", "123"),
        ("short cvc", CARD_APPROVED, "12/30", "12"),
        ("long cvc", CARD_APPROVED, "12/30", "12345"),
    ] {
        let refused = pay_with(&mut shop.min_ji, &unpaid, number, expiry, cvc).await;
        assert_eq!(refused.kind(), "invalid_card", "{case}: {:?}", refused.body);
        assert_problem(&refused, 422, "invalid_card");
    }
    let untouched = order(&mut shop.min_ji, &unpaid).await;
    assert_eq!(untouched["payment"], json!({ "status": "none" }));
    assert_history(&untouched, &["pending_payment"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(5, 1, 4));

    // Someone else's order, or none: not found, and not paid.
    let foreign = pay(&mut shop.ji_woo, &unpaid, CARD_APPROVED).await;
    assert_problem(&foreign, 404, "order_not_found");
    let missing = pay(&mut shop.min_ji, "ord_999", CARD_APPROVED).await;
    assert_problem(&missing, 404, "order_not_found");
    assert_eq!(
        order(&mut shop.min_ji, &unpaid).await["status"],
        "pending_payment"
    );
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_timeout_is_settled_in_the_background() {
    // Unsettled payments are looked at every 3 s here: the checks below that must see an
    // answer still unknown get a window a loaded machine cannot miss.
    let mut shop = Shop::builder()
        .payment_resolve_interval_ms(3_000)
        .open()
        .await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let first = id_of(&place_ok(&mut shop.min_ji, "first", &[(&tote, 1)]).await);
    let charged = id_of(&place_ok(&mut shop.min_ji, "charged", &[(&tote, 1)]).await);
    let uncharged = id_of(&place_ok(&mut shop.min_ji, "uncharged", &[(&tote, 2)]).await);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(6, 4, 0));

    // 0259 did charge: asked again, the provider says so, and the order is paid.
    let timed_out = pay(&mut shop.min_ji, &first, CARD_TIMEOUT_CHARGED).await;
    assert_problem(&timed_out, 504, "payment_timeout");
    let paid = wait_for_order(&mut shop.min_ji, &first, "paid", |o| o["status"] == "paid").await;
    assert_eq!(paid["payment"], json!({ "status": "succeeded" }));
    assert_history(&paid, &["pending_payment", "paid"]);
    // Units move once the payment is durable, a moment after the order reads `paid`.
    wait_for_stock(&mut shop.min_ji, &tote, Units::new(6, 3, 1)).await;

    // The server settled `first` just now, so its next look is a while away (it looks
    // periodically): long enough to see the next two attempts unresolved. While an answer is
    // unknown, the order can be neither paid again nor cancelled.
    for (id, card) in [
        (&charged, CARD_TIMEOUT_CHARGED),
        (&uncharged, CARD_TIMEOUT_NOT_CHARGED),
    ] {
        let timed_out = pay(&mut shop.min_ji, id, card).await;
        assert_problem(&timed_out, 504, "payment_timeout");
        let in_flight = order(&mut shop.min_ji, id).await;
        assert_eq!(in_flight["status"], "pending_payment", "{in_flight:?}");
        assert_eq!(in_flight["payment"]["status"], "pending", "{in_flight:?}");
        let again = pay(&mut shop.min_ji, id, CARD_APPROVED).await;
        assert_problem(&again, 409, "payment_in_progress");
        assert_problem(
            &cancel(&mut shop.min_ji, id).await,
            409,
            "payment_in_progress",
        );
    }
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(6, 3, 1));

    let paid = wait_for_order(&mut shop.min_ji, &charged, "paid", |o| {
        o["status"] == "paid"
    })
    .await;
    assert_history(&paid, &["pending_payment", "paid"]);

    // 0119 did not: the attempt failed with "timeout", and a good card pays the order.
    let failed = wait_for_order(&mut shop.min_ji, &uncharged, "failed", |o| {
        o["payment"]["status"] == "failed"
    })
    .await;
    assert_eq!(
        failed["payment"],
        json!({ "status": "failed", "failure_reason": "timeout" })
    );
    assert_history(&failed, &["pending_payment", "payment_failed"]);
    assert!(failed["reservation_expires_at"].is_string(), "{failed:?}");
    wait_for_stock(&mut shop.min_ji, &tote, Units::new(6, 2, 2)).await;
    let paid = pay(&mut shop.min_ji, &uncharged, CARD_APPROVED).await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    assert_eq!(paid.body["payment"], json!({ "status": "succeeded" }));
    assert_history(&paid.body, &["pending_payment", "payment_failed", "paid"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(6, 0, 4));
    shop.close().await;
}

// ----- cancelling, shipping, returning -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_gives_the_units_back_and_refunds_a_paid_order() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;

    // Unpaid: the held units go back on sale; there is nothing to refund.
    let unpaid = id_of(&place_ok(&mut shop.min_ji, "unpaid", &[(&tote, 2)]).await);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(3, 2, 0));
    let foreign = cancel(&mut shop.ji_woo, &unpaid).await;
    assert_problem(&foreign, 404, "order_not_found");
    let cancelled = cancel(&mut shop.min_ji, &unpaid).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["payment"], json!({ "status": "none" }));
    assert_history(&cancelled.body, &["pending_payment", "cancelled"]);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(5, 0, 0));
    assert_problem(
        &cancel(&mut shop.min_ji, &unpaid).await,
        409,
        "not_cancellable",
    );
    assert_problem(
        &pay(&mut shop.min_ji, &unpaid, CARD_APPROVED).await,
        409,
        "invalid_transition",
    );
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(5, 0, 0));

    // Paid: the sold units go back on sale and the charge is refunded.
    let paid = paid_order(&mut shop.min_ji, "paid", &[(&tote, 1)]).await;
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(4, 0, 1));
    let cancelled = cancel(&mut shop.min_ji, &paid).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    let refund = &cancelled.body["payment"]["status"];
    assert!(
        refund == "refund_pending" || refund == "refunded",
        "{refund}"
    );
    assert_history(&cancelled.body, &["pending_payment", "paid", "cancelled"]);
    let refunded = wait_for_refund(&mut shop.min_ji, &paid).await;
    assert_eq!(refunded["status"], "cancelled");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(5, 0, 0));

    // Shipped: too late.
    let shipped = paid_order(&mut shop.min_ji, "shipped", &[(&tote, 1)]).await;
    assert_eq!(ship(&mut shop.admin, &shipped).await.status, 200);
    assert_problem(
        &cancel(&mut shop.min_ji, &shipped).await,
        409,
        "not_cancellable",
    );
    let still = order(&mut shop.min_ji, &shipped).await;
    assert_eq!(still["payment"], json!({ "status": "succeeded" }));
    assert_eq!(still["status"], "shipped");
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(4, 0, 1));
    shop.close().await;
}

/// A delivered order whose return window passes is closed for good: it leaves memory, reads
/// back as it was delivered (from the cold tier, across a restart too), and a return is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_order_closes_when_its_return_window_passes() {
    const WINDOW_MS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let options = || AppOptions {
        return_window_ms: Some(WINDOW_MS),
        ..AppOptions::files(dir.path())
    };
    let app = TestApp::spawn(dir.path(), options()).await;
    let hash = shop::password_hash().await;
    let mut admin = shop::admin(&app, &hash).await;
    let mut min_ji = customer(&app, MIN_JI_EMAIL, "Kim Min-ji", &hash).await;
    let tote = app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;
    let id = paid_order(&mut min_ji, "kept", &[(&tote, 2)]).await;
    assert_eq!(ship(&mut admin, &id).await.status, 200);
    let delivered = deliver(&mut admin, &id).await;
    assert_eq!(delivered.status, 200, "{:?}", delivered.body);
    assert_eq!(app.engine.stats().live_orders, 1);

    // The scheduler closes it once the window has passed.
    eventually("the order left memory", async || {
        match app.engine.stats().live_orders {
            0 => Ok(()),
            live => Err(live),
        }
    })
    .await;
    let closed = order(&mut min_ji, &id).await;
    assert_eq!(closed, delivered.body, "it reads back as it was delivered");
    assert_problem(
        &request_return(&mut min_ji, &id).await,
        409,
        "not_returnable",
    );
    assert_problem(&ship(&mut admin, &id).await, 409, "invalid_transition");
    assert_eq!(
        min_ji.stock(&tote).await,
        Units::new(3, 0, 2),
        "its units stay sold"
    );
    let events = app.engine.events(0, 1_000).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == allot_engine::EventKind::ReturnWindowClosed)
            .count(),
        1
    );
    app.stop().await;

    let app = TestApp::spawn(dir.path(), options()).await;
    let mut min_ji = app.log_in(MIN_JI_EMAIL).await;
    assert_eq!(app.engine.stats().live_orders, 0);
    assert_eq!(order(&mut min_ji, &id).await, delivered.body);
    assert_problem(
        &request_return(&mut min_ji, &id).await,
        409,
        "not_returnable",
    );
    assert_eq!(min_ji.stock(&tote).await, Units::new(3, 0, 2));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_paid_to_returned_one_step_at_a_time() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;

    // An unpaid order cannot be shipped.
    let unpaid = id_of(&place_ok(&mut shop.min_ji, "unpaid", &[(&tote, 1)]).await);
    assert_problem(
        &ship(&mut shop.admin, &unpaid).await,
        409,
        "invalid_transition",
    );

    let id = paid_order(&mut shop.min_ji, "journey", &[(&tote, 2)]).await;
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(2, 1, 2));
    // Each step only from the one before it.
    assert_problem(
        &deliver(&mut shop.admin, &id).await,
        409,
        "invalid_transition",
    );
    assert_problem(
        &approve_return(&mut shop.admin, &id).await,
        409,
        "invalid_transition",
    );
    assert_problem(
        &request_return(&mut shop.min_ji, &id).await,
        409,
        "not_returnable",
    );

    let shipped = ship(&mut shop.admin, &id).await;
    assert_eq!(shipped.status, 200, "{:?}", shipped.body);
    assert_eq!(
        shipped.body["tracking"],
        json!({ "carrier": "CJ", "tracking_number": "123" })
    );
    assert_history(&shipped.body, &["pending_payment", "paid", "shipped"]);
    let seen = order(&mut shop.min_ji, &id).await;
    assert_eq!(seen["tracking"], shipped.body["tracking"]);
    assert_eq!(seen["status"], "shipped");
    assert_problem(&ship(&mut shop.admin, &id).await, 409, "invalid_transition");
    assert_problem(
        &request_return(&mut shop.min_ji, &id).await,
        409,
        "not_returnable",
    );

    let delivered = deliver(&mut shop.admin, &id).await;
    assert_eq!(delivered.status, 200, "{:?}", delivered.body);
    assert_history(
        &delivered.body,
        &["pending_payment", "paid", "shipped", "delivered"],
    );
    assert_problem(
        &approve_return(&mut shop.admin, &id).await,
        409,
        "invalid_transition",
    );
    assert_problem(
        &request_return(&mut shop.ji_woo, &id).await,
        404,
        "order_not_found",
    );

    let requested = request_return(&mut shop.min_ji, &id).await;
    assert_eq!(requested.status, 200, "{:?}", requested.body);
    assert_history(
        &requested.body,
        &[
            "pending_payment",
            "paid",
            "shipped",
            "delivered",
            "return_requested",
        ],
    );
    assert_problem(
        &request_return(&mut shop.min_ji, &id).await,
        409,
        "not_returnable",
    );
    // Until approved, the units stay sold.
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(2, 1, 2));

    let returned = approve_return(&mut shop.admin, &id).await;
    assert_eq!(returned.status, 200, "{:?}", returned.body);
    let refund = &returned.body["payment"]["status"];
    assert!(
        refund == "refund_pending" || refund == "refunded",
        "{refund}"
    );
    let returned = wait_for_refund(&mut shop.min_ji, &id).await;
    assert_history(
        &returned,
        &[
            "pending_payment",
            "paid",
            "shipped",
            "delivered",
            "return_requested",
            "returned",
        ],
    );
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(4, 1, 0));
    assert_problem(
        &approve_return(&mut shop.admin, &id).await,
        409,
        "invalid_transition",
    );
    assert_problem(&ship(&mut shop.admin, &id).await, 409, "invalid_transition");
    assert_problem(&cancel(&mut shop.min_ji, &id).await, 409, "not_cancellable");
    shop.close().await;
}

// ----- expiry ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_expires_at_its_deadline_and_gives_its_units_back() {
    let mut shop = Shop::builder()
        .reservation_ttl_ms(SHORT_RESERVATION_TTL_MS)
        .open()
        .await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;

    let pending = place_ok(&mut shop.min_ji, "pending", &[(&tote, 2)]).await;
    let ttl = time_of(&pending, "reservation_expires_at") - time_of(&pending, "created_at");
    assert_eq!(ttl, SHORT_RESERVATION_TTL_MS, "{pending:?}");
    let pending = id_of(&pending);
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(3, 2, 0));
    // A failed payment keeps the deadline; a paid order has none left.
    let failed = id_of(&place_ok(&mut shop.min_ji, "failed", &[(&tote, 1)]).await);
    assert_problem(
        &pay(&mut shop.min_ji, &failed, CARD_DECLINED).await,
        402,
        "payment_declined",
    );
    let paid = paid_order(&mut shop.min_ji, "paid", &[(&tote, 1)]).await;

    let expired = wait_for_order(&mut shop.min_ji, &pending, "expired", |o| {
        o["status"] == "expired"
    })
    .await;
    assert_history(&expired, &["pending_payment", "expired"]);
    let expired = wait_for_order(&mut shop.min_ji, &failed, "expired", |o| {
        o["status"] == "expired"
    })
    .await;
    assert_history(&expired, &["pending_payment", "payment_failed", "expired"]);
    // Units move once the expiry is durable, a moment after the order reads `expired`.
    wait_for_stock(&mut shop.min_ji, &tote, Units::new(4, 0, 1)).await;
    assert_history(
        &order(&mut shop.min_ji, &paid).await,
        &["pending_payment", "paid"],
    );

    // Too late to pay or to cancel; the units stay on sale.
    for id in [&pending, &failed] {
        assert_problem(
            &pay(&mut shop.min_ji, id, CARD_APPROVED).await,
            409,
            "order_expired",
        );
        assert_problem(&cancel(&mut shop.min_ji, id).await, 409, "not_cancellable");
    }
    assert_eq!(shop.min_ji.stock(&tote).await, Units::new(4, 0, 1));
    shop.close().await;
}

// ----- reading and who may do what ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_see_only_their_own_orders_newest_first() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(id_of(
            &place_ok(&mut shop.min_ji, &format!("mine-{n}"), &[(&tote, 1)]).await,
        ));
    }
    let theirs = id_of(&place_ok(&mut shop.ji_woo, "theirs", &[(&tote, 1)]).await);
    mine.reverse();

    let all = shop.min_ji.get("/orders").await;
    assert_eq!(all.ids(), mine);
    assert_eq!(all.body["next_cursor"], Value::Null);
    assert_eq!(
        all.body["items"][0],
        order(&mut shop.min_ji, &mine[0]).await
    );

    let first = shop.min_ji.get("/orders?limit=2").await;
    assert_eq!(first.ids(), mine[..2]);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let rest = shop
        .min_ji
        .get(&format!("/orders?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.ids(), mine[2..]);
    assert_eq!(rest.body["next_cursor"], Value::Null);

    assert_eq!(shop.ji_woo.get("/orders").await.ids(), [theirs.as_str()]);
    for (client, id) in [(&mut shop.ji_woo, &mine[0]), (&mut shop.min_ji, &theirs)] {
        assert_problem(
            &client.get(&format!("/orders/{id}")).await,
            404,
            "order_not_found",
        );
    }
    assert_problem(
        &shop.min_ji.get("/orders/ord_999").await,
        404,
        "order_not_found",
    );
    // A malformed id is unknown too, and the answer names what was sent.
    for sent in ["nope", "ord_01", "prd_1", "ord_%FF"] {
        let refused = shop.min_ji.get(&format!("/orders/{sent}")).await;
        assert_problem(&refused, 404, "order_not_found");
        let detail = refused.body["detail"].as_str().unwrap();
        assert!(detail.contains(sent), "{sent}: {detail}");
        // Also where the id is not the path's last segment.
        let refused = shop
            .min_ji
            .post(&format!("/orders/{sent}/cancel"), json!({}))
            .await;
        assert_problem(&refused, 404, "order_not_found");
        let detail = refused.body["detail"].as_str().unwrap();
        assert!(detail.contains(sent), "{sent}/cancel: {detail}");
    }
    let mut anonymous = shop.app.client();
    assert_problem(&anonymous.get("/orders").await, 401, "unauthenticated");
    assert_problem(
        &anonymous.get(&format!("/orders/{theirs}")).await,
        401,
        "unauthenticated",
    );
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_moves_orders_and_lists_everyone_s() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let paid_min_ji = paid_order(&mut shop.min_ji, "paid", &[(&tote, 1)]).await;
    let paid_ji_woo = paid_order(&mut shop.ji_woo, "paid", &[(&tote, 1)]).await;
    let unpaid = id_of(&place_ok(&mut shop.min_ji, "unpaid", &[(&tote, 1)]).await);

    // A customer, even the order's own, may not; nor may anyone without a session.
    let mut anonymous = shop.app.client();
    for (client, status, kind) in [
        (&mut shop.min_ji, 403, "forbidden"),
        (&mut anonymous, 401, "unauthenticated"),
    ] {
        assert_problem(&ship(client, &paid_min_ji).await, status, kind);
        assert_problem(&deliver(client, &paid_min_ji).await, status, kind);
        assert_problem(&approve_return(client, &paid_min_ji).await, status, kind);
        assert_problem(&client.get("/admin/orders").await, status, kind);
        assert_problem(&client.get("/admin/orders?status=paid").await, status, kind);
        let one = client.get(&format!("/admin/orders/{paid_min_ji}")).await;
        assert_problem(&one, status, kind);
    }
    assert_eq!(
        order(&mut shop.min_ji, &paid_min_ji).await["status"],
        "paid"
    );

    // The admin sees every customer's orders, newest first, filtered by status.
    let paid = shop.admin.get("/admin/orders?status=paid").await;
    assert_eq!(paid.ids(), [paid_ji_woo.clone(), paid_min_ji.clone()]);
    let all = shop.admin.get("/admin/orders").await;
    assert_eq!(
        all.ids(),
        [unpaid.clone(), paid_ji_woo.clone(), paid_min_ji.clone()]
    );
    let pending = shop.admin.get("/admin/orders?status=pending_payment").await;
    assert_eq!(pending.ids(), [unpaid]);
    // One order of any customer, as the customer reads it.
    let one = shop
        .admin
        .get(&format!("/admin/orders/{paid_ji_woo}"))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body, order(&mut shop.ji_woo, &paid_ji_woo).await);
    assert_problem(
        &shop.admin.get("/admin/orders/ord_999").await,
        404,
        "order_not_found",
    );

    assert_eq!(ship(&mut shop.admin, &paid_min_ji).await.status, 200);
    let paid = shop.admin.get("/admin/orders?status=paid").await;
    assert_eq!(paid.ids(), [paid_ji_woo]);
    let shipped = shop.admin.get("/admin/orders?status=shipped").await;
    assert_eq!(shipped.ids(), [paid_min_ji]);
    assert_problem(
        &ship(&mut shop.admin, "ord_999").await,
        404,
        "order_not_found",
    );
    shop.close().await;
}

// ----- the event stream and the notifier ---------------------------------------------------

/// The order events of a page of GET /admin/events: (type, order id).
fn order_events(page: &Answer) -> Vec<(String, String)> {
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["order_id"].is_string())
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["order_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_events_list_every_order_step_in_log_order() {
    let mut shop = Shop::open().await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;
    let shipped = paid_order(&mut shop.min_ji, "shipped", &[(&tote, 1)]).await;
    assert_eq!(ship(&mut shop.admin, &shipped).await.status, 200);
    let cancelled = id_of(&place_ok(&mut shop.ji_woo, "cancelled", &[(&tote, 1)]).await);
    assert_eq!(cancel(&mut shop.ji_woo, &cancelled).await.status, 200);

    let all = shop.admin.get("/admin/events?limit=1000").await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let event = |kind: &str, order: &str| (kind.to_string(), order.to_string());
    assert_eq!(
        order_events(&all),
        vec![
            event("OrderPlaced", &shipped),
            event("PaymentRequested", &shipped),
            event("OrderPaid", &shipped),
            event("OrderShipped", &shipped),
            event("OrderPlaced", &cancelled),
            event("OrderCancelled", &cancelled),
        ]
    );
    let items = all.body["items"].as_array().unwrap();
    let seqs: Vec<u64> = items.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(all.body["next_after"], json!(seqs.last().unwrap()));
    let placed = items.iter().find(|e| e["type"] == "OrderPlaced").unwrap();
    let me = shop.min_ji.get("/me").await;
    assert_eq!(
        placed["user_id"], me.body["user_id"],
        "{placed:?} {:?}",
        me.body
    );
    let own = order(&mut shop.min_ji, &shipped).await;
    assert_eq!(placed["at"], own["created_at"]);
    assert!(
        items
            .iter()
            .any(|e| e["type"] == "ProductCreated" && e["product_id"] == json!(tote)),
        "{items:?}"
    );

    // Reading on from an offset, a few at a time, gives the same events.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = shop
            .admin
            .get(&format!("/admin/events?after={after}&limit=2"))
            .await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let got = page.body["items"].as_array().unwrap().clone();
        assert!(got.len() <= 2);
        if got.is_empty() {
            assert_eq!(page.body["next_after"], json!(after));
            break;
        }
        after = page.body["next_after"].as_u64().unwrap();
        paged.extend(got);
    }
    assert_eq!(&paged, items);

    for query in ["after=-1", "after=x", "limit=0", "limit=1001", "from=3"] {
        let refused = shop.admin.get(&format!("/admin/events?{query}")).await;
        assert_problem(&refused, 400, "invalid_query");
    }
    assert_problem(&shop.min_ji.get("/admin/events").await, 403, "forbidden");
    let mut anonymous = shop.app.client();
    assert_problem(
        &anonymous.get("/admin/events").await,
        401,
        "unauthenticated",
    );
    shop.close().await;
}

/// Waits until `count` mails went to `to`; answers them.
async fn wait_for_mails(smtp: &SmtpServer, to: &str, count: usize) -> Vec<String> {
    let mut mails = Vec::new();
    for _ in 0..count {
        mails.push(smtp.wait_for_mail_to(to, SETTLE_WAIT).await);
    }
    mails
}

/// Waits until the notifier's durable offset has reached the newest event.
async fn wait_for_notifier(engine: &allot_engine::Engine) {
    let newest = engine.events(0, 1000).unwrap().last().unwrap().seq;
    eventually(
        &format!("the notifier's offset reached {newest}"),
        async || {
            let offset = engine
                .consumer_offset(allot_server::notifier::CONSUMER)
                .unwrap();
            if offset >= newest {
                Ok(())
            } else {
                Err(offset)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_mailed_once_on_paid_shipped_and_refunded_across_restarts() {
    let smtp = SmtpServer::start();
    let options = |dir: &std::path::Path| AppOptions {
        mail: MailTransportConfig::Smtp { url: smtp.url() },
        ..AppOptions::files(dir)
    };
    let mut shop = Shop::builder()
        .mail(MailTransportConfig::Smtp { url: smtp.url() })
        .open()
        .await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;

    // Placed and never paid: no mail. Paid, shipped: one mail each. Paid and cancelled: paid,
    // then refunded.
    place_ok(&mut shop.min_ji, "unpaid", &[(&tote, 1)]).await;
    let shipped = paid_order(&mut shop.min_ji, "shipped", &[(&tote, 1)]).await;
    assert_eq!(ship(&mut shop.admin, &shipped).await.status, 200);
    let refunded = paid_order(&mut shop.min_ji, "refunded", &[(&tote, 2)]).await;
    assert_eq!(cancel(&mut shop.min_ji, &refunded).await.status, 200);
    wait_for_refund(&mut shop.min_ji, &refunded).await;

    let mails = wait_for_mails(&smtp, MIN_JI_EMAIL, 4).await;
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Subject").unwrap())
        .collect();
    assert_eq!(
        subjects,
        vec![
            format!("Your order {shipped} is paid"),
            format!("Your order {shipped} has shipped"),
            format!("Your order {refunded} is paid"),
            format!("Your refund for order {refunded}"),
        ]
    );
    assert!(
        body_text(&mails[0]).contains("1 x Canvas Tote"),
        "{}",
        mails[0]
    );
    assert!(
        body_text(&mails[1]).contains("CJ, tracking number 123"),
        "{}",
        mails[1]
    );
    assert!(body_text(&mails[3]).contains("78000 KRW"), "{}", mails[3]);
    let ids: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| id.starts_with("<allot-event-")),
        "{ids:?}"
    );

    // The last mail's offset is saved a moment after the relay took it; a stop in between
    // would (rightly) send it again, so wait for it.
    wait_for_notifier(&shop.app.engine).await;

    // Restarted on the same directory, the notifier goes on from its durable offset: the next
    // mail is the next event's, and nothing before it is mailed again.
    let Shop { app, dir, .. } = shop;
    app.stop().await;
    let app = TestApp::spawn(dir.path(), options(dir.path())).await;
    let mut min_ji = app.log_in(MIN_JI_EMAIL).await;
    let after_restart = paid_order(&mut min_ji, "after-restart", &[(&tote, 1)]).await;
    let next = smtp.wait_for_mail_to(MIN_JI_EMAIL, SETTLE_WAIT).await;
    assert_eq!(
        header(&next, "Subject").unwrap(),
        format!("Your order {after_restart} is paid")
    );
    assert_eq!(smtp.all_mail().len(), 5, "a mail was sent twice");
    // Its offset too is saved a moment after the relay took it.
    wait_for_notifier(&app.engine).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_mailed_once_the_relay_is_back() {
    let port = free_port();
    let mut shop = Shop::builder()
        .mail(MailTransportConfig::Smtp {
            url: format!("smtp://127.0.0.1:{port}"),
        })
        .open()
        .await;
    let tote = shop
        .app
        .product("Canvas Tote", ProductKind::General, 39000, 5)
        .await;
    let paid = paid_order(&mut shop.min_ji, "paid", &[(&tote, 1)]).await;

    // The relay is down: the notifier keeps the event and tries again until it is up.
    let offset = || {
        shop.app
            .engine
            .consumer_offset(allot_server::notifier::CONSUMER)
            .unwrap()
    };
    let paid_seq = shop
        .app
        .engine
        .events(0, 1000)
        .unwrap()
        .iter()
        .find(|e| e.kind == allot_engine::EventKind::OrderPaid)
        .unwrap()
        .seq;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(offset() < paid_seq, "the offset moved past an unsent mail");
    let smtp = tokio::task::spawn_blocking(move || SmtpServer::start_on_port(port))
        .await
        .expect("SMTP server starts");
    let mail = smtp.wait_for_mail_to(MIN_JI_EMAIL, SETTLE_WAIT).await;
    assert_eq!(
        header(&mail, "Subject").unwrap(),
        format!("Your order {paid} is paid")
    );
    eventually(&format!("the offset moved on to {paid_seq}"), async || {
        let at = offset();
        if at >= paid_seq { Ok(()) } else { Err(at) }
    })
    .await;
    assert_eq!(smtp.all_mail().len(), 1);
    shop.close().await;
}
