//! Identities as directories describe them.

use serde::{Deserialize, Serialize};

/// A user read from a directory (LDAP) or linked from a provider (OIDC),
/// with every group it reaches.
///
/// Cedar sees it as `Portcullis::User::"<directory>:<subject>"` in
/// `Portcullis::Group::"<directory>:<group id>"`; the directory's name
/// keeps two directories' users and groups apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryIdentity {
    /// The backend's name in `[backends.<name>]`.
    pub directory: String,
    /// Stable within the directory: the LDAP login name, the OIDC `sub`.
    pub subject: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the directory vouches for `email` (OIDC `email_verified`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ids of the groups the user is a direct member of.
    #[serde(default)]
    pub member_of: Vec<String>,
    /// Every group reachable from `member_of`, each with its own parents.
    #[serde(default)]
    pub groups: Vec<DirectoryGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryGroup {
    pub id: String,
    /// Ids of the groups this group is a member of.
    #[serde(default)]
    pub parents: Vec<String>,
}

impl DirectoryIdentity {
    /// The Cedar entity id of this user: `<directory>:<subject>`.
    pub fn user_id(&self) -> String {
        qualified(&self.directory, &self.subject)
    }
}

/// `<directory>:<id>`, the Cedar entity id of a directory's user or group.
pub fn qualified(directory: &str, id: &str) -> String {
    format!("{directory}:{id}")
}

/// A directory user as a sync imported it. A user the directory disables
/// or no longer holds is kept, inactive: never deleted, so its history and
/// links stay and it cannot come back by accident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedUser {
    pub directory: String,
    /// The login name.
    pub subject: String,
    /// The entry's DN, normalized.
    pub dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ids of the groups the user is a direct member of, sorted.
    #[serde(default)]
    pub member_of: Vec<String>,
    pub active: bool,
    /// Why an inactive user is: `disabled` in the directory, or `gone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_reason: Option<String>,
}

/// A directory group as a sync imported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedGroup {
    pub directory: String,
    pub id: String,
    pub dn: String,
    /// Ids of the groups this group is a direct member of, sorted.
    #[serde(default)]
    pub parents: Vec<String>,
}

impl SyncedUser {
    pub fn user_id(&self) -> String {
        qualified(&self.directory, &self.subject)
    }
}

impl SyncedGroup {
    pub fn group_id(&self) -> String {
        qualified(&self.directory, &self.id)
    }
}
