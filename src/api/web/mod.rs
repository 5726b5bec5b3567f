//! The web UI: HTML rendered on the server from askama templates compiled
//! into the binary (`templates/`), with htmx and one stylesheet served from
//! the binary too (`static/`); nothing is loaded from elsewhere, and every
//! page's core action is a plain form that works without JavaScript.
//!
//! - `login`: `/login` (password, provider buttons, magic-link request),
//!   its second-factor step `/login/mfa`, `/magic-link`, `/logout`, and
//!   the end of a provider sign-in the page started;
//! - `account`: `/register`, `/verify`, `/forgot-password`,
//!   `/reset-password`;
//! - `dashboard`: `/dashboard` and its forms (profile, verification,
//!   password, second factor, API keys, sessions, approvals);
//! - `admin`: `/admin` and its pages (users, roles and grants, the
//!   decision tester), for admin principals only (a 403 page for anyone
//!   else); `operations`: its policies, backends, recovery, journal and
//!   settings pages;
//! - `GET /static/{file}`: htmx, the copy-button script and the stylesheet,
//!   with cache headers.
//!
//! A browser is signed in by the `portcullis_session` cookie (HttpOnly,
//! SameSite=Lax, Secure unless `server.public_url` is plain HTTP on
//! loopback), which names a server-side session (`services::web_sessions`).
//! Every form, and every htmx request (`x-csrf-token`, from the body's
//! `hx-headers`), carries a CSRF token: before sign-in the one in the
//! `portcullis_csrf` cookie (double submit), after it the session's own. A
//! request without it is refused. Pages are sent with a strict
//! Content-Security-Policy (no inline script or style), `X-Frame-Options:
//! DENY` and `Cache-Control: no-store`.

/// `CsrfField` for a form whose token is its `csrf: Option<String>`.
macro_rules! csrf_field {
    ($form:ty) => {
        impl $crate::api::web::CsrfField for $form {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        }
    };
}

mod account;
mod admin;
mod dashboard;
mod login;
mod operations;

pub use login::provider_signed_in;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::body::FormOrJson;
use super::identity::cookie;
use super::{ApiError, AppState};
use crate::authz::user_uid;
use crate::domain::{Effect, Grant};
use crate::services::{Authenticated, WebSession};

const SESSION_COOKIE: &str = "portcullis_session";
const CSRF_COOKIE: &str = "portcullis_csrf";
/// The header htmx requests carry the CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";
const HTMX: &str = "htmx-2.0.11.min.js";

const CONTENT_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(login::login_page).post(login::login))
        .route("/login/magic-link", post(login::request_magic_link))
        .route("/login/mfa", get(login::mfa_page).post(login::mfa_code))
        .route("/login/mfa/wait", post(login::mfa_wait))
        .route(
            "/magic-link",
            get(login::magic_link_page).post(login::magic_link),
        )
        .route("/logout", post(login::logout))
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route("/verify", get(account::verify_page).post(account::verify))
        .route(
            "/forgot-password",
            get(account::forgot_page).post(account::forgot),
        )
        .route(
            "/reset-password",
            get(account::reset_page).post(account::reset),
        )
        .route("/dashboard", get(dashboard::dashboard))
        .route(
            "/dashboard/sessions/{sid}/end",
            post(dashboard::end_session),
        )
        .route("/dashboard/profile", post(dashboard::profile))
        .route("/dashboard/verify", post(dashboard::resend_verification))
        .route(
            "/dashboard/providers/{provider}/link",
            post(dashboard::link_provider),
        )
        .route("/dashboard/mfa/enroll", post(dashboard::mfa_enroll))
        .route("/dashboard/mfa/confirm", post(dashboard::mfa_confirm))
        .route("/dashboard/mfa/disable", post(dashboard::mfa_disable))
        .route(
            "/dashboard/approvals/{id}/{decision}",
            post(dashboard::decide_approval),
        )
        .route("/dashboard/password", post(dashboard::password))
        .route("/dashboard/api-keys", post(dashboard::create_api_key))
        .route(
            "/dashboard/api-keys/{key_id}/revoke",
            post(dashboard::revoke_api_key),
        )
        .route("/admin", get(admin::admin))
        .route("/admin/users/{id}", get(admin::user))
        .route("/admin/users/{id}/active", post(admin::set_active))
        .route("/admin/users/{id}/mfa-reset", post(admin::reset_mfa))
        .route("/admin/users/{id}/roles", post(admin::assign_role))
        .route(
            "/admin/users/{id}/roles/{role}/remove",
            post(admin::unassign_role),
        )
        .route("/admin/users/{id}/delete", post(admin::delete_user))
        .route("/admin/roles", get(admin::roles).post(admin::put_role))
        .route("/admin/grants", post(admin::add_grant))
        .route("/admin/grants/{id}/revoke", post(admin::revoke_grant))
        .route("/admin/tester", get(admin::tester_page).post(admin::tester))
        .route("/admin/policies", get(operations::policies))
        .route("/admin/policies/reload", post(operations::reload_policies))
        .route("/admin/backends", get(operations::backends))
        .route("/admin/backends/{name}/switch", post(operations::switch))
        .route("/admin/recovery", get(operations::recovery))
        .route("/admin/recovery/sync", post(operations::run_sync))
        .route("/admin/recovery/backups", post(operations::backup))
        .route(
            "/admin/recovery/backups/{id}/restore",
            post(operations::restore),
        )
        .route("/admin/journal", get(operations::journal))
        .route("/admin/journal/{id}/rollback", post(operations::rollback))
        .route(
            "/admin/settings",
            get(operations::settings).post(operations::save_settings),
        )
        .route("/static/{file}", get(static_file))
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// A form's CSRF field, which `SignedInForm` checks.
trait CsrfField {
    fn csrf(&self) -> Option<&str>;
}

