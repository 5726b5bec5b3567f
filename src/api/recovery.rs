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
//! - `GET /iam/recovery/config`: the settings in force (location,
//!   sealing, schedule, retention of backups and of the journal) and
//!   whether a key is configured.
//! - `PATCH /iam/recovery/config`: changes some of them; checked as a whole
//!   (400 `RECOVERY_INVALID` naming the field), stored, and in force at
//!   once.

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
use crate::services::{Recovery, RecoverySettings};

/// Backups and restores with the settings in force.
pub async fn recovery(state: &AppState) -> Result<Recovery<'_>, ApiError> {
    let settings = RecoverySettings::load(state.catalog.store().as_ref(), &state.recovery)
        .await
        .map_err(crate::services::ServiceError::Store)?;
    Ok(Recovery {
        registry: &state.registry,
        catalog: &state.catalog,
        accounts: &state.accounts,
        settings,
        key: state.recovery_key.as_deref(),
    })
}

/// The settings as answered: never the key, only whether one is set.
fn shown(state: &AppState, settings: &RecoverySettings) -> Value {
    let mut value = json!(settings);
    value["key_configured"] = json!(state.recovery_key.is_some());
    value
}

pub async fn config(_: Admin, State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let settings = recovery(&state).await?.settings;
    Ok(Json(shown(&state, &settings)))
}

pub async fn update_config(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(changes): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let store = state.catalog.store();
    let settings = RecoverySettings::update(
        store.as_ref(),
        &state.recovery,
        state.recovery_key.is_some(),
        &changes,
    )
    .await?;
    // The schedule looks again now; other instances read the store on
    // their next tick.
    state.backup_schedule.notify_one();
    if let Err(e) = crate::services::journal::prune_expired(store.as_ref(), &state.recovery).await {
        tracing::warn!(error = %e, "Could not prune the change journal after a retention change.");
    }
    Ok(Json(shown(&state, &settings)))
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
    let manifest = recovery(&state).await?.backup(body.label).await?;
    Ok((StatusCode::CREATED, Json(json!(manifest))).into_response())
}

pub async fn backups(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"backups": recovery(&state).await?.list()?})))
}

pub async fn restore(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Confirmed>,
) -> Result<Json<Value>, ApiError> {
    body.require("restoring replaces everything in the active store")?;
    Ok(Json(json!(recovery(&state).await?.restore(&id).await?)))
}
