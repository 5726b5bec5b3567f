//! Every mutating route leaves a change-journal entry: this walks the
//! router's own route table, calls each route that can write once with a
//! request that succeeds, and checks that an entry naming the route was
//! made. The few routes that write nothing the journal keeps (decisions,
//! one-time tokens and challenges, a backup file) are listed with their
//! reason, and for them the test checks that no entry was made. A route
//! added without either fails the test.

use std::collections::BTreeSet;

use portcullis::config::{BackendConfig, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ldap::{OwnSlapd, TOKEN, app_with_directory};
use crate::mfa::{PASSWORD, base32_decode, enrolled, step_now, totp};

/// Routes that write nothing the journal records, and why.
const EXEMPT: &[(&str, &str, &str)] = &[
    ("POST", "/v1/is_authorized", "a decision writes nothing"),
    (
        "POST",
        "/v1/is_authorized/batch",
        "a decision writes nothing",
    ),
    ("POST", "/rbac/check", "a decision writes nothing"),
    (
        "POST",
        "/v1/policies/reload",
        "reads the policy directory again; its files are not in the store",
    ),
    (
        "POST",
        "/rbac/management/reload",
        "reads the grants again, writes nothing",
    ),
    (
        "POST",
        "/auth/request-verify-token",
        "writes only a one-time mailed token",
    ),
    (
        "POST",
        "/auth/forgot-password",
        "writes only a one-time mailed token",
    ),
    (
        "POST",
        "/auth/magic-link/request",
        "writes only a one-time mailed token",
    ),
    (
        "POST",
        "/auth/ldap/{directory}/login",
        "checks a password with the directory; the identity is cached in memory only",
    ),
    (
        "POST",
        "/mfa/delegated/approve",
        "marks only a pending login challenge",
    ),
    (
        "POST",
        "/iam/recovery/backup",
        "writes a backup file, not the store",
    ),
];

struct Walk {
    app: TestApp,
    /// The newest journal entry seen so far.
    newest: Option<String>,
    /// `(method, route)` of every route called.
    called: BTreeSet<(String, String)>,
}

impl Walk {
    async fn entries_since(&self) -> Vec<Value> {
        let (status, page) = with_token(
            &self.app,
            Method::GET,
            "/iam/recovery/changes?limit=50",
            TOKEN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .take_while(|c| Some(c["id"].as_str().unwrap()) != self.newest.as_deref())
            .cloned()
            .collect()
    }

    /// Calls `url`, an instance of `route`, which must succeed; answers its
    /// body. A journaled route must have left an entry whose source names
    /// it; an exempt one must have left none.
    async fn call(
        &mut self,
        method: Method,
        route: &str,
        url: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> Value {
        let (status, answer) = self.app.call(method.clone(), url, auth, body).await;
        assert!(status.is_success(), "{method} {url}: {status} {answer}");
        let entries = self.entries_since().await;
        let source = format!("{method} {route}");
        let exempt = EXEMPT
            .iter()
            .any(|(m, r, _)| *m == method.as_str() && *r == route);
        if exempt {
            assert!(
                entries.is_empty(),
                "{source} is listed as writing nothing journaled, yet: {entries:?}"
            );
        } else {
            assert!(
                entries
                    .iter()
                    .any(|e| e["source"].as_str().unwrap().starts_with(&source)),
                "{source} left no journal entry naming it: {entries:?}"
            );
        }
        if let Some(first) = entries.first() {
            self.newest = Some(first["id"].as_str().unwrap().to_owned());
        }
        self.called.insert((method.to_string(), route.to_owned()));
        answer
    }

    /// Takes the entries made outside the walk as seen.
    async fn catch_up(&mut self) {
        if let Some(first) = self.entries_since().await.first() {
            self.newest = Some(text(first, "id"));
        }
    }

    /// `call` as the admin, on a route without parameters.
    async fn admin(&mut self, method: Method, route: &str, body: Option<Value>) -> Value {
        self.call(method, route, route, Auth::Bearer(TOKEN), body)
            .await
    }

    /// `call` as the admin.
    async fn admin_at(
        &mut self,
        method: Method,
        route: &str,
        url: &str,
        body: Option<Value>,
    ) -> Value {
        self.call(method, route, url, Auth::Bearer(TOKEN), body)
            .await
    }
}

fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` in {value}"))
        .to_owned()
}

#[tokio::test]
async fn every_mutating_route_leaves_a_journal_entry() {
    let slapd = OwnSlapd::start();
    let prefix = format!("pc-walk:{}:", unique_tag());
    let spare = prefix.clone();
    let app = app_with_directory(&slapd, move |config| {
        config.backends.insert(
            "spare".into(),
            BackendConfig::Store(StoreConfig::Redis {
                url: REDIS_URL.into(),
                prefix: spare,
                max_connections: 2,
            }),
        );
    })
    .await;
    let mut walk = Walk {
        app,
        newest: None,
        called: BTreeSet::new(),
    };
    walk.catch_up().await;

    policies_entities_and_schema(&mut walk).await;
    storage(&mut walk).await;
    accounts(&mut walk).await;
    second_factors(&mut walk).await;
    rbac(&mut walk).await;
    identity_graph(&mut walk).await;
    recovery_and_sync(&mut walk).await;

    let mutating: BTreeSet<(String, String)> = portcullis::api::routes("/ext_authz")
        .iter()
        .filter(|r| matches!(r.method, "POST" | "PUT" | "PATCH" | "DELETE"))
        .map(|r| (r.method.to_owned(), r.path.clone()))
        .collect();
    let missed: Vec<_> = mutating.difference(&walk.called).collect();
    assert!(
        missed.is_empty(),
        "routes the walk did not call: {missed:?}"
    );
    let unknown: Vec<_> = walk.called.difference(&mutating).collect();
    assert!(unknown.is_empty(), "called but not routes: {unknown:?}");
    purge_redis(&prefix).await;
}

async fn policies_entities_and_schema(walk: &mut Walk) {
    let policy = |id: &str| json!({"id": id, "content": r#"permit (principal == Portcullis::User::"walker", action == Docs::Action::"read", resource);"#});
    walk.admin(Method::POST, "/v1/policies", Some(policy("walk-1")))
        .await;
    let both = json!([policy("walk-1"), policy("walk-2")]);
    walk.admin(Method::PUT, "/v1/policies", Some(both)).await;
    walk.admin_at(
        Method::PUT,
        "/v1/policies/{id}",
        "/v1/policies/walk-3",
        Some(json!({"content": policy("walk-3")["content"]})),
    )
    .await;
    walk.admin_at(
        Method::DELETE,
        "/v1/policies/{id}",
        "/v1/policies/walk-3",
        None,
    )
    .await;
    walk.app.write_policy_file(
        "walk.cedar",
        r#"@id("walk-file") permit (principal == Portcullis::User::"walker", action == Docs::Action::"write", resource);"#,
    );
    walk.admin(Method::POST, "/v1/policies/reload", Some(json!({})))
        .await;

    let (_, mut schema) = walk.app.get("/v1/schema").await;
    schema["Docs"]["entityTypes"]["Walk"] = json!({});
    walk.admin(Method::PUT, "/v1/schema", Some(schema.clone()))
        .await;

    let one = json!([{"uid": {"type": "Docs::Document", "id": "walk"},
        "attrs": {"owner": {"__entity": {"type": "Portcullis::User", "id": "alice"}},
                  "classification": "internal", "public": false},
        "parents": []}]);
    for base in ["/v1/entities", "/v1/data"] {
        walk.admin(Method::PUT, base, Some(sample_entities())).await;
        walk.admin(Method::PATCH, base, Some(one.clone())).await;
        walk.admin(Method::DELETE, base, None).await;
    }
    walk.admin(Method::PUT, "/v1/entities", Some(sample_entities()))
        .await;
    walk.admin(Method::PATCH, "/v1/entities", Some(one)).await;
    walk.admin_at(
        Method::DELETE,
        "/v1/entities/{type}/{id}",
        "/v1/entities/Docs::Document/walk",
        None,
    )
    .await;
    // Decisions write nothing.
    let ask = decision_request(ALICE, READ, ONBOARDING, json!({}));
    for (route, body) in [
        ("/v1/is_authorized", ask.clone()),
        ("/v1/is_authorized/batch", json!({"requests": [ask]})),
    ] {
        walk.call(Method::POST, route, route, Auth::None, Some(body))
            .await;
    }
}

async fn storage(walk: &mut Walk) {
    walk.admin_at(
        Method::POST,
        "/storage/{namespace}/{key}",
        "/storage/walk/k",
        Some(json!("v")),
    )
    .await;
    walk.admin_at(
        Method::DELETE,
        "/storage/{namespace}/{key}",
        "/storage/walk/k",
        None,
    )
    .await;
    // There and back: each store's journal records the switch into it.
    for to in ["spare", "default"] {
        walk.admin_at(
            Method::POST,
            "/storage/switch/{backend}",
            &format!("/storage/switch/{to}"),
            None,
        )
        .await;
    }
}

async fn accounts(walk: &mut Walk) {
    let email = "walker@example.com";
    let user = walk
        .call(
            Method::POST,
            "/auth/register",
            "/auth/register",
            Auth::None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    let id = text(&user, "id");
    let login = json!({"username": email, "password": PASSWORD});
    let pair = walk
        .call(
            Method::POST,
            "/auth/jwt/login",
            "/auth/jwt/login",
            Auth::None,
            Some(login.clone()),
        )
        .await;
    let pair = walk
        .call(
            Method::POST,
            "/auth/jwt/refresh",
            "/auth/jwt/refresh",
            Auth::None,
            Some(json!({"refresh_token": text(&pair, "refresh_token")})),
        )
        .await;
    let session = text(&pair, "access_token");
    walk.call(
        Method::PATCH,
        "/users/me",
        "/users/me",
        Auth::Bearer(&session),
        Some(json!({"name": "Walker"})),
    )
    .await;
    let key = walk
        .call(
            Method::POST,
            "/auth/api-keys/",
            "/auth/api-keys/",
            Auth::Bearer(&session),
            Some(json!({"name": "walk", "current_password": PASSWORD})),
        )
        .await;
    walk.call(
        Method::DELETE,
        "/auth/api-keys/{key_id}",
        &format!("/auth/api-keys/{}", text(&key, "id")),
        Auth::Bearer(&session),
        None,
    )
    .await;

    // A session ended from another one of the same user.
    let (_, extra) = walk
        .app
        .call(
            Method::POST,
            "/auth/jwt/login",
            Auth::None,
            Some(login.clone()),
        )
        .await;
    walk.catch_up().await;
    let (_, listed) = walk
        .app
        .call(
            Method::GET,
            "/auth/sessions",
            Auth::Bearer(&text(&extra, "access_token")),
            None,
        )
        .await;
    let sid = listed
        .as_array()
        .and_then(|all| all.iter().find(|s| s["current"] == true))
        .map(|s| text(s, "id"))
        .expect("the caller's session is listed as current");
    walk.call(
        Method::DELETE,
        "/auth/sessions/{sid}",
        &format!("/auth/sessions/{sid}"),
        Auth::Bearer(&session),
        None,
    )
    .await;

    // Mailed tokens: asking writes only the token; spending it writes.
    let to = json!({"email": email});
    walk.call(
        Method::POST,
        "/auth/request-verify-token",
        "/auth/request-verify-token",
        Auth::None,
        Some(to.clone()),
    )
    .await;
    let token = walk
        .app
        .mailed_token(email, "Verify your e-mail address")
        .await;
    walk.call(
        Method::POST,
        "/auth/verify",
        "/auth/verify",
        Auth::None,
        Some(json!({"token": token})),
    )
    .await;
    walk.call(
        Method::POST,
        "/auth/forgot-password",
        "/auth/forgot-password",
        Auth::None,
        Some(to.clone()),
    )
    .await;
    let token = walk.app.mailed_token(email, "Reset your password").await;
    walk.call(
        Method::POST,
        "/auth/reset-password",
        "/auth/reset-password",
        Auth::None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await;
    walk.call(
        Method::POST,
        "/auth/magic-link/request",
        "/auth/magic-link/request",
        Auth::None,
        Some(to),
    )
    .await;
    let token = walk.app.mailed_token(email, "Your sign-in link").await;
    let pair = walk
        .call(
            Method::POST,
            "/auth/magic-link/login",
            "/auth/magic-link/login",
            Auth::None,
            Some(json!({"token": token})),
        )
        .await;
    walk.call(
        Method::POST,
        "/auth/jwt/logout",
        "/auth/jwt/logout",
        Auth::Bearer(&text(&pair, "access_token")),
        None,
    )
    .await;
    walk.call(
        Method::POST,
        "/auth/ldap/{directory}/login",
        "/auth/ldap/corp/login",
        Auth::None,
        Some(json!({"username": "carol", "password": "carol-secret"})),
    )
    .await;

    // Admin account management.
    walk.admin(
        Method::PATCH,
        "/management/settings/",
        Some(json!({"password_min_length": 12})),
    )
    .await;
    walk.admin(Method::POST, "/management/keys/rotate", None)
        .await;
    walk.admin_at(
        Method::PATCH,
        "/users/{id}",
        &format!("/users/{id}"),
        Some(json!({"name": "W."})),
    )
    .await;
    walk.admin_at(Method::DELETE, "/users/{id}", &format!("/users/{id}"), None)
        .await;
}

async fn second_factors(walk: &mut Walk) {
    let email = "second@example.com";
    // Enrolment, as tests/api/mfa.rs drives it, journaled on the way.
    let (session, _, _) = enrolled(&walk.app, email).await;
    walk.catch_up().await;
    let (_, me) = with_token(&walk.app, Method::GET, "/users/me", &session, None).await;
    let id = text(&me, "id");

    // A login that waits for approval from the enrolled session.
    let (_, pending) = walk
        .app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": email, "password": PASSWORD}),
        )
        .await;
    let challenge = text(&pending, "challenge");
    let challenge_id = challenge.split('_').nth(1).unwrap().to_owned();
    walk.call(
        Method::POST,
        "/mfa/delegated/approve",
        "/mfa/delegated/approve",
        Auth::Bearer(&session),
        Some(json!({"challenge_id": challenge_id})),
    )
    .await;
    walk.call(
        Method::POST,
        "/mfa/delegated/complete",
        "/mfa/delegated/complete",
        Auth::None,
        Some(json!({"challenge": challenge})),
    )
    .await;
    walk.admin_at(
        Method::DELETE,
        "/users/{id}/mfa",
        &format!("/users/{id}/mfa"),
        None,
    )
    .await;

    // Enrolled again through the walk, then removed by its owner.
    let enrollment = walk
        .call(
            Method::POST,
            "/mfa/totp/enroll",
            "/mfa/totp/enroll",
            Auth::Bearer(&session),
            Some(json!({})),
        )
        .await;
    let secret = base32_decode(&text(&enrollment, "secret"));
    let step = step_now();
    walk.call(
        Method::POST,
        "/mfa/totp/verify",
        "/mfa/totp/verify",
        Auth::Bearer(&session),
        Some(json!({"code": totp(&secret, step)})),
    )
    .await;
    walk.call(
        Method::DELETE,
        "/mfa/totp",
        "/mfa/totp",
        Auth::Bearer(&session),
        Some(json!({"code": totp(&secret, step + 1)})),
    )
    .await;
}

async fn rbac(walk: &mut Walk) {
    let grant = json!({"role": "walker", "object": ONBOARDING, "action": WRITE});
    walk.admin_at(
        Method::PUT,
        "/rbac/roles/{id}",
        "/rbac/roles/walker",
        Some(json!({"parents": []})),
    )
    .await;
    walk.admin(Method::POST, "/rbac/policies", Some(grant.clone()))
        .await;
    walk.admin(Method::DELETE, "/rbac/policies", Some(grant.clone()))
        .await;
    walk.admin(
        Method::POST,
        "/rbac/policies/bulk",
        Some(json!({"op": "add", "items": [grant]})),
    )
    .await;
    walk.admin_at(
        Method::POST,
        "/rbac/users/{id}/roles",
        "/rbac/users/bob/roles",
        Some(json!({"role": "walker"})),
    )
    .await;
    walk.call(
        Method::POST,
        "/rbac/check",
        "/rbac/check",
        Auth::None,
        Some(json!({"subject": BOB, "object": ONBOARDING, "action": WRITE})),
    )
    .await;
    walk.admin_at(
        Method::DELETE,
        "/rbac/users/{id}/roles",
        "/rbac/users/bob/roles",
        Some(json!({"role": "walker"})),
    )
    .await;
    walk.admin(Method::POST, "/rbac/management/reload", Some(json!({})))
        .await;
    let reset = walk
        .admin(
            Method::POST,
            "/rbac/management/reset",
            Some(json!({"confirm": "reset all RBAC grants and assignments"})),
        )
        .await;
    walk.admin_at(
        Method::POST,
        "/rbac/management/restore/{id}",
        &format!("/rbac/management/restore/{}", text(&reset, "backup_id")),
        Some(json!({"confirm": true})),
    )
    .await;
    walk.admin_at(
        Method::DELETE,
        "/rbac/roles/{id}",
        "/rbac/roles/walker?cascade=true",
        None,
    )
    .await;
}

async fn identity_graph(walk: &mut Walk) {
    walk.admin(
        Method::POST,
        "/iam/ai-providers",
        Some(json!({"id": "walkai", "name": "Walk AI", "kind": "openai", "models": ["m1"]})),
    )
    .await;
    for (kind, body) in [
        (
            "service-accounts",
            json!({"id": "walk", "name": "Walk", "owner": "alice"}),
        ),
        (
            "ai-agents",
            json!({"id": "walk", "name": "Walk", "owner": "alice", "provider": "walkai", "model": "m1"}),
        ),
    ] {
        let base = format!("/iam/{kind}");
        walk.admin(Method::POST, &base, Some(body)).await;
        let one = format!("{base}/{{id}}");
        walk.admin_at(
            Method::PATCH,
            &one,
            &format!("{base}/walk"),
            Some(json!({"name": "Walked"})),
        )
        .await;
        let issued = walk
            .admin_at(
                Method::POST,
                &format!("{one}/keys"),
                &format!("{base}/walk/keys"),
                Some(json!({"name": "k"})),
            )
            .await;
        let credential = text(&issued, "id");
        walk.admin_at(
            Method::POST,
            &format!("{one}/rotate/{{credential_id}}"),
            &format!("{base}/walk/rotate/{credential}"),
            None,
        )
        .await;
        walk.admin_at(
            Method::DELETE,
            &format!("{one}/keys/{{credential_id}}"),
            &format!("{base}/walk/keys/{credential}"),
            None,
        )
        .await;
    }
    let link = json!({"from": r#"Portcullis::ServiceAccount::"walk""#, "kind": "member-of",
        "to": r#"Portcullis::Group::"editors""#});
    walk.admin(Method::POST, "/iam/graph/link", Some(link.clone()))
        .await;
    walk.admin(Method::DELETE, "/iam/graph/link", Some(link))
        .await;
    for (route, url) in [
        ("/iam/ai-agents/{id}", "/iam/ai-agents/walk"),
        ("/iam/service-accounts/{id}", "/iam/service-accounts/walk"),
        ("/iam/ai-providers/{id}", "/iam/ai-providers/walkai"),
    ] {
        walk.admin_at(Method::DELETE, route, url, None).await;
    }
}

async fn recovery_and_sync(walk: &mut Walk) {
    walk.admin(Method::POST, "/iam/sync/run", Some(json!({"mode": "full"})))
        .await;
    walk.admin(
        Method::PATCH,
        "/iam/recovery/config",
        Some(json!({"retention_count": 5})),
    )
    .await;
    let change = walk.newest.clone().expect("the settings change's entry");
    walk.admin_at(
        Method::POST,
        "/iam/recovery/rollback/{change_id}",
        &format!("/iam/recovery/rollback/{change}"),
        None,
    )
    .await;
    let manifest = walk
        .admin(Method::POST, "/iam/recovery/backup", Some(json!({})))
        .await;
    walk.admin_at(
        Method::POST,
        "/iam/recovery/restore/{backup_id}",
        &format!("/iam/recovery/restore/{}", text(&manifest, "id")),
        Some(json!({"confirm": true})),
    )
    .await;
    let (status, _) = walk
        .app
        .call(
            Method::GET,
            "/v1/policies/walk-1",
            Auth::Bearer(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the restore brought the walk back");
    walk.admin(Method::DELETE, "/v1/schema", None).await;
}
