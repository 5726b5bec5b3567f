//! Policy routes: cedar-agent CRUD, file policies being read-only through
//! the API, validation diagnostics, reload and the directory watcher.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const BOB_WRITES: &str =
    r#"permit (principal == Portcullis::User::"bob", action == Docs::Action::"write", resource);"#;

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("policy list is an array")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect()
}

fn diagnostics(body: &Value) -> &Vec<Value> {
    body["error"]["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("diagnostics array in {body}"))
}

/// Some diagnostic has a line and a column, and satisfies `check`.
fn assert_positioned(body: &Value, check: impl Fn(&Value) -> bool) {
    let found = diagnostics(body)
        .iter()
        .any(|d| d["line"].as_u64().is_some() && d["column"].as_u64().is_some() && check(d));
    assert!(found, "no matching positioned diagnostic in {body}");
}

#[tokio::test]
async fn create_get_upsert_and_delete_an_api_policy() {
    let app = spawn_app().await;
    let policy = json!({"id": "bob-writes", "content": BOB_WRITES});

    let created = app.post_json("/v1/policies", &policy).await;
    let duplicate = app.post_json("/v1/policies", &policy).await;
    let fetched = app.get("/v1/policies/bob-writes").await;
    let forbid = r#"forbid (principal, action, resource);"#;
    let replaced = app
        .put_json("/v1/policies/bob-writes", &json!({"content": forbid}))
        .await;
    let after_replace = app.get("/v1/policies/bob-writes").await;
    let deleted = app.delete("/v1/policies/bob-writes").await;
    let gone = app.get("/v1/policies/bob-writes").await;
    let deleted_again = app.delete("/v1/policies/bob-writes").await;

    assert_eq!(created.0, StatusCode::CREATED);
    assert_eq!(created.1["source"]["kind"], "api");
    assert_error(&duplicate, StatusCode::CONFLICT, "POLICY_EXISTS");
    assert_eq!(fetched.0, StatusCode::OK);
    assert_eq!(fetched.1["content"], BOB_WRITES);
    assert_eq!(replaced.0, StatusCode::OK);
    assert_eq!(after_replace.1["content"], forbid);
    assert_eq!(deleted.0, StatusCode::NO_CONTENT);
    assert_error(&gone, StatusCode::NOT_FOUND, "POLICY_NOT_FOUND");
    assert_error(&deleted_again, StatusCode::NOT_FOUND, "POLICY_NOT_FOUND");
}

#[tokio::test]
async fn put_on_a_new_id_creates_the_policy() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (status, _) = app
        .put_json("/v1/policies/bob-writes", &json!({"content": BOB_WRITES}))
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/v1/policies/bob-writes").await.0, StatusCode::OK);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn replacing_all_policies_keeps_the_file_policies() {
    let app = spawn_app().await;
    for id in ["a1", "a2"] {
        let body = json!({"id": id, "content": BOB_WRITES});
        assert_eq!(
            app.post_json("/v1/policies", &body).await.0,
            StatusCode::CREATED
        );
    }

    let (status, list) = app
        .put_json(
            "/v1/policies",
            &json!([{"id": "b1", "content": BOB_WRITES}]),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = ids(&list);
    assert!(listed.contains(&"b1"));
    assert!(
        !listed.contains(&"a1") && !listed.contains(&"a2"),
        "{listed:?}"
    );
    let files: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] != "b1")
        .collect();
    assert_eq!(
        files.len(),
        9,
        "the nine policies of docs.cedar: {listed:?}"
    );
    for policy in files {
        assert_eq!(policy["source"]["kind"], "file", "{policy}");
        assert!(
            policy["source"]["path"]
                .as_str()
                .unwrap()
                .ends_with("docs.cedar")
        );
    }
    assert_eq!(app.get("/v1/policies").await.1, list);
}

#[tokio::test]
async fn file_policies_cannot_be_changed_through_the_api() {
    let app = spawn_app().await;
    let content = json!({"content": BOB_WRITES});

    let upsert = app
        .put_json("/v1/policies/docs.public-read", &content)
        .await;
    let delete = app.delete("/v1/policies/docs.public-read").await;
    let replace_all = app
        .put_json(
            "/v1/policies",
            &json!([{"id": "docs.public-read", "content": BOB_WRITES}]),
        )
        .await;

    assert_error(&upsert, StatusCode::CONFLICT, "POLICY_FROM_FILE");
    assert_error(&delete, StatusCode::CONFLICT, "POLICY_FROM_FILE");
    assert_error(&replace_all, StatusCode::CONFLICT, "POLICY_FROM_FILE");
    let (_, kept) = app.get("/v1/policies/docs.public-read").await;
    assert_eq!(kept["source"]["kind"], "file");
    assert!(
        kept["content"]
            .as_str()
            .unwrap()
            .contains("resource.public")
    );
}

