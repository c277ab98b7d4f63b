//! allot's engine: lock-free per-SKU counters decide who gets a unit, a group-committed
//! write-ahead log on sled makes every decision durable, and snapshots plus replay rebuild the
//! state after a restart. See DESIGN.md, "The engine".

pub mod accounts;
pub mod backup;
pub(crate) mod catalog;
pub mod clock;
pub(crate) mod cold;
pub mod config;
pub(crate) mod counter;
pub mod crypto;
pub mod durable;
mod engine;
pub(crate) mod error;
pub mod events;
pub(crate) mod ids;
mod inspect;
pub mod orders;
pub mod password;
pub mod payment;
pub mod record;
pub(crate) mod recovery;
pub mod state;
mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testkit;
pub mod wal;
pub mod wishlist;

pub use accounts::Email;
pub use catalog::{
    DEFAULT_CURRENCY, NewProduct, Product, ProductChange, ProductChangeForm, ProductForm,
    ProductStatus, ProductVersion,
};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use config::{Durability, EngineConfig};
pub use counter::{SKU_UNITS_MAX, SkuCounter, StockCounts};
pub use crypto::Keys;
pub use engine::accounts::{Profile, ProfileChange, RefreshOutcome, SignupProfile};
pub use engine::catalog::ProductView;
pub use engine::payments::{Paid, Payments};
pub use engine::{Engine, EngineStats};
pub use error::{ApplyError, EngineError, Internal, OpenError};
pub use ids::{OrderId, ProductId, ReservationId, Sku, UserId};
pub use inspect::{ColdCheck, Inspection, SnapshotInfo, inspect};
pub use orders::{
    AddressForm, IdempotencyKey, OrderForm, OrderRequest, ReturnReason, Shipment, ShipmentForm,
    ShippingAddress,
};
pub use record::{ProductDetails, ProductKind, Record, ReleaseReason, Role, Seq};
pub use recovery::{RecoveryReport, TailCut};
pub use state::{Reservation, ReservationStatus, StateImage};
pub use wal::Ticket;
