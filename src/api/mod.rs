//! The HTTP API: axum routing served by hyper (HTTP/1.1 and h2c), request
//! spans and metrics, JSON errors.
//!
//! Routes (one table, [`routes`], which also serves `GET /discovery`,
//! `GET /openapi.json` and the metrics' route labels):
//! - decisions: `POST /v1/is_authorized`, `POST /v1/is_authorized/batch`
//! - policies: `GET|POST|PUT /v1/policies`, `GET|PUT|DELETE /v1/policies/{id}`,
//!   `POST /v1/policies/reload`
//! - entities: `GET|PUT|PATCH|DELETE /v1/entities` (alias `/v1/data`),
//!   `DELETE /v1/entities/{type}/{id}`
//! - schema: `GET|PUT|DELETE /v1/schema`
//! - operations: `GET /health` (also `/`, `/v1`), `GET /ready`, `GET /metrics`,
//!   `GET /discovery`
//! - admin storage: `GET /storage/backends`, `POST /storage/switch/{backend}`,
//!   `GET /storage/{namespace}`, `GET|POST|DELETE /storage/{namespace}/{key}`
//!
//! Owns: HTTP. Must not: decide, persist, or hold state of its own.

mod accounts;
mod admin;
mod body;
mod changes;
mod connections;
mod decisions;
mod entities;
mod error;
mod ext_authz;
mod grpc;
mod iam;
mod identity;
mod mfa;
mod openapi;
mod ops;
mod policies;
mod rbac;
mod recovery;
mod schema;
mod storage;
mod sync;
mod users;
mod web;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, any, delete, get, patch, post, put};
use tracing::Instrument;

pub use connections::{Admission, LimitedListener, PerConnection};
pub use error::ApiError;
pub use grpc::ExtAuthzGrpc;
pub use recovery::recovery;
pub use sync::federation;

use crate::backends::Registry;
use crate::config::{ExtAuthzConfig, IamConfig, RecoveryConfig, Secret};
use crate::services::{Accounts, Catalog, Identities, journal};
use crate::telemetry::{DecisionLog, Metrics};

/// What every handler can reach.
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    pub body_limit: usize,
    pub batch_limit: usize,
    pub started: Instant,
    /// Bearer token admitting admin routes; `None` admits nobody.
    pub admin_token: Option<Secret>,
    /// cedar-agent's data routes need no admin (`server.open_data_routes`).
    pub open_data_routes: bool,
    pub limits: RequestLimits,
    pub registry: Arc<Registry>,
    pub identities: Arc<Identities>,
    pub accounts: Arc<Accounts>,
    pub ext_authz: Arc<ExtAuthzConfig>,
    pub iam: IamConfig,
    pub recovery: RecoveryConfig,
    /// From `recovery.key`: seals backups.
    pub recovery_key: Option<Arc<crate::services::SealKey>>,
    /// Wakes the backup schedule when its settings change.
    pub backup_schedule: Arc<tokio::sync::Notify>,
    pub decision_log: Arc<DecisionLog>,
}

/// Bounds on what one request may carry (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub json_depth: usize,
    pub entities: usize,
    pub headers: usize,
    pub header_bytes: usize,
}

impl RequestLimits {
    pub fn from_config(server: &crate::config::ServerConfig) -> RequestLimits {
        RequestLimits {
            json_depth: server.max_json_depth,
            entities: server.max_request_entities,
            headers: server.max_headers,
            header_bytes: server.max_header_bytes,
        }
    }
}

/// `(method, path, description)` of every route, for `/discovery`.
/// One route: method, path template, what it does, and its handler. The
/// router, `/discovery`, the metrics' route labels and the OpenAPI document
/// all come from [`routes`], so none of them can leave a route out.
pub struct Route {
    pub method: &'static str,
    pub path: String,
    pub about: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn route<H, T>(method: &'static str, path: &str, about: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let handler = match method {
        "ANY" => any(handler),
        "GET" => get(handler),
        "POST" => post(handler),
        "PUT" => put(handler),
        "PATCH" => patch(handler),
        "DELETE" => delete(handler),
        other => unreachable!("no route is declared with method {other}"),
    };
    Route {
        method,
        path: path.to_owned(),
        about,
        handler,
    }
}

