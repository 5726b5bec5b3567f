//! Use cases: what a request asks for, expressed against the store and the
//! decision engine. Persist first, then swap the engine's snapshot; a change
//! that fails validation or storage leaves both as they were.
//!
//! Owns: the order of writes and reloads. Must not: know about HTTP.

mod catalog;

pub use catalog::{CATALOG_NAMESPACES, Catalog, ServiceError};
