//! Decision routes.
//!
//! - `POST /v1/is_authorized`: one decision (cedar-agent's body and answer).
//! - `POST /v1/is_authorized/batch`: `{"requests": [...]}` → `{"results": [...]}`
//!   in order; an invalid item answers with its own error object in place.
//!
//! Both take optional credentials (`Authorization: Bearer <access token>`
//! or `X-API-Key`, or a JWT of a provider with `[backends.<name>.bearer]`).
//! A request without a `principal` is then decided for the caller, as
//! `Portcullis::User::"<id>"` with its attributes and roles (or
//! `Portcullis::User::"<provider>:<subject>"` in its groups).
//! Without credentials they work as cedar-agent's do.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;

use super::accounts;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::authz::{
    AGENT_TYPE, Decided, DecisionRequest, EntitySnapshot, Outcome, ResolvedIdentity, USER_TYPE,
    UidInput, entity_key, parse_uid, user_uid,
};
use crate::services::{
    AccountError, Authenticated, Bearer, CREDENTIAL_PREFIX, IdentityError, Resolution, random_id,
};
use crate::telemetry::{Entry, Explanation, Why, now_ms};
use cedar_policy::EntityUid;

/// Who asks, when a decision may be for the caller: its principal and its
/// entities (a signed-in user or an API key's owner, stamped with the
/// user's stored version; or a provider's JWT, stamped per token), so
/// cached decisions follow changes to either.
pub(crate) struct Caller {
    pub principal: EntityUid,
    pub identity: Arc<ResolvedIdentity>,
}

impl Caller {
    fn local(me: &Authenticated) -> Caller {
        Caller {
            principal: user_uid(&me.user.id),
            identity: Arc::new(ResolvedIdentity {
                entities: me.entities.clone(),
                stamp: me.version,
            }),
        }
    }
}

/// The caller behind a request's credentials, for decisions: a JWT of a
/// provider that accepts bearer tokens, else this server's own token or an
/// API key, which must then hold `scope` when one is named. Credentials
/// that are presented but not valid are an error, never anonymous.
pub(crate) async fn decision_caller(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    scope: Option<&str>,
) -> Result<Option<Caller>, ApiError> {
    if let Some(caller) = graph_caller(state, headers)? {
        return Ok(Some(caller));
    }
    if let Some(token) = accounts::bearer(headers) {
        match state.identities.bearer(token).await {
            Bearer::NotIssued => {}
            Bearer::Valid(known) => {
                return Ok(Some(Caller {
                    principal: known.principal.clone(),
                    identity: known.identity.clone(),
                }));
            }
            Bearer::Invalid(reason) => {
                tracing::debug!(%reason, "Provider token refused.");
                return Err(AccountError::Unauthenticated.into());
            }
            Bearer::Unavailable { directory, error } => {
                return Err(IdentityError::Unavailable {
                    name: directory,
                    source: error,
                }
                .into());
            }
        }
    }
    let Some(me) = accounts::caller(headers, state).await? else {
        return Ok(None);
    };
    if let Some(scope) = scope {
        accounts::require(&me, scope)?;
    }
    Ok(Some(Caller::local(&me)))
}

/// A service account or agent behind a `pcs_` credential (`X-API-Key`, or
/// a bearer token). Its entity, with its graph parents and roles, is in
/// the served snapshot, so it brings none of its own. A credential that
/// does not match is an error, never anonymous.
fn graph_caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let presented = headers
        .get(accounts::API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| accounts::bearer(headers));
    let Some(presented) = presented.filter(|p| p.starts_with(CREDENTIAL_PREFIX)) else {
        return Ok(None);
    };
    match state.catalog.rbac().graph.authenticate(presented) {
        Some(principal) => Ok(Some(Caller {
            principal,
            identity: Arc::new(ResolvedIdentity {
                entities: Arc::new([]),
                stamp: 0,
            }),
        })),
        None => Err(AccountError::Unauthenticated.into()),
    }
}

#[derive(Deserialize)]
pub struct DecisionQuery {
    #[serde(default)]
    explain: bool,
}

pub async fn is_authorized(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<DecisionQuery>,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let caller = decision_caller(&state, &headers, Some("decide")).await?;
    let decided = decide(&state, &request, caller.as_ref(), HTTP).await?;
    if !query.explain {
        return Ok(json_response(decided.outcome.body()));
    }
    Ok(Json(explain(&state, &request, &decided)?).into_response())
}

