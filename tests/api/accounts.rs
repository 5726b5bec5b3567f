//! Accounts: registration, password login (form and JSON), refresh-token
//! rotation with reuse detection, logout, the caller's own profile, the
//! JWKS, and access tokens forged every way a JWT gets forged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::backends::{Expect, SqliteStore, Store};
use portcullis::config::{BackendConfig, Secret, StoreConfig};
use reqwest::StatusCode;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "accounts-admin-token-0123456789";

async fn register(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post_json(
        "/auth/register",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn login(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    app.post_json(
        "/auth/jwt/login",
        &json!({"username": username, "password": password}),
    )
    .await
}

async fn login_form(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/auth/jwt/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    with_token(app, reqwest::Method::GET, "/users/me", token, None).await
}

fn access(pair: &Value) -> &str {
    pair["access_token"].as_str().expect("an access token")
}

#[tokio::test]
async fn a_session_idle_past_its_limit_ends() {
    let app = spawn_app_with(|c| c.accounts.session_idle_seconds = 2).await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    // Used within the limit, it goes on, and the limit starts again.
    let refresh = |pair: &Value| json!({"refresh_token": pair["refresh_token"].clone()});
    let (status, pair) = app.post_json("/auth/jwt/refresh", &refresh(&pair)).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, body) = app.post_json("/auth/jwt/refresh", &refresh(&pair)).await;
    assert_error(
        &(status, body),
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    );
    // The session has ended: its access token no longer works either.
    assert_eq!(me(&app, access(&pair)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn answers_are_never_kept_by_caches() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    let tokens = app
        .client
        .post(app.url("/auth/jwt/login"))
        .json(&json!({"username": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), StatusCode::OK);
    assert_eq!(tokens.headers()["cache-control"], "no-store");
    let refused = app.client.get(app.url("/users/me")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn register_then_login_with_the_form_or_json() {
    let app = spawn_app().await;
    let (status, user) = app
        .post_json(
            "/auth/register",
            &json!({"email": " Ada@Example.com", "password": PASSWORD, "name": "Ada",
                    "is_superuser": true, "is_verified": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["is_active"], true);
    // Privileges cannot be self-assigned at registration.
    assert_eq!(user["is_superuser"], false);
    assert_eq!(user["is_verified"], false);
    assert!(user.get("hashed_password").is_none());
    assert_eq!(user["id"].as_str().unwrap().len(), 36);

    assert_error(
        &register(&app, "ADA@example.com", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "REGISTER_USER_ALREADY_EXISTS",
    );
    let weak = register(&app, "bob@example.com", "short").await;
    assert_error(&weak, StatusCode::BAD_REQUEST, "REGISTER_INVALID_PASSWORD");
    assert!(
        weak.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 12")
    );
    assert_error(
        &register(&app, "not-an-email", PASSWORD).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_EMAIL",
    );

    // `curl -d '{…}'` labels JSON as a form: it is still read as JSON.
    let curl_style = app
        .client
        .post(app.url("/auth/jwt/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"username": "ada@example.com", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    let curl_style = (
        curl_style.status(),
        curl_style.json::<Value>().await.unwrap(),
    );
    for (status, pair) in [
        login(&app, "ada@example.com", PASSWORD).await,
        login_form(&app, "Ada@Example.com", PASSWORD).await,
        curl_style,
    ] {
        assert_eq!(status, StatusCode::OK, "{pair}");
        assert_eq!(pair["token_type"], "bearer");
        assert_eq!(pair["expires_in"], 900);
        assert!(pair["refresh_token"].as_str().unwrap().len() >= 43);
        let (status, profile) = me(&app, access(&pair)).await;
        assert_eq!(status, StatusCode::OK, "{profile}");
        assert_eq!(profile["id"], user["id"]);
    }
}

#[tokio::test]
async fn bad_credentials_look_the_same_for_known_and_unknown_users() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    let wrong = login(&app, "ada@example.com", "wrong horse battery").await;
    let unknown = login(&app, "nobody@example.com", PASSWORD).await;
    let malformed = login(&app, "not an email", PASSWORD).await;
    assert_error(&wrong, StatusCode::BAD_REQUEST, "LOGIN_BAD_CREDENTIALS");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, malformed);
    let (status, body) = me(&app, "not-a-token").await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let (status, _) = app.get("/users/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_session() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, first) = login(&app, "ada@example.com", PASSWORD).await;
    let old_refresh = first["refresh_token"].clone();

    let (status, second) = app
        .post_json("/auth/jwt/refresh", &json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], old_refresh);
    assert_eq!(me(&app, access(&second)).await.0, StatusCode::OK);

    // The old token again: someone else has it. The whole session ends.
    let reused = app
        .post_json("/auth/jwt/refresh", &json!({"refresh_token": old_refresh}))
        .await;
    assert_error(&reused, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN");
    assert_eq!(me(&app, access(&second)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, access(&first)).await.0, StatusCode::UNAUTHORIZED);
    let rotated = app
        .post_json(
            "/auth/jwt/refresh",
            &json!({"refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_error(&rotated, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN");

    // Another session of the same user is untouched.
    let (_, other) = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(me(&app, access(&other)).await.0, StatusCode::OK);
    assert_error(
        &app.post_json("/auth/jwt/refresh", &json!({"refresh_token": "made-up"}))
            .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    );
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, other) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _) = with_token(
        &app,
        reqwest::Method::POST,
        "/auth/jwt/logout",
        access(&pair),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, access(&pair)).await.0, StatusCode::UNAUTHORIZED);
    let refreshed = app
        .post_json(
            "/auth/jwt/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_error(
        &refreshed,
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    );
    // Only that session.
    assert_eq!(me(&app, access(&other)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn users_change_their_own_profile_but_not_their_privileges() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    register(&app, "bob@example.com", PASSWORD).await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    let token = access(&pair);
    let patch =
        |body: Value| with_token(&app, reqwest::Method::PATCH, "/users/me", token, Some(body));

    let (status, user) =
        patch(json!({"name": "Ada L.", "is_superuser": true, "is_active": false})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["name"], "Ada L.");
    assert_eq!(user["is_superuser"], false);
    assert_eq!(user["is_active"], true);

    assert_error(
        &patch(json!({"email": "BOB@example.com", "current_password": PASSWORD})).await,
        StatusCode::BAD_REQUEST,
        "UPDATE_USER_EMAIL_ALREADY_EXISTS",
    );
    assert_error(
        &patch(json!({"password": "tiny", "current_password": PASSWORD})).await,
        StatusCode::BAD_REQUEST,
        "UPDATE_USER_INVALID_PASSWORD",
    );
    let (status, user) = patch(json!({
        "email": "ada@lovelace.org",
        "password": "a whole new phrase",
        "current_password": PASSWORD,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["email"], "ada@lovelace.org");
    assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );
    assert_eq!(
        login(&app, "ada@lovelace.org", "a whole new phrase")
            .await
            .0,
        StatusCode::OK
    );
    // The old address is free again.
    assert_eq!(
        register(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_new_password_or_address_needs_the_current_password_and_ends_other_sessions() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, this) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, other) = login(&app, "ada@example.com", PASSWORD).await;
    let patch = |body: Value| {
        with_token(
            &app,
            reqwest::Method::PATCH,
            "/users/me",
            access(&this),
            Some(body),
        )
    };
    for change in [
        json!({"password": "a whole new phrase"}),
        json!({"email": "ada@lovelace.org"}),
    ] {
        assert_error(
            &patch(change.clone()).await,
            StatusCode::BAD_REQUEST,
            "CURRENT_PASSWORD_REQUIRED",
        );
        let mut wrong = change;
        wrong["current_password"] = json!("not my password");
        assert_error(
            &patch(wrong).await,
            StatusCode::BAD_REQUEST,
            "BAD_CURRENT_PASSWORD",
        );
    }
    // Neither a name nor the same address needs it, and neither ends a session.
    let (status, body) = patch(json!({"name": "Ada", "email": "ADA@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(me(&app, access(&other)).await.0, StatusCode::OK);
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::OK,
        "nothing refused was changed"
    );

    let (status, body) = patch(json!({
        "password": "a whole new phrase",
        "current_password": PASSWORD,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The caller's session goes on; every other one has ended.
    assert_eq!(me(&app, access(&this)).await.0, StatusCode::OK);
    assert_eq!(me(&app, access(&other)).await.0, StatusCode::UNAUTHORIZED);
    let refreshed = app
        .post_json(
            "/auth/jwt/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.0, StatusCode::UNAUTHORIZED, "{}", refreshed.1);

    // An API key is no sign-in: it cannot change them, even with the password.
    let (status, created) = with_token(
        &app,
        reqwest::Method::POST,
        "/auth/api-keys/",
        access(&this),
        Some(json!({"name": "ci", "current_password": "a whole new phrase"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let response = app
        .client
        .patch(app.url("/users/me"))
        .header("x-api-key", created["api_key"].as_str().unwrap())
        .json(&json!({"password": "yet another phrase", "current_password": "a whole new phrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_A_SESSION", "{body}");
}

async fn sessions_of(app: &TestApp, token: &str) -> (StatusCode, Value) {
    with_token(app, reqwest::Method::GET, "/auth/sessions", token, None).await
}

#[tokio::test]
async fn users_list_their_sessions_and_end_any_of_them() {
    let app = spawn_app().await;
    register(&app, "ada@example.com", PASSWORD).await;
    register(&app, "bob@example.com", PASSWORD).await;
    let (_, this) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, other) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, bobs) = login(&app, "bob@example.com", PASSWORD).await;
    let current = |sessions: &Value| -> String {
        let all = sessions.as_array().unwrap();
        let mine: Vec<&Value> = all.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(mine.len(), 1, "{sessions}");
        mine[0]["id"].as_str().unwrap().to_owned()
    };
    let (status, sessions) = sessions_of(&app, access(&this)).await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    assert_eq!(sessions.as_array().unwrap().len(), 2, "{sessions}");
    let this_sid = current(&sessions);
    let other_sid = current(&sessions_of(&app, access(&other)).await.1);
    let bob_sid = current(&sessions_of(&app, access(&bobs)).await.1);
    assert_ne!(this_sid, other_sid);

    let (app_ref, token) = (&app, access(&this).to_owned());
    let end = |sid: String| {
        let (path, token) = (format!("/auth/sessions/{sid}"), token.clone());
        async move { with_token(app_ref, reqwest::Method::DELETE, &path, &token, None).await }
    };
    // Another user's session is not found, and lives on.
    assert_error(
        &end(bob_sid).await,
        StatusCode::NOT_FOUND,
        "SESSION_NOT_FOUND",
    );
    assert_eq!(me(&app, access(&bobs)).await.0, StatusCode::OK);

    assert_eq!(end(other_sid.clone()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, access(&other)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, access(&this)).await.0, StatusCode::OK);
    assert_eq!(
        sessions_of(&app, access(&this))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_error(
        &end(other_sid).await,
        StatusCode::NOT_FOUND,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &end("no-such-session".into()).await,
        StatusCode::NOT_FOUND,
        "SESSION_NOT_FOUND",
    );
}

/// A signing key the test knows, stored before the server starts.
struct KnownKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

async fn app_with_known_key(dir: &TempDir) -> (TestApp, KnownKey) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = KnownKey {
        kid: "000000000001-testkey".into(),
        pkcs8: pkcs8.as_ref().to_vec(),
        public: pair.public_key().as_ref().to_vec(),
    };
    let path = dir.path().join("accounts.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let stored = json!({
        "pkcs8": URL_SAFE_NO_PAD.encode(&key.pkcs8),
        "public": URL_SAFE_NO_PAD.encode(&key.public),
        "created_at": 1,
    });
    store
        .put(
            "signing_keys",
            &key.kid,
            stored.to_string().as_bytes(),
            Expect::Absent,
        )
        .await
        .unwrap();
    drop(store);
    let app = spawn_app_with(move |config| {
        config.store = StoreConfig::Sqlite { path };
    })
    .await;
    (app, key)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app_with_known_key(&dir).await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    let real = access(&pair);
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(real.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();

    let sign = |changes: Value, kid: &str| {
        let mut claims = payload.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.pkcs8)).unwrap()
    };
    // Signed with the known key and nothing changed: accepted, which shows
    // the refusals below are for what was changed.
    assert_eq!(me(&app, &sign(json!({}), &key.kid)).await.0, StatusCode::OK);

    let t = now();
    let refused = [
        (
            "expired",
            sign(
                json!({"exp": t - 60, "iat": t - 120, "nbf": t - 120}),
                &key.kid,
            ),
        ),
        (
            "not yet valid",
            sign(json!({"nbf": t + 600, "exp": t + 1200}), &key.kid),
        ),
        (
            "wrong audience",
            sign(json!({"aud": "someone-else"}), &key.kid),
        ),
        (
            "wrong issuer",
            sign(json!({"iss": "https://evil.example"}), &key.kid),
        ),
        ("unknown key id", sign(json!({}), "no-such-key")),
        (
            "other user's session",
            sign(
                json!({"sub": "00000000-0000-4000-8000-000000000000"}),
                &key.kid,
            ),
        ),
    ];
    for (what, token) in refused {
        assert_eq!(me(&app, &token).await.0, StatusCode::UNAUTHORIZED, "{what}");
    }

    let body = real.split('.').nth(1).unwrap();
    // alg none, with and without a signature.
    let none_header =
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"000000000001-testkey"}"#);
    for token in [
        format!("{none_header}.{body}."),
        format!("{none_header}.{body}"),
    ] {
        assert_eq!(
            me(&app, &token).await.0,
            StatusCode::UNAUTHORIZED,
            "alg none"
        );
    }
    // HS256 keyed with the public key, the classic confusion attack.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let confused =
        jsonwebtoken::encode(&hs, &payload, &EncodingKey::from_secret(&key.public)).unwrap();
    assert_eq!(
        me(&app, &confused).await.0,
        StatusCode::UNAUTHORIZED,
        "HS256 confusion"
    );
    // A payload edited after signing.
    let mut edited = payload.clone();
    edited["sub"] = json!("someone-else");
    let edited = URL_SAFE_NO_PAD.encode(edited.to_string());
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!("{}.{edited}.{}", parts[0], parts[2]);
    assert_eq!(
        me(&app, &tampered).await.0,
        StatusCode::UNAUTHORIZED,
        "tampered"
    );

    // The JWKS shows the public key and nothing private.
    let (status, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(status, StatusCode::OK);
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], key.kid.as_str());
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["x"], URL_SAFE_NO_PAD.encode(&key.public));
    assert!(keys[0].get("d").is_none());
}

#[tokio::test]
async fn private_keys_and_password_hashes_never_leave_through_the_storage_api() {
    let app = spawn_app_with(|c| c.server.admin_token = Some(Secret::new(TOKEN))).await;
    register(&app, "ada@example.com", PASSWORD).await;
    for path in ["/storage/signing_keys", "/storage/users"] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NAMESPACE_SECRET");
    }
    let response = app
        .client
        .post(app.url("/storage/sessions/x"))
        .bearer_auth(TOKEN)
        .body("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "sessions are not writable"
    );
}

#[tokio::test]
async fn accounts_and_sessions_survive_a_store_switch() {
    let schema = format!("pc_acc_{}", unique_tag());
    let pg_schema = schema.clone();
    let app = spawn_app_with(move |config| {
        config.server.admin_token = Some(Secret::new(TOKEN));
        config.backends.insert(
            "pg".into(),
            BackendConfig::Store(StoreConfig::Postgres {
                url: POSTGRES_URL.into(),
                schema: pg_schema,
                max_connections: 4,
            }),
        );
    })
    .await;
    register(&app, "ada@example.com", PASSWORD).await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;

    let response = app
        .client
        .post(app.url("/storage/switch/pg"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The token issued before the switch, its session and its refresh
    // token all live on in the new store; the signing key came along.
    assert_eq!(me(&app, access(&pair)).await.0, StatusCode::OK);
    let (status, next) = app
        .post_json(
            "/auth/jwt/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    assert_error(
        &register(&app, "ada@example.com", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "REGISTER_USER_ALREADY_EXISTS",
    );
    drop(app);
    drop_schema(&schema).await;
}
