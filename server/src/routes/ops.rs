//! Operations: liveness, readiness, and the answer for unknown routes.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use allot_engine::CheckpointHealth;

use super::Admin;
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
        "checkpoint": checkpoint_json(&engine.checkpoint_health()),
    })))
}

/// The checkpoints' state: still ready while they fail (nothing is lost and writes go on), but
/// the log is not pruned and the store grows until one succeeds, which an operator must see.
fn checkpoint_json(health: &CheckpointHealth) -> serde_json::Value {
    if health.is_ok() {
        return json!({ "status": "ok", "last_seq": health.last_ok_seq });
    }
    json!({
        "status": "failing",
        "last_seq": health.last_ok_seq,
        "failures_in_a_row": health.failures_in_a_row,
        "failing_since": health.failing_since_ms.map(allot_engine::rfc3339),
        "error": health.last_error,
    })
}

/// `GET /metrics` on the shop's own address: for an admin (a session or a Bearer token). For
/// Prometheus, `allot serve --metrics-listen` serves the same text without a login on an
/// address of its own.
pub async fn metrics(_admin: Admin, state: State<AppState>) -> axum::response::Response {
    crate::metrics::metrics(state).await
}

pub async fn not_found() -> Problem {
    Problem::not_found("no such route")
}
