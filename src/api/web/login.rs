//! Signing in and out: `/login` (password, provider buttons, magic-link
//! request), its second-factor step `/login/mfa`, the magic link's landing
//! page `/magic-link`, a provider's return (`provider_signed_in`) and
//! `/logout`.
//!
//! Before sign-in, forms carry the `portcullis_csrf` cookie's token (double
//! submit, checked by `PublicForm`). A login waiting for its second factor
//! is held by the `portcullis_mfa` cookie (HttpOnly, 5 minutes), never in
//! the page.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequest, Query, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    CSRF_COOKIE, CsrfField, CsrfForm, SESSION_COOKIE, SignedInForm, browser, csrf_matches,
    forged_form, message_page, page, presented_csrf, read_cookie, see_other, set_cookie,
};
use crate::api::body::FormOrJson;
use crate::api::{ApiError, AppState};
use crate::domain::DirectoryIdentity;
use crate::services::{
    AccountError, Delegated, Federated, LoginOutcome, OAuthFor, Purpose, random_token,
};

/// Holds a login's second-factor challenge between its steps.
const MFA_COOKIE: &str = "portcullis_mfa";

/// The pre-session CSRF token: the browser's `portcullis_csrf` cookie when
/// it holds one (a second tab keeps the first one's, so both forms stay
/// good), else a new one with the `Set-Cookie` that plants it.
pub(super) fn pre_session_csrf(
    headers: &HeaderMap,
    state: &AppState,
) -> (String, Option<HeaderValue>) {
    let kept = read_cookie(headers, state, CSRF_COOKIE).filter(|c| {
        c.len() == 43
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    match kept {
        Some(token) => (token.to_owned(), None),
        None => {
            let token = random_token();
            let cookie = set_cookie(state, CSRF_COOKIE, Some(&token));
            (token, cookie)
        }
    }
}

/// `response` with `cookie` set, when there is one.
pub(super) fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(value) = cookie {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// A form posted before sign-in, carrying the `portcullis_csrf` cookie's
/// token (the form field or the htmx header); anything else gets the 403
/// page.
pub struct PublicForm<T> {
    /// The token, to render the next form with.
    pub csrf: String,
    pub form: T,
}

impl<T> FromRequest<Arc<AppState>> for PublicForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Some(expected) = read_cookie(&headers, state, CSRF_COOKIE).map(str::to_owned) else {
            return Err(forged_form());
        };
        let FormOrJson(form) = FormOrJson::<T>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !csrf_matches(&expected, presented_csrf(&headers, form.csrf())) {
            return Err(forged_form());
        }
        Ok(PublicForm {
            csrf: expected,
            form,
        })
    }
}

struct Provider {
    name: String,
    label: String,
}

#[derive(Template)]
#[template(path = "login.html", config = "src/api/web/askama.toml")]
struct LoginPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    username: &'a str,
    providers: Vec<Provider>,
    registration_open: bool,
}

/// What a login page answer says above its forms.
#[derive(Default)]
struct Said<'a> {
    error: Option<&'a str>,
    notice: Option<&'a str>,
    username: &'a str,
}

fn login_form(state: &AppState, status: StatusCode, csrf: &str, said: Said<'_>) -> Response {
    let providers = state
        .identities
        .providers()
        .into_iter()
        .map(|(name, label)| Provider { name, label })
        .collect();
    let login = LoginPage {
        csrf,
        signed_in: None,
        admin: false,
        error: said.error,
        notice: said.notice,
        username: said.username,
        providers,
        registration_open: state.accounts.settings().registration_open,
    };
    page(status, login.render())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    /// `?reset=1`: sent here by a password reset.
    reset: Option<String>,
}

pub async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    if browser(&headers, &state).await?.is_some() {
        return Ok(see_other("/dashboard", []));
    }
    let (csrf, cookie) = pre_session_csrf(&headers, &state);
    let said = Said {
        notice: query
            .reset
            .is_some()
            .then_some("Your password is changed. Sign in with it."),
        ..Said::default()
    };
    let response = login_form(&state, StatusCode::OK, &csrf, said);
    Ok(with_cookie(response, cookie))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf: Option<String>,
}