#[tokio::test]
async fn invalid_policies_are_refused_and_the_old_set_keeps_serving() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.decide(BOB, READ, ONBOARDING, json!({})).await;
    let syntax = json!({"id": "broken", "content": "permit (principal,\n  action resource);"});
    let unknown_action = json!({
        "id": "unknown-action",
        "content": "permit (\n  principal,\n  action == Docs::Action::\"frobnicate\",\n  resource\n);",
    });

    let syntax_reply = app.post_json("/v1/policies", &syntax).await;
    let schema_reply = app.post_json("/v1/policies", &unknown_action).await;

    assert_error(&syntax_reply, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_positioned(&syntax_reply.1, |d| d["line"] == 2);
    assert_error(&schema_reply, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_positioned(&schema_reply.1, |d| {
        d["line"] == 3 && d["policy_id"] == "unknown-action"
    });
    let (_, list) = app.get("/v1/policies").await;
    assert!(
        !ids(&list)
            .iter()
            .any(|id| ["broken", "unknown-action"].contains(id))
    );
    assert_eq!(app.decide(BOB, READ, ONBOARDING, json!({})).await.1, before);
}

#[tokio::test]
async fn reload_picks_up_a_new_policy_file() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    app.write_policy_file(
        "extra.cedar",
        &format!("@id(\"extra.bob-writes\")\n{BOB_WRITES}\n"),
    );

    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["policies"], 10);
    let (_, policy) = app.get("/v1/policies/extra.bob-writes").await;
    assert_eq!(policy["source"]["kind"], "file");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn reload_of_an_invalid_file_names_it_and_keeps_the_old_set() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.get("/v1/policies").await;
    app.write_policy_file(
        "broken.cedar",
        "// first line\npermit (principal action, resource);\n",
    );
    let path = app
        .policy_dir
        .path()
        .join("broken.cedar")
        .display()
        .to_string();

    let reply = app.post_json("/v1/policies/reload", &json!({})).await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_positioned(&reply.1, |d| d["source"] == path.as_str() && d["line"] == 2);
    assert_eq!(app.get("/v1/policies").await.1, before);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn watcher_reloads_a_new_file_within_the_poll_window() {
    let app = spawn_app_with(|c| {
        c.policies.watch = true;
        c.policies.watch_interval_ms = 100;
    })
    .await;
    app.seed_sample_entities().await;
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");

    app.write_policy_file(
        "watched.cedar",
        &format!("@id(\"watched.bob-writes\")\n{BOB_WRITES}\n"),
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = StatusCode::NOT_FOUND;
    while Instant::now() < deadline {
        status = app.get("/v1/policies/watched.bob-writes").await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the watcher did not reload within 10 s"
    );
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn data_routes_need_an_admin_unless_opened_on_loopback() {
    use reqwest::Method;
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let permit = json!({"id": "bob-writes",
        "content": r#"permit (principal == Portcullis::User::"bob", action == Docs::Action::"write", resource);"#});
    let attempts = [
        (Method::GET, "/v1/policies", None),
        (Method::POST, "/v1/policies", Some(permit.clone())),
        (
            Method::PUT,
            "/v1/policies/bob-writes",
            Some(json!({"content": permit["content"]})),
        ),
        (Method::POST, "/v1/policies/reload", Some(json!({}))),
        (Method::GET, "/v1/data", None),
        (Method::PUT, "/v1/entities", Some(json!([]))),
        (Method::DELETE, "/v1/data", None),
        (
            Method::DELETE,
            "/v1/entities/Docs::Document/onboarding",
            None,
        ),
        (Method::GET, "/v1/schema", None),
        (Method::DELETE, "/v1/schema", None),
    ];
    for (method, path, body) in attempts.clone() {
        let reply = app.call(method.clone(), path, Auth::None, body).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    // A signed-in user who is not an admin may decide, not change policies.
    app.post_json(
        "/auth/register",
        &json!({"email": "bob@example.com", "password": "correct horse battery"}),
    )
    .await;
    let (_, pair) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "bob@example.com", "password": "correct horse battery"}),
        )
        .await;
    let bob = pair["access_token"].as_str().unwrap();
    for (method, path, body) in attempts {
        let reply = app
            .call(method.clone(), path, Auth::Bearer(bob), body)
            .await;
        assert_error(&reply, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    assert_eq!(app.get("/v1/entities").await.1.as_array().unwrap().len(), 9);
    // The operator's token is admitted.
    let (status, _) = app.post_json("/v1/policies", &permit).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");

    // Opened, as cedar-agent without --authentication (on loopback only).
    let open = spawn_app_with(|c| c.server.open_data_routes = true).await;
    let (status, body) = open
        .call(Method::POST, "/v1/policies", Auth::None, Some(permit))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
