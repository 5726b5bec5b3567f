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
