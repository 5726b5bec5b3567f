//! `/admin`: the admin console, for admin principals only; anyone else
//! gets a 403 page. Each page is allowed as the API route it stands for:
//! Cedar's admin policies decide `read` (a page) or `admin` (a form) on
//! the area (`users`, `rbac`, `v1`), as for `GET` and `POST /<area>/…`.
//!
//! - `GET /admin`: users, searched and paged;
//! - `GET /admin/users/{id}`: one user, with roles, permissions and what
//!   it owns; `POST …/active`, `…/mfa-reset`, `…/roles`,
//!   `…/roles/{role}/remove`, `…/delete` (the page first warns about
//!   the service accounts and agents it owns, which go with it);
//! - `GET /admin/roles`: roles and grants; `POST /admin/roles`,
//!   `/admin/grants`, `/admin/grants/{id}/revoke`;
//! - `GET`/`POST /admin/tester`: a decision with its explanation.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    CsrfField, CsrfForm, PermissionRow, SignedInForm, admin_may, browser, effect_text, page,
    permission_rows, resource_text, see_other, signed_in_message, utc,
};
use crate::api::{ApiError, AppState};
use crate::authz::{DecisionRequest, UidInput, user_uid};
use crate::domain::{Effect, Grant, Role, User};
use crate::services::{AccountError, AdminUpdate, Flags, GrantInput, Rbac, RbacError, WebSession};

/// The API area a console path stands for, as the admin policies name it.
fn area_of(path: &str) -> &'static str {
    let rest = path.strip_prefix("/admin").unwrap_or_default();
    let mut parts = rest.trim_start_matches('/').split('/');
    let page = parts.next().unwrap_or_default();
    // A user's roles are RBAC's: `/admin/users/{id}/roles…`.
    if page == "users" && parts.nth(1) == Some("roles") {
        return "rbac";
    }
    match page {
        "roles" | "grants" => "rbac",
        "tester" | "policies" => "v1",
        "backends" => "storage",
        "recovery" | "journal" => "iam",
        "settings" => "management",
        _ => "users",
    }
}

/// The 403 page for a signed-in user who is not an admin here.
fn not_admin(session: &WebSession) -> Response {
    signed_in_message(
        session,
        false,
        StatusCode::FORBIDDEN,
        "Administrators only",
        "Your account may not use the admin console.",
        ("/dashboard", "Back to your dashboard"),
    )
}

/// The browser behind a console page, when it may `read` the page's area;
/// else what to answer instead (sign in first, or the 403 page).
pub(super) async fn reader(
    state: &AppState,
    headers: &HeaderMap,
    area: &str,
) -> Result<Result<WebSession, Response>, ApiError> {
    let Some((_, session)) = browser(headers, state).await? else {
        return Ok(Err(see_other("/login", [])));
    };
    if !admin_may(state, &session.me, "read", area) {
        return Ok(Err(not_admin(&session)));
    }
    Ok(Ok(session))
}

/// A console form: a `SignedInForm` whose user may `admin` its area.
pub struct AdminForm<T> {
    pub session: WebSession,
    pub form: T,
}

impl<T> FromRequest<Arc<AppState>> for AdminForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let area = area_of(req.uri().path());
        let SignedInForm { session, form, .. } = SignedInForm::from_request(req, state).await?;
        if !admin_may(state, &session.me, "admin", area) {
            return Err(not_admin(&session));
        }
        Ok(AdminForm { session, form })
    }
}

