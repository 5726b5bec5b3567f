//! The benchmark data set, shared by `decision.rs` (criterion) and `load.rs`
//! (the HTTP load script's helper): 1,000 users in 100 groups, 100 folders
//! holding 10,000 documents — 11,200 entities — and the sample Docs policies
//! plus one generated policy per group (109 policies).

#![allow(dead_code)]

use serde_json::{Value, json};

pub const USERS: usize = 1_000;
pub const GROUPS: usize = 100;
pub const FOLDERS: usize = 100;
pub const DOCUMENTS: usize = 10_000;

pub const SCHEMA: &str = include_str!("../policies/docs.cedarschema");
pub const SAMPLE_POLICIES: &str = include_str!("../policies/docs.cedar");

fn uid(t: &str, id: String) -> Value {
    json!({"type": t, "id": id})
}

fn entity_ref(t: &str, id: String) -> Value {
    json!({"__entity": {"type": t, "id": id}})
}

/// Every entity of the data set, as Cedar entities JSON.
pub fn entities() -> Value {
    let mut out = Vec::with_capacity(GROUPS + USERS + FOLDERS + DOCUMENTS);
    for g in 0..GROUPS {
        out.push(
            json!({"uid": uid("Portcullis::Group", format!("g{g}")), "attrs": {}, "parents": []}),
        );
    }
    for u in 0..USERS {
        out.push(json!({
            "uid": uid("Portcullis::User", format!("u{u}")),
            "attrs": {"email": format!("u{u}@example.com"), "active": u % 50 != 49},
            "parents": [uid("Portcullis::Group", format!("g{}", u % GROUPS))],
        }));
    }
    for f in 0..FOLDERS {
        out.push(json!({
            "uid": uid("Docs::Folder", format!("f{f}")),
            "attrs": {"owner": entity_ref("Portcullis::User", format!("u{}", f % USERS))},
            "parents": [],
        }));
    }
    for d in 0..DOCUMENTS {
        out.push(json!({
            "uid": uid("Docs::Document", format!("d{d}")),
            "attrs": {
                "owner": entity_ref("Portcullis::User", format!("u{}", d % USERS)),
                "classification": if d % 10 == 0 { "secret" } else { "internal" },
                "public": d % 7 == 0,
            },
            "parents": [uid("Docs::Folder", format!("f{}", d % FOLDERS))],
        }));
    }
    Value::Array(out)
}

/// One policy per group: members may read and list their folder.
pub fn group_policies() -> String {
    (0..GROUPS)
        .map(|g| {
            format!(
                "@id(\"bench.group-{g}\")\npermit (principal in Portcullis::Group::\"g{g}\", \
                 action in [Docs::Action::\"read\", Docs::Action::\"list\"], \
                 resource in Docs::Folder::\"f{g}\");\n"
            )
        })
        .collect()
}

/// A request by user `u` to `action` document `d`, as the HTTP body.
pub fn request(u: usize, action: &str, d: usize) -> Value {
    json!({
        "principal": format!("Portcullis::User::\"u{u}\""),
        "action": format!("Docs::Action::\"{action}\""),
        "resource": format!("Docs::Document::\"d{d}\""),
        "context": {"mfa": false},
    })
}
