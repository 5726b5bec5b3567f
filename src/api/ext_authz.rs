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
//!
//! [`check_request`] is the check itself, shared with the gRPC mode
//! (`api::grpc`): each transport only reads the request and words the
//! [`Verdict`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::decisions::{Origin, decide, decision_caller};
use super::{ApiError, AppState};
use crate::authz::{DecisionRequest, UidInput};
use crate::config::UnmatchedRoute;
use crate::services::{AccountError, CheckedRequest, Mapping, map_request, random_id};

/// The principal of checks that need no signed-in caller and have none.
pub const ANONYMOUS: &str = r#"Portcullis::User::"anonymous""#;

/// A checked request, whatever the transport brought it: the original
/// request's parts as Envoy reports them.
pub struct CheckInput<'a> {
    pub method: &'a str,
    /// The original path, without the query (and without the HTTP mode's
    /// prefix).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `Host` (or `:authority`), port included or not.
    pub host: Option<&'a str>,
    /// The peer Envoy reports (gRPC) or that connected (HTTP); the
    /// `x-envoy-external-address` / `x-forwarded-for` headers win over it.
    pub peer: Option<IpAddr>,
    pub headers: &'a HeaderMap,
}

/// What a check comes to; each transport says it in its own words.
#[derive(Debug)]
pub enum Verdict {
    /// Allowed; the principal that was decided for, when there was one.
    Allow { principal: Option<String> },
    /// Denied: no rule matched (`NO_ROUTE_RULE`) or the policies said no
    /// (`DENIED`).
    Deny {
        code: &'static str,
        message: &'static str,
    },
    /// The rule needs a signed-in caller and there is none, or its
    /// credentials are not valid.
    Unauthenticated,
}

/// Maps the request by the route rules, finds the caller, and decides.
/// An `Err` is a failure to decide (a store or directory down): every
/// transport answers it as a deny.
pub async fn check_request(
    state: &Arc<AppState>,
    input: &CheckInput<'_>,
    decision_id: &str,
) -> Result<Verdict, ApiError> {
    // Mapped before any await: the header lookup borrows `headers`.
    let mapping = {
        let header = |name: &str| {
            input
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let checked = CheckedRequest {
            method: input.method,
            path: input.path,
            query: input.query,
            host: input.host.map(without_port),
            source: client_address(input.headers, state.ext_authz.trusted_hops).or(input.peer),
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
                UnmatchedRoute::Allow => Verdict::Allow { principal: None },
                UnmatchedRoute::Deny => Verdict::Deny {
                    code: "NO_ROUTE_RULE",
                    message: "no route rule matches this request",
                },
            });
        }
    };
    let me = match decision_caller(state, input.headers, None).await {
        Ok(me) => me,
        Err(ApiError::Account(AccountError::Unauthenticated)) => {
            return Ok(Verdict::Unauthenticated);
        }
        Err(e) => return Err(e),
    };
    if me.is_none() && require_principal {
        return Ok(Verdict::Unauthenticated);
    }
    let principal = match &me {
        Some(me) => me.principal.to_string(),
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
        decision_id: Some(decision_id),
    };
    let decided = decide(state, &request, me.as_ref(), origin).await?;
    Ok(if decided.outcome.allowed() {
        Verdict::Allow {
            principal: Some(principal),
        }
    } else {
        Verdict::Deny {
            code: "DENIED",
            message: "the policies do not allow this request",
        }
    })
}

/// HTTP mode: a request under the prefix is a check of the request it
/// describes.
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
    let input = CheckInput {
        method: method.as_str(),
        path: if path.is_empty() { "/" } else { path },
        query: uri.query(),
        host: headers.get(HOST).and_then(|v| v.to_str().ok()),
        peer: Some(peer.ip()),
        headers: &headers,
    };
    Ok(match check_request(&state, &input, &decision_id).await? {
        Verdict::Allow { principal } => allowed(&decision_id, principal.as_deref()),
        Verdict::Deny { code, message } => {
            denied(StatusCode::FORBIDDEN, code, message, &decision_id)
        }
        Verdict::Unauthenticated => unauthenticated(&decision_id),
    })
}

/// The headers an allow hands upstream.
pub fn allow_headers<'a>(
    decision_id: &'a str,
    principal: Option<&'a str>,
) -> impl Iterator<Item = (&'static str, &'a str)> {
    std::iter::once(("x-portcullis-decision-id", decision_id))
        .chain(principal.map(|p| ("x-portcullis-principal", p)))
}

/// The JSON body of a denied check.
pub fn deny_body(code: &str, message: &str, decision_id: &str) -> String {
    json!({"error": {"code": code, "message": message}, "decision_id": decision_id}).to_string()
}

pub const UNAUTHENTICATED_MESSAGE: &str =
    "this request needs a signed-in caller: a bearer token or an API key";

fn allowed(decision_id: &str, principal: Option<&str>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    for (name, value) in allow_headers(decision_id, principal) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

fn denied(status: StatusCode, code: &str, message: &str, decision_id: &str) -> Response {
    let mut response = (
        status,
        [(CONTENT_TYPE, "application/json")],
        deny_body(code, message, decision_id),
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
        UNAUTHENTICATED_MESSAGE,
        decision_id,
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The client's address as the proxies report it: Envoy's
/// `x-envoy-external-address`, else the `x-forwarded-for` entry
/// `trusted_hops` places from the right. Never an entry further left: the
/// client writes those (ASVS 4.1.2).
fn client_address(headers: &HeaderMap, trusted_hops: usize) -> Option<IpAddr> {
    let value = |name: &str| headers.get(name)?.to_str().ok();
    let external = value("x-envoy-external-address").and_then(|v| v.trim().parse().ok());
    external.or_else(|| {
        value("x-forwarded-for")?
            .rsplit(',')
            .nth(trusted_hops)?
            .trim()
            .parse()
            .ok()
    })
}

/// `host:port` → `host` (IPv6 literals keep their brackets).
pub fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_source_is_never_an_entry_the_client_wrote() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The client wrote 6.6.6.6; Envoy appended the address it saw.
        let forged = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        assert_eq!(client_address(&forged, 0), ip("203.0.113.9"));
        // Behind one trusted balancer, the entry it appended.
        let balanced = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.2")]);
        assert_eq!(client_address(&balanced, 1), ip("198.51.100.4"));
        // Fewer entries than hops: none, so the peer decides.
        assert_eq!(client_address(&forged, 2), None);
        // Envoy's own header wins.
        let external = headers(&[
            ("x-envoy-external-address", "192.0.2.1"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(client_address(&external, 0), ip("192.0.2.1"));
        assert_eq!(
            client_address(&headers(&[("x-forwarded-for", "junk")]), 0),
            None
        );
    }
}
