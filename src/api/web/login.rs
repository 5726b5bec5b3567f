//! `/login` and `/logout`: the password sign-in, and signing out.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    CSRF_COOKIE, CsrfForm, SESSION_COOKIE, SignedInForm, browser, csrf_matches, forged_form, page,
    presented_csrf, see_other, set_cookie,
};
use crate::api::body::FormOrJson;
use crate::api::{ApiError, AppState};
use crate::services::{AccountError, LoginOutcome, random_token};

#[derive(Template)]
#[template(path = "login.html", config = "src/api/web/askama.toml")]
struct LoginPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    username: &'a str,
}

fn login_form(status: StatusCode, csrf: &str, error: Option<&str>, username: &str) -> Response {
    let login = LoginPage {
        csrf,
        signed_in: None,
        admin: false,
        error,
        username,
    };
    page(status, login.render())
}

pub async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if browser(&headers, &state).await?.is_some() {
        return Ok(see_other("/dashboard", []));
    }
    // The pre-session CSRF token: a cookie the form must echo. A second
    // tab keeps the first one's, so both forms stay good.
    let csrf = super::read_cookie(&headers, &state, CSRF_COOKIE)
        .filter(|c| {
            c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(random_token, str::to_owned);
    let mut response = login_form(StatusCode::OK, &csrf, None, "");
    if let Some(value) = set_cookie(&state, CSRF_COOKIE, Some(&csrf)) {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf: Option<String>,
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormOrJson(form): FormOrJson<LoginForm>,
) -> Result<Response, ApiError> {
    let Some(expected) = super::read_cookie(&headers, &state, CSRF_COOKIE).map(str::to_owned)
    else {
        return Ok(forged_form());
    };
    if !csrf_matches(&expected, presented_csrf(&headers, form.csrf.as_deref())) {
        return Ok(forged_form());
    }
    let again =
        |status, message: &str| login_form(status, &expected, Some(message), &form.username);
    let outcome = state
        .accounts
        .login(&form.username, &form.password, Some(peer.ip()))
        .await;
    let pair = match outcome {
        Ok(LoginOutcome::Tokens(pair)) => pair,
        // Whether the account exists, or which half was wrong, is not told.
        Err(AccountError::BadCredentials) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "The e-mail address or the password is not right.",
            ));
        }
        Err(AccountError::Locked(seconds)) => {
            let minutes = seconds.div_ceil(60);
            let message = format!("Too many failed sign-ins. Try again in {minutes} minute(s).");
            return Ok(again(StatusCode::TOO_MANY_REQUESTS, &message));
        }
        Err(AccountError::NotVerified) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "Verify your e-mail address first: follow the link in the message we sent.",
            ));
        }
        Ok(LoginOutcome::SecondFactor(_)) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "This account signs in with a second factor, which this page does not ask for yet: use the API (POST /auth/jwt/login).",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let id = state.accounts.open_web_session(&pair.access_token).await?;
    Ok(see_other(
        "/dashboard",
        [
            set_cookie(&state, SESSION_COOKIE, Some(&id)),
            set_cookie(&state, CSRF_COOKIE, None),
        ],
    ))
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    SignedInForm { id, .. }: SignedInForm<CsrfForm>,
) -> Result<Response, ApiError> {
    state.accounts.close_web_session(&id).await?;
    let mut response = see_other("/login", [set_cookie(&state, SESSION_COOKIE, None)]);
    // Whatever the browser kept of the signed-in pages goes too (ASVS 8.2.3).
    response.headers_mut().insert(
        "clear-site-data",
        axum::http::HeaderValue::from_static("\"cache\", \"storage\""),
    );
    Ok(response)
}
