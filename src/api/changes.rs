//! The change journal and rollbacks (see `services::changes`), admin-only.
//!
//! - `GET /iam/recovery/changes?actor=&key=&since=&until=&limit=&cursor=`:
//!   journal entries, newest first, with `next` for the following page.
//! - `POST /iam/recovery/rollback/{change_id}?cascade=`: restores the values
//!   the change found. When later changes touch the same keys: 409
//!   `CHANGE_CONFLICT` listing them, unless `cascade=true`, which reverts
//!   them too, newest first. The rollback is journaled like any change.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::admin::Admin;
use super::{ApiError, AppState};
use crate::services::{ChangePage, ChangeQuery, Rollback, RolledBack, list_changes};

pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(query): Query<ChangeQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    let store = state.registry.store();
    Ok(Json(list_changes(store.as_ref(), &query).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackQuery {
    #[serde(default)]
    cascade: bool,
}

pub async fn rollback(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<RollbackQuery>,
) -> Result<Json<RolledBack>, ApiError> {
    Ok(Json(roll_back(&state, &id, query.cascade).await?))
}

/// Rolls change `id` back (with the later changes to its keys, `cascade`).
pub(crate) async fn roll_back(
    state: &AppState,
    id: &str,
    cascade: bool,
) -> Result<RolledBack, ApiError> {
    let store = state.registry.store();
    let rollback = Rollback {
        store: store.as_ref(),
        catalog: &state.catalog,
        accounts: &state.accounts,
    };
    Ok(rollback.run(id, cascade).await?)
}
