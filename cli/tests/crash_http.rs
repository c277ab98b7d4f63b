//! The crash test through HTTP. One limited drop (50 units, one per customer) is raced by many
//! verified customers who pay with every card of the payment simulator or walk away, while
//! `allot serve` is killed with SIGKILL at random moments (half of them once a payment is under
//! way; now and then a clean stop instead, never the last time) and restarted on the same data
//! directory. Afterwards every answer a customer saw as a success still holds (the order exists,
//! in the acknowledged status or a later one), nothing is oversold, every saga ends within one
//! reservation TTL of the last restart, `allot db verify` passes, and the simulator charged once
//! per paid order. After each restart, acknowledged placements are sent again with their
//! Idempotency-Key and body (the same order answers, no second one is made) and paid orders are
//! paid again (refused, never charged twice). At the end each customer's purchase allowance is
//! held by its paid order and by nothing else.
//!
//! Seeds are random per run and printed; `ALLOT_HTTP_CRASH_SEEDS=1,2,3` replays given ones. A
//! seed fixes the customers' cards, arrivals and the kill moments; how the requests interleave
//! is still up to the machine.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use allot_engine::{
    Clock, Millis, NewProduct, PaymentSimulator, SystemClock, testkit,
    testkit::ADMIN_EMAIL,
    testkit::cards::{
        APPROVED as CARD_APPROVED, DECLINED as CARD_DECLINED,
        LIMIT_EXCEEDED as CARD_LIMIT_EXCEEDED, TIMEOUT_CHARGED as CARD_TIMEOUT_CHARGED,
        TIMEOUT_NOT_CHARGED as CARD_TIMEOUT_NOT_CHARGED,
    },
};

mod support;

use support::shop::{
    self, Answer, Units, call, card_body, log_in, log_in_customers, order_body, request, wait_ready,
};
use support::{Server, assert_db_verify, next, seeds};

const SEEDS_DEFAULT: u64 = 3;

const CUSTOMERS: usize = 150;
const STOCK_UNITS: u64 = 50;

/// Short, so walk-aways give their units back to the losers during the run.
const RESERVATION_TTL_MS: u64 = 4_000;
/// The one duration asserted: every saga ends within one TTL of the server being ready after the
/// last restart, plus this. The slack covers the background work's own pace (an order whose
/// payment was in flight at its deadline is looked at again 1 s later, unsettled payments every
/// 500 ms) and a loaded 2-core machine.
const SETTLE_SLACK_MS: u64 = 5_000;
/// How long anything may take before the test gives up (not a claim about speed).
const WAIT_MAX: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const POLL_PAUSE: Duration = Duration::from_millis(100);

const KILLS_MIN: u64 = 2;
const KILLS_MAX: u64 = 3;
/// How long the server runs before each kill, in ms: drawn from this range by the seed, so kills
/// fall among placements, payments and the walk-aways' deadlines.
const RUN_MS_MIN: u64 = 300;
const RUN_MS_MAX: u64 = 5_000;
/// One kill in this many waits (looking every `AIM_POLL`, at most `AIM_WAIT`) until a payment
/// request is under way.
const AIMED_KILL_ONE_IN: u64 = 2;
const AIM_POLL: Duration = Duration::from_millis(1);
const AIM_WAIT: Duration = Duration::from_secs(3);
/// One restart in this many (never the last) follows a clean SIGTERM stop rather than SIGKILL.
const CLEAN_STOP_ONE_IN: u64 = 4;
/// Acknowledged placements (and paid orders) sent again after each restart but the last, which
/// sends every one.
const REPLAYS_PER_RESTART: usize = 10;
/// Customers arrive over this many ms, and take up to `THINK_MS_MAX` to type in their card, so
/// that placements and payments are under way whenever a kill comes.
const ARRIVAL_SPREAD_MS: u64 = 6_000;
const THINK_MS_MAX: u64 = 1_500;
/// Orders one customer intends at most (a new one only after the last expired unpaid).
const INTENTS_MAX: u32 = 3;
/// Payment requests one customer sends for one order at most.
const PAYMENT_TRIES_MAX: u32 = 20;

// ----- the server --------------------------------------------------------------------------

