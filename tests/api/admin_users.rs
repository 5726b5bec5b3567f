//! Admin user management, account settings changed at runtime, and login
//! lockout per account and per address, kept across a restart.

use std::time::Duration;

use portcullis::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "users-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery";

async fn admin_app() -> TestApp {
    spawn_app_with(|c| c.server.admin_token = Some(Secret::new(TOKEN))).await
}

async fn as_admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    with_token(app, method, path, TOKEN, body).await
}

async fn register(app: &TestApp, email: &str, name: &str) -> String {
    let (status, user) = app
        .post_json(
            "/auth/register",
            &json!({"email": email, "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user["id"].as_str().unwrap().to_owned()
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/jwt/login"))
        .json(&json!({"username": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn token(app: &TestApp, email: &str) -> String {
    let response = login(app, email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let pair: Value = response.json().await.unwrap();
    pair["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admins_find_change_and_delete_users() {
    let app = admin_app().await;
    let ada = register(&app, "ada@example.com", "Ada Lovelace").await;
    let bob = register(&app, "bob@example.com", "Bob Baker").await;
    register(&app, "carol@example.com", "Carol").await;

    let (status, found) = as_admin(&app, reqwest::Method::GET, "/users?q=LOVELACE", None).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["users"].as_array().unwrap().len(), 1);
    assert_eq!(found["users"][0]["id"], ada.as_str());
    assert!(found["users"][0].get("hashed_password").is_none());
    // Pages of one, following the cursor, reach all three once.
    let mut seen = Vec::new();
    let mut path = "/users?limit=1".to_owned();
    loop {
        let (_, page) = as_admin(&app, reqwest::Method::GET, &path, None).await;
        seen.extend(
            page["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["email"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/users?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_error(
        &as_admin(&app, reqwest::Method::GET, "/users/no-such-id", None).await,
        StatusCode::NOT_FOUND,
        "USER_NOT_FOUND",
    );

    // Deactivating a user ends its sessions at once.
    let bob_token = token(&app, "bob@example.com").await;
    let path = format!("/users/{bob}");
    let (status, changed) = as_admin(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"is_active": false, "name": "B."})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["is_active"], false);
    assert_eq!(changed["name"], "B.");
    assert_eq!(
        with_token(&app, reqwest::Method::GET, "/users/me", &bob_token, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "bob@example.com", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Made a superuser, Ada administers through the admin policies.
    let ada_token = token(&app, "ada@example.com").await;
    assert_eq!(
        with_token(&app, reqwest::Method::GET, "/users", &ada_token, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    as_admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/users/{ada}"),
        Some(json!({"is_superuser": true})),
    )
    .await;
    assert_eq!(
        with_token(&app, reqwest::Method::GET, "/users", &ada_token, None)
            .await
            .0,
        StatusCode::OK
    );

    // Deleted: gone, and the address is free again.
    assert_eq!(
        as_admin(&app, reqwest::Method::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &as_admin(&app, reqwest::Method::DELETE, &path, None).await,
        StatusCode::NOT_FOUND,
        "USER_NOT_FOUND",
    );
    register(&app, "bob@example.com", "Bob again").await;
}

#[tokio::test]
async fn settings_change_at_runtime_are_checked_and_survive_a_restart() {
    let app = admin_app().await;
    let (status, settings) =
        as_admin(&app, reqwest::Method::GET, "/management/settings/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["registration_open"], true);
    assert_eq!(settings["lockout_threshold"], 5);

    let (status, changed) = as_admin(
        &app,
        reqwest::Method::PATCH,
        "/management/settings/",
        Some(json!({"registration_open": false, "password_min_length": 12})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["password_min_length"], 12);
    assert_error(
        &app.post_json(
            "/auth/register",
            &json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "REGISTRATION_CLOSED",
    );
    for bad in [
        json!({"issuer": "elsewhere"}),
        json!({"password_min_length": 3}),
        json!({"no_such_setting": true}),
        json!({"registration_open": "yes"}),
        json!([1, 2]),
    ] {
        let reply = as_admin(
            &app,
            reqwest::Method::PATCH,
            "/management/settings/",
            Some(bad.clone()),
        )
        .await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY");
    }
    let app = app.restart().await;
    let (_, settings) = as_admin(&app, reqwest::Method::GET, "/management/settings/", None).await;
    assert_eq!(settings["registration_open"], false);
    assert_eq!(settings["password_min_length"], 12);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_then_it_unlocks() {
    let app = admin_app().await;
    as_admin(
        &app,
        reqwest::Method::PATCH,
        "/management/settings/",
        Some(json!({"lockout_threshold": 3, "lockout_duration_seconds": 5})),
    )
    .await;
    register(&app, "ada@example.com", "Ada").await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, "ada@example.com", "wrong horse battery")
                .await
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
    // Locked: even the right password waits, told how long.
    let locked = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    let unlocks = std::time::Instant::now() + Duration::from_secs(retry);
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "LOGIN_LOCKED");
    // An unknown address locks the same way: a lock reveals nothing.
    for _ in 0..3 {
        login(&app, "nobody@example.com", "wrong horse battery").await;
    }
    assert_eq!(
        login(&app, "nobody@example.com", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // The count is in the store: a restart does not lift the lock.
    let app = app.restart().await;
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep_until((unlocks + Duration::from_millis(1100)).into()).await;
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn many_failures_from_one_address_lock_it_out_for_every_account() {
    let app = admin_app().await;
    as_admin(
        &app,
        reqwest::Method::PATCH,
        "/management/settings/",
        Some(json!({"ip_lockout_threshold": 4, "lockout_threshold": 100})),
    )
    .await;
    register(&app, "ada@example.com", "Ada").await;
    for i in 0..4 {
        let email = format!("guess{i}@example.com");
        assert_eq!(
            login(&app, &email, "wrong horse battery").await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_new_signing_key_signs_while_the_old_one_still_verifies() {
    let app = admin_app().await;
    register(&app, "ada@example.com", "Ada").await;
    let before = token(&app, "ada@example.com").await;
    let (status, rotated) =
        as_admin(&app, reqwest::Method::POST, "/management/keys/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["jwks"]["keys"].as_array().unwrap().len(), 2);
    let (_, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    let after = token(&app, "ada@example.com").await;
    let kid = |jwt: &str| {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"].clone()
    };
    assert_eq!(kid(&after), rotated["signing_key"]);
    assert_ne!(kid(&before), kid(&after));
    for jwt in [&before, &after] {
        assert_eq!(
            with_token(&app, reqwest::Method::GET, "/users/me", jwt, None)
                .await
                .0,
            StatusCode::OK
        );
    }
}
