//! One error shape for every answer (RFC 9457 problem details), the one registry of problem
//! types (code, status, title) every answer is built from, and the one place where engine
//! outcomes become problems.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use allot_engine::{AccountError, CatalogError, EngineError, OrderError, StockError};

/// One kind of problem: the stable snake_case code clients branch on, its status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    pub code: &'static str,
    pub status: StatusCode,
    pub title: &'static str,
}

macro_rules! registry {
    ($($(#[$doc:meta])* $name:ident = $status:ident, $code:literal, $title:literal;)*) => {
        impl ProblemType {
            $(
                $(#[$doc])*
                pub const $name: ProblemType = ProblemType {
                    code: $code,
                    status: StatusCode::$status,
                    title: $title,
                };
            )*
        }

        /// Every problem type the server can answer, in the order of the registry.
        pub const PROBLEM_TYPES: &[ProblemType] = &[$(ProblemType::$name),*];
    };
}

registry! {
    // The request itself.
    /// The body is not JSON.
    INVALID_JSON = BAD_REQUEST, "invalid_json", "Malformed JSON";
    /// The body or the request is JSON of the wrong shape (a missing or unknown field, a type).
    INVALID_REQUEST = UNPROCESSABLE_ENTITY, "invalid_request", "Invalid request";
    /// A request the HTTP stack refused before any route looked at it.
    BAD_REQUEST = BAD_REQUEST, "bad_request", "Bad request";
    /// A query parameter that does not parse.
    INVALID_QUERY = BAD_REQUEST, "invalid_query", "Invalid query";
    PAYLOAD_TOO_LARGE = PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large";
    UNSUPPORTED_MEDIA_TYPE = UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type";
    /// No route has this path.
    NOT_FOUND = NOT_FOUND, "not_found", "Not found";
    METHOD_NOT_ALLOWED = METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed";
    REQUEST_TIMEOUT = REQUEST_TIMEOUT, "request_timeout", "Request timeout";
    /// An HTTP error of the stack with no better code.
    HTTP_ERROR = BAD_REQUEST, "http_error", "HTTP error";

    // Who asks.
    UNAUTHENTICATED = UNAUTHORIZED, "unauthenticated", "Unauthenticated";
    FORBIDDEN = FORBIDDEN, "forbidden", "Forbidden";
    CSRF_FAILED = FORBIDDEN, "csrf_failed", "CSRF check failed";
    RATE_LIMITED = TOO_MANY_REQUESTS, "rate_limited", "Too many requests";
    /// Too many password checks at once.
    BUSY = SERVICE_UNAVAILABLE, "busy", "Busy";

    // Accounts.
    INVALID_EMAIL = UNPROCESSABLE_ENTITY, "invalid_email", "Invalid email";
    INVALID_CODE = BAD_REQUEST, "invalid_code", "Invalid code";
    CODE_EXPIRED = GONE, "code_expired", "Code expired";
    TOO_MANY_ATTEMPTS = TOO_MANY_REQUESTS, "too_many_attempts", "Too many attempts";
    INVALID_VERIFICATION_TOKEN = BAD_REQUEST, "invalid_verification_token", "Invalid verification token";
    WEAK_PASSWORD = UNPROCESSABLE_ENTITY, "weak_password", "Weak password";
    EMAIL_TAKEN = CONFLICT, "email_taken", "Email taken";
    INVALID_PROFILE = UNPROCESSABLE_ENTITY, "invalid_profile", "Invalid profile";
    INVALID_CREDENTIALS = UNAUTHORIZED, "invalid_credentials", "Invalid credentials";
    INVALID_REFRESH = UNAUTHORIZED, "invalid_refresh", "Invalid refresh token";
    /// The right password of an account an admin disabled.
    ACCOUNT_DISABLED = FORBIDDEN, "account_disabled", "Account disabled";
    /// An admin asked for something about a user id that has no account.
    USER_NOT_FOUND = NOT_FOUND, "user_not_found", "User not found";
    /// An admin asked to disable or demote their own account.
    SELF_LOCKOUT = CONFLICT, "self_lockout", "Self lockout";

    // The catalog and the wishlist.
    PRODUCT_NOT_FOUND = NOT_FOUND, "product_not_found", "Product not found";
    VERSION_NOT_FOUND = NOT_FOUND, "version_not_found", "Version not found";
    PRODUCT_EXISTS = CONFLICT, "product_exists", "Product exists";
    INVALID_PRODUCT = UNPROCESSABLE_ENTITY, "invalid_product", "Invalid product";
    STOCK_LIMIT_EXCEEDED = UNPROCESSABLE_ENTITY, "stock_limit_exceeded", "Stock limit exceeded";
    INVALID_WISHLIST_ITEM = UNPROCESSABLE_ENTITY, "invalid_wishlist_item", "Invalid wishlist item";

    // Placing an order.
    IDEMPOTENCY_KEY_REQUIRED = BAD_REQUEST, "idempotency_key_required", "Idempotency-Key required";
    IDEMPOTENCY_KEY_REUSED = UNPROCESSABLE_ENTITY, "idempotency_key_reused", "Idempotency key reused";
    IDEMPOTENCY_KEY_IN_USE = CONFLICT, "idempotency_key_in_use", "Idempotency key in use";
    SOLD_OUT = CONFLICT, "sold_out", "Sold out";
    PURCHASE_LIMIT_EXCEEDED = CONFLICT, "purchase_limit_exceeded", "Purchase limit exceeded";
    INVALID_QUANTITY = UNPROCESSABLE_ENTITY, "invalid_quantity", "Invalid quantity";
    INVALID_ORDER = UNPROCESSABLE_ENTITY, "invalid_order", "Invalid order";
    INVALID_ADDRESS = UNPROCESSABLE_ENTITY, "invalid_address", "Invalid address";
    SALE_NOT_OPEN = CONFLICT, "sale_not_open", "Sale not open";
    SALE_CLOSED = CONFLICT, "sale_closed", "Sale closed";
    RESERVATION_NOT_FOUND = NOT_FOUND, "reservation_not_found", "Reservation not found";
    RESERVATION_CLOSED = CONFLICT, "reservation_closed", "Reservation closed";
    RESERVATION_EXPIRED = CONFLICT, "reservation_expired", "Reservation expired";

    // An order's saga.
    ORDER_NOT_FOUND = NOT_FOUND, "order_not_found", "Order not found";
    ORDER_EXPIRED = CONFLICT, "order_expired", "Order expired";
    PAYMENT_IN_PROGRESS = CONFLICT, "payment_in_progress", "Payment in progress";
    INVALID_TRANSITION = CONFLICT, "invalid_transition", "Invalid transition";
    NOT_CANCELLABLE = CONFLICT, "not_cancellable", "Not cancellable";
    NOT_RETURNABLE = CONFLICT, "not_returnable", "Not returnable";
    INVALID_CARD = UNPROCESSABLE_ENTITY, "invalid_card", "Invalid card";
    PAYMENT_DECLINED = PAYMENT_REQUIRED, "payment_declined", "Payment declined";
    CARD_LIMIT_EXCEEDED = PAYMENT_REQUIRED, "card_limit_exceeded", "Card limit exceeded";
    PAYMENT_TIMEOUT = GATEWAY_TIMEOUT, "payment_timeout", "Payment timeout";
    PAYMENT_PROVIDER_UNAVAILABLE = SERVICE_UNAVAILABLE, "payment_provider_unavailable", "Payment provider unavailable";

    // Backups.
    /// A backup's destination that is not an absolute path, or lies inside the data directory.
    INVALID_BACKUP_PATH = UNPROCESSABLE_ENTITY, "invalid_backup_path", "Invalid backup path";
    /// Something already exists at the backup's destination.
    BACKUP_EXISTS = CONFLICT, "backup_exists", "Backup exists";
    /// The copy could not be written (the text says where and why); nothing is left of it.
    BACKUP_FAILED = INTERNAL_SERVER_ERROR, "backup_failed", "Backup failed";

    // The server's own state.
    NOT_READY = SERVICE_UNAVAILABLE, "not_ready", "Not ready";
    SHUTTING_DOWN = SERVICE_UNAVAILABLE, "shutting_down", "Shutting down";
    LOG_FAILED = SERVICE_UNAVAILABLE, "log_failed", "Log failed";
    INTERNAL = INTERNAL_SERVER_ERROR, "internal", "Internal error";
}

impl ProblemType {
    /// This type with the detail of one occurrence.
    pub fn with(self, detail: impl Into<String>) -> Problem {
        Problem::new(self, detail)
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Problem {
    /// Stable snake_case code that clients branch on.
    #[serde(rename = "type")]
    #[schema(example = "sold_out")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Seconds, sent as the `Retry-After` header with 429 and 503 answers.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of a registered type. Every 503 says when to come back (API.md).
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        let problem = Self {
            kind: kind.code,
            title: kind.title,
            status: kind.status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        };
        if kind.status == StatusCode::SERVICE_UNAVAILABLE {
            problem.with_retry_after(1)
        } else {
            problem
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn unauthenticated() -> Self {
        ProblemType::UNAUTHENTICATED
            .with("log in first: send the access_token cookie or an Authorization: Bearer token")
    }

    pub fn forbidden() -> Self {
        ProblemType::FORBIDDEN.with("your role does not allow this")
    }

    pub fn csrf_failed() -> Self {
        ProblemType::CSRF_FAILED
            .with("send the csrf_token cookie's value in the X-CSRF-Token header")
    }

    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        ProblemType::RATE_LIMITED
            .with("slow down and try again after the Retry-After interval")
            .with_retry_after(retry_after_seconds)
    }

    pub fn busy() -> Self {
        ProblemType::BUSY.with("too many logins at once; try again in a moment")
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ProblemType::NOT_FOUND.with(detail)
    }

    pub fn invalid_query(detail: impl Into<String>) -> Self {
        ProblemType::INVALID_QUERY.with(detail)
    }

    /// An error the HTTP stack answered before any route (a method not allowed, a timeout, a
    /// body too large): its registered type, or `http_error` (`internal` for a 5xx) keeping
    /// the stack's status.
    pub fn of_status(status: StatusCode, detail: impl Into<String>) -> Self {
        // The statuses the stack answers by itself, each with its one type.
        const STACK: [ProblemType; 7] = [
            ProblemType::BAD_REQUEST,
            ProblemType::NOT_FOUND,
            ProblemType::METHOD_NOT_ALLOWED,
            ProblemType::REQUEST_TIMEOUT,
            ProblemType::PAYLOAD_TOO_LARGE,
            ProblemType::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::INVALID_REQUEST,
        ];
        let registered = STACK.iter().find(|kind| kind.status == status);
        match registered {
            Some(kind) => kind.with(detail),
            None => {
                let kind = if status.is_server_error() {
                    ProblemType::INTERNAL
                } else {
                    ProblemType::HTTP_ERROR
                };
                let mut problem = kind.with(detail);
                problem.status = status.as_u16();
                problem
            }
        }
    }

    pub fn not_ready() -> Self {
        ProblemType::NOT_READY.with("the engine is still recovering its state; try again shortly")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response
            .extensions_mut()
            .insert(crate::metrics::ProblemKind(self.kind));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<EngineError> for Problem {
    /// One exhaustive match per module's errors: a new variant does not compile until it has
    /// its problem type.
    fn from(error: EngineError) -> Self {
        let kind = match &error {
            EngineError::Stock(refused) => stock_problem(refused),
            EngineError::Account(refused) => match account_problem(refused) {
                Ok(kind) => kind,
                Err(problem) => return problem,
            },
            EngineError::Catalog(refused) => catalog_problem(refused),
            EngineError::Order(refused) => order_problem(refused),
            EngineError::ShuttingDown => ProblemType::SHUTTING_DOWN,
            EngineError::LogFailed(_) | EngineError::Internal(_) | EngineError::Open(_) => {
                tracing::error!(%error, "engine failure answered as 500");
                return ProblemType::INTERNAL.with(
                    "the server could not record this; its outcome is unknown until the server restarts",
                );
            }
        };
        kind.with(error.to_string())
    }
}

// A module's refusal answers as the engine's would: `?` on a `Result<_, StockError>` in a
// handler.
macro_rules! from_module_error {
    ($($error:ty),*) => {$(
        impl From<$error> for Problem {
            fn from(refused: $error) -> Self {
                EngineError::from(refused).into()
            }
        }
    )*};
}
from_module_error!(StockError, AccountError, CatalogError, OrderError);

fn stock_problem(refused: &StockError) -> ProblemType {
    use ProblemType as T;
    match refused {
        StockError::SkuNotFound(_) => T::PRODUCT_NOT_FOUND,
        StockError::SkuExists(_) => T::PRODUCT_EXISTS,
        StockError::SoldOut { .. } => T::SOLD_OUT,
        StockError::PurchaseLimitExceeded { .. } => T::PURCHASE_LIMIT_EXCEEDED,
        StockError::InvalidQuantity { .. } => T::INVALID_QUANTITY,
        StockError::StockLimitExceeded { .. } => T::STOCK_LIMIT_EXCEEDED,
        StockError::ReservationNotFound(_) => T::RESERVATION_NOT_FOUND,
        StockError::ReservationNotActive { .. } => T::RESERVATION_CLOSED,
        StockError::ReservationExpired { .. } => T::RESERVATION_EXPIRED,
    }
}

/// The problem type, or a whole problem where the answer is more than a type and a detail
/// (a Retry-After, the plain 401).
fn account_problem(refused: &AccountError) -> Result<ProblemType, Problem> {
    use ProblemType as T;
    Ok(match refused {
        AccountError::InvalidEmail => T::INVALID_EMAIL,
        AccountError::InvalidCode => T::INVALID_CODE,
        AccountError::CodeExpired => T::CODE_EXPIRED,
        AccountError::TooManyAttempts => T::TOO_MANY_ATTEMPTS,
        AccountError::VerificationCooldown { retry_after_ms } => {
            return Err(Problem::rate_limited(retry_after_ms.div_ceil(1000)));
        }
        AccountError::LoginThrottled { retry_after_s } => {
            return Err(Problem::rate_limited(*retry_after_s));
        }
        AccountError::InvalidCredentials => T::INVALID_CREDENTIALS,
        AccountError::InvalidVerificationToken => T::INVALID_VERIFICATION_TOKEN,
        AccountError::EmailTaken => T::EMAIL_TAKEN,
        AccountError::InvalidProfile(_) => T::INVALID_PROFILE,
        // A token for an account that no longer exists.
        AccountError::UserNotFound(_) => return Err(Problem::unauthenticated()),
        AccountError::InvalidRefresh => T::INVALID_REFRESH,
        AccountError::UserDisabled(_) => T::ACCOUNT_DISABLED,
        AccountError::SelfLockout => T::SELF_LOCKOUT,
    })
}

fn catalog_problem(refused: &CatalogError) -> ProblemType {
    use ProblemType as T;
    match refused {
        CatalogError::ProductNotFound(_) | CatalogError::ProductUnknown(_) => T::PRODUCT_NOT_FOUND,
        CatalogError::InvalidProduct(_) => T::INVALID_PRODUCT,
        CatalogError::InvalidWishlistItem(_) => T::INVALID_WISHLIST_ITEM,
    }
}

fn order_problem(refused: &OrderError) -> ProblemType {
    use ProblemType as T;
    match refused {
        OrderError::OrderNotFound(_) | OrderError::OrderUnknown(_) => T::ORDER_NOT_FOUND,
        OrderError::InvalidAddress(_) => T::INVALID_ADDRESS,
        OrderError::InvalidOrderInput(_) | OrderError::InvalidOrder(_) => T::INVALID_ORDER,
        OrderError::SaleNotOpen(_) => T::SALE_NOT_OPEN,
        OrderError::SaleClosed(_) => T::SALE_CLOSED,
        OrderError::IdempotencyKeyReused => T::IDEMPOTENCY_KEY_REUSED,
        OrderError::IdempotencyKeyInUse => T::IDEMPOTENCY_KEY_IN_USE,
        OrderError::OrderExpired => T::ORDER_EXPIRED,
        OrderError::RefundNotConfirmed(_) => T::PAYMENT_PROVIDER_UNAVAILABLE,
        OrderError::PaymentInProgress => T::PAYMENT_IN_PROGRESS,
        OrderError::OrderStateConflict(_) => T::INVALID_TRANSITION,
        OrderError::NotCancellable(_) => T::NOT_CANCELLABLE,
        OrderError::NotReturnable(_) => T::NOT_RETURNABLE,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_registered_once_with_a_title() {
        let mut codes = HashSet::new();
        for kind in PROBLEM_TYPES {
            assert!(codes.insert(kind.code), "{} registered twice", kind.code);
            assert!(
                kind.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not snake_case",
                kind.code
            );
            assert!(!kind.title.is_empty());
            assert!(kind.status.is_client_error() || kind.status.is_server_error());
        }
    }

    #[test]
    fn a_503_always_says_when_to_come_back() {
        for kind in PROBLEM_TYPES
            .iter()
            .filter(|k| k.status == StatusCode::SERVICE_UNAVAILABLE)
        {
            assert_eq!(kind.with("x").retry_after, Some(1), "{}", kind.code);
        }
        assert_eq!(ProblemType::SOLD_OUT.with("x").retry_after, None);
    }
}