/// What a console page says above itself.
#[derive(Default)]
pub(super) struct Said {
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl Said {
    pub fn done(text: impl Into<String>) -> Said {
        Said {
            notice: Some(text.into()),
            error: None,
        }
    }

    pub fn failed(text: impl Into<String>) -> Said {
        Said {
            notice: None,
            error: Some(text.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.error {
            Some(_) => StatusCode::BAD_REQUEST,
            None => StatusCode::OK,
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html", config = "src/api/web/askama.toml")]
struct AdminPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    users: Vec<User>,
    query: &'a str,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct AdminQuery {
    q: Option<String>,
    cursor: Option<String>,
}

pub async fn admin(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<AdminQuery>,
) -> Result<Response, ApiError> {
    let session = match reader(&state, &headers, "users").await? {
        Ok(session) => session,
        Err(answer) => return Ok(answer),
    };
    let search = query.q.unwrap_or_default();
    let found = state
        .accounts
        .list_users(query.cursor.as_deref(), 50, Some(search.as_str()))
        .await?;
    let admin = AdminPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        users: found.users,
        query: &search,
        next_cursor: found.next_cursor,
    };
    Ok(page(StatusCode::OK, admin.render()))
}

#[derive(Template)]
#[template(path = "admin_user.html", config = "src/api/web/askama.toml")]
struct UserPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    user: &'a User,
    principal: String,
    mfa: bool,
    roles: Vec<String>,
    assignable: Vec<String>,
    permissions: Vec<PermissionRow>,
    owned: Vec<String>,
    made: String,
    confirm_delete: bool,
}

fn rbac(state: &AppState) -> Rbac<'_> {
    Rbac {
        catalog: &state.catalog,
    }
}

/// The user page, saying `said`; `confirm_delete` shows the deletion's
/// confirmation instead of its button.
async fn render_user(
    state: &AppState,
    session: &WebSession,
    id: &str,
    said: Said,
    confirm_delete: bool,
) -> Result<Response, ApiError> {
    let user = match state.accounts.get_user(id).await {
        Ok(user) => user,
        Err(AccountError::UserNotFound(_)) => {
            return Ok(signed_in_message(
                session,
                true,
                StatusCode::NOT_FOUND,
                "No such user",
                "The user does not exist: it may have been deleted.",
                ("/admin", "Back to the users"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let uid = user_uid(&user.id);
    let service = rbac(state);
    let roles = service.roles_of(&uid);
    let assignable = service
        .roles()
        .into_iter()
        .map(|r| r.id)
        .filter(|r| !roles.contains(r))
        .collect();
    let identity = match state.accounts.principal(&user.id).await? {
        Some(identity) => identity.entities.to_vec(),
        None => Vec::new(),
    };
    let permissions = permission_rows(state, &user.id, &identity);
    let view = UserPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        principal: uid.to_string(),
        mfa: state.accounts.mfa_enabled(&user.id).await?,
        roles,
        assignable,
        permissions,
        owned: crate::api::iam::owned_by(state, &user.id),
        made: utc(user.created_at),
        user: &user,
        confirm_delete,
    };
    Ok(page(said.status(), view.render()))
}

pub async fn user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "users").await? {
        Ok(session) => render_user(&state, &session, &id, Said::default(), false).await,
        Err(answer) => Ok(answer),
    }
}

#[derive(Deserialize)]
pub struct ActiveForm {
    csrf: Option<String>,
    #[serde(default)]
    active: String,
}

csrf_field!(ActiveForm);

/// `POST /admin/users/{id}/active`: `active=true` enables, `false`
/// disables (ending the user's sessions; its API keys stop working).
pub async fn set_active(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<ActiveForm>,
) -> Result<Response, ApiError> {
    let active = match form.active.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            let said = Said::failed("`active` must be true or false.");
            return render_user(&state, &session, &id, said, false).await;
        }
    };
    if !active && id == session.me.user.id {
        let said = Said::failed("You cannot disable your own account here.");
        return render_user(&state, &session, &id, said, false).await;
    }
    let update = AdminUpdate {
        flags: Flags {
            is_active: Some(active),
            ..Flags::default()
        },
        ..AdminUpdate::default()
    };
    let said = match state.accounts.admin_update_user(&id, update).await {
        Ok(user) => {
            tracing::info!(user = %user.id, active, "User changed by an admin (console).");
            Said::done(if active {
                "The user is enabled."
            } else {
                "The user is disabled: its sessions have ended and its API keys no longer work."
            })
        }
        Err(AccountError::UserNotFound(_)) => Said::failed("No such user."),
        Err(e) => return Err(e.into()),
    };
    render_user(&state, &session, &id, said, false).await
}

/// `POST /admin/users/{id}/mfa-reset`: removes the user's second factor.
pub async fn reset_mfa(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let said = match state.accounts.mfa_disable(&id, None).await {
        Ok(()) => {
            tracing::info!(user = %id, "Second factor removed by an admin (console).");
            Said::done("The second factor is removed: the user signs in with the password alone.")
        }
        Err(AccountError::MfaNotEnrolled) => Said::failed("The user has no second factor."),
        Err(e) => return Err(e.into()),
    };
    render_user(&state, &session, &id, said, false).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: Option<String>,
    #[serde(default)]
    role: String,
}

csrf_field!(RoleForm);

/// An RBAC refusal the page shows, or the error when it is the store's.
fn rbac_said(result: Result<(), RbacError>, done: &str) -> Result<Said, ApiError> {
    match result {
        Ok(()) => Ok(Said::done(done)),
        Err(RbacError::Service(e)) => Err(RbacError::Service(e).into()),
        Err(e) => Ok(Said::failed(e.to_string())),
    }
}

/// `POST /admin/users/{id}/roles`: assigns a role.
pub async fn assign_role(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<RoleForm>,
) -> Result<Response, ApiError> {
    if state.accounts.user(&id).await?.is_none() {
        return render_user(&state, &session, &id, Said::default(), false).await;
    }
    let uid = user_uid(&id);
    let result = rbac(&state).assign(&uid, form.role.trim()).await;
    if result.is_ok() {
        tracing::info!(principal = %uid, role = %form.role, "RBAC role assigned (console).");
    }
    let said = rbac_said(result, "The role is assigned.")?;
    render_user(&state, &session, &id, said, false).await
}

/// `POST /admin/users/{id}/roles/{role}/remove`: takes a role away.
pub async fn unassign_role(
    State(state): State<Arc<AppState>>,
    Path((id, role)): Path<(String, String)>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let uid = user_uid(&id);
    let result = rbac(&state).unassign(&uid, &role).await;
    if result.is_ok() {
        tracing::info!(principal = %uid, role = %role, "RBAC role unassigned (console).");
    }
    let said = rbac_said(result, "The role is taken away.")?;
    render_user(&state, &session, &id, said, false).await
}

#[derive(Deserialize)]
pub struct DeleteForm {
    csrf: Option<String>,
    /// Set by the confirmation form: the warning was shown.
    #[serde(default)]
    confirmed: String,
}

csrf_field!(DeleteForm);

/// `POST /admin/users/{id}/delete`: first shows what goes with the user,
/// then (`confirmed=yes`) deletes it with them.
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<DeleteForm>,
) -> Result<Response, ApiError> {
    if form.confirmed != "yes" {
        return render_user(&state, &session, &id, Said::default(), true).await;
    }
    if id == session.me.user.id {
        let said = Said::failed("You cannot delete your own account here.");
        return render_user(&state, &session, &id, said, false).await;
    }
    match crate::api::users::remove_user(&state, &id, true).await {
        Ok(()) => {
            tracing::info!(user = %id, "User deleted by an admin (console).");
            Ok(signed_in_message(
                &session,
                true,
                StatusCode::OK,
                "User deleted",
                "The user, its keys, sessions and roles, and what it owned are gone.",
                ("/admin", "Back to the users"),
            ))
        }
        Err(ApiError::Account(AccountError::UserNotFound(_))) => {
            render_user(&state, &session, &id, Said::default(), false).await
        }
        Err(e) => Err(e),
    }
}

struct RoleRow {
    role: Role,
    grants: Vec<GrantRow>,
}

struct GrantRow {
    id: String,
    effect: &'static str,
    action: String,
    resource: String,
}

#[derive(Template)]
#[template(path = "admin_roles.html", config = "src/api/web/askama.toml")]
struct RolesPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    roles: Vec<RoleRow>,
    /// Grants on subjects other than roles (users, groups).
    other: Vec<(String, GrantRow)>,
}

