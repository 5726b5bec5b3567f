//! RBAC, with Casbin's role API, decided by Cedar (see `authz::rbac`):
//! grants, roles (which nest) and the roles assigned to principals, stored
//! in namespace `rbac` (`grant/<id>`, `role/<id>`, `assign/<principal uid>`)
//! and served through the catalog's snapshots. Every change is one store
//! transaction and one snapshot swap, so the next decision sees it, and it
//! is announced on the change bus for the other instances.
//!
//! Owns: turning requests into grants, roles and assignments, their rules
//! (no duplicates, no cycles, nothing half applied), and the read views
//! (implicit roles, effective permissions). Must not: know HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use cedar_policy::{Entity, EntityTypeName, EntityUid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::{Catalog, ServiceError};
use super::graph::{GraphState, IAM, Limits, Walk};
use super::tokens::now;
use crate::authz::{
    AuthzError, ROLE_TYPE, UidInput, grant_policy, grant_policy_id, parse_uid, role_uid, user_uid,
};
use crate::backends::{Expect, Op, Store, StoreError, scan_all};
use crate::domain::{Assignment, Effect, Grant, Role};

/// The store namespace of grants, roles and assignments.
pub const RBAC: &str = "rbac";
/// The automatic backups taken before a reset, by id.
pub const RBAC_BACKUPS: &str = "rbac_backups";
/// Change-notice topic.
pub const TOPIC_RBAC: &str = "rbac";

const GRANT: &str = "grant/";
const ROLE: &str = "role/";
const ASSIGN: &str = "assign/";

/// Longest role name.
const MAX_ROLE_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("this grant already exists (`{0}`)")]
    GrantExists(String),
    #[error("no such grant")]
    GrantNotFound,
    #[error("role `{0}` not found")]
    RoleNotFound(String),
    #[error("role `{role}` would be its own ancestor through `{through}`")]
    RoleCycle { role: String, through: String },
    #[error("role `{role}` is still used by {dependents:?}; pass cascade=true to remove them too")]
    RoleInUse {
        role: String,
        dependents: Vec<String>,
    },
    #[error("`{principal}` does not have role `{role}`")]
    NotAssigned { principal: String, role: String },
    #[error("`{principal}` already has role `{role}`")]
    AlreadyAssigned { principal: String, role: String },
    #[error("{} of {total} items are not valid; nothing was applied", errors.len())]
    Bulk {
        total: usize,
        errors: Vec<ItemError>,
    },
    #[error("`confirm` must be \"reset all RBAC grants and assignments\"")]
    ResetNotConfirmed,
    #[error("no RBAC backup `{0}`")]
    BackupNotFound(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for RbacError {
    fn from(e: StoreError) -> Self {
        RbacError::Service(ServiceError::Store(e))
    }
}

/// Why one item of a bulk request fails.
#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

/// Every grant, role and assignment, as the catalog serves them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RbacState {
    pub grants: BTreeMap<String, Grant>,
    pub roles: BTreeMap<String, Role>,
    /// By principal uid text.
    pub assignments: BTreeMap<String, Assignment>,
    /// The identity graph (namespace `iam`): its entities join the same
    /// overlay, and its changes go through the same versioned writes.
    pub graph: GraphState,
}

impl RbacState {
    pub async fn load(store: &dyn Store) -> Result<RbacState, ServiceError> {
        Ok(Self::load_versioned(store).await?.0)
    }

    /// The stored state, with the version of each of its keys (by
    /// `<namespace>/<key>`).
    pub async fn load_versioned(
        store: &dyn Store,
    ) -> Result<(RbacState, HashMap<String, u64>), ServiceError> {
        let mut state = RbacState::default();
        let mut versions = HashMap::new();
        for (key, value) in scan_all(store, IAM).await? {
            versions.insert(format!("{IAM}/{key}"), value.version);
            state
                .graph
                .absorb(&key, &value.value)
                .map_err(|e| ServiceError::Corrupt {
                    what: format!("{IAM}/{key}"),
                    message: e.to_string(),
                })?;
        }
        for (key, value) in scan_all(store, RBAC).await? {
            versions.insert(format!("{RBAC}/{key}"), value.version);
            let corrupt = |e: serde_json::Error| ServiceError::Corrupt {
                what: format!("{RBAC}/{key}"),
                message: e.to_string(),
            };
            if let Some(id) = key.strip_prefix(GRANT) {
                let grant: Grant = serde_json::from_slice(&value.value).map_err(corrupt)?;
                state.grants.insert(id.to_owned(), grant);
            } else if let Some(id) = key.strip_prefix(ROLE) {
                let role: Role = serde_json::from_slice(&value.value).map_err(corrupt)?;
                state.roles.insert(id.to_owned(), role);
            } else if let Some(principal) = key.strip_prefix(ASSIGN) {
                let assignment: Assignment =
                    serde_json::from_slice(&value.value).map_err(corrupt)?;
                state.assignments.insert(principal.to_owned(), assignment);
            }
        }
        Ok((state, versions))
    }