/// Every route. `ext_authz_prefix` is where ext_authz checks are served.
pub fn routes(ext_authz_prefix: &str) -> Vec<Route> {
    vec![
        route(
            "POST",
            "/v1/is_authorized",
            "Decide one request",
            decisions::is_authorized,
        ),
        route(
            "POST",
            "/v1/is_authorized/batch",
            "Decide many requests, answers in order",
            decisions::is_authorized_batch,
        ),
        route(
            "GET",
            "/v1/policies",
            "List application policies",
            policies::list,
        ),
        route("POST", "/v1/policies", "Create a policy", policies::create),
        route(
            "PUT",
            "/v1/policies",
            "Replace all API policies",
            policies::replace_all,
        ),
        route("GET", "/v1/policies/{id}", "Get one policy", policies::get),
        route(
            "PUT",
            "/v1/policies/{id}",
            "Create or replace one policy",
            policies::upsert,
        ),
        route(
            "DELETE",
            "/v1/policies/{id}",
            "Delete one policy",
            policies::delete,
        ),
        route(
            "POST",
            "/v1/policies/reload",
            "Reload the policy directory and stored policies",
            policies::reload,
        ),
        route(
            "GET",
            "/v1/entities",
            "List stored entities",
            entities::list,
        ),
        route(
            "PUT",
            "/v1/entities",
            "Replace all stored entities",
            entities::replace,
        ),
        route(
            "PATCH",
            "/v1/entities",
            "Create or replace the given entities",
            entities::upsert,
        ),
        route(
            "DELETE",
            "/v1/entities",
            "Remove all stored entities",
            entities::clear,
        ),
        route(
            "DELETE",
            "/v1/entities/{type}/{id}",
            "Remove one entity",
            entities::delete_one,
        ),
        route(
            "GET",
            "/v1/data",
            "cedar-agent alias of GET /v1/entities",
            entities::list,
        ),
        route(
            "PUT",
            "/v1/data",
            "cedar-agent alias of PUT /v1/entities",
            entities::replace,
        ),
        route(
            "PATCH",
            "/v1/data",
            "Alias of PATCH /v1/entities",
            entities::upsert,
        ),
        route(
            "DELETE",
            "/v1/data",
            "cedar-agent alias of DELETE /v1/entities",
            entities::clear,
        ),
        route(
            "GET",
            "/v1/schema",
            "Get the application schema",
            schema::get,
        ),
        route(
            "PUT",
            "/v1/schema",
            "Set the application schema",
            schema::put,
        ),
        route(
            "DELETE",
            "/v1/schema",
            "Remove the application schema",
            schema::delete,
        ),
        route("GET", "/health", "Liveness and store status", ops::health),
        route(
            "GET",
            "/",
            "cedar-agent's health route: the same as /health",
            ops::health,
        ),
        route(
            "GET",
            "/v1",
            "cedar-agent's health route: the same as /health",
            ops::health,
        ),
        route("GET", "/ready", "Readiness", ops::ready),
        route("GET", "/metrics", "Prometheus metrics", ops::metrics),
        route(
            "GET",
            "/discovery",
            "Version, features and routes",
            ops::discovery,
        ),
        route(
            "GET",
            "/storage/backends",
            "Admin: every backend with its kind, role, health and breaker",
            storage::backends,
        ),
        route(
            "POST",
            "/storage/switch/{backend}",
            "Admin: make another store the active one, losing nothing",
            storage::switch,
        ),
        route(
            "GET",
            "/storage/{namespace}",
            "Admin: keys of a namespace, paged",
            storage::list,
        ),
        route(
            "GET",
            "/storage/{namespace}/{key}",
            "Admin: one stored value (ETag = version)",
            storage::get,
        ),
        route(
            "POST",
            "/storage/{namespace}/{key}",
            "Admin: store a value (If-Match, If-None-Match)",
            storage::put,
        ),
        route(
            "DELETE",
            "/storage/{namespace}/{key}",
            "Admin: remove a value (If-Match)",
            storage::delete,
        ),
        route(
            "POST",
            "/auth/register",
            "Create an account",
            accounts::register,
        ),
        route(
            "POST",
            "/auth/jwt/login",
            "Password login (OAuth2 form or JSON): access and refresh tokens",
            accounts::login,
        ),
        route(
            "POST",
            "/auth/jwt/refresh",
            "Trade a refresh token for a new pair",
            accounts::refresh,
        ),
        route(
            "POST",
            "/auth/jwt/logout",
            "End the caller's session",
            accounts::logout,
        ),
        route(
            "GET",
            "/auth/sessions",
            "The caller's live sessions",
            accounts::sessions,
        ),
        route(
            "DELETE",
            "/auth/sessions/{sid}",
            "End one of the caller's sessions",
            accounts::end_session,
        ),
        route(
            "POST",
            "/auth/request-verify-token",
            "Mail a verification token (202 always)",
            accounts::request_verify_token,
        ),
        route(
            "POST",
            "/auth/verify",
            "Verify an e-mail address with its token",
            accounts::verify,
        ),
        route(
            "POST",
            "/auth/forgot-password",
            "Mail a password reset token (202 always)",
            accounts::forgot_password,
        ),
        route(
            "POST",
            "/auth/reset-password",
            "Set a new password with a reset token; ends every session",
            accounts::reset_password,
        ),
        route(
            "POST",
            "/auth/magic-link/request",
            "Mail a sign-in link (202 always)",
            accounts::request_magic_link,
        ),
        route(
            "POST",
            "/auth/magic-link/login",
            "Sign in with a magic-link token",
            accounts::magic_login,
        ),
        route(
            "GET",
            "/auth/api-keys/",
            "The caller's API keys (no secrets)",
            accounts::list_api_keys,
        ),
        route(
            "POST",
            "/auth/api-keys/",
            "Create an API key (its secret is shown once)",
            accounts::create_api_key,
        ),
        route(
            "DELETE",
            "/auth/api-keys/{key_id}",
            "Revoke an API key",
            accounts::revoke_api_key,
        ),
        route(
            "POST",
            "/mfa/totp/enroll",
            "Start TOTP enrolment: secret and otpauth URI",
            mfa::enroll,
        ),
        route(
            "POST",
            "/mfa/totp/verify",
            "Confirm enrolment, or complete a login challenge with a code",
            mfa::verify,
        ),
        route(
            "DELETE",
            "/mfa/totp",
            "Remove the caller's TOTP (needs a code)",
            mfa::disable,
        ),
        route(
            "GET",
            "/mfa/delegated/pending",
            "The caller's logins waiting for approval",
            mfa::pending,
        ),
        route(
            "POST",
            "/mfa/delegated/approve",
            "Approve or deny a waiting login",
            mfa::approve,
        ),
        route(
            "POST",
            "/mfa/delegated/complete",
            "The waiting login collects its tokens once approved",
            mfa::complete,
        ),
        route(
            "DELETE",
            "/users/{id}/mfa",
            "Admin: remove a user's second factor",
            mfa::admin_reset,
        ),
        route("GET", "/users/me", "The caller's profile", accounts::me),
        route(
            "GET",
            "/users",
            "Admin: users, paged, with ?q= search",
            users::list,
        ),
        route("GET", "/users/{id}", "Admin: one user", users::get),
        route(
            "PATCH",
            "/users/{id}",
            "Admin: change a user, flags included",
            users::update,
        ),
        route(
            "DELETE",
            "/users/{id}",
            "Admin: delete a user, its keys and sessions",
            users::delete,
        ),
        route(
            "GET",
            "/management/settings/",
            "Admin: the account settings in force",
            users::settings,
        ),
        route(
            "PATCH",
            "/management/settings/",
            "Admin: change account settings",
            users::update_settings,
        ),
        route(
            "POST",
            "/management/keys/rotate",
            "Admin: a new token signing key; old ones keep verifying",
            users::rotate_keys,
        ),
        route(
            "PATCH",
            "/users/me",
            "Change the caller's e-mail, password or name",
            accounts::update_me,
        ),
        route(
            "GET",
            "/.well-known/jwks.json",
            "Public keys that sign access tokens",
            accounts::jwks,
        ),
        route(
            "POST",
            "/auth/ldap/{directory}/login",
            "Sign in with an LDAP password",
            identity::ldap_login,
        ),
        route(
            "GET",
            "/auth/oauth/providers",
            "The configured OIDC providers",
            identity::providers,
        ),
        route(
            "GET",
            "/auth/oauth/{provider}/authorize",
            "Start an OIDC sign-in (redirects)",
            identity::authorize,
        ),
        route(
            "GET",
            "/auth/oauth/{provider}/callback",
            "Finish an OIDC sign-in and link the identity",
            identity::callback,
        ),
        route(
            "ANY",
            ext_authz_prefix,
            "Envoy ext_authz check of the path `/` (any method)",
            ext_authz::check,
        ),
        route(
            "ANY",
            &format!("{ext_authz_prefix}/{{*path}}"),
            "Envoy ext_authz check (any method; the prefix is configurable)",
            ext_authz::check,
        ),
        route(
            "POST",
            "/rbac/check",
            "Decide `{subject, object, action}`, as /v1/is_authorized does",
            rbac::check,
        ),
        route(
            "GET",
            "/rbac/policies",
            "Admin: every RBAC grant",
            rbac::list_grants,
        ),
        route(
            "POST",
            "/rbac/policies",
            "Admin: add a grant (compiled to the Cedar policy rbac/<id>)",
            rbac::add_grant,
        ),
        route(
            "DELETE",
            "/rbac/policies",
            "Admin: remove a grant",
            rbac::remove_grant,
        ),
        route(
            "POST",
            "/rbac/policies/bulk",
            "Admin: add or remove many grants, all or none",
            rbac::bulk,
        ),
        route(
            "GET",
            "/rbac/roles",
            "Admin: every role with its parents",
            rbac::list_roles,
        ),
        route("GET", "/rbac/roles/{id}", "Admin: one role", rbac::get_role),
        route(
            "PUT",
            "/rbac/roles/{id}",
            "Admin: create or replace a role and its parents",
            rbac::put_role,
        ),
        route(
            "DELETE",
            "/rbac/roles/{id}",
            "Admin: remove a role (?cascade=true: and what uses it)",
            rbac::delete_role,
        ),
        route(
            "GET",
            "/rbac/users/{id}/roles",
            "Admin: a principal's direct roles",
            rbac::user_roles,
        ),
        route(
            "POST",
            "/rbac/users/{id}/roles",
            "Admin: give a principal a role",
            rbac::assign_role,
        ),
        route(
            "DELETE",
            "/rbac/users/{id}/roles",
            "Admin: take a role from a principal",
            rbac::unassign_role,
        ),
        route(
            "GET",
            "/rbac/users/{id}/roles/implicit",
            "Admin: every role a principal has, with the path to it",
            rbac::implicit_roles,
        ),
        route(
            "GET",
            "/rbac/users/{id}/permissions",
            "Admin: every grant that applies to a principal",
            rbac::permissions,
        ),
        route(
            "POST",
            "/rbac/management/reload",
            "Admin: reload grants and policies from their sources",
            rbac::reload,
        ),
        route(
            "POST",
            "/rbac/management/reset",
            "Admin: remove every grant, role and assignment (backed up first)",
            rbac::reset,
        ),
        route(
            "GET",
            "/rbac/management/backups",
            "Admin: the backups taken by resets",
            rbac::backups,
        ),
        route(
            "POST",
            "/rbac/management/restore/{id}",
            "Admin: put back the grants, roles and assignments of a backup",
            rbac::restore,
        ),
        route(
            "GET",
            "/iam/service-accounts",
            "Admin: list service accounts",
            iam::list_service_accounts,
        ),
        route(
            "POST",
            "/iam/service-accounts",
            "Admin: create a service account owned by a user",
            iam::create_service_account,
        ),
        route(
            "GET",
            "/iam/service-accounts/{id}",
            "Admin: one service account",
            iam::get_service_account,
        ),
        route(
            "PATCH",
            "/iam/service-accounts/{id}",
            "Admin: rename, describe, disable or enable a service account",
            iam::update_service_account,
        ),
        route(
            "DELETE",
            "/iam/service-accounts/{id}",
            "Admin: delete a service account (?cascade=true takes its dependents)",
            iam::delete_service_account,
        ),
        route(
            "GET",
            "/iam/service-accounts/{id}/keys",
            "Admin: a service account's credentials (never their secrets)",
            iam::list_service_account_keys,
        ),
        route(
            "POST",
            "/iam/service-accounts/{id}/keys",
            "Admin: a new credential for a service account (its secret shown once)",
            iam::issue_service_account_key,
        ),
        route(
            "DELETE",
            "/iam/service-accounts/{id}/keys/{credential_id}",
            "Admin: revoke a service account's credential",
            iam::revoke_service_account_key,
        ),
        route(
            "POST",
            "/iam/service-accounts/{id}/rotate/{credential_id}",
            "Admin: a new secret; the old one works for the grace period",
            iam::rotate_service_account_key,
        ),
        route(
            "GET",
            "/iam/ai-agents",
            "Admin: list AI agents",
            iam::list_agents,
        ),
        route(
            "POST",
            "/iam/ai-agents",
            "Admin: create an AI agent bound to a provider and an owner",
            iam::create_agent,
        ),
        route(
            "GET",
            "/iam/ai-agents/{id}",
            "Admin: one AI agent",
            iam::get_agent,
        ),
        route(
            "PATCH",
            "/iam/ai-agents/{id}",
            "Admin: rename, describe, change the model of, disable or enable an agent",
            iam::update_agent,
        ),
        route(
            "DELETE",
            "/iam/ai-agents/{id}",
            "Admin: delete an AI agent",
            iam::delete_agent,
        ),
        route(
            "GET",
            "/iam/ai-agents/{id}/keys",
            "Admin: an agent's credentials (never their secrets)",
            iam::list_agent_keys,
        ),
        route(
            "POST",
            "/iam/ai-agents/{id}/keys",
            "Admin: a new credential for an agent (its secret shown once)",
            iam::issue_agent_key,
        ),
        route(
            "DELETE",
            "/iam/ai-agents/{id}/keys/{credential_id}",
            "Admin: revoke an agent's credential",
            iam::revoke_agent_key,
        ),
        route(
            "POST",
            "/iam/ai-agents/{id}/rotate/{credential_id}",
            "Admin: a new secret for an agent; the old one works for the grace period",
            iam::rotate_agent_key,
        ),
        route(
            "GET",
            "/iam/ai-providers",
            "Admin: list AI providers",
            iam::list_providers,
        ),
        route(
            "POST",
            "/iam/ai-providers",
            "Admin: record an AI provider (no secrets)",
            iam::create_provider,
        ),
        route(
            "GET",
            "/iam/ai-providers/{id}",
            "Admin: one AI provider",
            iam::get_provider,
        ),
        route(
            "DELETE",
            "/iam/ai-providers/{id}",
            "Admin: delete an AI provider (?cascade=true takes its agents)",
            iam::delete_provider,
        ),
        route(
            "POST",
            "/iam/graph/link",
            "Admin: add a member-of, owned-by or delegates-to edge (cycles refused)",
            iam::link,
        ),
        route(
            "DELETE",
            "/iam/graph/link",
            "Admin: remove an edge",
            iam::unlink,
        ),
        route(
            "GET",
            "/iam/graph/{id}/memberships",
            "Admin: everything an identity is in, with the path to each",
            iam::memberships,
        ),
        route(
            "GET",
            "/iam/graph/{id}/dependents",
            "Admin: who is affected if an identity is disabled or deleted",
            iam::dependents,
        ),
        route(
            "POST",
            "/iam/recovery/backup",
            "Admin: back up every namespace of the active store",
            recovery::backup,
        ),
        route(
            "GET",
            "/iam/recovery/backups",
            "Admin: the backups, newest first",
            recovery::backups,
        ),
        route(
            "POST",
            "/iam/recovery/restore/{backup_id}",
            "Admin: replace the active store's contents with a backup (checked first, all or nothing)",
            recovery::restore,
        ),
        route(
            "GET",
            "/iam/recovery/config",
            "Admin: the recovery settings in force (backup location, sealing, schedule, retention, journal retention)",
            recovery::config,
        ),
        route(
            "PATCH",
            "/iam/recovery/config",
            "Admin: change recovery settings; checked, stored, in force at once",
            recovery::update_config,
        ),
        route(
            "GET",
            "/iam/recovery/changes",
            "Admin: the change journal, newest first (filter by actor, key, time)",
            changes::list,
        ),
        route(
            "POST",
            "/iam/recovery/rollback/{change_id}",
            "Admin: revert one change (and, with cascade=true, the later ones touching its keys)",
            changes::rollback,
        ),
        route(
            "POST",
            "/iam/sync/run",
            "Admin: import users and groups from the LDAP directories (full or changed since the last sync)",
            sync::run,
        ),
        route(
            "GET",
            "/iam/sync/runs",
            "Admin: the reports of recent syncs, newest first",
            sync::runs,
        ),
        route(
            "GET",
            "/openapi.json",
            "This API as an OpenAPI 3.1 document",
            openapi::document,
        ),
    ]
}