fn render_roles(state: &AppState, session: &WebSession, said: Said) -> Response {
    let service = rbac(state);
    let mut grants = service.grants();
    grants.sort_by(|a, b| (&a.subject, &a.id).cmp(&(&b.subject, &b.id)));
    let row = |g: &Grant| GrantRow {
        id: g.id.clone(),
        effect: effect_text(g.effect),
        action: g.action.clone().unwrap_or_else(|| "every action".into()),
        resource: resource_text(g),
    };
    let mut roles: Vec<RoleRow> = service
        .roles()
        .into_iter()
        .map(|role| RoleRow {
            role,
            grants: Vec::new(),
        })
        .collect();
    roles.sort_by(|a, b| a.role.id.cmp(&b.role.id));
    let mut other = Vec::new();
    for grant in &grants {
        let owner = roles
            .iter_mut()
            .find(|r| crate::authz::role_uid(&r.role.id).to_string() == grant.subject);
        match owner {
            Some(owner) => owner.grants.push(row(grant)),
            None => other.push((grant.subject.clone(), row(grant))),
        }
    }
    let view = RolesPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        roles,
        other,
    };
    page(said.status(), view.render())
}

pub async fn roles(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "rbac").await? {
        Ok(session) => Ok(render_roles(&state, &session, Said::default())),
        Err(answer) => Ok(answer),
    }
}

