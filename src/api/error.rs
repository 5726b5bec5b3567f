//! `ApiError`: every error a client can see, and the one place that picks
//! its HTTP status and stable `code`. Bodies are
//! `{"error": {"code": "...", "message": "...", "diagnostics"?: [...]}}`;
//! 5xx bodies are opaque and the cause goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::authz::{AuthzError, Diagnostic};
use crate::backends::{RegistryError, StoreError};
use crate::services::{
    AccountError, ChangeError, GraphError, IdentityError, ItemError, RbacError, RecoveryError,
    ServiceError, Summary, SyncError,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body does not have the expected shape: {0}")]
    InvalidBody(String),
    #[error("a body of type `{0}` is not accepted here: send application/json")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("batch of {got} requests is over the limit of {limit}")]
    BatchTooLarge { got: usize, limit: usize },
    #[error("request body nests arrays and objects deeper than the limit of {limit}")]
    JsonTooDeep { limit: usize },
    #[error("{got} inline entities are over the limit of {limit} per decision request")]
    TooManyEntities { got: usize, limit: usize },
    #[error("request headers are over the limit: {0}")]
    HeadersTooLarge(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(
        "this route needs an admin: a signed-in user's `Authorization: Bearer <token>`, an `X-API-Key`, or the admin token"
    )]
    Unauthenticated,
    #[error("the admin policies do not allow this caller this route")]
    Forbidden,
    #[error("the key's version is not the one in If-Match / If-None-Match")]
    PreconditionFailed,
    #[error(
        "namespace `{0}` is written only through its own API (/v1/policies, /v1/entities, /v1/schema)"
    )]
    NamespaceReserved(String),
    #[error("namespace `{0}` holds private keys or password hashes and is never shown")]
    NamespaceSecret(String),
    #[error("key `{0}` not found")]
    KeyNotFound(String),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Identity(IdentityError),
    #[error(transparent)]
    Account(AccountError),
    #[error(transparent)]
    Rbac(RbacError),
    #[error(transparent)]
    Graph(GraphError),
    #[error(transparent)]
    Recovery(RecoveryError),
    #[error(transparent)]
    Sync(SyncError),
    #[error(transparent)]
    Change(ChangeError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Authz(e) => ApiError::Authz(e),
            ServiceError::Store(e) => ApiError::Store(e),
            e @ ServiceError::Corrupt { .. } => ApiError::Corrupt(e.to_string()),
        }
    }
}

impl From<RecoveryError> for ApiError {
    fn from(e: RecoveryError) -> Self {
        match e {
            RecoveryError::Service(e) => e.into(),
            e => ApiError::Recovery(e),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Service(e) => e.into(),
            e => ApiError::Change(e),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Service(e) => e.into(),
            e => ApiError::Sync(e),
        }
    }
}

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::Service(e) => e.into(),
            e => ApiError::Graph(e),
        }
    }
}

