//! Identity-graph records as stored (namespace `iam`): service accounts, AI
//! agents, AI providers, the typed edges between identities, and the
//! credentials of non-human principals. Uids are Cedar uid text, already
//! checked and normalized.

use serde::{Deserialize, Serialize};

/// A non-human principal (`Portcullis::ServiceAccount::"<id>"`), owned by a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    /// The owning user's uid text.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: u64,
}

/// An AI agent (`Portcullis::Agent::"<id>"`): acts for its owner (a user or
/// a service account) through a provider, and never beyond what its owner
/// may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    /// The owner's uid text: a `Portcullis::User` or `Portcullis::ServiceAccount`.
    pub owner: String,
    /// The id of its AI provider.
    pub provider: String,
    /// The model it runs, one of the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: u64,
}

/// An AI model provider (`Portcullis::Provider::"<id>"`). Holds no secret:
/// Portcullis decides about agents and never calls their providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiProvider {
    pub id: String,
    pub name: String,
    /// `openai`, `anthropic`, `azure-openai`, `bedrock`, `vertex`,
    /// `ollama` or `other`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The models its agents may run; empty: any.
    #[serde(default)]
    pub models: Vec<String>,
    pub created_at: u64,
}

/// What an edge between two identities says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// `from` is in `to` (a group or a role): a Cedar entity parent.
    MemberOf,
    /// `from` belongs to `to`: removing `to` affects `from`.
    OwnedBy,
    /// `from` lets `to` act for it: disabling `from` affects `to`.
    DelegatesTo,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::MemberOf => "member-of",
            EdgeKind::OwnedBy => "owned-by",
            EdgeKind::DelegatesTo => "delegates-to",
        }
    }
}

/// A typed edge `from —kind→ to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub kind: EdgeKind,
    pub to: String,
    pub created_at: u64,
}

/// A credential of a service account or an agent, as stored: never its
/// secret, only the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    /// The uid text of the service account or agent it authenticates.
    pub principal: String,
    pub name: String,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub digest: String,
    /// When the secret was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// The secret it replaced, still accepted until `valid_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RetiredSecret>,
}

/// A rotated-out secret during its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredSecret {
    pub digest: String,
    pub valid_until: u64,
}
