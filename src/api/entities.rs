//! Entity routes; `/v1/data` is cedar-agent's name for the same set.
//!
//! - `GET /v1/entities` | `GET /v1/data`: every stored application entity.
//! - `PUT /v1/entities` | `PUT /v1/data`: replace them all (validated against the schema).
//! - `PATCH /v1/entities` | `PATCH /v1/data`: create or replace the given ones.
//! - `DELETE /v1/entities` | `DELETE /v1/data`: remove them all.
//! - `DELETE /v1/entities/{type}/{id}`: remove one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::admin::DataAdmin;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::authz::{UidInput, parse_uid};

pub async fn list(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
) -> Json<Vec<serde_json::Value>> {
    Json(
        state
            .catalog
            .engine()
            .entities()
            .docs
            .values()
            .cloned()
            .collect(),
    )
}

pub async fn replace(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    JsonBody(entities): JsonBody<serde_json::Value>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    state.catalog.replace_entities(entities).await?;
    Ok(list(DataAdmin, State(state)).await)
}

#[derive(Serialize)]
pub struct Upserted {
    upserted: usize,
}

pub async fn upsert(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    JsonBody(entities): JsonBody<serde_json::Value>,
) -> Result<Json<Upserted>, ApiError> {
    let count = entities.as_array().map_or(0, Vec::len);
    state.catalog.upsert_entities(entities).await?;
    Ok(Json(Upserted { upserted: count }))
}

pub async fn clear(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    state.catalog.clear_entities().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_one(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    Path((type_name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let uid = parse_uid(&UidInput::Typed { type_name, id })?;
    state.catalog.delete_entity(&uid).await?;
    Ok(StatusCode::NO_CONTENT)
}
