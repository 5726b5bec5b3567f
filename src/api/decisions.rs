//! Decision routes.
//!
//! - `POST /v1/is_authorized`: one decision (cedar-agent's body and answer).
//! - `POST /v1/is_authorized/batch`: `{"requests": [...]}` → `{"results": [...]}`
//!   in order; an invalid item answers with its own error object in place.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::authz::{Decided, DecisionRequest};

pub async fn is_authorized(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let decided = decide(&state, &request)?;
    Ok(json_response(decided.outcome.body.clone()))
}

#[derive(Deserialize)]
pub struct BatchRequest {
    requests: Vec<serde_json::Value>,
}

pub async fn is_authorized_batch(
    State(state): State<Arc<AppState>>,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    if batch.requests.len() > state.batch_limit {
        return Err(ApiError::BatchTooLarge {
            got: batch.requests.len(),
            limit: state.batch_limit,
        });
    }
    let mut out = BytesMut::with_capacity(64 + batch.requests.len() * 96);
    out.put_slice(b"{\"results\":[");
    for (index, item) in batch.requests.into_iter().enumerate() {
        if index > 0 {
            out.put_u8(b',');
        }
        let decided = serde_json::from_value::<DecisionRequest>(item)
            .map_err(|e| ApiError::InvalidBody(format!("requests[{index}]: {e}")))
            .and_then(|request| decide(&state, &request));
        match decided {
            Ok(decided) => out.put_slice(&decided.outcome.body),
            Err(e) => out.put_slice(&e.body_json()),
        }
    }
    out.put_slice(b"]}");
    Ok(json_response(out.freeze()))
}

/// Decides and records the decision's metrics.
pub(crate) fn decide(state: &AppState, request: &DecisionRequest) -> Result<Decided, ApiError> {
    let started = Instant::now();
    let decided = state.catalog.engine().decide(request)?;
    let metrics = &state.metrics;
    metrics
        .decision_duration
        .observe(started.elapsed().as_secs_f64());
    if decided.outcome.allowed() {
        metrics.decisions_allow.inc();
    } else {
        metrics.decisions_deny.inc();
    }
    if decided.cache_hit {
        metrics.decision_cache_hits.inc();
    } else if !request.has_inline_entities() {
        metrics.decision_cache_misses.inc();
    }
    Ok(decided)
}

fn json_response(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}
