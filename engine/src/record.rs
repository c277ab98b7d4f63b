//! The write-ahead log's vocabulary. Every change of state is one `Record`; the log is the
//! source of truth and every view is rebuilt by applying records in order.

use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;
use crate::ids::{OrderId, ProductId, ReservationId, Sku, UserId};

/// Log sequence number: the position of a record in the log, starting at 1.
pub type Seq = u64;

/// One change of state, as the write-ahead log stores it (archived with rkyv).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Record {
    /// A SKU came into existence with `stock_total` units for sale.
    SkuCreated {
        /// The new SKU.
        sku: Sku,
        /// The units it starts with.
        stock_total: u32,
        /// The most units one customer may hold; `None` for no limit.
        per_user_limit: Option<u32>,
    },
    /// Units were taken from `sku` and are held for `user` until `deadline_ms`.
    StockReserved {
        /// The new reservation.
        reservation: ReservationId,
        /// The SKU the units were taken from.
        sku: Sku,
        /// The customer they are held for.
        user: UserId,
        /// How many units are held.
        quantity: u32,
        /// When the hold ends unless committed, in ms since the Unix epoch.
        deadline_ms: Millis,
    },
    /// The held units were sold: they never return to `available`.
    ReservationCommitted {
        /// The reservation that was committed.
        reservation: ReservationId,
    },
    /// The held units went back on sale.
    ReservationReleased {
        /// The reservation that was released.
        reservation: ReservationId,
        /// Why it was released.
        reason: ReleaseReason,
    },
    /// More units were added to a SKU.
    Restocked {
        /// The SKU restocked.
        sku: Sku,
        /// The units added.
        quantity: u32,
    },

    // The records below are boxed: rkyv archives every record at the size of its largest
    // variant, and these carry digests, sealed fields and strings. Boxed, they cost the hot
    // path's records (reserve, commit, release) nothing.
    /// A change of accounts: verifications, users, sessions and their retention.
    Account(Box<AccountRecord>),
    /// A change of the catalog (products and their versions) or of a wishlist.
    Catalog(Box<CatalogRecord>),
    /// One step of an order's saga.
    Order(Box<OrderRecord>),
}

/// Account records. Secrets appear only as keyed hashes, personal data only sealed
/// (AES-256-GCM, bound to its row and field): the log holds no plaintext of either.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum AccountRecord {
    /// A 6-digit code was mailed to the address behind `email_index`.
    VerificationIssued {
        email_index: Digest,
        /// The address, sealed to this verification, for the account signup creates.
        email: Sealed,
        code_hash: Digest,
        issued_ms: Millis,
        expires_ms: Millis,
    },
    /// A wrong code was tried.
    VerificationFailed {
        email_index: Digest,
    },
    /// The right code was given; the code is spent and a single-use signup token issued.
    VerificationConfirmed {
        email_index: Digest,
        token_hash: Digest,
        expires_ms: Millis,
    },
    /// An account was created with a verification token, which is now spent.
    UserRegistered {
        user: UserId,
        email_index: Digest,
        email: Sealed,
        name: Sealed,
        phone: Option<Sealed>,
        address: Option<Sealed>,
        password_hash: String,
        role: Role,
        created_ms: Millis,
    },
    /// Fields left `None` are unchanged; `Some(None)` clears an optional one.
    ProfileUpdated {
        user: UserId,
        name: Option<Sealed>,
        phone: Option<Option<Sealed>>,
        address: Option<Option<Sealed>>,
    },
    RoleChanged {
        user: UserId,
        role: Role,
    },
    PasswordChanged {
        user: UserId,
        password_hash: String,
    },
    /// A login: a new refresh-token family with its first token.
    SessionStarted {
        family: u64,
        user: UserId,
        token_hash: Digest,
        expires_ms: Millis,
    },
    /// The family's current token was exchanged for this one.
    SessionRefreshed {
        family: u64,
        token_hash: Digest,
        expires_ms: Millis,
    },
    /// Logout, or a reused (stolen) refresh token: every token of the family is dead.
    SessionEnded {
        family: u64,
        reason: SessionEnd,
    },
    /// An access token's id, refused until the token would have expired anyway.
    AccessRevoked {
        jti: Digest,
        expires_ms: Millis,
    },
    /// Retention: a session family expired long enough ago is forgotten, with its tokens.
    SessionForgotten {
        family: u64,
    },
    /// Retention: a revocation of an access token expired long enough ago is forgotten.
    RevocationForgotten {
        jti: Digest,
    },
    /// Retention: an email verification (and its signup token) expired long enough ago.
    VerificationForgotten {
        email_index: Digest,
    },
    /// An admin disabled the account: it cannot log in, its tokens pass no check, and each of
    /// its live sessions is ended by a `SessionEnded` of its own right after this record.
    UserDisabled {
        user: UserId,
        at_ms: Millis,
    },
    /// An admin enabled a disabled account again; its ended sessions stay ended.
    UserEnabled {
        user: UserId,
    },
}