#[derive(Deserialize)]
pub struct NewRoleForm {
    csrf: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: String,
}

csrf_field!(NewRoleForm);

/// `POST /admin/roles`: makes (or redescribes) a role.
pub async fn put_role(
    State(state): State<Arc<AppState>>,
    AdminForm { session, form }: AdminForm<NewRoleForm>,
) -> Result<Response, ApiError> {
    let description = Some(form.description.trim().to_owned()).filter(|d| !d.is_empty());
    let id = form.id.trim();
    let result = rbac(&state)
        .put_role(id, description, BTreeSet::new())
        .await
        .map(drop);
    if result.is_ok() {
        tracing::info!(role = %id, "RBAC role saved (console).");
    }
    let said = rbac_said(result, "The role is saved.")?;
    Ok(render_roles(&state, &session, said))
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: Option<String>,
    #[serde(default)]
    role: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    effect: String,
}

csrf_field!(GrantForm);

/// `POST /admin/grants`: grants a role an action on a resource (`*`: any).
pub async fn add_grant(
    State(state): State<Arc<AppState>>,
    AdminForm { session, form }: AdminForm<GrantForm>,
) -> Result<Response, ApiError> {
    let text = |s: &str| Some(UidInput::Text(s.trim().to_owned()));
    let effect = match form.effect.as_str() {
        "" | "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        _ => {
            let said = Said::failed("The effect is allow or deny.");
            return Ok(render_roles(&state, &session, said));
        }
    };
    let input = GrantInput {
        role: Some(form.role.trim().to_owned()),
        subject: None,
        object: text(&form.resource),
        object_type: None,
        action: text(&form.action),
        effect: Some(effect),
    };
    let result = rbac(&state).add(&input).await;
    if let Ok(grant) = &result {
        tracing::info!(grant = %grant.id, subject = %grant.subject, "RBAC grant added (console).");
    }
    let said = rbac_said(result.map(drop), "The grant is added.")?;
    Ok(render_roles(&state, &session, said))
}

/// `POST /admin/grants/{id}/revoke`: removes a grant.
pub async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let service = rbac(&state);
    let Some(grant) = service.grants().into_iter().find(|g| g.id == id) else {
        let said = Said::failed("No such grant: it may be revoked already.");
        return Ok(render_roles(&state, &session, said));
    };
    let result = service.remove(&GrantInput::from(&grant)).await;
    if result.is_ok() {
        tracing::info!(grant = %id, "RBAC grant revoked (console).");
    }
    let said = rbac_said(result.map(drop), "The grant is revoked.")?;
    Ok(render_roles(&state, &session, said))
}

struct Determining {
    id: String,
    place: String,
    text: String,
}

#[derive(Template)]
#[template(path = "admin_tester.html", config = "src/api/web/askama.toml")]
struct TesterPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    error: Option<&'a str>,
    form: &'a TesterForm,
    decision: Option<&'a str>,
    policies: Vec<Determining>,
    errors: Vec<String>,
}