fn start(data: &Path) -> Server {
    let ttl_s = (RESERVATION_TTL_MS / 1_000).to_string();
    let args = ["--ip-rate-limit", "0", "--reservation-ttl", ttl_s.as_str()];
    Server::start(data, &args, "warn,tower_http=off")
}

fn sigkill(server: &mut Server) {
    // std's kill() is SIGKILL on Unix: no destructor, no flush, no snapshot.
    server.child.kill().unwrap();
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the server ended before it was killed");
}

/// The shop before its first start, made in-process because signing up over HTTP costs a mail
/// round trip and an argon2 hash per customer: verified customers and an admin sharing one
/// password hash, and the drop. Answers the drop's product id.
/// The drop: a limited sneaker on sale for the next hour, one per customer.
fn sneaker(now: Millis) -> NewProduct {
    let mut drop = testkit::limited(
        "Aurora Sneaker",
        259_000,
        STOCK_UNITS as u32,
        (now - 60_000, now + 3_600_000),
        1,
    );
    drop.details.description = "The drop".into();
    drop
}

// ----- requests ----------------------------------------------------------------------------

// ----- the saga's order --------------------------------------------------------------------

/// How far along the saga an acknowledged status is; a later answer may only be as far or
/// further.
fn rank(status: &str) -> u8 {
    match status {
        "pending_payment" => 0,
        "payment_failed" => 1,
        "paid" => 2,
        other => panic!("{other} is never acknowledged here"),
    }
}

/// Whether an order acknowledged as `acked` may read `now` later. The saga only moves forward:
/// pending_payment → payment_failed → paid → shipped → …; unpaid → expired or cancelled; paid →
/// cancelled. A paid order never reads unpaid or expired again.
fn follows(acked: &str, now: &str) -> bool {
    match acked {
        "pending_payment" => true,
        "payment_failed" => now != "pending_payment",
        "paid" => matches!(
            now,
            "paid" | "shipped" | "delivered" | "return_requested" | "returned" | "cancelled"
        ),
        other => panic!("{other} is never acknowledged here"),
    }
}

// ----- the customers -----------------------------------------------------------------------

/// What the customers share: where the server is now, whether to stop, and what the server
/// acknowledged to them.
struct Shared {
    seed: u64,
    http: reqwest::Client,
    base: RwLock<String>,
    stop: AtomicBool,
    /// Requests a kill cut off after they reached the server (not those refused while it was
    /// away): how often a kill hit work in flight.
    cut_off: AtomicU64,
    /// The payment requests among them: sagas a kill hit between their steps.
    payments_cut_off: AtomicU64,
    /// Payment requests sent and not yet answered, so a kill can aim at a saga mid-step.
    paying: AtomicU64,
    product: String,
    /// (customer, order, status): answers that promised a durable state.
    acks: Mutex<Vec<(usize, String, String)>>,
    /// (customer, Idempotency-Key, order) of every acknowledged placement.
    placements: Mutex<Vec<(usize, String, String)>>,
}

impl Shared {
    fn base(&self) -> String {
        self.base.read().unwrap().clone()
    }

    fn acknowledge(&self, customer: usize, order: &str, status: &str) {
        let ack = (customer, order.to_string(), status.to_string());
        self.acks.lock().unwrap().push(ack);
    }

