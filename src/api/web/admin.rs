//! `/admin`: the admin console, for admin principals only.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{RefusedPage, browser, is_admin, page, see_other};
use crate::api::{ApiError, AppState};
use crate::domain::User;

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
    let Some((_, session)) = browser(&headers, &state).await? else {
        return Ok(see_other("/login", []));
    };
    let me = &session.me;
    if !is_admin(&state, me) {
        let refused = RefusedPage {
            csrf: &session.csrf,
            signed_in: Some(me.user.email.as_str()),
            admin: false,
            title: "Administrators only",
            message: "Your account may not use the admin console.",
        };
        return Ok(page(StatusCode::FORBIDDEN, refused.render()));
    }
    let search = query.q.unwrap_or_default();
    let found = state
        .accounts
        .list_users(query.cursor.as_deref(), 50, Some(search.as_str()))
        .await?;
    let admin = AdminPage {
        csrf: &session.csrf,
        signed_in: Some(me.user.email.as_str()),
        admin: true,
        users: found.users,
        query: &search,
        next_cursor: found.next_cursor,
    };
    Ok(page(StatusCode::OK, admin.render()))
}
