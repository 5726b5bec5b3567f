//! `/dashboard`: the signed-in user's profile, password, API keys and
//! sessions.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{CsrfField, CsrfForm, SignedInForm, browser, is_admin, page, see_other, utc};
use crate::api::{ApiError, AppState};
use crate::domain::User;
use crate::services::{AccountError, NewApiKey, ProfileUpdate, WebSession};

struct SessionRow {
    id: String,
    started: String,
    ends: String,
    current: bool,
}

struct KeyRow {
    id: String,
    name: String,
    prefix: String,
    scopes: String,
    made: String,
    ends: String,
}

#[derive(Template)]
#[template(path = "dashboard.html", config = "src/api/web/askama.toml")]
struct DashboardPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    new_key: Option<&'a str>,
    user: &'a User,
    keys: Vec<KeyRow>,
    sessions: Vec<SessionRow>,
}

/// What a dashboard answer says above the page.
#[derive(Default)]
struct Outcome<'a> {
    notice: Option<&'a str>,
    error: Option<&'a str>,
    new_key: Option<&'a str>,
}

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((_, session)) = browser(&headers, &state).await? else {
        return Ok(see_other("/login", []));
    };
    render_dashboard(&state, &session, StatusCode::OK, Outcome::default()).await
}

async fn render_dashboard(
    state: &AppState,
    session: &WebSession,
    status: StatusCode,
    outcome: Outcome<'_>,
) -> Result<Response, ApiError> {
    let me = &session.me;
    let sessions = state
        .accounts
        .sessions(me)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            started: utc(s.created_at),
            ends: utc(s.expires_at),
            current: s.current,
            id: s.id,
        })
        .collect();
    let keys = state
        .accounts
        .list_api_keys(&me.user.id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            scopes: if k.scopes.is_empty() {
                "all".into()
            } else {
                k.scopes.join(", ")
            },
            made: utc(k.created_at),
            ends: k.expires_at.map_or_else(|| "never".into(), utc),
            id: k.id,
            name: k.name,
            prefix: k.prefix,
        })
        .collect();
    let dashboard = DashboardPage {
        csrf: &session.csrf,
        signed_in: Some(me.user.email.as_str()),
        admin: is_admin(state, me),
        notice: outcome.notice,
        error: outcome.error,
        new_key: outcome.new_key,
        user: &me.user,
        keys,
        sessions,
    };
    Ok(page(status, dashboard.render()))
}

/// An account error a dashboard form can show beside the form: the
/// message, and the status.
fn shown(error: &AccountError) -> Option<(StatusCode, String)> {
    match error {
        AccountError::CurrentPasswordRequired | AccountError::CurrentPasswordWrong => Some((
            StatusCode::BAD_REQUEST,
            "The current password is not right.".into(),
        )),
        AccountError::Locked(seconds) => Some((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many wrong passwords. Try again in {} minute(s).",
                seconds.div_ceil(60)
            ),
        )),
        AccountError::UpdateInvalidPassword(why) | AccountError::InvalidPassword(why) => Some((
            StatusCode::BAD_REQUEST,
            format!("The new password is too weak: {why}."),
        )),
        AccountError::InvalidField(why) => Some((StatusCode::BAD_REQUEST, why.clone())),
        AccountError::ApiKeyNotFound(_) => Some((
            StatusCode::NOT_FOUND,
            "There is no such key: it may be revoked already.".into(),
        )),
        _ => None,
    }
}

/// The dashboard after a form: `done` on success, the error beside the
/// form when it is one a user can fix.
async fn after_form(
    state: &AppState,
    session: &WebSession,
    result: Result<(), AccountError>,
    done: &str,
) -> Result<Response, ApiError> {
    match result {
        Ok(()) => {
            let outcome = Outcome {
                notice: Some(done),
                ..Outcome::default()
            };
            render_dashboard(state, session, StatusCode::OK, outcome).await
        }
        Err(e) => match shown(&e) {
            Some((status, message)) => {
                let outcome = Outcome {
                    error: Some(&message),
                    ..Outcome::default()
                };
                render_dashboard(state, session, status, outcome).await
            }
            None => Err(e.into()),
        },
    }
}

#[derive(Deserialize)]
pub struct ProfileForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

impl CsrfField for ProfileForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub async fn profile(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SignedInForm { session, form, .. }: SignedInForm<ProfileForm>,
) -> Result<Response, ApiError> {
    let update = ProfileUpdate {
        name: Some(form.name.trim().to_owned()),
        ..ProfileUpdate::default()
    };
    let result = state
        .accounts
        .update_me(&session.me, update)
        .await
        .map(drop);
    // The page shows the profile as it is now.
    let session = match browser(&headers, &state).await? {
        Some((_, fresh)) => fresh,
        None => session,
    };
    after_form(&state, &session, result, "Your profile is saved.").await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: Option<String>,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
}

impl CsrfField for PasswordForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub async fn password(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, form, .. }: SignedInForm<PasswordForm>,
) -> Result<Response, ApiError> {
    let update = ProfileUpdate {
        password: Some(form.password),
        current_password: Some(form.current_password),
        ..ProfileUpdate::default()
    };
    let result = state
        .accounts
        .update_me(&session.me, update)
        .await
        .map(drop);
    after_form(
        &state,
        &session,
        result,
        "Your password is changed. Every other session has ended.",
    )
    .await
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    current_password: String,
}

impl CsrfField for NewKeyForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub async fn create_api_key(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, form, .. }: SignedInForm<NewKeyForm>,
) -> Result<Response, ApiError> {
    let days = form.expires_in_days.trim();
    let expires_in_days = match days {
        "" => None,
        days => match days.parse() {
            Ok(days) => Some(days),
            Err(_) => {
                let error = AccountError::InvalidField(
                    "The days must be a whole number from 1 to 3650.".into(),
                );
                return after_form(&state, &session, Err(error), "").await;
            }
        },
    };
    let checked = state
        .accounts
        .reauthenticate(&session.me, Some(form.current_password))
        .await;
    if let Err(e) = checked {
        return after_form(&state, &session, Err(e), "").await;
    }
    let input = NewApiKey {
        name: form.name,
        expires_in_days,
        scopes: Vec::new(),
        current_password: None,
    };
    match state
        .accounts
        .create_api_key(&session.me.user.id, input)
        .await
    {
        Ok(created) => {
            tracing::info!(user = %session.me.user.id, key = %created.key.id, "API key created.");
            let outcome = Outcome {
                new_key: Some(&created.api_key),
                ..Outcome::default()
            };
            render_dashboard(&state, &session, StatusCode::CREATED, outcome).await
        }
        Err(e) => after_form(&state, &session, Err(e), "").await,
    }
}

pub async fn revoke_api_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    SignedInForm { session, .. }: SignedInForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let result = state
        .accounts
        .revoke_api_key(&session.me.user.id, &key_id)
        .await;
    if result.is_ok() {
        tracing::info!(user = %session.me.user.id, key = %key_id, "API key revoked.");
    }
    after_form(&state, &session, result, "The key is revoked.").await
}

pub async fn end_session(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    SignedInForm { session, .. }: SignedInForm<CsrfForm>,
) -> Result<Response, ApiError> {
    match state.accounts.end_session(&session.me, &sid).await {
        Ok(()) | Err(AccountError::SessionNotFound(_)) => Ok(see_other("/dashboard", [])),
        Err(e) => Err(e.into()),
    }
}
