//! Mailed single-use tokens, read from the delivered message in the file
//! outbox (never from a back door): e-mail verification, password reset
//! and magic links, with answers that never tell whether an address has
//! an account.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn register(app: &TestApp, email: &str) {
    let (status, body) = app
        .post_json(
            "/auth/register",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A mail request for `email` and one for an unknown address: both 202,
/// with the same body.
async fn same_answer_for_unknown(app: &TestApp, route: &str, email: &str) {
    let known = app.post_json(route, &json!({"email": email})).await;
    let unknown = app
        .post_json(route, &json!({"email": "nobody@example.com"}))
        .await;
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(known, unknown, "the same answer either way");
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post_json(
        "/auth/jwt/login",
        &json!({"username": email, "password": password}),
    )
    .await
}

async fn me(app: &TestApp, pair: &Value) -> StatusCode {
    app.client
        .get(app.url("/users/me"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn verification_by_mailed_token_unlocks_login_when_required() {
    let app = spawn_app_with(|c| c.accounts.require_verification = true).await;
    register(&app, "ada@example.com").await;
    assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "LOGIN_USER_NOT_VERIFIED",
    );

    same_answer_for_unknown(&app, "/auth/request-verify-token", "ada@example.com").await;

    let token = app
        .mailed_token("ada@example.com", "Verify your e-mail address")
        .await;
    let (status, user) = app
        .post_json("/auth/verify", &json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["is_verified"], true);
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::OK
    );

    assert_error(
        &app.post_json("/auth/verify", &json!({"token": token}))
            .await,
        StatusCode::BAD_REQUEST,
        "VERIFY_USER_BAD_TOKEN",
    );
    assert_error(
        &app.post_json("/auth/verify", &json!({"token": "made-up"}))
            .await,
        StatusCode::BAD_REQUEST,
        "VERIFY_USER_BAD_TOKEN",
    );
    // Nothing was ever mailed to the unknown address, and a verified user
    // gets no new token either.
    app.post_json(
        "/auth/request-verify-token",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!app.has_mail_to("nobody@example.com"));
    assert!(!app.has_mail_to("ada@example.com"));
    assert_error(
        &app.post_json(
            "/auth/request-verify-token",
            &json!({"email": "not an address"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_EMAIL",
    );
}

#[tokio::test]
async fn a_password_reset_changes_the_password_and_ends_every_session() {
    let app = spawn_app().await;
    register(&app, "ada@example.com").await;
    let (_, session) = login(&app, "ada@example.com", PASSWORD).await;

    same_answer_for_unknown(&app, "/auth/forgot-password", "ADA@example.com").await;
    let token = app
        .mailed_token("ada@example.com", "Reset your password")
        .await;

    // A weak password is refused without spending the token.
    let weak = app
        .post_json(
            "/auth/reset-password",
            &json!({"token": token, "password": "short"}),
        )
        .await;
    assert_error(
        &weak,
        StatusCode::BAD_REQUEST,
        "RESET_PASSWORD_INVALID_PASSWORD",
    );
    let (status, _) = app
        .post_json(
            "/auth/reset-password",
            &json!({"token": token, "password": "a brand new phrase"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        me(&app, &session).await,
        StatusCode::UNAUTHORIZED,
        "sessions end"
    );
    assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );
    assert_eq!(
        login(&app, "ada@example.com", "a brand new phrase").await.0,
        StatusCode::OK
    );
    assert_error(
        &app.post_json(
            "/auth/reset-password",
            &json!({"token": token, "password": "yet another phrase"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "RESET_PASSWORD_BAD_TOKEN",
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!app.has_mail_to("nobody@example.com"));
}

#[tokio::test]
async fn a_magic_link_signs_in_once_and_only_for_its_purpose() {
    let app = spawn_app().await;
    register(&app, "ada@example.com").await;
    let (status, _) = app
        .post_json(
            "/auth/magic-link/request",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = app
        .mailed_token("ada@example.com", "Your sign-in link")
        .await;

    // A magic-link token is not a reset token.
    assert_error(
        &app.post_json(
            "/auth/reset-password",
            &json!({"token": token, "password": "a brand new phrase"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "RESET_PASSWORD_BAD_TOKEN",
    );
    let (status, pair) = app
        .post_json("/auth/magic-link/login", &json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(me(&app, &pair).await, StatusCode::OK);
    assert_error(
        &app.post_json("/auth/magic-link/login", &json!({"token": token}))
            .await,
        StatusCode::BAD_REQUEST,
        "MAGIC_LINK_BAD_TOKEN",
    );
    // The mailbox is proven: the address counts as verified.
    let profile: Value = app
        .client
        .get(app.url("/users/me"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profile["is_verified"], true);
}

#[tokio::test]
async fn a_mailed_token_does_not_survive_a_change_of_address() {
    let app = spawn_app().await;
    register(&app, "ada@example.com").await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    app.post_json(
        "/auth/forgot-password",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    let token = app
        .mailed_token("ada@example.com", "Reset your password")
        .await;
    let response = app
        .client
        .patch(app.url("/users/me"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .json(&json!({"email": "ada@lovelace.org", "current_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_error(
        &app.post_json(
            "/auth/reset-password",
            &json!({"token": token, "password": "a brand new phrase"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "RESET_PASSWORD_BAD_TOKEN",
    );
}

#[tokio::test]
async fn a_verification_token_for_an_address_verified_since_says_so() {
    let app = spawn_app().await;
    register(&app, "ada@example.com").await;
    app.post_json(
        "/auth/request-verify-token",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    let verify = app
        .mailed_token("ada@example.com", "Verify your e-mail address")
        .await;
    // A magic link proves the mailbox first.
    app.post_json(
        "/auth/magic-link/request",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    let magic = app
        .mailed_token("ada@example.com", "Your sign-in link")
        .await;
    let (status, _) = app
        .post_json("/auth/magic-link/login", &json!({"token": magic}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &app.post_json("/auth/verify", &json!({"token": verify}))
            .await,
        StatusCode::BAD_REQUEST,
        "VERIFY_USER_ALREADY_VERIFIED",
    );
}
