//! Entity UIDs as callers write them: the Cedar string `User::"alice"`, the
//! object `{"type": "User", "id": "alice"}`, or Cedar's JSON escape
//! `{"__entity": {"type": …, "id": …}}`.
//!
//! Parsing is on the decision path, so the common string form skips Cedar's
//! full grammar: the type name is checked once and remembered, the id is
//! taken as is when it has no escapes.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::AuthzError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum UidInput {
    Text(String),
    Typed {
        #[serde(rename = "type")]
        type_name: String,
        id: String,
    },
}

impl UidInput {
    /// Appends a cache-key form of the input: equal inputs, equal bytes.
    pub(crate) fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            UidInput::Text(text) => {
                out.push(b'T');
                out.extend_from_slice(text.as_bytes());
            }
            UidInput::Typed { type_name, id } => {
                out.push(b'O');
                out.extend_from_slice(type_name.as_bytes());
                out.push(0);
                out.extend_from_slice(id.as_bytes());
            }
        }
        out.push(0);
    }
}

impl fmt::Display for UidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UidInput::Text(text) => f.write_str(text),
            UidInput::Typed { type_name, id } => write!(f, "{type_name}::{id:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for UidInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UidVisitor)
    }
}

struct UidVisitor;

impl<'de> Visitor<'de> for UidVisitor {
    type Value = UidInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an entity uid: "Type::\"id\"" or {"type": "Type", "id": "id"}"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UidInput, E> {
        Ok(UidInput::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<UidInput, E> {
        Ok(UidInput::Text(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UidInput, A::Error> {
        let mut type_name: Option<String> = None;
        let mut id: Option<String> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => type_name = Some(map.next_value()?),
                "id" => id = Some(map.next_value()?),
                "__entity" => {
                    let inner: TypedUid = map.next_value()?;
                    type_name = Some(inner.type_name);
                    id = Some(inner.id);
                }
                other => {
                    return Err(de::Error::unknown_field(other, &["type", "id", "__entity"]));
                }
            }
        }
        match (type_name, id) {
            (Some(type_name), Some(id)) => Ok(UidInput::Typed { type_name, id }),
            (None, _) => Err(de::Error::missing_field("type")),
            (_, None) => Err(de::Error::missing_field("id")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedUid {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
}

/// Type names seen so far; a few dozen in practice, so this stays small.
static TYPE_NAMES: LazyLock<moka::sync::Cache<String, EntityTypeName>> =
    LazyLock::new(|| moka::sync::Cache::new(10_000));

fn type_name(text: &str) -> Result<EntityTypeName, String> {
    if let Some(found) = TYPE_NAMES.get(text) {
        return Ok(found);
    }
    let parsed = EntityTypeName::from_str(text).map_err(|e| e.to_string())?;
    TYPE_NAMES.insert(text.to_owned(), parsed.clone());
    Ok(parsed)
}

/// Turns caller input into a Cedar `EntityUid`.
pub fn parse_uid(input: &UidInput) -> Result<EntityUid, AuthzError> {
    let invalid = |message: String| AuthzError::InvalidUid {
        input: input.to_string(),
        message,
    };
    match input {
        UidInput::Typed { type_name: t, id } => Ok(EntityUid::from_type_name_and_id(
            type_name(t).map_err(invalid)?,
            EntityId::new(id),
        )),
        UidInput::Text(text) => match split_simple(text) {
            Some((t, id)) => Ok(EntityUid::from_type_name_and_id(
                type_name(t).map_err(invalid)?,
                EntityId::new(id),
            )),
            None => EntityUid::from_str(text).map_err(|e| invalid(e.to_string())),
        },
    }
}

/// `Type::"id"` where the id has no escapes: split without the full parser.
fn split_simple(text: &str) -> Option<(&str, &str)> {
    let start = text.find("::\"")?;
    let id = text.get(start + 3..)?.strip_suffix('"')?;
    if id.contains(['"', '\\']) {
        return None;
    }
    Some((&text[..start], id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(json: &str) -> Result<EntityUid, String> {
        let input: UidInput = serde_json::from_str(json).map_err(|e| e.to_string())?;
        parse_uid(&input).map_err(|e| e.to_string())
    }

    #[test]
    fn all_three_forms_name_the_same_entity() {
        let expected = EntityUid::from_str(r#"Docs::Document::"a b""#).unwrap();
        assert_eq!(uid(r#""Docs::Document::\"a b\"""#).unwrap(), expected);
        assert_eq!(
            uid(r#"{"type":"Docs::Document","id":"a b"}"#).unwrap(),
            expected
        );
        assert_eq!(
            uid(r#"{"__entity":{"type":"Docs::Document","id":"a b"}}"#).unwrap(),
            expected
        );
    }

    #[test]
    fn escaped_ids_take_the_full_parser() {
        let parsed = uid(r#""User::\"al\\\"ice\"""#).unwrap();
        assert_eq!(parsed.id().unescaped(), "al\"ice");
    }

    #[test]
    fn bad_uids_are_errors_not_panics() {
        for bad in [
            r#""alice""#,
            r#""User::alice""#,
            r#""::\"x\"""#,
            r#""1User::\"x\"""#,
            r#"{"type":"User"}"#,
            "42",
            r#"{"type":"Us er","id":"x"}"#,
        ] {
            assert!(uid(bad).is_err(), "{bad} should fail");
        }
    }
}
