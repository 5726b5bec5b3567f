//! The catalog: application policies, schema and entities, stored in the
//! store (namespaces `policies`, `schema`, `entities`) and the policy
//! directory, served through the engine's snapshots.
//!
//! Writers are serialized by one async mutex (never held by decisions):
//! build the new snapshot, write the store, then swap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::rbac::{RbacState, TOPIC_RBAC};

use crate::authz::{
    AuthzError, CacheSettings, Engine, EntitySnapshot, PolicyInputs, PolicyLimits, PolicyOrigin,
    PolicySnapshot, RBAC_POLICY_PREFIX, SchemaDoc, entity_key, load_policy_dir, parse_entities,
};
use crate::backends::{Expect, Notice, Op, RedisBus, Store, StoreError, scan_all};
use crate::config::PoliciesConfig;

pub(crate) const POLICIES: &str = "policies";
pub(crate) const SCHEMA: &str = "schema";
const SCHEMA_KEY: &str = "app";
pub(crate) const ENTITIES: &str = "entities";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error("store failure")]
    Store(#[from] StoreError),
    #[error("stored {what} is not valid: {message}")]
    Corrupt { what: String, message: String },
}

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    content: String,
}

/// `schema: null` records an explicit "no schema" that outranks the file.
#[derive(Serialize, Deserialize)]
struct StoredSchema {
    schema: Option<serde_json::Value>,
}

/// Change-notice topics.
const TOPIC_POLICIES: &str = "policies";
const TOPIC_ENTITIES: &str = "entities";

pub struct Catalog {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    policy_dir: PathBuf,
    limits: PolicyLimits,
    writer: Mutex<()>,
    /// Tells other instances sharing the store what changed.
    bus: Option<Arc<RedisBus>>,
    /// RBAC grants, roles and assignments, compiled into the snapshots.
    rbac: ArcSwap<RbacState>,
}

impl Catalog {
    /// Loads policies (directory + store), schema and entities, and builds
    /// the engine. Any invalid part fails startup with its diagnostics.
    pub async fn open(
        store: Arc<dyn Store>,
        policies: &PoliciesConfig,
        cache: &CacheSettings,
    ) -> Result<Catalog, ServiceError> {
        let (policy_dir, limits) = (&policies.dir, policies.limits());
        let rbac = RbacState::load(store.as_ref()).await?;
        let mut inputs = read_inputs(store.as_ref(), policy_dir, limits).await?;
        inputs.rbac = rbac.compiled();
        let policies = PolicySnapshot::build(&inputs, 1)?;
        let docs = read_entity_docs(store.as_ref()).await?;
        let entities = EntitySnapshot::from_docs(docs, policies.schema.as_ref(), 1)?.with_overlay(
            Arc::new(rbac.overlay()),
            policies.schema.as_ref(),
            1,
        )?;
        let engine = Arc::new(Engine::new(policies, entities, cache));
        Ok(Catalog {
            store,
            engine,
            policy_dir: policy_dir.clone(),
            limits,
            writer: Mutex::new(()),
            bus: None,
            rbac: ArcSwap::from_pointee(rbac),
        })
    }

    /// Announce every change on `bus` from now on.
    pub fn with_bus(mut self, bus: Arc<RedisBus>) -> Catalog {
        self.bus = Some(bus);
        self
    }

    /// A change is stored and served here; tell the other instances. A lost
    /// notice leaves them stale until the next one, so it is logged loudly.
    async fn announce(&self, topic: &str) {
        if let Some(bus) = &self.bus
            && let Err(e) = bus.publish(topic).await
        {
            tracing::warn!(topic, error = %e, "Could not announce a change to other instances.");
        }
    }

    /// Tells the other instances to read everything again (after a restore).
    pub async fn announce_all(&self) {
        for topic in [TOPIC_POLICIES, TOPIC_ENTITIES, TOPIC_RBAC] {
            self.announce(topic).await;
        }
    }

    /// Applies a notice from another instance: reload what it changed.
    pub async fn apply(&self, notice: &Notice) -> Result<(), ServiceError> {
        match notice {
            Notice::Changed(topic) if topic == TOPIC_ENTITIES => self.refresh_entities().await,
            Notice::Changed(topic) if topic == TOPIC_RBAC => self.refresh_rbac().await,
            Notice::Changed(_) => self.refresh_policies().await,
            Notice::Resync => {
                self.refresh_policies().await?;
                self.refresh_entities().await?;
                self.refresh_rbac().await
            }
        }
    }

    async fn refresh_policies(&self) -> Result<(), ServiceError> {
        self.reload().await.map(|_| ())
    }