    /// `(policy id, text)` of every grant.
    pub fn compiled(&self) -> Vec<(String, String)> {
        self.grants
            .values()
            .map(|g| (grant_policy_id(g), grant_policy(g)))
            .collect()
    }

    /// The entity overlay: the graph's entities, and the roles and
    /// assignments (an identity in both gets the parents of both).
    pub fn overlay(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = self.graph.overlay();
        for (key, doc) in crate::authz::overlay(self.roles.values(), self.assignments.values()) {
            match out.get_mut(&key) {
                Some(existing) => {
                    let extra = doc["parents"].as_array().cloned().unwrap_or_default();
                    if let Some(parents) = existing["parents"].as_array_mut() {
                        parents.extend(extra);
                    }
                }
                None => {
                    out.insert(key, doc);
                }
            }
        }
        out
    }

    /// Whether both give the same overlay.
    pub fn same_entities(&self, other: &RbacState) -> bool {
        self.roles == other.roles
            && self.assignments == other.assignments
            && self.graph.same_entities(&other.graph)
    }

    /// Whether `role` reaches `target` through parents (or is it).
    fn reaches(&self, role: &str, target: &str) -> Option<String> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([role.to_owned()]);
        while let Some(current) = queue.pop_front() {
            if current == target {
                return Some(current);
            }
            if seen.insert(current.clone())
                && let Some(r) = self.roles.get(&current)
            {
                queue.extend(r.parents.iter().cloned());
            }
        }
        None
    }
}

/// A grant as a request gives it: Casbin's `{subject|role, object, action}`
/// or Cedar's `{principal, resource, action}`, plus `effect`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantInput {
    /// A role name.
    #[serde(default)]
    pub role: Option<String>,
    /// A user id, or any principal or group uid.
    #[serde(default, alias = "principal")]
    pub subject: Option<UidInput>,
    /// A resource uid (it and everything in it), or `"*"`: any resource.
    #[serde(default, alias = "resource")]
    pub object: Option<UidInput>,
    /// Every resource of this type.
    #[serde(default, alias = "resource_type")]
    pub object_type: Option<String>,
    /// An action uid, or `"*"`: every action.
    #[serde(default)]
    pub action: Option<UidInput>,
    #[serde(default)]
    pub effect: Option<Effect>,
}

