//! Identity-graph routes (see `services::graph`), all admin-only.
//!
//! - `GET/POST /iam/service-accounts`, `GET/PATCH/DELETE
//!   /iam/service-accounts/{id}`: non-human principals owned by a user.
//! - `GET/POST /iam/ai-agents`, `GET/PATCH/DELETE /iam/ai-agents/{id}`: AI
//!   agents, owned by a user or a service account, bound to a provider.
//! - `GET/POST …/{id}/keys`, `DELETE …/{id}/keys/{credential_id}`,
//!   `POST …/{id}/rotate/{credential_id}`: their credentials (the secret
//!   is in the answer once; a rotated-out one works for the grace period).
//! - `GET/POST /iam/ai-providers`, `GET/DELETE /iam/ai-providers/{id}`.
//! - `POST/DELETE /iam/graph/link`: typed edges; a cycle is 409 `GRAPH_CYCLE`.
//! - `GET /iam/graph/{id}/memberships`, `…/dependents`: bounded traversals
//!   with the path to each identity. `{id}` is a uid or a user id.
//!
//! A delete of an identity with dependents answers 409 `HAS_DEPENDENTS`
//! listing them, unless `?cascade=true`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admin::Admin;
use super::body::JsonBody;
use super::decisions::principal_identity;
use super::{ApiError, AppState};
use crate::authz::{
    AGENT_TYPE, PROVIDER_TYPE, SERVICE_ACCOUNT_TYPE, USER_TYPE, UidInput, portcullis_uid,
};
use crate::services::{
    Graph, GraphError, IdentityUpdate, Limits, LinkInput, NewAgent, NewCredential, NewProvider,
    NewServiceAccount, Rbac, identity_uid,
};

fn graph(state: &AppState) -> Graph<'_> {
    Graph {
        catalog: &state.catalog,
        config: &state.iam,
    }
}

/// A record with its Cedar uid.
fn view(uid: &EntityUid, record: &impl Serialize) -> Value {
    let mut out = json!(record);
    out["uid"] = json!(uid.to_string());
    out
}

/// A user named (as an owner, or a member) must exist: a local account or
/// a stored `Portcullis::User` entity; a directory user
/// (`<directory>:<id>`) is taken as named.
async fn check_user(state: &AppState, field: &str, user: &UidInput) -> Result<(), ApiError> {
    let uid = identity_uid(field, user)?;
    if uid.type_name().to_string() != USER_TYPE {
        return Ok(());
    }
    let id = uid.id().unescaped();
    if id.contains(':') {
        return Ok(());
    }
    let stored = state
        .catalog
        .engine()
        .entities()
        .docs
        .contains_key(&crate::authz::entity_key(&uid));
    if stored || state.accounts.user(id).await?.is_some() {
        Ok(())
    } else {
        Err(GraphError::NotFound(format!("{field} `{uid}`")).into())
    }
}

/// `?cascade=true`: a delete takes what depends on the deleted thing too.
#[derive(Deserialize)]
pub struct CascadeQuery {
    #[serde(default)]
    pub cascade: bool,
}

// Service accounts.

fn sa_uid(id: &str) -> EntityUid {
    portcullis_uid(SERVICE_ACCOUNT_TYPE, id)
}

pub async fn list_service_accounts(_: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    let accounts: Vec<Value> = graph(&state)
        .service_accounts()
        .iter()
        .map(|sa| view(&sa_uid(&sa.id), sa))
        .collect();
    Json(json!({"service_accounts": accounts}))
}

pub async fn create_service_account(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<NewServiceAccount>,
) -> Result<Response, ApiError> {
    check_user(&state, "owner", &input.owner).await?;
    let sa = graph(&state).create_service_account(&input).await?;
    tracing::info!(service_account = %sa.id, owner = %sa.owner, "Service account created.");
    Ok((StatusCode::CREATED, Json(view(&sa_uid(&sa.id), &sa))).into_response())
}

pub async fn get_service_account(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sa = graph(&state).service_account(&id)?;
    Ok(Json(view(&sa_uid(&id), &sa)))
}

pub async fn update_service_account(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<IdentityUpdate>,
) -> Result<Json<Value>, ApiError> {
    let sa = graph(&state).update_service_account(&id, &update).await?;
    tracing::info!(service_account = %id, disabled = sa.disabled, "Service account updated.");
    Ok(Json(view(&sa_uid(&id), &sa)))
}