csrf_field!(LoginForm);

/// What the login page says for a refused sign-in; never whether the
/// account exists, or which half was wrong.
fn refusal(error: &AccountError) -> Option<(StatusCode, String)> {
    let bad = StatusCode::BAD_REQUEST;
    let text = match error {
        AccountError::BadCredentials => "The e-mail address or the password is not right.".into(),
        AccountError::Locked(seconds) => {
            let minutes = seconds.div_ceil(60);
            let text = format!("Too many failed sign-ins. Try again in {minutes} minute(s).");
            return Some((StatusCode::TOO_MANY_REQUESTS, text));
        }
        AccountError::NotVerified => {
            "Verify your e-mail address first: follow the link in the message we sent.".into()
        }
        AccountError::MagicLinkBadToken => {
            "This sign-in link is not valid: it has expired or was used already. Ask for a new one."
                .into()
        }
        AccountError::MfaBadChallenge => {
            "This sign-in has expired or was denied. Sign in again.".into()
        }
        AccountError::FederatedEmailTaken => "An account with this e-mail address exists already. \
             Sign in to it, then link the provider from your dashboard."
            .into(),
        AccountError::FederatedNoEmail => {
            "The provider did not share a verified e-mail address, which an account needs.".into()
        }
        AccountError::FederatedLinkedElsewhere => {
            "This provider account is linked to another account.".into()
        }
        AccountError::RegistrationClosed => {
            "Registration is closed: an administrator must make your account first.".into()
        }
        _ => return None,
    };
    Some((bad, text))
}

/// The login page showing why a sign-in was refused, or the error itself
/// when it is not the user's to fix.
fn refused(
    state: &AppState,
    csrf: &str,
    username: &str,
    error: AccountError,
) -> Result<Response, ApiError> {
    let Some((status, text)) = refusal(&error) else {
        return Err(error.into());
    };
    let said = Said {
        error: Some(&text),
        username,
        ..Said::default()
    };
    Ok(login_form(state, status, csrf, said))
}

/// Where a first factor leads: the dashboard with a new browser session,
/// or the second-factor step holding the challenge.
async fn signed_in(state: &AppState, outcome: LoginOutcome) -> Result<Response, ApiError> {
    match outcome {
        LoginOutcome::Tokens(pair) => {
            let id = state.accounts.open_web_session(&pair.access_token).await?;
            Ok(see_other(
                "/dashboard",
                [
                    set_cookie(state, SESSION_COOKIE, Some(&id)),
                    set_cookie(state, CSRF_COOKIE, None),
                    set_cookie(state, MFA_COOKIE, None),
                ],
            ))
        }
        LoginOutcome::SecondFactor(pending) => Ok(see_other(
            "/login/mfa",
            [set_cookie(state, MFA_COOKIE, Some(&pending.challenge))],
        )),
    }
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PublicForm { csrf, form }: PublicForm<LoginForm>,
) -> Result<Response, ApiError> {
    let outcome = state
        .accounts
        .login(&form.username, &form.password, Some(peer.ip()))
        .await;
    match outcome {
        Ok(outcome) => signed_in(&state, outcome).await,
        Err(e) => refused(&state, &csrf, &form.username, e),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    pub email: String,
    csrf: Option<String>,
}

csrf_field!(EmailForm);

/// `POST /login/magic-link`: mails a sign-in link, when an account has
/// the address; the page says the same either way.
pub async fn request_magic_link(
    State(state): State<Arc<AppState>>,
    PublicForm { csrf, form }: PublicForm<EmailForm>,
) -> Result<Response, ApiError> {
    let said = match crate::api::accounts::mail_later(&state, form.email, Purpose::MagicLink) {
        Ok(_) => Said {
            notice: Some(
                "If an account uses this address, a sign-in link is on its way. It works once.",
            ),
            ..Said::default()
        },
        Err(_) => Said {
            error: Some("That is not a valid e-mail address."),
            ..Said::default()
        },
    };
    let status = match said.error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    Ok(login_form(&state, status, &csrf, said))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm.html", config = "src/api/web/askama.toml")]
struct ConfirmPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    title: &'a str,
    text: &'a str,
    action: &'a str,
    token: &'a str,
    button: &'a str,
}

/// A mailed link's landing page: one button that posts the token. Opening
/// the link spends nothing, so a mail scanner that follows links does not
/// use it up.
pub(super) fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    what: (&str, &str, &str, &str),
) -> Response {
    let (title, text, action, button) = what;
    let (csrf, cookie) = pre_session_csrf(headers, state);
    let confirm = ConfirmPage {
        csrf: &csrf,
        signed_in: None,
        admin: false,
        title,
        text,
        action,
        token: token.unwrap_or_default(),
        button,
    };
    with_cookie(page(StatusCode::OK, confirm.render()), cookie)
}

