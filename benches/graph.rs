//! Identity-graph traversals on 10,000 edges: memberships (through the
//! served entity snapshot, as `GET /iam/graph/{id}/memberships` walks it)
//! and dependents (as `…/dependents` and cascade deletes walk them).
//!
//! The graph: 500 groups in a 4-ary tree (499 member-of edges), and 1,900
//! service accounts owned by one user, each a member of 5 groups (9,500
//! member-of edges, 1,900 owned-by).
//!
//! `cargo bench --bench graph`

/// The same allocator as the `portcullis` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use cedar_policy::EntityUid;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::authz::EntitySnapshot;
use portcullis::domain::{Edge, EdgeKind, ServiceAccount};
use portcullis::services::{Limits, RbacState, dependents, edge_id, memberships};

const GROUPS: usize = 500;
const ACCOUNTS: usize = 1_900;

fn group(i: usize) -> String {
    format!("Portcullis::Group::\"g{i}\"")
}

fn account(i: usize) -> String {
    format!("Portcullis::ServiceAccount::\"sa{i}\"")
}

fn graph() -> RbacState {
    let mut state = RbacState::default();
    let mut link = |from: String, to: String| {
        let id = edge_id(&from, EdgeKind::MemberOf, &to);
        state.graph.edges.insert(
            id,
            Edge {
                from,
                kind: EdgeKind::MemberOf,
                to,
                created_at: 0,
            },
        );
    };
    for i in 1..GROUPS {
        link(group(i), group((i - 1) / 4));
    }
    for a in 0..ACCOUNTS {
        for k in 0..5 {
            link(account(a), group((a * 7 + k * 101) % GROUPS));
        }
    }
    for a in 0..ACCOUNTS {
        state.graph.service_accounts.insert(
            format!("sa{a}"),
            ServiceAccount {
                id: format!("sa{a}"),
                name: format!("account {a}"),
                owner: r#"Portcullis::User::"owner""#.into(),
                description: None,
                disabled: false,
                created_at: 0,
            },
        );
    }
    state
}

fn traversals(c: &mut Criterion) {
    let state = graph();
    let edges = state.graph.edges.len() + state.graph.service_accounts.len();
    assert!(edges >= 10_000, "{edges} edges");
    let snapshot = EntitySnapshot::empty(1, None)
        .and_then(|empty| empty.with_overlay(Arc::new(state.overlay()), None, 2))
        .expect("the generated graph is a valid entity set");
    let limits = Limits {
        depth: 32,
        results: 100_000,
    };
    let principal: EntityUid = account(1234).parse().expect("uid");

    let mut group_bench = c.benchmark_group("graph_10k_edges");
    group_bench.sample_size(30);
    group_bench.bench_function("memberships_of_a_service_account", |b| {
        b.iter(|| {
            let walked = memberships(&snapshot, black_box(&principal), &[], limits);
            assert!(!walked.reached.is_empty());
            walked
        })
    });
    group_bench.bench_function("dependents_of_the_root_group", |b| {
        b.iter(|| {
            let walked = dependents(&state, black_box(&group(0)), limits);
            assert_eq!(walked.reached.len(), GROUPS - 1 + ACCOUNTS);
            walked
        })
    });
    group_bench.bench_function("dependents_of_the_owner", |b| {
        b.iter(|| {
            let walked = dependents(&state, black_box(r#"Portcullis::User::"owner""#), limits);
            assert_eq!(walked.reached.len(), ACCOUNTS);
            walked
        })
    });
    group_bench.finish();
}

criterion_group!(benches, traversals);
criterion_main!(benches);
