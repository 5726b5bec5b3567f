//! RBAC records as stored (namespace `rbac`): grants, roles and the roles
//! assigned to each principal. Uids are kept as Cedar uid text
//! (`Docs::Action::"read"`), already checked and normalized.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Whether a grant allows or denies; a deny wins over any allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// "`subject` may (or may not) do `action` on `resource`": one Cedar policy,
/// `rbac/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Derived from the rest, so the same grant always has the same id.
    pub id: String,
    /// `Portcullis::Role::"editor"`, or any principal or group uid; the
    /// grant covers it and everything in it.
    pub subject: String,
    /// An action uid (it and the actions in it); `None`: every action.
    pub action: Option<String>,
    /// A resource uid (it and everything in it); `None`: see `resource_type`.
    pub resource: Option<String>,
    /// Every resource of this type; with `resource` also `None`: any resource.
    pub resource_type: Option<String>,
    pub effect: Effect,
    pub created_at: u64,
}

/// A role; roles nest (`parents`: the roles it inherits from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parents: BTreeSet<String>,
    pub created_at: u64,
}

/// The roles assigned to one principal directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The principal's uid text.
    pub principal: String,
    pub roles: BTreeSet<String>,
}
