//! The thin HTTP layer of allot: routes, extractors and JSON <-> engine calls. No business
//! rule lives here; a handler parses, calls one engine method, and maps the answer.

pub mod problem;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use allot_engine::Engine;
pub use problem::Problem;

/// Largest request body accepted.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest a request may take before it is answered 408.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// What every handler can reach. The engine arrives once recovery is done; until then the
/// server answers `/healthz` but refuses work with 503 `not_ready`.
#[derive(Clone, Default)]
pub struct AppState {
    engine: Arc<OnceLock<Engine>>,
}

impl AppState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the server ready. Answers false if an engine was already installed.
    pub fn install_engine(&self, engine: Engine) -> bool {
        self.engine.set(engine).is_ok()
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.engine.get()
    }
}

/// Extracts the engine, or answers 503 `not_ready` while it is still recovering.
pub struct Ready(pub Engine);

impl<S> FromRequestParts<S> for Ready
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AppState::from_ref(state)
            .engine()
            .cloned()
            .map(Ready)
            .ok_or_else(Problem::not_ready)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_BYTES_MAX))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    let Ready(engine) = state
        .engine()
        .cloned()
        .map(Ready)
        .ok_or_else(Problem::not_ready)?;
    Ok(Json(json!({
        "status": "ready",
        "last_seq": engine.durable_seq(),
    })))
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}