    /// Rebuilds the entity snapshot from the store.
    async fn refresh_entities(&self) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let docs = read_entity_docs(self.store.as_ref()).await?;
        let policies = self.engine.policies();
        let schema = policies.schema.as_ref();
        let generation = self.engine.next_generation();
        let snapshot = EntitySnapshot::from_docs(docs, schema, generation)?.with_overlay(
            self.engine.entities().overlay.clone(),
            schema,
            generation,
        )?;
        self.engine.swap_entities(snapshot);
        Ok(())
    }

    /// The RBAC grants, roles and assignments being served.
    pub fn rbac(&self) -> Arc<RbacState> {
        self.rbac.load_full()
    }

    /// One RBAC change: `change` gives the new state, the store writes that
    /// make it, and an answer. It sees the state as stored, read again under
    /// the writer lock, and each write expects the version it read, so a
    /// change another instance made meanwhile is never overwritten: on such
    /// a conflict the change is worked out again on the newer state (up to
    /// three times). The grants are compiled and the overlay built and
    /// checked first; then the store is written in one transaction and the
    /// snapshots swapped. An error anywhere changes nothing.
    pub async fn change_rbac<T, E: From<ServiceError>>(
        &self,
        change: impl Fn(&RbacState) -> Result<(RbacState, Vec<Op>, T), E>,
    ) -> Result<T, E> {
        let _guard = self.writer.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (stored, versions) = RbacState::load_versioned(self.store.as_ref()).await?;
            let (next, mut ops, answer) = change(&stored)?;
            if ops.is_empty() && next == stored {
                return Ok(answer);
            }
            for op in &mut ops {
                let is_put = matches!(op, Op::Put { .. });
                if let Op::Put {
                    ns, key, expect, ..
                }
                | Op::Delete { ns, key, expect } = op
                    && (ns == super::rbac::RBAC || ns == super::graph::IAM)
                    && *expect == Expect::Any
                {
                    *expect = match versions.get(&format!("{ns}/{key}")) {
                        Some(version) => Expect::Version(*version),
                        None if is_put => Expect::Absent,
                        None => Expect::Any,
                    };
                }
            }
            let (policies, entities) = self.rbac_snapshots(&next)?;
            match self.store.transact(ops).await {
                Ok(_) => {
                    self.install_rbac(next, policies, entities);
                    self.announce(TOPIC_RBAC).await;
                    return Ok(answer);
                }
                Err(StoreError::Conflict { .. }) if attempt < 3 => {
                    tracing::debug!(
                        attempt,
                        "RBAC changed elsewhere meanwhile; working the change out again."
                    );
                }
                Err(e) => return Err(ServiceError::from(e).into()),
            }
        }
    }

    /// Another instance changed RBAC: read it again and rebuild from the
    /// policy inputs being served (a policy file being edited here does not
    /// hold it up).
    async fn refresh_rbac(&self) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let next = RbacState::load(self.store.as_ref()).await?;
        let (policies, entities) = self.rbac_snapshots(&next)?;
        self.install_rbac(next, policies, entities);
        Ok(())
    }

    /// The snapshots that serve `next`, where it differs from what is served.
    fn rbac_snapshots(
        &self,
        next: &RbacState,
    ) -> Result<(Option<PolicySnapshot>, Option<EntitySnapshot>), ServiceError> {
        let served = self.rbac.load_full();
        let generation = self.engine.next_generation();
        let serving = self.engine.policies();
        let policies = if next.grants == served.grants {
            None
        } else {
            let mut inputs = serving.inputs.clone();
            inputs.rbac = next.compiled();
            Some(PolicySnapshot::build(&inputs, generation)?)
        };
        let entities = if next.same_entities(&served) {
            None
        } else {
            let schema = policies.as_ref().unwrap_or(&serving).schema.as_ref();
            Some(self.engine.entities().with_overlay(
                Arc::new(next.overlay()),
                schema,
                generation,
            )?)
        };
        Ok((policies, entities))
    }

    fn install_rbac(
        &self,
        next: RbacState,
        policies: Option<PolicySnapshot>,
        entities: Option<EntitySnapshot>,
    ) {
        match (policies, entities) {
            (Some(policies), Some(entities)) => self.engine.swap_both(policies, entities),
            (Some(policies), None) => self.engine.swap_policies(policies),
            (None, Some(entities)) => self.engine.swap_entities(entities),
            (None, None) => {}
        }
        self.rbac.store(Arc::new(next));
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn policy_dir(&self) -> &Path {
        &self.policy_dir
    }

    /// Re-reads the policy directory and the store; an invalid set, or a
    /// schema the stored entities break, is refused and the serving one stays.
    pub async fn reload(&self) -> Result<Arc<PolicySnapshot>, ServiceError> {
        let _guard = self.writer.lock().await;
        let rbac = RbacState::load(self.store.as_ref()).await?;
        let mut inputs = read_inputs(self.store.as_ref(), &self.policy_dir, self.limits).await?;
        inputs.rbac = rbac.compiled();
        let policies = PolicySnapshot::build(&inputs, self.engine.next_generation())?;
        let entities = self.engine.entities().with_overlay(
            Arc::new(rbac.overlay()),
            policies.schema.as_ref(),
            self.engine.next_generation(),
        )?;
        self.engine.swap_both(policies, entities);
        self.rbac.store(Arc::new(rbac));
        Ok(self.engine.policies())
    }

    /// The stored entities checked against `policies`' schema.
    fn revalidated_entities(
        &self,
        policies: &PolicySnapshot,
    ) -> Result<EntitySnapshot, ServiceError> {
        let stored = self.engine.entities();
        Ok(stored.with_overlay(
            stored.overlay.clone(),
            policies.schema.as_ref(),
            self.engine.next_generation(),
        )?)
    }

    /// Creates one API policy; an existing id is a conflict.
    pub async fn create_policy(&self, id: &str, content: &str) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let current = self.engine.policies();
        if current.info(id).is_some() {
            return Err(AuthzError::PolicyExists(id.to_owned()).into());
        }
        refuse_file_policy(&current, id)?;
        self.write_policies(
            &current,
            vec![(id.to_owned(), content.to_owned())],
            false,
            Expect::Absent,
        )
        .await
    }

    /// Creates or replaces one API policy.
    pub async fn upsert_policy(&self, id: &str, content: &str) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let current = self.engine.policies();
        refuse_file_policy(&current, id)?;
        self.write_policies(
            &current,
            vec![(id.to_owned(), content.to_owned())],
            false,
            Expect::Any,
        )
        .await
    }

    /// Replaces every API policy (file policies stay) with `policies`.
    pub async fn replace_policies(
        &self,
        policies: Vec<(String, String)>,
    ) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let current = self.engine.policies();
        for (id, _) in &policies {
            refuse_file_policy(&current, id)?;
        }
        self.write_policies(&current, policies, true, Expect::Any)
            .await
    }

    pub async fn delete_policy(&self, id: &str) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let current = self.engine.policies();
        match current.info(id).map(|p| &p.source) {
            None => return Err(AuthzError::PolicyNotFound(id.to_owned()).into()),
            Some(PolicyOrigin::Api) => {}
            Some(_) => return refuse_file_policy(&current, id),
        }
        let mut inputs = current.inputs.clone();
        inputs.api.retain(|(existing, _)| existing != id);
        let snapshot = PolicySnapshot::build(&inputs, self.engine.next_generation())?;
        self.store.delete(POLICIES, id, Expect::Any).await?;
        self.engine.swap_policies(snapshot);
        self.announce(TOPIC_POLICIES).await;
        Ok(())
    }

    async fn write_policies(
        &self,
        current: &PolicySnapshot,
        changes: Vec<(String, String)>,
        replace: bool,
        expect: Expect,
    ) -> Result<(), ServiceError> {
        let mut inputs = current.inputs.clone();
        if replace {
            inputs.api.clear();
        }
        let mut ops = Vec::with_capacity(changes.len() + 1);
        if replace {
            ops.push(Op::Clear {
                ns: POLICIES.into(),
            });
        }
        for (id, content) in changes {
            ops.push(Op::Put {
                ns: POLICIES.into(),
                key: id.clone(),
                value: encode(&StoredPolicy {
                    content: content.clone(),
                }),
                expect,
            });
            match inputs.api.iter_mut().find(|(existing, _)| *existing == id) {
                Some(slot) => slot.1 = content,
                None => inputs.api.push((id, content)),
            }
        }
        let snapshot = PolicySnapshot::build(&inputs, self.engine.next_generation())?;
        self.store.transact(ops).await?;
        self.engine.swap_policies(snapshot);
        self.announce(TOPIC_POLICIES).await;
        Ok(())
    }

    /// Sets the application schema; policies and stored entities must
    /// satisfy it or nothing changes.
    pub async fn put_schema(&self, schema: serde_json::Value) -> Result<(), ServiceError> {
        self.set_schema(Some(schema)).await
    }

    /// Removes the application schema: application policies and data are
    /// then accepted without validation.
    pub async fn delete_schema(&self) -> Result<(), ServiceError> {
        self.set_schema(None).await
    }

    async fn set_schema(&self, schema: Option<serde_json::Value>) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let current = self.engine.policies();
        let mut inputs = current.inputs.clone();
        inputs.schema = schema.clone().map(SchemaDoc::Json);
        let policies = PolicySnapshot::build(&inputs, self.engine.next_generation())?;
        let entities = self.revalidated_entities(&policies)?;
        self.store
            .put(
                SCHEMA,
                SCHEMA_KEY,
                &encode(&StoredSchema { schema }),
                Expect::Any,
            )
            .await?;
        self.engine.swap_both(policies, entities);
        self.announce(TOPIC_POLICIES).await;
        Ok(())
    }

    /// Replaces every stored entity with `entities` (a JSON array).
    pub async fn replace_entities(&self, entities: serde_json::Value) -> Result<(), ServiceError> {
        self.write_entities(entities, true).await
    }

    /// Creates or replaces each entity of `entities` (a JSON array).
    pub async fn upsert_entities(&self, entities: serde_json::Value) -> Result<(), ServiceError> {
        self.write_entities(entities, false).await
    }

    async fn write_entities(
        &self,
        entities: serde_json::Value,
        replace: bool,
    ) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let policies = self.engine.policies();
        let schema = policies.schema.as_ref();
        let parsed = parse_entities(entities, schema)?;
        let mut ops = Vec::with_capacity(parsed.len() + 1);
        if replace {
            ops.push(Op::Clear {
                ns: ENTITIES.into(),
            });
        }
        ops.extend(parsed.iter().map(|p| put_entity(&p.key, &p.json)));
        let generation = self.engine.next_generation();
        let snapshot = if replace {
            let overlay = self.engine.entities().overlay.clone();
            let fresh = EntitySnapshot::from_parsed(parsed, schema, generation)?;
            if overlay.is_empty() {
                fresh
            } else {
                fresh.with_overlay(overlay, schema, generation)?
            }
        } else {
            self.engine
                .entities()
                .with_changes(parsed, &[], schema, generation)?
        };
        self.store.transact(ops).await?;
        self.engine.swap_entities(snapshot);
        self.announce(TOPIC_ENTITIES).await;
        Ok(())
    }

    pub async fn delete_entity(&self, uid: &EntityUid) -> Result<(), ServiceError> {
        let _guard = self.writer.lock().await;
        let key = entity_key(uid);
        let current = self.engine.entities();
        if !current.docs.contains_key(&key) {
            return Err(AuthzError::EntityNotFound(key).into());
        }
        let policies = self.engine.policies();
        let snapshot = current.with_changes(
            Vec::new(),
            std::slice::from_ref(uid),
            policies.schema.as_ref(),
            self.engine.next_generation(),
        )?;
        self.store.delete(ENTITIES, &key, Expect::Any).await?;
        self.engine.swap_entities(snapshot);
        self.announce(TOPIC_ENTITIES).await;
        Ok(())
    }

    pub async fn clear_entities(&self) -> Result<(), ServiceError> {
        self.replace_entities(serde_json::Value::Array(Vec::new()))
            .await
    }
}

