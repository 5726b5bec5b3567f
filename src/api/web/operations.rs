//! The admin console's operations pages, each allowed as its API area:
//!
//! - `/admin/policies` (`v1`): every policy with its source, file and line;
//!   "validate and reload" reads the policy files again, and a set that
//!   does not validate is refused with its diagnostics (file:line:column)
//!   while the running one stays;
//! - `/admin/backends` (`storage`): each backend's health, breaker and
//!   counts, the active store, and a switch that asks for confirmation;
//! - `/admin/recovery` (`iam`): sync runs (run one), backups (take one,
//!   restore one after confirmation);
//! - `/admin/journal` (`iam`): the change journal, with rollback after
//!   confirmation;
//! - `/admin/settings` (`management`): the account settings.
//!
//! The work is the API's own (`api::policies`, `api::storage`, …); these
//! pages only show it.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::admin::{AdminForm, Said, reader};
use super::{CsrfForm, page, utc};
use crate::api::{ApiError, AppState};
use crate::authz::{AuthzError, PolicyOrigin};
use crate::services::{ChangeQuery, ServiceError, SyncRequest, WebSession};

/// `Ok(text)` as a notice; a refusal the admin can act on (a 4xx) as an
/// error beside the form; anything else is the request's error.
fn said(result: Result<String, ApiError>) -> Result<Said, ApiError> {
    match result {
        Ok(text) => Ok(Said::done(text)),
        Err(e) if e.status_and_code().0.is_client_error() => Ok(Said::failed(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Whether a confirmation form was sent (`confirmed=yes`).
#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf: Option<String>,
    #[serde(default)]
    confirmed: String,
}

csrf_field!(ConfirmForm);

impl ConfirmForm {
    fn confirmed(&self) -> bool {
        self.confirmed == "yes"
    }
}

struct PolicyRow {
    id: String,
    place: String,
    text: String,
}

#[derive(Template)]
#[template(path = "admin_policies.html", config = "src/api/web/askama.toml")]
struct PoliciesPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    generation: u64,
    policies: Vec<PolicyRow>,
    diagnostics: Vec<String>,
}

fn render_policies(
    state: &AppState,
    session: &WebSession,
    said: Said,
    diagnostics: Vec<String>,
) -> Response {
    let engine = state.catalog.engine();
    let snapshot = engine.policies();
    let policies = snapshot
        .policies
        .iter()
        .map(|p| PolicyRow {
            id: p.id.clone(),
            place: match (&p.source, p.line) {
                (PolicyOrigin::File { path }, Some(line)) => format!("{path}:{line}"),
                (PolicyOrigin::File { path }, None) => path.clone(),
                (PolicyOrigin::Api, _) => "API".into(),
                (PolicyOrigin::Builtin, _) => "built in".into(),
                (PolicyOrigin::Rbac, _) => "RBAC grant".into(),
            },
            text: p.content.clone(),
        })
        .collect();
    let view = PoliciesPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        generation: snapshot.generation,
        policies,
        diagnostics,
    };
    page(said.status(), view.render())
}

pub async fn policies(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "v1").await? {
        Ok(session) => Ok(render_policies(
            &state,
            &session,
            Said::default(),
            Vec::new(),
        )),
        Err(answer) => Ok(answer),
    }
}

/// `POST /admin/policies/reload`: validates the policy files and stored
/// policies and, when they pass, serves them.
pub async fn reload_policies(
    State(state): State<Arc<AppState>>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let (said, diagnostics) = match crate::api::policies::reload_policies(&state).await {
        Ok(snapshot) => {
            let text = format!(
                "The policies are valid and served: {} of them, generation {}.",
                snapshot.policies.len(),
                snapshot.generation
            );
            (Said::done(text), Vec::new())
        }
        Err(ServiceError::Authz(AuthzError::PoliciesInvalid(found))) => (
            Said::failed("The policies do not validate; the running set stays."),
            found.iter().map(ToString::to_string).collect(),
        ),
        Err(ServiceError::Authz(e)) => (Said::failed(e.to_string()), Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(render_policies(&state, &session, said, diagnostics))
}

#[derive(Template)]
#[template(path = "admin_backends.html", config = "src/api/web/askama.toml")]
struct BackendsPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    backends: Vec<crate::backends::BackendStatus>,
    /// The switch waiting for its confirmation.
    confirm: Option<&'a str>,
}

async fn render_backends(
    state: &AppState,
    session: &WebSession,
    said: Said,
    confirm: Option<&str>,
) -> Response {
    let view = BackendsPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        backends: state.registry.backends().await,
        confirm,
    };
    page(said.status(), view.render())
}

pub async fn backends(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "storage").await? {
        Ok(session) => Ok(render_backends(&state, &session, Said::default(), None).await),
        Err(answer) => Ok(answer),
    }
}

