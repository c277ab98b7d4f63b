//! The drop, through HTTP like its customers: 500 verified customers race for the 50 units of a
//! limited product with a per-customer limit of 1. Winners pay with every card of the simulator
//! or walk away; some losers keep trying and buy the units that expiries give back; some winners
//! try to take a second unit. A sampler reads GET /products/{id}/stock every few milliseconds
//! throughout. Every sample must hold `remaining + reserved + sold == 50`; once every deadline
//! has passed nothing stays reserved, `sold` is the number of paid orders, every order ended as
//! its customer's answers promised, and nobody holds two.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore, watch};
use tokio::task::JoinSet;

use crate::support::app::{Answer, AppOptions, Client, TestApp, Units};
use crate::support::shop::{
    self, CARD_APPROVED, CARD_DECLINED, CARD_LIMIT_EXCEEDED, CARD_TIMEOUT_CHARGED,
    CARD_TIMEOUT_NOT_CHARGED, create_customer, log_in, pay,
};
use crate::support::wait::{SETTLE_WAIT, eventually};
use allot_engine::rfc3339;

const STOCK_TOTAL: u64 = 50;
const STOCK_UNITS: usize = STOCK_TOTAL as usize;
const CUSTOMERS: usize = 500;
const PER_USER_LIMIT: usize = 1;
/// Long enough for a winner to pay on a loaded machine, short enough that the walk-aways'
/// units come back and are sold again within the test.
const RESERVATION_TTL_MS: u64 = 5_000;
/// How often the server asks the provider again about a payment whose answer was lost.
const PAYMENT_RESOLVE_INTERVAL_MS: u64 = 200;
/// Accounts are made in the engine (cheap, one log record each); logins verify argon2 on the
/// server's two-worker password pool, so a few at a time keep its queue short.
const SIGNUPS_IN_FLIGHT_MAX: usize = 32;
const LOGINS_IN_FLIGHT_MAX: usize = 8;
/// One customer in this many keeps trying after `sold_out`, each time the stock shows a unit.
const RETRIER_EVERY: usize = 5;
const PLACE_ATTEMPTS_MAX: u32 = 100;
/// One winner in this many tries to take a second unit, while holding one and once paid.
const PROBE_EVERY: usize = 3;
const SAMPLE_INTERVAL_MS: u64 = 5;
/// The race lasts at least one reservation TTL (5 s): 50 readings even at 100 ms each.
const SAMPLES_MIN: usize = 50;
const PAGE_ITEMS_MAX: usize = 100;
/// Far more pages than the orders of this drop fill: a cursor that never ends fails the test.
const PAGES_MAX: usize = 20;
/// Sample violations kept for the failure message (all are counted).
const VIOLATIONS_SHOWN_MAX: usize = 10;

// ----- who does what -----------------------------------------------------------------------

/// What a winner does with the unit it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Behaviour {
    Approve,
    DeclineThenApprove,
    DeclineThenWalkAway,
    LimitExceededThenWalkAway,
    TimeoutNotCharged,
    TimeoutCharged,
    WalkAway,
}

const FIRST_WAVE: [Behaviour; 7] = [
    Behaviour::Approve,
    Behaviour::DeclineThenApprove,
    Behaviour::DeclineThenWalkAway,
    Behaviour::LimitExceededThenWalkAway,
    Behaviour::TimeoutNotCharged,
    Behaviour::TimeoutCharged,
    Behaviour::WalkAway,
];

impl Behaviour {
    /// By the order of wins, so the first 50 winners carry the whole mix whoever they are.
    /// Units sold again after an expiry are paid: the drop ends sold out instead of cascading
    /// through ever more expiries.
    fn of_win(win: usize) -> Behaviour {
        if win < STOCK_UNITS {
            FIRST_WAVE[win % FIRST_WAVE.len()]
        } else {
            Behaviour::Approve
        }
    }

    /// The cards tried in turn; a customer stops at the first answer that settles the order.
    fn cards(self) -> &'static [&'static str] {
        match self {
            Behaviour::Approve => &[CARD_APPROVED],
            Behaviour::DeclineThenApprove => &[CARD_DECLINED, CARD_APPROVED],
            Behaviour::DeclineThenWalkAway => &[CARD_DECLINED],
            Behaviour::LimitExceededThenWalkAway => &[CARD_LIMIT_EXCEEDED],
            Behaviour::TimeoutNotCharged => &[CARD_TIMEOUT_NOT_CHARGED],
            Behaviour::TimeoutCharged => &[CARD_TIMEOUT_CHARGED],
            Behaviour::WalkAway => &[],
        }
    }
}

