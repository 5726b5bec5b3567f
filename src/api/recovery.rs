//! Backups and restores of the active store (see `services::recovery`),
//! admin-only.
//!
//! - `POST /iam/recovery/backup`: `{label?}` → 201 with the manifest
//!   `{id, created, size, checksum, namespaces, …}`.
//! - `GET /iam/recovery/backups`: the manifests, newest first.
//! - `POST /iam/recovery/restore/{backup_id}`: `{"confirm": true}`. Checks
//!   the backup, backs up the current contents, then replaces them all or
//!   nothing. A damaged or altered backup gets 422 `BACKUP_CORRUPT`, an
//!   unknown one 404 `BACKUP_NOT_FOUND`; either way the store is untouched.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::body::{Confirmed, JsonBody};
use super::{ApiError, AppState};
use crate::services::Recovery;

fn recovery(state: &AppState) -> Recovery<'_> {
    Recovery {
        registry: &state.registry,
        catalog: &state.catalog,
        accounts: &state.accounts,
        dir: &state.recovery.dir,
        key: state.recovery_key.as_deref(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    #[serde(default)]
    label: Option<String>,
}

pub async fn backup(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<BackupBody>,
) -> Result<Response, ApiError> {
    let manifest = recovery(&state).backup(body.label).await?;
    Ok((StatusCode::CREATED, Json(json!(manifest))).into_response())
}

pub async fn backups(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"backups": recovery(&state).list()?})))
}

pub async fn restore(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Confirmed>,
) -> Result<Json<Value>, ApiError> {
    body.require("restoring replaces everything in the active store")?;
    Ok(Json(json!(recovery(&state).restore(&id).await?)))
}
