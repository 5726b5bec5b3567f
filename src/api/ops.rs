//! Operations routes.
//!
//! - `GET /health` (also `/` and `/v1`, where cedar-agent answers health):
//!   liveness, always 200 while the process serves, with store status.
//! - `GET /ready`: 200 when the store answers, 503 otherwise.
//! - `GET /metrics`: Prometheus text exposition.
//! - `GET /discovery`: version, features and routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::json;

use super::{AppState, routes};
use crate::backends::BreakerState;

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    store: StoreHealth,
    policies: Generation,
    entities: Generation,
}

#[derive(Serialize)]
struct StoreHealth {
    /// The active backend's name.
    backend: String,
    kind: &'static str,
    status: &'static str,
    breaker: Option<BreakerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Generation {
    generation: u64,
    count: usize,
}

pub async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    let store = state.catalog.store();
    let backend = state.registry.active_name();
    let breaker = state
        .registry
        .breakers()
        .into_iter()
        .find(|(name, ..)| *name == backend)
        .map(|(_, breaker, ..)| breaker);
    let answer = store.health().await;
    let store_health = StoreHealth {
        backend,
        kind: store.kind(),
        status: if answer.is_ok() { "up" } else { "down" },
        breaker,
        error: answer.err().map(|e| e.to_string()),
    };
    let engine = state.catalog.engine();
    let (policies, entities) = (engine.policies(), engine.entities());
    Json(Health {
        status: if store_health.error.is_none() {
            "ok"
        } else {
            "degraded"
        },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        store: store_health,
        policies: Generation {
            generation: policies.generation,
            count: policies.policies.len(),
        },
        entities: Generation {
            generation: entities.generation,
            count: entities.docs.len(),
        },
    })
}

pub async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.catalog.store().health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        ),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let engine = state.catalog.engine();
    state
        .metrics
        .policy_generation
        .set(engine.policies().generation as i64);
    state
        .metrics
        .entity_generation
        .set(engine.entities().generation as i64);
    let log = &state.decision_log.stats;
    state.metrics.observe_decision_log(
        log.written.load(std::sync::atomic::Ordering::Relaxed),
        log.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    for (backend, breaker, retries, failures) in state.registry.breakers() {
        state
            .metrics
            .observe_backend(&backend, breaker.as_number(), retries, failures);
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn discovery(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let routes: Vec<_> = routes(&state.ext_authz.prefix)
        .iter()
        .map(|r| json!({"method": r.method, "path": r.path, "description": r.about}))
        .collect();
    Json(json!({
        "name": "portcullis",
        "version": env!("CARGO_PKG_VERSION"),
        "cedar_version": cedar_policy::get_lang_version().to_string(),
        "features": {
            "decision_cache": state.catalog.engine().decision_cache_enabled(),
            "batch_limit": state.batch_limit,
            "body_limit_bytes": state.body_limit,
            "store": state.catalog.store().kind(),
            "cedar_agent_compatible": true,
        },
        "routes": routes,
    }))
}
