//! Second-factor routes.
//!
//! - `POST /mfa/totp/enroll`: a new TOTP secret and its `otpauth://` URI
//!   (signed-in session).
//! - `POST /mfa/totp/verify`: `{code}` from a signed-in session confirms
//!   enrolment; `{challenge, code}` completes a waiting login → tokens.
//! - `DELETE /mfa/totp`: `{code}` removes the second factor.
//! - `GET /mfa/delegated/pending`: the caller's logins waiting for approval.
//! - `POST /mfa/delegated/approve`: `{challenge_id, approve?}` from another
//!   session of the same user, or an admin's.
//! - `POST /mfa/delegated/complete`: `{challenge}`, polled by the waiting
//!   login → tokens once approved (202 while waiting).
//! - `DELETE /users/{id}/mfa`: an admin removes a user's second factor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::accounts::{CurrentUser, caller, require};
use super::admin::Admin;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::services::{AccountError, Authenticated, Delegated, Via};

/// Second-factor changes need a signed-in session, not an API key.
fn session(me: &Authenticated) -> Result<(), ApiError> {
    require(me, "profile")?;
    match me.via {
        Via::Session(_) => Ok(()),
        Via::ApiKey { .. } => Err(AccountError::NotASession.into()),
    }
}

pub async fn enroll(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
) -> Result<Response, ApiError> {
    session(&me)?;
    let enrollment = state.accounts.mfa_enroll(&me.user).await?;
    Ok(Json(enrollment).into_response())
}

#[derive(Deserialize)]
pub struct VerifyBody {
    code: String,
    #[serde(default)]
    challenge: Option<String>,
}

pub async fn verify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<VerifyBody>,
) -> Result<Response, ApiError> {
    if let Some(challenge) = body.challenge {
        let pair = state
            .accounts
            .complete_with_code(&challenge, &body.code)
            .await?;
        return Ok(Json(pair).into_response());
    }
    let me = caller(&headers, &state)
        .await?
        .ok_or(ApiError::Account(AccountError::Unauthenticated))?;
    session(&me)?;
    state.accounts.mfa_confirm(&me.user.id, &body.code).await?;
    tracing::info!(user = %me.user.id, "TOTP enrolled.");
    Ok(Json(json!({"enrolled": true})).into_response())
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

pub async fn disable(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    JsonBody(body): JsonBody<CodeBody>,
) -> Result<StatusCode, ApiError> {
    session(&me)?;
    state
        .accounts
        .mfa_disable(&me.user.id, Some(&body.code))
        .await?;
    tracing::info!(user = %me.user.id, "TOTP removed by its user.");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pending(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
) -> Result<Response, ApiError> {
    session(&me)?;
    let pending = state.accounts.pending_approvals(&me.user.id).await?;
    Ok(Json(json!({"pending": pending})).into_response())
}

#[derive(Deserialize)]
pub struct ApproveBody {
    challenge_id: String,
    #[serde(default = "yes")]
    approve: bool,
}

fn yes() -> bool {
    true
}

pub async fn approve(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    JsonBody(body): JsonBody<ApproveBody>,
) -> Result<StatusCode, ApiError> {
    session(&me)?;
    state
        .accounts
        .decide_challenge(&me, &body.challenge_id, body.approve)
        .await?;
    tracing::info!(approver = %me.user.id, approved = body.approve, "Delegated second factor decided.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ChallengeBody {
    challenge: String,
}

pub async fn complete(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ChallengeBody>,
) -> Result<Response, ApiError> {
    Ok(
        match state.accounts.complete_delegated(&body.challenge).await? {
            Delegated::Tokens(pair) => Json(pair).into_response(),
            Delegated::Waiting => {
                (StatusCode::ACCEPTED, Json(json!({"status": "waiting"}))).into_response()
            }
        },
    )
}

pub async fn admin_reset(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.accounts.get_user(&id).await?;
    state.accounts.mfa_disable(&id, None).await?;
    tracing::info!(user = %id, "Second factor removed by an admin.");
    Ok(StatusCode::NO_CONTENT)
}
