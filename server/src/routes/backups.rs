//! An online backup: a consistent copy of the data directory, written on the server's machine
//! while the shop keeps selling (`allot db backup --url …` calls it).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{BackupError, EngineError, Internal};

use super::Admin;
use crate::json::ApiJson;
use crate::problem::ProblemType;
use crate::{AppState, Problem, Ready};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_backup))
}

/// The longest backup name, in bytes.
const BACKUP_NAME_BYTES_MAX: usize = 128;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    /// The copy's directory name in the server's backup directory (`--backup-dir`, by default
    /// `backups/` beside the data directory); it must not exist yet.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    name: String,
}

/// What a backup wrote, and what verifying the copy found.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BackupReport {
    /// The copy's directory.
    pub path: String,
    /// Entries of the store and files beside it copied.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The copy's last record: every order acknowledged before the backup began is at or
    /// below it.
    pub last_seq: u64,
    /// Whether the copy verifies clean (`db verify`); if not, `problems` says why (the copy
    /// is kept).
    pub clean: bool,
    pub problems: Vec<String>,
    pub elapsed_ms: u64,
}

/// Copies the running shop's data directory to `to` without stopping it, then verifies the
/// copy. Snapshots and log pruning wait while it runs; sales do not.
#[utoipa::path(post, path = "/admin/backups", tag = "operations",
    request_body = BackupRequest,
    responses(
        (status = 201, body = BackupReport),
        (status = 409, description = "`backup_exists`", body = Problem),
        (status = 422, description = "`invalid_backup_path`", body = Problem),
        (status = 500, description = "`backup_failed`: nothing of the copy is left", body = Problem),
    ))]
async fn create_backup(
    State(state): State<AppState>,
    Ready(engine): Ready,
    _admin: Admin,
    ApiJson(body): ApiJson<BackupRequest>,
) -> Result<(StatusCode, Json<BackupReport>), Problem> {
    let to = state
        .backup_dir(&engine.config().data_dir)
        .join(backup_name(&body.name)?);
    let started = std::time::Instant::now();
    let target = to.clone();
    let report = tokio::task::spawn_blocking(move || engine.backup_online(&target))
        .await
        .map_err(|_| Problem::from(EngineError::from(Internal::WorkerStopped)))?
        .map_err(|error| match error {
            BackupError::DestinationExists(_) => ProblemType::BACKUP_EXISTS.with(error.to_string()),
            BackupError::Overlap { .. } => ProblemType::INVALID_BACKUP_PATH.with(error.to_string()),
            other => {
                tracing::error!(error = %other, "an online backup failed");
                ProblemType::BACKUP_FAILED.with(other.to_string())
            }
        })?;
    tracing::info!(path = %to.display(), last_seq = report.last_seq, clean = report.problems.is_empty(), "online backup written");
    Ok((
        StatusCode::CREATED,
        Json(BackupReport {
            path: to.display().to_string(),
            entries: report.files,
            bytes: report.bytes,
            last_seq: report.last_seq,
            clean: report.problems.is_empty(),
            problems: report.problems,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
    ))
}

/// A backup's name: 1 to [`BACKUP_NAME_BYTES_MAX`] ASCII letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit (so never `.`, `..` or a hidden name); else 422
/// `invalid_backup_path` naming it.
fn backup_name(name: &str) -> Result<&str, Problem> {
    let mut chars = name.chars();
    let well_formed = name.len() <= BACKUP_NAME_BYTES_MAX
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if well_formed {
        return Ok(name);
    }
    Err(ProblemType::INVALID_BACKUP_PATH.with(format!(
        "{name:?} is not a backup name: 1 to {BACKUP_NAME_BYTES_MAX} letters, digits, `.`, `_` \
         and `-`, starting with a letter or a digit"
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_backup_name_is_one_plain_directory_name() {
        for name in ["nightly", "2026-12-24.1", "a_b", &"x".repeat(128)] {
            assert!(super::backup_name(name).is_ok(), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../db",
            "-x",
            "é",
            &"x".repeat(129),
        ] {
            assert!(super::backup_name(name).is_err(), "{name}");
        }
    }
}