/// `GET /magic-link?token=`: the link a sign-in message holds.
pub async fn magic_link_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    confirm_page(
        &state,
        &headers,
        query.token.as_deref(),
        (
            "Sign in with your link",
            "This link signs you in once.",
            "/magic-link",
            "Sign in",
        ),
    )
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub token: String,
    pub csrf: Option<String>,
}

csrf_field!(TokenForm);

pub async fn magic_link(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PublicForm { csrf, form }: PublicForm<TokenForm>,
) -> Result<Response, ApiError> {
    match state
        .accounts
        .magic_login(form.token.trim(), Some(peer.ip()))
        .await
    {
        Ok(outcome) => signed_in(&state, outcome).await,
        Err(e) => refused(&state, &csrf, "", e),
    }
}

#[derive(Template)]
#[template(path = "mfa.html", config = "src/api/web/askama.toml")]
struct MfaPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

fn mfa_form(csrf: &str, status: StatusCode, said: Said<'_>) -> Response {
    let mfa = MfaPage {
        csrf,
        signed_in: None,
        admin: false,
        error: said.error,
        notice: said.notice,
    };
    page(status, mfa.render())
}

/// `GET /login/mfa`: a code, or approval from another signed-in session.
pub async fn mfa_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if read_cookie(&headers, &state, MFA_COOKIE).is_none() {
        return Ok(see_other("/login", []));
    }
    let (csrf, cookie) = pre_session_csrf(&headers, &state);
    Ok(with_cookie(
        mfa_form(&csrf, StatusCode::OK, Said::default()),
        cookie,
    ))
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    csrf: Option<String>,
}

csrf_field!(CodeForm);

/// The challenge this browser holds.
fn held_challenge(state: &AppState, headers: &HeaderMap) -> Option<String> {
    read_cookie(headers, state, MFA_COOKIE).map(str::to_owned)
}

/// `POST /login/mfa`: completes the login with a TOTP code.
pub async fn mfa_code(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PublicForm { csrf, form }: PublicForm<CodeForm>,
) -> Result<Response, ApiError> {
    let Some(challenge) = held_challenge(&state, &headers) else {
        return refused(&state, &csrf, "", AccountError::MfaBadChallenge);
    };
    match state
        .accounts
        .complete_with_code(&challenge, form.code.trim())
        .await
    {
        Ok(pair) => signed_in(&state, LoginOutcome::Tokens(pair)).await,
        Err(AccountError::MfaBadCode) => {
            let said = Said {
                error: Some("That code is not right. Codes change every 30 seconds."),
                ..Said::default()
            };
            Ok(mfa_form(&csrf, StatusCode::BAD_REQUEST, said))
        }
        Err(e) => {
            let answer = refused(&state, &csrf, "", e)?;
            Ok(with_cookie(answer, set_cookie(&state, MFA_COOKIE, None)))
        }
    }
}

/// htmx stops polling on this status (`htmx.config` "286 stops polling").
const STOP_POLLING: u16 = 286;

