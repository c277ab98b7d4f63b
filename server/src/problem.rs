//! One error shape for every answer (RFC 9457 problem details), and the one place where engine
//! outcomes become HTTP statuses and stable `type` codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use allot_engine::EngineError;

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
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Unauthenticated",
            "log in first: send the access_token cookie or an Authorization: Bearer token",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "your role does not allow this",
        )
    }

    pub fn csrf_failed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "CSRF check failed",
            "send the csrf_token cookie's value in the X-CSRF-Token header",
        )
    }

    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            "slow down and try again after the Retry-After interval",
        )
        .with_retry_after(retry_after_seconds)
    }

    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Busy",
            "too many logins at once; try again in a moment",
        )
        .with_retry_after(1)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "Invalid query",
            detail,
        )
    }

    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Not ready",
            "the engine is still recovering its state; try again shortly",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
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
    fn from(error: EngineError) -> Self {
        use StatusCode as S;
        let detail = error.to_string();
        let (status, kind, title) = match &error {
            EngineError::SkuNotFound(_) => (S::NOT_FOUND, "product_not_found", "Product not found"),
            EngineError::SkuExists(_) => (S::CONFLICT, "product_exists", "Product exists"),
            EngineError::SoldOut { .. } => (S::CONFLICT, "sold_out", "Sold out"),
            EngineError::PurchaseLimitExceeded { .. } => (
                S::CONFLICT,
                "purchase_limit_exceeded",
                "Purchase limit exceeded",
            ),
            EngineError::InvalidQuantity { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_quantity",
                "Invalid quantity",
            ),
            EngineError::StockLimitExceeded { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "stock_limit_exceeded",
                "Stock limit exceeded",
            ),
            EngineError::ReservationNotFound(_) => (
                S::NOT_FOUND,
                "reservation_not_found",
                "Reservation not found",
            ),
            EngineError::ReservationNotActive { .. } => {
                (S::CONFLICT, "reservation_closed", "Reservation closed")
            }
            EngineError::ReservationExpired { .. } => {
                (S::CONFLICT, "reservation_expired", "Reservation expired")
            }
            EngineError::InvalidEmail => {
                (S::UNPROCESSABLE_ENTITY, "invalid_email", "Invalid email")
            }
            EngineError::InvalidCode => (S::BAD_REQUEST, "invalid_code", "Invalid code"),
            EngineError::CodeExpired => (S::GONE, "code_expired", "Code expired"),
            EngineError::TooManyAttempts => (
                S::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "Too many attempts",
            ),
            EngineError::VerificationCooldown { retry_after_ms } => {
                return Self::rate_limited(retry_after_ms.div_ceil(1000));
            }
            EngineError::InvalidVerificationToken => (
                S::BAD_REQUEST,
                "invalid_verification_token",
                "Invalid verification token",
            ),
            EngineError::EmailTaken => (S::CONFLICT, "email_taken", "Email taken"),
            EngineError::InvalidProfile(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_profile",
                "Invalid profile",
            ),
            // A token for an account that no longer exists.
            EngineError::UserNotFound(_) => return Self::unauthenticated(),
            EngineError::InvalidRefresh => {
                (S::UNAUTHORIZED, "invalid_refresh", "Invalid refresh token")
            }
            EngineError::ProductNotFound(_) => {
                (S::NOT_FOUND, "product_not_found", "Product not found")
            }
            EngineError::InvalidProduct(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_product",
                "Invalid product",
            ),
            EngineError::InvalidWishlistItem(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_wishlist_item",
                "Invalid wishlist item",
            ),
            EngineError::OrderNotFound(_) => (S::NOT_FOUND, "order_not_found", "Order not found"),
            EngineError::InvalidOrder(_) => {
                (S::UNPROCESSABLE_ENTITY, "invalid_order", "Invalid order")
            }
            EngineError::SaleNotOpen(_) => (S::CONFLICT, "sale_not_open", "Sale not open"),
            EngineError::SaleClosed(_) => (S::CONFLICT, "sale_closed", "Sale closed"),
            EngineError::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            EngineError::IdempotencyKeyInUse => (
                S::CONFLICT,
                "idempotency_key_in_use",
                "Idempotency key in use",
            ),
            EngineError::OrderExpired => (S::CONFLICT, "order_expired", "Order expired"),
            EngineError::RefundNotConfirmed(_) => (
                S::SERVICE_UNAVAILABLE,
                "payment_provider_unavailable",
                "Payment provider unavailable",
            ),
            EngineError::PaymentInProgress => {
                (S::CONFLICT, "payment_in_progress", "Payment in progress")
            }
            EngineError::OrderStateConflict(_) => {
                (S::CONFLICT, "invalid_transition", "Invalid transition")
            }
            EngineError::NotCancellable(_) => (S::CONFLICT, "not_cancellable", "Not cancellable"),
            EngineError::NotReturnable(_) => (S::CONFLICT, "not_returnable", "Not returnable"),
            EngineError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down", "Shutting down"),
            EngineError::LogFailed(_) | EngineError::Open(_) => {
                tracing::error!(%error, "engine failure answered as 500");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the server could not record this; its outcome is unknown until the server restarts",
                );
            }
        };
        let problem = Self::new(status, kind, title, detail);
        // Every 503 says when to come back (API.md).
        if status == S::SERVICE_UNAVAILABLE {
            problem.with_retry_after(1)
        } else {
            problem
        }
    }
}
