//! Plain types shared by the layers: no I/O, no Cedar.

mod identity;
mod user;

pub use identity::{DirectoryGroup, DirectoryIdentity, qualified};
pub use user::{User, UserView, normalize_email};
