//! The identity graph: service accounts, AI agents, AI providers, typed
//! edges between identities (member-of, owned-by, delegates-to) and the
//! credentials of service accounts and agents. Stored in namespace `iam`
//! (`sa/<id>`, `agent/<id>`, `provider/<id>`, `edge/<id>`, `key/<id>`) and
//! served with RBAC through the catalog (see [`RbacState`]): its records
//! become entities of the overlay, so every change is one store transaction
//! and one snapshot swap, and is announced to the other instances.
//!
//! Owns: the graph's rules (ids, types each edge kind joins, no cycles,
//! dependents before deletes), credentials (shown once, kept as digests,
//! rotation with a grace period) and bounded traversals. Must not: know
//! HTTP.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use cedar_policy::{Entity, EntityUid};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::catalog::{Catalog, ServiceError};
use super::federation::DirectoryState;
use super::rbac::{RBAC, RbacState};
use super::tokens::{digest, hex, now, random_id, random_token};
use crate::authz::{
    AGENT_TYPE, EntitySnapshot, GROUP_TYPE, PROVIDER_TYPE, ROLE_TYPE, SERVICE_ACCOUNT_TYPE,
    USER_TYPE, UidInput, entity_key, portcullis_uid,
};
use crate::backends::Op;
use crate::config::IamConfig;
use crate::domain::{Agent, AiProvider, Credential, Edge, EdgeKind, RetiredSecret, ServiceAccount};

/// The store namespace of the identity graph.
pub const IAM: &str = "iam";

const SA: &str = "sa/";
const AGENT: &str = "agent/";
const PROVIDER: &str = "provider/";
const EDGE: &str = "edge/";
const KEY: &str = "key/";

/// A credential is `pcs_<id>_<secret>`.
pub const CREDENTIAL_PREFIX: &str = "pcs_";
const MAX_CREDENTIALS: usize = 10;
const MAX_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 1000;
const MAX_ID: usize = 64;
const MAX_MODELS: usize = 100;

/// The kinds of AI provider.
pub const PROVIDER_KINDS: &[&str] = &[
    "openai",
    "anthropic",
    "azure-openai",
    "bedrock",
    "vertex",
    "mistral",
    "ollama",
    "other",
];

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("this link would make a cycle: {}", path.join(" → "))]
    Cycle { path: Vec<String> },
    #[error("{identity} has dependents {dependents:?}; pass cascade=true to remove them too")]
    HasDependents {
        identity: String,
        dependents: Vec<String>,
    },
    #[error("a principal has at most {MAX_CREDENTIALS} credentials")]
    CredentialLimit,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