/// What an order must end as, given the answers its customer got.
#[derive(Debug)]
struct Expected {
    status: &'static str,
    payment: Value,
}

impl Expected {
    fn paid() -> Expected {
        Expected {
            status: "paid",
            payment: json!({ "status": "succeeded" }),
        }
    }

    fn expired(failure_reason: Option<&str>) -> Expected {
        let payment = match failure_reason {
            Some(reason) => json!({ "status": "failed", "failure_reason": reason }),
            None => json!({ "status": "none" }),
        };
        Expected {
            status: "expired",
            payment,
        }
    }
}

/// An order a customer was answered 201 for.
#[derive(Debug)]
struct Placed {
    id: String,
    user: usize,
    behaviour: Behaviour,
    expected: Expected,
}

/// One customer's part in the drop.
struct Journey {
    user: usize,
    client: Client,
    orders: Vec<Placed>,
    sold_out_answers: u32,
    second_orders_refused: u32,
    gave_up: bool,
}

/// What every customer's task shares.
struct Race {
    product: String,
    /// Placements answered 201 so far (replays of a key not counted).
    wins: AtomicUsize,
    /// Everyone places at once.
    start: Barrier,
    /// The sampler's latest reading: retriers try again when it shows a unit on sale.
    stock: watch::Receiver<Units>,
}

/// What the race left: each customer's part, the settled stock and what the sampler saw.
struct Outcome {
    journeys: Vec<Journey>,
    wins: usize,
    units: Units,
    samples: usize,
    violations: Vec<String>,
}

/// Tells the sampler to stop when the race ends, however it ends.
struct StopSampling(Arc<AtomicBool>);

impl Drop for StopSampling {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// ----- the test ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_sells_each_unit_once_and_gives_back_every_unpaid_one() {
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let options = AppOptions {
        reservation_ttl_ms: Some(RESERVATION_TTL_MS),
        payment_resolve_interval_ms: Some(PAYMENT_RESOLVE_INTERVAL_MS),
        ..AppOptions::files(dir.path())
    };
    let app = TestApp::spawn(dir.path(), options).await;
    let hash = shop::password_hash().await;
    let mut admin = shop::admin(&app, &hash).await;
    let product = create_drop(&app, &mut admin).await;
    let customers = sign_up_customers(&app, &hash).await;
    let logged_in = began.elapsed();

    let tested = AssertUnwindSafe(async {
        let outcome = race(&app, &product, customers).await;
        let raced = began.elapsed() - logged_in;
        let statuses = check_the_drop(&mut admin, &product, &outcome).await;
        let Outcome {
            journeys,
            wins,
            units,
            samples,
            ..
        } = &outcome;
        let sold_out: u32 = journeys.iter().map(|j| j.sold_out_answers).sum();
        let refused: u32 = journeys.iter().map(|j| j.second_orders_refused).sum();
        println!(
            "drop: {CUSTOMERS} customers logged in after {logged_in:?}; race and settlement \
             took {raced:?} with {samples} stock samples; {wins} placements won, {sold_out} \
             answered sold_out, {refused} second orders refused; final {units:?}, orders \
             {statuses:?}; {:?} in all",
            began.elapsed()
        );
    })
    .catch_unwind()
    .await;
    // Stop the server and close the engine before reporting a failure: left to the runtime's
    // shutdown, the engine's last handle is dropped on a runtime thread, and its final sled
    // flush has been seen to never return, which hangs the test instead of failing it.
    app.stop().await;
    if let Err(failure) = tested {
        std::panic::resume_unwind(failure);
    }
}

/// Every customer places at once while the sampler reads the stock; answers once every
/// customer is done and nothing is reserved any more.
async fn race(app: &TestApp, product: &str, customers: Vec<Client>) -> Outcome {
    let mut reader = app.client();
    let before = reader.stock(product).await;
    assert_eq!(
        (before.remaining, before.reserved, before.sold),
        (STOCK_TOTAL, 0, 0)
    );
    let (publish, readings) = watch::channel(before);
    let stop_sampling = StopSampling(Arc::new(AtomicBool::new(false)));
    let sampler = tokio::spawn(sample_stock(
        app.client(),
        product.to_string(),
        stop_sampling.0.clone(),
        publish,
    ));
    let race = Arc::new(Race {
        product: product.to_string(),
        wins: AtomicUsize::new(0),
        start: Barrier::new(customers.len()),
        stock: readings,
    });
    let mut shoppers = JoinSet::new();
    for (user, client) in customers.into_iter().enumerate() {
        shoppers.spawn(shop_the_drop(client, user, race.clone()));
    }
    let mut journeys = Vec::with_capacity(CUSTOMERS);
    while let Some(journey) = shoppers.join_next().await {
        journeys.push(journey.expect("a customer's task panicked (its message is above)"));
    }
    let units = wait_until_nothing_reserved(&mut reader, product).await;
    drop(stop_sampling);
    let (samples, violations) = sampler.await.unwrap();
    Outcome {
        journeys,
        wins: race.wins.load(Ordering::Acquire),
        units,
        samples,
        violations,
    }
}

