//! The JSON body extractor of every route: any rejection (wrong content type, malformed JSON,
//! a missing or mistyped field, a body over the limit, a body that is not a JSON object)
//! becomes a problem+json answer.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
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
        if !is_json(request.headers()) {
            return Err(
                ProblemType::UNSUPPORTED_MEDIA_TYPE.with("send the body as application/json")
            );
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Problem::of_status(rejection.status(), rejection.body_text())
                }
            })?;
        // Every body of the API is an object. serde would also take a struct from an array of
        // its fields in order (`[null, null]` as a profile change): refuse that here.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(ProblemType::INVALID_REQUEST.with("the body must be a JSON object"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(problem_of(&rejection)),
        }
    }
}

/// `application/json`, or a `+json` type of `application/`, as axum's own extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

fn too_large() -> Problem {
    ProblemType::PAYLOAD_TOO_LARGE.with(format!(
        "bodies are limited to {} bytes",
        crate::REQUEST_BODY_BYTES_MAX
    ))
}

fn problem_of(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ProblemType::UNSUPPORTED_MEDIA_TYPE.with("send the body as application/json")
        }
        JsonRejection::JsonDataError(e) => ProblemType::INVALID_REQUEST.with(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ProblemType::INVALID_JSON.with(e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
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
