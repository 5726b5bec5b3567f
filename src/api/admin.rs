//! `Admin`: the extractor that admits a request to an admin route.
//!
//! Until user accounts exist, an admin is whoever presents the configured
//! bearer token (`server.admin_token`), compared in constant time. With no
//! token configured, admin routes answer 401 to everyone.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};

pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admin, ApiError> {
        let presented = super::accounts::bearer(parts);
        match (&state.admin_token, presented) {
            (Some(token), Some(presented)) if token.matches(presented.as_bytes()) => Ok(Admin),
            _ => Err(ApiError::Unauthenticated),
        }
    }
}
