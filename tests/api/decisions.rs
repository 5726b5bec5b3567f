//! `POST /v1/is_authorized` and `/v1/is_authorized/batch` against the
//! sample policies and entities.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn reasons(body: &Value) -> Vec<&str> {
    body["diagnostics"]["reason"]
        .as_array()
        .expect("diagnostics.reason is an array")
        .iter()
        .map(|r| r.as_str().expect("reason is a string"))
        .collect()
}

#[tokio::test]
async fn editor_may_write_and_reasons_name_the_permits() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (status, body) = app.decide(ALICE, WRITE, ONBOARDING, json!({})).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["decision"], "Allow");
    assert_eq!(
        reasons(&body),
        ["docs.editors-write", "docs.owner-full-access"]
    );
    assert_eq!(body["diagnostics"]["errors"], json!([]));
}

#[tokio::test]
async fn viewer_may_read_but_not_write() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (_, read) = app.decide(BOB, READ, ONBOARDING, json!({})).await;
    let (_, write) = app.decide(BOB, WRITE, ONBOARDING, json!({})).await;

    assert_eq!(read["decision"], "Allow");
    assert_eq!(reasons(&read), ["docs.viewers-read"]);
    assert_eq!(write["decision"], "Deny");
    assert!(reasons(&write).is_empty(), "no policy allowed it: {write}");
}

#[tokio::test]
async fn inactive_user_is_denied_by_the_forbid() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (_, body) = app.decide(MALLORY, WRITE, ONBOARDING, json!({})).await;

    assert_eq!(body["decision"], "Deny");
    // The application's forbid, and the built-in guard that holds even
    // without it.
    assert_eq!(
        reasons(&body),
        ["docs.inactive-users-nothing", "portcullis.users-active"]
    );
}

#[tokio::test]
async fn secret_document_needs_mfa_in_context() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (_, without) = app.decide(ALICE, READ, SALARIES, json!({})).await;
    let (_, refused) = app
        .decide(ALICE, READ, SALARIES, json!({"mfa": false}))
        .await;
    let (_, with) = app
        .decide(ALICE, READ, SALARIES, json!({"mfa": true}))
        .await;

    assert_eq!(without["decision"], "Deny");
    assert_eq!(reasons(&without), ["docs.secret-needs-mfa"]);
    assert_eq!(refused["decision"], "Deny");
    assert_eq!(with["decision"], "Allow");
}

#[tokio::test]
async fn object_uids_decide_like_string_uids() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let object = json!({
        "principal": {"type": "Portcullis::User", "id": "alice"},
        "action": {"type": "Docs::Action", "id": "write"},
        "resource": {"__entity": {"type": "Docs::Document", "id": "onboarding"}},
    });

    let (status, from_object) = app.post_json("/v1/is_authorized", &object).await;
    let (_, from_string) = app.decide(ALICE, WRITE, ONBOARDING, Value::Null).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_object, from_string);
    assert_eq!(from_object["decision"], "Allow");
}

#[tokio::test]
async fn batch_answers_in_order_with_errors_in_place() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let batch = json!({"requests": [
        decision_request(ALICE, WRITE, ONBOARDING, json!({})),
        {"action": WRITE, "resource": ONBOARDING},
        decision_request(BOB, WRITE, ONBOARDING, json!({})),
        decision_request("alice", READ, ONBOARDING, json!({})),
    ]});

    let (status, body) = app.post_json("/v1/is_authorized/batch", &batch).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results array");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["decision"], "Allow");
    assert_eq!(results[1]["error"]["code"], "MISSING_FIELD");
    assert_eq!(results[2]["decision"], "Deny");
    assert_eq!(results[3]["error"]["code"], "INVALID_ENTITY_UID");
}

#[tokio::test]
async fn batch_over_the_limit_is_413() {
    let app = spawn_app_with(|c| c.server.batch_limit = 2).await;
    app.seed_sample_entities().await;
    let one = decision_request(ALICE, READ, ONBOARDING, json!({}));
    let within = json!({"requests": [one, one]});
    let over = json!({"requests": [one, one, one]});

    let accepted = app.post_json("/v1/is_authorized/batch", &within).await;
    let refused = app.post_json("/v1/is_authorized/batch", &over).await;

    assert_eq!(accepted.0, StatusCode::OK);
    assert_error(&refused, StatusCode::PAYLOAD_TOO_LARGE, "BATCH_TOO_LARGE");
}

#[tokio::test]
async fn request_entities_replace_the_stored_ones() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let mut promoted = sample_entities();
    let bob = promoted
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["uid"]["id"] == "bob")
        .expect("bob is in the sample");
    bob["parents"] = json!([{"type": "Portcullis::Group", "id": "editors"}]);
    let mut request = decision_request(BOB, WRITE, ONBOARDING, json!({}));

    request["entities"] = promoted;
    let (_, with_promotion) = app.post_json("/v1/is_authorized", &request).await;
    request["entities"] = json!([]);
    let (_, with_nothing) = app.post_json("/v1/is_authorized", &request).await;

    assert_eq!(with_promotion["decision"], "Allow", "{with_promotion}");
    assert_eq!(reasons(&with_promotion), ["docs.editors-write"]);
    assert_eq!(
        with_nothing["decision"], "Deny",
        "stored alice/bob are not used"
    );
    assert_eq!(
        app.verdict(BOB, WRITE, ONBOARDING).await,
        "Deny",
        "store untouched"
    );
}

