//! Extractors that build the engine's types from the request, once: a path's id, the
//! Idempotency-Key header. What does not parse answers its problem here, naming what was
//! sent, so a handler only ever sees well-formed values.

use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;

use allot_engine::orders::InvalidIdempotencyKey;
use allot_engine::{EngineError, IdempotencyKey, OrderId, ProductId};

use crate::problem::{Problem, ProblemType};

/// The path's one parameter, as text. A parameter that does not decode (bad percent-encoding)
/// is kept as sent, found at its place in the route's template, so the answer still names it.
async fn segment<S: Send + Sync>(parts: &mut Parts, state: &S) -> String {
    if let Ok(Path(text)) = Path::<String>::from_request_parts(parts, state).await {
        return text;
    }
    let Some(template) = parts.extensions.get::<MatchedPath>() else {
        return String::new();
    };
    // Counted from the end: a nested router sees its URI without the nest's prefix.
    let from_end = template
        .as_str()
        .rsplit('/')
        .position(|s| s.starts_with('{'));
    from_end
        .and_then(|place| parts.uri.path().rsplit('/').nth(place))
        .unwrap_or_default()
        .to_string()
}

fn product(text: String) -> Result<ProductId, Problem> {
    text.parse::<ProductId>()
        .map_err(|_| EngineError::ProductUnknown(text).into())
}

/// `{id}` of a product route: an id that does not parse answers `product_not_found`.
pub struct ProductPath(pub ProductId);

impl<S: Send + Sync> FromRequestParts<S> for ProductPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        product(segment(parts, state).await).map(Self)
    }
}

/// `{id}` of a product route where an id that names no product is no error (removing a
/// wishlist item that is not there): `None` for text that is not an id.
pub struct MaybeProductPath(pub Option<ProductId>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeProductPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(segment(parts, state).await.parse().ok()))
    }
}

/// `{id}/versions/{version}`: the product and a version number. A version that is not a
/// number answers `version_not_found` like one that does not exist.
pub struct ProductVersionPath(pub ProductId, pub Result<u32, String>);

impl<S: Send + Sync> FromRequestParts<S> for ProductVersionPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((id, version)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ProblemType::NOT_FOUND.with(rejection.body_text()))?;
        let version = version.parse::<u32>().map_err(|_| version);
        Ok(Self(product(id)?, version))
    }
}

/// `{id}` of an order route: an id that does not parse answers `order_not_found`.
pub struct OrderPath(pub OrderId);

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = segment(parts, state).await;
        text.parse::<OrderId>()
            .map(Self)
            .map_err(|_| EngineError::OrderUnknown(text).into())
    }
}

/// The `Idempotency-Key` header of a placement: missing, blank or not text answers
/// `idempotency_key_required`; too long, `invalid_order`.
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let text = parts
            .headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        text.parse::<IdempotencyKey>()
            .map(Self)
            .map_err(|error| match error {
                InvalidIdempotencyKey::Missing => {
                    ProblemType::IDEMPOTENCY_KEY_REQUIRED.with(error.to_string())
                }
                InvalidIdempotencyKey::TooLong => {
                    ProblemType::INVALID_ORDER.with(error.to_string())
                }
            })
    }
}
