//! `/dashboard`: the signed-in user's profile (with e-mail verification),
//! password, second factor (TOTP enrolment with a QR code drawn here),
//! linked providers, API keys, sessions, logins waiting for approval, and
//! effective permissions.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    CsrfForm, PermissionRow, SignedInForm, browser, is_admin, page, permission_rows, see_other,
    signed_in_message, utc,
};
use crate::api::{ApiError, AppState};
use crate::domain::User;
use crate::services::{AccountError, NewApiKey, ProfileUpdate, Purpose, WebSession};

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

struct ApprovalRow {
    id: String,
    started: String,
    address: String,
}

struct ProviderRow {
    name: String,
    label: String,
}

/// A TOTP enrolment waiting for its first code: the otpauth URI as a QR
/// code (an SVG data URI), and the secret for typing in.
pub(super) struct EnrolmentView {
    pub qr: String,
    pub secret: String,
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
    enrolment: Option<&'a EnrolmentView>,
    user: &'a User,
    mfa: bool,
    keys: Vec<KeyRow>,
    sessions: Vec<SessionRow>,
    approvals: Vec<ApprovalRow>,
    permissions: Vec<PermissionRow>,
    providers: Vec<ProviderRow>,
}

/// What a dashboard answer says above the page.
#[derive(Default)]
struct Outcome<'a> {
    notice: Option<&'a str>,
    error: Option<&'a str>,
    new_key: Option<&'a str>,
    enrolment: Option<&'a EnrolmentView>,
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    /// `?linked=1`: back from linking a provider.
    linked: Option<String>,
}

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ApiError> {
    let Some((_, session)) = browser(&headers, &state).await? else {
        return Ok(see_other("/login", []));
    };
    let outcome = Outcome {
        notice: query
            .linked
            .is_some()
            .then_some("The provider's account is linked: you can sign in with it."),
        ..Outcome::default()
    };
    render_dashboard(&state, &session, StatusCode::OK, outcome).await
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
    let approvals = state
        .accounts
        .pending_approvals(&me.user.id)
        .await?
        .into_iter()
        .map(|a| ApprovalRow {
            started: utc(a.created_at),
            address: a.address.unwrap_or_else(|| "unknown".into()),
            id: a.id,
        })
        .collect();
    let providers = state
        .identities
        .providers()
        .into_iter()
        .map(|(name, label)| ProviderRow { name, label })
        .collect();
    let dashboard = DashboardPage {
        csrf: &session.csrf,
        signed_in: Some(me.user.email.as_str()),
        admin: is_admin(state, me),
        notice: outcome.notice,
        error: outcome.error,
        new_key: outcome.new_key,
        enrolment: outcome.enrolment,
        user: &me.user,
        mfa: state.accounts.mfa_enabled(&me.user.id).await?,
        keys,
        sessions,
        approvals,
        permissions: permission_rows(state, &me.user.id, &me.entities),
        providers,
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
        AccountError::MfaBadCode => Some((
            StatusCode::BAD_REQUEST,
            "That code is not right. Codes change every 30 seconds.".into(),
        )),
        AccountError::MfaAlreadyEnrolled => Some((
            StatusCode::CONFLICT,
            "An authenticator app is set up already.".into(),
        )),
        AccountError::MfaNotEnrolled => Some((
            StatusCode::BAD_REQUEST,
            "No authenticator app is set up: start again.".into(),
        )),
        AccountError::MfaBadChallenge => Some((
            StatusCode::NOT_FOUND,
            "That sign-in is no longer waiting: it was decided, or it expired.".into(),
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

/// The dashboard saying why, when `password` is not the signed-in user's
/// (a wrong one counts towards the sign-in lock); `None` when it is.
async fn unless_reauthenticated(
    state: &AppState,
    session: &WebSession,
    password: String,
) -> Result<Option<Response>, ApiError> {
    match state
        .accounts
        .reauthenticate(&session.me, Some(password))
        .await
    {
        Ok(_) => Ok(None),
        Err(e) => after_form(state, session, Err(e), "").await.map(Some),
    }
}

#[derive(Deserialize)]
pub struct ProfileForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

csrf_field!(ProfileForm);

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

csrf_field!(PasswordForm);

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

csrf_field!(NewKeyForm);

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
    if let Some(answer) = unless_reauthenticated(&state, &session, form.current_password).await? {
        return Ok(answer);
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

/// `POST /dashboard/verify`: mails a new verification link.
pub async fn resend_verification(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, .. }: SignedInForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let email = session.me.user.email.clone();
    crate::api::accounts::mail_later(&state, email, Purpose::Verify)?;
    let done = "A message with a verification link is on its way.";
    after_form(&state, &session, Ok(()), done).await
}

/// The otpauth URI as a QR code: an SVG, as a data URI for an `<img>`.
fn qr_code(uri: &str) -> Result<String, ApiError> {
    use base64::Engine;
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| ApiError::Internal(format!("the QR code cannot hold the URI: {e}")))?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let encoded = base64::engine::general_purpose::STANDARD.encode(image);
    Ok(format!("data:image/svg+xml;base64,{encoded}"))
}

#[derive(Deserialize)]
pub struct PasswordOnlyForm {
    csrf: Option<String>,
    #[serde(default)]
    current_password: String,
}

csrf_field!(PasswordOnlyForm);

/// `POST /dashboard/mfa/enroll`: with the password, starts TOTP enrolment
/// and shows its QR code; a first code confirms it.
pub async fn mfa_enroll(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, form, .. }: SignedInForm<PasswordOnlyForm>,
) -> Result<Response, ApiError> {
    if let Some(answer) = unless_reauthenticated(&state, &session, form.current_password).await? {
        return Ok(answer);
    }
    let me = &session.me;
    let enrolment = match state.accounts.mfa_enroll(&me.user).await {
        Ok(enrolment) => enrolment,
        Err(e) => return after_form(&state, &session, Err(e), "").await,
    };
    let view = EnrolmentView {
        qr: qr_code(&enrolment.otpauth_uri)?,
        secret: enrolment.secret,
    };
    let outcome = Outcome {
        enrolment: Some(&view),
        ..Outcome::default()
    };
    render_dashboard(&state, &session, StatusCode::OK, outcome).await
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    #[serde(default)]
    code: String,
}

csrf_field!(CodeForm);

/// `POST /dashboard/mfa/confirm`: the first code ends enrolment.
pub async fn mfa_confirm(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, form, .. }: SignedInForm<CodeForm>,
) -> Result<Response, ApiError> {
    let result = state
        .accounts
        .mfa_confirm(&session.me.user.id, form.code.trim())
        .await;
    if result.is_ok() {
        tracing::info!(user = %session.me.user.id, "TOTP enrolled from the web UI.");
    }
    let done = "Your authenticator app is set up: sign-ins now ask for a code.";
    after_form(&state, &session, result, done).await
}

/// `POST /dashboard/mfa/disable`: a current code removes the second factor.
pub async fn mfa_disable(
    State(state): State<Arc<AppState>>,
    SignedInForm { session, form, .. }: SignedInForm<CodeForm>,
) -> Result<Response, ApiError> {
    let result = state
        .accounts
        .mfa_disable(&session.me.user.id, Some(form.code.trim()))
        .await;
    if result.is_ok() {
        tracing::info!(user = %session.me.user.id, "TOTP removed from the web UI.");
    }
    after_form(&state, &session, result, "The second factor is removed.").await
}

/// `POST /dashboard/approvals/{id}/{approve|deny}`: decides a login
/// waiting for its second factor.
pub async fn decide_approval(
    State(state): State<Arc<AppState>>,
    Path((id, decision)): Path<(String, String)>,
    SignedInForm { session, .. }: SignedInForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError::RouteNotFound(format!(
                "POST /dashboard/approvals/{id}/{other}"
            )));
        }
    };
    let result = state
        .accounts
        .decide_challenge(&session.me, &id, approve)
        .await;
    if result.is_ok() {
        tracing::info!(user = %session.me.user.id, approve, "A waiting sign-in was decided from the web UI.");
    }
    let done = if approve {
        "The sign-in is approved: it continues in its own browser."
    } else {
        "The sign-in is denied."
    };
    after_form(&state, &session, result, done).await
}

