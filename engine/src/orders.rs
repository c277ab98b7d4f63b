//! Orders: the saga's state, as a view of the log. Each step is one `OrderRecord`; the order
//! changes under its own lock while the record is queued, and units move (sold, released,
//! back on sale) only in the after-durable step, like every give-back in the engine.

mod input;

use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;
use crate::ids::{OrderId, ProductId, UserId};
use crate::record::{Digest, OrderLine, PaymentFailure, Sealed};

pub use input::{
    ADDRESS_LINE_CHARS_MAX, AddressForm, CITY_CHARS_MAX, IDEMPOTENCY_KEY_BYTES_MAX, IdempotencyKey,
    InvalidAddress, InvalidIdempotencyKey, InvalidOrderInput, LineForm, OrderForm, OrderRequest,
    PHONE_CHARS_MAX, POSTAL_CODE_CHARS_MAX, RECIPIENT_CHARS_MAX, RETURN_REASON_CHARS_MAX,
    ReturnReason, SHIPMENT_FIELD_CHARS_MAX, Shipment, ShipmentForm, ShippingAddress,
};

/// Most lines in one order.
pub const ORDER_LINES_MAX: usize = 20;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum OrderStatus {
    PendingPayment,
    PaymentFailed,
    Paid,
    Shipped,
    Delivered,
    ReturnRequested,
    Returned,
    Expired,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::ReturnRequested => "return_requested",
            OrderStatus::Returned => "returned",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Still waiting for its money: the units are held, the deadline runs.
    pub fn is_unpaid(self) -> bool {
        matches!(
            self,
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed
        )
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user: UserId,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub total: u64,
    pub shipping_address: Sealed,
    pub status: OrderStatus,
    pub deadline_ms: Millis,
    pub created_ms: Millis,
    /// Payment attempts made so far; the provider's key of attempt n is `ord_…/n`.
    pub attempts: u32,
    /// An attempt asked of the provider whose answer is not known yet.
    pub payment_in_flight: Option<u32>,
    pub last_failure: Option<PaymentFailure>,
    /// The attempt that charged, once paid.
    pub paid_attempt: Option<u32>,
    /// Cancelled after payment or returned: the charge must be refunded (and is, once
    /// `refunded`).
    pub refund_due: bool,
    pub refunded: bool,
    /// Carrier and tracking number, once shipped.
    pub tracking: Option<(String, String)>,
    pub delivered_ms: Option<Millis>,
    pub return_reason: Option<String>,
    pub history: Vec<(OrderStatus, Millis)>,
    /// Keyed hashes of (user, Idempotency-Key) and of the request.
    pub idempotency: Digest,
    pub request: Digest,
}

impl Order {
    pub(crate) fn set_status(&mut self, status: OrderStatus, at_ms: Millis) {
        self.status = status;
        self.history.push((status, at_ms));
    }

    /// The provider's idempotency key of a payment attempt: a retry after a crash asks with
    /// the same key and is never charged twice; a new card is a new attempt.
    pub fn payment_key(&self, attempt: u32) -> String {
        format!("{}/{attempt}", self.id)
    }
}

/// One line of an order as the customer asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRequest {
    pub product: ProductId,
    pub quantity: u32,
}

/// How a placement request ended.
#[derive(Debug)]
pub enum Placement {
    /// A new order; durable once the ticket is.
    Placed(Order, crate::wal::Ticket),
    /// The same Idempotency-Key and request were placed before: the same order again.
    Replayed(Order),
}

/// What the provider answered for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Charged,
    Failed(PaymentFailure),
    /// No answer; ask the provider again later.
    TimedOut,
}
