//! Online backups: `POST /v1/backups` checkpoints the store into
//! `<backup_dir>/<name>` while the server keeps serving, `GET /v1/backups`
//! lists them. Owns the HTTP side only (names, statuses, bodies); the
//! checkpoint itself is `storage::backup`, reached through the broker
//! (`Broker::create_backup`, `Broker::list_backups`). Restoring is offline
//! (`weir-server restore`, see `crate::restore`).

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weir_protocol::ErrorCode;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::openapi::{Errors, TAG_OPS};
use super::AppState;
use crate::broker::ops::BackupError;

/// Longest backup name.
pub const MAX_NAME_LEN: usize = 128;

/// Where backups go (`AppState::backup_dir`), or the 409 saying how to
/// turn backups on.
fn backup_dir(state: &AppState) -> ApiResult<PathBuf> {
    state.backup_dir.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            "backups are disabled on this server: set `backup_dir` (--backup-dir, \
             WEIR_BACKUP_DIR) to the directory backups are written under",
        )
    })
}

/// Body of `POST /v1/backups`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly-2026-12-05"}))]
pub struct BackupRequest {
    /// Name of the backup: its directory under `backup_dir`. 1 to 128
    /// letters, digits, `.`, `_` or `-`, not starting with `.`.
    #[schema(
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub name: String,
}

/// A backup just taken.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupCreated {
    pub name: String,
    /// Its directory on the server (`weir-server restore --from` it).
    pub path: String,
    /// Files in it.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How long the checkpoint took, in milliseconds.
    pub took_ms: u64,
    /// When the checkpoint started (ms since the Unix epoch): everything
    /// acknowledged before it is in the backup.
    pub created_at: u64,
}

/// One backup of `backup_dir`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupSummary {
    pub name: String,
    /// Total size in bytes.
    pub bytes: u64,
    /// Files in it.
    pub files: u64,
    /// When the checkpoint started (ms since the Unix epoch).
    pub created_at: u64,
}

/// The backups of `backup_dir`, in name order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<BackupSummary>,
}

/// Take an online backup.
///
/// A consistent snapshot of the whole store (every topic, message,
/// subscription cursor and dead letter) into `<backup_dir>/<name>`, taken
/// while the server keeps serving: every write acknowledged before the
/// request is in it. Restore it offline with `weir-server restore`. 409
/// when the server has no `backup_dir` or the name is taken.
#[utoipa::path(
    post, path = "/v1/backups", tag = TAG_OPS,
    request_body(content = BackupRequest, description = "The backup's name"),
    responses(
        (status = 201, description = "Backup taken", body = BackupCreated),
        Errors,
    )
)]
pub async fn create_backup(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BackupRequest>,
) -> ApiResult<(StatusCode, Json<BackupCreated>)> {
    check_name(&request.name)?;
    let dir = backup_dir(&state)?.join(&request.name);
    let broker = state.broker.clone();
    let target = dir.clone();
    let info = tokio::task::spawn_blocking(move || broker.create_backup(&target))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "backup task failed");
            ApiError::new(ErrorCode::Internal, "internal error")
        })?
        .map_err(|e| backup_error(e, &request.name))?;
    tracing::info!(
        target: "weir::audit",
        backup = %dir.display(),
        files = info.files,
        bytes = info.bytes,
        took_ms = info.took.as_millis(),
        "backup taken"
    );
    Ok((
        StatusCode::CREATED,
        Json(BackupCreated {
            name: request.name,
            path: dir.display().to_string(),
            files: info.files,
            bytes: info.bytes,
            took_ms: u64::try_from(info.took.as_millis()).unwrap_or(u64::MAX),
            created_at: info.created_at_ms,
        }),
    ))
}

/// List backups.
///
/// The finished backups under `backup_dir`, in name order. 409 when the
/// server has no `backup_dir`.
#[utoipa::path(
    get, path = "/v1/backups", tag = TAG_OPS,
    responses((status = 200, description = "The backups", body = BackupList), Errors)
)]
pub async fn list_backups(State(state): State<AppState>) -> ApiResult<Json<BackupList>> {
    let dir = backup_dir(&state)?;
    let broker = state.broker.clone();
    let entries = tokio::task::spawn_blocking(move || broker.list_backups(&dir))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "backup listing task failed");
            ApiError::new(ErrorCode::Internal, "internal error")
        })?
        .map_err(|e| backup_error(e, ""))?;
    let backups = entries
        .into_iter()
        .map(|e| BackupSummary {
            name: e.name,
            bytes: e.bytes,
            files: e.files,
            created_at: e.created_at_ms,
        })
        .collect();
    Ok(Json(BackupList { backups }))
}

/// 1–128 of `[A-Za-z0-9._-]`, not starting with `.`.
fn check_name(name: &str) -> ApiResult<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('.')
        || !name.chars().all(allowed)
    {
        return Err(ApiError::invalid(
            "name",
            format!(
                "`{}` is not a valid backup name: 1 to {MAX_NAME_LEN} letters, digits, \
                 `.`, `_` or `-`, not starting with `.`",
                name.escape_default()
            ),
        ));
    }
    Ok(())
}

fn backup_error(e: BackupError, name: &str) -> ApiError {
    match e {
        BackupError::Exists(_) => ApiError::new(
            ErrorCode::Conflict,
            format!("backup `{name}` already exists"),
        ),
        BackupError::Storage(e) => e.into(),
        other => {
            tracing::error!(error = %other, "backup failed");
            ApiError::new(ErrorCode::Internal, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["a", "nightly-2026.12.05", "_x", &"b".repeat(MAX_NAME_LEN)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "é",
            &"b".repeat(129),
        ] {
            let e = check_name(bad).err();
            assert!(
                e.is_some_and(|e| e.problem.field.as_deref() == Some("name")),
                "{bad}"
            );
        }
    }
}
