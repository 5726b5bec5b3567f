//! Scope index: for a request, only the policies whose scope (the
//! `principal`, `action` and `resource` constraints in the policy head) can
//! match it are handed to Cedar.
//!
//! This is exact, not a heuristic: Cedar evaluates a policy as
//! `scope && conditions`, and a scope that does not match makes the policy
//! false without evaluating its conditions, so it can neither be a reason
//! nor raise an error. Dropping it changes nothing but the time taken.
//! With many group or RBAC policies (one per group, per grant) most of them
//! are dropped, which is where an uncached decision spends its time.
//!
//! Policies are indexed by the entity their principal constraint names; a
//! request looks up its principal and each of its ancestors. The sliced
//! policy sets are cached by the list of policies they hold, per snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};
use moka::sync::Cache;

/// Distinct slices kept per snapshot; a slice is a few `Arc` clones.
const SLICE_CACHE_CAPACITY: u64 = 10_000;

/// A principal or resource constraint, in one shape for both.
enum EntityScope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl From<PrincipalConstraint> for EntityScope {
    fn from(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => EntityScope::Any,
            PrincipalConstraint::Eq(u) => EntityScope::Eq(u),
            PrincipalConstraint::In(u) => EntityScope::In(u),
            PrincipalConstraint::Is(t) => EntityScope::Is(t),
            PrincipalConstraint::IsIn(t, u) => EntityScope::IsIn(t, u),
        }
    }
}

impl From<ResourceConstraint> for EntityScope {
    fn from(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => EntityScope::Any,
            ResourceConstraint::Eq(u) => EntityScope::Eq(u),
            ResourceConstraint::In(u) => EntityScope::In(u),
            ResourceConstraint::Is(t) => EntityScope::Is(t),
            ResourceConstraint::IsIn(t, u) => EntityScope::IsIn(t, u),
        }
    }
}

/// `uid in target`, as Cedar's `in` defines it (reflexive).
fn is_in(entities: &Entities, uid: &EntityUid, target: &EntityUid) -> bool {
    uid == target || entities.is_ancestor_of(target, uid)
}

impl EntityScope {
    fn matches(&self, entities: &Entities, uid: &EntityUid) -> bool {
        match self {
            EntityScope::Any => true,
            EntityScope::Eq(target) => uid == target,
            EntityScope::In(target) => is_in(entities, uid, target),
            EntityScope::Is(t) => uid.type_name() == t,
            EntityScope::IsIn(t, target) => uid.type_name() == t && is_in(entities, uid, target),
        }
    }

    /// The entity a match must be, or be in.
    fn anchor(&self) -> Option<&EntityUid> {
        match self {
            EntityScope::Eq(u) | EntityScope::In(u) | EntityScope::IsIn(_, u) => Some(u),
            EntityScope::Any | EntityScope::Is(_) => None,
        }
    }
}

struct Scope {
    principal: EntityScope,
    action: ActionConstraint,
    resource: EntityScope,
}

impl Scope {
    fn matches(&self, entities: &Entities, p: &EntityUid, a: &EntityUid, r: &EntityUid) -> bool {
        let action = match &self.action {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(target) => a == target,
            ActionConstraint::In(targets) => targets.iter().any(|t| is_in(entities, a, t)),
        };
        action && self.principal.matches(entities, p) && self.resource.matches(entities, r)
    }
}

pub(crate) struct ScopeIndex {
    policies: Vec<Policy>,
    scopes: Vec<Scope>,
    /// Policies whose principal constraint names an entity, by that entity.
    by_principal: HashMap<EntityUid, Vec<u32>>,
    /// Policies with `principal` or `principal is T`.
    unanchored: Vec<u32>,
    slices: Cache<Box<[u32]>, Arc<PolicySet>>,
}

/// The policies to evaluate for one request.
pub(crate) enum Slice<'a> {
    /// Every policy can match: use the whole set.
    All(&'a PolicySet),
    Some(Arc<PolicySet>),
}

impl Slice<'_> {
    pub fn set(&self) -> &PolicySet {
        match self {
            Slice::All(set) => set,
            Slice::Some(set) => set,
        }
    }
}

impl ScopeIndex {
    pub fn new(set: &PolicySet) -> ScopeIndex {
        let policies: Vec<Policy> = set.policies().cloned().collect();
        let mut by_principal: HashMap<EntityUid, Vec<u32>> = HashMap::new();
        let mut unanchored = Vec::new();
        let mut scopes = Vec::with_capacity(policies.len());
        for (i, policy) in policies.iter().enumerate() {
            let scope = Scope {
                principal: policy.principal_constraint().into(),
                action: policy.action_constraint(),
                resource: policy.resource_constraint().into(),
            };
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match scope.principal.anchor() {
                Some(anchor) => by_principal.entry(anchor.clone()).or_default().push(i),
                None => unanchored.push(i),
            }
            scopes.push(scope);
        }
        ScopeIndex {
            policies,
            scopes,
            by_principal,
            unanchored,
            slices: Cache::new(SLICE_CACHE_CAPACITY),
        }
    }

    /// The policies of `full` (the set this index was built from) that can
    /// match `(p, a, r)` against `entities`.
    pub fn slice<'a>(
        &self,
        full: &'a PolicySet,
        entities: &Entities,
        p: &EntityUid,
        a: &EntityUid,
        r: &EntityUid,
    ) -> Slice<'a> {
        let mut chosen: Vec<u32> = Vec::with_capacity(16);
        let mut consider = |candidates: &[u32]| {
            for &i in candidates {
                if self.scopes[i as usize].matches(entities, p, a, r) {
                    chosen.push(i);
                }
            }
        };
        consider(&self.unanchored);
        if let Some(direct) = self.by_principal.get(p) {
            consider(direct);
        }
        if let Some(ancestors) = entities.ancestors(p) {
            for ancestor in ancestors {
                if let Some(list) = self.by_principal.get(ancestor) {
                    consider(list);
                }
            }
        }
        // An entity that is both a parent and an indirect ancestor is
        // looked up twice.
        chosen.sort_unstable();
        chosen.dedup();
        if chosen.len() == self.policies.len() {
            return Slice::All(full);
        }
        if let Some(set) = self.slices.get(chosen.as_slice()) {
            return Slice::Some(set);
        }
        let set =
            PolicySet::from_policies(chosen.iter().map(|&i| self.policies[i as usize].clone()))
                .map(Arc::new);
        match set {
            Ok(set) => {
                self.slices.insert(chosen.into_boxed_slice(), set.clone());
                Slice::Some(set)
            }
            // Policies of one valid set always form a valid subset; should
            // that ever fail, deciding on the whole set is still exact.
            Err(_) => Slice::All(full),
        }
    }
}

#[cfg(test)]
mod tests;
