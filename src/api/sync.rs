//! Federation sync (see `services::federation`), admin-only.
//!
//! - `POST /iam/sync/run`: `{directory?, mode: "full"|"changed", dry_run?}`
//!   → the run's report `{id, started, finished, created, updated,
//!   disabled, unchanged, removed, errors, …}`. A directory that cannot be
//!   read fails the run (status `failed`, the error in `errors`) and
//!   changes nothing. While a sync runs, another gets 409 `SYNC_RUNNING`.
//! - `GET /iam/sync/runs?limit=`: the kept reports, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::services::{Federation, SyncReport, SyncRequest};

/// Reports a listing answers at most.
const MAX_RUNS: usize = 100;

pub fn federation(state: &AppState) -> Federation<'_> {
    Federation {
        registry: &state.registry,
        catalog: &state.catalog,
    }
}

pub async fn run(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<SyncRequest>,
) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(federation(&state).run(&body, "api").await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn runs(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_RUNS {
        return Err(ApiError::InvalidParameter(format!(
            "`limit` must be between 1 and {MAX_RUNS}"
        )));
    }
    Ok(Json(json!({"runs": federation(&state).runs(limit).await?})))
}
