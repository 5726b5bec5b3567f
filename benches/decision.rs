//! Decision latency in-process, on the 11,200-entity data set:
//! raw Cedar `Authorizer::is_authorized` (the limit) against Portcullis's
//! engine uncached and cached, for the same request; and the same engine
//! deciding through RBAC for a principal with 10 roles in a 5-deep
//! hierarchy.
//!
//! `cargo bench --bench decision`

mod dataset;

/// The same allocator as the `portcullis` binary, for raw Cedar too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entity, EntityUid, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::authz::{
    CacheSettings, DecisionRequest, Engine, EntitySnapshot, PolicyInputs, PolicySnapshot,
    ResolvedIdentity, SchemaDoc, grant_policy, grant_policy_id, overlay,
};
use portcullis::domain::{Assignment, Effect, Grant, Role};

fn snapshots() -> (PolicySnapshot, EntitySnapshot) {
    snapshots_with(Vec::new(), Default::default())
}

/// RBAC for `u7`: 10 roles, each the bottom of its own 5-deep chain
/// (`r<i>-0` in `r<i>-1` … in `r<i>-4`), and one grant to the top of the
/// last chain: read any document.
fn rbac() -> (
    Vec<(String, String)>,
    std::collections::BTreeMap<String, serde_json::Value>,
) {
    let mut roles = Vec::new();
    for chain in 0..10 {
        for level in 0..5 {
            roles.push(Role {
                id: format!("r{chain}-{level}"),
                description: None,
                parents: (level < 4)
                    .then(|| format!("r{chain}-{}", level + 1))
                    .into_iter()
                    .collect(),
                created_at: 0,
            });
        }
    }
    let assignment = Assignment {
        principal: r#"Portcullis::User::"u7""#.into(),
        roles: (0..10).map(|chain| format!("r{chain}-0")).collect(),
    };
    let grant = Grant {
        id: "bench".into(),
        subject: r#"Portcullis::Role::"r9-4""#.into(),
        action: Some(r#"Docs::Action::"read""#.into()),
        resource: None,
        resource_type: Some("Docs::Document".into()),
        effect: Effect::Allow,
        created_at: 0,
    };
    (
        vec![(grant_policy_id(&grant), grant_policy(&grant))],
        overlay(&roles, [&assignment]),
    )
}

fn snapshots_with(
    rbac: Vec<(String, String)>,
    overlay: std::collections::BTreeMap<String, serde_json::Value>,
) -> (PolicySnapshot, EntitySnapshot) {
    let inputs = PolicyInputs {
        files: vec![
            ("docs.cedar".into(), dataset::SAMPLE_POLICIES.into()),
            ("bench.cedar".into(), dataset::group_policies()),
        ],
        api: Vec::new(),
        rbac,
        schema: Some(SchemaDoc::Cedar {
            source: "docs.cedarschema".into(),
            text: dataset::SCHEMA.into(),
        }),
        ..PolicyInputs::default()
    };
    let policies = PolicySnapshot::build(&inputs, 1).expect("bench policies are valid");
    let docs = match dataset::entities() {
        serde_json::Value::Array(items) => items,
        _ => unreachable!("the data set is an array"),
    };
    let entities = EntitySnapshot::from_docs(docs, policies.schema.as_ref(), 1)
        .and_then(|e| e.with_overlay(overlay.into(), policies.schema.as_ref(), 1))
        .expect("bench entities are valid");
    (policies, entities)
}

fn bench(c: &mut Criterion) {
    let (policies, entities) = snapshots();
    assert!(policies.policies.len() >= 20 && entities.docs.len() >= 11_000);
    let body = dataset::request(5, "read", 105);
    let request: DecisionRequest = serde_json::from_value(body.clone()).unwrap();
    let schema = policies.schema.clone().unwrap();

    let action = EntityUid::from_str(r#"Docs::Action::"read""#).unwrap();
    let build_request = || {
        Request::new(
            EntityUid::from_str(r#"Portcullis::User::"u5""#).unwrap(),
            action.clone(),
            EntityUid::from_str(r#"Docs::Document::"d105""#).unwrap(),
            Context::from_json_value(body["context"].clone(), Some((&schema, &action))).unwrap(),
            Some(&schema),
        )
        .unwrap()
    };
    let cedar_request = build_request();
    let authorizer = Authorizer::new();
    let raw = authorizer.is_authorized(&cedar_request, &policies.app, &entities.entities);
    assert_eq!(raw.decision(), cedar_policy::Decision::Allow);

    let mut group = c.benchmark_group("decision");
    group.bench_function("raw_cedar_is_authorized", |b| {
        b.iter(|| {
            authorizer.is_authorized(black_box(&cedar_request), &policies.app, &entities.entities)
        })
    });
    group.bench_function("raw_cedar_with_request_parsing", |b| {
        b.iter(|| {
            let request = build_request();
            authorizer.is_authorized(black_box(&request), &policies.app, &entities.entities)
        })
    });

    let (p, e) = snapshots();
    let uncached = Engine::new(
        p,
        e,
        &CacheSettings {
            decision_capacity: 0,
            ..CacheSettings::default()
        },
    );
    assert!(uncached.decide(&request, None).unwrap().outcome.allowed());
    group.bench_function("engine_uncached", |b| {
        b.iter(|| uncached.decide(black_box(&request), None).unwrap())
    });

    // A signed-in caller brings its own entity (as ext_authz with a JWT
    // does): the request's entities are then a merged slice, not the store.
    let caller = ResolvedIdentity {
        entities: vec![
            Entity::from_json_value(
                serde_json::json!({"uid": {"type": "Portcullis::User", "id": "u5"},
                    "attrs": {"email": "u5@example.com", "active": true}, "parents": []}),
                None,
            )
            .unwrap(),
        ]
        .into(),
        stamp: 1,
    };
    assert!(
        uncached
            .decide(&request, Some(&caller))
            .unwrap()
            .outcome
            .allowed()
    );
    group.bench_function("engine_uncached_with_caller_entity", |b| {
        b.iter(|| uncached.decide(black_box(&request), Some(&caller)).unwrap())
    });

    let (p, e) = snapshots();
    let cached = Engine::new(p, e, &CacheSettings::default());
    cached.decide(&request, None).unwrap();
    assert!(cached.decide(&request, None).unwrap().cache_hit);
    group.bench_function("engine_cached", |b| {
        b.iter(|| cached.decide(black_box(&request), None).unwrap())
    });
    group.bench_function("engine_cached_with_json_parsing", |b| {
        let bytes = serde_json::to_vec(&body).unwrap();
        b.iter(|| {
            let request: DecisionRequest = serde_json::from_slice(black_box(&bytes)).unwrap();
            cached.decide(&request, None).unwrap()
        })
    });
    group.finish();

    // RBAC: u7 reads d106 only through r9-0 → … → r9-4's grant.
    let mut group = c.benchmark_group("rbac_10_roles_depth_5");
    let body = dataset::request(7, "read", 106);
    let request: DecisionRequest = serde_json::from_value(body).unwrap();
    let (grants, roles) = rbac();
    let (p, e) = snapshots_with(grants.clone(), roles.clone());
    let uncached = Engine::new(
        p,
        e,
        &CacheSettings {
            decision_capacity: 0,
            ..CacheSettings::default()
        },
    );
    let outcome = uncached.decide(&request, None).unwrap().outcome;
    assert!(outcome.allowed());
    assert_eq!(outcome.reasons(), [r#"rbac/bench"#]);
    group.bench_function("engine_uncached", |b| {
        b.iter(|| uncached.decide(black_box(&request), None).unwrap())
    });
    let (p, e) = snapshots_with(grants, roles);
    let cached = Engine::new(p, e, &CacheSettings::default());
    cached.decide(&request, None).unwrap();
    assert!(cached.decide(&request, None).unwrap().cache_hit);
    group.bench_function("engine_cached", |b| {
        b.iter(|| cached.decide(black_box(&request), None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
