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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::body::{FormOrJson, JsonBody};
use super::{ApiError, AppState};
use crate::authz::user_uid;
use crate::domain::normalize_email;
use crate::services::{
    AccountError, ApiKey, Authenticated, CreatedApiKey, LoginOutcome, NewApiKey, ProfileUpdate,
    Purpose, Registration, TokenPair, Via,
};

/// The signed-in user: `Authorization: Bearer <access token>` (verified,
/// with a live session) or `X-API-Key: <key>` (also accepted as a bearer
/// token), and an active user.
pub struct CurrentUser(pub Authenticated);

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<CurrentUser, ApiError> {
        caller(&parts.headers, state)
            .await?
            .map(CurrentUser)
            .ok_or(ApiError::Account(AccountError::Unauthenticated))
    }
}

/// The caller behind a request's credentials; `None` when it presents none.
/// Credentials that are presented but not valid are an error, never
/// anonymous.
pub(super) async fn caller(
    headers: &HeaderMap,
    state: &Arc<AppState>,
) -> Result<Option<Authenticated>, ApiError> {
    let api_key = headers
        .get(API_KEY_HEADER)
        .map(|v| v.to_str().map(str::trim).unwrap_or_default());
    let found = match (api_key, bearer(headers)) {
        (Some(key), _) => state.accounts.authenticate_api_key(key).await?,
        (None, Some(token)) if token.starts_with("pcl_") => {
            state.accounts.authenticate_api_key(token).await?
        }
        (None, Some(token)) => state.accounts.authenticate(token).await?,
        (None, None) => return Ok(None),
    };
    crate::services::journal::set_actor(|| user_uid(&found.user.id).to_string());
    Ok(Some(found))
}

/// The header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Refuses credentials that do not cover `scope`.
pub(super) fn require(me: &Authenticated, scope: &str) -> Result<(), ApiError> {
    if me.allows(scope) {
        Ok(())
    } else {
        Err(AccountError::InsufficientScope(scope.to_owned()).into())
    }
}

/// The bearer token of a request, if it has one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    FormOrJson(form): FormOrJson<LoginForm>,
) -> Result<Response, ApiError> {
    let outcome = state
        .accounts
        .login(&form.username, &form.password, Some(peer.ip()))
        .await?;
    Ok(login_response(outcome))
}

/// Tokens (200), or the second-factor challenge (202) when the user has one.
pub(super) fn login_response(outcome: LoginOutcome) -> Response {
    match outcome {
        LoginOutcome::Tokens(pair) => Json(pair).into_response(),
        LoginOutcome::SecondFactor(pending) => {
            (StatusCode::ACCEPTED, Json(pending)).into_response()
        }
    }
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
    let Via::Session(claims) = &me.via else {
        return Err(AccountError::NotASession.into());
    };
    state
        .accounts
        .revoke_session(&me.user.id, &claims.sid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn sessions(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
) -> Result<Response, ApiError> {
    Ok(Json(state.accounts.sessions(&me).await?).into_response())
}

pub async fn end_session(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.accounts.end_session(&me, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(CurrentUser(me): CurrentUser) -> Result<Response, ApiError> {
    require(&me, "profile")?;
    Ok(Json(me.user.view()).into_response())
}

pub async fn update_me(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    JsonBody(update): JsonBody<ProfileUpdate>,
) -> Result<Response, ApiError> {
    require(&me, "profile")?;
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
pub(crate) fn mail_later(
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    FormOrJson(body): FormOrJson<TokenBody>,
) -> Result<Response, ApiError> {
    let outcome = state
        .accounts
        .magic_login(&body.token, Some(peer.ip()))
        .await?;
    Ok(login_response(outcome))
}

pub async fn list_api_keys(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    require(&me, "keys")?;
    Ok(Json(state.accounts.list_api_keys(&me.user.id).await?))
}

pub async fn create_api_key(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    JsonBody(mut input): JsonBody<NewApiKey>,
) -> Result<Response, ApiError> {
    require(&me, "keys")?;
    match &me.via {
        // A key cannot reach further than the key that makes it.
        Via::ApiKey { scopes, .. } => {
            let wider = input.scopes.is_empty() && !scopes.is_empty()
                || input.scopes.iter().any(|s| !me.allows(s));
            if wider {
                return Err(AccountError::InsufficientScope(
                    "scopes beyond the creating key's".into(),
                )
                .into());
            }
        }
        // A lasting credential from a 15-minute token: the password again.
        Via::Session(_) => {
            state
                .accounts
                .reauthenticate(&me, input.current_password.take())
                .await?
        }
    }
    let created: CreatedApiKey = state.accounts.create_api_key(&me.user.id, input).await?;
    tracing::info!(user = %me.user.id, key = %created.key.id, "API key created.");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn revoke_api_key(
    State(state): State<Arc<AppState>>,
    CurrentUser(me): CurrentUser,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&me, "keys")?;
    state.accounts.revoke_api_key(&me.user.id, &key_id).await?;
    tracing::info!(user = %me.user.id, key = %key_id, "API key revoked.");
    Ok(StatusCode::NO_CONTENT)
}
