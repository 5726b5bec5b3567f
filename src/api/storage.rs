//! The raw key-value store, for admins (`Authorization: Bearer <token>`).
//!
//! - `GET /storage/{namespace}?prefix=&cursor=&limit=`: keys with versions,
//!   a page at a time (`next_cursor`).
//! - `GET /storage/{namespace}/{key}`: the stored bytes, version in `ETag`.
//! - `POST /storage/{namespace}/{key}`: store the body; `If-Match: "<v>"`
//!   updates only that version, `If-None-Match: *` only creates; otherwise 412.
//! - `DELETE /storage/{namespace}/{key}`: remove, honouring `If-Match`.
//!
//! - `GET /storage/backends`: every configured store, its role and health.
//! - `POST /storage/switch/{backend}`: make it the active store (copy,
//!   verify, flip; writes wait meanwhile, none fail or get lost).
//!
//! The catalog's namespaces (policies, schema, entities) are read-only here:
//! writing them directly would bypass validation and the engine.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::admin::Admin;
use super::body::RawBody;
use super::{ApiError, AppState};
use crate::backends::{BackendStatus, Expect, StoreError, SwitchReport};
use crate::services::{RESERVED_NAMESPACES, Secrecy, journal, secrecy};

const MAX_NAME: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct KeyEntry {
    key: String,
    version: u64,
}

#[derive(Serialize)]
pub struct KeyPage {
    namespace: String,
    keys: Vec<KeyEntry>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
pub struct Written {
    namespace: String,
    key: String,
    version: u64,
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter(format!(
            "{what} must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

/// Any namespace but the ones holding private keys.
fn readable(namespace: &str) -> Result<(), ApiError> {
    check_name("namespace", namespace)?;
    if secrecy(namespace) != Secrecy::None {
        return Err(ApiError::NamespaceSecret(namespace.to_owned()));
    }
    Ok(())
}

fn writable(namespace: &str) -> Result<(), ApiError> {
    check_name("namespace", namespace)?;
    if RESERVED_NAMESPACES.contains(&namespace) {
        return Err(ApiError::NamespaceReserved(namespace.to_owned()));
    }
    Ok(())
}

/// A version conflict on this API is a failed precondition.
fn precondition(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::PreconditionFailed,
        other => ApiError::Store(other),
    }
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// `If-Match` / `If-None-Match` as a store expectation.
fn expectation(headers: &HeaderMap) -> Result<Option<Expect>, ApiError> {
    if let Some(value) = headers.get(IF_NONE_MATCH) {
        return match value.to_str().map(str::trim) {
            Ok("*") => Ok(Some(Expect::Absent)),
            _ => Err(ApiError::InvalidParameter(
                "If-None-Match supports only `*`".into(),
            )),
        };
    }
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidParameter("If-Match is not ASCII".into()))?
        .trim();
    if text == "*" {
        return Err(ApiError::InvalidParameter(
            "If-Match: * is not supported; send the version from the ETag".into(),
        ));
    }
    let version = text
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map_err(|_| ApiError::InvalidParameter("If-Match must be an ETag from this API".into()))?;
    Ok(Some(Expect::Version(version)))
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    readable(&namespace)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidParameter("limit must be 1 to 1000".into()));
    }
    let page = state
        .catalog
        .store()
        .scan(&namespace, &query.prefix, query.cursor.as_deref(), limit)
        .await?;
    Ok(Json(KeyPage {
        namespace,
        keys: page
            .items
            .into_iter()
            .map(|(key, v)| KeyEntry {
                key,
                version: v.version,
            })
            .collect(),
        next_cursor: page.next,
    }))
}

pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((namespace, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    readable(&namespace)?;
    check_name("key", &key)?;
    let stored = state
        .catalog
        .store()
        .get(&namespace, &key)
        .await?
        .ok_or(ApiError::KeyNotFound(key))?;
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&stored.value).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    Ok((
        [
            (CONTENT_TYPE, content_type.to_owned()),
            (ETAG, etag(stored.version)),
        ],
        stored.value,
    )
        .into_response())
}

pub async fn put(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    writable(&namespace)?;
    check_name("key", &key)?;
    let expect = expectation(&headers)?;
    let version = state
        .catalog
        .store()
        .put(&namespace, &key, &body, expect.unwrap_or(Expect::Any))
        .await
        .map_err(precondition)?;
    let status = if expect == Some(Expect::Absent) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(ETAG, etag(version))],
        Json(Written {
            namespace,
            key,
            version,
        }),
    )
        .into_response())
}

pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    writable(&namespace)?;
    check_name("key", &key)?;
    let expect = expectation(&headers)?.unwrap_or(Expect::Any);
    let removed = state
        .catalog
        .store()
        .delete(&namespace, &key, expect)
        .await
        .map_err(precondition)?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::KeyNotFound(key))
    }
}

pub async fn backends(_: Admin, State(state): State<Arc<AppState>>) -> Json<Vec<BackendStatus>> {
    Json(state.registry.backends().await)
}

pub async fn switch(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(backend): Path<String>,
) -> Result<Json<SwitchReport>, ApiError> {
    Ok(Json(switch_store(&state, &backend).await?))
}

/// Makes `backend` the active store (copying everything to it), and says so
/// in the new store's journal.
pub(crate) async fn switch_store(
    state: &AppState,
    backend: &str,
) -> Result<SwitchReport, ApiError> {
    let report = state.registry.switch(backend).await?;
    // The copy went around the journal; the new store's journal says so.
    let marker = journal::marker(
        &format!("switch from {} to {}", report.from, report.to),
        report
            .namespaces
            .keys()
            .map(|ns| format!("{ns}/*"))
            .collect(),
    );
    if let Err(e) =
        journal::transact_with(state.registry.store().as_ref(), Vec::new(), &marker).await
    {
        tracing::warn!(error = %e, "The store switch could not be journaled.");
    }
    Ok(report)
}