fn invalid(field: &str, message: impl Into<String>) -> GraphError {
    GraphError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Every record of the graph, as the catalog serves it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphState {
    pub service_accounts: BTreeMap<String, ServiceAccount>,
    pub agents: BTreeMap<String, Agent>,
    pub providers: BTreeMap<String, AiProvider>,
    /// By edge id.
    pub edges: BTreeMap<String, Edge>,
    /// By credential id.
    pub credentials: BTreeMap<String, Credential>,
    /// Users and groups a federation sync imported.
    pub directory: DirectoryState,
}

impl GraphState {
    /// Takes in one stored key of namespace `iam`.
    pub(super) fn absorb(&mut self, key: &str, value: &[u8]) -> Result<(), serde_json::Error> {
        if self.directory.absorb(key, value)? {
            return Ok(());
        }
        if let Some(id) = key.strip_prefix(SA) {
            self.service_accounts
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(id) = key.strip_prefix(AGENT) {
            self.agents
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(id) = key.strip_prefix(PROVIDER) {
            self.providers
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(id) = key.strip_prefix(EDGE) {
            self.edges
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(id) = key.strip_prefix(KEY) {
            self.credentials
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        }
        Ok(())
    }

    /// Whether both give the same entities (credentials are not entities).
    pub fn same_entities(&self, other: &GraphState) -> bool {
        self.service_accounts == other.service_accounts
            && self.agents == other.agents
            && self.providers == other.providers
            && self.edges == other.edges
            && self.directory.users == other.directory.users
            && self.directory.groups == other.directory.groups
    }

    /// The graph's entities, by entity key: service accounts, agents and
    /// providers with their attributes, and every identity with the groups
    /// and roles its member-of edges put it in.
    pub fn overlay(&self) -> BTreeMap<String, Value> {
        let mut parents: HashMap<&str, Vec<Value>> = HashMap::new();
        for edge in self.edges.values() {
            if edge.kind == EdgeKind::MemberOf
                && let Ok(to) = edge.to.parse::<EntityUid>()
            {
                parents
                    .entry(edge.from.as_str())
                    .or_default()
                    .push(reference(&to));
            }
        }
        let mut out = BTreeMap::new();
        let mut add_with = |uid: EntityUid, attrs: Map<String, Value>, own: Vec<Value>| {
            let mut parents = parents.remove(uid.to_string().as_str()).unwrap_or_default();
            parents.extend(own);
            out.insert(
                entity_key(&uid),
                json!({"uid": reference(&uid), "attrs": attrs, "parents": parents}),
            );
        };
        for (uid, attrs, own) in self.directory.entities() {
            add_with(uid, attrs, own);
        }
        let mut add = |uid: EntityUid, attrs: Map<String, Value>| add_with(uid, attrs, Vec::new());
        for sa in self.service_accounts.values() {
            let mut attrs = Map::new();
            attrs.insert("name".into(), json!(sa.name));
            if let Ok(owner) = sa.owner.parse::<EntityUid>() {
                attrs.insert("owner".into(), json!({"__entity": reference(&owner)}));
            }
            if let Some(description) = &sa.description {
                attrs.insert("description".into(), json!(description));
            }
            attrs.insert("disabled".into(), json!(sa.disabled));
            add(portcullis_uid(SERVICE_ACCOUNT_TYPE, &sa.id), attrs);
        }
        for agent in self.agents.values() {
            let mut attrs = Map::new();
            attrs.insert("name".into(), json!(agent.name));
            if let Ok(owner) = agent.owner.parse::<EntityUid>() {
                let field = if owner.type_name().to_string() == USER_TYPE {
                    "owner"
                } else {
                    "owner_account"
                };
                attrs.insert(field.into(), json!({"__entity": reference(&owner)}));
            }
            let provider = portcullis_uid(PROVIDER_TYPE, &agent.provider);
            attrs.insert("provider".into(), json!({"__entity": reference(&provider)}));
            if let Some(model) = &agent.model {
                attrs.insert("model".into(), json!(model));
            }
            if let Some(description) = &agent.description {
                attrs.insert("description".into(), json!(description));
            }
            attrs.insert("disabled".into(), json!(agent.disabled));
            add(portcullis_uid(AGENT_TYPE, &agent.id), attrs);
        }
        for provider in self.providers.values() {
            let mut attrs = Map::new();
            attrs.insert("name".into(), json!(provider.name));
            attrs.insert("kind".into(), json!(provider.kind));
            add(portcullis_uid(PROVIDER_TYPE, &provider.id), attrs);
        }
        // Users and groups the graph only links: bare entities with their
        // parents (a stored or directory entity keeps its attributes).
        for (from, parents) in parents {
            if let Ok(uid) = from.parse::<EntityUid>() {
                out.insert(
                    entity_key(&uid),
                    json!({"uid": reference(&uid), "attrs": {}, "parents": parents}),
                );
            }
        }
        out
    }

    /// Removes every edge from or to `uid`; answers the store writes.
    pub(super) fn drop_edges_of(&mut self, uid: &str) -> Vec<Op> {
        let gone: Vec<String> = self
            .edges
            .iter()
            .filter(|(_, e)| e.from == uid || e.to == uid)
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .map(|id| {
                self.edges.remove(&id);
                delete(format!("{EDGE}{id}"))
            })
            .collect()
    }

    /// The owned-by edges the owners of service accounts and agents make:
    /// `(identity uid text, owner uid text)`.
    pub fn owner_edges(&self) -> Vec<(String, &str)> {
        let accounts = self
            .service_accounts
            .values()
            .map(|sa| (uid_text(SERVICE_ACCOUNT_TYPE, &sa.id), sa.owner.as_str()));
        let agents = self
            .agents
            .values()
            .map(|a| (uid_text(AGENT_TYPE, &a.id), a.owner.as_str()));
        accounts.chain(agents).collect()
    }

    /// Who points at whom, both ways, for traversals and cycle checks: the
    /// edges, and `owners` (see [`Self::owner_edges`]) as owned-by edges.
    /// It borrows its names, so building it allocates no strings.
    pub fn adjacency<'a>(&'a self, owners: &'a [(String, &'a str)]) -> Adjacency<'a> {
        let mut adjacency = Adjacency::default();
        for edge in self.edges.values() {
            adjacency.add(&edge.from, edge.kind, &edge.to);
        }
        for (identity, owner) in owners {
            adjacency.add(identity, EdgeKind::OwnedBy, owner);
        }
        adjacency
    }

    /// The identity `uid` names, as the graph holds it: whether it exists
    /// there (users, groups and roles are not checked here).
    fn holds(&self, uid: &EntityUid) -> bool {
        let id = uid.id().unescaped();
        match uid.type_name().to_string().as_str() {
            SERVICE_ACCOUNT_TYPE => self.service_accounts.contains_key(id),
            AGENT_TYPE => self.agents.contains_key(id),
            PROVIDER_TYPE => self.providers.contains_key(id),
            _ => true,
        }
    }

    /// The owner an agent's decisions are bounded by, and whether the
    /// agent is one the graph holds.
    pub fn agent_owner(&self, agent: &EntityUid) -> Option<&str> {
        if agent.type_name().to_string() != AGENT_TYPE {
            return None;
        }
        self.agents
            .get(agent.id().unescaped())
            .map(|a| a.owner.as_str())
    }

    /// The service account or agent behind a presented credential, when
    /// its secret (or, during the grace period, its previous secret)
    /// matches, it has not expired and its principal is enabled.
    pub fn authenticate(&self, presented: &str) -> Option<EntityUid> {
        let rest = presented.strip_prefix(CREDENTIAL_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 16 || secret.is_empty() {
            return None;
        }
        let credential = self.credentials.get(id)?;
        let at = now();
        if credential.expires_at.is_some_and(|t| t <= at) {
            return None;
        }
        let presented = digest(secret);
        let current: bool = presented
            .as_bytes()
            .ct_eq(credential.digest.as_bytes())
            .into();
        let previous: bool = credential.previous.as_ref().is_some_and(|p| {
            let same: bool = presented.as_bytes().ct_eq(p.digest.as_bytes()).into();
            same && p.valid_until > at
        });
        if !(current || previous) {
            return None;
        }
        let uid: EntityUid = credential.principal.parse().ok()?;
        let enabled = match uid.type_name().to_string().as_str() {
            SERVICE_ACCOUNT_TYPE => self
                .service_accounts
                .get(uid.id().unescaped())
                .is_some_and(|sa| !sa.disabled),
            AGENT_TYPE => self
                .agents
                .get(uid.id().unescaped())
                .is_some_and(|a| !a.disabled),
            _ => false,
        };
        enabled.then_some(uid)
    }
}

/// The uid text of a service account, agent or provider: their ids (see
/// [`check_id`]) need no escaping, so this is what Cedar prints, without
/// building a uid.
fn uid_text(type_name: &str, id: &str) -> String {
    format!("{type_name}::\"{id}\"")
}

fn reference(uid: &EntityUid) -> Value {
    json!({"type": uid.type_name().to_string(), "id": uid.id().unescaped()})
}

/// Edges by endpoint, both ways.
#[derive(Debug, Default)]
pub struct Adjacency<'a> {
    out: HashMap<&'a str, Vec<(EdgeKind, &'a str)>>,
    inward: HashMap<&'a str, Vec<(EdgeKind, &'a str)>>,
}

