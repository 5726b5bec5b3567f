//! The HTTP API: axum routing served by hyper (HTTP/1.1 and h2c), request
//! spans and metrics, JSON errors.
//!
//! Routes (also served by `GET /discovery`, from [`ROUTES`]):
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
mod decisions;
mod entities;
mod error;
mod ext_authz;
mod identity;
mod mfa;
mod ops;
mod policies;
mod schema;
mod storage;
mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use tracing::Instrument;

pub use error::ApiError;

use crate::backends::Registry;
use crate::config::{ExtAuthzConfig, Secret};
use crate::services::{Accounts, Catalog, Identities};
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
    pub registry: Arc<Registry>,
    pub identities: Arc<Identities>,
    pub accounts: Arc<Accounts>,
    pub ext_authz: Arc<ExtAuthzConfig>,
    pub decision_log: Arc<DecisionLog>,
}

/// `(method, path, description)` of every route, for `/discovery`.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/is_authorized", "Decide one request"),
    (
        "POST",
        "/v1/is_authorized/batch",
        "Decide many requests, answers in order",
    ),
    ("GET", "/v1/policies", "List application policies"),
    ("POST", "/v1/policies", "Create a policy"),
    ("PUT", "/v1/policies", "Replace all API policies"),
    ("GET", "/v1/policies/{id}", "Get one policy"),
    ("PUT", "/v1/policies/{id}", "Create or replace one policy"),
    ("DELETE", "/v1/policies/{id}", "Delete one policy"),
    (
        "POST",
        "/v1/policies/reload",
        "Reload the policy directory and stored policies",
    ),
    ("GET", "/v1/entities", "List stored entities"),
    ("PUT", "/v1/entities", "Replace all stored entities"),
    (
        "PATCH",
        "/v1/entities",
        "Create or replace the given entities",
    ),
    ("DELETE", "/v1/entities", "Remove all stored entities"),
    ("DELETE", "/v1/entities/{type}/{id}", "Remove one entity"),
    ("GET", "/v1/data", "cedar-agent alias of GET /v1/entities"),
    ("PUT", "/v1/data", "cedar-agent alias of PUT /v1/entities"),
    ("PATCH", "/v1/data", "Alias of PATCH /v1/entities"),
    (
        "DELETE",
        "/v1/data",
        "cedar-agent alias of DELETE /v1/entities",
    ),
    ("GET", "/v1/schema", "Get the application schema"),
    ("PUT", "/v1/schema", "Set the application schema"),
    ("DELETE", "/v1/schema", "Remove the application schema"),
    ("GET", "/health", "Liveness and store status"),
    (
        "GET",
        "/",
        "cedar-agent's health route: the same as /health",
    ),
    (
        "GET",
        "/v1",
        "cedar-agent's health route: the same as /health",
    ),
    ("GET", "/ready", "Readiness"),
    (
        "GET",
        "/ext_authz/{*path}",
        "Envoy ext_authz check (any method; the prefix is configurable)",
    ),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/discovery", "Version, features and routes"),
    (
        "GET",
        "/storage/backends",
        "Admin: every backend with its kind, role, health and breaker",
    ),
    (
        "POST",
        "/storage/switch/{backend}",
        "Admin: make another store the active one, losing nothing",
    ),
    (
        "GET",
        "/storage/{namespace}",
        "Admin: keys of a namespace, paged",
    ),
    (
        "GET",
        "/storage/{namespace}/{key}",
        "Admin: one stored value (ETag = version)",
    ),
    (
        "POST",
        "/storage/{namespace}/{key}",
        "Admin: store a value (If-Match, If-None-Match)",
    ),
    (
        "DELETE",
        "/storage/{namespace}/{key}",
        "Admin: remove a value (If-Match)",
    ),
    ("POST", "/auth/register", "Create an account"),
    (
        "POST",
        "/auth/jwt/login",
        "Password login (OAuth2 form or JSON): access and refresh tokens",
    ),
    (
        "POST",
        "/auth/jwt/refresh",
        "Trade a refresh token for a new pair",
    ),
    ("POST", "/auth/jwt/logout", "End the caller's session"),
    (
        "POST",
        "/auth/request-verify-token",
        "Mail a verification token (202 always)",
    ),
    (
        "POST",
        "/auth/verify",
        "Verify an e-mail address with its token",
    ),
    (
        "POST",
        "/auth/forgot-password",
        "Mail a password reset token (202 always)",
    ),
    (
        "POST",
        "/auth/reset-password",
        "Set a new password with a reset token; ends every session",
    ),
    (
        "POST",
        "/auth/magic-link/request",
        "Mail a sign-in link (202 always)",
    ),
    (
        "POST",
        "/auth/magic-link/login",
        "Sign in with a magic-link token",
    ),
    (
        "GET",
        "/auth/api-keys/",
        "The caller's API keys (no secrets)",
    ),
    (
        "POST",
        "/auth/api-keys/",
        "Create an API key (its secret is shown once)",
    ),
    ("DELETE", "/auth/api-keys/{key_id}", "Revoke an API key"),
    (
        "POST",
        "/mfa/totp/enroll",
        "Start TOTP enrolment: secret and otpauth URI",
    ),
    (
        "POST",
        "/mfa/totp/verify",
        "Confirm enrolment, or complete a login challenge with a code",
    ),
    (
        "DELETE",
        "/mfa/totp",
        "Remove the caller's TOTP (needs a code)",
    ),
    (
        "GET",
        "/mfa/delegated/pending",
        "The caller's logins waiting for approval",
    ),
    (
        "POST",
        "/mfa/delegated/approve",
        "Approve or deny a waiting login",
    ),
    (
        "POST",
        "/mfa/delegated/complete",
        "The waiting login collects its tokens once approved",
    ),
    (
        "DELETE",
        "/users/{id}/mfa",
        "Admin: remove a user's second factor",
    ),
    ("GET", "/users/me", "The caller's profile"),
    ("GET", "/users", "Admin: users, paged, with ?q= search"),
    ("GET", "/users/{id}", "Admin: one user"),
    (
        "PATCH",
        "/users/{id}",
        "Admin: change a user, flags included",
    ),
    (
        "DELETE",
        "/users/{id}",
        "Admin: delete a user, its keys and sessions",
    ),
    (
        "GET",
        "/management/settings/",
        "Admin: the account settings in force",
    ),
    (
        "PATCH",
        "/management/settings/",
        "Admin: change account settings",
    ),
    (
        "POST",
        "/management/keys/rotate",
        "Admin: a new token signing key; old ones keep verifying",
    ),
    (
        "PATCH",
        "/users/me",
        "Change the caller's e-mail, password or name",
    ),
    (
        "GET",
        "/.well-known/jwks.json",
        "Public keys that sign access tokens",
    ),
    (
        "POST",
        "/auth/ldap/{directory}/login",
        "Sign in with an LDAP password",
    ),
    (
        "GET",
        "/auth/oauth/providers",
        "The configured OIDC providers",
    ),
    (
        "GET",
        "/auth/oauth/{provider}/authorize",
        "Start an OIDC sign-in (redirects)",
    ),
    (
        "GET",
        "/auth/oauth/{provider}/callback",
        "Finish an OIDC sign-in and link the identity",
    ),
];

