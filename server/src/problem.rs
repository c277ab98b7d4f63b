//! One error shape for every answer (RFC 9457 problem details), and the one place where engine
//! outcomes become HTTP statuses and stable `type` codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use allot_engine::EngineError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Stable snake_case code that clients branch on.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
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
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
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
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
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
            EngineError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down", "Shutting down"),
            EngineError::LogFailed(_) | EngineError::Open(_) => {
                tracing::error!(%error, "engine failure answered as 500");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the server could not record this; nothing was confirmed",
                );
            }
        };
        Self::new(status, kind, title, detail)
    }
}
