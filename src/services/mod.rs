//! Use cases: what a request asks for, expressed against the store and the
//! decision engine. Persist first, then swap the engine's snapshot; a change
//! that fails validation or storage leaves both as they were.
//!
//! Owns: the order of writes and reloads. Must not: know about HTTP.

mod account_links;
mod accounts;
mod api_keys;
mod catalog;
mod changes;
mod federation;
mod graph;
mod identity;
pub mod journal;
mod mail;
mod mfa;
mod passwords;
mod rbac;
mod recovery;
mod recovery_settings;
mod sealed;
mod sidecar;
mod throttle;
mod tokens;
mod totp;
mod users;
mod web_sessions;

pub use account_links::{ACCOUNT_LINKS, Federated};
pub use accounts::{
    ACTION_TOKENS, AccountError, Accounts, Authenticated, Flags, ProfileUpdate, Purpose,
    REFRESH_TOKENS, Registration, SESSIONS, SETTINGS, TOPIC_ACCOUNTS, TokenPair, USER_EMAILS,
    USERS, Via,
};
pub use api_keys::{API_KEY_INDEX, API_KEYS, ApiKey, CreatedApiKey, NewApiKey, SCOPES};
pub use catalog::{Catalog, ServiceError};
pub use changes::{
    ChangeError, ChangePage, ChangeQuery, Rollback, RolledBack, Summary, list_changes,
};
pub use federation::{
    DirectoryState, Federation, SYNC_RUNS, SyncError, SyncMode, SyncReport, SyncRequest,
};
pub use graph::{
    CREDENTIAL_PREFIX, CredentialView, Graph, GraphError, GraphState, IAM, IdentityUpdate,
    IssuedCredential, Limits, LinkInput, NewAgent, NewCredential, NewProvider, NewServiceAccount,
    Reached, Walk, dependents, edge_id, identity_uid, memberships, walk,
};
pub use identity::{
    Bearer, BearerCaller, IDENTITIES, Identities, IdentityError, OAUTH_STATES, OAuthFor,
    Resolution, principal_of,
};
pub use mail::{MailError, Mailer};
pub use mfa::{
    Delegated, Enrollment, LoginOutcome, MFA, MFA_CHALLENGES, PendingApproval, PendingLogin,
};
pub use rbac::{
    BulkOp, GrantInput, ImplicitRole, ItemError, Permission, RBAC, RBAC_BACKUPS, Rbac, RbacError,
    RbacState, principal_uid,
};
pub use recovery::{Manifest, Recovery, RecoveryError, Restored};
pub use recovery_settings::{RECOVERY_SETTINGS_KEY, RecoverySettings};
pub use sealed::SealKey;
pub use sidecar::{CheckedRequest, Mapping, map_request};
pub use throttle::{Attempt, LOGIN_FAILURES};
pub use tokens::{AccessClaims, SIGNING_KEYS, TokenError, Tokens, now, random_id, random_token};
pub use users::{AdminUpdate, UserPage};
pub use web_sessions::{WEB_SESSIONS, WebSession};

/// Namespaces only Portcullis itself writes (the catalog keeps the first
/// three in step with the engine): `/storage/{namespace}` may read them but
/// not write them.
pub const RESERVED_NAMESPACES: &[&str] = &[
    catalog::POLICIES,
    catalog::SCHEMA,
    catalog::ENTITIES,
    IDENTITIES,
    OAUTH_STATES,
    ACCOUNT_LINKS,
    USERS,
    USER_EMAILS,
    SESSIONS,
    REFRESH_TOKENS,
    ACTION_TOKENS,
    API_KEYS,
    API_KEY_INDEX,
    SETTINGS,
    LOGIN_FAILURES,
    MFA,
    MFA_CHALLENGES,
    SIGNING_KEYS,
    WEB_SESSIONS,
    RBAC,
    RBAC_BACKUPS,
    IAM,
    // History and leases: an admin who could rewrite them could hide a
    // change or break a running sync.
    journal::JOURNAL,
    SYNC_RUNS,
];

/// What of a namespace's values is secret. The one classification of
/// sensitive data (ASVS 8.3.4): `/storage` reads no namespace holding any,
/// and the journal keeps digests of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    None,
    /// Private keys and TOTP secrets: the whole value.
    Whole,
    /// Records with secret fields: password hashes.
    Fields(&'static [&'static str]),
}

pub fn secrecy(namespace: &str) -> Secrecy {
    match namespace {
        SIGNING_KEYS | MFA | WEB_SESSIONS => Secrecy::Whole,
        USERS => Secrecy::Fields(&["hashed_password"]),
        _ => Secrecy::None,
    }
}
