//! Envoy ext_authz, gRPC mode: `envoy.service.auth.v3.Authorization/Check`
//! served by tonic on `ext_authz.grpc_listen`. The check is the HTTP mode's
//! ([`check_request`]); this module reads Envoy's `AttributeContext` and
//! words the verdict as a `CheckResponse`:
//!
//! | verdict | `status.code` | `http_response` |
//! |---|---|---|
//! | allow | `OK` | `ok_response`, headers `x-portcullis-principal`, `x-portcullis-decision-id` (overwriting any the client sent) |
//! | deny | `PERMISSION_DENIED` | `denied_response` 403, JSON body |
//! | no caller | `UNAUTHENTICATED` | `denied_response` 401, `www-authenticate: Bearer` |
//! | malformed check | `INVALID_ARGUMENT` | `denied_response` 400 |
//! | cannot decide | `UNAVAILABLE` / `INTERNAL` | `denied_response` 503 / 500 |
//!
//! Every answer is a `CheckResponse`, never a failed RPC: Envoy lets an
//! operator turn a failed RPC into an allow (`failure_mode_allow`), and an
//! outage here must never become an allow.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HttpStatus, OkHttpResponse,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use super::ext_authz::{
    CheckInput, UNAUTHENTICATED_MESSAGE, Verdict, allow_headers, check_request, deny_body,
};
use super::{ApiError, AppState};
use crate::services::random_id;

/// The `Authorization` service over the app's state.
pub struct ExtAuthzGrpc {
    state: Arc<AppState>,
}

impl ExtAuthzGrpc {
    pub fn new(state: Arc<AppState>) -> ExtAuthzGrpc {
        ExtAuthzGrpc { state }
    }

    pub fn server(state: Arc<AppState>) -> AuthorizationServer<ExtAuthzGrpc> {
        AuthorizationServer::new(ExtAuthzGrpc::new(state))
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let remote = request.remote_addr();
        let decision_id = random_id();
        let span = tracing::info_span!("ext_authz_grpc", decision_id = %decision_id);
        let request = request.into_inner();
        let answer = async {
            match read(&request, remote) {
                Err(message) => denied(
                    Code::InvalidArgument,
                    StatusCode::BAD_REQUEST,
                    deny_body("MALFORMED_CHECK", message, &decision_id),
                    &decision_id,
                ),
                Ok(read) => {
                    let input = CheckInput {
                        method: &read.method,
                        path: &read.path,
                        query: read.query.as_deref(),
                        host: read.host.as_deref(),
                        peer: read.peer,
                        headers: &read.headers,
                    };
                    answer(
                        check_request(&self.state, &input, &decision_id).await,
                        &decision_id,
                    )
                }
            }
        }
        .instrument(span)
        .await;
        self.state
            .metrics
            .observe_grpc_check(answer_code(&answer), started.elapsed().as_secs_f64());
        Ok(Response::new(answer))
    }
}

fn answer_code(answer: &CheckResponse) -> &'static str {
    match answer.status.as_ref().map_or(0, |s| s.code) {
        0 => "ok",
        3 => "invalid_argument",
        7 => "permission_denied",
        16 => "unauthenticated",
        14 => "unavailable",
        _ => "internal",
    }
}

/// The parts of Envoy's `AttributeContext` a check reads.
#[derive(Debug)]
struct Read {
    method: String,
    path: String,
    query: Option<String>,
    host: Option<String>,
    peer: Option<IpAddr>,
    headers: HeaderMap,
}

