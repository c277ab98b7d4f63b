//! The outcomes a caller of the engine branches on. The HTTP layer maps each variant to one
//! problem `type` in one place.

use crate::clock::Millis;
use crate::ids::{OrderId, ProductId, ReservationId, Sku, UserId};
use crate::record::Seq;

/// Every answer of the engine other than success: a caller's mistake, a conflict with the
/// current state, or (`Internal`, `Open`, `LogFailed`, `ShuttingDown`) a failure no caller caused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller named a SKU the engine does not know.
    #[error("SKU {0} does not exist")]
    SkuNotFound(Sku),
    /// The caller tried to create a SKU under an id that is taken.
    #[error("SKU {0} exists already")]
    SkuExists(Sku),
    /// Fewer units are available than were asked for; nothing was taken.
    #[error("only {available} unit(s) left")]
    SoldOut {
        /// The units available when the request was refused.
        available: u64,
    },
    /// The customer would hold more units of a SKU than its per-customer limit allows.
    #[error("the purchase limit of {limit} unit(s) per customer would be exceeded")]
    PurchaseLimitExceeded {
        /// The SKU's per-customer limit, in units.
        limit: u32,
    },
    /// The caller asked for 0 units or more than a single request may take (also a
    /// per-customer limit of 0 on a new SKU).
    #[error("quantity must be between 1 and {max}")]
    InvalidQuantity {
        /// The largest quantity accepted, in units.
        max: u32,
    },
    /// A restock would give the SKU more units than its counter can hold; nothing was added.
    #[error("a SKU holds at most {max} units over its lifetime")]
    StockLimitExceeded {
        /// The most units a SKU may ever be given (`SKU_UNITS_MAX`).
        max: u64,
    },
    /// The caller named a reservation the engine does not know.
    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),
    /// The reservation can no longer be committed or released: it is closed, already closing,
    /// or belongs to an order (which handles it).
    #[error("reservation {id} is {status}, not active")]
    ReservationNotActive {
        /// The reservation asked about.
        id: ReservationId,
        /// Its state in words, such as "closing" or "a line of an order".
        status: &'static str,
    },
    /// A commit came after the reservation's deadline, even if its expiry is not logged yet.
    #[error("reservation {id} expired at {deadline_ms}")]
    ReservationExpired {
        /// The reservation asked about.
        id: ReservationId,
        /// When it expired, in ms since the Unix epoch.
        deadline_ms: Millis,
    },
    /// The caller sent an email address that fails the engine's address rules.
    #[error("that is not a valid email address")]
    InvalidEmail,
    /// The verification code is wrong, or no code was asked for this address; a wrong code is
    /// counted against the attempts.
    #[error("wrong or unknown code")]
    InvalidCode,
    /// The verification code was right but its lifetime has passed.
    #[error("the code has expired; request a new one")]
    CodeExpired,
    /// The code was refused too often (`VERIFICATION_ATTEMPTS_MAX`); only a new code helps.
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    /// The caller asked for a new code too soon after the last one for the same address.
    #[error("a code was sent moments ago; wait {retry_after_ms} ms before asking again")]
    VerificationCooldown {
        /// How long to wait before asking again, in ms.
        retry_after_ms: Millis,
    },
    /// The signup token is unknown, was spent on an account, or has expired.
    #[error("the verification token is invalid, used or expired")]
    InvalidVerificationToken,
    /// A signup for an address that already has an account.
    #[error("an account with this email exists")]
    EmailTaken,
    /// A profile field (name, phone, address) broke its rule; the text names the rule.
    #[error("{0}")]
    InvalidProfile(&'static str),
    /// The caller named a user the engine does not know.
    #[error("user {0} does not exist")]
    UserNotFound(UserId),
    /// The refresh token is unknown, past its expiry, or its session has ended; the client has
    /// to log in again.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefresh,
    /// A login's email or password is wrong (an unknown address answers the same); the try
    /// counts against the account's failure budget.
    #[error("the email or the password is wrong")]
    InvalidCredentials,
    /// The account failed too many logins lately (`LOGIN_FAILURES_MAX` within
    /// `LOGIN_FAILURE_WINDOW_MS`); nothing was checked.
    #[error("too many failed logins; try again in {retry_after_s} s")]
    LoginThrottled {
        /// Whole seconds until the oldest counted failure leaves the window.
        retry_after_s: u64,
    },
    /// The caller named a product the engine does not know.
    #[error("product {0} does not exist")]
    ProductNotFound(ProductId),
    /// A product id that does not parse: the text as it was sent.
    #[error("product {0:?} does not exist")]
    ProductUnknown(String),
    /// A product's form broke a rule (kind, price, stock, sale window), or the product
    /// exists already; the text names the rule.
    #[error("{0}")]
    InvalidProduct(&'static str),
    /// A wishlist change broke a rule (quantity, note length, list size); the text names it.
    #[error("{0}")]
    InvalidWishlistItem(&'static str),
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
    /// The log is closed for the engine's shutdown; no new write is taken.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// Writing the log failed, an internal failure: from then on the log refuses every write.
    #[error("the log stopped taking writes: {0}")]
    LogFailed(LogFailure),
    /// A failure inside the engine that no caller caused; see [`Internal`].
    #[error(transparent)]
    Internal(#[from] Internal),
    /// The storage failed or returned damaged data while the engine was running.
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

/// Why the log stopped taking writes. Each kind says what an operator faces: a store that
/// refused a write (a full disk, an I/O error), a durable batch memory could not follow (a
/// defect: the views and the log differ, so nothing more is decided on them), or a writer
/// that died.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogFailure {
    /// The store refused the batch; none of its callers was told it is durable.
    #[error("batch {first_seq} could not be written: {reason}")]
    Write {
        /// The first sequence number of the batch.
        first_seq: Seq,
        /// What the store said.
        reason: String,
    },
    /// The batch is durable, but applying it to memory failed.
    #[error("batch {first_seq} is durable but could not be completed: {reason}")]
    Incomplete {
        /// The first sequence number of the batch.
        first_seq: Seq,
        /// Which rule the state broke.
        reason: String,
    },
    /// The writer thread panicked.
    #[error("the log writer panicked")]
    WriterPanicked,
}

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock; the text is the directory's path.
    #[error("the data directory {0} is in use by another process")]
    Locked(String),
    /// The operating system refused a file operation on the directory.
    #[error("I/O error on the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The sled store reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The stored data breaks the engine's rules (a bad record, snapshot or layout): damage or
    /// tampering, never a caller's mistake.
    #[error("the data directory is damaged: {0}")]
    Corrupt(String),
    /// The key file could not be read or is not valid.
    #[error("the key file: {0}")]
    Keys(#[from] crate::crypto::KeyError),
}

/// A record that cannot be applied to the state it follows: in a live run a bug, in a replay a
/// damaged or tampered log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {reason}")]
pub struct ApplyError {
    /// The sequence number of the record that was refused.
    pub seq: Seq,
    /// Which rule the record breaks.
    pub reason: String,
}
