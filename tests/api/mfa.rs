//! Second factors: TOTP enrolment, login challenges completed with a code
//! (with one step of clock skew, never twice with one code, five wrong
//! codes at most), delegated approval from another session, and an
//! admin's reset. Codes are computed here independently (RFC 6238 with
//! ring's HMAC-SHA-1), not with the server's own code.

use portcullis::config::Secret;
use reqwest::StatusCode;
use ring::hmac;
use serde_json::{Value, json};

use crate::helpers::*;

pub const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "mfa-admin-token-0123456789";

pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut bits, mut count) = (Vec::new(), 0u64, 0);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits = bits << 5 | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

pub fn totp(secret: &[u8], step: u64) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
        &step.to_be_bytes(),
    );
    let d = tag.as_ref();
    let o = usize::from(d[19] & 0xf);
    let n = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]);
    format!("{:06}", n % 1_000_000)
}

pub fn step_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let auth = bearer.map_or(Auth::None, Auth::Bearer);
    app.call(method, path, auth, Some(body)).await
}

async fn login(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post_json(
        "/auth/jwt/login",
        &json!({"username": email, "password": PASSWORD}),
    )
    .await
}

/// Registers, signs in, enrolls TOTP and confirms it; returns the session
/// token, the secret and the step whose code was spent confirming.
pub async fn enrolled(app: &TestApp, email: &str) -> (String, Vec<u8>, u64) {
    app.post_json(
        "/auth/register",
        &json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let (_, pair) = login(app, email).await;
    let session = pair["access_token"].as_str().unwrap().to_owned();
    let (status, enrollment) = call(
        app,
        reqwest::Method::POST,
        "/mfa/totp/enroll",
        Some(&session),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{enrollment}");
    let secret_text = enrollment["secret"].as_str().unwrap();
    let uri = enrollment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/portcullis:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret_text}")));
    let secret = base32_decode(secret_text);
    assert_eq!(secret.len(), 20);
    // 160 random bits, not 20 characters of hex text (80 bits).
    assert!(
        !secret.iter().all(u8::is_ascii_hexdigit),
        "the secret is hex text"
    );

    let wrong = call(
        app,
        reqwest::Method::POST,
        "/mfa/totp/verify",
        Some(&session),
        json!({"code": "000000"}),
    )
    .await;
    let step = step_now();
    if totp(&secret, step) != "000000" {
        assert_error(&wrong, StatusCode::BAD_REQUEST, "MFA_INVALID_CODE");
    }
    let (status, body) = call(
        app,
        reqwest::Method::POST,
        "/mfa/totp/verify",
        Some(&session),
        json!({"code": totp(&secret, step)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enrolled"], true);
    (session, secret, step)
}

#[tokio::test]
async fn a_totp_login_takes_a_fresh_code_within_the_skew_window() {
    let app = spawn_app().await;
    let (session, secret, used) = enrolled(&app, "ada@example.com").await;
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/mfa/totp/enroll",
            Some(&session),
            json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "MFA_ALREADY_ENROLLED",
    );

    let (status, pending) = login(&app, "ada@example.com").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["mfa_required"], true);
    assert!(pending.get("access_token").is_none());
    let challenge = pending["challenge"].as_str().unwrap().to_owned();
    let verify = |code: String| {
        call(
            &app,
            reqwest::Method::POST,
            "/mfa/totp/verify",
            None,
            json!({"challenge": challenge, "code": code}),
        )
    };
    // The code spent on enrolment is not accepted again.
    assert_error(
        &verify(totp(&secret, used)).await,
        StatusCode::BAD_REQUEST,
        "MFA_INVALID_CODE",
    );
    // The next step's code is within the skew window.
    let (status, pair) = verify(totp(&secret, used + 1)).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "bearer");
    // The challenge is spent.
    assert_error(
        &verify(totp(&secret, used + 1)).await,
        StatusCode::BAD_REQUEST,
        "MFA_CHALLENGE_INVALID",
    );
}

#[tokio::test]
async fn five_wrong_codes_end_a_challenge() {
    let app = spawn_app().await;
    let (_, secret, used) = enrolled(&app, "ada@example.com").await;
    let (_, pending) = login(&app, "ada@example.com").await;
    let challenge = pending["challenge"].as_str().unwrap();
    let right = totp(&secret, used + 1);
    let wrong = if right == "111111" {
        "222222"
    } else {
        "111111"
    };
    for _ in 0..5 {
        let reply = call(
            &app,
            reqwest::Method::POST,
            "/mfa/totp/verify",
            None,
            json!({"challenge": challenge, "code": wrong}),
        )
        .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "MFA_INVALID_CODE");
    }
    let reply = call(
        &app,
        reqwest::Method::POST,
        "/mfa/totp/verify",
        None,
        json!({"challenge": challenge, "code": right}),
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "MFA_CHALLENGE_INVALID");
}