fn read(request: &CheckRequest, remote: Option<SocketAddr>) -> Result<Read, &'static str> {
    let attributes = request
        .attributes
        .as_ref()
        .ok_or("the check has no attributes")?;
    let http = attributes
        .request
        .as_ref()
        .and_then(|r| r.http.as_ref())
        .ok_or("the check has no attributes.request.http")?;
    if http.method.is_empty() {
        return Err("the check has no HTTP method");
    }
    // `path` is the request target: path and query (and, rarely, fragment).
    let target = http.path.split('#').next().unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, (!http.query.is_empty()).then(|| http.query.clone())),
    };
    if !path.starts_with('/') {
        return Err("the check's path does not start with `/`");
    }
    // Envoy sends `headers` (lower-case names, pseudo-headers included) or,
    // with `encode_raw_headers`, `header_map`.
    let pairs: Vec<(&str, &[u8])> = if http.headers.is_empty() {
        http.header_map
            .iter()
            .flat_map(|m| &m.headers)
            .map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value[..]
                };
                (h.key.as_str(), value)
            })
            .collect()
    } else {
        http.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect()
    };
    let mut headers = HeaderMap::with_capacity(pairs.len());
    let mut authority = None;
    for (name, value) in pairs {
        if name == ":authority" {
            authority = std::str::from_utf8(value).ok().map(str::to_owned);
        }
        // Pseudo-headers and anything not a valid header are not headers.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let host = (!http.host.is_empty())
        .then(|| http.host.clone())
        .or(authority)
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let source = attributes
        .source
        .as_ref()
        .and_then(|peer| peer.address.as_ref())
        .and_then(|address| match address.address.as_ref()? {
            Address::SocketAddress(socket) => socket.address.parse().ok(),
            _ => None,
        });
    Ok(Read {
        method: http.method.clone(),
        path: path.to_owned(),
        query,
        host,
        peer: source.or(remote.map(|r| r.ip())),
        headers,
    })
}

fn answer(verdict: Result<Verdict, ApiError>, decision_id: &str) -> CheckResponse {
    match verdict {
        Ok(Verdict::Allow { principal }) => {
            let mut ok = OkHttpResponseBuilder::new();
            for (name, value) in allow_headers(decision_id, principal.as_deref()) {
                // Overwrite: a client must not smuggle its own principal
                // header past the check.
                ok.add_header(
                    name,
                    value,
                    Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                    false,
                );
            }
            let mut response = CheckResponse::with_status(Status::ok(""));
            response.set_http_response(OkHttpResponse::from(ok));
            response
        }
        Ok(Verdict::Deny { code, message }) => denied(
            Code::PermissionDenied,
            StatusCode::FORBIDDEN,
            deny_body(code, message, decision_id),
            decision_id,
        ),
        Ok(Verdict::Unauthenticated) => {
            let mut response = denied(
                Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                deny_body("UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE, decision_id),
                decision_id,
            );
            if let Some(envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(d)) =
                response.http_response.as_mut()
            {
                let mut extra = DeniedHttpResponseBuilder::new();
                extra.add_header("www-authenticate", "Bearer", None, false);
                d.headers.extend(extra.build().headers);
            }
            response
        }
        Err(e) => {
            let (status, _) = e.status_and_code();
            if status.is_server_error() {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "ext_authz check failed; denied.");
            }
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                Code::Unavailable
            } else if status.is_server_error() {
                Code::Internal
            } else {
                Code::PermissionDenied
            };
            let body = String::from_utf8(e.body_json()).unwrap_or_default();
            denied(code, status, body, decision_id)
        }
    }
}

fn denied(code: Code, status: StatusCode, body: String, decision_id: &str) -> CheckResponse {
    let mut builder = DeniedHttpResponseBuilder::new();
    builder
        .add_header("content-type", "application/json", None, false)
        .add_header("x-portcullis-decision-id", decision_id, None, false)
        .set_body(body);
    let mut denied = DeniedHttpResponse::from(builder);
    denied.status = Some(HttpStatus {
        code: i32::from(status.as_u16()),
    });
    let message = match code {
        Code::PermissionDenied => "denied",
        Code::Unauthenticated => "unauthenticated",
        Code::InvalidArgument => "malformed check",
        _ => "cannot decide; denied",
    };
    let mut response = CheckResponse::with_status(Status::new(code, message));
    response.set_http_response(denied);
    response
}
