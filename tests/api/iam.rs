//! The identity graph over HTTP: service accounts with credentials that
//! decide as them (rotation with a grace window), AI agents bounded by
//! their owners, providers, typed links with cycles refused, memberships and
//! dependents with their paths, and deletes that need `cascade`.

use std::time::Duration;

use portcullis::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "iam-admin-token-0123456789";
const CI: &str = r#"Portcullis::ServiceAccount::"ci""#;
const HELPER: &str = r#"Portcullis::Agent::"helper""#;
const EDITORS: &str = r#"Portcullis::Group::"editors""#;

async fn iam_app(adjust: impl FnOnce(&mut portcullis::config::Config)) -> TestApp {
    let app = spawn_app_with(|c| {
        c.server.admin_token = Some(Secret::new(TOKEN));
        adjust(c);
    })
    .await;
    app.seed_sample_entities().await;
    app
}

impl TestApp {
    async fn iam(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Auth::Bearer(TOKEN), body).await
    }

    async fn created(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.iam(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {created}");
        created
    }

    /// A decision made with a credential and no principal: as its holder.
    async fn decide_as(
        &self,
        credential: &str,
        action: &str,
        resource: &str,
    ) -> (StatusCode, Value) {
        let body = json!({"action": action, "resource": resource, "context": {}});
        self.call(
            Method::POST,
            "/v1/is_authorized",
            Auth::ApiKey(credential),
            Some(body),
        )
        .await
    }
}

