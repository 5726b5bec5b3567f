//! The signed-out account pages: `/register`, and the landing pages of
//! the mailed links, `/verify` and `/reset-password` (with
//! `/forgot-password`, which mails the latter). None of them tells whether
//! an address has an account.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::login::{PublicForm, TokenForm, TokenQuery, confirm_page, pre_session_csrf};
use super::{message_page, page, see_other};
use crate::api::{ApiError, AppState};
use crate::services::{AccountError, Purpose, Registration};

#[derive(Template)]
#[template(path = "register.html", config = "src/api/web/askama.toml")]
struct RegisterPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    email: &'a str,
    name: &'a str,
    min_length: usize,
}

fn register_form(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    error: Option<&str>,
    form: (&str, &str),
) -> Response {
    let register = RegisterPage {
        csrf,
        signed_in: None,
        admin: false,
        error,
        email: form.0,
        name: form.1,
        min_length: state.accounts.settings().password_min_length,
    };
    page(status, register.render())
}

pub async fn register_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.accounts.settings().registration_open {
        return closed();
    }
    let (csrf, cookie) = pre_session_csrf(&headers, &state);
    let answer = register_form(&state, StatusCode::OK, &csrf, None, ("", ""));
    super::login::with_cookie(answer, cookie)
}

fn closed() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Registration is closed",
        "An administrator makes accounts here.",
        ("/login", "Back to sign-in"),
    )
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: String,
    csrf: Option<String>,
}

csrf_field!(RegisterForm);

pub async fn register(
    State(state): State<Arc<AppState>>,
    PublicForm { csrf, form }: PublicForm<RegisterForm>,
) -> Result<Response, ApiError> {
    let input = Registration {
        email: form.email.clone(),
        password: form.password,
        name: Some(form.name.clone()).filter(|n| !n.trim().is_empty()),
    };
    let again = |status, text: &str| {
        Ok(register_form(
            &state,
            status,
            &csrf,
            Some(text),
            (&form.email, &form.name),
        ))
    };
    let user = match state.accounts.register(input).await {
        Ok(user) => user,
        Err(AccountError::RegistrationClosed) => return Ok(closed()),
        // Said plainly, as the API does: registration cannot hide it.
        Err(AccountError::UserAlreadyExists) => {
            return again(
                StatusCode::BAD_REQUEST,
                "An account with this e-mail address exists. Sign in, or reset its password.",
            );
        }
        Err(AccountError::InvalidEmail) => {
            return again(
                StatusCode::BAD_REQUEST,
                "That is not a valid e-mail address.",
            );
        }
        Err(AccountError::InvalidPassword(reason) | AccountError::InvalidField(reason)) => {
            return again(StatusCode::BAD_REQUEST, &reason);
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = %user.id, "User registered from the web UI.");
    let verify = state.accounts.settings().require_verification;
    if verify {
        crate::api::accounts::mail_later(&state, user.email.clone(), Purpose::Verify)?;
    }
    let text = if verify {
        "Your account is made. Follow the link in the message we sent to verify your address, then sign in."
    } else {
        "Your account is made. Sign in with your address and password."
    };
    Ok(message_page(
        StatusCode::CREATED,
        "Welcome",
        text,
        ("/login", "Sign in"),
    ))
}

/// `GET /verify?token=`: the link a verification message holds.
pub async fn verify_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    confirm_page(
        &state,
        &headers,
        query.token.as_deref(),
        (
            "Verify your e-mail address",
            "Confirm that this address is yours.",
            "/verify",
            "Verify",
        ),
    )
}

pub async fn verify(
    State(state): State<Arc<AppState>>,
    PublicForm { form, .. }: PublicForm<TokenForm>,
) -> Result<Response, ApiError> {
    let (status, title, text) = match state.accounts.verify(form.token.trim()).await {
        Ok(_) => (
            StatusCode::OK,
            "Address verified",
            "Thank you: your e-mail address is verified.",
        ),
        Err(AccountError::AlreadyVerified) => (
            StatusCode::OK,
            "Address verified",
            "This address was verified already.",
        ),
        Err(AccountError::VerifyBadToken) => (
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "It has expired or was used already. Sign in and ask for a new one from your dashboard.",
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(message_page(status, title, text, ("/login", "Sign in")))
}

#[derive(Template)]
#[template(path = "forgot.html", config = "src/api/web/askama.toml")]
struct ForgotPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

pub async fn forgot_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (csrf, cookie) = pre_session_csrf(&headers, &state);
    let forgot = ForgotPage {
        csrf: &csrf,
        signed_in: None,
        admin: false,
        notice: None,
        error: None,
    };
    super::login::with_cookie(page(StatusCode::OK, forgot.render()), cookie)
}

pub async fn forgot(
    State(state): State<Arc<AppState>>,
    PublicForm { csrf, form }: PublicForm<super::login::EmailForm>,
) -> Response {
    let sent = crate::api::accounts::mail_later(&state, form.email, Purpose::Reset).is_ok();
    let forgot = ForgotPage {
        csrf: &csrf,
        signed_in: None,
        admin: false,
        notice: sent.then_some(
            "If an account uses this address, a message with a reset link is on its way.",
        ),
        error: (!sent).then_some("That is not a valid e-mail address."),
    };
    let status = if sent {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page(status, forgot.render())
}

#[derive(Template)]
#[template(path = "reset.html", config = "src/api/web/askama.toml")]
struct ResetPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    token: &'a str,
    min_length: usize,
}

fn reset_form(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    token: &str,
    error: Option<&str>,
) -> Response {
    let reset = ResetPage {
        csrf,
        signed_in: None,
        admin: false,
        error,
        token,
        min_length: state.accounts.settings().password_min_length,
    };
    page(status, reset.render())
}

/// `GET /reset-password?token=`: the link a reset message holds.
pub async fn reset_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let (csrf, cookie) = pre_session_csrf(&headers, &state);
    let token = query.token.unwrap_or_default();
    let answer = reset_form(&state, StatusCode::OK, &csrf, &token, None);
    super::login::with_cookie(answer, cookie)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    csrf: Option<String>,
}

csrf_field!(ResetForm);

pub async fn reset(
    State(state): State<Arc<AppState>>,
    PublicForm { csrf, form }: PublicForm<ResetForm>,
) -> Result<Response, ApiError> {
    let token = form.token.trim();
    match state.accounts.reset_password(token, form.password).await {
        Ok(user) => {
            tracing::info!(user = %user.id, "Password reset from the web UI; every session ended.");
            Ok(see_other("/login?reset=1", []))
        }
        Err(AccountError::ResetBadToken) => Ok(message_page(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "It has expired or was used already. Ask for a new one.",
            ("/forgot-password", "Reset your password"),
        )),
        Err(AccountError::ResetInvalidPassword(reason)) => Ok(reset_form(
            &state,
            StatusCode::BAD_REQUEST,
            &csrf,
            token,
            Some(&reason),
        )),
        Err(e) => Err(e.into()),
    }
}
