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
use crate::authz::{Decided, DecisionRequest, Outcome};
use crate::services::Resolution;

pub async fn is_authorized(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let decided = decide(&state, &request).await?;
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
        let decided = match serde_json::from_value::<DecisionRequest>(item) {
            Ok(request) => decide(&state, &request).await,
            Err(e) => Err(ApiError::InvalidBody(format!("requests[{index}]: {e}"))),
        };
        match decided {
            Ok(decided) => out.put_slice(&decided.outcome.body),
            Err(e) => out.put_slice(&e.body_json()),
        }
    }
    out.put_slice(b"]}");
    Ok(json_response(out.freeze()))
}

/// Decides, with the principal's directory identity when it has one, and
/// records the decision's metrics.
pub(crate) async fn decide(
    state: &AppState,
    request: &DecisionRequest,
) -> Result<Decided, ApiError> {
    let started = Instant::now();
    let engine = state.catalog.engine();
    let metrics = &state.metrics;
    let identity = match &request.principal {
        Some(principal) if state.identities.enabled() => {
            match state
                .identities
                .resolve(principal, &engine.entities())
                .await
            {
                Resolution::NotDirectory => None,
                Resolution::Resolved { identity, cached } => {
                    if cached {
                        metrics.identity_cache_hits.inc();
                    } else {
                        metrics.identity_cache_misses.inc();
                    }
                    Some(identity)
                }
                Resolution::Unavailable { directory, error } => {
                    metrics.identity_unavailable.inc();
                    metrics.decisions_deny.inc();
                    return Ok(Decided {
                        outcome: Arc::new(Outcome::fail_closed(
                            "IDENTITY_UNAVAILABLE",
                            format!(
                                "the principal's directory `{directory}` could not be read and its identity is not cached: {error}"
                            ),
                        )),
                        cache_hit: false,
                    });
                }
            }
        }
        _ => None,
    };
    let decided = engine.decide(request, identity.as_deref())?;
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