/// `?explain=true`: the answer, plus the determining policies with their
/// source and text, and the entities the decision could read.
pub(crate) fn explain(
    state: &AppState,
    request: &DecisionRequest,
    decided: &Decided,
) -> Result<serde_json::Value, ApiError> {
    let engine = state.catalog.engine();
    let policies = engine.policies();
    let mut body: serde_json::Value = serde_json::from_slice(&decided.outcome.body())
        .map_err(|e| ApiError::Internal(format!("decision body: {e}")))?;
    let determining: Vec<_> = decided
        .outcome
        .reasons()
        .iter()
        .map(|id| match policies.info(id) {
            Some(info) => {
                json!({"id": id, "source": info.source, "line": info.line, "text": info.content})
            }
            None => json!({"id": id}),
        })
        .collect();
    body["explain"] = json!({
        "policies": determining,
        "entities": engine.entities_used(request),
        "cache_hit": decided.cache_hit,
    });
    Ok(body)
}

#[derive(Deserialize)]
pub struct BatchRequest {
    requests: Vec<serde_json::Value>,
}

pub async fn is_authorized_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    let caller = decision_caller(&state, &headers, Some("decide")).await?;
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
            Ok(request) => {
                let origin = Origin {
                    kind: "batch",
                    decision_id: None,
                };
                decide(&state, &request, caller.as_ref(), origin).await
            }
            Err(e) => Err(ApiError::InvalidBody(format!("requests[{index}]: {e}"))),
        };
        match decided {
            Ok(decided) => out.put_slice(&decided.outcome.body()),
            Err(e) => out.put_slice(&e.body_json()),
        }
    }
    out.put_slice(b"]}");
    Ok(json_response(out.freeze()))
}

/// Where a decision was asked for, for the decision log.
pub(crate) struct Origin<'a> {
    pub kind: &'static str,
    /// The id already given to the decision (ext_authz's response header).
    pub decision_id: Option<&'a str>,
}

pub(crate) const HTTP: Origin<'static> = Origin {
    kind: "http",
    decision_id: None,
};

/// A decision-log entry holds the decision's outcome; the writer puts its
/// diagnostics into words.
impl Explanation for Outcome {
    fn reasons(&self) -> &[String] {
        Outcome::reasons(self)
    }

    fn errors(&self) -> &[String] {
        Outcome::errors(self)
    }
}

/// Decides (see [`decide_only`]) and writes the decision log entry.
pub(crate) async fn decide(
    state: &AppState,
    request: &DecisionRequest,
    caller: Option<&Caller>,
    origin: Origin<'_>,
) -> Result<Decided, ApiError> {
    let started = Instant::now();
    let (decided, principal) = decide_only(state, request, caller).await?;
    let log = &state.decision_log;
    if log.enabled() && (!decided.outcome.allowed() || log.keep_allow()) {
        let text = |uid: &Option<UidInput>| uid.as_ref().map(ToString::to_string);
        log.record(Entry {
            decision_id: origin.decision_id.map_or_else(random_id, str::to_owned),
            time_ms: now_ms(),
            origin: origin.kind,
            principal: principal.or_else(|| text(&request.principal)),
            action: text(&request.action),
            resource: text(&request.resource),
            context: request.context.clone().unwrap_or(serde_json::Value::Null),
            decision: if decided.outcome.allowed() {
                "Allow"
            } else {
                "Deny"
            },
            why: Why(decided.outcome.clone()),
            latency_us: started.elapsed().as_micros() as u64,
            cache_hit: decided.cache_hit,
        });
    }
    Ok(decided)
}

/// Decides, with the principal's directory identity when it has one, and
/// records the decision's metrics. Also answers the principal it decided
/// for when that was the caller (the request named none).
async fn decide_only(
    state: &AppState,
    request: &DecisionRequest,
    caller: Option<&Caller>,
) -> Result<(Decided, Option<String>), ApiError> {
    let inline: usize = [&request.entities, &request.additional_entities]
        .into_iter()
        .filter_map(|list| list.as_ref()?.as_array().map(Vec::len))
        .sum();
    if inline > state.limits.entities {
        return Err(ApiError::TooManyEntities {
            got: inline,
            limit: state.limits.entities,
        });
    }
    let started = Instant::now();
    let engine = state.catalog.engine();
    let metrics = &state.metrics;
    // The caller decides as itself when it names no principal, and brings
    // its own entity when it names itself.
    let (request, caller_identity, own_principal) = match caller {
        Some(me) => match &request.principal {
            None => {
                let own_principal = me.principal.to_string();
                let mut own = request.clone();
                own.principal = Some(UidInput::Text(own_principal.clone()));
                (
                    Cow::Owned(own),
                    Some(me.identity.clone()),
                    Some(own_principal),
                )
            }
            Some(named) if parse_uid(named).is_ok_and(|p| p == me.principal) => {
                (Cow::Borrowed(request), Some(me.identity.clone()), None)
            }
            Some(_) => (Cow::Borrowed(request), None, None),
        },
        None => (Cow::Borrowed(request), None, None),
    };
    let request = request.as_ref();
    let identity = match (&request.principal, caller_identity) {
        (_, Some(identity)) => Some(identity),
        (None, None) => None,
        (Some(principal), None) => match principal_identity(state, principal).await {
            Ok(found) => found,
            Err(reason) => {
                metrics.identity_unavailable.inc();
                metrics.decisions_deny.inc();
                return Ok((
                    Decided {
                        outcome: Arc::new(Outcome::fail_closed("IDENTITY_UNAVAILABLE", reason)),
                        cache_hit: false,
                    },
                    None,
                ));
            }
        },
    };
    let decided = engine.decide(request, identity.as_deref())?;
    let decided = bound_by_owner(state, request, decided).await?;
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
    Ok((decided, own_principal))
}

