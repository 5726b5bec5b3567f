//! Plain types shared by the layers: no I/O, no Cedar.

mod identity;
mod rbac;
mod user;

pub use identity::{DirectoryGroup, DirectoryIdentity, qualified};
pub use rbac::{Assignment, Effect, Grant, Role};
pub use user::{User, UserView, normalize_email};