/// Everything the drop must have kept; answers how many orders ended in each status.
async fn check_the_drop(
    admin: &mut Client,
    product: &str,
    outcome: &Outcome,
) -> BTreeMap<String, u64> {
    let Outcome {
        journeys,
        wins,
        units,
        samples,
        violations,
    } = outcome;
    assert!(
        violations.is_empty(),
        "{} of {samples} stock samples broke an invariant, first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(VIOLATIONS_SHOWN_MAX)]
    );
    assert!(
        *samples >= SAMPLES_MIN,
        "only {samples} stock samples during the race: the invariant was hardly watched"
    );
    let statuses = check_every_order_settled(admin, product, *units, journeys).await;
    check_nobody_holds_two(journeys, *units).await;

    // The race was the one described: every behaviour won, second orders were refused, and
    // the units that expiries gave back were sold again until none was left.
    let behaviours: BTreeSet<Behaviour> = journeys
        .iter()
        .flat_map(|j| &j.orders)
        .map(|p| p.behaviour)
        .collect();
    assert_eq!(
        behaviours,
        BTreeSet::from(FIRST_WAVE),
        "behaviours that won"
    );
    let refused: u32 = journeys.iter().map(|j| j.second_orders_refused).sum();
    assert!(refused > 0, "no customer tried to take a second unit");
    assert!(
        *wins > STOCK_UNITS,
        "{wins} placements won: no unit given back by an expiry was sold again"
    );
    let gave_up = journeys.iter().filter(|j| j.gave_up).count();
    assert_eq!(
        units.sold, STOCK_TOTAL,
        "{units:?}: retrying customers should have bought every unit that came back \
         ({gave_up} gave up after {PLACE_ATTEMPTS_MAX} attempts)"
    );
    statuses
}

/// Every order is paid, or expired with its unit back on sale; `sold` is the number of paid
/// orders; the orders are exactly those the customers were answered 201 for, and each ended as
/// its customer's answers promised. Answers how many orders ended in each status.
async fn check_every_order_settled(
    admin: &mut Client,
    product: &str,
    units: Units,
    journeys: &[Journey],
) -> BTreeMap<String, u64> {
    let orders = all_orders(admin, "").await;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for order in &orders {
        let status = order["status"].as_str().unwrap();
        *statuses.entry(status.to_string()).or_default() += 1;
        assert!(
            status == "paid" || status == "expired",
            "every deadline has passed, yet an order is {status}: {order:#}"
        );
        let items = &order["items"];
        assert_eq!(items.as_array().map(Vec::len), Some(1), "{order:#}");
        assert_eq!(
            (&items[0]["product_id"], &items[0]["quantity"]),
            (&json!(product), &json!(1)),
            "{order:#}"
        );
    }
    let paid = statuses.get("paid").copied().unwrap_or(0);
    assert_eq!(
        units.sold, paid,
        "the stock says {} sold but {paid} orders are paid ({statuses:?})",
        units.sold
    );
    let paid_listed = all_orders(admin, "status=paid&").await.len() as u64;
    assert_eq!(
        paid_listed, paid,
        "GET /admin/orders?status=paid lists {paid_listed}, the full list holds {paid} paid"
    );
    assert_eq!(
        units.remaining,
        STOCK_TOTAL - units.sold,
        "{units:?}: units neither sold nor on sale"
    );

    let placed: BTreeMap<&str, &Placed> = journeys
        .iter()
        .flat_map(|j| &j.orders)
        .map(|p| (p.id.as_str(), p))
        .collect();
    let listed: BTreeMap<&str, &Value> = orders
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o))
        .collect();
    assert_eq!(
        placed.keys().collect::<Vec<_>>(),
        listed.keys().collect::<Vec<_>>(),
        "the server's orders are not exactly those its customers were answered 201 for"
    );
    for (id, placement) in &placed {
        let order = listed[id];
        let expected = &placement.expected;
        assert_eq!(
            (order["status"].as_str().unwrap(), &order["payment"]),
            (expected.status, &expected.payment),
            "customer {} ({:?}) was answered so that {id} would end {} with payment {}, \
             but it is: {order:#}",
            placement.user,
            placement.behaviour,
            expected.status,
            expected.payment
        );
    }
    statuses
}