fn refuse_file_policy(current: &PolicySnapshot, id: &str) -> Result<(), ServiceError> {
    if id.starts_with(RBAC_POLICY_PREFIX) {
        return Err(AuthzError::PolicyFromRbac(id.to_owned()).into());
    }
    match current.info(id).map(|p| &p.source) {
        Some(PolicyOrigin::File { .. } | PolicyOrigin::Builtin) => {
            Err(AuthzError::PolicyFromFile(id.to_owned()).into())
        }
        Some(PolicyOrigin::Rbac) => Err(AuthzError::PolicyFromRbac(id.to_owned()).into()),
        _ => Ok(()),
    }
}

fn put_entity(key: &str, json: &serde_json::Value) -> Op {
    Op::Put {
        ns: ENTITIES.into(),
        key: key.to_owned(),
        value: encode(json),
        expect: Expect::Any,
    }
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    // Serializing plain data structures to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes).map_err(|e| ServiceError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

async fn read_entity_docs(store: &dyn Store) -> Result<Vec<serde_json::Value>, ServiceError> {
    scan_all(store, ENTITIES)
        .await?
        .into_iter()
        .map(|(key, v)| decode::<serde_json::Value>(&v.value, &format!("entity {key}")))
        .collect()
}

/// The directory's files and schema, the store's policies, and the stored
/// schema choice (which outranks the file when present).
async fn read_inputs(
    store: &dyn Store,
    dir: &Path,
    limits: PolicyLimits,
) -> Result<PolicyInputs, ServiceError> {
    let files = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || load_policy_dir(&dir))
            .await
            .map_err(|e| ServiceError::Corrupt {
                what: "policy directory".into(),
                message: e.to_string(),
            })??
    };
    let api = scan_all(store, POLICIES)
        .await?
        .into_iter()
        .map(|(id, v)| {
            decode::<StoredPolicy>(&v.value, &format!("policy {id}")).map(|p| (id, p.content))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = match store.get(SCHEMA, SCHEMA_KEY).await? {
        Some(stored) => decode::<StoredSchema>(&stored.value, "schema")?
            .schema
            .map(SchemaDoc::Json),
        None => files.schema,
    };
    Ok(PolicyInputs {
        files: files.files,
        api,
        rbac: Vec::new(),
        schema,
        limits,
    })
}
