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

/// Where an order is in its saga, from placement to its last step.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum OrderStatus {
    /// Placed and not paid yet: the units are held until the deadline.
    PendingPayment,
    /// The last payment attempt did not charge: still payable, units held, until the deadline.
    PaymentFailed,
    /// Charged: the units are sold; it can be shipped, or cancelled with a refund.
    Paid,
    /// Handed to a carrier, with a tracking number.
    Shipped,
    /// Delivered: a return may be asked for until the return window passes.
    Delivered,
    /// The customer asked to return it; the return waits for approval.
    ReturnRequested,
    /// The return was approved: the units are back on sale and the charge is to be refunded.
    Returned,
    /// The deadline passed unpaid: the units are back on sale.
    Expired,
    /// Cancelled before shipping: the units are back on sale, and the charge is to be refunded
    /// if it was paid.
    Cancelled,
}

impl OrderStatus {
    /// The status's name in snake case (`pending_payment`, `paid`, …), as the API shows it.
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

/// An order as the log has made it so far: its lines, its status and every step's facts.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The order's id.
    pub id: OrderId,
    /// The customer who placed it.
    pub user: UserId,
    /// The lines as sold: product version, unit price and quantity, in the order asked.
    pub lines: Vec<OrderLine>,
    /// The one currency of every line, ISO 4217.
    pub currency: String,
    /// The sum of unit price times quantity over the lines, in the currency's minor units.
    pub total: u64,
    /// The shipping address, sealed (encrypted, bound to this order): no plaintext is kept.
    pub shipping_address: Sealed,
    /// Where the order is in its saga.
    pub status: OrderStatus,
    /// The payment deadline (ms since the epoch): unpaid past it, the order expires.
    pub deadline_ms: Millis,
    /// When the order was placed (ms since the epoch).
    pub created_ms: Millis,
    /// Payment attempts made so far; the provider's key of attempt n is `ord_…/n`.
    pub attempts: u32,
    /// An attempt asked of the provider whose answer is not known yet.
    pub payment_in_flight: Option<u32>,
    /// Why the last attempt did not charge; cleared once paid.
    pub last_failure: Option<PaymentFailure>,
    /// The attempt that charged, once paid.
    pub paid_attempt: Option<u32>,
    /// Cancelled after payment or returned: the charge must be refunded (and is, once
    /// `refunded`).
    pub refund_due: bool,
    /// The provider has refunded the charge.
    pub refunded: bool,
    /// Carrier and tracking number, once shipped.
    pub tracking: Option<(String, String)>,
    /// When it was delivered (ms since the epoch); the return window runs from here.
    pub delivered_ms: Option<Millis>,
    /// The customer's reason, once a return is asked for.
    pub return_reason: Option<String>,
    /// Every status it has had with when it began (ms since the epoch), oldest first.
    pub history: Vec<(OrderStatus, Millis)>,
    /// Keyed hashes of (user, Idempotency-Key) and of the request.
    pub idempotency: Digest,
    /// Keyed hash of the request in its canonical form: a retry must ask the same.
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
    /// The product to buy.
    pub product: ProductId,
    /// Units of it, 1 to 1,000.
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
    /// The card was charged: the order is paid.
    Charged,
    /// The card was not charged, for the reason given; the order stays payable.
    Failed(PaymentFailure),
    /// No answer; ask the provider again later.
    TimedOut,
}

/// Why an order step was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The provider did not confirm a due refund; the refund stays due and is asked again, so
    /// retrying is safe.
    #[error("the payment provider did not confirm the refund of order {0}; it is asked again")]
    RefundNotConfirmed(OrderId),
    /// The caller named an order the engine does not know.
    #[error("order {0} does not exist")]
    OrderNotFound(OrderId),
    /// An order id that does not parse: the text as it was sent.
    #[error("order {0:?} does not exist")]
    OrderUnknown(String),
    /// The caller's shipping address broke one of its rules.
    #[error(transparent)]
    InvalidAddress(#[from] crate::orders::InvalidAddress),
    /// A return's reason or a shipment sent by the caller broke its rule.
    #[error(transparent)]
    InvalidOrderInput(#[from] crate::orders::InvalidOrderInput),
    /// An order's lines broke a rule (their count, a product twice, two currencies); the text
    /// names it.
    #[error("{0}")]
    InvalidOrder(&'static str),
    /// The product's sale window has not begun; the same request may succeed later.
    #[error("the sale of {0} has not opened yet")]
    SaleNotOpen(ProductId),
    /// The product's sale window has ended.
    #[error("the sale of {0} has closed")]
    SaleClosed(ProductId),
    /// The caller sent an Idempotency-Key again with a different request body.
    #[error("this Idempotency-Key was used with another request")]
    IdempotencyKeyReused,
    /// The first request with this key is not durable yet; the caller may retry shortly and
    /// get its answer.
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyKeyInUse,
    /// The order's payment deadline has passed, or it has expired; it can no longer be paid.
    #[error("the order expired before it was paid")]
    OrderExpired,
    /// A payment attempt of the order still awaits its outcome; the step is refused until it is
    /// settled.
    #[error("a payment of this order is being processed")]
    PaymentInProgress,
    /// The step does not follow from the order's status (for example shipping an unpaid
    /// order); the text is the status.
    #[error("the order is {0}; this step does not apply")]
    OrderStateConflict(&'static str),
    /// The order's status no longer allows a cancel; the text is the status.
    #[error("the order is {0} and can no longer be cancelled")]
    NotCancellable(&'static str),
    /// A return of an order that is not delivered, or after its return window; the text says
    /// which.
    #[error("the order cannot be returned: {0}")]
    NotReturnable(&'static str),
}