fn invalid(field: &str, message: impl Into<String>) -> RbacError {
    RbacError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A role name: 1 to 128 characters, no control characters.
pub fn check_role_name(field: &str, name: &str) -> Result<(), RbacError> {
    if name.is_empty() || name.chars().count() > MAX_ROLE_LEN {
        return Err(invalid(
            field,
            format!("a role name has 1 to {MAX_ROLE_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "a role name has no control characters"));
    }
    Ok(())
}

/// A principal as the RBAC routes name it: a Cedar uid, or a bare id taken
/// as `Portcullis::User::"<id>"`.
pub fn principal_uid(field: &str, input: &UidInput) -> Result<EntityUid, RbacError> {
    match input {
        UidInput::Text(text) if !text.contains("::") => {
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(invalid(
                    field,
                    "a user id is not empty and has no control characters",
                ));
            }
            Ok(user_uid(text))
        }
        other => parse_uid(other).map_err(|e| invalid(field, e.to_string())),
    }
}

fn is_any(input: &UidInput) -> bool {
    matches!(input, UidInput::Text(t) if t == "*")
}

impl From<&Grant> for GrantInput {
    /// The input that describes `grant` (to remove it by its content).
    fn from(grant: &Grant) -> GrantInput {
        let text = |s: &str| Some(UidInput::Text(s.to_owned()));
        GrantInput {
            role: None,
            subject: text(&grant.subject),
            object: grant.resource.as_deref().and_then(text),
            object_type: grant.resource_type.clone(),
            action: text(grant.action.as_deref().unwrap_or("*")),
            effect: Some(grant.effect),
        }
    }
}

impl GrantInput {
    /// The grant this input describes (its id derived from its content).
    pub fn grant(&self) -> Result<Grant, RbacError> {
        let subject = match (&self.role, &self.subject) {
            (Some(role), None) => {
                check_role_name("role", role)?;
                role_uid(role)
            }
            (None, Some(subject)) => principal_uid("subject", subject)?,
            (Some(_), Some(_)) => {
                return Err(invalid("role", "give `role` or `subject`, not both"));
            }
            (None, None) => return Err(invalid("role", "a grant needs a `role` or a `subject`")),
        };
        let action = match &self.action {
            None => {
                return Err(invalid(
                    "action",
                    "required: an action uid, or \"*\" for every action",
                ));
            }
            Some(a) if is_any(a) => None,
            Some(a) => Some(parse_uid(a).map_err(|e| invalid("action", e.to_string()))?),
        };
        let resource = match &self.object {
            Some(o) if !is_any(o) => {
                Some(parse_uid(o).map_err(|e| invalid("object", e.to_string()))?)
            }
            _ => None,
        };
        let resource_type = match &self.object_type {
            Some(_) if resource.is_some() => {
                return Err(invalid(
                    "object_type",
                    "give `object` or `object_type`, not both",
                ));
            }
            Some(t) => Some(
                t.parse::<EntityTypeName>()
                    .map_err(|e| invalid("object_type", format!("not a Cedar entity type: {e}")))?,
            ),
            None => None,
        };
        if self.object.is_none() && resource_type.is_none() {
            return Err(invalid(
                "object",
                "required: a resource uid, or \"*\" for any resource (or `object_type`)",
            ));
        }
        let effect = self.effect.unwrap_or(Effect::Allow);
        let text = |uid: &EntityUid| uid.to_string();
        let mut grant = Grant {
            id: String::new(),
            subject: text(&subject),
            action: action.as_ref().map(text),
            resource: resource.as_ref().map(text),
            resource_type: resource_type.map(|t| t.to_string()),
            effect,
            created_at: now(),
        };
        grant.id = grant_id(&grant);
        Ok(grant)
    }
}

/// The first 16 hex digits of the SHA-256 of what the grant says.
fn grant_id(grant: &Grant) -> String {
    let canonical = serde_json::json!([
        "v1",
        grant.subject,
        grant.action,
        grant.resource,
        grant.resource_type,
        grant.effect.as_str(),
    ]);
    super::tokens::hex(&Sha256::digest(canonical.to_string().as_bytes())[..8])
}

fn put(key: String, value: &impl Serialize) -> Op {
    Op::put_json(RBAC, key, value)
}

fn delete(key: String) -> Op {
    Op::remove(RBAC, key)
}

/// What a reset removed, kept so it can be put back.
#[derive(Serialize, Deserialize)]
struct Backup {
    id: String,
    created_at: u64,
    grants: Vec<Grant>,
    roles: Vec<Role>,
    assignments: Vec<Assignment>,
}

/// Whether a bulk request adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkOp {
    Add,
    Remove,
}

/// One implicit role and how the principal has it.
#[derive(Debug, Clone, Serialize)]
pub struct ImplicitRole {
    pub role: String,
    /// From the principal to the role, each step an entity parent.
    pub path: Vec<String>,
}

/// One effective grant of a principal and what it comes through.
#[derive(Debug, Clone, Serialize)]
pub struct Permission {
    #[serde(flatten)]
    pub grant: Grant,
    pub policy_id: String,
    /// The grant's subject: the principal itself, or a role or group it is in.
    pub via: String,
}

/// The RBAC use cases over the catalog.
pub struct Rbac<'a> {
    pub catalog: &'a Catalog,
}

impl Rbac<'_> {
    pub fn grants(&self) -> Vec<Grant> {
        self.catalog.rbac().grants.values().cloned().collect()
    }

    /// Adds or removes every grant of `items`, or none: the answer names
    /// each item that is not valid.
    pub async fn bulk(&self, op: BulkOp, items: &[GrantInput]) -> Result<Vec<Grant>, RbacError> {
        if items.is_empty() {
            return Err(invalid("items", "name at least one grant"));
        }
        let parsed: Vec<Result<Grant, ItemError>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| item.grant().map_err(|e| item_error(index, &e)))
            .collect();
        // Which item each grant id came from, to name the schema's complaints.
        let indices: BTreeMap<String, usize> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().ok().map(|g| (grant_policy_id(g), i)))
            .collect();
        let changed = self
            .catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                let mut errors = Vec::new();
                let mut ops = Vec::new();
                let mut done = Vec::new();
                for (index, grant) in parsed.iter().enumerate() {
                    let grant = match grant {
                        Ok(grant) => grant.clone(),
                        Err(e) => {
                            errors.push(e.clone());
                            continue;
                        }
                    };
                    let result = match op {
                        BulkOp::Add if next.grants.contains_key(&grant.id) => {
                            Err(RbacError::GrantExists(grant_policy_id(&grant)))
                        }
                        BulkOp::Add => {
                            ops.push(put(format!("{GRANT}{}", grant.id), &grant));
                            next.grants.insert(grant.id.clone(), grant.clone());
                            Ok(grant)
                        }
                        BulkOp::Remove => match next.grants.remove(&grant.id) {
                            Some(stored) => {
                                ops.push(delete(format!("{GRANT}{}", grant.id)));
                                Ok(stored)
                            }
                            None => Err(RbacError::GrantNotFound),
                        },
                    };
                    match result {
                        Ok(grant) => done.push(grant),
                        Err(e) => errors.push(item_error(index, &e)),
                    }
                }
                if !errors.is_empty() {
                    return Err(RbacError::Bulk {
                        total: items.len(),
                        errors,
                    });
                }
                Ok((next, ops, done))
            })
            .await;
        match changed {
            // More than one item: the schema's complaints become item errors.
            Err(RbacError::Service(ServiceError::Authz(AuthzError::PoliciesInvalid(
                diagnostics,
            )))) if items.len() > 1 => {
                let mut errors: Vec<ItemError> = diagnostics
                    .iter()
                    .filter_map(|d| {
                        let index = *indices.get(d.policy_id.as_deref()?)?;
                        Some(ItemError {
                            index,
                            code: "POLICY_INVALID",
                            message: d.message.clone(),
                        })
                    })
                    .collect();
                if errors.is_empty() {
                    return Err(
                        ServiceError::Authz(AuthzError::PoliciesInvalid(diagnostics)).into(),
                    );
                }
                errors.sort_by_key(|e| e.index);
                Err(RbacError::Bulk {
                    total: items.len(),
                    errors,
                })
            }
            other => other,
        }
    }

    /// Adds one grant; the same grant twice is a conflict.
    pub async fn add(&self, input: &GrantInput) -> Result<Grant, RbacError> {
        self.one(BulkOp::Add, input).await
    }

    /// Removes one grant; a grant that does not exist is not found.
    pub async fn remove(&self, input: &GrantInput) -> Result<Grant, RbacError> {
        self.one(BulkOp::Remove, input).await
    }

    async fn one(&self, op: BulkOp, input: &GrantInput) -> Result<Grant, RbacError> {
        match self.bulk(op, std::slice::from_ref(input)).await {
            Ok(mut done) => done
                .pop()
                .ok_or_else(|| invalid("grant", "nothing was applied")),
            Err(RbacError::Bulk { errors, .. }) => {
                // The single item's own error, as it would be alone.
                let grant = input.grant()?;
                Err(match errors.first().map(|e| e.code) {
                    Some("GRANT_EXISTS") => RbacError::GrantExists(grant_policy_id(&grant)),
                    Some("GRANT_NOT_FOUND") => RbacError::GrantNotFound,
                    _ => invalid(
                        "grant",
                        errors
                            .first()
                            .map(|e| e.message.clone())
                            .unwrap_or_default(),
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn roles(&self) -> Vec<Role> {
        self.catalog.rbac().roles.values().cloned().collect()
    }

    pub fn role(&self, id: &str) -> Option<Role> {
        self.catalog.rbac().roles.get(id).cloned()
    }

    /// Creates or replaces a role; its parents must exist and not make a cycle.
    pub async fn put_role(
        &self,
        id: &str,
        description: Option<String>,
        parents: BTreeSet<String>,
    ) -> Result<(Role, bool), RbacError> {
        check_role_name("id", id)?;
        for parent in &parents {
            check_role_name("parents", parent)?;
        }
        self.catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                for parent in &parents {
                    if parent == id {
                        return Err(RbacError::RoleCycle {
                            role: id.to_owned(),
                            through: id.to_owned(),
                        });
                    }
                    if !next.roles.contains_key(parent) {
                        return Err(invalid(
                            "parents",
                            format!("role `{parent}` does not exist; create it first"),
                        ));
                    }
                    if let Some(through) = next.reaches(parent, id) {
                        return Err(RbacError::RoleCycle {
                            role: id.to_owned(),
                            through,
                        });
                    }
                }
                let created = !next.roles.contains_key(id);
                let role = Role {
                    id: id.to_owned(),
                    description: description.clone(),
                    parents: parents.clone(),
                    created_at: next.roles.get(id).map_or_else(now, |r| r.created_at),
                };
                let ops = vec![put(format!("{ROLE}{id}"), &role)];
                next.roles.insert(id.to_owned(), role.clone());
                Ok((next, ops, (role, created)))
            })
            .await
    }

    /// Removes a role. While grants, assignments or child roles use it, the
    /// answer lists them, unless `cascade` removes them too.
    pub async fn delete_role(&self, id: &str, cascade: bool) -> Result<Vec<String>, RbacError> {
        self.catalog
            .change_rbac(|current| {
                if !current.roles.contains_key(id) {
                    return Err(RbacError::RoleNotFound(id.to_owned()));
                }
                let subject = role_uid(id).to_string();
                let mut next = current.clone();
                let mut ops = vec![delete(format!("{ROLE}{id}"))];
                let mut dependents = Vec::new();
                next.roles.remove(id);
                for grant in current.grants.values().filter(|g| g.subject == subject) {
                    dependents.push(grant_policy_id(grant));
                    next.grants.remove(&grant.id);
                    ops.push(delete(format!("{GRANT}{}", grant.id)));
                }
                for (key, assignment) in &current.assignments {
                    if assignment.roles.contains(id) {
                        dependents.push(assignment.principal.clone());
                        let mut changed = assignment.clone();
                        changed.roles.remove(id);
                        ops.push(assignment_op(key, &changed));
                        set_assignment(&mut next, key, changed);
                    }
                }
                for (child, role) in &current.roles {
                    if role.parents.contains(id) {
                        dependents.push(role_uid(child).to_string());
                        let mut changed = role.clone();
                        changed.parents.remove(id);
                        ops.push(put(format!("{ROLE}{child}"), &changed));
                        next.roles.insert(child.clone(), changed);
                    }
                }
                if !dependents.is_empty() && !cascade {
                    return Err(RbacError::RoleInUse {
                        role: id.to_owned(),
                        dependents,
                    });
                }
                Ok((next, ops, dependents))
            })
            .await
    }

    /// The roles assigned to `principal` directly.
    pub fn roles_of(&self, principal: &EntityUid) -> Vec<String> {
        self.catalog
            .rbac()
            .assignments
            .get(&principal.to_string())
            .map(|a| a.roles.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Gives `principal` the role (created when it does not exist, as
    /// Casbin does); having it already is a conflict.
    pub async fn assign(&self, principal: &EntityUid, role: &str) -> Result<(), RbacError> {
        check_role_name("role", role)?;
        if principal.type_name().to_string() == ROLE_TYPE {
            return Err(invalid(
                "id",
                "a role's parents are set with PUT /rbac/roles/{id}",
            ));
        }
        let key = principal.to_string();
        self.catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                let mut ops = Vec::new();
                if !next.roles.contains_key(role) {
                    let created = Role {
                        id: role.to_owned(),
                        description: None,
                        parents: BTreeSet::new(),
                        created_at: now(),
                    };
                    ops.push(put(format!("{ROLE}{role}"), &created));
                    next.roles.insert(role.to_owned(), created);
                }
                let mut assignment = next.assignments.get(&key).cloned().unwrap_or(Assignment {
                    principal: key.clone(),
                    roles: BTreeSet::new(),
                });
                if !assignment.roles.insert(role.to_owned()) {
                    return Err(RbacError::AlreadyAssigned {
                        principal: key.clone(),
                        role: role.to_owned(),
                    });
                }
                ops.push(assignment_op(&key, &assignment));
                set_assignment(&mut next, &key, assignment);
                Ok((next, ops, ()))
            })
            .await
    }

    pub async fn unassign(&self, principal: &EntityUid, role: &str) -> Result<(), RbacError> {
        let key = principal.to_string();
        self.catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                let mut assignment =
                    next.assignments
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| RbacError::NotAssigned {
                            principal: key.clone(),
                            role: role.to_owned(),
                        })?;
                if !assignment.roles.remove(role) {
                    return Err(RbacError::NotAssigned {
                        principal: key.clone(),
                        role: role.to_owned(),
                    });
                }
                let ops = vec![assignment_op(&key, &assignment)];
                set_assignment(&mut next, &key, assignment);
                Ok((next, ops, ()))
            })
            .await
    }

    /// Drops every role and every graph link of `principal` (its identity
    /// is gone).
    pub async fn forget(&self, principal: &EntityUid) -> Result<(), RbacError> {
        let key = principal.to_string();
        self.catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                let mut ops = match next.assignments.remove(&key) {
                    Some(_) => vec![delete(format!("{ASSIGN}{key}"))],
                    None => Vec::new(),
                };
                ops.extend(next.graph.drop_edges_of(&key));
                Ok((next, ops, ()))
            })
            .await
    }

    /// Everything `principal` is in, each with the shortest path to it,
    /// through the stored, RBAC and graph parents and through `identity`
    /// (the principal's own entities: a directory user's groups, a local
    /// account's admin role), within `limits`.
    pub fn memberships(&self, principal: &EntityUid, identity: &[Entity], limits: Limits) -> Walk {
        super::graph::memberships(
            &self.catalog.engine().entities(),
            principal,
            identity,
            limits,
        )
    }

    fn reachable(
        &self,
        principal: &EntityUid,
        identity: &[Entity],
    ) -> Vec<(EntityUid, Vec<String>)> {
        let unbounded = Limits {
            depth: usize::MAX,
            results: usize::MAX,
        };
        self.memberships(principal, identity, unbounded)
            .reached
            .into_iter()
            .filter_map(|r| Some((r.id.parse().ok()?, r.path)))
            .collect()
    }

    /// Every role `principal` has, directly, through child roles, through
    /// groups or other entity parents, each with the shortest path to it.
    pub fn implicit_roles(&self, principal: &EntityUid, identity: &[Entity]) -> Vec<ImplicitRole> {
        self.reachable(principal, identity)
            .into_iter()
            .filter(|(uid, _)| uid.type_name().to_string() == ROLE_TYPE)
            .map(|(uid, path)| ImplicitRole {
                role: uid.id().unescaped().to_owned(),
                path,
            })
            .collect()
    }

    /// Every grant that applies to `principal`: to it, or to a role or group
    /// it is in.
    pub fn permissions(&self, principal: &EntityUid, identity: &[Entity]) -> Vec<Permission> {
        let mut subjects: HashSet<String> = HashSet::from([principal.to_string()]);
        subjects.extend(
            self.reachable(principal, identity)
                .into_iter()
                .map(|(uid, _)| uid.to_string()),
        );
        self.catalog
            .rbac()
            .grants
            .values()
            .filter(|g| subjects.contains(&g.subject))
            .map(|g| Permission {
                grant: g.clone(),
                policy_id: grant_policy_id(g),
                via: g.subject.clone(),
            })
            .collect()
    }

    /// Removes every grant, role and assignment (file and API policies
    /// stay), after saving them as a backup in the same transaction.
    /// Answers the backup's id and what was removed.
    pub async fn reset(&self) -> Result<(String, RbacState), RbacError> {
        let id = super::tokens::random_id();
        self.catalog
            .change_rbac(|current| {
                let ops = vec![backup_op(&id, current), Op::Clear { ns: RBAC.into() }];
                let next = RbacState {
                    graph: current.graph.clone(),
                    ..RbacState::default()
                };
                Ok((next, ops, (id.clone(), current.clone())))
            })
            .await
    }

    /// The reset backups, newest first (without their contents).
    pub async fn backups(&self) -> Result<Vec<serde_json::Value>, RbacError> {
        let mut out = Vec::new();
        for (key, value) in scan_all(self.catalog.store().as_ref(), RBAC_BACKUPS).await? {
            let backup: Backup =
                serde_json::from_slice(&value.value).map_err(|e| ServiceError::Corrupt {
                    what: format!("{RBAC_BACKUPS}/{key}"),
                    message: e.to_string(),
                })?;
            out.push(serde_json::json!({
                "id": backup.id,
                "created_at": backup.created_at,
                "grants": backup.grants.len(),
                "roles": backup.roles.len(),
                "assignments": backup.assignments.len(),
            }));
        }
        out.sort_by_key(|b| std::cmp::Reverse(b["created_at"].as_u64()));
        Ok(out)
    }

    /// Puts back what a reset removed: the backup's grants, roles and
    /// assignments replace the current ones, all or nothing.
    /// Answers the id of the backup of what it replaced, and what it put back.
    pub async fn restore(&self, id: &str) -> Result<(String, RbacState), RbacError> {
        let stored = self
            .catalog
            .store()
            .get(RBAC_BACKUPS, id)
            .await?
            .ok_or_else(|| RbacError::BackupNotFound(id.to_owned()))?;
        let backup: Backup =
            serde_json::from_slice(&stored.value).map_err(|e| ServiceError::Corrupt {
                what: format!("{RBAC_BACKUPS}/{id}"),
                message: e.to_string(),
            })?;
        let before = super::tokens::random_id();
        self.catalog
            .change_rbac(|current| {
                let mut next = RbacState {
                    graph: current.graph.clone(),
                    ..RbacState::default()
                };
                let mut ops = vec![backup_op(&before, current), Op::Clear { ns: RBAC.into() }];
                for grant in &backup.grants {
                    ops.push(put(format!("{GRANT}{}", grant.id), grant));
                    next.grants.insert(grant.id.clone(), grant.clone());
                }
                for role in &backup.roles {
                    ops.push(put(format!("{ROLE}{}", role.id), role));
                    next.roles.insert(role.id.clone(), role.clone());
                }
                for assignment in backup.assignments.iter().cloned() {
                    ops.push(assignment_op(&assignment.principal, &assignment));
                    next.assignments
                        .insert(assignment.principal.clone(), assignment);
                }
                Ok((next.clone(), ops, (before.clone(), next)))
            })
            .await
    }
}

