//! RBAC compiled for Cedar: each grant becomes one policy `rbac/<id>`, and
//! roles and role assignments become entities (the entity overlay):
//! `Portcullis::Role::"<role>"` in its parent roles, and each principal with
//! a role in that role. A grant to a role then reaches, through Cedar's `in`,
//! every principal holding the role directly, through a group or through a
//! child role.

use std::collections::BTreeMap;

use cedar_policy::EntityUid;
use serde_json::{Value, json};

use super::entities::entity_key;
use super::identity::ROLE_TYPE;
use crate::domain::{Assignment, Effect, Grant, Role};

/// Every compiled grant's policy id starts with this.
pub const RBAC_POLICY_PREFIX: &str = "rbac/";

/// `Portcullis::Role::"<id>"`.
pub fn role_uid(id: &str) -> EntityUid {
    super::identity::portcullis_uid(ROLE_TYPE, id)
}

/// The policy id of a grant.
pub fn grant_policy_id(grant: &Grant) -> String {
    format!("{RBAC_POLICY_PREFIX}{}", grant.id)
}

/// The grant as Cedar. Its uids were parsed and printed back by Cedar, so
/// nothing in them can change the policy's shape.
pub fn grant_policy(grant: &Grant) -> String {
    let effect = match grant.effect {
        Effect::Allow => "permit",
        Effect::Deny => "forbid",
    };
    let action = match &grant.action {
        Some(action) => format!("action in {action}"),
        None => "action".into(),
    };
    let resource = match (&grant.resource, &grant.resource_type) {
        (Some(resource), _) => format!("resource in {resource}"),
        (None, Some(type_name)) => format!("resource is {type_name}"),
        (None, None) => "resource".into(),
    };
    // An allow never reaches a deactivated user or a disabled service
    // account or agent; a deny still does.
    let guard = match grant.effect {
        Effect::Allow => {
            "\nunless {\n  (principal has active && !principal.active) ||\n  (principal has disabled && principal.disabled)\n}"
        }
        Effect::Deny => "",
    };
    format!(
        "@id(\"{}\")\n{effect} (\n  principal in {},\n  {action},\n  {resource}\n){guard};",
        grant_policy_id(grant),
        grant.subject
    )
}

/// The entity overlay of these roles and assignments, by entity key.
pub fn overlay<'a>(
    roles: impl IntoIterator<Item = &'a Role>,
    assignments: impl IntoIterator<Item = &'a Assignment>,
) -> BTreeMap<String, Value> {
    let reference =
        |uid: &EntityUid| json!({"type": uid.type_name().to_string(), "id": uid.id().unescaped()});
    let mut out = BTreeMap::new();
    for role in roles {
        let uid = role_uid(&role.id);
        let mut attrs = serde_json::Map::new();
        if let Some(description) = &role.description {
            attrs.insert("description".into(), json!(description));
        }
        let parents: Vec<Value> = role
            .parents
            .iter()
            .map(|p| reference(&role_uid(p)))
            .collect();
        out.insert(
            entity_key(&uid),
            json!({"uid": reference(&uid), "attrs": attrs, "parents": parents}),
        );
    }
    for assignment in assignments {
        let Ok(uid) = assignment.principal.parse::<EntityUid>() else {
            continue; // checked when assigned
        };
        let parents: Vec<Value> = assignment
            .roles
            .iter()
            .map(|r| reference(&role_uid(r)))
            .collect();
        out.insert(
            entity_key(&uid),
            json!({"uid": reference(&uid), "attrs": {}, "parents": parents}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(subject: &str, action: Option<&str>, resource: Option<&str>) -> Grant {
        Grant {
            id: "g1".into(),
            subject: subject.into(),
            action: action.map(Into::into),
            resource: resource.map(Into::into),
            resource_type: None,
            effect: Effect::Allow,
            created_at: 0,
        }
    }

    #[test]
    fn grants_compile_to_parseable_policies_with_their_id() {
        for g in [
            grant(
                r#"Portcullis::Role::"editor""#,
                Some(r#"Docs::Action::"read""#),
                Some(r#"Docs::Folder::"a \"b\"""#),
            ),
            grant(r#"Portcullis::Group::"ops""#, None, None),
            Grant {
                resource_type: Some("Docs::Document".into()),
                effect: Effect::Deny,
                ..grant(r#"Portcullis::User::"x""#, None, None)
            },
        ] {
            let text = grant_policy(&g);
            let policy =
                cedar_policy::Policy::parse(None, &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                policy.annotation("id").map(str::to_owned),
                Some("rbac/g1".to_owned())
            );
        }
    }
}
