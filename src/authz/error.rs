use super::diagnostics::Diagnostic;

/// Why a decision, a policy change or an entity change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("`{0}` is required")]
    MissingField(&'static str),
    #[error("invalid entity uid `{input}`: {message}")]
    InvalidUid { input: String, message: String },
    /// The request does not match the schema: `code` says how
    /// (`UNKNOWN_ACTION`, `UNKNOWN_ENTITY_TYPE`, `REQUEST_INVALID`).
    #[error("{message}")]
    RequestInvalid { code: &'static str, message: String },
    #[error("invalid entities: {0}")]
    EntitiesInvalid(String),
    #[error("policy set is invalid")]
    PoliciesInvalid(Vec<Diagnostic>),
    #[error("schema is invalid")]
    SchemaInvalid(Vec<Diagnostic>),
    #[error("policy `{0}` already exists")]
    PolicyExists(String),
    #[error("policy `{0}` not found")]
    PolicyNotFound(String),
    #[error("policy `{0}` comes from a file in the policy directory; edit the file instead")]
    PolicyFromFile(String),
    #[error("policy `{0}` is a compiled RBAC grant; change it through /rbac/policies")]
    PolicyFromRbac(String),
    #[error("entity `{0}` not found")]
    EntityNotFound(String),
    /// The change would take the policy set past a configured bound:
    /// `code` says which (`TOO_MANY_POLICIES`, `POLICY_TOO_LARGE`).
    #[error("{message}")]
    PolicyLimit { code: &'static str, message: String },
}
