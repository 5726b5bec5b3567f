//! The decision cache never serves a stale answer: an entity or policy
//! change is visible to the very next decision, even when the same request
//! was just cached.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const HITS: &str = r#"portcullis_cache_hits_total{cache="decision"}"#;

/// Asks the same question twice and checks that the second answer came from
/// the cache, so the change that follows has a cached entry to invalidate.
async fn warm(app: &TestApp, principal: &str, action: &str, resource: &str) -> String {
    let before = metric_value(&app.metrics().await, HITS).unwrap_or(0.0);
    let first = app.verdict(principal, action, resource).await;
    let second = app.verdict(principal, action, resource).await;
    let after = metric_value(&app.metrics().await, HITS).unwrap_or(0.0);
    assert_eq!(first, second);
    assert!(after > before, "the warm-up request was not cached");
    first
}

#[tokio::test]
async fn entity_change_flips_the_next_decision() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(warm(&app, BOB, WRITE, ONBOARDING).await, "Deny");
    let promoted = json!([{
        "uid": {"type": "Portcullis::User", "id": "bob"},
        "attrs": {"email": "bob@example.com", "active": true},
        "parents": [{"type": "Portcullis::Group", "id": "editors"}],
    }]);

    let (status, body) = app.patch_json("/v1/entities", &promoted).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 1);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn entity_deletion_flips_the_next_decision() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(warm(&app, BOB, READ, ONBOARDING).await, "Allow");

    let (status, body) = app.delete("/v1/entities/Portcullis::User/bob").await;

    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.verdict(BOB, READ, ONBOARDING).await, "Deny");
    let again = app.delete("/v1/entities/Portcullis::User/bob").await;
    assert_error(&again, StatusCode::NOT_FOUND, "ENTITY_NOT_FOUND");
}

#[tokio::test]
async fn policy_change_flips_the_next_decision() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(warm(&app, BOB, WRITE, ONBOARDING).await, "Deny");
    let permit = json!({
        "id": "bob-may-write",
        "content": r#"permit (principal == Portcullis::User::"bob", action == Docs::Action::"write", resource);"#,
    });

    let (created, _) = app.post_json("/v1/policies", &permit).await;
    let after_create = app.verdict(BOB, WRITE, ONBOARDING).await;
    let (deleted, _) = app.delete("/v1/policies/bob-may-write").await;
    let after_delete = app.verdict(BOB, WRITE, ONBOARDING).await;

    assert_eq!(created, StatusCode::CREATED);
    assert_eq!(after_create, "Allow");
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(after_delete, "Deny");
}

#[tokio::test]
async fn clearing_entities_flips_the_next_decision() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(warm(&app, ALICE, WRITE, ONBOARDING).await, "Allow");

    let (status, _) = app.delete("/v1/entities").await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn decisions_are_right_with_the_cache_turned_off() {
    let app = spawn_app_with(|c| c.cache.decision_capacity = 0).await;
    app.seed_sample_entities().await;
    let (_, discovery) = app.get("/discovery").await;
    assert_eq!(discovery["features"]["decision_cache"], false);

    let first = app.verdict(ALICE, WRITE, ONBOARDING).await;
    let second = app.verdict(ALICE, WRITE, ONBOARDING).await;

    assert_eq!((first.as_str(), second.as_str()), ("Allow", "Allow"));
    let hits = metric_value(&app.metrics().await, HITS).unwrap_or(0.0);
    assert_eq!(hits, 0.0, "a disabled cache never hits");
}
