//! Fixtures for tests of the engine and of what is built on it (feature `test-support`): the
//! address, keys, requests, products, placements, accounts, the simulator's cards and the
//! JSON bodies of the API. Defined here once, so no test file spells them again.

use crate::accounts::Email;
use crate::catalog::NewProduct;
use crate::clock::Millis;
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::engine::accounts::SignupProfile;
use crate::error::EngineError;
use crate::ids::{OrderId, ProductId, UserId};
use crate::orders::{
    AddressForm, IdempotencyKey, LineRequest, Order, OrderRequest, Placement, ReturnReason,
    Shipment, ShipmentForm, ShippingAddress,
};
use crate::record::{ProductDetails, ProductKind};

/// The engine's internals that tests and benchmarks look into, and nothing else should: the
/// invariant check of a state image, the log's batch encoding, the store's files on disk.
pub mod internals {
    pub use crate::durable::SledFiles;

    /// sled itself on the store of the data directory `data_dir`, for a test that reads or
    /// damages it below the engine, once the engine let go of it: sled's last worker thread of
    /// an engine closed a moment ago may still hold sled's file lock, which this waits out
    /// (`store::open_sled`).
    pub fn open_sled(data_dir: &std::path::Path) -> sled::Db {
        let config = sled::Config::new().path(data_dir.join("store"));
        crate::store::open_sled(&config).expect("sled opens the store")
    }
    pub use crate::state::check_invariants_of;
    pub use crate::wal::batch;

    /// Makes the next `count` snapshot writes of `engine` fail as a storage error would, so a
    /// test sees a checkpoint fail, be reported and be retried (0 clears what is planned).
    pub fn fail_next_checkpoints(engine: &crate::Engine, count: u32) {
        engine.plan_checkpoint_faults(count);
    }