/// `POST /admin/backends/{name}/switch`: first asks, then (`confirmed=yes`)
/// copies everything to `name` and makes it the active store.
pub async fn switch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    AdminForm { session, form }: AdminForm<ConfirmForm>,
) -> Result<Response, ApiError> {
    if !form.confirmed() {
        return Ok(render_backends(&state, &session, Said::default(), Some(&name)).await);
    }
    let result = crate::api::storage::switch_store(&state, &name)
        .await
        .map(|report| {
            tracing::info!(from = %report.from, to = %report.to, keys = report.keys, "Store switched (console).");
            format!(
                "The active store is now {}: {} keys copied from {} in {} ms.",
                report.to, report.keys, report.from, report.duration_ms
            )
        });
    let said = said(result)?;
    Ok(render_backends(&state, &session, said, None).await)
}

struct BackupRow {
    id: String,
    label: String,
    made: String,
    store: String,
    size: u64,
    keys: usize,
}

struct RunRow {
    started: String,
    directories: String,
    status: String,
    counts: String,
    errors: String,
}

#[derive(Template)]
#[template(path = "admin_recovery.html", config = "src/api/web/askama.toml")]
struct RecoveryPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    backups: Vec<BackupRow>,
    runs: Vec<RunRow>,
    confirm: Option<&'a str>,
}

async fn render_recovery(
    state: &AppState,
    session: &WebSession,
    said: Said,
    confirm: Option<&str>,
) -> Result<Response, ApiError> {
    // Newest first, as `Recovery::list` gives them.
    let backups = crate::api::recovery::recovery(state)
        .await?
        .list()?
        .into_iter()
        .map(|m| BackupRow {
            keys: m.namespaces.values().sum(),
            id: m.id,
            label: m.label.unwrap_or_default(),
            made: utc(m.created),
            store: m.store,
            size: m.size,
        })
        .collect();
    let runs = crate::api::sync::federation(state)
        .runs(20)
        .await?
        .into_iter()
        .map(|r| RunRow {
            started: utc(r.started),
            directories: r.directories.join(", "),
            counts: format!(
                "{} created, {} updated, {} disabled, {} removed, {} unchanged",
                r.created, r.updated, r.disabled, r.removed, r.unchanged
            ),
            errors: r.errors.join("; "),
            status: if r.dry_run {
                format!("{} (dry run)", r.status)
            } else {
                r.status
            },
        })
        .collect();
    let view = RecoveryPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        backups,
        runs,
        confirm,
    };
    Ok(page(said.status(), view.render()))
}

pub async fn recovery(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "iam").await? {
        Ok(session) => render_recovery(&state, &session, Said::default(), None).await,
        Err(answer) => Ok(answer),
    }
}

/// `POST /admin/recovery/sync`: syncs every LDAP directory now.
pub async fn run_sync(
    State(state): State<Arc<AppState>>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Result<Response, ApiError> {
    let result = crate::api::sync::federation(&state)
        .run(&SyncRequest::default(), "console")
        .await
        .map(|r| {
            format!(
                "Sync {}: {} created, {} updated, {} disabled.",
                r.status, r.created, r.updated, r.disabled
            )
        })
        .map_err(ApiError::from);
    let said = said(result)?;
    render_recovery(&state, &session, said, None).await
}

#[derive(Deserialize)]
pub struct BackupForm {
    csrf: Option<String>,
    #[serde(default)]
    label: String,
}

csrf_field!(BackupForm);

/// `POST /admin/recovery/backups`: takes a backup now.
pub async fn backup(
    State(state): State<Arc<AppState>>,
    AdminForm { session, form }: AdminForm<BackupForm>,
) -> Result<Response, ApiError> {
    let label = Some(form.label.trim().to_owned()).filter(|l| !l.is_empty());
    let result = match crate::api::recovery::recovery(&state).await {
        Ok(recovery) => recovery
            .backup(label)
            .await
            .map(|m| format!("Backup {} taken: {} bytes.", m.id, m.size))
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let said = said(result)?;
    render_recovery(&state, &session, said, None).await
}

/// `POST /admin/recovery/backups/{id}/restore`: first asks, then
/// (`confirmed=yes`) replaces the active store's contents with the backup
/// (itself backed up first).
pub async fn restore(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<ConfirmForm>,
) -> Result<Response, ApiError> {
    if !form.confirmed() {
        return render_recovery(&state, &session, Said::default(), Some(&id)).await;
    }
    let result = match crate::api::recovery::recovery(&state).await {
        Ok(recovery) => recovery
            .restore(&id)
            .await
            .map(|r| {
                tracing::info!(backup = %id, keys = r.keys, "Backup restored (console).");
                format!(
                    "Backup {} restored: {} keys, in {} ms. What it replaced is backup {}.",
                    r.restored.id, r.keys, r.duration_ms, r.previous_backup
                )
            })
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let said = said(result)?;
    render_recovery(&state, &session, said, None).await
}

struct ChangeRow {
    id: String,
    time: String,
    actor: String,
    source: String,
    keys: String,
    complete: bool,
}

#[derive(Template)]
#[template(path = "admin_journal.html", config = "src/api/web/askama.toml")]
struct JournalPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    changes: Vec<ChangeRow>,
    confirm: Option<&'a str>,
}

async fn render_journal(
    state: &AppState,
    session: &WebSession,
    said: Said,
    confirm: Option<&str>,
) -> Result<Response, ApiError> {
    let store = state.registry.store();
    let query = ChangeQuery {
        limit: Some(50),
        ..ChangeQuery::default()
    };
    let changes = crate::services::list_changes(store.as_ref(), &query)
        .await?
        .changes
        .into_iter()
        .map(|c| ChangeRow {
            time: utc(c.time),
            keys: c.keys.join(", "),
            id: c.id,
            actor: c.actor,
            source: c.source,
            complete: c.complete,
        })
        .collect();
    let view = JournalPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        changes,
        confirm,
    };
    Ok(page(said.status(), view.render()))
}

pub async fn journal(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "iam").await? {
        Ok(session) => render_journal(&state, &session, Said::default(), None).await,
        Err(answer) => Ok(answer),
    }
}