#[tokio::test]
async fn additional_entities_merge_over_the_stored_ones() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let carol = json!([{
        "uid": {"type": "Portcullis::User", "id": "carol"},
        "attrs": {"active": true},
        "parents": [{"type": "Portcullis::Group", "id": "editors"}],
    }]);
    let mut for_carol =
        decision_request(r#"Portcullis::User::"carol""#, WRITE, ONBOARDING, json!({}));
    for_carol["additional_entities"] = carol.clone();
    let mut for_alice = decision_request(ALICE, WRITE, ONBOARDING, json!({}));
    for_alice["additional_entities"] = carol;

    let (status, carol_body) = app.post_json("/v1/is_authorized", &for_carol).await;
    let (_, alice_body) = app.post_json("/v1/is_authorized", &for_alice).await;

    assert_eq!(status, StatusCode::OK, "{carol_body}");
    assert_eq!(carol_body["decision"], "Allow");
    assert_eq!(reasons(&carol_body), ["docs.editors-write"]);
    // The stored document (owner) and alice's stored group still resolve.
    assert_eq!(
        reasons(&alice_body),
        ["docs.editors-write", "docs.owner-full-access"]
    );
    let (_, stored) = app.get("/v1/entities").await;
    assert!(
        !stored.to_string().contains("carol"),
        "carol was not stored"
    );
}

#[tokio::test]
async fn additional_entity_wins_over_the_stored_one_with_the_same_uid() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let mut request = decision_request(BOB, WRITE, ONBOARDING, json!({}));
    request["additional_entities"] = json!([{
        "uid": {"type": "Portcullis::User", "id": "bob"},
        "attrs": {"active": true},
        "parents": [{"type": "Portcullis::Group", "id": "editors"}],
    }]);

    let (_, body) = app.post_json("/v1/is_authorized", &request).await;

    assert_eq!(body["decision"], "Allow", "{body}");
    assert_eq!(
        app.verdict(BOB, WRITE, ONBOARDING).await,
        "Deny",
        "store untouched"
    );
}

#[tokio::test]
async fn repeated_decision_is_served_from_the_cache() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let first = app
        .decide(ALICE, READ, SALARIES, json!({"mfa": true}))
        .await;
    let second = app
        .decide(ALICE, READ, SALARIES, json!({"mfa": true}))
        .await;
    let metrics = app.metrics().await;

    assert_eq!(first, second);
    let hits = metric_value(&metrics, r#"portcullis_cache_hits_total{cache="decision"}"#)
        .expect("decision cache hit counter is exported");
    assert!(hits > 0.0, "expected a decision cache hit, got {hits}");
}

#[tokio::test]
async fn decisions_are_served_over_h2c_too() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();

    let response = client
        .post(format!("http://{}/v1/is_authorized", app.addr))
        .json(&json!({"principal": ALICE, "action": WRITE, "resource": ONBOARDING}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["decision"], "Allow");
}

#[tokio::test]
async fn explain_shows_the_determining_policies_at_their_lines_and_the_entities_read() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let body = decision_request(ALICE, WRITE, ONBOARDING, json!({}));
    let (status, plain) = app.post_json("/v1/is_authorized", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(plain.get("explain").is_none());

    let (status, explained) = app.post_json("/v1/is_authorized?explain=true", &body).await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(explained["decision"], plain["decision"]);
    let policies = explained["explain"]["policies"].as_array().unwrap();
    assert_eq!(
        policies.len(),
        plain["diagnostics"]["reason"].as_array().unwrap().len()
    );
    assert!(!policies.is_empty());
    let file = std::fs::read_to_string(app.policy_dir.path().join("docs.cedar")).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    for policy in policies {
        assert_eq!(policy["source"]["kind"], "file");
        assert!(
            policy["source"]["path"]
                .as_str()
                .unwrap()
                .ends_with("docs.cedar")
        );
        let line = policy["line"].as_u64().unwrap() as usize;
        let text = policy["text"].as_str().unwrap();
        assert_eq!(lines[line - 1], text.lines().next().unwrap(), "{policy}");
    }
    let entities: Vec<&str> = explained["explain"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for expected in [
        ALICE,
        ONBOARDING,
        r#"Docs::Folder::"handbook""#,
        r#"Portcullis::Group::"editors""#,
    ] {
        assert!(entities.contains(&expected), "{expected} in {entities:?}");
    }
    assert!(!entities.contains(&BOB));
}

#[tokio::test]
async fn a_signed_in_caller_is_decided_with_the_schemas_action_groups() {
    let app = spawn_app().await;
    // A schema whose `read` is in the group `reading`, and a policy on the group.
    std::fs::remove_file(app.policy_dir.path().join("docs.cedar")).unwrap();
    app.write_policy_file(
        "docs.cedarschema",
        "namespace Docs {\n  entity Document;\n  action reading;\n  action read in [reading] appliesTo { principal: [Portcullis::User], resource: [Document] };\n}\n",
    );
    app.write_policy_file(
        "groups.cedar",
        "permit (principal, action in Docs::Action::\"reading\", resource) when { principal has email };\n",
    );
    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credentials = json!({"email": "grace@example.com", "password": "correct horse battery"});
    app.post_json("/auth/register", &credentials).await;
    let (_, pair) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "grace@example.com", "password": "correct horse battery"}),
        )
        .await;
    let token = pair["access_token"].as_str().unwrap();
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/v1/is_authorized",
            Auth::Bearer(token),
            Some(json!({"action": READ, "resource": r#"Docs::Document::"x""#})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "Allow", "{body}");
}