    /// Removes every log batch keyed after `seq` from the store in `data_dir`, as a disk that
    /// lost the tail would, and leaves the other trees as they are. There must be such a batch.
    pub fn lose_log_after(data_dir: &std::path::Path, seq: u64) {
        let db = sled::open(data_dir.join("store")).expect("open the store");
        let log = db.open_tree("log").expect("open the log tree");
        let keys: Vec<_> = log
            .range((seq + 1).to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .expect("read the log's keys");
        assert!(!keys.is_empty(), "nothing to lose after {seq}");
        for key in keys {
            log.remove(key).expect("remove a batch");
        }
        db.flush().expect("flush the store");
    }
}

/// What a made change answers once its record is durable: `made` must have succeeded.
pub fn durable<T>(made: Result<(T, crate::wal::Ticket), EngineError>) -> T {
    let (made, ticket) = made.expect("the change is taken");
    ticket.wait().expect("the change is durable");
    made
}

/// Closes `engine` and inspects the data directory it ran on, which must verify clean.
pub fn close_and_inspect(engine: Engine, data_dir: &std::path::Path) -> crate::Inspection {
    engine.close().expect("a clean close");
    drop(engine);
    let inspection = crate::inspect(data_dir).expect("inspect the data directory");
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    inspection
}

/// Fails the test unless one of `claims` (problems found, claims of a recovery report) contains
/// every one of `words`.
pub fn assert_mentions(claims: &[String], words: &[&str]) {
    assert!(
        claims
            .iter()
            .any(|claim| words.iter().all(|word| claim.contains(word))),
        "none of {claims:?} mentions all of {words:?}"
    );
}

/// The address every test order goes to, as a form (for wire tests).
pub fn address_form() -> AddressForm {
    AddressForm {
        recipient: "Kim Minji".into(),
        phone: "010-1234-5678".into(),
        line1: "1 Main St".into(),
        line2: None,
        city: "Seoul".into(),
        postal_code: "04524".into(),
        country: "KR".into(),
    }
}

/// The address every test order goes to.
pub fn address() -> ShippingAddress {
    address_to("Kim Minji")
}

/// The test address with another recipient: the same lines to another address are another
/// request.
pub fn address_to(recipient: &str) -> ShippingAddress {
    let form = AddressForm {
        recipient: recipient.into(),
        ..address_form()
    };
    ShippingAddress::try_from(form).expect("the test address is valid")
}

/// An Idempotency-Key from a test's text.
pub fn key_of(text: &str) -> IdempotencyKey {
    text.parse().expect("a test key is 1 to 128 bytes")
}

/// One line of `quantity` units of `product`.
pub fn line(product: ProductId, quantity: u32) -> LineRequest {
    LineRequest { product, quantity }
}

/// A request for `lines` to the test address.
pub fn request(lines: &[LineRequest]) -> OrderRequest {
    OrderRequest::new(lines.to_vec(), address())
}

/// A request for `lines` to the test address with another recipient.
pub fn request_to(lines: &[LineRequest], recipient: &str) -> OrderRequest {
    OrderRequest::new(lines.to_vec(), address_to(recipient))
}

/// A shipment with this carrier and tracking number.
pub fn shipment(carrier: &str, tracking_number: &str) -> Shipment {
    Shipment::try_from(ShipmentForm {
        carrier: carrier.into(),
        tracking_number: tracking_number.into(),
    })
    .expect("a test shipment is valid")
}

/// A return's reason.
pub fn reason(text: &str) -> ReturnReason {
    ReturnReason::try_from(text.to_string()).expect("a test reason is short")
}

// ----- products, placements ----------------------------------------------------------------

/// A general product: `stock` units at `price` (KRW), no sale window, no per-customer limit.
pub fn general(name: &str, price: u64, stock: u32) -> NewProduct {
    NewProduct {
        kind: ProductKind::General,
        details: ProductDetails {
            name: name.into(),
            description: String::new(),
            price,
            currency: "KRW".into(),
        },
        sale_opens_ms: None,
        sale_closes_ms: None,
        per_user_limit: None,
        stock_total: stock,
    }
}

/// A limited product on sale from `opens_ms` to `closes_ms`, at most `per_user_limit` units
/// a customer.
pub fn limited(
    name: &str,
    price: u64,
    stock: u32,
    (opens_ms, closes_ms): (Millis, Millis),
    per_user_limit: u32,
) -> NewProduct {
    NewProduct {
        kind: ProductKind::Limited,
        sale_opens_ms: Some(opens_ms),
        sale_closes_ms: Some(closes_ms),
        per_user_limit: Some(per_user_limit),
        ..general(name, price, stock)
    }
}

/// Creates `product` and waits until it is durable.
pub fn create(engine: &Engine, product: NewProduct) -> ProductId {
    let (view, ticket) = engine
        .create_product(product)
        .expect("the test product is valid");
    ticket.wait().expect("the log takes the product");
    view.product.id
}

/// Places `lines` for `user` under `key` (to the test address) and waits until it is durable;
/// a replay answers the order placed before.
pub fn place(
    engine: &Engine,
    user: UserId,
    key: &str,
    lines: &[LineRequest],
    ttl_ms: Millis,
) -> Result<Order, EngineError> {
    match engine.place_order(user, &key_of(key), &request(lines), ttl_ms)? {
        Placement::Placed(order, ticket) => {
            ticket.wait()?;
            Ok(order)
        }
        Placement::Replayed(order) => Ok(order),
    }
}

/// Asks to pay `order` and records the provider's `outcome`, each durable; answers the order
/// as it then is.
pub fn pay(engine: &Engine, order: OrderId, outcome: crate::PaymentOutcome) -> Order {
    let (_, attempt, asked) = engine.request_payment(order).expect("a payment may start");
    asked.wait().expect("the request is durable");
    durable(engine.record_payment(order, attempt, outcome))
}

// ----- accounts ----------------------------------------------------------------------------

/// The password of every test account (it passes the policy).
pub const PASSWORD: &str = "Tr0ub4dor&3-horse";
/// The email of the test admin.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// A verified customer with the password hash `hash`, made in the engine (signing up over
/// HTTP costs a mail round trip and an argon2 hash each). Answers when it is durable.
pub fn create_customer(engine: &Engine, email: &str, name: &str, hash: &str) -> UserId {
    let email = Email::parse(email).expect("a test email is valid");
    let (code, _) = engine.request_verification(&email).expect("verification");
    let (token, _) = engine
        .confirm_verification(&email, &code)
        .expect("the code just sent");
    let profile = SignupProfile {
        name: name.into(),
        ..SignupProfile::default()
    };
    let (user, ticket) = engine
        .register(&token, hash.to_string(), profile)
        .expect("signup");
    ticket.wait().expect("the log takes the account");
    user
}

/// The admin [`ADMIN_EMAIL`] with the password hash `hash`.
pub fn create_admin(engine: &Engine, hash: &str) -> UserId {
    let email = Email::parse(ADMIN_EMAIL).expect("the admin email is valid");
    let (user, ticket) = engine
        .create_admin(&email, hash.to_string())
        .expect("the admin");
    ticket.wait().expect("the log takes the admin");
    user
}

// ----- the wire ----------------------------------------------------------------------------

/// The payment simulator's cards as a customer types them (API.md's card table).
pub mod cards {
    /// Charged.
    pub const APPROVED: &str = "4242 4242 4242 4242";
    /// Refused: `declined`.
    pub const DECLINED: &str = "4000 0000 0000 0002";
    /// Refused: `limit_exceeded`.
    pub const LIMIT_EXCEEDED: &str = "4000 0000 0000 9995";
    /// No answer, and nothing charged: asking again charges.
    pub const TIMEOUT_NOT_CHARGED: &str = "4000 0000 0000 0119";
    /// No answer, but charged: asking again finds the charge.
    pub const TIMEOUT_CHARGED: &str = "4000 0000 0000 0259";
}

/// A shipping address as a customer sends it.
pub fn address_json() -> serde_json::Value {
    serde_json::json!({
        "recipient": "Kim Min-ji",
        "phone": "+82 10-1234-5678",
        "line1": "152 Teheran-ro, Gangnam-gu",
        "line2": "Apt 1203",
        "city": "Seoul",
        "postal_code": "06236",
        "country": "KR",
    })
}

/// A `POST /orders` body for `lines` of (product id, quantity), to [`address_json`].
pub fn order_json<P: AsRef<str>>(lines: &[(P, u64)]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = lines
        .iter()
        .map(|(product, quantity)| {
            serde_json::json!({ "product_id": product.as_ref(), "quantity": quantity })
        })
        .collect();
    serde_json::json!({ "items": items, "shipping_address": address_json() })
}

/// A `POST /orders/{id}/payment` body with `card` (valid until 12/39).
pub fn card_json(card: &str) -> serde_json::Value {
    serde_json::json!({ "card_number": card, "expiry": "12/39", "cvc": "123" })
}

/// A product's units, as `GET /products/{id}/stock` reads them: the one shape every HTTP test
/// compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Units {
    /// Units on sale.
    pub remaining: u64,
    /// Units held by unpaid orders.
    pub reserved: u64,
    /// Units paid for.
    pub sold: u64,
}

