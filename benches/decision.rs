//! Decision latency in-process, on the 11,200-entity data set:
//! raw Cedar `Authorizer::is_authorized` (the limit) against Portcullis's
//! engine uncached and cached, for the same request.
//!
//! `cargo bench --bench decision`

mod dataset;

/// The same allocator as the `portcullis` binary, for raw Cedar too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, EntityUid, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::authz::{
    CacheSettings, DecisionRequest, Engine, EntitySnapshot, PolicyInputs, PolicySnapshot, SchemaDoc,
};

fn snapshots() -> (PolicySnapshot, EntitySnapshot) {
    let inputs = PolicyInputs {
        files: vec![
            ("docs.cedar".into(), dataset::SAMPLE_POLICIES.into()),
            ("bench.cedar".into(), dataset::group_policies()),
        ],
        api: Vec::new(),
        rbac: Vec::new(),
        schema: Some(SchemaDoc::Cedar {
            source: "docs.cedarschema".into(),
            text: dataset::SCHEMA.into(),
        }),
    };
    let policies = PolicySnapshot::build(&inputs, 1).expect("bench policies are valid");
    let docs = match dataset::entities() {
        serde_json::Value::Array(items) => items,
        _ => unreachable!("the data set is an array"),
    };
    let entities = EntitySnapshot::from_docs(docs, policies.schema.as_ref(), 1)
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
