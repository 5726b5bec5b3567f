//! RBAC over HTTP: grants compiled into Cedar policies, roles that nest,
//! assignments that become entity parents, bulk changes that are all or
//! nothing, reset with its automatic backup, and `/rbac/check` agreeing
//! with `/v1/is_authorized`.

use portcullis::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "rbac-admin-token-0123456789";
const HANDBOOK: &str = r#"Docs::Folder::"handbook""#;
const CAROL: &str = r#"Portcullis::User::"carol""#;

async fn rbac_app() -> TestApp {
    let app = spawn_app_with(|c| c.server.admin_token = Some(Secret::new(TOKEN))).await;
    app.seed_sample_entities().await;
    app
}

impl TestApp {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Auth::Bearer(TOKEN), body).await
    }
}

fn grant(role: &str, object: &str, action: &str) -> Value {
    json!({"role": role, "object": object, "action": action})
}

/// `/v1/is_authorized`'s decision and reasons.
async fn decided(app: &TestApp, principal: &str, action: &str, resource: &str) -> (String, Value) {
    let (status, body) = app.decide(principal, action, resource, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["decision"].as_str().unwrap().to_owned(),
        body["diagnostics"]["reason"].clone(),
    )
}

#[tokio::test]
async fn a_grant_allows_at_once_and_its_removal_denies_at_once() {
    let app = rbac_app().await;
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Deny");

    let (status, body) = app
        .admin(
            Method::POST,
            "/rbac/users/bob/roles",
            Some(json!({"role": "writer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["roles"], json!(["writer"]));
    let (status, _) = app
        .admin(
            Method::POST,
            "/rbac/users/bob/roles",
            Some(json!({"role": "writer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let write = grant("writer", HANDBOOK, WRITE);
    let (status, added) = app
        .admin(Method::POST, "/rbac/policies", Some(write.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let policy_id = added["policy_id"].as_str().unwrap().to_owned();
    assert!(policy_id.starts_with("rbac/"), "{policy_id}");

    // The next decision sees it, through the folder the document is in.
    let (decision, reasons) = decided(&app, BOB, WRITE, ONBOARDING).await;
    assert_eq!(decision, "Allow");
    assert_eq!(reasons, json!([policy_id]));
    // Bob keeps his stored attributes and groups: viewers still read.
    assert_eq!(decided(&app, BOB, READ, ONBOARDING).await.0, "Allow");
    let (status, checked) = app
        .post_json(
            "/rbac/check",
            &json!({"subject": "bob", "object": ONBOARDING, "action": WRITE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert_eq!(checked["allowed"], true);
    assert_eq!(checked["reasons"], json!([policy_id]));

    // The same grant again is a conflict; the policy API lists it and
    // refuses to change it.
    let (status, body) = app
        .admin(Method::POST, "/rbac/policies", Some(write.clone()))
        .await;
    assert_error(&(status, body), StatusCode::CONFLICT, "GRANT_EXISTS");
    let (_, policies) = app.get("/v1/policies").await;
    let listed = policies
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == policy_id.as_str())
        .cloned()
        .expect("the grant is listed as a policy");
    assert_eq!(listed["source"]["kind"], "rbac", "{listed}");
    let (status, body) = app
        .delete(&format!("/v1/policies/{}", urlencode(&policy_id)))
        .await;
    assert_error(&(status, body), StatusCode::CONFLICT, "POLICY_FROM_RBAC");

    // The schema decides which entities may hold roles: a folder may not,
    // and the refused assignment leaves nothing behind.
    let folder = urlencode(r#"Docs::Folder::"handbook""#);
    let reply = app
        .admin(
            Method::POST,
            &format!("/rbac/users/{folder}/roles"),
            Some(json!({"role": "writer"})),
        )
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "ENTITIES_INVALID");
    let (_, roles) = app
        .admin(Method::GET, &format!("/rbac/users/{folder}/roles"), None)
        .await;
    assert_eq!(roles["roles"], json!([]));
    // A stored principal with a role can still be removed; its roles stay.
    let (status, body) = app.delete("/v1/entities/Portcullis::User/bob").await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Allow");

    // Replacing all application data keeps the RBAC assignments.
    let (status, _) = app.put_json("/v1/data", &sample_entities()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Allow");

    let (status, _) = app
        .admin(Method::DELETE, "/rbac/policies", Some(write.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Deny");
    let (status, body) = app
        .admin(Method::DELETE, "/rbac/policies", Some(write))
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "GRANT_NOT_FOUND");

    // A deny grant wins over the sample policies' allow.
    let deny = json!({"subject": "bob", "object": "*", "action": READ, "effect": "deny"});
    let (status, _) = app.admin(Method::POST, "/rbac/policies", Some(deny)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(decided(&app, BOB, READ, ONBOARDING).await.0, "Deny");
}

#[tokio::test]
async fn grants_are_checked_before_anything_is_stored() {
    let app = rbac_app().await;
    for (body, code) in [
        (json!({"role": "r", "object": ONBOARDING}), "RBAC_INVALID"),
        (
            json!({"object": ONBOARDING, "action": READ}),
            "RBAC_INVALID",
        ),
        (
            json!({"role": "r", "subject": "bob", "object": "*", "action": READ}),
            "RBAC_INVALID",
        ),
        (
            json!({"role": "", "object": "*", "action": READ}),
            "RBAC_INVALID",
        ),
        (
            json!({"role": "r", "object": "not a uid", "action": READ}),
            "RBAC_INVALID",
        ),
        (
            json!({"role": "r", "object_type": "Docs::", "action": READ}),
            "RBAC_INVALID",
        ),
        // Parses, but the schema has no such action.
        (
            json!({"role": "r", "object": ONBOARDING, "action": r#"Docs::Action::"fly""#}),
            "POLICY_INVALID",
        ),
    ] {
        let reply = app
            .admin(Method::POST, "/rbac/policies", Some(body.clone()))
            .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, code);
    }
    let (_, listed) = app.admin(Method::GET, "/rbac/policies", None).await;
    assert_eq!(listed["grants"], json!([]));
    // Admin only.
    let (status, _) = app.get("/rbac/policies").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn roles_nest_without_cycles_and_implicit_roles_show_the_path() {
    let app = rbac_app().await;
    for (role, parents) in [
        ("viewer", json!([])),
        ("editor", json!(["viewer"])),
        ("chief", json!(["editor"])),
    ] {
        let (status, body) = app
            .admin(
                Method::PUT,
                &format!("/rbac/roles/{role}"),
                Some(json!({"parents": parents})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let reply = app
        .admin(
            Method::PUT,
            "/rbac/roles/viewer",
            Some(json!({"parents": ["chief"]})),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "ROLE_CYCLE");
    let reply = app
        .admin(
            Method::PUT,
            "/rbac/roles/x",
            Some(json!({"parents": ["nobody"]})),
        )
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "RBAC_INVALID");
    let reply = app
        .admin(
            Method::PUT,
            "/rbac/roles/x",
            Some(json!({"parents": ["x"]})),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "ROLE_CYCLE");
    let reply = app.admin(Method::GET, "/rbac/roles/x", None).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "ROLE_NOT_FOUND");

    // Carol exists only through RBAC; the grant is to the lowest role.
    let (status, _) = app
        .admin(
            Method::POST,
            "/rbac/users/carol/roles",
            Some(json!({"role": "chief"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(decided(&app, CAROL, READ, ONBOARDING).await.0, "Deny");
    let (status, added) = app
        .admin(
            Method::POST,
            "/rbac/policies",
            Some(grant("viewer", HANDBOOK, READ)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(decided(&app, CAROL, READ, ONBOARDING).await.0, "Allow");

    let (_, implicit) = app
        .admin(Method::GET, "/rbac/users/carol/roles/implicit", None)
        .await;
    let roles: Vec<(&str, usize)> = implicit["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap(),
                r["path"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(roles, [("chief", 2), ("editor", 3), ("viewer", 4)]);
    let (_, permissions) = app
        .admin(Method::GET, "/rbac/users/carol/permissions", None)
        .await;
    assert_eq!(
        permissions["permissions"][0]["via"],
        r#"Portcullis::Role::"viewer""#
    );
    assert_eq!(
        permissions["permissions"][0]["policy_id"],
        added["policy_id"]
    );

    // A group's role reaches its members: Alice is in editors.
    let group = urlencode(r#"Portcullis::Group::"editors""#);
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/rbac/users/{group}/roles"),
            Some(json!({"role": "editor"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, implicit) = app
        .admin(Method::GET, "/rbac/users/alice/roles/implicit", None)
        .await;
    let editor = implicit["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "editor")
        .expect("alice is an editor through her group");
    assert_eq!(
        editor["path"],
        json!([
            ALICE,
            r#"Portcullis::Group::"editors""#,
            r#"Portcullis::Role::"editor""#
        ])
    );

    // A role in use is removed only with cascade, which says what went.
    let reply = app.admin(Method::DELETE, "/rbac/roles/editor", None).await;
    assert_error(&reply, StatusCode::CONFLICT, "ROLE_IN_USE");
    assert!(
        !reply.1["error"]["dependents"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, body) = app
        .admin(Method::DELETE, "/rbac/roles/editor?cascade=true", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(decided(&app, CAROL, READ, ONBOARDING).await.0, "Deny");
    let (status, _) = app
        .admin(
            Method::DELETE,
            "/rbac/users/carol/roles",
            Some(json!({"role": "chief"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reply = app
        .admin(
            Method::DELETE,
            "/rbac/users/carol/roles",
            Some(json!({"role": "chief"})),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "ROLE_NOT_ASSIGNED");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bulk_changes_apply_all_or_nothing() {
    let app = rbac_app().await;
    let good = [grant("a", HANDBOOK, READ), grant("b", HANDBOOK, WRITE)];
    let bad = json!({"role": "c", "object": HANDBOOK, "action": "nope"});
    let body = json!({"op": "add", "items": [good[0], good[1], bad]});
    let reply = app
        .admin(Method::POST, "/rbac/policies/bulk", Some(body))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "BULK_REJECTED");
    let items = reply.1["error"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["index"], 2);
    let (_, listed) = app.admin(Method::GET, "/rbac/policies", None).await;
    assert_eq!(listed["grants"], json!([]), "nothing was applied");

    let body = json!({"op": "add", "items": good});
    let (status, applied) = app
        .admin(Method::POST, "/rbac/policies/bulk", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["applied"], 2);
    // Removing one that is there and one that is not removes neither.
    let body = json!({"op": "remove", "items": [good[0], grant("zzz", HANDBOOK, READ)]});
    let reply = app
        .admin(Method::POST, "/rbac/policies/bulk", Some(body))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "BULK_REJECTED");
    assert_eq!(reply.1["error"]["items"][0]["code"], "GRANT_NOT_FOUND");
    let (_, listed) = app.admin(Method::GET, "/rbac/policies", None).await;
    assert_eq!(listed["grants"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn reset_is_confirmed_backed_up_and_restorable() {
    let app = rbac_app().await;
    app.admin(
        Method::POST,
        "/rbac/users/bob/roles",
        Some(json!({"role": "writer"})),
    )
    .await;
    app.admin(
        Method::POST,
        "/rbac/policies",
        Some(grant("writer", HANDBOOK, WRITE)),
    )
    .await;
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Allow");

    let reply = app
        .admin(Method::POST, "/rbac/management/reset", Some(json!({})))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "CONFIRMATION_REQUIRED");
    let (status, reset) = app
        .admin(
            Method::POST,
            "/rbac/management/reset",
            Some(json!({"confirm": "reset all RBAC grants and assignments"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(
        reset["removed"],
        json!({"grants": 1, "roles": 1, "assignments": 1})
    );
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Deny");
    // File policies stay.
    assert_eq!(decided(&app, ALICE, WRITE, ONBOARDING).await.0, "Allow");

    let (_, backups) = app
        .admin(Method::GET, "/rbac/management/backups", None)
        .await;
    assert_eq!(backups["backups"][0]["id"], reset["backup_id"]);
    let id = reset["backup_id"].as_str().unwrap();
    let reply = app
        .admin(
            Method::POST,
            "/rbac/management/restore/nope",
            Some(json!({"confirm": true})),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "BACKUP_NOT_FOUND");
    let (status, restored) = app
        .admin(
            Method::POST,
            &format!("/rbac/management/restore/{id}"),
            Some(json!({"confirm": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Allow");

    // Grants survive a restart: they are read back from the store.
    let app = app.restart().await;
    assert_eq!(decided(&app, BOB, WRITE, ONBOARDING).await.0, "Allow");
}

/// xorshift64*: a fixed seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn rbac_check_and_is_authorized_agree_with_a_model_on_a_thousand_random_requests() {
    use std::collections::{BTreeSet, HashMap};

    let app = rbac_app().await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const USERS: usize = 40;
    const ROLES: usize = 12;
    const FOLDERS: usize = 8;
    const DOCS: usize = 30;
    const ACTIONS: [&str; 5] = ["read", "list", "write", "delete", "share"];

    // Folders in folders, documents in folders; the model keeps each
    // resource's parent.
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut entities = Vec::new();
    let owner = json!({"__entity": {"type": "Portcullis::User", "id": "nobody"}});
    // Stored users, so graph links may name them.
    for u in 0..USERS {
        entities.push(
            json!({"uid": {"type": "Portcullis::User", "id": format!("u{u}")},
            "attrs": {}, "parents": []}),
        );
    }
    for f in 0..FOLDERS {
        let uid = format!("Docs::Folder::\"f{f}\"");
        let parents = if f == 0 {
            json!([])
        } else {
            let p = rng.below(f);
            parent.insert(uid.clone(), format!("Docs::Folder::\"f{p}\""));
            json!([{"type": "Docs::Folder", "id": format!("f{p}")}])
        };
        entities.push(
            json!({"uid": {"type": "Docs::Folder", "id": format!("f{f}")},
            "attrs": {"owner": owner}, "parents": parents}),
        );
    }
    for d in 0..DOCS {
        let p = rng.below(FOLDERS);
        parent.insert(
            format!("Docs::Document::\"d{d}\""),
            format!("Docs::Folder::\"f{p}\""),
        );
        entities.push(
            json!({"uid": {"type": "Docs::Document", "id": format!("d{d}")},
            "attrs": {"owner": owner, "classification": "internal", "public": false},
            "parents": [{"type": "Docs::Folder", "id": format!("f{p}")}]}),
        );
    }
    let (status, body) = app.patch_json("/v1/entities", &json!(entities)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A role hierarchy: each role may inherit from earlier ones.
    let mut role_parents: Vec<Vec<usize>> = Vec::new();
    for r in 0..ROLES {
        let parents: Vec<usize> = (0..r).filter(|_| rng.below(4) == 0).collect();
        let names: Vec<String> = parents.iter().map(|p| format!("r{p}")).collect();
        let (status, body) = app
            .admin(
                Method::PUT,
                &format!("/rbac/roles/r{r}"),
                Some(json!({"parents": names})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        role_parents.push(parents);
    }
    let mut assigned: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); USERS];
    for (u, roles) in assigned.iter_mut().enumerate() {
        for _ in 0..rng.below(3) {
            let role = rng.below(ROLES);
            if roles.insert(role) {
                let (status, body) = app
                    .admin(
                        Method::POST,
                        &format!("/rbac/users/u{u}/roles"),
                        Some(json!({"role": format!("r{role}")})),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
            }
        }
    }
    // The identity graph: groups that are members of roles, and users that
    // are members of groups (entity parents through `/iam/graph/link`).
    const GROUPS: usize = 6;
    let mut group_roles: Vec<usize> = Vec::new();
    for g in 0..GROUPS {
        let role = rng.below(ROLES);
        let (status, body) = app
            .admin(
                Method::POST,
                "/iam/graph/link",
                Some(json!({"from": format!("Portcullis::Group::\"team{g}\""),
                    "kind": "member-of", "to": format!("Portcullis::Role::\"r{role}\"")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        group_roles.push(role);
    }
    let mut teams: Vec<Option<usize>> = vec![None; USERS];
    for (u, team) in teams.iter_mut().enumerate() {
        if rng.below(2) == 0 {
            let g = rng.below(GROUPS);
            let (status, body) = app
                .admin(
                    Method::POST,
                    "/iam/graph/link",
                    Some(json!({"from": format!("Portcullis::User::\"u{u}\""),
                        "kind": "member-of", "to": format!("Portcullis::Group::\"team{g}\"")})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            *team = Some(g);
        }
    }
    // Grants: (role, object, action, allow?).
    let mut grants: Vec<(usize, String, String, bool)> = Vec::new();
    for _ in 0..40 {
        let object = if rng.below(2) == 0 {
            format!("Docs::Folder::\"f{}\"", rng.below(FOLDERS))
        } else {
            format!("Docs::Document::\"d{}\"", rng.below(DOCS))
        };
        let action = format!("Docs::Action::\"{}\"", ACTIONS[rng.below(ACTIONS.len())]);
        let grant = (rng.below(ROLES), object, action, rng.below(6) != 0);
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    let items: Vec<Value> = grants
        .iter()
        .map(|(role, object, action, allow)| {
            json!({"role": format!("r{role}"), "object": object, "action": action,
                "effect": if *allow { "allow" } else { "deny" }})
        })
        .collect();
    let (status, applied) = app
        .admin(
            Method::POST,
            "/rbac/policies/bulk",
            Some(json!({"op": "add", "items": items})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let policy_ids: Vec<String> = applied["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["policy_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(policy_ids.len(), grants.len());

    // The model: a user's roles are its assigned roles, its team's role,
    // and their ancestors; a grant covers its object and everything under
    // it; a deny wins.
    let closure = |u: usize| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = assigned[u].iter().copied().collect();
        stack.extend(teams[u].map(|g| group_roles[g]));
        while let Some(r) = stack.pop() {
            if seen.insert(r) {
                stack.extend(&role_parents[r]);
            }
        }
        seen
    };
    let covers = |object: &str, resource: &str| {
        let mut current = Some(resource.to_owned());
        while let Some(uid) = current {
            if uid == object {
                return true;
            }
            current = parent.get(&uid).cloned();
        }
        false
    };

    let mut allows = 0;
    let mut denied_by_grant = 0;
    for _ in 0..1000 {
        let u = rng.below(USERS);
        let action = format!("Docs::Action::\"{}\"", ACTIONS[rng.below(ACTIONS.len())]);
        let resource = if rng.below(4) == 0 {
            format!("Docs::Folder::\"f{}\"", rng.below(FOLDERS))
        } else {
            format!("Docs::Document::\"d{}\"", rng.below(DOCS))
        };
        let roles = closure(u);
        let applying: Vec<(bool, &String)> = grants
            .iter()
            .zip(&policy_ids)
            .filter(|((role, object, a, _), _)| {
                roles.contains(role) && *a == action && covers(object, &resource)
            })
            .map(|((_, _, _, allow), id)| (*allow, id))
            .collect();
        let denies: BTreeSet<&String> = applying
            .iter()
            .filter(|(a, _)| !a)
            .map(|(_, id)| *id)
            .collect();
        let permits: BTreeSet<&String> = applying
            .iter()
            .filter(|(a, _)| *a)
            .map(|(_, id)| *id)
            .collect();
        let (expected, expected_reasons) = if !denies.is_empty() {
            ("Deny", denies)
        } else if !permits.is_empty() {
            ("Allow", permits)
        } else {
            ("Deny", BTreeSet::new())
        };

        let principal = format!("Portcullis::User::\"u{u}\"");
        let (decision, reasons) = decided(&app, &principal, &action, &resource).await;
        let reasons: BTreeSet<String> = serde_json::from_value(reasons).unwrap();
        let expected_reasons: BTreeSet<String> = expected_reasons.into_iter().cloned().collect();
        assert_eq!(decision, expected, "u{u} {action} {resource}");
        assert_eq!(reasons, expected_reasons, "u{u} {action} {resource}");
        let (status, checked) = app
            .post_json(
                "/rbac/check",
                &json!({"subject": format!("u{u}"), "object": resource, "action": action}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{checked}");
        assert_eq!(checked["decision"], decision, "u{u} {action} {resource}");
        let checked_reasons: BTreeSet<String> =
            serde_json::from_value(checked["reasons"].clone()).unwrap();
        assert_eq!(checked_reasons, reasons);
        allows += usize::from(decision == "Allow");
        denied_by_grant += usize::from(decision == "Deny" && !reasons.is_empty());
    }
    // The generated graph must exercise every kind of answer.
    assert!((50..950).contains(&allows), "{allows} allows of 1000");
    assert!(denied_by_grant > 0, "no deny grant ever decided");
}

#[tokio::test]
async fn a_deactivated_or_deleted_account_loses_its_roles_at_once() {
    let app = rbac_app().await;
    let (status, user) = app
        .post_json(
            "/auth/register",
            &json!({"email": "dana@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let principal = format!("Portcullis::User::\"{id}\"");
    app.admin(
        Method::POST,
        &format!("/rbac/users/{id}/roles"),
        Some(json!({"role": "writer"})),
    )
    .await;
    app.admin(
        Method::POST,
        "/rbac/policies",
        Some(grant("writer", HANDBOOK, WRITE)),
    )
    .await;
    // Asked about by a PEP (no credentials): the account's own entity decides.
    assert_eq!(
        decided(&app, &principal, WRITE, ONBOARDING).await.0,
        "Allow"
    );

    let (status, _) = app
        .admin(
            Method::PATCH,
            &format!("/users/{id}"),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decided(&app, &principal, WRITE, ONBOARDING).await.0, "Deny");
    let (status, _) = app
        .admin(
            Method::PATCH,
            &format!("/users/{id}"),
            Some(json!({"is_active": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        decided(&app, &principal, WRITE, ONBOARDING).await.0,
        "Allow"
    );

    let (status, _) = app
        .admin(Method::DELETE, &format!("/users/{id}"), None)
        .await;
    assert!(status.is_success());
    let (_, roles) = app
        .admin(Method::GET, &format!("/rbac/users/{id}/roles"), None)
        .await;
    assert_eq!(roles["roles"], json!([]));
    assert_eq!(decided(&app, &principal, WRITE, ONBOARDING).await.0, "Deny");
}
