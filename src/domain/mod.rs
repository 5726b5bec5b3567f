//! Plain types shared by the layers: no I/O, no Cedar.

mod identity;

pub use identity::{DirectoryGroup, DirectoryIdentity, qualified};