/// Each customer's own list, as the server keeps it: exactly the orders they were answered
/// 201 for, at most one of them paid.
async fn check_nobody_holds_two(journeys: &[Journey], units: Units) {
    let mut paid = 0;
    for journey in journeys {
        let mine = journey.client.clone().get("/orders").await;
        assert_eq!(mine.status, 200, "{:?}", mine.body);
        assert_eq!(mine.body["next_cursor"], Value::Null, "{:?}", mine.body);
        let items = mine.body["items"].as_array().unwrap();
        let ids: BTreeSet<&str> = items.iter().map(|o| o["id"].as_str().unwrap()).collect();
        let answered: BTreeSet<&str> = journey.orders.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, answered, "customer {}'s orders", journey.user);
        let paid_mine = items.iter().filter(|o| o["status"] == "paid").count();
        assert!(
            paid_mine <= PER_USER_LIMIT,
            "customer {} holds {paid_mine} paid units: {items:#?}",
            journey.user
        );
        paid += paid_mine as u64;
    }
    assert_eq!(paid, units.sold, "paid orders in the customers' own lists");
}

// ----- one customer ------------------------------------------------------------------------

/// Places one unit as soon as the race starts; a retrier keeps trying whenever the stock shows
/// a unit back. A winner behaves by the order of its win, and may try for a second unit.
async fn shop_the_drop(client: Client, user: usize, race: Arc<Race>) -> Journey {
    let mut journey = Journey {
        user,
        client,
        orders: Vec::new(),
        sold_out_answers: 0,
        second_orders_refused: 0,
        gave_up: false,
    };
    let mut stock = race.stock.clone();
    let retrier = user % RETRIER_EVERY == 1;
    race.start.wait().await;
    for attempt in 1..=PLACE_ATTEMPTS_MAX {
        let key = format!("drop-{user}-{attempt}");
        let placed = place_one(&mut journey.client, &key, &race.product).await;
        match (placed.status, placed.kind()) {
            (201, _) => {
                win(&mut journey, &race, &key, placed.body).await;
                return journey;
            }
            (409, "sold_out") => journey.sold_out_answers += 1,
            _ => panic!(
                "customer {user} holds nothing, yet placing answered {} {:?}",
                placed.status, placed.body
            ),
        }
        if !retrier || !unit_back(&mut stock).await {
            return journey;
        }
    }
    journey.gave_up = true;
    journey
}

