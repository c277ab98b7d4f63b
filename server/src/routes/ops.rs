//! Operations: liveness, readiness, and the answer for unknown routes.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::problem::ProblemType;
use crate::{AppState, Problem};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    let engine = state.engine().ok_or_else(Problem::not_ready)?;
    if engine.is_failed() {
        return Err(ProblemType::LOG_FAILED
            .with("the write-ahead log stopped taking records; restart the server to recover"));
    }
    Ok(Json(json!({
        "status": "ready",
        "last_seq": engine.durable_seq(),
    })))
}

pub async fn not_found() -> Problem {
    Problem::not_found("no such route")
}
