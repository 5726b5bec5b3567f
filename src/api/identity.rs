//! Directory sign-ins.
//!
//! - `POST /auth/ldap/{directory}/login`: `{username, password}` checked by
//!   an LDAP bind → the identity and its Cedar principal.
//! - `GET /auth/oauth/providers`: the configured OIDC providers.
//! - `GET /auth/oauth/{provider}/authorize`: 302 to the provider, with state
//!   and PKCE; the state is also set in a cookie that binds the sign-in to
//!   this browser.
//! - `GET /auth/oauth/{provider}/callback`: checks state and cookie,
//!   exchanges the code, reads userinfo, links the identity → the identity
//!   and its principal.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::domain::DirectoryIdentity;
use crate::services::{AccountError, Attempt, IdentityError, OAuthFor, principal_of};

/// The cookie that carries the OAuth state between authorize and callback.
const STATE_COOKIE: &str = "portcullis_oauth_state";

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
pub struct SignedIn {
    principal: String,
    identity: DirectoryIdentity,
}

fn signed_in(identity: DirectoryIdentity) -> Json<SignedIn> {
    Json(SignedIn {
        principal: principal_of(&identity),
        identity,
    })
}

/// An LDAP bind, throttled like password sign-ins: failures are counted
/// per directory user and per client address, and past the threshold the
/// directory is not asked at all (429 `LOGIN_LOCKED`).
pub async fn ldap_login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(directory): Path<String>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<SignedIn>, ApiError> {
    let attempt = Attempt::in_directory(&directory, &body.username, Some(peer.ip()));
    if let Some(wait) = state.accounts.locked_for(&attempt).await? {
        tracing::warn!(%directory, name = %attempt.digest(), peer = %peer.ip(), "LDAP sign-in refused: locked.");
        return Err(AccountError::Locked(wait).into());
    }
    let result = state
        .identities
        .ldap_login(&directory, &body.username, &body.password)
        .await
        // A user a sync found disabled or gone signs in no more, whatever
        // the directory's bind says (it may lock accounts some other way).
        .and_then(|identity| {
            let graph = &state.catalog.rbac().graph;
            match graph.directory.inactive(&identity.user_id()) {
                true => Err(IdentityError::BadCredentials),
                false => Ok(identity),
            }
        });
    match result {
        Ok(identity) => {
            state.accounts.clear_failures(&attempt).await?;
            tracing::info!(%directory, user = %identity.subject, peer = %peer.ip(), "LDAP sign-in.");
            Ok(signed_in(identity))
        }
        Err(e) => {
            if matches!(e, IdentityError::BadCredentials) {
                state.accounts.count_failure(&attempt).await?;
            }
            tracing::warn!(%directory, name = %attempt.digest(), peer = %peer.ip(), error = %e, "LDAP sign-in refused.");
            Err(e.into())
        }
    }
}

#[derive(Serialize)]
struct Provider {
    name: String,
    display_name: String,
    authorize: String,
}

pub async fn providers(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let providers: Vec<Provider> = state
        .identities
        .providers()
        .into_iter()
        .map(|(name, display_name)| Provider {
            authorize: format!("/auth/oauth/{name}/authorize"),
            name,
            display_name,
        })
        .collect();
    Json(serde_json::json!({ "providers": providers }))
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    /// `web`: started by the web UI's button, which wants a browser
    /// session rather than JSON at the end.
    from: Option<String>,
}

pub async fn authorize(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let started_by = match query.from.as_deref() {
        None => OAuthFor::Api,
        Some("web") => OAuthFor::Web,
        Some(_) => {
            return Err(ApiError::InvalidParameter(
                "`from` may only be `web`".into(),
            ));
        }
    };
    start_sign_in(&state, &provider, started_by).await
}

/// 302 to the provider, with the state also in a cookie that binds the
/// sign-in to this browser.
pub(crate) async fn start_sign_in(
    state: &AppState,
    provider: &str,
    started_by: OAuthFor,
) -> Result<Response, ApiError> {
    let (location, cookie) = provider_redirect(state, provider, started_by).await?;
    Ok((
        StatusCode::FOUND,
        [(LOCATION, location), (SET_COOKIE, cookie)],
    )
        .into_response())
}

/// Starts a sign-in: the provider URL to send the browser to, and the
/// `Set-Cookie` of the state cookie.
pub(crate) async fn provider_redirect(
    state: &AppState,
    provider: &str,
    started_by: OAuthFor,
) -> Result<(HeaderValue, HeaderValue), ApiError> {
    let authorization = state.identities.oauth_start(provider, started_by).await?;
    let location = HeaderValue::from_str(&authorization.url)
        .map_err(|e| ApiError::Internal(format!("provider URL is not a header value: {e}")))?;
    // The state is URL-safe base64, fit for a cookie as it is.
    let cookie = format!(
        "{STATE_COOKIE}={}; Path=/auth/oauth/{provider}/; Max-Age=600; HttpOnly; SameSite=Lax",
        authorization.state
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::Internal(format!("state cookie is not a header value: {e}")))?;
    Ok((location, cookie))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or_default();
        return Err(IdentityError::Rejected(format!("{error} {detail}").trim().to_owned()).into());
    }
    let (Some(code), Some(oauth_state)) = (query.code, query.state) else {
        return Err(ApiError::InvalidParameter(
            "the callback needs `code` and `state`".into(),
        ));
    };
    let (identity, started_by) = state
        .identities
        .oauth_finish(
            &provider,
            &oauth_state,
            cookie(&headers, STATE_COOKIE),
            &code,
        )
        .await?;
    tracing::info!(provider = %provider, subject = %identity.subject, "OIDC sign-in linked.");
    // The state is spent: clear its cookie.
    let clear =
        format!("{STATE_COOKIE}=; Path=/auth/oauth/{provider}/; Max-Age=0; HttpOnly; SameSite=Lax");
    let mut response = match started_by {
        OAuthFor::Api => signed_in(identity).into_response(),
        web => super::web::provider_signed_in(&state, &headers, &identity, web, peer).await?,
    };
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(SET_COOKIE, clear);
    }
    Ok(response)
}

/// The value of cookie `name`, from any `Cookie` header.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
