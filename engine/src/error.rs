//! The outcomes a caller of the engine branches on. The HTTP layer maps each variant to one
//! problem `type` in one place.

use crate::clock::Millis;
use crate::ids::{OrderId, ProductId, ReservationId, Sku, UserId};
use crate::record::Seq;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("SKU {0} does not exist")]
    SkuNotFound(Sku),
    #[error("SKU {0} exists already")]
    SkuExists(Sku),
    #[error("only {available} unit(s) left")]
    SoldOut { available: u64 },
    #[error("the purchase limit of {limit} unit(s) per customer would be exceeded")]
    PurchaseLimitExceeded { limit: u32 },
    #[error("quantity must be between 1 and {max}")]
    InvalidQuantity { max: u32 },
    #[error("a SKU holds at most {max} units over its lifetime")]
    StockLimitExceeded { max: u64 },
    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),
    #[error("reservation {id} is {status}, not active")]
    ReservationNotActive {
        id: ReservationId,
        status: &'static str,
    },
    #[error("reservation {id} expired at {deadline_ms}")]
    ReservationExpired {
        id: ReservationId,
        deadline_ms: Millis,
    },
    #[error("that is not a valid email address")]
    InvalidEmail,
    #[error("wrong or unknown code")]
    InvalidCode,
    #[error("the code has expired; request a new one")]
    CodeExpired,
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    #[error("a code was sent moments ago; wait {retry_after_ms} ms before asking again")]
    VerificationCooldown { retry_after_ms: Millis },
    #[error("the verification token is invalid, used or expired")]
    InvalidVerificationToken,
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("{0}")]
    InvalidProfile(&'static str),
    #[error("user {0} does not exist")]
    UserNotFound(UserId),
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefresh,
    #[error("product {0} does not exist")]
    ProductNotFound(ProductId),
    /// A product id that does not parse: the text as it was sent.
    #[error("product {0:?} does not exist")]
    ProductUnknown(String),
    #[error("{0}")]
    InvalidProduct(&'static str),
    #[error("{0}")]
    InvalidWishlistItem(&'static str),
    #[error("the payment provider did not confirm the refund of order {0}; it is asked again")]
    RefundNotConfirmed(OrderId),
    #[error("order {0} does not exist")]
    OrderNotFound(OrderId),
    /// An order id that does not parse: the text as it was sent.
    #[error("order {0:?} does not exist")]
    OrderUnknown(String),
    #[error(transparent)]
    InvalidAddress(#[from] crate::orders::InvalidAddress),
    #[error(transparent)]
    InvalidOrderInput(#[from] crate::orders::InvalidOrderInput),
    #[error("{0}")]
    InvalidOrder(&'static str),
    #[error("the sale of {0} has not opened yet")]
    SaleNotOpen(ProductId),
    #[error("the sale of {0} has closed")]
    SaleClosed(ProductId),
    #[error("this Idempotency-Key was used with another request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyKeyInUse,
    #[error("the order expired before it was paid")]
    OrderExpired,
    #[error("a payment of this order is being processed")]
    PaymentInProgress,
    #[error("the order is {0}; this step does not apply")]
    OrderStateConflict(&'static str),
    #[error("the order is {0} and can no longer be cancelled")]
    NotCancellable(&'static str),
    #[error("the order cannot be returned: {0}")]
    NotReturnable(&'static str),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("the log could not be written, the engine stopped taking writes: {0}")]
    LogFailed(String),
    /// A failure inside the engine that no caller caused; see [`Internal`].
    #[error(transparent)]
    Internal(#[from] Internal),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// A failure inside the engine that no caller caused and no caller can mend: each kind says
/// where it arose, so an operator (and a log search) can tell a full disk from a bug.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Internal {
    /// A checkpoint (snapshot) could not be written; the log keeps everything meanwhile.
    #[error("a checkpoint could not be written: {0}")]
    Checkpoint(String),
    /// Retention (events, idempotency keys) could not prune; nothing is lost, memory and
    /// disk grow until it can.
    #[error("retention could not prune: {0}")]
    Retention(String),
    /// The store could not be flushed at close.
    #[error("the store could not be flushed: {0}")]
    Flush(String),
    /// A sealed field (an address, an email, a profile) does not open with the keys.
    #[error("{0} does not decrypt: wrong key file or damaged data")]
    Sealed(String),
    /// The cold tier could not be read or written.
    #[error("the cold tier: {0}")]
    ColdTier(String),
    /// A worker thread ended before it answered.
    #[error("a worker stopped before it answered")]
    WorkerStopped,
    /// The engine's own rules contradict each other: a defect, never a caller's mistake.
    #[error("a defect: {0}")]
    Defect(String),
}

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the data directory {0} is in use by another process")]
    Locked(String),
    #[error("I/O error on the data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("the data directory is damaged: {0}")]
    Corrupt(String),
    #[error("the key file: {0}")]
    Keys(#[from] crate::crypto::KeyError),
}

/// A record that cannot be applied to the state it follows: in a live run a bug, in a replay a
/// damaged or tampered log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {reason}")]
pub struct ApplyError {
    pub seq: Seq,
    pub reason: String,
}