/// `POST /login/mfa/wait`: whether another session approved the login.
/// htmx polls it every 2 seconds and is sent on to the dashboard once it
/// is (`HX-Redirect`); without JavaScript, the page's "Continue" button
/// posts it.
pub async fn mfa_wait(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PublicForm { csrf, .. }: PublicForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let polled = headers.contains_key("hx-request");
    let Some(challenge) = held_challenge(&state, &headers) else {
        if polled {
            return Ok(poll_ended());
        }
        return refused(&state, &csrf, "", AccountError::MfaBadChallenge);
    };
    match state.accounts.complete_delegated(&challenge).await {
        Ok(Delegated::Waiting) if polled => Ok(waiting()),
        Ok(Delegated::Waiting) => {
            let said = Said {
                notice: Some(
                    "Not approved yet. Approve the sign-in from your other session, then continue.",
                ),
                ..Said::default()
            };
            Ok(mfa_form(&csrf, StatusCode::OK, said))
        }
        Ok(Delegated::Tokens(pair)) => {
            let mut answer = signed_in(&state, LoginOutcome::Tokens(pair)).await?;
            if polled {
                // htmx follows no 303 for the page: it navigates on this.
                *answer.status_mut() = StatusCode::OK;
                answer
                    .headers_mut()
                    .insert("hx-redirect", HeaderValue::from_static("/dashboard"));
            }
            Ok(answer)
        }
        Err(e) if polled => match refusal(&e) {
            Some(_) => Ok(with_cookie(
                poll_ended(),
                set_cookie(&state, MFA_COOKIE, None),
            )),
            None => Err(e.into()),
        },
        Err(e) => {
            let answer = refused(&state, &csrf, "", e)?;
            Ok(with_cookie(answer, set_cookie(&state, MFA_COOKIE, None)))
        }
    }
}

/// The polled fragment while the login waits.
fn waiting() -> Response {
    let fragment = "<p id=\"mfa-waiting\" role=\"status\">Waiting for approval…</p>";
    page(StatusCode::OK, Ok(fragment.to_owned()))
}

/// The polled fragment once the login cannot complete; htmx stops polling.
fn poll_ended() -> Response {
    let fragment = "<p id=\"mfa-waiting\" class=\"error\" role=\"alert\">This sign-in has expired \
                    or was denied. <a href=\"/login\">Sign in again</a>.</p>";
    let mut answer = page(StatusCode::OK, Ok(fragment.to_owned()));
    if let Ok(status) = StatusCode::from_u16(STOP_POLLING) {
        *answer.status_mut() = status;
    }
    answer
}

/// The end of a sign-in the web UI started: from the sign-in page, the
/// linked identity's account signs in (see `services::account_links`);
/// from the dashboard's "link", the identity is linked to the account that
/// asked, when this browser is still signed in as it.
pub async fn provider_signed_in(
    state: &AppState,
    headers: &HeaderMap,
    identity: &DirectoryIdentity,
    started_by: OAuthFor,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    let link_to = match started_by {
        OAuthFor::Link(user_id) => {
            let current = browser(headers, state).await?;
            if current.is_none_or(|(_, s)| s.me.user.id != user_id) {
                return Ok(message_page(
                    StatusCode::FORBIDDEN,
                    "The provider was not linked",
                    "This browser is no longer signed in to the account that asked. Sign in and link it again.",
                    ("/login", "Sign in"),
                ));
            }
            Some(user_id)
        }
        _ => None,
    };
    match state
        .accounts
        .federated_login(identity, link_to.as_deref(), Some(peer.ip()))
        .await
    {
        Ok(Federated::Login(outcome)) => signed_in(state, outcome).await,
        Ok(Federated::Linked) => Ok(see_other("/dashboard?linked=1", [])),
        Err(e) => {
            let Some((status, text)) = refusal(&e) else {
                return Err(e.into());
            };
            Ok(message_page(
                status,
                "Sign-in with the provider failed",
                &text,
                ("/login", "Back to sign-in"),
            ))
        }
    }
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