#[tokio::test]
async fn another_session_approves_a_waiting_login_once() {
    let app = spawn_app_with(|c| c.server.admin_token = Some(Secret::new(TOKEN))).await;
    let (session, _, _) = enrolled(&app, "ada@example.com").await;
    let (_, pending) = login(&app, "ada@example.com").await;
    let challenge = pending["challenge"].as_str().unwrap().to_owned();
    let id = challenge.split('_').nth(1).unwrap().to_owned();
    let complete = || {
        call(
            &app,
            reqwest::Method::POST,
            "/mfa/delegated/complete",
            None,
            json!({"challenge": challenge}),
        )
    };

    let (status, waiting) = complete().await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(waiting["status"], "waiting");

    let (status, list) = call(
        &app,
        reqwest::Method::GET,
        "/mfa/delegated/pending",
        Some(&session),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["pending"][0]["id"], id.as_str());
    assert_eq!(list["pending"][0]["address"], "127.0.0.1");

    // Someone else cannot approve it.
    app.post_json(
        "/auth/register",
        &json!({"email": "eve@example.com", "password": PASSWORD}),
    )
    .await;
    let (_, eve) = login(&app, "eve@example.com").await;
    let eve = eve["access_token"].as_str().unwrap();
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/mfa/delegated/approve",
            Some(eve),
            json!({"challenge_id": id}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MFA_CHALLENGE_INVALID",
    );
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/mfa/delegated/approve",
        Some(&session),
        json!({"challenge_id": id}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, pair) = complete().await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert!(pair["access_token"].is_string());
    // Single use: no second set of tokens.
    assert_error(
        &complete().await,
        StatusCode::BAD_REQUEST,
        "MFA_CHALLENGE_INVALID",
    );
    // An approval cannot be replayed either.
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/mfa/delegated/approve",
            Some(&session),
            json!({"challenge_id": id}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MFA_CHALLENGE_INVALID",
    );

    // A denied login never completes.
    let (_, pending) = login(&app, "ada@example.com").await;
    let denied = pending["challenge"].as_str().unwrap().to_owned();
    let denied_id = denied.split('_').nth(1).unwrap();
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/mfa/delegated/approve",
        Some(&session),
        json!({"challenge_id": denied_id, "approve": false}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/mfa/delegated/complete",
            None,
            json!({"challenge": denied}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MFA_CHALLENGE_INVALID",
    );

    // An admin resets the second factor: logins get tokens directly again.
    let (_, me) = call(
        &app,
        reqwest::Method::GET,
        "/users/me",
        Some(&session),
        json!({}),
    )
    .await;
    let path = format!("/users/{}/mfa", me["id"].as_str().unwrap());
    let response = app
        .client
        .delete(app.url(&path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, pair) = login(&app, "ada@example.com").await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert!(pair["access_token"].is_string());
}

#[tokio::test]
async fn codes_without_an_enrolment_are_refused() {
    let app = spawn_app().await;
    app.post_json(
        "/auth/register",
        &json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    let (_, pair) = login(&app, "ada@example.com").await;
    let session = pair["access_token"].as_str().unwrap();
    for (method, path) in [
        (reqwest::Method::POST, "/mfa/totp/verify"),
        (reqwest::Method::DELETE, "/mfa/totp"),
    ] {
        let reply = call(&app, method, path, Some(session), json!({"code": "123456"})).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "MFA_NOT_ENROLLED");
    }
    // A login challenge needs a challenge the server issued.
    let reply = call(
        &app,
        reqwest::Method::POST,
        "/mfa/totp/verify",
        None,
        json!({"challenge": "mfa_0000000000000000_x", "code": "123456"}),
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "MFA_CHALLENGE_INVALID");
}
