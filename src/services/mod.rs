//! Use cases: what a request asks for, expressed against the store and the
//! decision engine. Persist first, then swap the engine's snapshot; a change
//! that fails validation or storage leaves both as they were.
//!
//! Owns: the order of writes and reloads. Must not: know about HTTP.

mod catalog;
mod identity;

pub use catalog::{Catalog, ServiceError};
pub use identity::{IDENTITIES, Identities, IdentityError, OAUTH_STATES, Resolution, principal_of};

/// Namespaces only Portcullis itself writes (the catalog keeps the first
/// three in step with the engine): `/storage/{namespace}` may read them but
/// not write them.
pub const RESERVED_NAMESPACES: &[&str] = &[
    catalog::POLICIES,
    catalog::SCHEMA,
    catalog::ENTITIES,
    IDENTITIES,
    OAUTH_STATES,
];
