//! The change journal: writes are recorded with actor, source and values;
//! rolling back a role assignment turns an allow into a deny on the next
//! decision; a later change on the same keys is a conflict unless
//! cascading; a rollback can itself be rolled back; secrets never appear.

use portcullis::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "journal-admin-token-0123456789";
const SHARE: &str = r#"Docs::Action::"share""#;

async fn app() -> TestApp {
    let app = spawn_app_with(|config| {
        config.server.admin_token = Some(Secret::new(TOKEN));
    })
    .await;
    app.seed_sample_entities().await;
    app
}

async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    with_token(app, method, path, TOKEN, body).await
}

async fn changes(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = admin(
        app,
        Method::GET,
        &format!("/iam/recovery/changes{query}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["changes"].as_array().unwrap().clone()
}

/// The newest entry made by `source`.
async fn newest_from(app: &TestApp, source: &str) -> Value {
    changes(app, "?limit=500")
        .await
        .into_iter()
        .find(|c| c["source"] == source)
        .unwrap_or_else(|| panic!("an entry from {source}"))
}

async fn assign(app: &TestApp, user: &str, role: &str) {
    let (status, body) = admin(
        app,
        Method::POST,
        &format!("/rbac/users/{user}/roles"),
        Some(json!({"role": role})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn rolling_back_a_role_assignment_turns_an_allow_into_a_deny() {
    let app = app().await;
    let grant = json!({"role": "sharer", "object": "*", "action": SHARE});
    let (status, body) = admin(&app, Method::POST, "/rbac/policies", Some(grant)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Deny");
    assign(&app, "bob", "sharer").await;
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Allow");

    let assigned = newest_from(&app, "POST /rbac/users/{id}/roles").await;
    assert_eq!(assigned["actor"], "admin-token");
    assert_eq!(assigned["complete"], true);
    let change = &assigned["changes"][0];
    assert!(change["before"].is_null(), "{assigned}");
    assert!(!change["after"].is_null(), "{assigned}");

    let id = assigned["id"].as_str().unwrap();
    let (status, rolled) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["reverted"], json!([id]));
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Deny");

    // The rollback is journaled, and can be rolled back in turn.
    let rollback = rolled["rollback"]["id"].as_str().unwrap();
    let newest = changes(&app, "?limit=1").await;
    assert_eq!(newest[0]["id"], rollback);
    assert_eq!(newest[0]["reverts"], json!([id]));
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{rollback}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Allow");

    // Rolling back the original again now conflicts with both later ones.
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "CHANGE_CONFLICT");
    assert_eq!(
        body["error"]["conflicts"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    // An unknown change.
    assert_error(
        &admin(&app, Method::POST, "/iam/recovery/rollback/nope", None).await,
        StatusCode::NOT_FOUND,
        "CHANGE_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_later_change_on_the_same_keys_conflicts_unless_cascading() {
    let app = app().await;
    for (role, action) in [("sharer", SHARE), ("writer", WRITE)] {
        let grant = json!({"role": role, "object": "*", "action": action});
        let (status, body) = admin(&app, Method::POST, "/rbac/policies", Some(grant)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assign(&app, "bob", "sharer").await;
    let first = newest_from(&app, "POST /rbac/users/{id}/roles").await;
    assign(&app, "bob", "writer").await;
    let second = newest_from(&app, "POST /rbac/users/{id}/roles").await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");

    let id = first["id"].as_str().unwrap();
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["conflicts"][0]["id"], second["id"]);
    // Nothing was changed by the refused rollback.
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Allow");

    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{id}?cascade=true"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reverted"], json!([second["id"], first["id"]]));
    assert_eq!(app.verdict(BOB, SHARE, ONBOARDING).await, "Deny");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn the_journal_filters_pages_and_keeps_secrets_out() {
    let app = app().await;
    // A signed-in user's own write is theirs in the journal.
    let (status, body) = app
        .post_json(
            "/auth/register",
            &json!({"email": "jo@example.com", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, login) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "jo@example.com", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["access_token"].as_str().unwrap();
    let (status, body) = with_token(
        &app,
        Method::PATCH,
        "/users/me",
        token,
        Some(json!({"name": "Jo"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let me = body["id"].as_str().unwrap().to_owned();

    let actor = format!(r#"Portcullis::User::"{me}""#);
    let mine = changes(&app, &format!("?actor={}", urlencoding(&actor))).await;
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|c| c["actor"] == actor), "{mine:?}");
    assert!(
        mine.iter().any(|c| c["source"] == "PATCH /users/me"),
        "{mine:?}"
    );

    // By key, and page by page.
    let by_key = changes(&app, &format!("?key=users/{me}")).await;
    assert!(by_key.len() >= 2, "registered, then renamed: {by_key:?}");
    let (_, page) = admin(&app, Method::GET, "/iam/recovery/changes?limit=1", None).await;
    let next = page["next"].as_str().unwrap();
    let (status, second) = admin(
        &app,
        Method::GET,
        &format!("/iam/recovery/changes?limit=1&cursor={next}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let first_id = page["changes"][0]["id"].as_str();
    let second_id = second["changes"][0]["id"].as_str();
    assert!(second_id.is_some(), "{second}");
    assert!(
        first_id < second_id,
        "ids sort newest first: {page} {second}"
    );
    assert_error(
        &admin(&app, Method::GET, "/iam/recovery/changes?limit=0", None).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER",
    );

    // No password, token or key appears anywhere in the journal.
    let all = serde_json::to_string(&changes(&app, "?limit=500").await).unwrap();
    assert!(!all.contains("correct horse battery staple"));
    assert!(!all.contains("$argon2id$"), "no password hash: {all}");
    assert!(all.contains(r#""hashed_password":{"sha256":"#), "{all}");
    assert!(!all.contains(token));
    let refresh = login["refresh_token"].as_str().unwrap();
    assert!(!all.contains(refresh));

    // The rename rolls back from digests: the name goes, the hash stays.
    let renamed = newest_from(&app, "PATCH /users/me").await;
    let id = renamed["id"].as_str().unwrap();
    let path = format!("/iam/recovery/rollback/{id}");
    let (status, rolled) = admin(&app, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let (status, profile) = with_token(&app, Method::GET, "/users/me", token, None).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert!(profile.get("name").is_none_or(Value::is_null), "{profile}");
    let again = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "jo@example.com", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);

    // Admin only.
    let (status, _) = with_token(&app, Method::GET, "/iam/recovery/changes", token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_journal_can_be_read_but_not_rewritten_through_storage() {
    let app = app().await;
    assign(&app, "bob", "sharer").await;
    let entry = changes(&app, "?limit=1").await[0].clone();
    let id = entry["id"].as_str().unwrap();
    let (status, listed) = admin(&app, Method::GET, "/storage/journal", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(listed.to_string().contains(id), "{listed}");
    for (method, path) in [
        (Method::POST, format!("/storage/journal/{id}")),
        (Method::DELETE, format!("/storage/journal/{id}")),
        (Method::POST, "/storage/sync_runs/lease".to_owned()),
    ] {
        let reply = admin(&app, method, &path, Some(json!({"forged": true}))).await;
        assert_error(&reply, StatusCode::CONFLICT, "NAMESPACE_RESERVED");
    }
    assert_eq!(changes(&app, "?limit=1").await[0], entry);
}