csrf_field!(CsrfForm);

/// A form posted by a signed-in browser with its session's CSRF token (the
/// form field or the htmx header). Anything else is answered instead of
/// handled: no session sends to `/login` (clearing a stale cookie), a
/// missing or wrong token gets the 403 page.
pub struct SignedInForm<T> {
    /// The session cookie's value.
    pub id: String,
    pub session: WebSession,
    pub form: T,
}

impl<T> FromRequest<Arc<AppState>> for SignedInForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Some((id, session)) = browser(&headers, state)
            .await
            .map_err(IntoResponse::into_response)?
        else {
            return Err(see_other(
                "/login",
                [set_cookie(state, SESSION_COOKIE, None)],
            ));
        };
        let FormOrJson(form) = FormOrJson::<T>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !csrf_matches(&session.csrf, presented_csrf(&headers, form.csrf())) {
            return Err(forged_form());
        }
        Ok(SignedInForm { id, session, form })
    }
}

#[derive(Template)]
#[template(path = "message.html", config = "src/api/web/askama.toml")]
struct MessagePage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    title: &'a str,
    message: &'a str,
    link: (&'a str, &'a str),
}

/// A page that only says something, with one link onwards (`(href,
/// text)`), to a signed-out browser.
fn message_page(status: StatusCode, title: &str, message: &str, link: (&str, &str)) -> Response {
    let said = MessagePage {
        csrf: "",
        signed_in: None,
        admin: false,
        title,
        message,
        link,
    };
    page(status, said.render())
}

/// `message_page` for a signed-in browser: its header shows the session,
/// and the admin link when `admin`.
fn signed_in_message(
    session: &WebSession,
    admin: bool,
    status: StatusCode,
    title: &str,
    message: &str,
    link: (&str, &str),
) -> Response {
    let said = MessagePage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin,
        title,
        message,
        link,
    };
    page(status, said.render())
}

/// The answer to a form whose CSRF token is missing or wrong.
fn forged_form() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "This form cannot be sent",
        "It has expired or did not come from this site. Load the page again and retry.",
        ("/dashboard", "Back to your dashboard"),
    )
}

