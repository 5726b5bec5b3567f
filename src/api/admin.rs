//! `Admin`: the extractor that admits a request to an admin route.
//!
//! An admin is a signed-in user (access token, or an API key with the
//! `admin` scope) whom Cedar's built-in admin policies
//! (`policies/builtin/admin.cedar`) allow the route: action `read` for GET,
//! `admin` otherwise, on `Portcullis::Api::"<first path segment>"`.
//! Superusers hold `Portcullis::Role::"admin"`. The configured bearer token
//! (`server.admin_token`, compared in constant time) also admits, for
//! bootstrap and automation; without one, only admin principals do.
//!
//! `DataAdmin` guards cedar-agent's data routes (`/v1/policies`,
//! `/v1/entities`, `/v1/data`, `/v1/schema`) the same way, unless
//! `server.open_data_routes` opens them as cedar-agent does (allowed on a
//! loopback address only).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::authz::user_uid;

pub struct Admin;

/// An admin, or anyone when `server.open_data_routes` is set.
pub struct DataAdmin;

impl FromRequestParts<Arc<AppState>> for DataAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<DataAdmin, ApiError> {
        if !state.open_data_routes {
            Admin::from_request_parts(parts, state).await?;
        }
        Ok(DataAdmin)
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admin, ApiError> {
        let presented = super::accounts::bearer(&parts.headers);
        if let (Some(token), Some(presented)) = (&state.admin_token, presented)
            && token.matches(presented.as_bytes())
        {
            crate::services::journal::set_actor(|| "admin-token".into());
            return Ok(Admin);
        }
        let Some(me) = super::accounts::caller(&parts.headers, state).await? else {
            return Err(ApiError::Unauthenticated);
        };
        super::accounts::require(&me, "admin")?;
        let action = if parts.method == Method::GET || parts.method == Method::HEAD {
            "read"
        } else {
            "admin"
        };
        let area = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let allowed = state.catalog.engine().admin_allowed(
            me.entities.to_vec(),
            user_uid(&me.user.id),
            action,
            area,
        );
        tracing::debug!(user = %me.user.id, action, area, allowed, "Admin route decision.");
        if allowed {
            Ok(Admin)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