/// Waits for a reading taken after now: true if it shows a unit on sale, false once every unit
/// is sold (none can come back) or when nothing changes for too long.
async fn unit_back(stock: &mut watch::Receiver<Units>) -> bool {
    stock.borrow_and_update();
    let next = async {
        while stock.changed().await.is_ok() {
            let units = *stock.borrow_and_update();
            if units.sold == STOCK_TOTAL {
                return false;
            }
            if units.remaining > 0 {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(SETTLE_WAIT, next)
        .await
        .unwrap_or(false)
}

async fn win(journey: &mut Journey, race: &Race, key: &str, order: Value) {
    let user = journey.user;
    let client = &mut journey.client;
    let win = race.wins.fetch_add(1, Ordering::AcqRel);
    let behaviour = Behaviour::of_win(win);
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(order["status"], "pending_payment", "{order:#}");
    let probing = win.is_multiple_of(PROBE_EVERY);
    if probing {
        // The same key again is the same order, not a second unit.
        let again = place_one(client, key, &race.product).await;
        assert_eq!(
            (again.status, &again.body["id"]),
            (201, &order["id"]),
            "customer {user} sent the key of {id} again: {:?}",
            again.body
        );
        if let Some(second) = try_second_order(client, user, race, &id).await {
            journey.orders.push(second);
        } else {
            journey.second_orders_refused += 1;
        }
    }
    let expected = pay_as(client, user, &id, behaviour).await;
    if probing && expected.status == "paid" {
        // A paid unit counts against the limit for good: no expiry gives it back.
        let second = place_one(client, &format!("drop-{user}-paid"), &race.product).await;
        assert_eq!(
            (second.status, second.kind()),
            (409, "purchase_limit_exceeded"),
            "customer {user} has paid for {id}, yet a second order answered {:?}",
            second.body
        );
        journey.second_orders_refused += 1;
    }
    journey.orders.push(Placed {
        id,
        user,
        behaviour,
        expected,
    });
}

/// A second order while `held` is held must be refused for the per-customer limit; only if
/// `held` has already expired may it be placed (answered as a walk-away's order).
async fn try_second_order(
    client: &mut Client,
    user: usize,
    race: &Race,
    held: &str,
) -> Option<Placed> {
    let second = place_one(client, &format!("drop-{user}-second"), &race.product).await;
    if (second.status, second.kind()) == (409, "purchase_limit_exceeded") {
        return None;
    }
    let first = client.get(&format!("/orders/{held}")).await;
    assert_eq!(
        first.body["status"], "expired",
        "customer {user} holds {held} ({}), yet a second order answered {} {:?}",
        first.body["status"], second.status, second.body
    );
    match (second.status, second.kind()) {
        (201, _) => {
            race.wins.fetch_add(1, Ordering::AcqRel);
            Some(Placed {
                id: second.body["id"].as_str().unwrap().to_string(),
                user,
                behaviour: Behaviour::WalkAway,
                expected: Expected::expired(None),
            })
        }
        (409, "sold_out") => None,
        _ => panic!("customer {user}: {} {:?}", second.status, second.body),
    }
}

/// Pays `id` with `behaviour`'s cards in turn and answers what the order must end as. Any card
/// may meet `order_expired` on a slow machine: the order then ends as it stood.
async fn pay_as(client: &mut Client, user: usize, id: &str, behaviour: Behaviour) -> Expected {
    let mut expected = Expected::expired(None);
    for &card in behaviour.cards() {
        let paid = pay(client, id, card).await;
        let answer = (paid.status, paid.kind());
        if answer == (409, "order_expired") {
            break;
        }
        let (promised, settles, next) = match card {
            CARD_APPROVED => ((200, ""), true, Expected::paid()),
            CARD_DECLINED => (
                (402, "payment_declined"),
                false,
                Expected::expired(Some("declined")),
            ),
            CARD_LIMIT_EXCEEDED => (
                (402, "card_limit_exceeded"),
                false,
                Expected::expired(Some("card_limit_exceeded")),
            ),
            // Not charged: the server learns it in the background; the order fails, then expires.
            CARD_TIMEOUT_NOT_CHARGED => (
                (504, "payment_timeout"),
                true,
                Expected::expired(Some("timeout")),
            ),
            // Charged: the server learns it in the background and the order is paid.
            CARD_TIMEOUT_CHARGED => ((504, "payment_timeout"), true, Expected::paid()),
            _ => unreachable!("a card of the simulator table"),
        };
        assert_eq!(
            answer, promised,
            "customer {user} ({behaviour:?}) paying {id} with {card}: {:?}",
            paid.body
        );
        if paid.status == 200 {
            assert_eq!(paid.body["status"], "paid", "{:#}", paid.body);
        }
        expected = next;
        if settles {
            break;
        }
    }
    expected
}

// ----- the sampler -------------------------------------------------------------------------

/// Reads the stock every few ms until told to stop; publishes each reading and answers how
/// many it took and which broke an invariant.
async fn sample_stock(
    mut client: Client,
    product: String,
    stop: Arc<AtomicBool>,
    publish: watch::Sender<Units>,
) -> (usize, Vec<String>) {
    let mut samples = 0;
    let mut violations = Vec::new();
    let mut sold_before = 0;
    while !stop.load(Ordering::Acquire) {
        let read = client.get(&format!("/products/{product}/stock")).await;
        samples += 1;
        match check_sample(&read, sold_before) {
            Ok(units) => {
                sold_before = units.sold;
                publish.send_replace(units);
            }
            Err(violation) => violations.push(format!("sample {samples}: {violation}")),
        }
        tokio::time::sleep(Duration::from_millis(SAMPLE_INTERVAL_MS)).await;
    }
    (samples, violations)
}

/// One reading of the stock: three counts of 0 or more that add up to the stock, a status that
/// agrees with them, and no fewer sold than before (nothing in this drop gives a sold unit
/// back: no cancel, no return).
fn check_sample(read: &Answer, sold_before: u64) -> Result<Units, String> {
    let count = |field: &str| read.body[field].as_u64();
    let (Some(remaining), Some(reserved), Some(sold)) =
        (count("remaining"), count("reserved"), count("sold"))
    else {
        return Err(format!(
            "not three counts of 0 or more: {} {:?}",
            read.status, read.body
        ));
    };
    let units = Units::new(remaining, reserved, sold);
    if units.total() != STOCK_TOTAL {
        return Err(format!(
            "remaining + reserved + sold != {STOCK_TOTAL}: {units:?}"
        ));
    }
    if sold < sold_before {
        return Err(format!("sold went from {sold_before} down to {sold}"));
    }
    let status = if remaining == 0 {
        "sold_out"
    } else {
        "on_sale"
    };
    if read.body["status"] != status {
        return Err(format!("{units:?} but status {}", read.body["status"]));
    }
    Ok(units)
}

// ----- setting up --------------------------------------------------------------------------

/// The limited product of the drop, on sale for the next hour, created through the admin API.
async fn create_drop(app: &TestApp, admin: &mut Client) -> String {
    let now = app.engine.now_ms();
    let created = admin
        .post(
            "/admin/products",
            json!({
                "name": "Aurora Sneaker, numbered edition",
                "price": 259000,
                "kind": "limited",
                "sale_opens_at": rfc3339(now - 60_000),
                "sale_closes_at": rfc3339(now + 3_600_000),
                "per_user_limit": PER_USER_LIMIT,
                "stock_total": STOCK_TOTAL,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["status"], "on_sale", "{:?}", created.body);
    assert_eq!(created.body["per_user_limit"], PER_USER_LIMIT);
    created.body["id"].as_str().unwrap().to_string()
}

fn email_of(user: usize) -> String {
    format!("customer-{user:03}@example.com")
}

/// Verified customers made in the engine (the mail round trip is the accounts tests' job), all
/// with the one `hash`, then each logged in over HTTP; answers their clients by index.
async fn sign_up_customers(app: &TestApp, hash: &str) -> Vec<Client> {
    let signups = Arc::new(Semaphore::new(SIGNUPS_IN_FLIGHT_MAX));
    let mut accounts = JoinSet::new();
    for user in 0..CUSTOMERS {
        let (engine, hash, signups) = (app.engine.clone(), hash.to_string(), signups.clone());
        accounts.spawn(async move {
            let _permit = signups.acquire_owned().await.unwrap();
            let email = email_of(user);
            create_customer(&engine, &email, &email, &hash).await;
        });
    }
    while let Some(created) = accounts.join_next().await {
        created.unwrap();
    }
    let logins = Arc::new(Semaphore::new(LOGINS_IN_FLIGHT_MAX));
    let mut sessions = JoinSet::new();
    for user in 0..CUSTOMERS {
        let (client, logins) = (app.client(), logins.clone());
        sessions.spawn(async move {
            let _permit = logins.acquire_owned().await.unwrap();
            (user, log_in(client, &email_of(user)).await)
        });
    }
    let mut clients: Vec<Option<Client>> = vec![None; CUSTOMERS];
    while let Some(session) = sessions.join_next().await {
        let (user, client) = session.unwrap();
        clients[user] = Some(client);
    }
    clients.into_iter().map(Option::unwrap).collect()
}

// ----- requests ----------------------------------------------------------------------------

/// One unit of `product`, shipped to Seoul.
async fn place_one(client: &mut Client, key: &str, product: &str) -> Answer {
    let body = allot_engine::testkit::order_json(&[(product, 1)]);
    client.place(key, body).await
}

/// Reads the stock until nothing is reserved: every deadline has passed and every payment
/// answer has been settled. Units move once their record is durable, a moment after the order
/// reads `paid` or `expired`, so the stock is what to wait on.
async fn wait_until_nothing_reserved(client: &mut Client, product: &str) -> Units {
    eventually(
        "nothing is reserved once the customers are done",
        async || {
            let units = client.stock(product).await;
            if units.reserved == 0 {
                Ok(units)
            } else {
                Err(units)
            }
        },
    )
    .await
}

/// Every order of the admin list (`query`: extra parameters, each ending in `&`), page by page.
async fn all_orders(admin: &mut Client, query: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor = String::new();
    for _ in 0..PAGES_MAX {
        let page = admin
            .get(&format!(
                "/admin/orders?{query}limit={PAGE_ITEMS_MAX}{cursor}"
            ))
            .await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        orders.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return orders,
        }
    }
    panic!("the admin list of orders goes on past {PAGES_MAX} pages");
}
