//! The outcomes a caller of the engine branches on. The HTTP layer maps each variant to one
//! problem `type` in one place.

use crate::accounts::AccountError;
use crate::catalog::CatalogError;
use crate::orders::OrderError;
use crate::record::Seq;
use crate::state::StockError;

/// Every answer of the engine other than success: a caller's mistake, a conflict with the
/// current state, or (`Internal`, `Open`, `LogFailed`, `ShuttingDown`) a failure no caller caused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A refusal of the stock: a SKU or reservation that is not there, or more units than it
    /// can give.
    #[error(transparent)]
    Stock(#[from] StockError),
    /// A refusal of an account step: verification, signup, login, refresh, a profile.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A refusal of a catalog or wishlist step.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A refusal of an order step: placement, payment, cancellation, shipping, a return.
    #[error(transparent)]
    Order(#[from] OrderError),
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

// A wire form's own errors become the engine's through the order step they belong to, so a
// parse can be `?`-ed in any engine method.
impl From<crate::orders::InvalidAddress> for EngineError {
    fn from(invalid: crate::orders::InvalidAddress) -> Self {
        OrderError::from(invalid).into()
    }
}

impl From<crate::orders::InvalidOrderInput> for EngineError {
    fn from(invalid: crate::orders::InvalidOrderInput) -> Self {
        OrderError::from(invalid).into()
    }
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
