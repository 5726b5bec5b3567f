//! Account routes, shaped like fastapi-users' (its error codes too):
//!
//! - `POST /auth/register`: `{email, password, name?}` → 201 the user.
//! - `POST /auth/jwt/login`: the OAuth2 password form (`username`,
//!   `password`) or the same as JSON → `{access_token, token_type,
//!   refresh_token, expires_in}`.
//! - `POST /auth/jwt/refresh`: `{refresh_token}` → a new pair; the old
//!   refresh token is spent.
//! - `POST /auth/jwt/logout`: ends the caller's session → 204.
//! - `GET /users/me`, `PATCH /users/me`: the caller's own profile.
//! - `POST /auth/request-verify-token`, `/auth/forgot-password`,
//!   `/auth/magic-link/request`: `{email}` → 202 always; the mail (if the
//!   address has an account it applies to) is sent off the request, so
//!   neither the answer nor its timing tells whether it has one.
//! - `POST /auth/verify` `{token}`, `/auth/reset-password` `{token,
//!   password}`, `/auth/magic-link/login` `{token}`: spend a mailed token.
//! - `GET /.well-known/jwks.json`: the keys access tokens are signed with.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::body::{FormOrJson, JsonBody};
use super::{ApiError, AppState};
use crate::domain::normalize_email;
use crate::services::{
    AccountError, Authenticated, ProfileUpdate, Purpose, Registration, TokenPair,
};

/// The signed-in user: `Authorization: Bearer <access token>`, verified,
/// with a live session and an active user.
pub struct CurrentUser(pub Authenticated);

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<CurrentUser, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Account(AccountError::Unauthenticated))?;
        Ok(CurrentUser(state.accounts.authenticate(token).await?))
    }
}

/// The bearer token of a request, if it has one.
pub(super) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    JsonBody(input): JsonBody<Registration>,
) -> Result<Response, ApiError> {
    let user = state.accounts.register(input).await?;
    tracing::info!(user = %user.id, "User registered.");
    Ok((StatusCode::CREATED, Json(user.view())).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    FormOrJson(form): FormOrJson<LoginForm>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(
        state.accounts.login(&form.username, &form.password).await?,
    ))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(
    State(state): State<Arc<AppState>>,
    FormOrJson(body): FormOrJson<RefreshBody>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(state.accounts.refresh(&body.refresh_token).await?))
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .revoke_session(&me.user.id, &me.claims.sid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(CurrentUser(me): CurrentUser) -> Response {
    Json(me.user.view()).into_response()
}

pub async fn update_me(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    JsonBody(update): JsonBody<ProfileUpdate>,
) -> Result<Response, ApiError> {
    let user = state.accounts.update_me(&me, update).await?;
    Ok(Json(user.view()).into_response())
}

pub async fn jwks(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(state.accounts.tokens.jwks())
}

#[derive(Deserialize)]
pub struct EmailBody {
    email: String,
}

/// Validates the address, then mails in the background and answers 202.
fn mail_later(
    state: &Arc<AppState>,
    email: String,
    purpose: Purpose,
) -> Result<StatusCode, ApiError> {
    if normalize_email(&email).is_none() {
        return Err(AccountError::InvalidEmail.into());
    }
    let accounts = state.accounts.clone();
    tokio::spawn(async move {
        if let Err(e) = accounts.mail_token(&email, purpose).await {
            tracing::warn!(error = %e, purpose = ?purpose, "Account mail could not be sent.");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn request_verify_token(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<EmailBody>,
) -> Result<StatusCode, ApiError> {
    mail_later(&state, body.email, Purpose::Verify)
}

pub async fn forgot_password(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<EmailBody>,
) -> Result<StatusCode, ApiError> {
    mail_later(&state, body.email, Purpose::Reset)
}

pub async fn request_magic_link(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<EmailBody>,
) -> Result<StatusCode, ApiError> {
    mail_later(&state, body.email, Purpose::MagicLink)
}

#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

pub async fn verify(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<Response, ApiError> {
    let user = state.accounts.verify(&body.token).await?;
    Ok(Json(user.view()).into_response())
}

#[derive(Deserialize)]
pub struct ResetBody {
    token: String,
    password: String,
}

pub async fn reset_password(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<Response, ApiError> {
    let user = state
        .accounts
        .reset_password(&body.token, body.password)
        .await?;
    tracing::info!(user = %user.id, "Password reset; every session ended.");
    Ok(Json(user.view()).into_response())
}

pub async fn magic_login(
    State(state): State<Arc<AppState>>,
    FormOrJson(body): FormOrJson<TokenBody>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(state.accounts.magic_login(&body.token).await?))
}