/// Catalog and wishlist records.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum CatalogRecord {
    /// A product and its SKU (`Sku(product.0)`) came into existence: version 1.
    ProductCreated {
        product: ProductId,
        kind: ProductKind,
        details: ProductDetails,
        sale_opens_ms: Option<Millis>,
        sale_closes_ms: Option<Millis>,
        per_user_limit: Option<u32>,
        stock_total: u32,
        created_ms: Millis,
    },
    /// A new immutable version of a product's details (name, description, price) or sale
    /// window; earlier versions stay readable.
    ProductVersioned {
        product: ProductId,
        version: u32,
        details: ProductDetails,
        sale_opens_ms: Option<Millis>,
        sale_closes_ms: Option<Millis>,
        at_ms: Millis,
    },
    WishlistItemPut {
        user: UserId,
        product: ProductId,
        quantity: u32,
        note: String,
        at_ms: Millis,
    },
    WishlistItemRemoved {
        user: UserId,
        product: ProductId,
    },
}

/// Order records: each step of the saga is one record, so the log is the saga journal.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum OrderRecord {
    /// An order took the units of every line at once (all or nothing), held until
    /// `deadline_ms`.
    OrderPlaced {
        order: OrderId,
        user: UserId,
        /// Keyed hash of (user, Idempotency-Key) and of the request, so a retry is recognised.
        idempotency: Digest,
        request: Digest,
        lines: Vec<OrderLine>,
        currency: String,
        shipping_address: Sealed,
        deadline_ms: Millis,
        created_ms: Millis,
    },
    /// About to ask the provider to charge; after a crash the same attempt is asked again
    /// with the same key, so it is never charged twice.
    PaymentRequested {
        order: OrderId,
        attempt: u32,
        at_ms: Millis,
    },
    /// Charged: every line's units are sold.
    PaymentSucceeded {
        order: OrderId,
        attempt: u32,
        at_ms: Millis,
    },
    /// Not charged; the order stays payable until its deadline.
    PaymentFailed {
        order: OrderId,
        attempt: u32,
        reason: PaymentFailure,
        at_ms: Millis,
    },
    /// The provider did not answer; the attempt stays open until the provider is asked again.
    PaymentTimedOut {
        order: OrderId,
        attempt: u32,
        at_ms: Millis,
    },
    /// The deadline passed unpaid: every line's units go back on sale.
    OrderExpired {
        order: OrderId,
        at_ms: Millis,
    },
    /// Cancelled by the customer before shipping: units back on sale; `refund` when it was
    /// paid (its sold units go back on sale too).
    OrderCancelled {
        order: OrderId,
        refund: bool,
        at_ms: Millis,
    },
    OrderShipped {
        order: OrderId,
        carrier: String,
        tracking_number: String,
        at_ms: Millis,
    },
    OrderDelivered {
        order: OrderId,
        at_ms: Millis,
    },
    ReturnRequested {
        order: OrderId,
        reason: String,
        at_ms: Millis,
    },
    /// The return is accepted: the units go back on sale and the order is refunded.
    ReturnApproved {
        order: OrderId,
        at_ms: Millis,
    },
    /// The provider refunded the order's charge.
    RefundIssued {
        order: OrderId,
        at_ms: Millis,
    },
    /// The return window of a delivered order passed with no return asked for: the order is
    /// closed for good (it leaves the hot tier) and stays `delivered`.
    ReturnWindowClosed {
        order: OrderId,
        at_ms: Millis,
    },
}

impl From<AccountRecord> for Record {
    fn from(record: AccountRecord) -> Self {
        Record::Account(Box::new(record))
    }
}

impl From<CatalogRecord> for Record {
    fn from(record: CatalogRecord) -> Self {
        Record::Catalog(Box::new(record))
    }
}

