//! Cedar decisions: schema fragments, the policy and entity snapshots, the
//! decision cache and the [`Engine`] that ties them together.
//!
//! Owns: everything Cedar. Must not: import hyper, axum or sqlx, or touch a
//! store; callers (services) persist first and then hand the engine a new
//! snapshot to swap in.

mod cache;
mod diagnostics;
mod engine;
mod entities;
mod error;
mod identity;
mod index;
mod policies;
mod rbac;
mod request;
mod schema;
mod uid;

pub use cache::CacheSettings;
pub use diagnostics::Diagnostic;
pub use engine::{Decided, Engine, Outcome, ResolvedIdentity};
pub use entities::{EntitySnapshot, entity_key, error_chain, parse_entities};
pub use error::AuthzError;
pub use identity::{
    ADMIN_ROLE, AGENT_TYPE, GROUP_TYPE, PROVIDER_TYPE, ROLE_TYPE, SERVICE_ACCOUNT_TYPE, USER_TYPE,
    directory_group_refs, directory_user_attrs, identity_entities, portcullis_uid, user_entity,
    user_uid,
};
pub use policies::{
    PolicyDir, PolicyInfo, PolicyInputs, PolicyLimits, PolicyOrigin, PolicySnapshot,
    dir_fingerprint, load_policy_dir,
};
pub use rbac::{RBAC_POLICY_PREFIX, grant_policy, grant_policy_id, overlay, role_uid};
pub use request::DecisionRequest;
pub use schema::{SchemaDoc, builtin_fragment};
pub use uid::{UidInput, parse_uid};

pub use cedar_policy::Decision;
