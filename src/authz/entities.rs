//! The entity snapshot: every stored application entity as one Cedar
//! `Entities`, shared by all decisions without copying, plus the stored JSON
//! documents that `GET /v1/entities` returns.
//!
//! A request that brings `additional_entities` gets a *slice* instead of a
//! copy of the whole set: its principal, action, resource and the entities
//! they reach (ancestors and entity-valued attributes), merged with what it
//! brought. That is the difference from cedar-agent, which clones the whole
//! store on every such request.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityUid, EvalResult, Schema};

use super::AuthzError;

/// The store key of an entity: its Cedar uid string, e.g. `User::"alice"`.
pub fn entity_key(uid: &EntityUid) -> String {
    uid.to_string()
}

/// One parsed and schema-checked entity with its normalized JSON.
#[derive(Debug, Clone)]
pub struct ParsedEntity {
    pub key: String,
    pub entity: Entity,
    pub json: serde_json::Value,
}

/// Parses a JSON array of Cedar entities, checking each against `schema`.
pub fn parse_entities(
    value: serde_json::Value,
    schema: Option<&Schema>,
) -> Result<Vec<ParsedEntity>, AuthzError> {
    let serde_json::Value::Array(items) = value else {
        return Err(AuthzError::EntitiesInvalid(
            "expected a JSON array of entities".into(),
        ));
    };
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let entity = Entity::from_json_value(item, schema)
            .map_err(|e| AuthzError::EntitiesInvalid(format!("entity #{index}: {}", detail(&e))))?;
        let key = entity_key(&entity.uid());
        if !seen.insert(key.clone()) {
            return Err(AuthzError::EntitiesInvalid(format!(
                "entity #{index}: {key} appears more than once"
            )));
        }
        let json = entity
            .to_json_value()
            .map_err(|e| AuthzError::EntitiesInvalid(format!("entity #{index}: {e}")))?;
        out.push(ParsedEntity { key, entity, json });
    }
    Ok(out)
}

/// An error with its cause chain, which is where Cedar puts the specifics.
fn detail(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

pub struct EntitySnapshot {
    pub generation: u64,
    pub entities: Entities,
    /// Stored documents by key, in key order.
    pub docs: BTreeMap<String, serde_json::Value>,
}

impl EntitySnapshot {
    pub fn empty(generation: u64, schema: Option<&Schema>) -> Result<EntitySnapshot, AuthzError> {
        Self::from_parsed(Vec::new(), schema, generation)
    }

    /// Builds a snapshot from stored documents, re-checking them against `schema`.
    pub fn from_docs(
        docs: impl IntoIterator<Item = serde_json::Value>,
        schema: Option<&Schema>,
        generation: u64,
    ) -> Result<EntitySnapshot, AuthzError> {
        let parsed = parse_entities(serde_json::Value::Array(docs.into_iter().collect()), schema)?;
        Self::from_parsed(parsed, schema, generation)
    }

    pub fn from_parsed(
        parsed: Vec<ParsedEntity>,
        schema: Option<&Schema>,
        generation: u64,
    ) -> Result<EntitySnapshot, AuthzError> {
        let mut docs = BTreeMap::new();
        let mut list = Vec::with_capacity(parsed.len());
        for p in parsed {
            docs.insert(p.key, p.json);
            list.push(p.entity);
        }
        let entities = Entities::from_entities(list, schema)
            .map_err(|e| AuthzError::EntitiesInvalid(detail(&e)))?;
        Ok(EntitySnapshot {
            generation,
            entities,
            docs,
        })
    }

    /// A new snapshot with `upserts` written over and `removals` removed.
    pub fn with_changes(
        &self,
        upserts: Vec<ParsedEntity>,
        removals: &[EntityUid],
        schema: Option<&Schema>,
        generation: u64,
    ) -> Result<EntitySnapshot, AuthzError> {
        let mut docs = self.docs.clone();
        for uid in removals {
            docs.remove(&entity_key(uid));
        }
        let mut list = Vec::with_capacity(upserts.len());
        for p in upserts {
            docs.insert(p.key, p.json);
            list.push(p.entity);
        }
        let invalid = |e: cedar_policy::entities_errors::EntitiesError| {
            AuthzError::EntitiesInvalid(detail(&e))
        };
        let entities = self
            .entities
            .clone()
            .remove_entities(removals.iter().cloned())
            .map_err(invalid)?
            .upsert_entities(list, schema)
            .map_err(invalid)?;
        Ok(EntitySnapshot {
            generation,
            entities,
            docs,
        })
    }

    /// `root`, its ancestors and every entity reachable through
    /// entity-valued attributes, transitively (entities not stored are skipped).
    pub fn closure(&self, root: &EntityUid) -> Vec<Entity> {
        let mut seen: HashSet<EntityUid> = HashSet::new();
        let mut queue = VecDeque::from([root.clone()]);
        let mut out = Vec::new();
        while let Some(uid) = queue.pop_front() {
            if !seen.insert(uid.clone()) {
                continue;
            }
            let Some(entity) = self.entities.get(&uid) else {
                continue;
            };
            if let Some(ancestors) = self.entities.ancestors(&uid) {
                queue.extend(ancestors.cloned());
            }
            for (_, value) in entity.attrs() {
                if let Ok(value) = value {
                    collect_refs(&value, &mut queue);
                }
            }
            out.push(entity.clone());
        }
        out
    }
}

fn collect_refs(value: &EvalResult, out: &mut VecDeque<EntityUid>) {
    match value {
        EvalResult::EntityUid(uid) => out.push_back(uid.clone()),
        EvalResult::Set(set) => set.iter().for_each(|v| collect_refs(v, out)),
        EvalResult::Record(record) => record.iter().for_each(|(_, v)| collect_refs(v, out)),
        _ => {}
    }
}

/// Entity uids named anywhere in a JSON value (`__entity` escapes, or
/// `{"type","id"}` objects as schema-based parsing allows).
pub(crate) fn json_refs(value: &serde_json::Value, out: &mut Vec<EntityUid>) {
    match value {
        serde_json::Value::Object(map) => {
            let target = map.get("__entity").unwrap_or(value);
            if let (Some(t), Some(id)) = (
                target.get("type").and_then(|v| v.as_str()),
                target.get("id").and_then(|v| v.as_str()),
            ) {
                let input = super::UidInput::Typed {
                    type_name: t.to_owned(),
                    id: id.to_owned(),
                };
                if let Ok(uid) = super::parse_uid(&input) {
                    out.push(uid);
                }
            }
            map.values().for_each(|v| json_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_refs(v, out)),
        _ => {}
    }
}

/// Merges slices of stored entities with request-supplied ones; supplied
/// entities win on the same uid (cedar-agent's rule).
pub(crate) fn merge(
    slices: impl IntoIterator<Item = Arc<[Entity]>>,
    supplied: Vec<Entity>,
    schema: Option<&Schema>,
) -> Result<Entities, AuthzError> {
    let mut by_uid: HashMap<EntityUid, Entity> = HashMap::new();
    for slice in slices {
        for entity in slice.iter() {
            by_uid.entry(entity.uid()).or_insert_with(|| entity.clone());
        }
    }
    for entity in supplied {
        by_uid.insert(entity.uid(), entity);
    }
    Entities::from_entities(by_uid.into_values(), schema)
        .map_err(|e| AuthzError::EntitiesInvalid(detail(&e)))
}