pub async fn delete_service_account(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CascadeQuery>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &sa_uid(&id), query.cascade).await
}

async fn remove(state: &AppState, uid: &EntityUid, cascade: bool) -> Result<Json<Value>, ApiError> {
    let dependents = graph(state).delete(uid, cascade).await?;
    tracing::info!(identity = %uid, dependents = dependents.len(), "Identity removed.");
    Ok(Json(
        json!({"removed": uid.to_string(), "dependents_removed": dependents}),
    ))
}

// AI agents.

fn agent_uid(id: &str) -> EntityUid {
    portcullis_uid(AGENT_TYPE, id)
}

pub async fn list_agents(_: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    let agents: Vec<Value> = graph(&state)
        .agents()
        .iter()
        .map(|a| view(&agent_uid(&a.id), a))
        .collect();
    Json(json!({"agents": agents}))
}

pub async fn create_agent(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<NewAgent>,
) -> Result<Response, ApiError> {
    check_user(&state, "owner", &input.owner).await?;
    let agent = graph(&state).create_agent(&input).await?;
    tracing::info!(agent = %agent.id, owner = %agent.owner, provider = %agent.provider, "AI agent created.");
    Ok((
        StatusCode::CREATED,
        Json(view(&agent_uid(&agent.id), &agent)),
    )
        .into_response())
}

pub async fn get_agent(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = graph(&state).agent(&id)?;
    Ok(Json(view(&agent_uid(&id), &agent)))
}

pub async fn update_agent(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<IdentityUpdate>,
) -> Result<Json<Value>, ApiError> {
    let agent = graph(&state).update_agent(&id, &update).await?;
    tracing::info!(agent = %id, disabled = agent.disabled, "AI agent updated.");
    Ok(Json(view(&agent_uid(&id), &agent)))
}

pub async fn delete_agent(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CascadeQuery>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &agent_uid(&id), query.cascade).await
}

// Credentials of service accounts and agents.

async fn list_keys(state: &AppState, principal: EntityUid) -> Result<Json<Value>, ApiError> {
    let keys = graph(state).credentials(&principal)?;
    Ok(Json(
        json!({"principal": principal.to_string(), "keys": keys}),
    ))
}

async fn issue_key(
    state: &AppState,
    principal: EntityUid,
    input: &NewCredential,
) -> Result<Response, ApiError> {
    let issued = graph(state).issue_credential(&principal, input).await?;
    tracing::info!(principal = %principal, credential = %issued.credential.id, "Credential issued.");
    Ok((StatusCode::CREATED, Json(json!(issued))).into_response())
}

async fn rotate_key(
    state: &AppState,
    principal: EntityUid,
    credential: &str,
) -> Result<Json<Value>, ApiError> {
    let issued = graph(state)
        .rotate_credential(&principal, credential)
        .await?;
    tracing::info!(principal = %principal, credential, "Credential rotated.");
    Ok(Json(json!(issued)))
}

async fn revoke_key(
    state: &AppState,
    principal: EntityUid,
    credential: &str,
) -> Result<StatusCode, ApiError> {
    graph(state)
        .revoke_credential(&principal, credential)
        .await?;
    tracing::info!(principal = %principal, credential, "Credential revoked.");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_service_account_keys(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_keys(&state, sa_uid(&id)).await
}

pub async fn issue_service_account_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NewCredential>,
) -> Result<Response, ApiError> {
    issue_key(&state, sa_uid(&id), &input).await
}

pub async fn rotate_service_account_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((id, credential)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    rotate_key(&state, sa_uid(&id), &credential).await
}

pub async fn revoke_service_account_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((id, credential)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    revoke_key(&state, sa_uid(&id), &credential).await
}

pub async fn list_agent_keys(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_keys(&state, agent_uid(&id)).await
}

pub async fn issue_agent_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NewCredential>,
) -> Result<Response, ApiError> {
    issue_key(&state, agent_uid(&id), &input).await
}

pub async fn rotate_agent_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((id, credential)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    rotate_key(&state, agent_uid(&id), &credential).await
}

pub async fn revoke_agent_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((id, credential)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    revoke_key(&state, agent_uid(&id), &credential).await
}

// AI providers.

fn provider_uid(id: &str) -> EntityUid {
    portcullis_uid(PROVIDER_TYPE, id)
}

