//! RBAC routes (Casbin's role API; decided by Cedar, see `services::rbac`).
//!
//! - `POST /rbac/check`: `{subject, object, action}` (or `{principal,
//!   resource, action, context}`) → `{allowed, decision, reasons, errors}`,
//!   the same decision `/v1/is_authorized` makes; credentials as there.
//! - `GET/POST/DELETE /rbac/policies`: list, add (201; 409 `GRANT_EXISTS`),
//!   remove (404 `GRANT_NOT_FOUND`) one grant.
//! - `POST /rbac/policies/bulk`: `{op: "add"|"remove", items: [...]}`, all or
//!   nothing; 400 `BULK_REJECTED` lists each bad item.
//! - `GET /rbac/roles`, `GET/PUT/DELETE /rbac/roles/{id}`: roles and their
//!   parents (409 `ROLE_CYCLE`); a used role is removed with `?cascade=true`.
//! - `GET/POST/DELETE /rbac/users/{id}/roles`, `…/roles/implicit`,
//!   `…/permissions`: a principal's roles, direct and implicit, and its
//!   effective grants. `{id}` is a user id or any principal uid.
//! - `POST /rbac/management/reload`, `POST /rbac/management/reset`.
//!
//! Everything but the check is admin-only.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::body::{Confirmed, JsonBody};
use super::decisions::{Origin, decide, decision_caller, principal_identity};
use super::iam::CascadeQuery;
use super::{ApiError, AppState};
use crate::authz::{DecisionRequest, UidInput};
use crate::services::{BulkOp, GrantInput, Rbac, RbacError, RbacState, principal_uid};

fn rbac(state: &AppState) -> Rbac<'_> {
    Rbac {
        catalog: &state.catalog,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[serde(alias = "principal")]
    subject: UidInput,
    #[serde(alias = "resource")]
    object: UidInput,
    action: UidInput,
    #[serde(default)]
    context: Option<Value>,
}

pub async fn check(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = decision_caller(&state, &headers, Some("decide")).await?;
    let principal = principal_uid("subject", &body.subject)?;
    let request = DecisionRequest {
        principal: Some(UidInput::Text(principal.to_string())),
        action: Some(body.action),
        resource: Some(body.object),
        context: body.context,
        ..DecisionRequest::default()
    };
    let origin = Origin {
        kind: "rbac",
        decision_id: None,
    };
    let decided = decide(&state, &request, caller.as_ref(), origin).await?;
    let outcome = &decided.outcome;
    Ok(Json(json!({
        "allowed": outcome.allowed(),
        "decision": if outcome.allowed() { "Allow" } else { "Deny" },
        "reasons": outcome.reasons(),
        "errors": outcome.errors(),
    })))
}

pub async fn list_grants(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"grants": grants_view(&rbac(&state).grants())})))
}

fn grants_view(grants: &[crate::domain::Grant]) -> Vec<Value> {
    grants
        .iter()
        .map(|g| {
            let mut view = json!(g);
            view["policy_id"] = json!(crate::authz::grant_policy_id(g));
            view
        })
        .collect()
}

pub async fn add_grant(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<GrantInput>,
) -> Result<Response, ApiError> {
    let grant = rbac(&state).add(&input).await?;
    tracing::info!(grant = %grant.id, subject = %grant.subject, "RBAC grant added.");
    Ok((StatusCode::CREATED, Json(grants_view(&[grant]).remove(0))).into_response())
}

pub async fn remove_grant(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<GrantInput>,
) -> Result<Json<Value>, ApiError> {
    let grant = rbac(&state).remove(&input).await?;
    tracing::info!(grant = %grant.id, subject = %grant.subject, "RBAC grant removed.");
    Ok(Json(grants_view(&[grant]).remove(0)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    op: BulkOp,
    items: Vec<GrantInput>,
}

pub async fn bulk(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    if body.items.len() > state.batch_limit {
        return Err(ApiError::BatchTooLarge {
            got: body.items.len(),
            limit: state.batch_limit,
        });
    }
    let done = rbac(&state).bulk(body.op, &body.items).await?;
    tracing::info!(op = ?body.op, count = done.len(), "RBAC grants changed in bulk.");
    Ok(Json(
        json!({"applied": done.len(), "grants": grants_view(&done)}),
    ))
}

pub async fn list_roles(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"roles": rbac(&state).roles()})))
}