/// Saves `state` as backup `id`.
fn backup_op(id: &str, state: &RbacState) -> Op {
    let backup = Backup {
        id: id.to_owned(),
        created_at: now(),
        grants: state.grants.values().cloned().collect(),
        roles: state.roles.values().cloned().collect(),
        assignments: state.assignments.values().cloned().collect(),
    };
    Op::Put {
        ns: RBAC_BACKUPS.into(),
        key: id.to_owned(),
        value: serde_json::to_vec(&backup).unwrap_or_default(),
        expect: Expect::Absent,
    }
}

fn item_error(index: usize, e: &RbacError) -> ItemError {
    let code = match e {
        RbacError::GrantExists(_) => "GRANT_EXISTS",
        RbacError::GrantNotFound => "GRANT_NOT_FOUND",
        _ => "RBAC_INVALID",
    };
    ItemError {
        index,
        code,
        message: e.to_string(),
    }
}

fn assignment_op(key: &str, assignment: &Assignment) -> Op {
    if assignment.roles.is_empty() {
        delete(format!("{ASSIGN}{key}"))
    } else {
        put(format!("{ASSIGN}{key}"), assignment)
    }
}

fn set_assignment(state: &mut RbacState, key: &str, assignment: Assignment) {
    if assignment.roles.is_empty() {
        state.assignments.remove(key);
    } else {
        state.assignments.insert(key.to_owned(), assignment);
    }
}
