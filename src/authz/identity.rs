//! Directory identities as Cedar entities: `Portcullis::User` in
//! `Portcullis::Group`, nested as the directory nests them.

use cedar_policy::{Entity, EntityId, EntityUid};
use serde_json::{Map, Value, json};

use super::AuthzError;
use crate::domain::{DirectoryIdentity, User, qualified};

pub const USER_TYPE: &str = "Portcullis::User";
pub const GROUP_TYPE: &str = "Portcullis::Group";
pub const ROLE_TYPE: &str = "Portcullis::Role";
pub const SERVICE_ACCOUNT_TYPE: &str = "Portcullis::ServiceAccount";
pub const AGENT_TYPE: &str = "Portcullis::Agent";
pub const PROVIDER_TYPE: &str = "Portcullis::Provider";
/// The role of administrators: the built-in admin policies permit it.
pub const ADMIN_ROLE: &str = "admin";

/// `Portcullis::User::"<id>"`.
pub fn user_uid(id: &str) -> EntityUid {
    portcullis_uid(USER_TYPE, id)
}

/// `<type>::"<id>"` for one of Portcullis's own type names (the constants
/// above).
pub fn portcullis_uid(type_name: &'static str, id: &str) -> EntityUid {
    let type_name = type_name
        .parse()
        .unwrap_or_else(|_| unreachable!("{type_name} is a valid type name"));
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

/// A Portcullis account as a Cedar entity: its attributes, and the admin
/// role when it is a superuser.
pub fn user_entity(user: &User) -> Result<Entity, AuthzError> {
    let mut attrs = Map::new();
    attrs.insert("email".into(), json!(user.email));
    if let Some(name) = &user.name {
        attrs.insert("name".into(), json!(name));
    }
    attrs.insert("active".into(), json!(user.is_active));
    attrs.insert("verified".into(), json!(user.is_verified));
    let parents: Vec<Value> = if user.is_superuser {
        vec![json!({"type": ROLE_TYPE, "id": ADMIN_ROLE})]
    } else {
        Vec::new()
    };
    Entity::from_json_value(
        json!({"uid": {"type": USER_TYPE, "id": user.id}, "attrs": attrs, "parents": parents}),
        None,
    )
    .map_err(|e| AuthzError::EntitiesInvalid(format!("user {}: {e}", user.id)))
}

/// References to `Portcullis::Group::"<directory>:<id>"` for each id: a
/// directory user's or group's parents.
pub fn directory_group_refs(directory: &str, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| json!({"type": GROUP_TYPE, "id": qualified(directory, id)}))
        .collect()
}

/// A directory user's attributes, read at decision time or imported.
pub fn directory_user_attrs(
    email: Option<&str>,
    name: Option<&str>,
    active: bool,
) -> Map<String, Value> {
    let mut attrs = Map::new();
    if let Some(email) = email {
        attrs.insert("email".into(), json!(email));
    }
    if let Some(name) = name {
        attrs.insert("name".into(), json!(name));
    }
    attrs.insert("active".into(), json!(active));
    attrs
}

/// The user and every group it reaches.
pub fn identity_entities(identity: &DirectoryIdentity) -> Result<Vec<Entity>, AuthzError> {
    let dir = &identity.directory;
    let attrs = directory_user_attrs(identity.email.as_deref(), identity.name.as_deref(), true);
    let mut docs = vec![json!({
        "uid": {"type": USER_TYPE, "id": identity.user_id()},
        "attrs": attrs,
        "parents": directory_group_refs(dir, &identity.member_of),
    })];
    docs.extend(identity.groups.iter().map(|group| {
        json!({
            "uid": {"type": GROUP_TYPE, "id": qualified(dir, &group.id)},
            "attrs": {"name": group.id},
            "parents": directory_group_refs(dir, &group.parents),
        })
    }));
    docs.into_iter()
        .map(|doc| {
            Entity::from_json_value(doc, None)
                .map_err(|e| AuthzError::EntitiesInvalid(format!("directory `{dir}`: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DirectoryGroup;

    #[test]
    fn users_sit_in_their_groups_and_groups_in_theirs() {
        let identity = DirectoryIdentity {
            directory: "corp".into(),
            subject: "carol".into(),
            username: "carol".into(),
            email: Some("carol@example.test".into()),
            email_verified: false,
            name: None,
            member_of: vec!["platform".into()],
            groups: vec![
                DirectoryGroup {
                    id: "platform".into(),
                    parents: vec!["engineering".into()],
                },
                DirectoryGroup {
                    id: "engineering".into(),
                    parents: vec![],
                },
            ],
        };
        let entities = identity_entities(&identity).unwrap();
        let set = cedar_policy::Entities::from_entities(entities, None).unwrap();
        let carol: cedar_policy::EntityUid = r#"Portcullis::User::"corp:carol""#.parse().unwrap();
        let ancestors: Vec<String> = set
            .ancestors(&carol)
            .unwrap()
            .map(ToString::to_string)
            .collect();
        assert!(ancestors.contains(&r#"Portcullis::Group::"corp:engineering""#.to_string()));
        assert!(ancestors.contains(&r#"Portcullis::Group::"corp:platform""#.to_string()));
    }
}