/// An AI agent never does more than its owner: an allow for an agent the
/// identity graph holds stands only when its owner (a user or a service
/// account) is allowed the same request; otherwise the answer is a deny
/// with code `OWNER_DENIED` and the owner's reasons. Owner decisions are
/// cached like any other.
async fn bound_by_owner(
    state: &AppState,
    request: &DecisionRequest,
    decided: Decided,
) -> Result<Decided, ApiError> {
    let names_agent = match &request.principal {
        Some(UidInput::Text(text)) => text.starts_with(AGENT_TYPE),
        Some(UidInput::Typed { type_name, .. }) => type_name == AGENT_TYPE,
        None => false,
    };
    if !decided.outcome.allowed() || !names_agent {
        return Ok(decided);
    }
    let Some(agent) = request.principal.as_ref().and_then(|p| parse_uid(p).ok()) else {
        return Ok(decided);
    };
    let graph = state.catalog.rbac();
    let Some(owner) = graph.graph.agent_owner(&agent) else {
        return Ok(decided);
    };
    let owner_principal = UidInput::Text(owner.to_owned());
    let as_owner = DecisionRequest {
        principal: Some(owner_principal.clone()),
        ..request.clone()
    };
    let owner_decided = match principal_identity(state, &owner_principal).await {
        Ok(identity) => state
            .catalog
            .engine()
            .decide(&as_owner, identity.as_deref())?,
        Err(reason) => Decided {
            outcome: Arc::new(Outcome::fail_closed("IDENTITY_UNAVAILABLE", reason)),
            cache_hit: false,
        },
    };
    if owner_decided.outcome.allowed() {
        return Ok(Decided {
            outcome: decided.outcome,
            cache_hit: decided.cache_hit && owner_decided.cache_hit,
        });
    }
    Ok(Decided {
        outcome: Arc::new(Outcome::bounded_by_owner(owner, &owner_decided.outcome)),
        cache_hit: decided.cache_hit && owner_decided.cache_hit,
    })
}

/// The entities `principal` brings when it is not the caller: a directory
/// user's (and groups'), or a local account's. `Err`: its directory or the
/// account store cannot be read and nothing is cached (the decision then
/// fails closed, with this reason).
pub(crate) async fn principal_identity(
    state: &AppState,
    principal: &UidInput,
) -> Result<Option<Arc<ResolvedIdentity>>, String> {
    let stored = state.catalog.engine().entities();
    let metrics = &state.metrics;
    if state.identities.enabled() {
        match state.identities.resolve(principal, &stored).await {
            Resolution::NotDirectory => {}
            Resolution::Resolved { identity, cached } => {
                if cached {
                    metrics.identity_cache_hits.inc();
                } else {
                    metrics.identity_cache_misses.inc();
                }
                return Ok(Some(identity));
            }
            Resolution::Unavailable { directory, error } => {
                return Err(format!(
                    "the principal's directory `{directory}` could not be read and its identity is not cached: {error}"
                ));
            }
        }
    }
    // A local account named as the principal (by a PEP asking about it)
    // decides with its own entity: its attributes, whether it is active,
    // and the roles RBAC gave it.
    match local_account(principal, &stored) {
        Some(id) => state.accounts.principal(id).await.map_err(|e| {
            tracing::warn!(error = %e, "Account store unavailable; deciding deny.");
            format!("the principal's account could not be read: {e}")
        }),
        None => Ok(None),
    }
}

/// The id of a local account when `principal` names one
/// (`Portcullis::User::"<id>"`, not a directory's `<dir>:<id>`) and the
/// stored entities do not hold it.
fn local_account<'a>(principal: &'a UidInput, stored: &EntitySnapshot) -> Option<&'a str> {
    let text = match principal {
        UidInput::Text(text) => text
            .strip_prefix("Portcullis::User::\"")?
            .strip_suffix('"')?,
        UidInput::Typed { type_name, id } if type_name == USER_TYPE => id.as_str(),
        UidInput::Typed { .. } => return None,
    };
    if text.is_empty() || text.contains([':', '\\', '"']) {
        return None;
    }
    (!stored.docs.contains_key(&entity_key(&user_uid(text)))).then_some(text)
}

fn json_response(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}