#[derive(Default, Deserialize)]
pub struct TesterForm {
    csrf: Option<String>,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    context: String,
}

csrf_field!(TesterForm);

pub async fn tester_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = match reader(&state, &headers, "v1").await? {
        Ok(session) => session,
        Err(answer) => return Ok(answer),
    };
    let form = TesterForm {
        context: "{}".into(),
        ..TesterForm::default()
    };
    let view = TesterPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        error: None,
        form: &form,
        decision: None,
        policies: Vec::new(),
        errors: Vec::new(),
    };
    Ok(page(StatusCode::OK, view.render()))
}

/// `POST /admin/tester`: decides the request as `/v1/is_authorized`
/// would, and shows the determining policies with their source.
pub async fn tester(
    State(state): State<Arc<AppState>>,
    AdminForm { session, form }: AdminForm<TesterForm>,
) -> Result<Response, ApiError> {
    let context = match form.context.trim() {
        "" => None,
        text => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => Some(value),
            Err(e) => {
                let error = format!("The context is not JSON: {e}");
                return Ok(tester_answer(&session, &form, Err(&error)));
            }
        },
    };
    let uid = |s: &str| Some(UidInput::Text(s.trim().to_owned())).filter(|_| !s.trim().is_empty());
    let request = DecisionRequest {
        principal: uid(&form.principal),
        action: uid(&form.action),
        resource: uid(&form.resource),
        context,
        entities: None,
        additional_entities: None,
    };
    let origin = crate::api::decisions::Origin {
        kind: "console",
        decision_id: None,
    };
    let decided = match crate::api::decisions::decide(&state, &request, None, origin).await {
        Ok(decided) => decided,
        Err(e @ (ApiError::Store(_) | ApiError::Internal(_))) => return Err(e),
        Err(e) => {
            let error = e.to_string();
            return Ok(tester_answer(&session, &form, Err(&error)));
        }
    };
    let explained = crate::api::decisions::explain(&state, &request, &decided)?;
    Ok(tester_answer(&session, &form, Ok(&explained)))
}

/// The tester showing an answer (`/v1/is_authorized?explain=true`'s body)
/// or why there is none.
fn tester_answer(
    session: &WebSession,
    form: &TesterForm,
    answer: Result<&serde_json::Value, &str>,
) -> Response {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let (decision, policies, errors) = match answer {
        Ok(body) => {
            let policies = body["explain"]["policies"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|p| Determining {
                            id: text(&p["id"]),
                            place: match (p["source"].as_str(), p["line"].as_u64()) {
                                (Some(source), Some(line)) => format!("{source}:{line}"),
                                (Some(source), None) => source.to_owned(),
                                _ => String::new(),
                            },
                            text: text(&p["text"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let errors = body["diagnostics"]["errors"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (body["decision"].as_str(), policies, errors)
        }
        Err(_) => (None, Vec::new(), Vec::new()),
    };
    let view = TesterPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        error: answer.err(),
        form,
        decision,
        policies,
        errors,
    };
    let status = if answer.is_err() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page(status, view.render())
}

#[cfg(test)]
mod tests {
    use super::area_of;

    #[test]
    fn each_console_path_is_decided_as_its_api_area() {
        assert_eq!(area_of("/admin"), "users");
        assert_eq!(area_of("/admin/users/u1"), "users");
        assert_eq!(area_of("/admin/users/u1/active"), "users");
        assert_eq!(area_of("/admin/users/u1/roles"), "rbac");
        assert_eq!(area_of("/admin/users/u1/roles/editor/remove"), "rbac");
        assert_eq!(area_of("/admin/grants/g1/revoke"), "rbac");
        assert_eq!(area_of("/admin/tester"), "v1");
        assert_eq!(area_of("/admin/policies/reload"), "v1");
        assert_eq!(area_of("/admin/backends/pg/switch"), "storage");
        assert_eq!(area_of("/admin/recovery/backups/b1/restore"), "iam");
        assert_eq!(area_of("/admin/journal/c1/rollback"), "iam");
        assert_eq!(area_of("/admin/settings"), "management");
    }
}