impl From<RbacError> for ApiError {
    fn from(e: RbacError) -> Self {
        match e {
            RbacError::Service(e) => e.into(),
            e => ApiError::Rbac(e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Store(e) => ApiError::Store(e),
            e => ApiError::Identity(e),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(e) => ApiError::Store(e),
            e => ApiError::Account(e),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostics: Option<&'a [Diagnostic]>,
    /// A bulk request's invalid items.
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [ItemError]>,
    /// What still depends on what was to be removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    dependents: Option<&'a [String]>,
    /// The later changes a rollback would undo.
    #[serde(skip_serializing_if = "Option::is_none")]
    conflicts: Option<&'a [Summary]>,
}

impl ApiError {
    /// Status and stable code: the single table for the whole API.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use AuthzError as A;
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "MALFORMED_JSON"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            ApiError::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
            }
            ApiError::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "BATCH_TOO_LARGE"),
            ApiError::JsonTooDeep { .. } => (StatusCode::BAD_REQUEST, "JSON_TOO_DEEP"),
            ApiError::TooManyEntities { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_ENTITIES")
            }
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HEADERS_TOO_LARGE",
            ),
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER"),
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::PreconditionFailed => {
                (StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED")
            }
            ApiError::NamespaceReserved(_) => (StatusCode::CONFLICT, "NAMESPACE_RESERVED"),
            ApiError::NamespaceSecret(_) => (StatusCode::FORBIDDEN, "NAMESPACE_SECRET"),
            ApiError::KeyNotFound(_) => (StatusCode::NOT_FOUND, "KEY_NOT_FOUND"),
            ApiError::Authz(e) => match e {
                A::MissingField(_) => (StatusCode::BAD_REQUEST, "MISSING_FIELD"),
                A::InvalidUid { .. } => (StatusCode::BAD_REQUEST, "INVALID_ENTITY_UID"),
                A::RequestInvalid { code, .. } => (StatusCode::BAD_REQUEST, code),
                A::EntitiesInvalid(_) => (StatusCode::BAD_REQUEST, "ENTITIES_INVALID"),
                A::PoliciesInvalid(_) => (StatusCode::BAD_REQUEST, "POLICY_INVALID"),
                A::SchemaInvalid(_) => (StatusCode::BAD_REQUEST, "SCHEMA_INVALID"),
                A::PolicyExists(_) => (StatusCode::CONFLICT, "POLICY_EXISTS"),
                A::PolicyNotFound(_) => (StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
                A::PolicyFromFile(_) => (StatusCode::CONFLICT, "POLICY_FROM_FILE"),
                A::PolicyFromRbac(_) => (StatusCode::CONFLICT, "POLICY_FROM_RBAC"),
                A::EntityNotFound(_) => (StatusCode::NOT_FOUND, "ENTITY_NOT_FOUND"),
                // One text too large is the request's fault; a full set is
                // the state's, cleared by deleting policies.
                A::PolicyLimit { code, .. } if *code == "POLICY_TOO_LARGE" => {
                    (StatusCode::PAYLOAD_TOO_LARGE, code)
                }
                A::PolicyLimit { code, .. } => (StatusCode::CONFLICT, code),
            },
            ApiError::Store(StoreError::Conflict { .. }) => {
                (StatusCode::CONFLICT, "VERSION_CONFLICT")
            }
            ApiError::Store(StoreError::BadCursor) => (StatusCode::BAD_REQUEST, "INVALID_CURSOR"),
            ApiError::Store(StoreError::InvalidKey(_))
            | ApiError::Identity(IdentityError::Store(StoreError::InvalidKey(_)))
            | ApiError::Account(AccountError::Store(StoreError::InvalidKey(_))) => {
                (StatusCode::BAD_REQUEST, "INVALID_KEY")
            }
            ApiError::Store(
                StoreError::Unavailable(_)
                | StoreError::Unreachable(_)
                | StoreError::CircuitOpen(_),
            ) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
            ApiError::Registry(e) => match e {
                RegistryError::UnknownBackend(_) => (StatusCode::NOT_FOUND, "BACKEND_NOT_FOUND"),
                RegistryError::AlreadyActive(_) => (StatusCode::CONFLICT, "BACKEND_ALREADY_ACTIVE"),
                RegistryError::NotAStore { .. } => (StatusCode::CONFLICT, "BACKEND_NOT_A_STORE"),
                RegistryError::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "BACKEND_UNAVAILABLE")
                }
                RegistryError::Copy { .. }
                | RegistryError::Verify { .. }
                | RegistryError::StateFile { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "SWITCH_FAILED")
                }
            },
            ApiError::Identity(e) => match e {
                IdentityError::UnknownDirectory { .. } => {
                    (StatusCode::NOT_FOUND, "DIRECTORY_NOT_FOUND")
                }
                IdentityError::BadCredentials => (StatusCode::BAD_REQUEST, "LOGIN_BAD_CREDENTIALS"),
                IdentityError::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "DIRECTORY_UNAVAILABLE")
                }
                IdentityError::InvalidState => (StatusCode::BAD_REQUEST, "OAUTH_INVALID_STATE"),
                IdentityError::Rejected(_) => (StatusCode::BAD_REQUEST, "OAUTH_REJECTED"),
                IdentityError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
            },
            ApiError::Account(e) => match e {
                AccountError::RegistrationClosed => (StatusCode::FORBIDDEN, "REGISTRATION_CLOSED"),
                AccountError::UserAlreadyExists => {
                    (StatusCode::BAD_REQUEST, "REGISTER_USER_ALREADY_EXISTS")
                }
                AccountError::InvalidPassword(_) => {
                    (StatusCode::BAD_REQUEST, "REGISTER_INVALID_PASSWORD")
                }
                AccountError::UpdateInvalidPassword(_) => {
                    (StatusCode::BAD_REQUEST, "UPDATE_USER_INVALID_PASSWORD")
                }
                AccountError::UpdateEmailExists => {
                    (StatusCode::BAD_REQUEST, "UPDATE_USER_EMAIL_ALREADY_EXISTS")
                }
                AccountError::CurrentPasswordRequired => {
                    (StatusCode::BAD_REQUEST, "CURRENT_PASSWORD_REQUIRED")
                }
                AccountError::CurrentPasswordWrong => {
                    (StatusCode::BAD_REQUEST, "BAD_CURRENT_PASSWORD")
                }
                AccountError::InvalidEmail => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_EMAIL"),
                AccountError::InvalidField(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"),
                AccountError::BadCredentials => (StatusCode::BAD_REQUEST, "LOGIN_BAD_CREDENTIALS"),
                AccountError::NotVerified => (StatusCode::BAD_REQUEST, "LOGIN_USER_NOT_VERIFIED"),
                AccountError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
                AccountError::InvalidRefreshToken => {
                    (StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN")
                }
                AccountError::VerifyBadToken => (StatusCode::BAD_REQUEST, "VERIFY_USER_BAD_TOKEN"),
                AccountError::AlreadyVerified => {
                    (StatusCode::BAD_REQUEST, "VERIFY_USER_ALREADY_VERIFIED")
                }
                AccountError::ResetBadToken => {
                    (StatusCode::BAD_REQUEST, "RESET_PASSWORD_BAD_TOKEN")
                }
                AccountError::ResetInvalidPassword(_) => {
                    (StatusCode::BAD_REQUEST, "RESET_PASSWORD_INVALID_PASSWORD")
                }
                AccountError::MagicLinkBadToken => {
                    (StatusCode::BAD_REQUEST, "MAGIC_LINK_BAD_TOKEN")
                }
                AccountError::NotASession => (StatusCode::BAD_REQUEST, "NOT_A_SESSION"),
                AccountError::Locked(_) => (StatusCode::TOO_MANY_REQUESTS, "LOGIN_LOCKED"),
                AccountError::InsufficientScope(_) => (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE"),
                AccountError::ApiKeyNotFound(_) => (StatusCode::NOT_FOUND, "API_KEY_NOT_FOUND"),
                AccountError::SessionNotFound(_) => (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"),
                AccountError::UserNotFound(_) => (StatusCode::NOT_FOUND, "USER_NOT_FOUND"),
                AccountError::FederatedEmailTaken => {
                    (StatusCode::CONFLICT, "FEDERATED_EMAIL_TAKEN")
                }
                AccountError::FederatedNoEmail => (StatusCode::FORBIDDEN, "FEDERATED_NO_EMAIL"),
                AccountError::FederatedLinkedElsewhere => {
                    (StatusCode::CONFLICT, "FEDERATED_LINKED_ELSEWHERE")
                }
                AccountError::MfaAlreadyEnrolled => (StatusCode::CONFLICT, "MFA_ALREADY_ENROLLED"),
                AccountError::MfaNotEnrolled => (StatusCode::BAD_REQUEST, "MFA_NOT_ENROLLED"),
                AccountError::MfaBadCode => (StatusCode::BAD_REQUEST, "MFA_INVALID_CODE"),
                AccountError::MfaBadChallenge => (StatusCode::BAD_REQUEST, "MFA_CHALLENGE_INVALID"),
                AccountError::ApiKeyLimit(_) => (StatusCode::BAD_REQUEST, "API_KEY_LIMIT"),
                AccountError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
                AccountError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            ApiError::Rbac(e) => match e {
                RbacError::Invalid { .. } => (StatusCode::BAD_REQUEST, "RBAC_INVALID"),
                RbacError::GrantExists(_) => (StatusCode::CONFLICT, "GRANT_EXISTS"),
                RbacError::GrantNotFound => (StatusCode::NOT_FOUND, "GRANT_NOT_FOUND"),
                RbacError::RoleNotFound(_) => (StatusCode::NOT_FOUND, "ROLE_NOT_FOUND"),
                RbacError::RoleCycle { .. } => (StatusCode::CONFLICT, "ROLE_CYCLE"),
                RbacError::RoleInUse { .. } => (StatusCode::CONFLICT, "ROLE_IN_USE"),
                RbacError::NotAssigned { .. } => (StatusCode::NOT_FOUND, "ROLE_NOT_ASSIGNED"),
                RbacError::AlreadyAssigned { .. } => {
                    (StatusCode::CONFLICT, "ROLE_ALREADY_ASSIGNED")
                }
                RbacError::Bulk { .. } => (StatusCode::BAD_REQUEST, "BULK_REJECTED"),
                RbacError::ResetNotConfirmed => (StatusCode::BAD_REQUEST, "CONFIRMATION_REQUIRED"),
                RbacError::BackupNotFound(_) => (StatusCode::NOT_FOUND, "BACKUP_NOT_FOUND"),
                RbacError::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            ApiError::Recovery(e) => match e {
                RecoveryError::NotFound(_) => (StatusCode::NOT_FOUND, "BACKUP_NOT_FOUND"),
                RecoveryError::Corrupt { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_CORRUPT")
                }
                RecoveryError::Invalid { .. } => (StatusCode::BAD_REQUEST, "RECOVERY_INVALID"),
                RecoveryError::KeyRequired(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_KEY_REQUIRED")
                }
                RecoveryError::Io(_) | RecoveryError::Service(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
                }
            },
            ApiError::Change(e) => match e {
                ChangeError::NotFound(_) => (StatusCode::NOT_FOUND, "CHANGE_NOT_FOUND"),
                ChangeError::Conflict { .. } => (StatusCode::CONFLICT, "CHANGE_CONFLICT"),
                ChangeError::NotReversible(_) => (StatusCode::CONFLICT, "CHANGE_NOT_REVERSIBLE"),
                ChangeError::Invalid { .. } => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER"),
                ChangeError::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            ApiError::Sync(e) => match e {
                SyncError::UnknownDirectory(_) | SyncError::NoDirectory => {
                    (StatusCode::NOT_FOUND, "DIRECTORY_NOT_FOUND")
                }
                SyncError::Running(_) => (StatusCode::CONFLICT, "SYNC_RUNNING"),
                SyncError::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            ApiError::Graph(e) => match e {
                GraphError::Invalid { .. } => (StatusCode::BAD_REQUEST, "IAM_INVALID"),
                GraphError::NotFound(_) => (StatusCode::NOT_FOUND, "IDENTITY_NOT_FOUND"),
                GraphError::Exists(_) => (StatusCode::CONFLICT, "IDENTITY_EXISTS"),
                GraphError::Cycle { .. } => (StatusCode::CONFLICT, "GRAPH_CYCLE"),
                GraphError::HasDependents { .. } => (StatusCode::CONFLICT, "HAS_DEPENDENTS"),
                GraphError::CredentialLimit => (StatusCode::CONFLICT, "CREDENTIAL_LIMIT"),
                GraphError::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            ApiError::Store(StoreError::Corrupt(_))
            | ApiError::Corrupt(_)
            | ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }

    fn diagnostics(&self) -> Option<&[Diagnostic]> {
        match self {
            ApiError::Authz(AuthzError::PoliciesInvalid(d) | AuthzError::SchemaInvalid(d)) => {
                Some(d)
            }
            _ => None,
        }
    }

    /// The JSON body, for embedding per-item errors in a batch.
    pub fn body_json(&self) -> Vec<u8> {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            // Opaque to the client; the cause is logged by `into_response`.
            status
                .canonical_reason()
                .unwrap_or("internal error")
                .to_owned()
        } else {
            self.to_string()
        };
        let envelope = Envelope {
            error: Body {
                code,
                message,
                diagnostics: self.diagnostics(),
                items: match self {
                    ApiError::Rbac(RbacError::Bulk { errors, .. }) => Some(errors),
                    _ => None,
                },
                dependents: match self {
                    ApiError::Rbac(RbacError::RoleInUse { dependents, .. })
                    | ApiError::Graph(GraphError::HasDependents { dependents, .. }) => {
                        Some(dependents)
                    }
                    _ => None,
                },
                conflicts: match self {
                    ApiError::Change(ChangeError::Conflict { conflicts, .. }) => Some(conflicts),
                    _ => None,
                },
            },
        };
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, error = %self, cause = ?std::error::Error::source(&self), "Request failed.");
        }
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body_json(),
        )
            .into_response();
        if let ApiError::Account(AccountError::Locked(seconds)) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*seconds),
            );
        }
        if matches!(
            self,
            ApiError::Unauthenticated | ApiError::Account(AccountError::Unauthenticated)
        ) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
