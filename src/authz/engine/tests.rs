//! Decisions for a principal with an identity of its own must be exactly
//! those of the whole stored set with the identity merged in, whichever
//! way the engine builds the entities: the cached base of the principal and
//! action (the resource adds nothing), or everything merged (it does); and
//! a change of the identity or of the stored entities must show in the next
//! decision.

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, Entity, EntityUid, Request};

use super::{Engine, Outcome, ResolvedIdentity};
use crate::authz::{
    CacheSettings, DecisionRequest, EntitySnapshot, PolicyInputs, PolicySnapshot, SchemaDoc,
    UidInput, parse_entities,
};

const ADA: &str = r#"Portcullis::User::"ada""#;

fn policies() -> PolicySnapshot {
    let inputs = PolicyInputs {
        files: vec![(
            "docs.cedar".into(),
            include_str!("../../../policies/docs.cedar").into(),
        )],
        schema: Some(SchemaDoc::Cedar {
            source: "docs.cedarschema".into(),
            text: include_str!("../../../policies/docs.cedarschema").into(),
        }),
        ..PolicyInputs::default()
    };
    PolicySnapshot::build(&inputs, 1).unwrap()
}

/// The sample entities, a document of ada's (whose slice brings its
/// folder and that folder's owner), and `more`.
fn snapshot(
    policies: &PolicySnapshot,
    generation: u64,
    more: &[serde_json::Value],
) -> EntitySnapshot {
    let mut docs: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../../policies/examples/entities.json")).unwrap();
    docs.push(serde_json::json!({
        "uid": {"type": "Docs::Document", "id": "ada-notes"},
        "attrs": {"owner": {"__entity": {"type": "Portcullis::User", "id": "ada"}},
                  "classification": "internal", "public": false},
        "parents": [{"type": "Docs::Folder", "id": "handbook"}]
    }));
    docs.extend(more.iter().cloned());
    EntitySnapshot::from_docs(docs, policies.schema.as_ref(), generation).unwrap()
}

/// ada as a directory describes her: in `viewers`, `active` as given.
fn identity(stamp: u64, active: bool) -> ResolvedIdentity {
    let json = serde_json::json!([{
        "uid": {"type": "Portcullis::User", "id": "ada"},
        "attrs": {"email": "ada@example.com", "active": active},
        "parents": [{"type": "Portcullis::Group", "id": "viewers"}]
    }]);
    let entities: Vec<Entity> = parse_entities(json, None)
        .unwrap()
        .into_iter()
        .map(|p| p.entity)
        .collect();
    ResolvedIdentity {
        entities: entities.into(),
        stamp,
    }
}

/// The answer of the whole stored set, the identity's entities winning and
/// gaining their stored parents.
fn expected(
    policies: &PolicySnapshot,
    stored: &EntitySnapshot,
    identity: &ResolvedIdentity,
    action: &str,
    resource: &str,
) -> (bool, Vec<String>) {
    let mut all: Vec<Entity> = stored
        .entities
        .iter()
        .filter(|e| !identity.entities.iter().any(|i| i.uid() == e.uid()))
        .cloned()
        .collect();
    for entity in identity.entities.iter() {
        let (uid, attrs, mut parents) = entity.clone().into_inner();
        if let Some(stored) = stored.entities.get(&uid) {
            parents.extend(stored.clone().into_inner().2);
        }
        all.push(Entity::new(uid, attrs, parents).unwrap());
    }
    let entities = Entities::from_entities(all, None).unwrap();
    let request = Request::new(
        EntityUid::from_str(ADA).unwrap(),
        EntityUid::from_str(action).unwrap(),
        EntityUid::from_str(resource).unwrap(),
        Context::empty(),
        policies.schema.as_ref(),
    )
    .unwrap();
    let response = Authorizer::new().is_authorized(&request, &policies.app, &entities);
    let outcome = Outcome::from_response(response);
    (outcome.allowed(), outcome.reasons().to_vec())
}

const ACTIONS: [&str; 3] = [
    r#"Docs::Action::"read""#,
    r#"Docs::Action::"write""#,
    r#"Docs::Action::"delete""#,
];

const RESOURCES: [&str; 4] = [
    // Not stored: the base alone.
    r#"Docs::Document::"nowhere""#,
    // Stored, and adds itself, its folder and alice: everything merged.
    r#"Docs::Document::"onboarding""#,
    r#"Docs::Document::"ada-notes""#,
    r#"Docs::Folder::"handbook""#,
];

fn check_grid(engine: &Engine, identity: &ResolvedIdentity) -> usize {
    let policies = engine.policies();
    let stored = engine.entities();
    let mut allowed = 0;
    for action in ACTIONS {
        for resource in RESOURCES {
            let request = DecisionRequest {
                principal: Some(UidInput::Text(ADA.into())),
                action: Some(UidInput::Text(action.into())),
                resource: Some(UidInput::Text(resource.into())),
                ..DecisionRequest::default()
            };
            let decided = engine.decide(&request, Some(identity)).unwrap();
            let (allow, reasons) = expected(&policies, &stored, identity, action, resource);
            assert_eq!(decided.outcome.allowed(), allow, "{action} {resource}");
            assert_eq!(decided.outcome.reasons(), reasons, "{action} {resource}");
            allowed += usize::from(allow);
        }
    }
    allowed
}

#[test]
fn the_base_and_the_full_merge_decide_like_the_whole_set() {
    let policies = policies();
    let stored = snapshot(&policies, 1, &[]);
    // No decision cache, so every round evaluates; the base cache is on.
    let settings = CacheSettings {
        decision_capacity: 0,
        ..CacheSettings::default()
    };
    let engine = Engine::new(policies, stored, &settings);
    let ada = identity(1, true);
    // Twice: the base built, then served from the cache.
    let first = check_grid(&engine, &ada);
    assert_eq!(check_grid(&engine, &ada), first);
    assert!(first > 0, "viewers read and owners do anything");

    // A new read of her identity (inactive now) is seen at once.
    let inactive = identity(2, false);
    assert_eq!(check_grid(&engine, &inactive), 0);

    // So is a stored change: ada joins the editors in the store.
    let policies = engine.policies();
    let ada_stored = serde_json::json!({
        "uid": {"type": "Portcullis::User", "id": "ada"},
        "attrs": {},
        "parents": [{"type": "Portcullis::Group", "id": "editors"}]
    });
    engine.swap_entities(snapshot(&policies, 2, &[ada_stored]));
    let more = check_grid(&engine, &ada);
    assert!(more > first, "{more} > {first}: editors also write");
    let write_nowhere = DecisionRequest {
        principal: Some(UidInput::Text(ADA.into())),
        action: Some(UidInput::Text(ACTIONS[1].into())),
        resource: Some(UidInput::Text(RESOURCES[0].into())),
        ..DecisionRequest::default()
    };
    let decided = engine.decide(&write_nowhere, Some(&ada)).unwrap();
    assert_eq!(decided.outcome.reasons(), ["docs.editors-write"]);
}
