//! Schema routes (cedar-agent compatible): the application's schema
//! fragment only; Portcullis's built-in fragment is not replaceable.
//!
//! - `GET /v1/schema`: the application schema as Cedar JSON (`{}` when none).
//! - `PUT /v1/schema`: set it; refused when a policy or stored entity breaks it.
//! - `DELETE /v1/schema`: remove it (policies and data stay).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::admin::DataAdmin;
use super::body::JsonBody;
use super::{ApiError, AppState};

pub async fn get(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let snapshot = state.catalog.engine().policies();
    match &snapshot.app_schema {
        Some(doc) => Ok(Json(doc.to_json()?)),
        None => Ok(Json(serde_json::json!({}))),
    }
}

pub async fn put(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    JsonBody(schema): JsonBody<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !schema.is_object() {
        return Err(ApiError::InvalidBody(
            "a Cedar JSON schema is an object".into(),
        ));
    }
    // cedar-agent's "no schema" is `{}`.
    if schema.as_object().is_some_and(|o| o.is_empty()) {
        state.catalog.delete_schema().await?;
    } else {
        state.catalog.put_schema(schema.clone()).await?;
    }
    Ok(Json(schema))
}

pub async fn delete(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    state.catalog.delete_schema().await?;
    Ok(StatusCode::NO_CONTENT)
}
