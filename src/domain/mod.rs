//! Plain types shared by the layers: no I/O, no Cedar.

mod graph;
mod identity;
mod rbac;
mod user;

pub use graph::{Agent, AiProvider, Credential, Edge, EdgeKind, RetiredSecret, ServiceAccount};
pub use identity::{DirectoryGroup, DirectoryIdentity, SyncedGroup, SyncedUser, qualified};
pub use rbac::{Assignment, Effect, Grant, Role};
pub use user::{User, UserView, normalize_email};