pub async fn list_providers(_: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    let providers: Vec<Value> = graph(&state)
        .providers()
        .iter()
        .map(|p| view(&provider_uid(&p.id), p))
        .collect();
    Json(json!({"providers": providers}))
}

pub async fn create_provider(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<NewProvider>,
) -> Result<Response, ApiError> {
    let provider = graph(&state).create_provider(&input).await?;
    tracing::info!(provider = %provider.id, kind = %provider.kind, "AI provider created.");
    Ok((
        StatusCode::CREATED,
        Json(view(&provider_uid(&provider.id), &provider)),
    )
        .into_response())
}

pub async fn get_provider(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let provider = graph(&state).provider(&id)?;
    Ok(Json(view(&provider_uid(&id), &provider)))
}

pub async fn delete_provider(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CascadeQuery>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &provider_uid(&id), query.cascade).await
}

// Edges and traversals.

pub async fn link(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<LinkInput>,
) -> Result<Response, ApiError> {
    if input.kind == crate::domain::EdgeKind::MemberOf {
        check_user(&state, "from", &input.from).await?;
    }
    let edge = graph(&state).link(&input).await?;
    tracing::info!(from = %edge.from, kind = edge.kind.as_str(), to = %edge.to, "Identity link added.");
    Ok((StatusCode::CREATED, Json(json!(edge))).into_response())
}

pub async fn unlink(
    _: Admin,
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<LinkInput>,
) -> Result<Json<Value>, ApiError> {
    let edge = graph(&state).unlink(&input).await?;
    tracing::info!(from = %edge.from, kind = edge.kind.as_str(), to = %edge.to, "Identity link removed.");
    Ok(Json(json!(edge)))
}

fn node(id: &str) -> Result<EntityUid, ApiError> {
    Ok(identity_uid("id", &UidInput::Text(id.to_owned()))?)
}

pub async fn memberships(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = node(&id)?;
    let identity = match principal_identity(&state, &UidInput::Text(uid.to_string())).await {
        Ok(Some(identity)) => identity.entities.to_vec(),
        Ok(None) => Vec::new(),
        Err(reason) => {
            tracing::warn!(%reason, "Showing memberships without the identity's directory.");
            Vec::new()
        }
    };
    let rbac = Rbac {
        catalog: &state.catalog,
    };
    let walked = rbac.memberships(&uid, &identity, Limits::from(&state.iam));
    Ok(Json(json!({
        "identity": uid.to_string(),
        "memberships": walked.reached,
        "truncated": walked.truncated,
    })))
}

pub async fn dependents(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = node(&id)?;
    let walked = graph(&state).dependents(&uid);
    Ok(Json(json!({
        "identity": uid.to_string(),
        "dependents": walked.reached,
        "truncated": walked.truncated,
    })))
}

/// Whether the local user `id` can be deleted: the service accounts and
/// agents it owns (and theirs) block it, unless `cascade` removes them.
/// The service accounts and agents `id` owns (its dependents in the
/// identity graph that a deletion takes with it).
pub(crate) fn owned_by(state: &AppState, id: &str) -> Vec<String> {
    owned(state, id).1.iter().map(ToString::to_string).collect()
}

/// Every dependent of user `id`, and those of them it owns.
fn owned(state: &AppState, id: &str) -> (Vec<String>, Vec<EntityUid>) {
    let uid = crate::authz::user_uid(id);
    let dependents: Vec<String> = crate::services::dependents(
        &state.catalog.rbac(),
        &uid.to_string(),
        Limits::from(&state.iam),
    )
    .reached
    .into_iter()
    .map(|r| r.id)
    .collect();
    let owned = dependents
        .iter()
        .filter_map(|d| d.parse::<EntityUid>().ok())
        .filter(|d| {
            let t = d.type_name().to_string();
            t == SERVICE_ACCOUNT_TYPE || t == AGENT_TYPE
        })
        .collect();
    (dependents, owned)
}

pub(crate) async fn release_user(
    state: &AppState,
    id: &str,
    cascade: bool,
) -> Result<(), ApiError> {
    let (dependents, owned) = owned(state, id);
    if owned.is_empty() {
        return Ok(());
    }
    if !cascade {
        return Err(GraphError::HasDependents {
            identity: crate::authz::user_uid(id).to_string(),
            dependents,
        }
        .into());
    }
    for identity in owned {
        match graph(state).delete(&identity, true).await {
            Ok(_) | Err(GraphError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
