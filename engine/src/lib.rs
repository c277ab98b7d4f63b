//! allot's engine: lock-free per-SKU counters decide who gets a unit, a group-committed
//! write-ahead log on sled makes every decision durable, and snapshots plus replay rebuild the
//! state after a restart. ARCHITECTURE.md in the repository is the map: the layers, where each
//! kind of rule lives, the write path, the two tiers.
//!
//! A drop in a few lines: units are taken at once (exactly, whoever races), an answer waits
//! for its record to be durable, and a reopened engine has the same counts.
//!
//! ```
//! use std::sync::Arc;
//!
//! use allot_engine::{
//!     Engine, EngineConfig, NewProduct, ProductDetails, ProductKind, Sku, SystemClock, UserId,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = EngineConfig::new(dir.path());
//! let engine = Engine::open(config.clone(), Arc::new(SystemClock::new()))?;
//! let (view, created) = engine.create_product(NewProduct {
//!     kind: ProductKind::General,
//!     details: ProductDetails {
//!         name: "Canvas Tote".into(),
//!         description: String::new(),
//!         price: 39_000,
//!         currency: "KRW".into(),
//!     },
//!     sale_opens_ms: None,
//!     sale_closes_ms: None,
//!     per_user_limit: None,
//!     stock_total: 2,
//! })?;
//! created.wait()?;
//! let sku = Sku(view.product.id.0);
//! let (held, ticket) = engine.reserve(UserId(1), sku, 2, 60_000)?;
//! ticket.wait()?; // durable: only now may the customer be told
//! assert!(engine.reserve(UserId(2), sku, 1, 60_000).is_err()); // sold out, exactly
//! engine.commit(held)?.wait()?;
//! engine.close()?;
//! drop(engine); // the data directory is locked while a handle lives
//!
//! let reopened = Engine::open(config, Arc::new(SystemClock::new()))?;
//! assert_eq!(reopened.stock(sku).map(|counts| counts.sold), Some(2));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub(crate) mod accounts;
pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod checkpoint;
pub(crate) mod clock;
pub(crate) mod cold;
pub(crate) mod config;
pub(crate) mod counter;
pub(crate) mod crypto;
pub(crate) mod durable;
mod engine;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod ids;
mod inspect;
pub(crate) mod limits;
pub(crate) mod orders;
pub(crate) mod password;
pub(crate) mod payment;
pub(crate) mod progress;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod state;
mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testkit;
pub(crate) mod wal;
pub mod wire;
pub(crate) mod wishlist;

pub use accounts::AccountError;
pub use accounts::{
    EMAIL_BYTES_MAX, EMAIL_PATTERN, EXPIRED_KEPT_MS, Email, VERIFICATION_CODE_TTL_MS,
};
pub use backup::{BackupError, CopyReport, backup, backup_with, restore, restore_with};
pub use catalog::CatalogError;
pub use catalog::{
    DEFAULT_CURRENCY, NewProduct, Product, ProductChange, ProductChangeForm, ProductForm,
    ProductStatus, ProductVersion,
};
pub use checkpoint::CheckpointHealth;
pub use clock::{Clock, ManualClock, Millis, SystemClock, parse_rfc3339, rfc3339};
pub use config::{Durability, EVENTS_KEPT_RECORDS_DEFAULT, EngineConfig};
pub use counter::{SKU_UNITS_MAX, SkuCounter, StockCounts};
pub use crypto::{JWT_KEY_BYTES_MIN, KeyError, Keys, TOKEN_BYTES, constant_time_eq, random_token};
pub use durable::{create_dir_all, sync_dir};
pub use engine::accounts::{
    ADDRESS_CHARS_MAX, ADDRESS_PATTERN, NAME_CHARS_MAX, NAME_PATTERN, PHONE_CHARS_MAX,
    PHONE_PATTERN, Profile, ProfileChange, RefreshOutcome, SignupProfile, USERS_PAGE_MAX,
};
pub use engine::catalog::ProductView;
pub use engine::login::LoginAttempt;
pub use engine::payments::{Paid, Payments};
pub use engine::{Engine, EngineStats};
pub use error::{ApplyError, EngineError, Internal, LogFailure, OpenError};
pub use events::{Event, EventKind, PAGE_MAX as EVENTS_PAGE_MAX, Subject};
pub use ids::{InvalidId, OrderId, ProductId, ReservationId, Sku, UserId};
pub use inspect::{ColdCheck, Inspection, SnapshotInfo, inspect, inspect_with};
pub use limits::{
    IP_BUDGET_ADDRESSES_MAX, IpBudget, LOGIN_FAILURE_WINDOW_MS, LOGIN_FAILURES_MAX,
    LOGIN_THROTTLE_ACCOUNTS_MAX, RetryAfter,
};
pub use orders::OrderError;
pub use orders::{
    ADDRESS_LINE_CHARS_MAX, AddressForm, CITY_CHARS_MAX, IDEMPOTENCY_KEY_BYTES_MAX, IdempotencyKey,
    InvalidAddress, InvalidIdempotencyKey, InvalidOrderInput, LineForm, LineRequest,
    ORDER_LINES_MAX, Order, OrderForm, OrderRequest, OrderStatus,
    PHONE_CHARS_MAX as ADDRESS_PHONE_CHARS_MAX, POSTAL_CODE_CHARS_MAX, PaymentOutcome, Placement,
    RECIPIENT_CHARS_MAX, RETURN_REASON_CHARS_MAX, ReturnReason, SHIPMENT_FIELD_CHARS_MAX, Shipment,
    ShipmentForm, ShippingAddress,
};
pub use password::{
    PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN, WeakPassword, check_policy, hash_password,
    verify_dummy, verify_password,
};
pub use payment::{
    CARD_NUMBER_DIGITS_MAX, CARD_NUMBER_DIGITS_MIN, Card, ChargeOutcome, ChargeStatus, InvalidCard,
    PaymentProvider, PaymentSimulator, ProviderTimeout,
};
pub use progress::{Progress, Silent};
pub use record::{PaymentFailure, ProductDetails, ProductKind, Record, ReleaseReason, Role, Seq};
pub use recovery::{RecoveryReport, TailCut};
pub use state::StockError;
pub use state::{Reservation, ReservationStatus, SkuImage, StateImage};
pub use wal::histogram::HistogramSnapshot;
pub use wal::{LogHistograms, Ticket};
pub use wishlist::{WISHLIST_NOTE_CHARS_MAX, WISHLIST_QUANTITY_MAX, WishItem};