/// `POST /dashboard/providers/{provider}/link`: with the password, starts
/// a sign-in at the provider whose identity is linked on the way back. The
/// answer is a page with the provider's link, not a redirect: the pages'
/// `form-action 'self'` would stop a form's redirect to another origin.
pub async fn link_provider(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    SignedInForm { session, form, .. }: SignedInForm<PasswordOnlyForm>,
) -> Result<Response, ApiError> {
    if let Some(answer) = unless_reauthenticated(&state, &session, form.current_password).await? {
        return Ok(answer);
    }
    let me = &session.me;
    let started_by = crate::services::OAuthFor::Link(me.user.id.clone());
    let (location, cookie) =
        crate::api::identity::provider_redirect(&state, &provider, started_by).await?;
    let label = state
        .identities
        .providers()
        .into_iter()
        .find_map(|(name, label)| (name == provider).then_some(label))
        .unwrap_or(provider);
    let mut answer = signed_in_message(
        &session,
        is_admin(&state, me),
        StatusCode::OK,
        "Link a provider",
        "Sign in at the provider with the account to link; you come back here after.",
        (
            location.to_str().unwrap_or_default(),
            &format!("Continue to {label}"),
        ),
    );
    answer
        .headers_mut()
        .append(axum::http::header::SET_COOKIE, cookie);
    Ok(answer)
}
