//! The slice must decide exactly as the whole set does: same decision, same
//! reasons, same errors, for every request of a grid that exercises every
//! kind of scope constraint, nested groups and action groups.

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request, Schema};

use super::{ScopeIndex, Slice};

const SCHEMA: &str = r#"
entity Group in [Group];
entity User in [Group] = { "level"?: Long };
entity Folder in [Folder];
entity Doc in [Folder] = { "owner"?: User };
action "all";
action "read", "list" in ["all"] appliesTo { principal: [User], resource: [Doc, Folder] };
action "write" appliesTo { principal: [User], resource: [Doc, Folder] };
"#;

const POLICIES: &str = r#"
permit (principal, action, resource);
permit (principal == User::"u0", action == Action::"write", resource);
permit (principal in Group::"g0", action in Action::"all", resource in Folder::"f0");
permit (principal in Group::"top", action == Action::"read", resource is Doc);
forbid (principal is User in Group::"g1", action, resource == Doc::"d1");
permit (principal is User, action in [Action::"list", Action::"write"], resource is Folder in Folder::"f1");
permit (principal, action, resource is Doc) when { resource.owner == principal };
permit (principal in Group::"g2", action, resource) when { principal.level > 3 };
forbid (principal == User::"u2", action == Action::"read", resource) unless { principal.level < 10 };
"#;

const ENTITIES: &str = r#"[
  {"uid": {"type": "Group", "id": "top"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Group", "id": "g0"}, "attrs": {}, "parents": [{"type": "Group", "id": "top"}]},
  {"uid": {"type": "Group", "id": "g1"}, "attrs": {}, "parents": [{"type": "Group", "id": "top"}]},
  {"uid": {"type": "Group", "id": "g2"}, "attrs": {}, "parents": [{"type": "Group", "id": "g1"}, {"type": "Group", "id": "top"}]},
  {"uid": {"type": "User", "id": "u0"}, "attrs": {"level": 1}, "parents": [{"type": "Group", "id": "g0"}]},
  {"uid": {"type": "User", "id": "u1"}, "attrs": {}, "parents": [{"type": "Group", "id": "g1"}]},
  {"uid": {"type": "User", "id": "u2"}, "attrs": {"level": 20}, "parents": [{"type": "Group", "id": "g2"}]},
  {"uid": {"type": "Folder", "id": "f0"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Folder", "id": "f1"}, "attrs": {}, "parents": [{"type": "Folder", "id": "f0"}]},
  {"uid": {"type": "Doc", "id": "d0"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "u1"}}}, "parents": [{"type": "Folder", "id": "f0"}]},
  {"uid": {"type": "Doc", "id": "d1"}, "attrs": {}, "parents": [{"type": "Folder", "id": "f1"}]}
]"#;

fn uid(text: &str) -> EntityUid {
    EntityUid::from_str(text).unwrap()
}

#[test]
fn slices_decide_exactly_like_the_whole_set() {
    let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
    // The first policy matches everything; test with and without it.
    for skip_first in [false, true] {
        let text: String = POLICIES
            .lines()
            .skip(if skip_first { 2 } else { 0 })
            .collect::<Vec<_>>()
            .join("\n");
        let full = PolicySet::from_str(&text).unwrap();
        let index = ScopeIndex::new(&full);
        let entities = Entities::from_json_str(ENTITIES, Some(&schema)).unwrap();
        let authorizer = Authorizer::new();
        let mut partial_slices = 0;
        for p in [
            "User::\"u0\"",
            "User::\"u1\"",
            "User::\"u2\"",
            "User::\"ghost\"",
        ] {
            for a in ["Action::\"read\"", "Action::\"list\"", "Action::\"write\""] {
                for r in [
                    "Doc::\"d0\"",
                    "Doc::\"d1\"",
                    "Folder::\"f0\"",
                    "Folder::\"f1\"",
                    "Doc::\"ghost\"",
                ] {
                    let (p, a, r) = (uid(p), uid(a), uid(r));
                    let request =
                        Request::new(p.clone(), a.clone(), r.clone(), Context::empty(), None)
                            .unwrap();
                    let expected = authorizer.is_authorized(&request, &full, &entities);
                    let slice = index.slice(&full, &entities, &p, &a, &r);
                    if matches!(slice, Slice::Some(_)) {
                        partial_slices += 1;
                    }
                    let got = authorizer.is_authorized(&request, slice.set(), &entities);
                    let reasons = |r: &cedar_policy::Response| {
                        let mut v: Vec<String> =
                            r.diagnostics().reason().map(ToString::to_string).collect();
                        v.sort();
                        v
                    };
                    let errors = |r: &cedar_policy::Response| r.diagnostics().errors().count();
                    assert_eq!(got.decision(), expected.decision(), "{p} {a} {r}");
                    assert_eq!(reasons(&got), reasons(&expected), "{p} {a} {r}");
                    assert_eq!(errors(&got), errors(&expected), "{p} {a} {r}");
                }
            }
        }
        assert!(partial_slices > 0, "the grid must exercise partial slices");
    }
}
