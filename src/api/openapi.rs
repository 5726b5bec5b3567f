//! `GET /openapi.json`: this API as an OpenAPI 3.1 document, generated from
//! the route table (so no route can be missing from it), with the bodies of
//! the main routes described and the error shape every route shares.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::{AppState, routes};

pub async fn document(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(build(&state.ext_authz.prefix))
}

/// Methods an `ANY` route is listed under.
const ANY: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub fn build(ext_authz_prefix: &str) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in routes(ext_authz_prefix) {
        let path = route.path.replace("{*", "{");
        let methods: Vec<String> = match route.method {
            "ANY" => ANY.iter().map(|m| (*m).to_owned()).collect(),
            other => vec![other.to_ascii_lowercase()],
        };
        for method in methods {
            let operation = operation(&method, &route.path, route.about);
            let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
            entry[method] = operation;
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A Cedar policy decision point that runs beside your services; cedar-agent's API plus accounts, directories and Envoy ext_authz.",
        },
        "paths": paths,
        "components": components(),
    })
}

fn operation(method: &str, template: &str, about: &str) -> Value {
    let parameters: Vec<Value> = template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name.trim_start_matches('*'), "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    let (request, response) = bodies(method, template);
    let mut responses = Map::new();
    let (statuses, schema) = response;
    let mut ok = json!({"description": "success"});
    if let Some(schema) = schema {
        let media = if template == "/metrics" {
            "text/plain"
        } else {
            "application/json"
        };
        ok["content"] = json!({media: {"schema": schema}});
    }
    // `200|201`: a route that answers either (updated or created).
    for status in statuses.split('|') {
        let mut answer = ok.clone();
        if status == "204" {
            answer.as_object_mut().map(|o| o.remove("content"));
        }
        responses.insert(status.to_owned(), answer);
    }
    responses.insert(
        "default".into(),
        json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
    );
    let mut op = json!({
        "summary": about,
        "operationId": format!("{method}{}", template.replace(['/', '{', '}', '*', '.', '-'], "_")),
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(schema) = request {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    op
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The request and success response schemas of the routes that have them.
/// The success status may name several (`200|201`); a 204 has no body.
fn bodies(method: &str, template: &str) -> (Option<Value>, (&'static str, Option<Value>)) {
    let object = json!({"type": "object"});
    match (method, template) {
        ("post", "/v1/is_authorized") => (
            Some(schema_ref("DecisionRequest")),
            ("200", Some(schema_ref("Decision"))),
        ),
        ("post", "/v1/is_authorized/batch") => (
            Some(
                json!({"type": "object", "required": ["requests"], "properties": {"requests": {"type": "array", "items": schema_ref("DecisionRequest")}}}),
            ),
            (
                "200",
                Some(
                    json!({"type": "object", "properties": {"results": {"type": "array", "items": {"oneOf": [schema_ref("Decision"), schema_ref("Error")]}}}}),
                ),
            ),
        ),
        ("post", "/auth/register") => (
            Some(
                json!({"type": "object", "required": ["email", "password"], "properties": {"email": {"type": "string"}, "password": {"type": "string"}, "name": {"type": "string"}}}),
            ),
            ("201", Some(schema_ref("User"))),
        ),
        ("post", "/auth/jwt/login") => (
            Some(
                json!({"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}),
            ),
            ("200", Some(schema_ref("TokenPair"))),
        ),
        ("post", "/auth/jwt/refresh") => (
            Some(
                json!({"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}}),
            ),
            ("200", Some(schema_ref("TokenPair"))),
        ),
        ("get", "/users/me")
        | ("patch", "/users/me")
        | ("get", "/users/{id}")
        | ("patch", "/users/{id}") => (
            (method == "patch").then(|| object.clone()),
            ("200", Some(schema_ref("User"))),
        ),
        ("post", "/auth/request-verify-token")
        | ("post", "/auth/forgot-password")
        | ("post", "/auth/magic-link/request") => (
            Some(
                json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            ),
            ("202", None),
        ),
        ("get", "/auth/sessions") => (
            None,
            (
                "200",
                Some(json!({"type": "array", "items": {"type": "object",
                    "required": ["id", "created_at", "expires_at", "current"], "properties": {
                    "id": {"type": "string"}, "created_at": {"type": "integer"},
                    "expires_at": {"type": "integer"}, "current": {"type": "boolean"}}}})),
            ),
        ),
        ("delete", "/auth/sessions/{sid}" | "/storage/{namespace}/{key}") => (None, ("204", None)),
        ("post", "/storage/{namespace}/{key}") => (
            Some(json!({"description": "any bytes, stored as sent"})),
            (
                "200|201",
                Some(json!({"type": "object", "required": ["namespace", "key", "version"], "properties": {
                    "namespace": {"type": "string"}, "key": {"type": "string"},
                    "version": {"type": "integer"}}})),
            ),
        ),
        ("post", "/auth/jwt/logout")
        | ("delete", "/auth/api-keys/{key_id}")
        | ("delete", "/users/{id}")
        | ("delete", "/users/{id}/mfa")
        | ("delete", "/mfa/totp")
        | ("post", "/mfa/delegated/approve") => (
            (method != "delete" || template == "/mfa/totp").then(|| object.clone()),
            ("204", None),
        ),
        ("get", "/auth/api-keys/") => (
            None,
            ("200", Some(json!({"type": "array", "items": schema_ref("ApiKey")}))),
        ),
        ("post", "/auth/api-keys/") => (
            Some(
                json!({"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "expires_in_days": {"type": "integer", "minimum": 1},
                    "current_password": {"type": "string", "description": "required from a signed-in session"},
                    "scopes": {"type": "array", "items": {"enum": ["decide", "profile", "keys", "admin"]}}}}),
            ),
            (
                "201",
                Some(json!({"allOf": [schema_ref("ApiKey"), {
                    "type": "object", "required": ["api_key"],
                    "properties": {"api_key": {"type": "string", "description": "shown once"}}}]})),
            ),
        ),
        ("post", "/mfa/totp/enroll") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["secret", "otpauth_uri"], "properties": {
                    "secret": {"type": "string"}, "otpauth_uri": {"type": "string"}}}),
                ),
            ),
        ),
        ("post", "/mfa/totp/verify") => (
            Some(
                json!({"type": "object", "required": ["code"], "properties": {
                    "code": {"type": "string"},
                    "challenge": {"type": "string", "description": "a login's MFA challenge: answers tokens"}}}),
            ),
            (
                "200",
                Some(json!({"oneOf": [
                    {"type": "object", "required": ["enrolled"], "properties": {"enrolled": {"type": "boolean"}}},
                    {"allOf": [schema_ref("TokenPair"), {"required": ["access_token"]}]},
                ]})),
            ),
        ),
        ("get", "/mfa/delegated/pending") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["pending"], "properties": {"pending": {"type": "array", "items": {"type": "object"}}}}),
                ),
            ),
        ),
        ("get", "/users") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["users"], "properties": {
                    "users": {"type": "array", "items": schema_ref("User")},
                    "next_cursor": {"type": ["string", "null"]}}}),
                ),
            ),
        ),
        ("get", "/v1/policies") => (
            None,
            ("200", Some(json!({"type": "array", "items": schema_ref("Policy")}))),
        ),
        ("post", "/v1/policies") => (Some(schema_ref("NewPolicy")), ("201", Some(schema_ref("Policy")))),
        ("put", "/v1/policies") => (
            Some(json!({"type": "array", "items": schema_ref("NewPolicy")})),
            ("200", Some(json!({"type": "array", "items": schema_ref("Policy")}))),
        ),
        ("get", "/v1/policies/{id}") => (None, ("200", Some(schema_ref("Policy")))),
        ("put", "/v1/policies/{id}") => (
            Some(
                json!({"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}}),
            ),
            ("200", Some(schema_ref("Policy"))),
        ),
        ("post", "/v1/policies/reload") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["generation", "policies"], "properties": {
                    "generation": {"type": "integer"}, "policies": {"type": "integer"}}}),
                ),
            ),
        ),
        ("get", "/v1/entities" | "/v1/data") => (
            None,
            ("200", Some(json!({"type": "array", "items": schema_ref("Entity")}))),
        ),
        ("put", "/v1/entities" | "/v1/data") => (
            Some(json!({"type": "array", "items": schema_ref("Entity")})),
            ("200", Some(json!({"type": "array", "items": schema_ref("Entity")}))),
        ),
        ("patch", "/v1/entities" | "/v1/data") => (
            Some(json!({"type": "array", "items": schema_ref("Entity")})),
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["upserted"], "properties": {"upserted": {"type": "integer"}}}),
                ),
            ),
        ),
        ("get", "/v1/schema") => (None, ("200", Some(object.clone()))),
        ("put", "/v1/schema") => (Some(object.clone()), ("200", Some(object.clone()))),
        (
            "delete",
            "/v1/entities" | "/v1/data" | "/v1/entities/{type}/{id}" | "/v1/schema"
            | "/v1/policies/{id}",
        ) => (None, ("204", None)),
        ("post", "/rbac/check") => (
            Some(
                json!({"type": "object", "required": ["subject", "object", "action"], "properties": {
                    "subject": schema_ref("Uid"), "object": schema_ref("Uid"), "action": schema_ref("Uid"),
                    "context": {"type": ["object", "null"]}}}),
            ),
            (
                "200",
                Some(
                    json!({"type": "object", "required": ["allowed", "decision", "reasons", "errors"], "properties": {
                    "allowed": {"type": "boolean"}, "decision": {"enum": ["Allow", "Deny"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "errors": {"type": "array", "items": {"type": "string"}}}}),
                ),
            ),
        ),
        ("get", "/rbac/policies") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "properties": {"grants": {"type": "array", "items": schema_ref("Grant")}}}),
                ),
            ),
        ),
        ("post", "/rbac/policies") => (Some(schema_ref("GrantInput")), ("201", Some(schema_ref("Grant")))),
        ("delete", "/rbac/policies") => (Some(schema_ref("GrantInput")), ("200", Some(schema_ref("Grant")))),
        ("post", "/rbac/policies/bulk") => (
            Some(
                json!({"type": "object", "required": ["op", "items"], "properties": {
                    "op": {"enum": ["add", "remove"]},
                    "items": {"type": "array", "minItems": 1, "items": schema_ref("GrantInput")}}}),
            ),
            (
                "200",
                Some(
                    json!({"type": "object", "properties": {"applied": {"type": "integer"},
                    "grants": {"type": "array", "items": schema_ref("Grant")}}}),
                ),
            ),
        ),
        ("get", "/rbac/roles") => (
            None,
            (
                "200",
                Some(
                    json!({"type": "object", "properties": {"roles": {"type": "array", "items": schema_ref("Role")}}}),
                ),
            ),
        ),
        ("get", "/rbac/roles/{id}") => (None, ("200", Some(schema_ref("Role")))),
        ("put", "/rbac/roles/{id}") => (
            Some(
                json!({"type": "object", "properties": {"description": {"type": "string"},
                "parents": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}}),
            ),
            ("200|201", Some(schema_ref("Role"))),
        ),
        ("get", "/rbac/users/{id}/roles")
        | ("post", "/rbac/users/{id}/roles")
        | ("delete", "/rbac/users/{id}/roles") => (
            (method != "get").then(|| {
                json!({"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}})
            }),
            (
                if method == "post" { "201" } else { "200" },
                Some(
                    json!({"type": "object", "properties": {"principal": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string"}}}}),
                ),
            ),
        ),
        ("get", "/iam/service-accounts") => (None, ("200", Some(list_of("service_accounts", "ServiceAccount")))),
        ("get", "/iam/ai-agents") => (None, ("200", Some(list_of("agents", "Agent")))),
        ("get", "/iam/ai-providers") => (None, ("200", Some(list_of("providers", "AiProvider")))),
        ("post", "/iam/service-accounts") => (
            Some(schema_ref("NewServiceAccount")),
            ("201", Some(schema_ref("ServiceAccount"))),
        ),
        ("post", "/iam/ai-agents") => (Some(schema_ref("NewAgent")), ("201", Some(schema_ref("Agent")))),
        ("post", "/iam/ai-providers") => (
            Some(schema_ref("NewProvider")),
            ("201", Some(schema_ref("AiProvider"))),
        ),
        ("get", "/iam/service-accounts/{id}") => (None, ("200", Some(schema_ref("ServiceAccount")))),
        ("patch", "/iam/service-accounts/{id}") => (
            Some(schema_ref("IdentityUpdate")),
            ("200", Some(schema_ref("ServiceAccount"))),
        ),
        ("get", "/iam/ai-agents/{id}") => (None, ("200", Some(schema_ref("Agent")))),
        ("patch", "/iam/ai-agents/{id}") => (Some(schema_ref("IdentityUpdate")), ("200", Some(schema_ref("Agent")))),
        ("get", "/iam/ai-providers/{id}") => (None, ("200", Some(schema_ref("AiProvider")))),
        ("delete", "/iam/service-accounts/{id}" | "/iam/ai-agents/{id}" | "/iam/ai-providers/{id}") => (
            None,
            (
                "200",
                Some(json!({"type": "object", "properties": {"removed": {"type": "string"},
                "dependents_removed": {"type": "array", "items": {"type": "string"}}}})),
            ),
        ),
        ("get", "/iam/service-accounts/{id}/keys" | "/iam/ai-agents/{id}/keys") => (
            None,
            (
                "200",
                Some(json!({"type": "object", "properties": {"principal": {"type": "string"},
                "keys": {"type": "array", "items": schema_ref("Credential")}}})),
            ),
        ),
        ("post", "/iam/service-accounts/{id}/keys" | "/iam/ai-agents/{id}/keys") => (
            Some(schema_ref("NewCredential")),
            ("201", Some(schema_ref("IssuedCredential"))),
        ),
        ("post", path) if path.starts_with("/iam/") && path.contains("/rotate/") => {
            (None, ("200", Some(schema_ref("IssuedCredential"))))
        }
        ("delete", path) if path.starts_with("/iam/") && path.contains("/keys/") => (None, ("204", None)),
        ("post", "/iam/graph/link") => (Some(schema_ref("Link")), ("201", Some(schema_ref("Edge")))),
        ("delete", "/iam/graph/link") => (Some(schema_ref("Link")), ("200", Some(schema_ref("Edge")))),
        ("get", "/iam/graph/{id}/memberships") => (None, ("200", Some(walk_of("memberships")))),
        ("get", "/iam/graph/{id}/dependents") => (None, ("200", Some(walk_of("dependents")))),
        ("post", "/iam/recovery/backup") => (
            Some(json!({"type": "object", "additionalProperties": false, "properties": {"label": {"type": "string"}}})),
            ("201", Some(schema_ref("BackupManifest"))),
        ),
        ("get", "/iam/recovery/backups") => (None, ("200", Some(list_of("backups", "BackupManifest")))),
        ("post", "/iam/recovery/restore/{backup_id}") => (
            Some(json!({"type": "object", "required": ["confirm"], "properties": {"confirm": {"const": true}}})),
            (
                "200",
                Some(json!({"type": "object", "properties": {
                    "restored": schema_ref("BackupManifest"),
                    "previous_backup": {"type": "string"},
                    "keys": {"type": "integer"},
                    "duration_ms": {"type": "integer"},
                }})),
            ),
        ),
        ("get", "/iam/recovery/config") => (None, ("200", Some(schema_ref("RecoverySettings")))),
        ("patch", "/iam/recovery/config") => (
            Some(json!({"type": "object", "additionalProperties": false, "properties": {
                "dir": {"type": "string"}, "encrypt": {"type": "boolean"},
                "backup_interval_seconds": {"type": "integer", "minimum": 0},
                "retention_count": {"type": "integer", "minimum": 0},
                "retention_days": {"type": "integer", "minimum": 0},
                "journal_retention_days": {"type": "integer", "minimum": 0}}})),
            ("200", Some(schema_ref("RecoverySettings"))),
        ),
        ("get", "/iam/recovery/changes") => (
            None,
            (
                "200",
                Some(json!({"type": "object", "required": ["changes"], "properties": {
                    "changes": {"type": "array", "items": schema_ref("Change")},
                    "next": {"type": "string"}}})),
            ),
        ),
        ("post", "/iam/recovery/rollback/{change_id}") => (
            None,
            (
                "200",
                Some(json!({"type": "object", "required": ["rollback", "reverted"], "properties": {
                    "rollback": schema_ref("Change"),
                    "reverted": {"type": "array", "items": {"type": "string"}}}})),
            ),
        ),
        ("post", "/iam/sync/run") => (
            Some(json!({"type": "object", "additionalProperties": false, "properties": {
                "directory": {"type": "string"},
                "mode": {"enum": ["full", "changed"]},
                "dry_run": {"type": "boolean"}}})),
            ("200", Some(schema_ref("SyncReport"))),
        ),
        ("get", "/iam/sync/runs") => (None, ("200", Some(list_of("runs", "SyncReport")))),
        (_, "/metrics") => (None, ("200", Some(json!({"type": "string"})))),
        (_, path) if path.starts_with("/ext_authz") => (None, ("200", None)),
        ("post" | "put" | "patch", _) => (Some(json!({})), ("200", Some(json!({})))),
        _ => (None, ("200", Some(json!({})))),
    }
}

/// `{<field>: [<schema>]}`.
fn list_of(field: &str, schema: &str) -> Value {
    json!({"type": "object", "properties": {field: {"type": "array", "items": schema_ref(schema)}}})
}

/// A traversal's answer, its identities under `field`.
fn walk_of(field: &str) -> Value {
    json!({"type": "object", "properties": {
        "identity": {"type": "string"},
        field: {"type": "array", "items": schema_ref("Reached")},
        "truncated": {"type": "boolean"},
    }})
}

/// The schemas of the identity graph's records and requests.
fn graph_components() -> Map<String, Value> {
    let text = json!({"type": "string"});
    let uid = schema_ref("Uid");
    let kind = json!({"enum": ["member-of", "owned-by", "delegates-to"]});
    let schemas = json!({
        "ServiceAccount": {"type": "object", "required": ["id", "uid", "name", "owner", "disabled", "created_at"],
            "properties": {"id": text, "uid": text, "name": text, "owner": text, "description": text,
                "disabled": {"type": "boolean"}, "created_at": {"type": "integer"}}},
        "NewServiceAccount": {"type": "object", "required": ["name", "owner"], "additionalProperties": false,
            "properties": {"id": text, "name": text, "owner": uid, "description": text, "disabled": {"type": "boolean"}}},
        "Agent": {"type": "object", "required": ["id", "uid", "name", "owner", "provider", "disabled", "created_at"],
            "properties": {"id": text, "uid": text, "name": text, "owner": text, "provider": text, "model": text,
                "description": text, "disabled": {"type": "boolean"}, "created_at": {"type": "integer"}}},
        "NewAgent": {"type": "object", "required": ["name", "owner", "provider"], "additionalProperties": false,
            "properties": {"id": text, "name": text, "owner": uid, "provider": text, "model": text,
                "description": text, "disabled": {"type": "boolean"}}},
        "IdentityUpdate": {"type": "object", "additionalProperties": false,
            "properties": {"name": text, "description": text, "disabled": {"type": "boolean"}, "model": text}},
        "AiProvider": {"type": "object", "required": ["id", "uid", "name", "kind", "models", "created_at"],
            "properties": {"id": text, "uid": text, "name": text, "kind": text, "endpoint": text,
                "models": {"type": "array", "items": text}, "created_at": {"type": "integer"}}},
        "NewProvider": {"type": "object", "required": ["name", "kind"], "additionalProperties": false,
            "properties": {"id": text, "name": text,
                "kind": {"enum": ["openai", "anthropic", "azure-openai", "bedrock", "vertex", "mistral", "ollama", "other"]},
                "endpoint": {"type": "string", "format": "uri"}, "models": {"type": "array", "items": text}}},
        "Credential": {"type": "object", "required": ["id", "principal", "name", "prefix", "created_at"],
            "properties": {"id": text, "principal": text, "name": text, "prefix": text,
                "created_at": {"type": "integer"}, "expires_at": {"type": "integer"},
                "rotated_at": {"type": "integer"}, "previous_valid_until": {"type": "integer"}}},
        "NewCredential": {"type": "object", "additionalProperties": false,
            "properties": {"name": text, "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650}}},
        "IssuedCredential": {"allOf": [schema_ref("Credential"),
            {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string", "description": "pcs_<id>_<secret>, shown only here"}}}]},
        "Link": {"type": "object", "required": ["from", "kind", "to"], "additionalProperties": false,
            "properties": {"from": uid, "kind": kind, "to": uid}},
        "Edge": {"type": "object", "required": ["from", "kind", "to", "created_at"],
            "properties": {"from": text, "kind": kind, "to": text, "created_at": {"type": "integer"}}},
        "Change": {"type": "object", "required": ["id", "time", "actor", "source", "keys", "changes", "complete"],
            "properties": {"id": text, "time": {"type": "integer"}, "actor": text, "source": text,
                "keys": {"type": "array", "items": text},
                "changes": {"type": "array", "items": {"type": "object", "required": ["ns", "key", "before", "after"],
                    "properties": {"ns": text, "key": text, "before": {}, "after": {}}}},
                "complete": {"type": "boolean"},
                "reverts": {"type": "array", "items": text}}},
        "SyncReport": {"type": "object",
            "required": ["id", "directories", "mode", "dry_run", "trigger", "started", "finished", "status",
                         "created", "updated", "disabled", "unchanged", "removed", "errors"],
            "properties": {"id": text, "directories": {"type": "array", "items": text},
                "mode": {"enum": ["full", "changed"]}, "dry_run": {"type": "boolean"}, "trigger": text,
                "started": {"type": "integer"}, "finished": {"type": "integer"}, "duration_ms": {"type": "integer"},
                "status": {"enum": ["succeeded", "failed"]},
                "created": {"type": "integer"}, "updated": {"type": "integer"}, "disabled": {"type": "integer"},
                "unchanged": {"type": "integer"}, "removed": {"type": "integer"},
                "errors": {"type": "array", "items": text}, "notes": {"type": "array", "items": text}}},
        "BackupManifest": {"type": "object", "required": ["id", "created", "store", "size", "checksum", "namespaces", "format"],
            "properties": {"id": text, "label": text, "created": {"type": "integer"}, "store": text,
                "size": {"type": "integer"}, "checksum": {"type": "string", "description": "hex SHA-256 of the backup file"},
                "namespaces": {"type": "object", "additionalProperties": {"type": "integer"}},
                "format": {"type": "integer"}}},
        "RecoverySettings": {"type": "object",
            "required": ["dir", "encrypt", "backup_interval_seconds", "retention_count", "retention_days",
                         "journal_retention_days", "key_configured"],
            "properties": {"dir": text, "encrypt": {"type": "boolean"},
                "backup_interval_seconds": {"type": "integer", "description": "0: no schedule"},
                "retention_count": {"type": "integer", "description": "0: no limit"},
                "retention_days": {"type": "integer", "description": "0: no age limit"},
                "journal_retention_days": {"type": "integer", "description": "0: kept forever"},
                "key_configured": {"type": "boolean"}}},
        "Reached": {"type": "object", "required": ["id", "via", "depth", "path"],
            "properties": {"id": text, "via": kind, "depth": {"type": "integer"},
                "path": {"type": "array", "items": text}}},
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn components() -> Value {
    let uid = json!({"oneOf": [
        {"type": "string", "description": "Cedar uid, e.g. Docs::Document::\"d1\""},
        {"type": "object", "required": ["type", "id"], "properties": {"type": {"type": "string"}, "id": {"type": "string"}}},
    ]});
    let mut out = json!({
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "diagnostics": {"type": "array", "items": {"type": "object"}},
                        "items": {"type": "array", "items": {"type": "object"}},
                        "dependents": {"type": "array", "items": {"type": "string"}},
                    },
                }},
            },
            "Uid": uid,
            "DecisionRequest": {
                "type": "object",
                "properties": {
                    "principal": {"$ref": "#/components/schemas/Uid"},
                    "action": {"$ref": "#/components/schemas/Uid"},
                    "resource": {"$ref": "#/components/schemas/Uid"},
                    "context": {"type": ["object", "null"]},
                    "entities": {"type": ["array", "null"]},
                    "additional_entities": {"type": ["array", "null"]},
                },
            },
            "Decision": {
                "type": "object",
                "required": ["decision", "diagnostics"],
                "properties": {
                    "decision": {"enum": ["Allow", "Deny"]},
                    "diagnostics": {"type": "object", "properties": {
                        "reason": {"type": "array", "items": {"type": "string"}},
                        "errors": {"type": "array", "items": {"type": "string"}},
                    }},
                    "error": {"type": "object"},
                    "explain": {"type": "object"},
                },
            },
            "TokenPair": {
                "type": "object",
                "properties": {
                    "access_token": {"type": "string"},
                    "token_type": {"type": "string"},
                    "refresh_token": {"type": "string"},
                    "expires_in": {"type": "integer"},
                    "mfa_required": {"type": "boolean"},
                    "challenge": {"type": "string"},
                },
            },
            "NewPolicy": {
                "type": "object",
                "required": ["id", "content"],
                "properties": {"id": {"type": "string"}, "content": {"type": "string", "description": "Cedar policy text"}},
            },
            "Policy": {
                "type": "object",
                "required": ["id", "content", "source"],
                "properties": {
                    "id": {"type": "string"},
                    "content": {"type": "string"},
                    "source": {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {
                            "kind": {"enum": ["file", "api", "builtin", "rbac"]},
                            "path": {"type": "string"},
                        },
                    },
                    "line": {"type": "integer"},
                },
            },
            "Entity": {
                "type": "object",
                "required": ["uid"],
                "properties": {
                    "uid": {"type": "object", "required": ["type", "id"], "properties": {"type": {"type": "string"}, "id": {"type": "string"}}},
                    "attrs": {"type": "object"},
                    "parents": {"type": "array", "items": {"type": "object"}},
                    "tags": {"type": "object"},
                },
            },
            "ApiKey": {
                "type": "object",
                "required": ["id", "name", "prefix", "scopes", "created_at"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "prefix": {"type": "string"},
                    "scopes": {"type": "array", "items": {"type": "string"}},
                    "created_at": {"type": "integer"},
                    "expires_at": {"type": ["integer", "null"]},
                },
            },
            "GrantInput": {
                "type": "object",
                "description": "`role` or `subject` (a user id or a principal uid); `object` (a uid or \"*\") or `object_type`; `action` (a uid or \"*\").",
                "properties": {
                    "role": {"type": "string"},
                    "subject": {"$ref": "#/components/schemas/Uid"},
                    "object": {"$ref": "#/components/schemas/Uid"},
                    "object_type": {"type": "string"},
                    "action": {"$ref": "#/components/schemas/Uid"},
                    "effect": {"enum": ["allow", "deny"]},
                },
            },
            "Grant": {
                "type": "object",
                "required": ["id", "policy_id", "subject", "effect"],
                "properties": {
                    "id": {"type": "string"},
                    "policy_id": {"type": "string"},
                    "subject": {"type": "string"},
                    "action": {"type": ["string", "null"]},
                    "resource": {"type": ["string", "null"]},
                    "resource_type": {"type": ["string", "null"]},
                    "effect": {"enum": ["allow", "deny"]},
                    "created_at": {"type": "integer"},
                },
            },
            "Role": {
                "type": "object",
                "required": ["id", "parents"],
                "properties": {
                    "id": {"type": "string"},
                    "description": {"type": "string"},
                    "parents": {"type": "array", "items": {"type": "string"}},
                    "created_at": {"type": "integer"},
                },
            },
            "User": {
                "type": "object",
                "required": ["id", "email", "is_active", "is_verified", "is_superuser"],
                "properties": {
                    "id": {"type": "string"},
                    "email": {"type": "string"},
                    "is_active": {"type": "boolean"},
                    "is_verified": {"type": "boolean"},
                    "is_superuser": {"type": "boolean"},
                    "name": {"type": ["string", "null"]},
                    "created_at": {"type": "integer"},
                    "updated_at": {"type": "integer"},
                },
            },
        },
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
    });
    if let Some(schemas) = out["schemas"].as_object_mut() {
        schemas.extend(graph_components());
    }
    out
}