impl<'a> Adjacency<'a> {
    pub fn add(&mut self, from: &'a str, kind: EdgeKind, to: &'a str) {
        self.out.entry(from).or_default().push((kind, to));
        self.inward.entry(to).or_default().push((kind, from));
    }

    /// Who is affected when `uid` is disabled or removed, one step away:
    /// its members, what it owns, and whom it delegates to.
    pub fn dependents_of(&self, uid: &str) -> impl Iterator<Item = (EdgeKind, &'a str)> + '_ {
        let inward = self
            .inward
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|(kind, _)| *kind != EdgeKind::DelegatesTo);
        let delegated = self
            .out
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|(kind, _)| *kind == EdgeKind::DelegatesTo);
        inward.chain(delegated).copied()
    }

    /// Where `kind` edges lead from `uid`.
    pub fn following(&self, uid: &str, kind: EdgeKind) -> impl Iterator<Item = &'a str> + '_ {
        self.out
            .get(uid)
            .into_iter()
            .flatten()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, to)| *to)
    }
}

/// Bounds of a traversal.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub results: usize,
}

impl From<&IamConfig> for Limits {
    fn from(config: &IamConfig) -> Limits {
        Limits {
            depth: config.max_traversal_depth,
            results: config.max_traversal_results,
        }
    }
}

/// One identity a traversal reached.
#[derive(Debug, Clone, Serialize)]
pub struct Reached {
    pub id: String,
    /// The kind of the last edge of its path.
    pub via: EdgeKind,
    pub depth: usize,
    /// From the start to it, each step one edge.
    pub path: Vec<String>,
}

/// What a traversal found, nearest first.
#[derive(Debug, Clone, Serialize)]
pub struct Walk {
    pub reached: Vec<Reached>,
    /// The depth or count limit cut it short.
    pub truncated: bool,
}

/// Breadth-first from `start` through `next` (each identity's neighbours
/// and the edge kind to each), every identity once, with the shortest
/// path to it, within `limits`.
pub fn walk<F, I, S>(start: &str, limits: Limits, mut next: F) -> Walk
where
    F: FnMut(&str) -> I,
    I: IntoIterator<Item = (EdgeKind, S)>,
    S: AsRef<str>,
{
    // (id, index of the node it was reached from, via, depth)
    let mut nodes: Vec<(String, Option<usize>, EdgeKind, usize)> =
        vec![(start.to_owned(), None, EdgeKind::MemberOf, 0)];
    let mut seen: HashSet<String> = HashSet::from([start.to_owned()]);
    let mut queue = VecDeque::from([0usize]);
    let mut truncated = false;
    'walk: while let Some(at) = queue.pop_front() {
        let (id, depth) = (nodes[at].0.clone(), nodes[at].3);
        for (kind, neighbour) in next(&id) {
            let neighbour = neighbour.as_ref();
            if seen.contains(neighbour) {
                continue;
            }
            if depth + 1 > limits.depth || nodes.len() > limits.results {
                truncated = true;
                if nodes.len() > limits.results {
                    break 'walk;
                }
                continue;
            }
            seen.insert(neighbour.to_owned());
            nodes.push((neighbour.to_owned(), Some(at), kind, depth + 1));
            queue.push_back(nodes.len() - 1);
        }
    }
    let reached = (1..nodes.len())
        .map(|index| {
            let mut path = Vec::with_capacity(nodes[index].3 + 1);
            let mut cursor = Some(index);
            while let Some(i) = cursor {
                path.push(nodes[i].0.clone());
                cursor = nodes[i].1;
            }
            path.reverse();
            Reached {
                id: nodes[index].0.clone(),
                via: nodes[index].2,
                depth: nodes[index].3,
                path,
            }
        })
        .collect();
    Walk { reached, truncated }
}

/// An id of a service account, agent or provider: 1 to 64 of ASCII
/// letters, digits, `.`, `_`, `-` and `@`, starting with a letter or digit.
pub fn check_id(field: &str, id: &str) -> Result<(), GraphError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "an id has 1 to {MAX_ID} ASCII letters, digits, `.`, `_`, `-` or `@`, and starts with a letter or digit"
            ),
        ))
    }
}

fn check_text(field: &str, text: &str, max: usize) -> Result<String, GraphError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(text.to_owned())
}

fn check_description(description: Option<&str>) -> Result<Option<String>, GraphError> {
    description
        .map(|d| check_text("description", d, MAX_DESCRIPTION))
        .transpose()
}

/// A uid an edge or an owner names: a Cedar uid, or a bare id taken as
/// `Portcullis::User::"<id>"`, read as the RBAC routes read principals.
pub fn identity_uid(field: &str, input: &UidInput) -> Result<EntityUid, GraphError> {
    super::rbac::principal_uid(field, input).map_err(|e| match e {
        super::rbac::RbacError::Invalid { field, message } => {
            GraphError::Invalid { field, message }
        }
        other => invalid(field, other.to_string()),
    })
}

fn type_of(uid: &EntityUid) -> String {
    uid.type_name().to_string()
}

/// The id of the edge `from —kind→ to`: derived from what it joins.
pub fn edge_id(from: &str, kind: EdgeKind, to: &str) -> String {
    let canonical = json!(["v1", from, kind.as_str(), to]).to_string();
    hex(&Sha256::digest(canonical.as_bytes())[..8])
}

fn put(key: String, value: &impl Serialize) -> Op {
    Op::put_json(IAM, key, value)
}