/// The signed-in browser behind the request's session cookie, with the
/// cookie's value.
async fn browser(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<(String, WebSession)>, ApiError> {
    let Some(id) = read_cookie(headers, state, SESSION_COOKIE) else {
        return Ok(None);
    };
    let session = state.accounts.web_session(id).await?;
    if let Some(found) = &session {
        let uid = user_uid(&found.me.user.id).to_string();
        crate::services::journal::set_actor(|| uid);
    }
    Ok(session.map(|s| (id.to_owned(), s)))
}

/// Whether Cedar's admin policies let `me` do `action` (`read` or
/// `admin`) in the API area `area`, as for the API's own admin routes.
fn admin_may(state: &AppState, me: &Authenticated, action: &str, area: &str) -> bool {
    state
        .catalog
        .engine()
        .admin_allowed(me.entities.to_vec(), user_uid(&me.user.id), action, area)
}

/// Whether `me` may use the admin console: it may read the users.
fn is_admin(state: &AppState, me: &Authenticated) -> bool {
    admin_may(state, me, "read", "users")
}

/// One RBAC grant reaching a principal, as the permission tables show it.
struct PermissionRow {
    effect: &'static str,
    action: String,
    resource: String,
    via: String,
}

fn effect_text(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// Where a grant reaches: a resource, every resource of a type, or any.
fn resource_text(grant: &Grant) -> String {
    match (&grant.resource, &grant.resource_type) {
        (Some(resource), _) => resource.clone(),
        (None, Some(kind)) => format!("every {kind}"),
        (None, None) => "any resource".into(),
    }
}

/// The effective permissions of user `id` (with its identity's entities):
/// every RBAC grant that reaches it, directly or through a role or group.
fn permission_rows(
    state: &AppState,
    id: &str,
    identity: &[cedar_policy::Entity],
) -> Vec<PermissionRow> {
    let rbac = crate::services::Rbac {
        catalog: &state.catalog,
    };
    rbac.permissions(&user_uid(id), identity)
        .into_iter()
        .map(|p| PermissionRow {
            effect: effect_text(p.grant.effect),
            action: p
                .grant
                .action
                .clone()
                .unwrap_or_else(|| "every action".into()),
            resource: resource_text(&p.grant),
            via: p.via,
        })
        .collect()
}

/// Whether `presented` (a form field or the htmx header) is `expected`,
/// compared in constant time.
fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| {
        !expected.is_empty() && bool::from(p.as_bytes().ct_eq(expected.as_bytes()))
    })
}

/// The CSRF token a request presents: its form field, else its header.
fn presented_csrf<'a>(headers: &'a HeaderMap, field: Option<&'a str>) -> Option<&'a str> {
    field.or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
}

/// A cookie's name as sent: with the `__Host-` prefix whenever cookies are
/// `Secure`, so that no other host or path can set it (ASVS 3.4.4).
fn cookie_name(state: &AppState, name: &str) -> String {
    if state.accounts.secure_cookies() {
        format!("__Host-{name}")
    } else {
        name.to_owned()
    }
}

/// The value of this UI's cookie `name`.
fn read_cookie<'a>(headers: &'a HeaderMap, state: &AppState, name: &str) -> Option<&'a str> {
    cookie(headers, &cookie_name(state, name))
}

/// `Set-Cookie` for `name`; `None` clears it.
fn set_cookie(state: &AppState, name: &str, value: Option<&str>) -> Option<HeaderValue> {
    let secure = if state.accounts.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let name = cookie_name(state, name);
    let text = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"),
    };
    HeaderValue::from_str(&text).ok()
}

/// A rendered page, with the UI's headers.
fn page(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    let html = match rendered {
        Ok(html) => html,
        Err(e) => return ApiError::Internal(format!("a page did not render: {e}")).into_response(),
    };
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_POLICY),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// 303 to `to`, setting the cookies given.
fn see_other(to: &'static str, cookies: impl IntoIterator<Item = Option<HeaderValue>>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    for value in cookies.into_iter().flatten() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// Unix seconds as `2026-11-26 09:44 UTC`.
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let minute_of_day = (seconds % 86_400) / 60;
    // Civil from days (H. Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// htmx and the stylesheet. htmx's name carries its version, so it may be
/// kept for a year; the stylesheet for an hour.
async fn static_file(Path(file): Path<String>) -> Response {
    let (body, kind, cache): (&'static [u8], &'static str, &'static str) = match file.as_str() {
        HTMX => (
            include_bytes!("static/htmx-2.0.11.min.js"),
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        "portcullis.js" => (
            include_bytes!("static/portcullis.js"),
            "text/javascript; charset=utf-8",
            "public, max-age=3600",
        ),
        "portcullis.css" => (
            include_bytes!("static/portcullis.css"),
            "text/css; charset=utf-8",
            "public, max-age=3600",
        ),
        _ => return ApiError::RouteNotFound(format!("GET /static/{file}")).into_response(),
    };
    let mut response = Body::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_686_240), "2026-11-26 09:44 UTC");
    }

    #[test]
    fn a_csrf_token_matches_only_itself() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
    }
}