pub fn router(state: Arc<AppState>) -> Router {
    // Methods of one path are merged into one method router.
    let mut by_path: BTreeMap<String, MethodRouter<Arc<AppState>>> = BTreeMap::new();
    for route in routes(&state.ext_authz.prefix) {
        let merged = match by_path.remove(&route.path) {
            Some(existing) => existing.merge(route.handler),
            None => route.handler,
        };
        by_path.insert(route.path, merged);
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(&path, handler);
    }
    router
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(format!("{} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// One span and one metrics sample per request, labelled by route template
/// (never the raw path, so labels stay bounded).
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    // DEBUG, as tower-http's default: at the default `info` filter the span
    // costs next to nothing, and `log.level = "portcullis=debug"` shows it.
    let span = tracing::debug_span!("request", %method, route, status = tracing::field::Empty);
    // Writes name their route in the change journal; decisions and reads
    // write nothing, and skip the context.
    let writes =
        !matches!(method, Method::GET | Method::HEAD) && !decides(route, &state.ext_authz.prefix);
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let mut response = if let Some(over) = headers_over(req.headers(), &state.limits) {
        span.in_scope(|| tracing::debug!(%over, "Request headers refused."));
        axum::response::IntoResponse::into_response(ApiError::HeadersTooLarge(over))
    } else if writes {
        let context = journal::Context::new(format!("{method} {route}"), None);
        last_resort(journal::within(
            context,
            next.run(req).instrument(span.clone()),
        ))
        .await
    } else {
        last_resort(next.run(req).instrument(span.clone())).await
    };
    let status = response.status().as_u16();
    span.record("status", status);
    // Refused credentials and access are security events (ASVS 7.1.3);
    // decisions are not, and go to the decision log instead.
    if matches!(status, 401 | 403) && !decides(route, &state.ext_authz.prefix) {
        tracing::warn!(%method, route, status, peer = ?peer, "Access refused.");
    }
    // Answers carry tokens, keys and profiles: no cache keeps them (ASVS
    // 8.1.1). A route that may be cached says so itself.
    response
        .headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    state.metrics.observe_http(
        route,
        method.as_str(),
        status,
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Whether `route` is a decision, whose denials are answers, not events.
fn decides(route: &str, ext_authz_prefix: &str) -> bool {
    route.starts_with("/v1/is_authorized") || route.starts_with(ext_authz_prefix)
}

/// A handler's panic as a 500 in the error shape (ASVS 7.4.3): the
/// connection and its other requests live on. The panic hook has logged it.
async fn last_resort(handler: impl std::future::Future<Output = Response>) -> Response {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(handler).catch_unwind().await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::Internal(
            "a handler panicked".into(),
        )),
    }
}

/// What is over the limits in `headers`, if anything.
fn headers_over(headers: &axum::http::HeaderMap, limits: &RequestLimits) -> Option<String> {
    if headers.len() > limits.headers {
        return Some(format!(
            "{} headers, at most {}",
            headers.len(),
            limits.headers
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (bytes > limits.header_bytes)
        .then(|| format!("{bytes} bytes of headers, at most {}", limits.header_bytes))
}

/// `(method, path)` of every route the router serves, for metrics.
pub fn served_routes(ext_authz_prefix: &str) -> Vec<(&'static str, String)> {
    routes(ext_authz_prefix)
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_error_shape() {
        let response = last_resort(async { panic!("a handler's bug") }).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "INTERNAL");
        // A handler that does not panic is answered as it answers.
        let fine = last_resort(async { StatusCode::IM_A_TEAPOT.into_response() }).await;
        assert_eq!(fine.status(), StatusCode::IM_A_TEAPOT);
    }
}