fn delete(key: String) -> Op {
    Op::remove(IAM, key)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// Chosen by the caller, or generated.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// The owning user: a user id or a `Portcullis::User` uid.
    pub owner: UidInput,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Agents only.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// A user (id or uid) or a `Portcullis::ServiceAccount` uid.
    pub owner: UidInput,
    /// The id of an AI provider.
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    pub from: UidInput,
    pub kind: EdgeKind,
    pub to: UidInput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    #[serde(default)]
    pub name: Option<String>,
    /// Days until it stops working; absent: it does not expire.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A credential as listed: never its secret or digest.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub id: String,
    pub principal: String,
    pub name: String,
    /// The credential's visible start, `pcs_<id>`.
    pub prefix: String,
    pub created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// Until when the secret it had before its last rotation still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<u64>,
}

impl From<&Credential> for CredentialView {
    fn from(c: &Credential) -> CredentialView {
        CredentialView {
            id: c.id.clone(),
            principal: c.principal.clone(),
            name: c.name.clone(),
            prefix: format!("{CREDENTIAL_PREFIX}{}", c.id),
            created_at: c.created_at,
            expires_at: c.expires_at,
            rotated_at: c.rotated_at,
            previous_valid_until: c
                .previous
                .as_ref()
                .map(|p| p.valid_until)
                .filter(|t| *t > now()),
        }
    }
}

/// A credential just made or rotated: the only time its secret is shown.
#[derive(Debug, Serialize)]
pub struct IssuedCredential {
    #[serde(flatten)]
    pub credential: CredentialView,
    pub secret: String,
}

/// The identity-graph use cases over the catalog.
pub struct Graph<'a> {
    pub catalog: &'a Catalog,
    pub config: &'a IamConfig,
}

/// What a delete takes with it: the store writes, and the dependents
/// (identities) it removes.
#[derive(Default)]
struct Removal {
    ops: Vec<Op>,
    dependents: Vec<String>,
}

