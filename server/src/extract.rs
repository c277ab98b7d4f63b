//! Extractors that build the engine's types from the request, once: a path's id, the
//! Idempotency-Key header. What does not parse answers its problem here, naming what was
//! sent, so a handler only ever sees well-formed values.

use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;

use allot_engine::{
    CatalogError, IdempotencyKey, InvalidIdempotencyKey, OrderError, OrderId, ProductId, UserId,
};

use crate::problem::{Problem, ProblemType};

/// The path's parameters, as text, in the order of the route's template. A parameter that does
/// not decode (bad percent-encoding) is kept as sent, found at its place in the template, so
/// the answer still names it.
async fn segments<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<String> {
    if let Ok(Path(texts)) = Path::<Vec<String>>::from_request_parts(parts, state).await {
        return texts;
    }
    let Some(template) = parts.extensions.get::<MatchedPath>() else {
        return Vec::new();
    };
    // Paired from the end: a nested router sees its URI without the nest's prefix.
    let mut texts: Vec<String> = template
        .as_str()
        .rsplit('/')
        .zip(parts.uri.path().rsplit('/'))
        .filter(|(name, _)| name.starts_with('{'))
        .map(|(_, text)| text.to_string())
        .collect();
    texts.reverse();
    texts
}

/// The path's one parameter, as text (see [`segments`]).
async fn segment<S: Send + Sync>(parts: &mut Parts, state: &S) -> String {
    segments(parts, state).await.pop().unwrap_or_default()
}

fn product(text: String) -> Result<ProductId, Problem> {
    text.parse::<ProductId>()
        .map_err(|_| CatalogError::ProductUnknown(text).into())
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
        let Ok([id, version]) = <[String; 2]>::try_from(segments(parts, state).await) else {
            return Err(ProblemType::NOT_FOUND.with("this route takes a product and a version"));
        };
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
            .map_err(|_| OrderError::OrderUnknown(text).into())
    }
}

/// `{id}` of a user route: an id that does not parse answers `user_not_found`, naming it.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = segment(parts, state).await;
        text.parse::<UserId>()
            .map(Self)
            .map_err(|_| ProblemType::USER_NOT_FOUND.with(format!("user {text:?} does not exist")))
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