/// `POST /admin/journal/{id}/rollback`: first asks, then (`confirmed=yes`)
/// puts back what the change replaced, with any later change to the same
/// keys.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<ConfirmForm>,
) -> Result<Response, ApiError> {
    if !form.confirmed() {
        return render_journal(&state, &session, Said::default(), Some(&id)).await;
    }
    let result = crate::api::changes::roll_back(&state, &id, true)
        .await
        .map(|done| {
            tracing::info!(change = %id, reverted = done.reverted.len(), "Change rolled back (console).");
            format!(
                "Rolled back: {} change(s) reverted.",
                done.reverted.len()
            )
        });
    let said = said(result)?;
    render_journal(&state, &session, said, None).await
}

struct SettingRow {
    key: String,
    value: String,
    flag: bool,
    on: bool,
    fixed: bool,
}

#[derive(Template)]
#[template(path = "admin_settings.html", config = "src/api/web/askama.toml")]
struct SettingsPage<'a> {
    csrf: &'a str,
    signed_in: Option<&'a str>,
    admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    settings: Vec<SettingRow>,
}

/// Settings the config file alone sets (changing them would end every
/// session).
const FIXED_SETTINGS: [&str; 2] = ["issuer", "audience"];

fn render_settings(state: &AppState, session: &WebSession, said: Said) -> Response {
    let current = serde_json::to_value(&*state.accounts.settings()).unwrap_or_default();
    let settings = current
        .as_object()
        .map(|all| {
            all.iter()
                .map(|(key, value)| SettingRow {
                    key: key.clone(),
                    value: value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                    flag: value.is_boolean(),
                    on: value.as_bool().unwrap_or(false),
                    fixed: FIXED_SETTINGS.contains(&key.as_str()),
                })
                .collect()
        })
        .unwrap_or_default();
    let view = SettingsPage {
        csrf: &session.csrf,
        signed_in: Some(session.me.user.email.as_str()),
        admin: true,
        notice: said.notice.as_deref(),
        error: said.error.as_deref(),
        settings,
    };
    page(said.status(), view.render())
}

pub async fn settings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match reader(&state, &headers, "management").await? {
        Ok(session) => Ok(render_settings(&state, &session, Said::default())),
        Err(answer) => Ok(answer),
    }
}

#[derive(Deserialize)]
pub struct SettingsForm {
    csrf: Option<String>,
    #[serde(flatten)]
    fields: BTreeMap<String, String>,
}

csrf_field!(SettingsForm);

/// `POST /admin/settings`: the changed settings, typed as the current ones
/// are (a checkbox left out is `false`), through the API's validation.
pub async fn save_settings(
    State(state): State<Arc<AppState>>,
    AdminForm { session, form }: AdminForm<SettingsForm>,
) -> Result<Response, ApiError> {
    let current = serde_json::to_value(&*state.accounts.settings()).unwrap_or_default();
    let mut changes = serde_json::Map::new();
    for (key, value) in current.as_object().into_iter().flatten() {
        if FIXED_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        let sent = form.fields.get(key).map(|v| v.trim());
        let next = match value {
            serde_json::Value::Bool(_) => serde_json::Value::Bool(sent.is_some()),
            serde_json::Value::Number(_) => match sent.map(str::parse::<u64>) {
                Some(Ok(number)) => number.into(),
                Some(Err(_)) => {
                    let said = Said::failed(format!("`{key}` must be a whole number."));
                    return Ok(render_settings(&state, &session, said));
                }
                None => continue,
            },
            _ => match sent {
                Some(text) => serde_json::Value::String(text.to_owned()),
                None => continue,
            },
        };
        if &next != value {
            changes.insert(key.clone(), next);
        }
    }
    let result = state
        .accounts
        .update_settings(&serde_json::Value::Object(changes))
        .await
        .map(|_| "The settings are saved.".to_owned())
        .map_err(ApiError::from);
    let said = said(result)?;
    Ok(render_settings(&state, &session, said))
}