pub fn router(state: Arc<AppState>) -> Router {
    let prefix = state.ext_authz.prefix.clone();
    let entities = get(entities::list)
        .put(entities::replace)
        .patch(entities::upsert)
        .delete(entities::clear);
    Router::new()
        .route("/v1/is_authorized", post(decisions::is_authorized))
        .route(
            "/v1/is_authorized/batch",
            post(decisions::is_authorized_batch),
        )
        .route(
            "/v1/policies",
            get(policies::list)
                .post(policies::create)
                .put(policies::replace_all),
        )
        .route("/v1/policies/reload", post(policies::reload))
        .route(
            "/v1/policies/{id}",
            get(policies::get)
                .put(policies::upsert)
                .delete(policies::delete),
        )
        .route("/v1/entities", entities.clone())
        .route("/v1/data", entities)
        .route(
            "/v1/entities/{type}/{id}",
            axum::routing::delete(entities::delete_one),
        )
        .route(
            "/v1/schema",
            get(schema::get).put(schema::put).delete(schema::delete),
        )
        .route("/", get(ops::health))
        .route("/v1", get(ops::health))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/discovery", get(ops::discovery))
        .route("/storage/backends", get(storage::backends))
        .route("/storage/switch/{backend}", post(storage::switch))
        .route("/storage/{namespace}", get(storage::list))
        .route(
            "/storage/{namespace}/{key}",
            get(storage::get).post(storage::put).delete(storage::delete),
        )
        .route("/auth/register", post(accounts::register))
        .route("/auth/jwt/login", post(accounts::login))
        .route("/auth/jwt/refresh", post(accounts::refresh))
        .route("/auth/jwt/logout", post(accounts::logout))
        .route(
            "/auth/request-verify-token",
            post(accounts::request_verify_token),
        )
        .route("/auth/verify", post(accounts::verify))
        .route("/auth/forgot-password", post(accounts::forgot_password))
        .route("/auth/reset-password", post(accounts::reset_password))
        .route(
            "/auth/magic-link/request",
            post(accounts::request_magic_link),
        )
        .route("/auth/magic-link/login", post(accounts::magic_login))
        .route(
            "/auth/api-keys/",
            get(accounts::list_api_keys).post(accounts::create_api_key),
        )
        .route(
            "/auth/api-keys/{key_id}",
            axum::routing::delete(accounts::revoke_api_key),
        )
        .route("/mfa/totp/enroll", post(mfa::enroll))
        .route("/mfa/totp/verify", post(mfa::verify))
        .route("/mfa/totp", axum::routing::delete(mfa::disable))
        .route("/mfa/delegated/pending", get(mfa::pending))
        .route("/mfa/delegated/approve", post(mfa::approve))
        .route("/mfa/delegated/complete", post(mfa::complete))
        .route("/users/{id}/mfa", axum::routing::delete(mfa::admin_reset))
        .route("/users/me", get(accounts::me).patch(accounts::update_me))
        .route("/users", get(users::list))
        .route(
            "/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route(
            "/management/settings/",
            get(users::settings).patch(users::update_settings),
        )
        .route("/management/keys/rotate", post(users::rotate_keys))
        .route("/.well-known/jwks.json", get(accounts::jwks))
        .route("/auth/ldap/{directory}/login", post(identity::ldap_login))
        .route("/auth/oauth/providers", get(identity::providers))
        .route("/auth/oauth/{provider}/authorize", get(identity::authorize))
        .route("/auth/oauth/{provider}/callback", get(identity::callback))
        .route(&prefix, any(ext_authz::check))
        .route(&format!("{prefix}/{{*path}}"), any(ext_authz::check))
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
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    state.metrics.observe_http(
        route,
        method.as_str(),
        status,
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `(method, path)` of every route the router serves, for metrics.
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect()
}
