//! The write-ahead log's vocabulary. Every change of state is one `Record`; the log is the
//! source of truth and every view is rebuilt by applying records in order.

use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;
use crate::ids::{ReservationId, Sku, UserId};

/// Log sequence number: the position of a record in the log, starting at 1.
pub type Seq = u64;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Record {
    /// A SKU came into existence with `stock_total` units for sale.
    SkuCreated {
        sku: Sku,
        stock_total: u32,
        per_user_limit: Option<u32>,
    },
    /// Units were taken from `sku` and are held for `user` until `deadline_ms`.
    StockReserved {
        reservation: ReservationId,
        sku: Sku,
        user: UserId,
        quantity: u32,
        deadline_ms: Millis,
    },
    /// The held units were sold: they never return to `available`.
    ReservationCommitted { reservation: ReservationId },
    /// The held units went back on sale.
    ReservationReleased {
        reservation: ReservationId,
        reason: ReleaseReason,
    },
    /// More units were added to a SKU.
    Restocked { sku: Sku, quantity: u32 },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ReleaseReason {
    /// The customer (or the saga on their behalf) gave the units back.
    Cancelled,
    /// The deadline passed before the reservation was committed.
    Expired,
    /// Payment failed for good.
    PaymentFailed,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Expired => "expired",
            ReleaseReason::PaymentFailed => "payment_failed",
        }
    }
}