pub async fn get_role(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let role = rbac(&state).role(&id).ok_or(RbacError::RoleNotFound(id))?;
    Ok(Json(json!(role)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parents: BTreeSet<String>,
}

pub async fn put_role(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Result<Response, ApiError> {
    let (role, created) = rbac(&state)
        .put_role(&id, body.description, body.parents)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(role))).into_response())
}

pub async fn delete_role(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CascadeQuery>,
) -> Result<Json<Value>, ApiError> {
    let removed = rbac(&state).delete_role(&id, query.cascade).await?;
    tracing::info!(role = %id, dependents = removed.len(), "RBAC role removed.");
    Ok(Json(json!({"removed": id, "dependents_removed": removed})))
}

fn principal(id: &str) -> Result<cedar_policy::EntityUid, ApiError> {
    Ok(principal_uid("id", &UidInput::Text(id.to_owned()))?)
}

/// The principal's own entities (a directory user's groups, a local
/// account), as decisions see them. When they cannot be read, the views
/// show what the store and RBAC say alone.
async fn identity_of(state: &AppState, uid: &cedar_policy::EntityUid) -> Vec<cedar_policy::Entity> {
    match principal_identity(state, &UidInput::Text(uid.to_string())).await {
        Ok(Some(identity)) => identity.entities.to_vec(),
        Ok(None) => Vec::new(),
        Err(reason) => {
            tracing::warn!(%reason, "Showing RBAC roles without the principal's identity.");
            Vec::new()
        }
    }
}

pub async fn user_roles(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = principal(&id)?;
    Ok(Json(
        json!({"principal": uid.to_string(), "roles": rbac(&state).roles_of(&uid)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRef {
    role: String,
}

pub async fn assign_role(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RoleRef>,
) -> Result<Response, ApiError> {
    let uid = principal(&id)?;
    let service = rbac(&state);
    service.assign(&uid, &body.role).await?;
    tracing::info!(principal = %uid, role = %body.role, "RBAC role assigned.");
    let view = json!({"principal": uid.to_string(), "roles": service.roles_of(&uid)});
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn unassign_role(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RoleRef>,
) -> Result<Json<Value>, ApiError> {
    let uid = principal(&id)?;
    let service = rbac(&state);
    service.unassign(&uid, &body.role).await?;
    tracing::info!(principal = %uid, role = %body.role, "RBAC role unassigned.");
    Ok(Json(
        json!({"principal": uid.to_string(), "roles": service.roles_of(&uid)}),
    ))
}

pub async fn implicit_roles(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = principal(&id)?;
    let identity = identity_of(&state, &uid).await;
    let roles = rbac(&state).implicit_roles(&uid, &identity);
    Ok(Json(json!({"principal": uid.to_string(), "roles": roles})))
}

pub async fn permissions(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = principal(&id)?;
    let identity = identity_of(&state, &uid).await;
    let permissions = rbac(&state).permissions(&uid, &identity);
    Ok(Json(
        json!({"principal": uid.to_string(), "permissions": permissions}),
    ))
}

pub async fn reload(_: Admin, State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let policies = state.catalog.reload().await?;
    let grants = state.catalog.rbac().grants.len();
    Ok(Json(json!({
        "policies": policies.policies.len(),
        "grants": grants,
        "generation": policies.generation,
    })))
}

/// How many grants, roles and assignments `state` holds.
fn counts(state: &RbacState) -> Value {
    json!({
        "grants": state.grants.len(),
        "roles": state.roles.len(),
        "assignments": state.assignments.len(),
    })
}

/// What `reset` needs in `confirm`, so it is never sent by accident.
pub const RESET_CONFIRMATION: &str = "reset all RBAC grants and assignments";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn reset(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    if body.confirm.as_deref() != Some(RESET_CONFIRMATION) {
        return Err(RbacError::ResetNotConfirmed.into());
    }
    let (backup, removed) = rbac(&state).reset().await?;
    tracing::warn!(backup = %backup, removed = %counts(&removed), "RBAC reset: every grant, role and assignment removed.");
    Ok(Json(json!({
        "backup_id": backup,
        "removed": counts(&removed),
    })))
}

pub async fn backups(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"backups": rbac(&state).backups().await?})))
}

pub async fn restore(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Confirmed>,
) -> Result<Json<Value>, ApiError> {
    body.require("restoring replaces every RBAC grant, role and assignment")?;
    let (backup, restored) = rbac(&state).restore(&id).await?;
    tracing::warn!(backup = %id, grants = restored.grants.len(), "RBAC restored from a backup.");
    Ok(Json(json!({
        "backup_id": backup,
        "restored": counts(&restored),
    })))
}
