//! API keys (shown once, scoped, revocable), decisions for the
//! authenticated caller, and admin routes decided by Cedar's admin
//! policies for a superuser bootstrapped with `portcullis user create`.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn sign_up(app: &TestApp, email: &str) -> String {
    app.post_json(
        "/auth/register",
        &json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let (status, pair) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    pair["access_token"].as_str().unwrap().to_owned()
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    cred: Auth<'_>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, path, cred, body).await
}

/// A key made from the session `token`, which gives the password again.
async fn new_key(app: &TestApp, token: &str, mut body: Value) -> (StatusCode, Value) {
    body["current_password"] = json!(PASSWORD);
    call(
        app,
        reqwest::Method::POST,
        "/auth/api-keys/",
        Auth::Bearer(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn an_api_key_is_shown_once_scoped_and_revocable() {
    let app = spawn_app().await;
    let token = sign_up(&app, "ada@example.com").await;
    let (status, created) =
        new_key(&app, &token, json!({"name": "ci", "expires_in_days": 30})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(key.starts_with("pcl_"));
    assert!(created["expires_at"].as_u64().unwrap() > created["created_at"].as_u64().unwrap());

    let (status, list) = call(
        &app,
        reqwest::Method::GET,
        "/auth/api-keys/",
        Auth::Bearer(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let listed = list[0].to_string();
    assert!(!listed.contains(&key[20..]), "the secret is never listed");
    assert!(list[0].get("api_key").is_none() && list[0].get("digest").is_none());

    // The key authenticates as its user, in the header or as a bearer token.
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/users/me",
            Auth::ApiKey(&key),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/users/me",
            Auth::Bearer(&key),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let wrong_secret = format!("{}_{}", &key[..20], "x".repeat(43));
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/users/me",
            Auth::ApiKey(&wrong_secret),
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/auth/jwt/logout",
            Auth::ApiKey(&key),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "NOT_A_SESSION",
    );

    // Scopes limit it, and a scoped key cannot mint a wider one.
    let (_, scoped) = new_key(
        &app,
        &token,
        json!({"name": "decider", "scopes": ["decide", "keys"]}),
    )
    .await;
    let scoped = scoped["api_key"].as_str().unwrap().to_owned();
    assert_error(
        &call(
            &app,
            reqwest::Method::GET,
            "/users/me",
            Auth::ApiKey(&scoped),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "INSUFFICIENT_SCOPE",
    );
    for wider in [
        json!({"name": "all"}),
        json!({"name": "p", "scopes": ["profile"]}),
    ] {
        let (status, body) = call(
            &app,
            reqwest::Method::POST,
            "/auth/api-keys/",
            Auth::ApiKey(&scoped),
            Some(wider),
        )
        .await;
        assert_error(&(status, body), StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE");
    }
    assert_error(
        &new_key(&app, &token, json!({"name": "x", "scopes": ["everything"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    );
    assert_error(
        &new_key(&app, &token, json!({"name": "x", "expires_in_days": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    );
    // A session makes a lasting key only with the password again (ASVS 3.7.1).
    for (body, code) in [
        (json!({"name": "x"}), "CURRENT_PASSWORD_REQUIRED"),
        (
            json!({"name": "x", "current_password": "not the password"}),
            "BAD_CURRENT_PASSWORD",
        ),
    ] {
        let post = call(
            &app,
            reqwest::Method::POST,
            "/auth/api-keys/",
            Auth::Bearer(&token),
            Some(body),
        );
        assert_error(&post.await, StatusCode::BAD_REQUEST, code);
    }

    // Revoked: it stops working at once; another user cannot revoke it.
    let id = created["id"].as_str().unwrap();
    let other = sign_up(&app, "bob@example.com").await;
    let path = format!("/auth/api-keys/{id}");
    assert_error(
        &call(
            &app,
            reqwest::Method::DELETE,
            &path,
            Auth::Bearer(&other),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "API_KEY_NOT_FOUND",
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::DELETE,
            &path,
            Auth::Bearer(&token),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/users/me",
            Auth::ApiKey(&key),
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_error(
        &call(
            &app,
            reqwest::Method::DELETE,
            &path,
            Auth::Bearer(&token),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "API_KEY_NOT_FOUND",
    );
}

const CALLER_POLICY: &str = r#"
@id("example-staff-read")
permit(principal is Portcullis::User, action == Docs::Action::"read", resource)
when { principal has email && principal.email like "*@example.com" };
"#;

#[tokio::test]
async fn a_decision_without_a_principal_is_decided_for_the_caller() {
    let app = spawn_app().await;
    app.write_policy_file("caller.cedar", CALLER_POLICY);
    assert_eq!(
        app.post_json("/v1/policies/reload", &json!({})).await.0,
        StatusCode::OK
    );
    let token = sign_up(&app, "ada@example.com").await;
    let (_, created) = new_key(&app, &token, json!({"name": "svc", "scopes": ["decide"]})).await;
    let key = created["api_key"].as_str().unwrap().to_owned();
    let ask = json!({"action": READ, "resource": SALARIES});

    for cred in [Auth::ApiKey(&key), Auth::Bearer(&token)] {
        let (status, body) = call(
            &app,
            reqwest::Method::POST,
            "/v1/is_authorized",
            cred,
            Some(ask.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], "Allow", "{body}");
        assert_eq!(body["diagnostics"]["reason"], json!(["example-staff-read"]));
    }
    // Naming someone else decides for them, as cedar-agent would.
    let (_, other) = call(
        &app,
        reqwest::Method::POST,
        "/v1/is_authorized",
        Auth::ApiKey(&key),
        Some(json!({"principal": MALLORY, "action": READ, "resource": SALARIES})),
    )
    .await;
    assert_eq!(other["decision"], "Deny");
    // No credentials and no principal: nothing to decide for.
    assert_error(
        &call(
            &app,
            reqwest::Method::POST,
            "/v1/is_authorized",
            Auth::None,
            Some(ask.clone()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MISSING_FIELD",
    );
    // Bad credentials are refused, never decided anonymously.
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/v1/is_authorized",
            Auth::ApiKey("pcl_nope"),
            Some(ask.clone())
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // The batch route too.
    let (status, batch) = call(
        &app,
        reqwest::Method::POST,
        "/v1/is_authorized/batch",
        Auth::ApiKey(&key),
        Some(json!({"requests": [ask.clone(), {"principal": MALLORY, "action": READ, "resource": SALARIES}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["decision"], "Allow");
    assert_eq!(batch["results"][1]["decision"], "Deny");

    // A change to the user reaches the next decision, cached or not.
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        "/users/me",
        Auth::Bearer(&token),
        Some(json!({"email": "ada@elsewhere.org", "current_password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = call(
        &app,
        reqwest::Method::POST,
        "/v1/is_authorized",
        Auth::ApiKey(&key),
        Some(ask),
    )
    .await;
    assert_eq!(after["decision"], "Deny", "{after}");

    // Revoked: the next decision with it is refused, not decided anonymously.
    let path = format!("/auth/api-keys/{}", created["id"].as_str().unwrap());
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &path,
        Auth::Bearer(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ask = json!({"action": READ, "resource": SALARIES});
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/v1/is_authorized",
        Auth::ApiKey(&key),
        Some(ask),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// `portcullis user create` against the test server's own store.
fn create_user_with_cli(app: &TestApp, email: &str, admin: bool) {
    let portcullis::config::StoreConfig::Sqlite { path } = &app.config.store else {
        panic!("the test store is SQLite");
    };
    let mut args = vec!["user", "create", "--email", email];
    if admin {
        args.push("--admin");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(std::env::temp_dir())
        .args(&args)
        .env("PORTCULLIS_STORE__PATH", path)
        .env(
            "PORTCULLIS_REGISTRY__STATE_FILE",
            &app.config.registry.state_file,
        )
        .env("PORTCULLIS_MAIL__OUTBOX_DIR", &app.config.mail.outbox_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(email));
}

#[tokio::test]
async fn admin_routes_are_decided_by_cedar_for_signed_in_users() {
    let app = spawn_app().await;
    create_user_with_cli(&app, "root@example.com", true);
    let (status, pair) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "root@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let admin = pair["access_token"].as_str().unwrap().to_owned();
    let user = sign_up(&app, "ada@example.com").await;

    let (status, me) = call(
        &app,
        reqwest::Method::GET,
        "/users/me",
        Auth::Bearer(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["is_superuser"], true);
    assert_eq!(me["is_verified"], true);

    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/storage/backends",
            Auth::Bearer(&admin),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let put = |cred| {
        let request = app.client.post(app.url("/storage/things/k")).body("v");
        match cred {
            Auth::Bearer(t) => request.bearer_auth(t.to_owned()),
            Auth::ApiKey(k) => request.header("x-api-key", k.to_owned()),
            Auth::None => request,
        }
        .send()
    };
    assert_eq!(
        put(Auth::Bearer(&admin)).await.unwrap().status(),
        StatusCode::OK
    );

    // A user without the admin role: signed in, but the policies say no.
    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        "/storage/backends",
        Auth::Bearer(&user),
        None,
    )
    .await;
    assert_error(&(status, body), StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(
        put(Auth::Bearer(&user)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/storage/backends",
            Auth::None,
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );

    // The admin's API keys: with the admin scope they administer, without it not.
    let (_, full) = new_key(&app, &admin, json!({"name": "ops", "scopes": ["admin"]})).await;
    let (_, narrow) = new_key(
        &app,
        &admin,
        json!({"name": "decide", "scopes": ["decide"]}),
    )
    .await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/storage/backends",
            Auth::ApiKey(full["api_key"].as_str().unwrap()),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_error(
        &call(
            &app,
            reqwest::Method::GET,
            "/storage/backends",
            Auth::ApiKey(narrow["api_key"].as_str().unwrap()),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "INSUFFICIENT_SCOPE",
    );
}