    /// Sends until the server answers (after a kill: connection errors until it is back, 503
    /// while it recovers). `None` once the run is stopped.
    async fn send(
        &self,
        token: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Option<Answer> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let url = format!("{}/api/v1{path}", self.base());
            match request(&self.http, &url, Some(token), key, body).await {
                Ok(answer) if answer.status != 503 => return Some(answer),
                Ok(_) => tokio::time::sleep(RETRY_PAUSE).await,
                Err(error) => {
                    if !error.is_connect() {
                        self.cut_off.fetch_add(1, Ordering::Relaxed);
                        if path.ends_with("/payment") {
                            self.payments_cut_off.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// The strongest acknowledged status of each order.
    fn acked_orders(&self) -> HashMap<String, String> {
        let mut strongest: HashMap<String, String> = HashMap::new();
        for (_, order, status) in self.acks.lock().unwrap().iter() {
            let entry = strongest.entry(order.clone()).or_insert(status.clone());
            if rank(status) > rank(entry) {
                *entry = status.clone();
            }
        }
        strongest
    }
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Pays with `card`; after a refusal, with a good card if `retry`, else walks away.
    Pay { card: &'static str, retry: bool },
    /// Places an order and never pays: its unit must come back at the deadline.
    WalkAway,
}

fn plan(rng: &mut u64) -> Plan {
    let retry = next(rng).is_multiple_of(2);
    let card = match next(rng) % 100 {
        0..35 => CARD_APPROVED,
        35..50 => CARD_DECLINED,
        50..60 => CARD_LIMIT_EXCEEDED,
        60..70 => CARD_TIMEOUT_NOT_CHARGED,
        70..82 => CARD_TIMEOUT_CHARGED,
        _ => return Plan::WalkAway,
    };
    Plan::Pay { card, retry }
}

/// How paying for one order ended for the customer.
enum Paying {
    Done,
    /// Too late: the customer may place a new order.
    Expired,
}

/// One customer's try at the drop; answers the Idempotency-Keys it sent.
async fn shop(
    shared: Arc<Shared>,
    customer: usize,
    token: String,
    plan: Plan,
    mut rng: u64,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    tokio::time::sleep(Duration::from_millis(next(&mut rng) % ARRIVAL_SPREAD_MS)).await;
    for intent in 1..=INTENTS_MAX {
        let key = format!("customer-{customer}-order-{intent}");
        keys.insert(key.clone());
        let Some(order) = place(&shared, customer, &token, &key, &mut rng).await else {
            break;
        };
        tokio::time::sleep(Duration::from_millis(next(&mut rng) % THINK_MS_MAX)).await;
        match pay(&shared, customer, &token, &order, plan).await {
            Some(Paying::Expired) => {}
            Some(Paying::Done) | None => break,
        }
    }
    keys
}

/// Places the customer's order under `key`. Losers retry with the same key and body while the
/// drop is sold out (walk-aways and refused cards give units back); so does a customer whose
/// answer a kill cut off, and gets the same order if it was placed.
async fn place(
    shared: &Shared,
    customer: usize,
    token: &str,
    key: &str,
    rng: &mut u64,
) -> Option<String> {
    let body = order_body(&shared.product, 1);
    loop {
        let answer = shared
            .send(token, "/orders", Some(key), Some(&body))
            .await?;
        match (answer.status, answer.kind()) {
            (201, _) => {
                let order = answer.body["id"].as_str().unwrap().to_string();
                // A replayed answer shows the order as it is now, durable or not; what is
                // durable is that it was placed.
                shared.acknowledge(customer, &order, "pending_payment");
                let placement = (customer, key.to_string(), order.clone());
                shared.placements.lock().unwrap().push(placement);
                return Some(order);
            }
            // Losers wait for units to come back. An expired order gives its customer's
            // allowance back only once the expiry is durable; a key is in use while its first
            // placement is being written.
            (409, "sold_out" | "purchase_limit_exceeded" | "idempotency_key_in_use") => {
                let pause = 200 + next(rng) % 400;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            _ => panic!(
                "seed {}: placing {key}: unexpected answer {answer:?}",
                shared.seed
            ),
        }
    }
}

async fn pay(
    shared: &Shared,
    customer: usize,
    token: &str,
    order: &str,
    plan: Plan,
) -> Option<Paying> {
    let Plan::Pay { mut card, retry } = plan else {
        return Some(Paying::Done);
    };
    let path = format!("/orders/{order}/payment");
    for _ in 0..PAYMENT_TRIES_MAX {
        shared.paying.fetch_add(1, Ordering::AcqRel);
        let answer = shared
            .send(token, &path, None, Some(&card_body(card)))
            .await;
        shared.paying.fetch_sub(1, Ordering::AcqRel);
        let answer = answer?;
        let refused = match (answer.status, answer.kind()) {
            (200, _) => {
                assert_eq!(answer.body["status"], "paid", "{answer:?}");
                shared.acknowledge(customer, order, "paid");
                return Some(Paying::Done);
            }
            (402, "payment_declined" | "card_limit_exceeded") => {
                shared.acknowledge(customer, order, "payment_failed");
                true
            }
            // The provider's answer is settled in the background: charged → paid, not
            // charged → payment_failed (payable again).
            (504, "payment_timeout") => match settled(shared, token, order).await?.as_str() {
                "paid" => return Some(Paying::Done),
                "expired" => return Some(Paying::Expired),
                _ => true,
            },
            // An attempt whose answer a kill cut off is being settled.
            (409, "payment_in_progress") => {
                tokio::time::sleep(RETRY_PAUSE).await;
                false
            }
            // Paid already: a charge whose answer a kill cut off, settled since.
            (409, "invalid_transition") => return Some(Paying::Done),
            (409, "order_expired") => return Some(Paying::Expired),
            _ => panic!(
                "seed {}: paying {order} with {card}: unexpected answer {answer:?}",
                shared.seed
            ),
        };
        if refused {
            if !retry {
                return Some(Paying::Done);
            }
            card = CARD_APPROVED;
        }
    }
    Some(Paying::Done)
}

/// Reads the order until its payment's answer is known; answers its status then.
async fn settled(shared: &Shared, token: &str, order: &str) -> Option<String> {
    let path = format!("/orders/{order}");
    loop {
        let answer = shared.send(token, &path, None, None).await?;
        assert_eq!(answer.status, 200, "seed {}: {answer:?}", shared.seed);
        if answer.body["payment"]["status"] != "pending" {
            return Some(answer.body["status"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

// ----- checks ------------------------------------------------------------------------------

/// `count` of `items` drawn by the seed, or all of them when `count` covers them.
fn pick<'a, T>(items: &'a [T], count: usize, rng: &mut u64) -> Vec<&'a T> {
    if count >= items.len() {
        return items.iter().collect();
    }
    (0..count)
        .map(|_| &items[next(rng) as usize % items.len()])
        .collect()
}

/// After a restart: acknowledged placements sent again with their key and body answer the same
/// order (no second order, no unit taken), and acknowledged paid orders paid again are refused
/// (the simulator's charge count at the end shows nothing was charged twice). Once the
/// customers have stopped (`customers_stopped`, the last round) nothing else takes units, so the
/// units left on sale must not drop. Earlier rounds run while customers still buy: a round
/// that happens to cover every placement so far (a short first run) proves nothing about stock.
async fn check_idempotency(
    shared: &Shared,
    tokens: &[String],
    count: usize,
    customers_stopped: bool,
    rng: &mut u64,
) {
    let seed = shared.seed;
    let base = shared.base();
    let acked = shared.acked_orders();
    let placements = shared.placements.lock().unwrap().clone();
    let before = if customers_stopped {
        Some(stock(shared, &tokens[0]).await)
    } else {
        None
    };
    let body = order_body(&shared.product, 1);
    for (customer, key, order) in pick(&placements, count, rng) {
        let token = &tokens[*customer];
        let again = call(
            &shared.http,
            &base,
            token,
            "/orders",
            Some(key),
            Some(&body),
        )
        .await;
        assert_eq!(
            (again.status, again.body["id"].as_str()),
            (201, Some(order.as_str())),
            "seed {seed}: {key} sent again answered another order: {again:?}"
        );
        let now = again.body["status"].as_str().unwrap();
        assert!(
            follows(&acked[order], now),
            "seed {seed}: {order} was acknowledged {}, now answers {now}",
            acked[order]
        );
    }
    if let Some(before) = before {
        // Expiries only give units back; nothing else takes any once the customers stopped.
        let after = stock(shared, &tokens[0]).await;
        assert!(
            after.remaining >= before.remaining,
            "seed {seed}: placements sent again took units: \
             {before:?} before, {after:?} after"
        );
    }

    let owners: HashMap<&str, usize> = placements
        .iter()
        .map(|(customer, _, order)| (order.as_str(), *customer))
        .collect();
    let mut paid: Vec<&String> = acked
        .iter()
        .filter(|(_, status)| status.as_str() == "paid")
        .map(|(order, _)| order)
        .collect();
    paid.sort();
    for order in pick(&paid, count, rng) {
        let token = &tokens[owners[order.as_str()]];
        let path = format!("/orders/{order}/payment");
        let body = card_body(CARD_APPROVED);
        let again = call(&shared.http, &base, token, &path, None, Some(&body)).await;
        assert_eq!(
            (again.status, again.kind()),
            (409, "invalid_transition"),
            "seed {seed}: paying the paid {order} again: {again:?}"
        );
    }
}

async fn stock(shared: &Shared, token: &str) -> Units {
    shop::stock(&shared.http, &shared.base(), token, &shared.product).await
}

/// Every order, through the admin list and its cursor.
async fn all_orders(shared: &Shared, admin: &str) -> Vec<Value> {
    shop::all_orders(&shared.http, &shared.base(), admin).await
}

async fn list(shared: &Shared, token: &str, path: &str) -> Vec<Value> {
    shop::list(&shared.http, &shared.base(), token, path).await
}

/// Polls until every saga has ended: no order unpaid, no payment answer awaited, no unit held.
/// Answers the orders, the units, and how long after `ready_at` this was seen.
async fn wait_for_sagas_to_end(
    shared: &Shared,
    admin: &str,
    ready_at: Instant,
) -> (Vec<Value>, Units, Duration) {
    loop {
        let orders = all_orders(shared, admin).await;
        let units = stock(shared, admin).await;
        let open: Vec<&Value> = orders
            .iter()
            .filter(|o| {
                matches!(
                    o["status"].as_str(),
                    Some("pending_payment" | "payment_failed")
                ) || matches!(
                    o["payment"]["status"].as_str(),
                    Some("pending" | "refund_pending")
                )
            })
            .collect();
        if open.is_empty() && units.reserved == 0 {
            return (orders, units, ready_at.elapsed());
        }
        assert!(
            ready_at.elapsed() < WAIT_MAX,
            "seed {}: {} sagas still open {WAIT_MAX:?} after the last restart, units \
             {units:?}; first: {:?}",
            shared.seed,
            open.len(),
            open.first()
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// Every acknowledgement holds; units are conserved and never oversold; one paid order per
/// customer; one order per Idempotency-Key at most. Answers which customers hold a paid order.
async fn check_outcome(
    shared: &Shared,
    tokens: &[String],
    keys_sent: &[BTreeSet<String>],
    orders: &[Value],
    units: Units,
) -> Vec<bool> {
    let seed = shared.seed;
    let by_id: HashMap<&str, &Value> = orders
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o))
        .collect();
    assert_eq!(
        by_id.len(),
        orders.len(),
        "seed {seed}: an order listed twice"
    );
    assert_newest_first(orders, &format!("seed {seed}: the admin's list"));
    let acks = shared.acks.lock().unwrap().clone();
    for (customer, id, acked) in &acks {
        let order = by_id.get(id.as_str()).unwrap_or_else(|| {
            panic!("seed {seed}: {id}, acknowledged {acked} to customer {customer}, is lost")
        });
        let now = order["status"].as_str().unwrap();
        assert!(
            follows(acked, now),
            "seed {seed}: {id} was acknowledged {acked} and now reads {now}: {order:?}"
        );
        let history = order["history"].as_array().unwrap();
        assert!(
            history.iter().any(|h| h["status"] == acked.as_str()),
            "seed {seed}: {id} was acknowledged {acked}, missing from its history: {order:?}"
        );
    }

    let paid = orders.iter().filter(|o| o["status"] == "paid").count() as u64;
    let Units { sold, .. } = units;
    assert_eq!(
        units.total(),
        STOCK_UNITS,
        "seed {seed}: units not conserved: {units:?}"
    );
    assert_eq!(sold, paid, "seed {seed}: {paid} paid orders, {sold} sold");
    assert!(paid <= STOCK_UNITS, "seed {seed}: oversold: {paid} paid");

    let mut seen = 0;
    let mut paid_by = Vec::with_capacity(tokens.len());
    for (customer, token) in tokens.iter().enumerate() {
        let own = list(shared, token, "/orders").await;
        assert_newest_first(&own, &format!("seed {seed}: customer {customer}'s orders"));
        let own_paid = own.iter().filter(|o| o["status"] == "paid").count();
        assert!(
            own_paid <= 1,
            "seed {seed}: customer {customer} holds {own_paid} paid orders of a drop limited \
             to one"
        );
        assert!(
            own.len() <= keys_sent[customer].len(),
            "seed {seed}: customer {customer} has {} orders from {} Idempotency-Keys",
            own.len(),
            keys_sent[customer].len()
        );
        for order in &own {
            let id = order["id"].as_str().unwrap();
            assert!(by_id.contains_key(id), "seed {seed}: {id} is not listed");
        }
        seen += own.len();
        paid_by.push(own_paid == 1);
    }
    assert_eq!(seen, orders.len(), "seed {seed}: orders nobody placed");
    paid_by
}

/// A list read page by page (cursors) comes newest first: order ids strictly falling.
fn assert_newest_first(orders: &[Value], what: &str) {
    let ids: Vec<u64> = orders
        .iter()
        .map(|o| {
            o["id"]
                .as_str()
                .and_then(|id| id.strip_prefix("ord_"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what}: an order id that is not ord_N: {o:?}"))
        })
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "{what}: not newest first: {ids:?}"
    );
}

/// Once every saga has ended, a customer's allowance of one is held by its paid order and by
/// nothing else: an expired order gave it back. Each customer places one more order: one who
/// paid is refused, any other gets the order (while units remain) and cancels it at once, so
/// the units end as they were.
async fn check_allowances(shared: &Shared, tokens: &[String], paid_by: &[bool]) {
    let seed = shared.seed;
    let base = shared.base();
    let units = stock(shared, &tokens[0]).await;
    let body = order_body(&shared.product, 1);
    for (customer, token) in tokens.iter().enumerate() {
        let key = format!("customer-{customer}-after-the-drop");
        let placed = call(
            &shared.http,
            &base,
            token,
            "/orders",
            Some(&key),
            Some(&body),
        )
        .await;
        let expected = match (paid_by[customer], units.remaining) {
            (true, _) => (409, "purchase_limit_exceeded"),
            (false, 0) => (409, "sold_out"),
            (false, _) => (201, ""),
        };
        assert_eq!(
            (placed.status, placed.kind()),
            expected,
            "seed {seed}: customer {customer} (paid: {}) placing after the drop: {placed:?}",
            paid_by[customer]
        );
        if placed.status == 201 {
            let path = format!("/orders/{}/cancel", placed.body["id"].as_str().unwrap());
            let cancelled = call(&shared.http, &base, token, &path, None, Some(&json!({}))).await;
            assert_eq!(cancelled.status, 200, "seed {seed}: {cancelled:?}");
        }
    }
    let after = stock(shared, &tokens[0]).await;
    assert_eq!(
        after, units,
        "seed {seed}: placing and cancelling moved units"
    );
}

// ----- the test ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_sigkill_of_the_server() {
    for seed in seeds("ALLOT_HTTP_CRASH_SEEDS", SEEDS_DEFAULT) {
        println!("http crash seed {seed} (rerun with ALLOT_HTTP_CRASH_SEEDS={seed})");
        let started = Instant::now();
        run_seed(seed).await;
        println!(
            "seed {seed}: passed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

async fn run_seed(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let mut rng = seed.max(1);
    let product = shop::prepare(&data, CUSTOMERS, sneaker(SystemClock::new().now_ms())).await;
    let http = shop::http_client(REQUEST_TIMEOUT);
    let mut server = start(&data);
    let mut ready_at = wait_ready(&http, &server.base, &format!("seed {seed}")).await;
    let admin = log_in(&http, &server.base, ADMIN_EMAIL).await;
    let tokens = log_in_customers(&http, &server.base, CUSTOMERS).await;

    let shared = Arc::new(Shared {
        seed,
        http: http.clone(),
        base: RwLock::new(server.base.clone()),
        stop: AtomicBool::new(false),
        cut_off: AtomicU64::new(0),
        payments_cut_off: AtomicU64::new(0),
        paying: AtomicU64::new(0),
        product,
        acks: Mutex::new(Vec::new()),
        placements: Mutex::new(Vec::new()),
    });
    let mut customers = Vec::with_capacity(CUSTOMERS);
    for (customer, token) in tokens.iter().enumerate() {
        let plan = plan(&mut rng);
        let own_rng = next(&mut rng).max(1);
        let task = shop(shared.clone(), customer, token.clone(), plan, own_rng);
        customers.push(tokio::spawn(task));
    }

    let kills = KILLS_MIN + next(&mut rng) % (KILLS_MAX - KILLS_MIN + 1);
    let mut keys_sent = Vec::with_capacity(CUSTOMERS);
    for kill in 1..=kills {
        let run_ms = RUN_MS_MIN + next(&mut rng) % (RUN_MS_MAX - RUN_MS_MIN);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        let aim = next(&mut rng).is_multiple_of(AIMED_KILL_ONE_IN);
        if aim {
            // A payment takes a few ms (its request, the charge and its answer each wait for
            // an fsync): a kill at a random moment seldom lands inside one, so some kills wait
            // for one to be under way.
            let deadline = Instant::now() + AIM_WAIT;
            while shared.paying.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                tokio::time::sleep(AIM_POLL).await;
            }
        }
        let last = kill == kills;
        if last {
            // Customers start nothing new from here: every saga is older than the last kill,
            // so each must end within one TTL of the restart.
            shared.stop.store(true, Ordering::Release);
        }
        // Now and then a clean stop instead, so that a later recovery starts from a snapshot
        // that holds orders (held units, payments in flight, idempotency keys).
        if !last && next(&mut rng).is_multiple_of(CLEAN_STOP_ONE_IN) {
            server.stop();
            println!("seed {seed}: stopped the server after {run_ms} ms ({kill} of {kills})");
        } else {
            sigkill(&mut server);
            let aimed = if aim { ", aimed at a payment" } else { "" };
            println!("seed {seed}: killed the server after {run_ms} ms{aimed} ({kill} of {kills})");
        }
        if last {
            // None may reach the next server.
            for (customer, task) in customers.drain(..).enumerate() {
                let keys = task
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: customer {customer}: {e}"));
                keys_sent.push(keys);
            }
        }
        server = start(&data);
        *shared.base.write().unwrap() = server.base.clone();
        ready_at = wait_ready(&http, &server.base, &format!("seed {seed}")).await;
        let replays = if last {
            usize::MAX
        } else {
            REPLAYS_PER_RESTART
        };
        check_idempotency(&shared, &tokens, replays, last, &mut rng).await;
    }

    let (orders, units, took) = wait_for_sagas_to_end(&shared, &admin, ready_at).await;
    let ttl_and_slack = Duration::from_millis(RESERVATION_TTL_MS + SETTLE_SLACK_MS);
    assert!(
        took <= ttl_and_slack,
        "seed {seed}: the last saga ended {took:?} after the last restart, more than one \
         reservation TTL ({RESERVATION_TTL_MS} ms) and {SETTLE_SLACK_MS} ms of slack"
    );
    let paid_by = check_outcome(&shared, &tokens, &keys_sent, &orders, units).await;
    check_allowances(&shared, &tokens, &paid_by).await;
    let paid = paid_by.iter().filter(|paid| **paid).count() as u64;
    let acks = shared.acks.lock().unwrap().len();
    assert!(acks > 0, "seed {seed}: nothing was acknowledged");
    println!(
        "seed {seed}: {acks} acknowledgements hold; {} requests cut off by a kill, {} of them \
         payments; {} orders, {paid} paid, units {units:?}; sagas \
         ended {:.1} s after the last restart",
        shared.cut_off.load(Ordering::Relaxed),
        shared.payments_cut_off.load(Ordering::Relaxed),
        orders.len(),
        took.as_secs_f64()
    );

    // Both ways a server stops leave a directory the offline check accepts.
    if seed.is_multiple_of(2) {
        server.stop();
    } else {
        sigkill(&mut server);
    }
    assert_db_verify(&data, &format!("seed {seed}"));
    // One side effect per key: the provider charged exactly the paid orders, each once.
    let simulator = PaymentSimulator::open(&data.join("payment-simulator")).unwrap();
    assert_eq!(
        simulator.charges() as u64,
        paid,
        "seed {seed}: the simulator charged {} times for {paid} paid orders",
        simulator.charges()
    );
}