impl Graph<'_> {
    fn state(&self) -> std::sync::Arc<RbacState> {
        self.catalog.rbac()
    }

    pub fn service_accounts(&self) -> Vec<ServiceAccount> {
        self.state()
            .graph
            .service_accounts
            .values()
            .cloned()
            .collect()
    }

    pub fn service_account(&self, id: &str) -> Result<ServiceAccount, GraphError> {
        self.state()
            .graph
            .service_accounts
            .get(id)
            .cloned()
            .ok_or_else(|| GraphError::NotFound(format!("service account `{id}`")))
    }

    pub fn agents(&self) -> Vec<Agent> {
        self.state().graph.agents.values().cloned().collect()
    }

    pub fn agent(&self, id: &str) -> Result<Agent, GraphError> {
        self.state()
            .graph
            .agents
            .get(id)
            .cloned()
            .ok_or_else(|| GraphError::NotFound(format!("agent `{id}`")))
    }

    pub fn providers(&self) -> Vec<AiProvider> {
        self.state().graph.providers.values().cloned().collect()
    }

    pub fn provider(&self, id: &str) -> Result<AiProvider, GraphError> {
        self.state()
            .graph
            .providers
            .get(id)
            .cloned()
            .ok_or_else(|| GraphError::NotFound(format!("provider `{id}`")))
    }

    /// Creates a service account owned by `owner` (a user the caller has
    /// checked exists).
    pub async fn create_service_account(
        &self,
        input: &NewServiceAccount,
    ) -> Result<ServiceAccount, GraphError> {
        let id = new_id(input.id.as_deref())?;
        let owner = identity_uid("owner", &input.owner)?;
        if type_of(&owner) != USER_TYPE {
            return Err(invalid("owner", "a service account is owned by a user"));
        }
        let account = ServiceAccount {
            id: id.clone(),
            name: check_text("name", &input.name, MAX_NAME)?,
            owner: owner.to_string(),
            description: check_description(input.description.as_deref())?,
            disabled: input.disabled,
            created_at: now(),
        };
        self.catalog
            .change_rbac(|current| {
                if current.graph.service_accounts.contains_key(&id) {
                    return Err(GraphError::Exists(format!("service account `{id}`")));
                }
                let mut next = current.clone();
                next.graph
                    .service_accounts
                    .insert(id.clone(), account.clone());
                Ok((
                    next,
                    vec![put(format!("{SA}{id}"), &account)],
                    account.clone(),
                ))
            })
            .await
    }

    pub async fn update_service_account(
        &self,
        id: &str,
        update: &IdentityUpdate,
    ) -> Result<ServiceAccount, GraphError> {
        if update.model.is_some() {
            return Err(invalid("model", "only agents have a model"));
        }
        let name = update
            .name
            .as_deref()
            .map(|n| check_text("name", n, MAX_NAME))
            .transpose()?;
        let description = check_description(update.description.as_deref())?;
        self.catalog
            .change_rbac(|current| {
                let mut account = current
                    .graph
                    .service_accounts
                    .get(id)
                    .cloned()
                    .ok_or_else(|| GraphError::NotFound(format!("service account `{id}`")))?;
                if let Some(name) = &name {
                    account.name = name.clone();
                }
                if description.is_some() {
                    account.description = description.clone();
                }
                if let Some(disabled) = update.disabled {
                    account.disabled = disabled;
                }
                let mut next = current.clone();
                next.graph
                    .service_accounts
                    .insert(id.to_owned(), account.clone());
                Ok((next, vec![put(format!("{SA}{id}"), &account)], account))
            })
            .await
    }

    pub async fn create_agent(&self, input: &NewAgent) -> Result<Agent, GraphError> {
        let id = new_id(input.id.as_deref())?;
        let owner = identity_uid("owner", &input.owner)?;
        if ![USER_TYPE, SERVICE_ACCOUNT_TYPE].contains(&type_of(&owner).as_str()) {
            return Err(invalid(
                "owner",
                "an agent is owned by a user or a service account",
            ));
        }
        check_id("provider", &input.provider)?;
        let model = input
            .model
            .as_deref()
            .map(|m| check_text("model", m, 128))
            .transpose()?;
        let agent = Agent {
            id: id.clone(),
            name: check_text("name", &input.name, MAX_NAME)?,
            owner: owner.to_string(),
            provider: input.provider.clone(),
            model: model.clone(),
            description: check_description(input.description.as_deref())?,
            disabled: input.disabled,
            created_at: now(),
        };
        self.catalog
            .change_rbac(|current| {
                let graph = &current.graph;
                if graph.agents.contains_key(&id) {
                    return Err(GraphError::Exists(format!("agent `{id}`")));
                }
                if !graph.holds(&owner) {
                    return Err(GraphError::NotFound(format!("owner `{owner}`")));
                }
                let provider = graph.providers.get(&agent.provider).ok_or_else(|| {
                    GraphError::NotFound(format!("provider `{}`", agent.provider))
                })?;
                check_model(provider, model.as_deref())?;
                let mut next = current.clone();
                next.graph.agents.insert(id.clone(), agent.clone());
                Ok((
                    next,
                    vec![put(format!("{AGENT}{id}"), &agent)],
                    agent.clone(),
                ))
            })
            .await
    }

    pub async fn update_agent(
        &self,
        id: &str,
        update: &IdentityUpdate,
    ) -> Result<Agent, GraphError> {
        let name = update
            .name
            .as_deref()
            .map(|n| check_text("name", n, MAX_NAME))
            .transpose()?;
        let description = check_description(update.description.as_deref())?;
        let model = update
            .model
            .as_deref()
            .map(|m| check_text("model", m, 128))
            .transpose()?;
        self.catalog
            .change_rbac(|current| {
                let mut agent = current
                    .graph
                    .agents
                    .get(id)
                    .cloned()
                    .ok_or_else(|| GraphError::NotFound(format!("agent `{id}`")))?;
                if let Some(name) = &name {
                    agent.name = name.clone();
                }
                if description.is_some() {
                    agent.description = description.clone();
                }
                if let Some(disabled) = update.disabled {
                    agent.disabled = disabled;
                }
                if model.is_some() {
                    if let Some(provider) = current.graph.providers.get(&agent.provider) {
                        check_model(provider, model.as_deref())?;
                    }
                    agent.model = model.clone();
                }
                let mut next = current.clone();
                next.graph.agents.insert(id.to_owned(), agent.clone());
                Ok((next, vec![put(format!("{AGENT}{id}"), &agent)], agent))
            })
            .await
    }

    pub async fn create_provider(&self, input: &NewProvider) -> Result<AiProvider, GraphError> {
        let id = new_id(input.id.as_deref())?;
        if !PROVIDER_KINDS.contains(&input.kind.as_str()) {
            return Err(invalid(
                "kind",
                format!("one of {}", PROVIDER_KINDS.join(", ")),
            ));
        }
        let endpoint = match &input.endpoint {
            Some(url) => {
                let parsed = oauth2::url::Url::parse(url)
                    .map_err(|e| invalid("endpoint", format!("not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "https" | "http") || url.len() > 2048 {
                    return Err(invalid("endpoint", "an http(s) URL of at most 2048 bytes"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(invalid(
                        "endpoint",
                        "no credentials in the URL: providers hold no secrets",
                    ));
                }
                Some(parsed.to_string())
            }
            None => None,
        };
        if input.models.len() > MAX_MODELS {
            return Err(invalid("models", format!("at most {MAX_MODELS}")));
        }
        let mut models = input
            .models
            .iter()
            .map(|m| check_text("models", m, 128))
            .collect::<Result<Vec<_>, _>>()?;
        models.sort();
        models.dedup();
        let provider = AiProvider {
            id: id.clone(),
            name: check_text("name", &input.name, MAX_NAME)?,
            kind: input.kind.clone(),
            endpoint,
            models,
            created_at: now(),
        };
        self.catalog
            .change_rbac(|current| {
                if current.graph.providers.contains_key(&id) {
                    return Err(GraphError::Exists(format!("provider `{id}`")));
                }
                let mut next = current.clone();
                next.graph.providers.insert(id.clone(), provider.clone());
                Ok((
                    next,
                    vec![put(format!("{PROVIDER}{id}"), &provider)],
                    provider.clone(),
                ))
            })
            .await
    }

    /// Removes a service account, agent or provider. Identities that depend
    /// on it (agents it owns or that use it, identities it delegates to,
    /// members) make this a conflict listing them, unless `cascade`: then
    /// the service accounts and agents among them go too, and edges to the
    /// rest. Its own edges, credentials and roles always go with it.
    pub async fn delete(&self, uid: &EntityUid, cascade: bool) -> Result<Vec<String>, GraphError> {
        self.catalog
            .change_rbac(|current| {
                if !current.graph.holds(uid) || !is_graph_record(uid) {
                    return Err(GraphError::NotFound(uid.to_string()));
                }
                let mut next = current.clone();
                let removal = remove_identity(&mut next, uid, cascade)?;
                Ok((next, removal.ops, removal.dependents))
            })
            .await
    }

    /// Every identity that depends on `uid`, transitively, with the path.
    pub fn dependents(&self, uid: &EntityUid) -> Walk {
        dependents(&self.state(), &uid.to_string(), Limits::from(self.config))
    }

    /// Adds an edge. Member-of puts a user, service account, agent or
    /// group in a group or role; owned-by gives a group or provider an
    /// owner; delegates-to lets an agent or service account act for a user
    /// or service account. No edge may close a cycle of its kind.
    pub async fn link(&self, input: &LinkInput) -> Result<Edge, GraphError> {
        let from = identity_uid("from", &input.from)?;
        let to = identity_uid("to", &input.to)?;
        let (from_types, to_types): (&[&str], &[&str]) = match input.kind {
            EdgeKind::MemberOf => (
                &[USER_TYPE, SERVICE_ACCOUNT_TYPE, AGENT_TYPE, GROUP_TYPE],
                &[GROUP_TYPE, ROLE_TYPE],
            ),
            EdgeKind::OwnedBy => (
                &[GROUP_TYPE, PROVIDER_TYPE],
                &[USER_TYPE, SERVICE_ACCOUNT_TYPE, GROUP_TYPE],
            ),
            EdgeKind::DelegatesTo => (
                &[USER_TYPE, SERVICE_ACCOUNT_TYPE],
                &[AGENT_TYPE, SERVICE_ACCOUNT_TYPE],
            ),
        };
        let kind = input.kind.as_str();
        if !from_types.contains(&type_of(&from).as_str()) {
            return Err(invalid(
                "from",
                format!("a {kind} edge starts at one of {}", from_types.join(", ")),
            ));
        }
        if !to_types.contains(&type_of(&to).as_str()) {
            return Err(invalid(
                "to",
                format!("a {kind} edge ends at one of {}", to_types.join(", ")),
            ));
        }
        let (from_text, to_text) = (from.to_string(), to.to_string());
        if from_text == to_text {
            return Err(GraphError::Cycle {
                path: vec![from_text.clone(), to_text],
            });
        }
        let id = edge_id(&from_text, input.kind, &to_text);
        self.catalog
            .change_rbac(|current| {
                for uid in [&from, &to] {
                    let known = current.graph.holds(uid)
                        && (type_of(uid) != ROLE_TYPE
                            || current.roles.contains_key(uid.id().unescaped()));
                    if !known {
                        return Err(GraphError::NotFound(uid.to_string()));
                    }
                }
                if current.graph.edges.contains_key(&id) {
                    return Err(GraphError::Exists(format!(
                        "edge {from_text} {kind} {to_text}"
                    )));
                }
                // A cycle: `to` already reaches `from` by edges of this kind.
                let owners = current.graph.owner_edges();
                let adjacency = current.graph.adjacency(&owners);
                let limits = Limits {
                    depth: usize::MAX,
                    results: usize::MAX,
                };
                let back = walk(&to_text, limits, |at| {
                    adjacency
                        .following(at, input.kind)
                        .map(|n| (input.kind, n))
                        .collect::<Vec<_>>()
                });
                if let Some(found) = back.reached.iter().find(|r| r.id == from_text) {
                    let mut path = vec![from_text.clone()];
                    path.extend(found.path.iter().cloned());
                    return Err(GraphError::Cycle { path });
                }
                let edge = Edge {
                    from: from_text.clone(),
                    kind: input.kind,
                    to: to_text.clone(),
                    created_at: now(),
                };
                let mut next = current.clone();
                next.graph.edges.insert(id.clone(), edge.clone());
                Ok((next, vec![put(format!("{EDGE}{id}"), &edge)], edge))
            })
            .await
    }

    pub async fn unlink(&self, input: &LinkInput) -> Result<Edge, GraphError> {
        let from = identity_uid("from", &input.from)?.to_string();
        let to = identity_uid("to", &input.to)?.to_string();
        let id = edge_id(&from, input.kind, &to);
        self.catalog
            .change_rbac(|current| {
                let mut next = current.clone();
                let edge = next.graph.edges.remove(&id).ok_or_else(|| {
                    GraphError::NotFound(format!("edge {from} {} {to}", input.kind.as_str()))
                })?;
                Ok((next, vec![delete(format!("{EDGE}{id}"))], edge))
            })
            .await
    }

    /// The credentials of a service account or agent.
    pub fn credentials(&self, principal: &EntityUid) -> Result<Vec<CredentialView>, GraphError> {
        let state = self.state();
        if !state.graph.holds(principal) {
            return Err(GraphError::NotFound(principal.to_string()));
        }
        let text = principal.to_string();
        let mut out: Vec<CredentialView> = state
            .graph
            .credentials
            .values()
            .filter(|c| c.principal == text)
            .map(CredentialView::from)
            .collect();
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    /// A new credential for a service account or agent.
    pub async fn issue_credential(
        &self,
        principal: &EntityUid,
        input: &NewCredential,
    ) -> Result<IssuedCredential, GraphError> {
        let name = match &input.name {
            Some(name) => check_text("name", name, MAX_NAME)?,
            None => "default".to_owned(),
        };
        if matches!(input.expires_in_days, Some(0) | Some(3651..)) {
            return Err(invalid("expires_in_days", "between 1 and 3650"));
        }
        let id = random_id();
        let secret = random_token();
        let created_at = now();
        let credential = Credential {
            id: id.clone(),
            principal: principal.to_string(),
            name,
            created_at,
            expires_at: input
                .expires_in_days
                .map(|d| created_at + u64::from(d) * 86_400),
            digest: digest(&secret),
            rotated_at: None,
            previous: None,
        };
        self.catalog
            .change_rbac(|current| {
                if !current.graph.holds(principal) {
                    return Err(GraphError::NotFound(principal.to_string()));
                }
                let held = current
                    .graph
                    .credentials
                    .values()
                    .filter(|c| c.principal == credential.principal)
                    .count();
                if held >= MAX_CREDENTIALS {
                    return Err(GraphError::CredentialLimit);
                }
                let mut next = current.clone();
                next.graph
                    .credentials
                    .insert(id.clone(), credential.clone());
                Ok((next, vec![put(format!("{KEY}{id}"), &credential)], ()))
            })
            .await?;
        Ok(IssuedCredential {
            secret: format!("{CREDENTIAL_PREFIX}{id}_{secret}"),
            credential: CredentialView::from(&credential),
        })
    }

    /// A new secret for a credential; the one it replaces keeps working for
    /// the configured grace period (a secret already in its grace period
    /// stops at once).
    pub async fn rotate_credential(
        &self,
        principal: &EntityUid,
        credential_id: &str,
    ) -> Result<IssuedCredential, GraphError> {
        let secret = random_token();
        let grace = self.config.rotation_grace_seconds;
        let rotated = self
            .catalog
            .change_rbac(|current| {
                let mut credential = owned_credential(current, principal, credential_id)?;
                let at = now();
                credential.previous = (grace > 0).then(|| RetiredSecret {
                    digest: credential.digest.clone(),
                    valid_until: at + grace,
                });
                credential.digest = digest(&secret);
                credential.rotated_at = Some(at);
                let mut next = current.clone();
                next.graph
                    .credentials
                    .insert(credential_id.to_owned(), credential.clone());
                Ok::<_, GraphError>((
                    next,
                    vec![put(format!("{KEY}{credential_id}"), &credential)],
                    credential,
                ))
            })
            .await?;
        Ok(IssuedCredential {
            secret: format!("{CREDENTIAL_PREFIX}{credential_id}_{secret}"),
            credential: CredentialView::from(&rotated),
        })
    }

    /// Revokes a credential: it and any secret in its grace period stop now.
    pub async fn revoke_credential(
        &self,
        principal: &EntityUid,
        credential_id: &str,
    ) -> Result<(), GraphError> {
        self.catalog
            .change_rbac(|current| {
                owned_credential(current, principal, credential_id)?;
                let mut next = current.clone();
                next.graph.credentials.remove(credential_id);
                Ok((next, vec![delete(format!("{KEY}{credential_id}"))], ()))
            })
            .await
    }
}

fn owned_credential(
    state: &RbacState,
    principal: &EntityUid,
    credential_id: &str,
) -> Result<Credential, GraphError> {
    state
        .graph
        .credentials
        .get(credential_id)
        .filter(|c| c.principal == principal.to_string())
        .cloned()
        .ok_or_else(|| GraphError::NotFound(format!("credential `{credential_id}`")))
}

fn new_id(given: Option<&str>) -> Result<String, GraphError> {
    match given {
        Some(id) => {
            check_id("id", id)?;
            Ok(id.to_owned())
        }
        None => Ok(random_id()),
    }
}

fn check_model(provider: &AiProvider, model: Option<&str>) -> Result<(), GraphError> {
    match model {
        Some(model)
            if !provider.models.is_empty() && !provider.models.iter().any(|m| m == model) =>
        {
            Err(invalid(
                "model",
                format!(
                    "provider `{}` allows only {}",
                    provider.id,
                    provider.models.join(", ")
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Service accounts, agents and providers are the graph's own records.
fn is_graph_record(uid: &EntityUid) -> bool {
    [SERVICE_ACCOUNT_TYPE, AGENT_TYPE, PROVIDER_TYPE].contains(&type_of(uid).as_str())
}

/// Dependents of `start`: its members, what it owns, whom it delegates to,
/// agents using it (a provider), and, for a role, who holds it and its
/// child roles.
fn dependents_walk(state: &RbacState, start: &str, limits: Limits) -> Walk {
    let owners = state.graph.owner_edges();
    let adjacency = state.graph.adjacency(&owners);
    let mut providers: HashMap<String, Vec<String>> = HashMap::new();
    for agent in state.graph.agents.values() {
        providers
            .entry(uid_text(PROVIDER_TYPE, &agent.provider))
            .or_default()
            .push(uid_text(AGENT_TYPE, &agent.id));
    }
    let role_holders = |uid: &str| -> Vec<(EdgeKind, Cow<'_, str>)> {
        // Parsing a uid is dear; only roles have holders.
        if !uid.starts_with(ROLE_TYPE) {
            return Vec::new();
        }
        let Some(role) = uid
            .parse::<EntityUid>()
            .ok()
            .filter(|u| type_of(u) == ROLE_TYPE)
            .map(|u| u.id().unescaped().to_owned())
        else {
            return Vec::new();
        };
        let holders = state
            .assignments
            .values()
            .filter(|a| a.roles.contains(&role))
            .map(|a| (EdgeKind::MemberOf, Cow::Borrowed(a.principal.as_str())));
        let children = state
            .roles
            .values()
            .filter(|r| r.parents.contains(&role))
            .map(|r| {
                let child = crate::authz::role_uid(&r.id).to_string();
                (EdgeKind::MemberOf, Cow::Owned(child))
            });
        holders.chain(children).collect()
    };
    walk(start, limits, |at| {
        let mut out: Vec<(EdgeKind, Cow<'_, str>)> = adjacency
            .dependents_of(at)
            .map(|(kind, other)| (kind, Cow::Borrowed(other)))
            .collect();
        if let Some(agents) = providers.get(at) {
            out.extend(
                agents
                    .iter()
                    .map(|a| (EdgeKind::OwnedBy, Cow::Borrowed(a.as_str()))),
            );
        }
        out.extend(role_holders(at));
        out
    })
}

/// Removes `uid` from `next` (records, edges, credentials, roles), and with
/// `cascade` the service accounts and agents depending on it.
fn remove_identity(
    next: &mut RbacState,
    uid: &EntityUid,
    cascade: bool,
) -> Result<Removal, GraphError> {
    let text = uid.to_string();
    let limits = Limits {
        depth: usize::MAX,
        results: usize::MAX,
    };
    let dependents: Vec<String> = dependents_walk(next, &text, limits)
        .reached
        .into_iter()
        .map(|r| r.id)
        .collect();
    if !dependents.is_empty() && !cascade {
        return Err(GraphError::HasDependents {
            identity: text,
            dependents,
        });
    }
    let mut removal = Removal::default();
    // Service accounts and agents among the dependents go; users, groups
    // and roles stay and only lose their edges to what goes.
    let mut doomed: Vec<EntityUid> = vec![uid.clone()];
    doomed.extend(
        dependents
            .iter()
            .filter_map(|d| d.parse::<EntityUid>().ok())
            .filter(|d| [SERVICE_ACCOUNT_TYPE, AGENT_TYPE].contains(&type_of(d).as_str())),
    );
    for gone in &doomed {
        let gone_text = gone.to_string();
        let id = gone.id().unescaped().to_owned();
        match type_of(gone).as_str() {
            SERVICE_ACCOUNT_TYPE => {
                next.graph.service_accounts.remove(&id);
                removal.ops.push(delete(format!("{SA}{id}")));
            }
            AGENT_TYPE => {
                next.graph.agents.remove(&id);
                removal.ops.push(delete(format!("{AGENT}{id}")));
            }
            PROVIDER_TYPE => {
                next.graph.providers.remove(&id);
                removal.ops.push(delete(format!("{PROVIDER}{id}")));
            }
            _ => continue,
        }
        removal.ops.extend(next.graph.drop_edges_of(&gone_text));
        let keys: Vec<String> = next
            .graph
            .credentials
            .iter()
            .filter(|(_, c)| c.principal == gone_text)
            .map(|(id, _)| id.clone())
            .collect();
        for key in keys {
            next.graph.credentials.remove(&key);
            removal.ops.push(delete(format!("{KEY}{key}")));
        }
        if next.assignments.remove(&gone_text).is_some() {
            removal
                .ops
                .push(Op::remove(RBAC, format!("assign/{gone_text}")));
        }
    }
    removal.dependents = dependents;
    Ok(removal)
}

/// Every identity that depends on `uid` in `state`, transitively, with
/// the path to each, within `limits`: its members, what it owns, whom it
/// delegates to, agents using it (a provider), and, for a role, who holds
/// it and its child roles.
pub fn dependents(state: &RbacState, uid: &str, limits: Limits) -> Walk {
    dependents_walk(state, uid, limits)
}

/// Everything `principal` is in, with the shortest path to each, within
/// `limits`: through the parents of `entities` (stored, RBAC and graph)
/// and of `identity` (the principal's own entities: a directory user's
/// groups, a local account's admin role).
pub fn memberships(
    entities: &EntitySnapshot,
    principal: &EntityUid,
    identity: &[Entity],
    limits: Limits,
) -> Walk {
    let identity_parents: HashMap<String, Vec<EntityUid>> = identity
        .iter()
        .map(|e| {
            let (uid, _, parents) = e.clone().into_inner();
            let mut parents: Vec<EntityUid> = parents.into_iter().collect();
            parents.sort_by_key(ToString::to_string);
            (uid.to_string(), parents)
        })
        .collect();
    walk(&principal.to_string(), limits, |at| {
        let uid: Option<EntityUid> = at.parse().ok();
        uid.map(|uid| entities.direct_parents(&uid))
            .unwrap_or_default()
            .into_iter()
            .chain(identity_parents.get(at).into_iter().flatten().cloned())
            .map(|parent| (EdgeKind::MemberOf, parent.to_string()))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `g0` in `g1` … in `g<n>`, plus `extra` edges, as member-of edges.
    fn chain(n: usize, extra: &[(&str, &str)]) -> GraphState {
        let mut state = GraphState::default();
        let links = (0..n)
            .map(|i| (format!("g{i}"), format!("g{}", i + 1)))
            .chain(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        for (from, to) in links {
            let id = edge_id(&from, EdgeKind::MemberOf, &to);
            let edge = Edge {
                from,
                kind: EdgeKind::MemberOf,
                to,
                created_at: 0,
            };
            state.edges.insert(id, edge);
        }
        state
    }

    fn up<'a>(adjacency: &'a Adjacency<'a>) -> impl FnMut(&str) -> Vec<(EdgeKind, &'a str)> + 'a {
        |at| {
            adjacency
                .following(at, EdgeKind::MemberOf)
                .map(|n| (EdgeKind::MemberOf, n))
                .collect()
        }
    }

    #[test]
    fn walks_give_the_shortest_path_to_each_identity() {
        let state = chain(3, &[("g0", "g3")]);
        let adjacency = state.adjacency(&[]);
        let limits = Limits {
            depth: 10,
            results: 10,
        };
        let walked = walk("g0", limits, up(&adjacency));
        let g3 = walked.reached.iter().find(|r| r.id == "g3").unwrap();
        assert_eq!(g3.path, vec!["g0", "g3"]);
        assert_eq!(g3.depth, 1);
        assert_eq!(walked.reached.len(), 3);
        assert!(!walked.truncated);
    }

    #[test]
    fn walks_stop_at_their_depth_and_count_limits() {
        let state = chain(50, &[]);
        let adjacency = state.adjacency(&[]);
        let deep = walk(
            "g0",
            Limits {
                depth: 5,
                results: 1000,
            },
            up(&adjacency),
        );
        assert_eq!(deep.reached.len(), 5);
        assert!(deep.truncated);
        let many = walk(
            "g0",
            Limits {
                depth: 1000,
                results: 7,
            },
            up(&adjacency),
        );
        assert!(many.reached.len() <= 7, "{}", many.reached.len());
        assert!(many.truncated);
    }

    #[test]
    fn credentials_match_current_and_grace_secrets_only() {
        let mut state = GraphState::default();
        state.service_accounts.insert(
            "ci".into(),
            ServiceAccount {
                id: "ci".into(),
                name: "CI".into(),
                owner: r#"Portcullis::User::"alice""#.into(),
                description: None,
                disabled: false,
                created_at: 0,
            },
        );
        let id = "0123456789abcdef";
        state.credentials.insert(
            id.into(),
            Credential {
                id: id.into(),
                principal: r#"Portcullis::ServiceAccount::"ci""#.into(),
                name: "k".into(),
                created_at: 0,
                expires_at: None,
                digest: digest("new"),
                rotated_at: Some(0),
                previous: Some(RetiredSecret {
                    digest: digest("old"),
                    valid_until: now() + 60,
                }),
            },
        );
        let who = |s: &str| state.authenticate(&format!("pcs_{id}_{s}"));
        assert!(who("new").is_some());
        assert!(who("old").is_some());
        assert!(who("other").is_none());
        assert!(state.authenticate("pcs_0123_new").is_none());
        state
            .credentials
            .get_mut(id)
            .unwrap()
            .previous
            .as_mut()
            .unwrap()
            .valid_until = now();
        assert!(state.authenticate(&format!("pcs_{id}_old")).is_none());
        state.service_accounts.get_mut("ci").unwrap().disabled = true;
        assert!(state.authenticate(&format!("pcs_{id}_new")).is_none());
    }
}
