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
        let entity = Entity::from_json_value(item, schema).map_err(|e| {
            AuthzError::EntitiesInvalid(format!("entity #{index}: {}", error_chain(&e)))
        })?;
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

/// `doc` with the parents of `extra` added to its own.
fn with_parents_of(doc: &serde_json::Value, extra: &serde_json::Value) -> serde_json::Value {
    let mut doc = doc.clone();
    let added = extra
        .get("parents")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(object) = doc.as_object_mut() {
        let parents = object
            .entry("parents")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(list) = parents.as_array_mut() {
            for parent in added {
                if !list.contains(&parent) {
                    list.push(parent);
                }
            }
        }
        // What the overlay says of an entity it owns (a service account's
        // `disabled`) is not for stored data to override.
        if let Some(owned) = extra.get("attrs").and_then(|a| a.as_object())
            && !owned.is_empty()
        {
            let attrs = object
                .entry("attrs")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let Some(attrs) = attrs.as_object_mut() {
                for (name, value) in owned {
                    attrs.insert(name.clone(), value.clone());
                }
            }
        }
    }
    doc
}

/// An error with its cause chain, on one line (Cedar puts the specifics
/// in the causes).
pub fn error_chain(e: &dyn std::error::Error) -> String {
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
    /// The stored entities with the overlay merged in: what decisions read.
    pub entities: Entities,
    /// Stored documents by key, in key order (the overlay not merged in).
    pub docs: BTreeMap<String, serde_json::Value>,
    /// Entities that RBAC and the identity graph manage (roles, role
    /// assignments, service accounts, agents, providers, links), by key:
    /// merged over the stored documents, a stored entity gaining the
    /// overlay's parents and taking the attributes the overlay sets.
    pub overlay: Arc<BTreeMap<String, serde_json::Value>>,
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
            .map_err(|e| AuthzError::EntitiesInvalid(error_chain(&e)))?;
        Ok(EntitySnapshot {
            generation,
            entities,
            docs,
            overlay: Arc::default(),
        })
    }

    /// The same stored documents under `overlay`, checked against `schema`.
    pub fn with_overlay(
        &self,
        overlay: Arc<BTreeMap<String, serde_json::Value>>,
        schema: Option<&Schema>,
        generation: u64,
    ) -> Result<EntitySnapshot, AuthzError> {
        Self::combined(self.docs.clone(), overlay, schema, generation)
    }

    /// Stored documents and an overlay merged into one entity set.
    fn combined(
        docs: BTreeMap<String, serde_json::Value>,
        overlay: Arc<BTreeMap<String, serde_json::Value>>,
        schema: Option<&Schema>,
        generation: u64,
    ) -> Result<EntitySnapshot, AuthzError> {
        let mut list = Vec::with_capacity(docs.len() + overlay.len());
        let parse = |doc: serde_json::Value, key: &str| {
            Entity::from_json_value(doc, schema)
                .map_err(|e| AuthzError::EntitiesInvalid(format!("{key}: {}", error_chain(&e))))
        };
        for (key, doc) in &docs {
            let doc = match overlay.get(key) {
                Some(extra) => with_parents_of(doc, extra),
                None => doc.clone(),
            };
            list.push(parse(doc, key)?);
        }
        // A principal RBAC knows but the store does not gets a bare stand-in
        // with its roles, when its type is one of Portcullis's own (all of
        // whose attributes are optional). An application entity gets its
        // roles only while it is stored, so removing it is never blocked.
        for (key, doc) in overlay.iter() {
            if !docs.contains_key(key) && key.starts_with("Portcullis::") {
                list.push(parse(doc.clone(), key)?);
            }
        }
        let entities = Entities::from_entities(list, schema)
            .map_err(|e| AuthzError::EntitiesInvalid(error_chain(&e)))?;
        Ok(EntitySnapshot {
            generation,
            entities,
            docs,
            overlay,
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
        let touches_overlay = upserts.iter().any(|p| self.overlay.contains_key(&p.key))
            || removals
                .iter()
                .any(|uid| self.overlay.contains_key(&entity_key(uid)));
        if touches_overlay {
            for p in upserts {
                docs.insert(p.key, p.json);
            }
            return Self::combined(docs, self.overlay.clone(), schema, generation);
        }
        let mut list = Vec::with_capacity(upserts.len());
        for p in upserts {
            docs.insert(p.key, p.json);
            list.push(p.entity);
        }
        let invalid = |e: cedar_policy::entities_errors::EntitiesError| {
            AuthzError::EntitiesInvalid(error_chain(&e))
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
            overlay: self.overlay.clone(),
        })
    }

    /// The direct parents of `uid` as stored and as the overlay adds them.
    pub fn direct_parents(&self, uid: &EntityUid) -> Vec<EntityUid> {
        let key = entity_key(uid);
        let mut out: Vec<EntityUid> = Vec::new();
        for doc in [self.docs.get(&key), self.overlay.get(&key)]
            .into_iter()
            .flatten()
        {
            for parent in doc
                .get("parents")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
            {
                let parsed = parent
                    .get("type")
                    .and_then(|t| t.as_str())
                    .zip(parent.get("id").and_then(|i| i.as_str()))
                    .and_then(|(t, i)| {
                        Some(EntityUid::from_type_name_and_id(
                            t.parse().ok()?,
                            cedar_policy::EntityId::new(i),
                        ))
                    });
                if let Some(uid) = parsed
                    && !out.contains(&uid)
                {
                    out.push(uid);
                }
            }
        }
        out
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
/// The entities a request decides on: slices of the stored set, the
/// identity's entities merged in, then what the request supplied.
///
/// Stored and identity entities were checked (or built) already. When the
/// slices are the store's (`checked`) and the request supplies nothing, the
/// set is built without checking them against the schema again: that was
/// most of the cost of a decision for a signed-in caller. The actions and
/// their groups come with the slices (the stored set holds the schema's
/// action entities, and the action is a root). Otherwise everything is
/// checked.
pub(crate) fn merge(
    slices: impl IntoIterator<Item = Arc<[Entity]>>,
    identity: &[Entity],
    supplied: Vec<Entity>,
    schema: Option<&Schema>,
    checked: bool,
) -> Result<Entities, AuthzError> {
    let mut by_uid: HashMap<EntityUid, Entity> = HashMap::new();
    for slice in slices {
        for entity in slice.iter() {
            by_uid.entry(entity.uid()).or_insert_with(|| entity.clone());
        }
    }
    // An identity's own entities (a directory's user and groups, a caller)
    // keep their attributes and gain what the store adds to them: the
    // roles RBAC assigned, the groups an admin put them in.
    for entity in identity {
        let merged = match by_uid.get(&entity.uid()) {
            Some(stored) => {
                let (uid, attrs, mut parents) = entity.clone().into_inner();
                parents.extend(stored.clone().into_inner().2);
                Entity::new(uid, attrs, parents).unwrap_or_else(|_| entity.clone())
            }
            None => entity.clone(),
        };
        by_uid.insert(merged.uid(), merged);
    }
    if checked && supplied.is_empty() {
        return Entities::from_entities(by_uid.into_values(), None)
            .map_err(|e| AuthzError::EntitiesInvalid(error_chain(&e)));
    }
    for entity in supplied {
        by_uid.insert(entity.uid(), entity);
    }
    Entities::from_entities(by_uid.into_values(), schema)
        .map_err(|e| AuthzError::EntitiesInvalid(error_chain(&e)))
}
