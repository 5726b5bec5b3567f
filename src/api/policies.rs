//! Policy routes (cedar-agent compatible, plus reload).
//!
//! - `GET /v1/policies`: every application policy `{id, content, source}`.
//! - `POST /v1/policies`: create `{id, content}`; 409 if the id exists.
//! - `PUT /v1/policies`: replace all API policies with `[{id, content}]`.
//! - `GET /v1/policies/{id}`, `PUT /v1/policies/{id}` (`{content}`, upsert),
//!   `DELETE /v1/policies/{id}`.
//! - `POST /v1/policies/reload`: re-read the policy directory and the store.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::admin::DataAdmin;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::authz::{AuthzError, PolicyInfo, PolicyOrigin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    id: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyContent {
    content: String,
}

pub async fn list(_: DataAdmin, State(state): State<Arc<AppState>>) -> Json<Vec<PolicyInfo>> {
    Json(state.catalog.engine().policies().policies.clone())
}

pub async fn get(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<PolicyInfo>, ApiError> {
    state
        .catalog
        .engine()
        .policies()
        .info(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| AuthzError::PolicyNotFound(id).into())
}

pub async fn create(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    JsonBody(policy): JsonBody<NewPolicy>,
) -> Result<Response, ApiError> {
    check_id(&policy.id)?;
    state
        .catalog
        .create_policy(&policy.id, &policy.content)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(api_policy(policy.id, policy.content)),
    )
        .into_response())
}

pub async fn replace_all(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    JsonBody(policies): JsonBody<Vec<NewPolicy>>,
) -> Result<Json<Vec<PolicyInfo>>, ApiError> {
    for policy in &policies {
        check_id(&policy.id)?;
    }
    let pairs = policies.into_iter().map(|p| (p.id, p.content)).collect();
    state.catalog.replace_policies(pairs).await?;
    Ok(list(DataAdmin, State(state)).await)
}

pub async fn upsert(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(policy): JsonBody<PolicyContent>,
) -> Result<Json<PolicyInfo>, ApiError> {
    check_id(&id)?;
    state.catalog.upsert_policy(&id, &policy.content).await?;
    Ok(Json(api_policy(id, policy.content)))
}

pub async fn delete(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.catalog.delete_policy(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct Reloaded {
    generation: u64,
    policies: usize,
}

pub async fn reload(
    _: DataAdmin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Reloaded>, ApiError> {
    let snapshot = reload_policies(&state).await?;
    Ok(Json(Reloaded {
        generation: snapshot.generation,
        policies: snapshot.policies.len(),
    }))
}

/// Reads the policies again and serves them when they validate, counting
/// the outcome in the metrics.
pub(crate) async fn reload_policies(
    state: &AppState,
) -> Result<Arc<crate::authz::PolicySnapshot>, crate::services::ServiceError> {
    let result = state.catalog.reload().await;
    let outcome = if result.is_ok() { "ok" } else { "rejected" };
    state
        .metrics
        .policy_reloads
        .with_label_values(&[outcome])
        .inc();
    if let Ok(snapshot) = &result {
        state
            .metrics
            .policy_generation
            .set(snapshot.generation as i64);
    }
    result
}

fn api_policy(id: String, content: String) -> PolicyInfo {
    PolicyInfo {
        id,
        content,
        source: PolicyOrigin::Api,
        line: None,
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter(
            "policy id must be 1 to 256 characters without control characters".into(),
        ));
    }
    Ok(())
}