impl Units {
    /// The units in these three states.
    pub const fn new(remaining: u64, reserved: u64, sold: u64) -> Self {
        Self {
            remaining,
            reserved,
            sold,
        }
    }

    /// The units of a stock answer's body; a field that is not a count fails the test.
    pub fn of_stock_json(body: &serde_json::Value) -> Self {
        let count = |field: &str| {
            body[field]
                .as_u64()
                .unwrap_or_else(|| panic!("{field} is not a count: {body:?}"))
        };
        Self::new(count("remaining"), count("reserved"), count("sold"))
    }

    /// All units of the product, whatever their state.
    pub const fn total(self) -> u64 {
        self.remaining + self.reserved + self.sold
    }
}

/// The ids of a list page's `items`; the page must have been read (200).
pub fn item_ids(status: u16, page: &serde_json::Value) -> Vec<String> {
    assert_eq!(status, 200, "{page:?}");
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {page:?}"))
        .iter()
        .map(|item| {
            item["id"]
                .as_str()
                .unwrap_or_else(|| panic!("an item without an id: {item:?}"))
                .to_string()
        })
        .collect()
}

// ----- engines -----------------------------------------------------------------------------

/// A test engine's configuration: no snapshot at close, so a reopen replays the log and the
/// test decides when a checkpoint covers it.
pub fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        snapshot_on_close: false,
        ..EngineConfig::new(dir)
    }
}
