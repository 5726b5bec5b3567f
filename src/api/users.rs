//! Admin routes over accounts (decided by Cedar's admin policies, see
//! `admin.rs`):
//!
//! - `GET /users?q=&cursor=&limit=`: users, paged, optionally filtered.
//! - `GET/PATCH/DELETE /users/{id}`: one user; PATCH may also set
//!   `is_active`, `is_superuser` and `is_verified`. 404 `USER_NOT_FOUND`.
//! - `GET/PATCH /management/settings/`: the account settings in force.
//! - `POST /management/keys/rotate`: a new token signing key signs from
//!   now on; the old ones keep verifying the tokens they signed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::services::AdminUpdate;

const MAX_PAGE: usize = 500;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let page = state
        .accounts
        .list_users(query.cursor.as_deref(), limit, query.q.as_deref())
        .await?;
    let users: Vec<_> = page.users.iter().map(|u| u.view()).collect();
    Ok(Json(
        json!({"users": users, "next_cursor": page.next_cursor}),
    ))
}

pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.accounts.get_user(&id).await?;
    Ok(Json(json!(user.view())))
}

pub async fn update(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<AdminUpdate>,
) -> Result<Json<Value>, ApiError> {
    let user = state.accounts.admin_update_user(&id, update).await?;
    tracing::info!(user = %user.id, active = user.is_active, superuser = user.is_superuser, "User changed by an admin.");
    Ok(Json(json!(user.view())))
}

pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<super::iam::CascadeQuery>,
) -> Result<StatusCode, ApiError> {
    remove_user(&state, &id, query.cascade).await?;
    tracing::info!(user = %id, "User deleted by an admin.");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes user `id` with its keys, sessions, roles and links. The service
/// accounts and agents it owns block it, or (`cascade`) go first.
pub(crate) async fn remove_user(state: &AppState, id: &str, cascade: bool) -> Result<(), ApiError> {
    if state.accounts.user(id).await?.is_none() {
        return Err(crate::services::AccountError::UserNotFound(id.to_owned()).into());
    }
    super::iam::release_user(state, id, cascade).await?;
    state.accounts.delete_user(id).await?;
    // Its roles and links go with it, so a new account can never inherit them.
    crate::services::Rbac {
        catalog: &state.catalog,
    }
    .forget(&crate::authz::user_uid(id))
    .await?;
    Ok(())
}

pub async fn settings(_: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!(*state.accounts.settings()))
}

pub async fn update_settings(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(changes): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let settings = state.accounts.update_settings(&changes).await?;
    tracing::info!(changed = ?changes.as_object().map(|m| m.keys().collect::<Vec<_>>()), "Account settings changed.");
    Ok(Json(json!(*settings)))
}

pub async fn rotate_keys(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let tokens = &state.accounts.tokens;
    tokens
        .add_key()
        .await
        .map_err(crate::services::AccountError::from)?;
    Ok(Json(
        json!({"signing_key": tokens.signing_kid(), "jwks": tokens.jwks()}),
    ))
}
