//! The decision cache, the entity-slice cache and the cache of merged
//! principal entity sets.
//!
//! Entries remember the policy and entity generations they were computed
//! under and are served only while both are current, so a stale answer is
//! impossible by construction; capacity and TTL only bound memory.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::{Entities, Entity, EntityUid};
use moka::sync::Cache;

use super::AuthzError;
use super::engine::Outcome;
use super::request::DecisionRequest;

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// 0 disables the decision cache.
    pub decision_capacity: u64,
    pub decision_ttl: Duration,
    /// 0 disables the entity-slice cache.
    pub entity_capacity: u64,
    pub entity_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            decision_capacity: 100_000,
            decision_ttl: Duration::from_secs(300),
            entity_capacity: 10_000,
            entity_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generations {
    pub policies: u64,
    pub entities: u64,
    /// The principal's directory identity read (0: none).
    pub identity: u64,
}

struct CachedDecision {
    generations: Generations,
    outcome: Arc<Outcome>,
}

pub(crate) struct DecisionCache {
    inner: Option<Cache<Box<[u8]>, Arc<CachedDecision>>>,
}

/// The table size a cache of `capacity` entries starts with: all of it, up
/// to 1M entries (a few tens of MB of buckets at most).
fn initial_capacity(capacity: u64) -> usize {
    usize::try_from(capacity.min(1 << 20)).unwrap_or(1 << 20)
}

/// A cache of at most `capacity` entries kept at most `ttl`, or none when
/// `capacity` is 0. Sized up front: growing the table as it fills rehashes
/// every entry on the request that crosses each size, a millisecond stall
/// in the latency tail.
fn bounded<K, V>(capacity: u64, ttl: Duration) -> Option<Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (capacity > 0).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .initial_capacity(initial_capacity(capacity))
            .time_to_live(ttl)
            .build()
    })
}

thread_local! {
    /// Reused per thread so a lookup allocates nothing.
    static KEY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

impl DecisionCache {
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            inner: bounded(settings.decision_capacity, settings.decision_ttl),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Runs `f` with the request's key; `None` when the request cannot be
    /// cached (the cache is off, or it brings its own entities).
    fn with_key<R>(&self, req: &DecisionRequest, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.inner.is_none() || req.has_inline_entities() {
            return None;
        }
        let (principal, action, resource) = (
            req.principal.as_ref()?,
            req.action.as_ref()?,
            req.resource.as_ref()?,
        );
        KEY.with(|cell| {
            let mut key = cell.borrow_mut();
            key.clear();
            principal.write_key(&mut key);
            action.write_key(&mut key);
            resource.write_key(&mut key);
            match &req.context {
                None | Some(serde_json::Value::Null) => {}
                // serde_json's map is ordered by key, so equal contexts
                // serialize to equal bytes whatever order they came in.
                Some(context) => serde_json::to_writer(&mut *key, context).ok()?,
            }
            Some(f(&key))
        })
    }

    pub fn get(&self, req: &DecisionRequest, current: Generations) -> Option<Arc<Outcome>> {
        let cache = self.inner.as_ref()?;
        let hit = self.with_key(req, |key| cache.get(key))??;
        (hit.generations == current).then(|| hit.outcome.clone())
    }

    pub fn insert(&self, req: &DecisionRequest, generations: Generations, outcome: Arc<Outcome>) {
        // Requests that bring their own entities are never cached.
        let Some(cache) = self.inner.as_ref().filter(|_| !req.has_inline_entities()) else {
            return;
        };
        let value = Arc::new(CachedDecision {
            generations,
            outcome,
        });
        self.with_key(req, |key| cache.insert(key.into(), value));
    }
}

/// Slices of the stored entity set (an entity and what it reaches), per
/// root uid and entity generation.
pub(crate) struct SliceCache {
    inner: Option<Cache<EntityUid, Arc<Slice>>>,
}

/// A slice and the entity generation it was cut from.
struct Slice {
    generation: u64,
    entities: Arc<[Entity]>,
}

impl SliceCache {
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            inner: bounded(settings.entity_capacity, settings.entity_ttl),
        }
    }

    /// The cached slice for `root` at `generation`, or `compute`'s result
    /// (then cached). Returns whether it was a hit.
    pub fn get_or_compute(
        &self,
        root: &EntityUid,
        generation: u64,
        compute: impl FnOnce() -> Vec<Entity>,
    ) -> (Arc<[Entity]>, bool) {
        let Some(cache) = &self.inner else {
            return (compute().into(), false);
        };
        if let Some(hit) = cache.get(root).filter(|hit| hit.generation == generation) {
            return (hit.entities.clone(), true);
        }
        let entities: Arc<[Entity]> = compute().into();
        cache.insert(
            root.clone(),
            Arc::new(Slice {
                generation,
                entities: entities.clone(),
            }),
        );
        (entities, false)
    }
}

/// Entity sets merged for a principal with an identity of its own (a
/// signed-in caller, a directory user) and an action: the stored slices of
/// both, the identity's entities over them, and Cedar's transitive closure
/// computed, per entity generation and identity stamp. A check whose
/// resource adds nothing to this set (it is not stored, or already in it)
/// decides on it as is; building it was a fifth of such a check.
pub(crate) struct BaseCache {
    inner: Option<Cache<(EntityUid, EntityUid), Arc<Base>>>,
}

struct Base {
    generation: u64,
    identity: u64,
    entities: Arc<Entities>,
}

impl BaseCache {
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            inner: bounded(settings.entity_capacity, settings.entity_ttl),
        }
    }

    /// The set for `principal` and `action` at entity generation
    /// `generation` and identity stamp `identity`, or `build`'s (then
    /// cached).
    pub fn get_or_build(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        generation: u64,
        identity: u64,
        build: impl FnOnce() -> Result<Entities, AuthzError>,
    ) -> Result<Arc<Entities>, AuthzError> {
        let Some(cache) = &self.inner else {
            return build().map(Arc::new);
        };
        let key = (principal.clone(), action.clone());
        if let Some(hit) = cache
            .get(&key)
            .filter(|hit| hit.generation == generation && hit.identity == identity)
        {
            return Ok(hit.entities.clone());
        }
        let entities = Arc::new(build()?);
        cache.insert(
            key,
            Arc::new(Base {
                generation,
                identity,
                entities: entities.clone(),
            }),
        );
        Ok(entities)
    }
}
