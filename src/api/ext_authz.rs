//! Envoy ext_authz, HTTP mode: every request under the configured prefix
//! (default `/ext_authz`) is a check of the original request, as Envoy's
//! `http_service` sends it: method, path (prefix stripped), `Host`,
//! `Authorization` and the headers Envoy is told to pass, empty body.
//!
//! - allow: 200, with `x-portcullis-principal` and `x-portcullis-decision-id`
//!   for Envoy to pass upstream;
//! - deny: 403 with a small JSON body; 401 when the rule needs a signed-in
//!   caller and there is none (or its credentials are not valid).
//!
//! Envoy treats anything but 200 as a deny, 5xx included, so an internal
//! error can never turn into an allow.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::accounts::caller;
use super::decisions::{Origin, decide};
use super::{ApiError, AppState};
use crate::authz::{DecisionRequest, UidInput, user_uid};
use crate::config::UnmatchedRoute;
use crate::services::{AccountError, CheckedRequest, Mapping, map_request, random_id};

/// The principal of checks that need no signed-in caller and have none.
pub const ANONYMOUS: &str = r#"Portcullis::User::"anonymous""#;

pub async fn check(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let decision_id = random_id();
    let prefix = state.ext_authz.prefix.as_str();
    let path = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    let path = if path.is_empty() { "/" } else { path };
    // Mapped before any await: the header lookup borrows `headers`.
    let mapping = {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(without_port);
        let checked = CheckedRequest {
            method: method.as_str(),
            path,
            query: uri.query(),
            host,
            source: client_address(&headers).or(Some(peer.ip())),
            header: &header,
        };
        map_request(&state.ext_authz, &checked)
    };
    let (action, resource, context, require_principal) = match mapping {
        Mapping::Decide {
            action,
            resource,
            context,
            require_principal,
            ..
        } => (action, resource, context, require_principal),
        Mapping::Unmatched => {
            return Ok(match state.ext_authz.unmatched {
                UnmatchedRoute::Allow => allowed(&decision_id, None),
                UnmatchedRoute::Deny => denied(
                    StatusCode::FORBIDDEN,
                    "NO_ROUTE_RULE",
                    "no route rule matches this request",
                    &decision_id,
                ),
            });
        }
    };
    let me = match caller(&headers, &state).await {
        Ok(me) => me,
        Err(ApiError::Account(AccountError::Unauthenticated)) => {
            return Ok(unauthenticated(&decision_id));
        }
        Err(e) => return Err(e),
    };
    if me.is_none() && require_principal {
        return Ok(unauthenticated(&decision_id));
    }
    let principal = match &me {
        Some(me) => user_uid(&me.user.id).to_string(),
        None => ANONYMOUS.to_owned(),
    };
    let request = DecisionRequest {
        principal: Some(UidInput::Text(principal.clone())),
        action: Some(action),
        resource: Some(resource),
        context: Some(context),
        ..DecisionRequest::default()
    };
    let origin = Origin {
        kind: "ext_authz",
        decision_id: Some(&decision_id),
    };
    let decided = decide(&state, &request, me.as_ref(), origin).await?;
    Ok(if decided.outcome.allowed() {
        allowed(&decision_id, Some(&principal))
    } else {
        denied(
            StatusCode::FORBIDDEN,
            "DENIED",
            "the policies do not allow this request",
            &decision_id,
        )
    })
}

fn allowed(decision_id: &str, principal: Option<&str>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(decision_id) {
        headers.insert("x-portcullis-decision-id", id);
    }
    if let Some(principal) = principal.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert("x-portcullis-principal", principal);
    }
    response
}

fn denied(status: StatusCode, code: &str, message: &str, decision_id: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}, "decision_id": decision_id});
    let mut response = (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(id) = HeaderValue::from_str(decision_id) {
        response
            .headers_mut()
            .insert("x-portcullis-decision-id", id);
    }
    response
}

fn unauthenticated(decision_id: &str) -> Response {
    let mut response = denied(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "this request needs a signed-in caller: a bearer token or an API key",
        decision_id,
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The client's address as the proxy reports it: Envoy's
/// `x-envoy-external-address`, else the first `x-forwarded-for` entry.
fn client_address(headers: &HeaderMap) -> Option<IpAddr> {
    let first = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    first("x-envoy-external-address").or_else(|| first("x-forwarded-for"))
}

/// `host:port` → `host` (IPv6 literals keep their brackets).
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}