impl OrderRecord {
    /// When the step was taken (a placement: when the order was made).
    pub fn at_ms(&self) -> Millis {
        match self {
            OrderRecord::OrderPlaced { created_ms, .. } => *created_ms,
            OrderRecord::PaymentRequested { at_ms, .. }
            | OrderRecord::PaymentSucceeded { at_ms, .. }
            | OrderRecord::PaymentFailed { at_ms, .. }
            | OrderRecord::PaymentTimedOut { at_ms, .. }
            | OrderRecord::OrderExpired { at_ms, .. }
            | OrderRecord::OrderCancelled { at_ms, .. }
            | OrderRecord::OrderShipped { at_ms, .. }
            | OrderRecord::OrderDelivered { at_ms, .. }
            | OrderRecord::ReturnRequested { at_ms, .. }
            | OrderRecord::ReturnApproved { at_ms, .. }
            | OrderRecord::RefundIssued { at_ms, .. }
            | OrderRecord::ReturnWindowClosed { at_ms, .. } => *at_ms,
        }
    }

    /// The order the record is about.
    pub fn order(&self) -> OrderId {
        match self {
            OrderRecord::OrderPlaced { order, .. }
            | OrderRecord::PaymentRequested { order, .. }
            | OrderRecord::PaymentSucceeded { order, .. }
            | OrderRecord::PaymentFailed { order, .. }
            | OrderRecord::PaymentTimedOut { order, .. }
            | OrderRecord::OrderExpired { order, .. }
            | OrderRecord::OrderCancelled { order, .. }
            | OrderRecord::OrderShipped { order, .. }
            | OrderRecord::OrderDelivered { order, .. }
            | OrderRecord::ReturnRequested { order, .. }
            | OrderRecord::ReturnApproved { order, .. }
            | OrderRecord::RefundIssued { order, .. }
            | OrderRecord::ReturnWindowClosed { order, .. } => *order,
        }
    }
}

impl From<OrderRecord> for Record {
    fn from(record: OrderRecord) -> Self {
        Record::Order(Box::new(record))
    }
}

/// One line of an order, as it was sold: the product version and price of that moment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct OrderLine {
    pub product: ProductId,
    pub version: u32,
    pub name: String,
    pub unit_price: u64,
    pub quantity: u32,
    pub reservation: ReservationId,
}

/// Why a payment attempt did not charge.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum PaymentFailure {
    /// The provider declined the card.
    Declined,
    /// The provider refused the charge as over the card's limit.
    CardLimitExceeded,
    /// The provider timed out and, asked again, had not charged.
    TimedOut,
}

impl PaymentFailure {
    /// The failure's name in snake case, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentFailure::Declined => "declined",
            PaymentFailure::CardLimitExceeded => "card_limit_exceeded",
            PaymentFailure::TimedOut => "timeout",
        }
    }
}

/// Whether a product sells at any time or only inside its sale window.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ProductKind {
    /// Buyable any time while in stock.
    General,
    /// Buyable only inside its sale window.
    Limited,
}

impl ProductKind {
    /// The kind's name in lower case, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductKind::General => "general",
            ProductKind::Limited => "limited",
        }
    }
}

/// What a customer sees of a product at one version.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ProductDetails {
    /// The product's name.
    pub name: String,
    /// The product's description; may be empty.
    pub description: String,
    /// In the currency's minor unit.
    pub price: u64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// A keyed hash (HMAC-SHA256).
pub type Digest = [u8; 32];
/// A sealed (encrypted and authenticated) field.
pub type Sealed = Vec<u8>;

/// What a user may do: only an admin may call the admin routes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Role {
    /// A shopper; every account made by signup has this role.
    Customer,
    /// An operator of the shop, created or promoted by `Engine::create_admin`.
    Admin,
}

impl Role {
    /// The role's name in lower case, as access tokens and the API carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum SessionEnd {
    Logout,
    /// An already rotated refresh token was presented again.
    TokenReused,
    /// An admin disabled the account.
    AccountDisabled,
}

/// Why held or sold units went back on sale.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ReleaseReason {
    /// The customer (or the saga on their behalf) gave the units back.
    Cancelled,
    /// The deadline passed before the reservation was committed.
    Expired,
    /// Payment failed for good.
    PaymentFailed,
    /// Sold, then given back: a paid order cancelled, or a returned one.
    Returned,
}

impl ReleaseReason {
    /// The reason's name in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Expired => "expired",
            ReleaseReason::PaymentFailed => "payment_failed",
            ReleaseReason::Returned => "returned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rkyv stores every record at the size of the largest variant; the hot path's records are
    /// what a drop writes, so nothing may grow them. Big records belong behind a `Box`.
    #[test]
    fn stored_records_stay_small() {
        let archived = std::mem::size_of::<ArchivedRecord>();
        assert!(archived <= 48, "an archived record takes {archived} bytes");
        assert!(
            std::mem::size_of::<Record>() <= 48,
            "a record takes {} bytes",
            std::mem::size_of::<Record>()
        );
    }
}
