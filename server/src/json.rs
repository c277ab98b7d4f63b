//! The JSON body extractor of every route: any rejection (wrong content type, malformed JSON,
//! a missing or mistyped field, a body over the limit) becomes a problem+json answer.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::problem::{Problem, ProblemType};

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(problem_of(&rejection)),
        }
    }
}

fn problem_of(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ProblemType::UNSUPPORTED_MEDIA_TYPE.with("send the body as application/json")
        }
        JsonRejection::JsonDataError(e) => ProblemType::INVALID_REQUEST.with(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ProblemType::INVALID_JSON.with(e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ProblemType::PAYLOAD_TOO_LARGE.with(format!(
                "bodies are limited to {} bytes",
                crate::REQUEST_BODY_BYTES_MAX
            ))
        }
        other => Problem::of_status(other.status(), other.body_text()),
    }
}

/// The query-string extractor of every route: a query that does not parse is a problem
/// (`invalid_query`), like every other error.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| Problem::invalid_query(rejection.body_text()))
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