/// `/iam/graph/<uid>/<view>`, the uid percent-encoded.
fn graph_path(uid: &str, view: &str) -> String {
    let encoded: String = uid
        .chars()
        .map(|c| match c {
            '"' => "%22".to_owned(),
            ':' => "%3A".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("/iam/graph/{encoded}/{view}")
}

async fn service_account_in_editors(app: &TestApp) {
    app.created(
        "/iam/service-accounts",
        json!({"id": "ci", "name": "CI pipeline", "owner": "alice"}),
    )
    .await;
    app.created(
        "/iam/graph/link",
        json!({"from": CI, "kind": "member-of", "to": EDITORS}),
    )
    .await;
}

#[tokio::test]
async fn a_service_account_key_decides_as_it_and_a_rotated_secret_lasts_the_grace_window() {
    let app = iam_app(|c| c.iam.rotation_grace_seconds = 2).await;
    service_account_in_editors(&app).await;
    let issued = app
        .created(
            "/iam/service-accounts/ci/keys",
            json!({"name": "deploy", "expires_in_days": 30}),
        )
        .await;
    let old = issued["secret"].as_str().unwrap().to_owned();
    let credential_id = issued["id"].as_str().unwrap().to_owned();
    assert!(old.starts_with(&format!("pcs_{credential_id}_")), "{old}");

    // The key decides as the service account, through its group.
    let (status, body) = app.decide_as(&old, WRITE, ONBOARDING).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "Allow", "{body}");
    assert_eq!(body["diagnostics"]["reason"], json!(["docs.editors-write"]));

    // Listed without any secret or digest.
    let (_, listed) = app
        .iam(Method::GET, "/iam/service-accounts/ci/keys", None)
        .await;
    let text = listed.to_string();
    assert!(
        !text.contains(&old[20..]) && !text.contains("digest"),
        "{text}"
    );
    assert_eq!(listed["keys"][0]["prefix"], format!("pcs_{credential_id}"));

    let (status, rotated) = app
        .iam(
            Method::POST,
            &format!("/iam/service-accounts/ci/rotate/{credential_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(
        rotated["previous_valid_until"].as_u64().is_some(),
        "{rotated}"
    );
    for secret in [&new, &old] {
        let (status, body) = app.decide_as(secret, WRITE, ONBOARDING).await;
        assert_eq!(
            (status, body["decision"].clone()),
            (StatusCode::OK, json!("Allow"))
        );
    }

    // After the grace window only the new secret works.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = app.decide_as(&old, WRITE, ONBOARDING).await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert_eq!(
        app.decide_as(&new, WRITE, ONBOARDING).await.0,
        StatusCode::OK
    );

    // Revoked: it stops at once; a tampered secret never worked.
    let tampered = format!("{}x", &new[..new.len() - 1]);
    assert_eq!(
        app.decide_as(&tampered, WRITE, ONBOARDING).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .iam(
            Method::DELETE,
            &format!("/iam/service-accounts/ci/keys/{credential_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.decide_as(&new, WRITE, ONBOARDING).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn disabling_or_deleting_a_service_account_denies_its_next_decision() {
    let app = iam_app(|_| {}).await;
    service_account_in_editors(&app).await;
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");

    let (status, body) = app
        .iam(
            Method::PATCH,
            "/iam/service-accounts/ci",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, denied) = app.decide(CI, WRITE, ONBOARDING, json!({})).await;
    assert_eq!(denied["decision"], "Deny");
    assert_eq!(
        denied["diagnostics"]["reason"],
        json!(["portcullis.service-accounts-enabled"])
    );
    // Stored data cannot enable it behind the graph's back.
    let (status, body) = app
        .patch_json(
            "/v1/entities",
            &json!([{"uid": {"type": "Portcullis::ServiceAccount", "id": "ci"},
                "attrs": {"disabled": false}, "parents": []}]),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Deny");
    let (status, _) = app
        .delete("/v1/entities/Portcullis::ServiceAccount/ci")
        .await;
    assert!(status.is_success(), "{status}");

    app.iam(
        Method::PATCH,
        "/iam/service-accounts/ci",
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");

    let (status, body) = app
        .iam(Method::DELETE, "/iam/service-accounts/ci", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Deny");
    let missing = app.iam(Method::GET, "/iam/service-accounts/ci", None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "IDENTITY_NOT_FOUND");
    // Its links went with it: a new account of the same id starts bare.
    app.created(
        "/iam/service-accounts",
        json!({"id": "ci", "name": "again", "owner": "alice"}),
    )
    .await;
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn an_agent_never_does_more_than_its_owner() {
    let app = iam_app(|_| {}).await;
    app.created(
        "/iam/ai-providers",
        json!({"id": "openai", "name": "OpenAI", "kind": "openai",
               "endpoint": "https://api.openai.example/v1", "models": ["gpt-5"]}),
    )
    .await;
    // Both agents are editors themselves; mallory is deactivated, alice is not.
    for (id, owner) in [("helper", "mallory"), ("scribe", "alice")] {
        app.created(
            "/iam/ai-agents",
            json!({"id": id, "name": id, "owner": owner, "provider": "openai", "model": "gpt-5"}),
        )
        .await;
        app.created(
            "/iam/graph/link",
            json!({"from": format!("Portcullis::Agent::\"{id}\""), "kind": "member-of", "to": EDITORS}),
        )
        .await;
    }
    let (status, body) = app.decide(HELPER, READ, ONBOARDING, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "Deny", "{body}");
    assert_eq!(body["error"]["code"], "OWNER_DENIED", "{body}");
    assert_eq!(
        body["diagnostics"]["reason"],
        json!(["docs.inactive-users-nothing", "portcullis.users-active"])
    );
    assert_eq!(
        app.verdict(r#"Portcullis::Agent::"scribe""#, READ, ONBOARDING)
            .await,
        "Allow"
    );
    // Its own policies still bind it: the sample's agents only read.
    assert_eq!(
        app.verdict(r#"Portcullis::Agent::"scribe""#, WRITE, ONBOARDING)
            .await,
        "Deny"
    );
    // /rbac/check gives the same answer.
    let (_, checked) = app
        .post_json(
            "/rbac/check",
            &json!({"subject": HELPER, "object": ONBOARDING, "action": READ}),
        )
        .await;
    assert_eq!(checked["allowed"], false, "{checked}");

    // A model its provider does not offer is refused; no secrets are taken.
    let bad_model = app
        .iam(
            Method::POST,
            "/iam/ai-agents",
            Some(json!({"name": "x", "owner": "alice", "provider": "openai", "model": "other"})),
        )
        .await;
    assert_error(&bad_model, StatusCode::BAD_REQUEST, "IAM_INVALID");
    let (status, _) = app
        .iam(
            Method::POST,
            "/iam/ai-providers",
            Some(json!({"name": "x", "kind": "openai", "api_key": "sk-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, listed) = app.iam(Method::GET, "/iam/ai-providers", None).await;
    assert_eq!(
        listed["providers"][0]["uid"],
        r#"Portcullis::Provider::"openai""#
    );
}

#[tokio::test]
async fn links_that_close_a_cycle_are_refused() {
    let app = iam_app(|_| {}).await;
    let group = |g: &str| format!("Portcullis::Group::\"{g}\"");
    for (from, to) in [("a", "b"), ("b", "c")] {
        app.created(
            "/iam/graph/link",
            json!({"from": group(from), "kind": "member-of", "to": group(to)}),
        )
        .await;
    }
    let cycle = app
        .iam(
            Method::POST,
            "/iam/graph/link",
            Some(json!({"from": group("c"), "kind": "member-of", "to": group("a")})),
        )
        .await;
    assert_error(&cycle, StatusCode::CONFLICT, "GRAPH_CYCLE");
    assert!(cycle.1["error"]["message"].as_str().unwrap().contains("→"));
    let own = app
        .iam(
            Method::POST,
            "/iam/graph/link",
            Some(json!({"from": group("a"), "kind": "member-of", "to": group("a")})),
        )
        .await;
    assert_error(&own, StatusCode::CONFLICT, "GRAPH_CYCLE");
    let again = app
        .iam(
            Method::POST,
            "/iam/graph/link",
            Some(json!({"from": group("a"), "kind": "member-of", "to": group("b")})),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "IDENTITY_EXISTS");
    // Edge kinds join only the types they are for.
    let wrong = app
        .iam(
            Method::POST,
            "/iam/graph/link",
            Some(json!({"from": group("a"), "kind": "member-of", "to": ALICE})),
        )
        .await;
    assert_error(&wrong, StatusCode::BAD_REQUEST, "IAM_INVALID");
    // Removing an edge takes it out of decisions' entities.
    let (status, _) = app
        .iam(
            Method::DELETE,
            "/iam/graph/link",
            Some(json!({"from": group("b"), "kind": "member-of", "to": group("c")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let gone = app
        .iam(
            Method::DELETE,
            "/iam/graph/link",
            Some(json!({"from": group("b"), "kind": "member-of", "to": group("c")})),
        )
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "IDENTITY_NOT_FOUND");
    // Now c → a is no cycle.
    app.created(
        "/iam/graph/link",
        json!({"from": group("c"), "kind": "member-of", "to": group("a")}),
    )
    .await;
}

#[tokio::test]
async fn memberships_and_dependents_come_with_their_paths_and_deletes_need_cascade() {
    let app = iam_app(|c| c.iam.max_traversal_depth = 3).await;
    service_account_in_editors(&app).await;
    app.created(
        "/iam/ai-providers",
        json!({"id": "local", "name": "Local", "kind": "ollama"}),
    )
    .await;
    app.created(
        "/iam/ai-agents",
        json!({"id": "helper", "name": "Helper", "owner": CI, "provider": "local"}),
    )
    .await;
    let group = |g: &str| format!("Portcullis::Group::\"{g}\"");
    for (from, to) in [
        (EDITORS.to_owned(), group("staff")),
        (group("staff"), group("everyone")),
        (group("everyone"), group("world")),
    ] {
        app.created(
            "/iam/graph/link",
            json!({"from": from, "kind": "member-of", "to": to}),
        )
        .await;
    }

    let (status, body) = app
        .iam(Method::GET, &graph_path(CI, "memberships"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let staff = body["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == group("staff"))
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(staff["path"], json!([CI, EDITORS, group("staff")]));
    // `world` is 4 steps away, past the depth limit of 3.
    assert_eq!(body["truncated"], true, "{body}");
    assert!(!body.to_string().contains("world"), "{body}");

    let (_, body) = app
        .iam(Method::GET, &graph_path("alice", "dependents"), None)
        .await;
    let helper = body["dependents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == HELPER)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(helper["path"], json!([ALICE, CI, HELPER]));
    assert_eq!(helper["via"], "owned-by");

    // The service account owns the agent: no delete without cascade.
    let blocked = app
        .iam(Method::DELETE, "/iam/service-accounts/ci", None)
        .await;
    assert_error(&blocked, StatusCode::CONFLICT, "HAS_DEPENDENTS");
    assert_eq!(blocked.1["error"]["dependents"], json!([HELPER]));
    // Nor the provider the agent uses.
    let blocked = app
        .iam(Method::DELETE, "/iam/ai-providers/local", None)
        .await;
    assert_error(&blocked, StatusCode::CONFLICT, "HAS_DEPENDENTS");
    assert_eq!(
        app.iam(Method::GET, "/iam/ai-agents/helper", None).await.0,
        StatusCode::OK
    );

    let (status, body) = app
        .iam(
            Method::DELETE,
            "/iam/service-accounts/ci?cascade=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dependents_removed"], json!([HELPER]));
    let gone = app.iam(Method::GET, "/iam/ai-agents/helper", None).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "IDENTITY_NOT_FOUND");
    assert_eq!(app.verdict(HELPER, READ, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn bad_graph_input_gets_a_clear_error_and_changes_nothing() {
    let app = iam_app(|_| {}).await;
    let cases = [
        (
            "/iam/service-accounts",
            json!({"id": "no spaces", "name": "x", "owner": "alice"}),
            StatusCode::BAD_REQUEST,
            "IAM_INVALID",
        ),
        (
            "/iam/service-accounts",
            json!({"name": "x", "owner": "nobody-here"}),
            StatusCode::NOT_FOUND,
            "IDENTITY_NOT_FOUND",
        ),
        (
            "/iam/service-accounts",
            json!({"name": "x", "owner": EDITORS}),
            StatusCode::BAD_REQUEST,
            "IAM_INVALID",
        ),
        (
            "/iam/ai-agents",
            json!({"name": "x", "owner": "alice", "provider": "missing"}),
            StatusCode::NOT_FOUND,
            "IDENTITY_NOT_FOUND",
        ),
        (
            "/iam/ai-providers",
            json!({"name": "x", "kind": "crystal-ball"}),
            StatusCode::BAD_REQUEST,
            "IAM_INVALID",
        ),
        (
            "/iam/ai-providers",
            json!({"name": "x", "kind": "openai", "endpoint": "https://user:pw@api.example"}),
            StatusCode::BAD_REQUEST,
            "IAM_INVALID",
        ),
        (
            "/iam/service-accounts/missing/keys",
            json!({}),
            StatusCode::NOT_FOUND,
            "IDENTITY_NOT_FOUND",
        ),
        (
            "/iam/graph/link",
            json!({"from": CI, "kind": "member-of", "to": EDITORS}),
            StatusCode::NOT_FOUND,
            "IDENTITY_NOT_FOUND",
        ),
        (
            "/iam/graph/link",
            json!({"from": ALICE, "kind": "member-of", "to": r#"Portcullis::Role::"nope""#}),
            StatusCode::NOT_FOUND,
            "IDENTITY_NOT_FOUND",
        ),
    ];
    for (path, body, status, code) in cases {
        let reply = app.iam(Method::POST, path, Some(body.clone())).await;
        assert_error(&reply, status, code);
    }
    for list in [
        "/iam/service-accounts",
        "/iam/ai-agents",
        "/iam/ai-providers",
    ] {
        let (_, body) = app.iam(Method::GET, list, None).await;
        let items = body.as_object().unwrap().values().next().unwrap();
        assert_eq!(items, &json!([]), "{list}: {body}");
    }
    // Admin only.
    let (status, _) = app
        .call(Method::GET, "/iam/service-accounts", Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
