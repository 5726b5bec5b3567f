//! Schema fragments: Portcullis's own identity types (built into the binary)
//! and the application's schema (from the policy directory or `PUT /v1/schema`).
//!
//! The two are combined with `Schema::from_schema_fragments`, so application
//! policies can name `Portcullis::User`. Without an application schema nothing
//! application-side is validated, as cedar-agent behaves.

use std::sync::LazyLock;

use cedar_policy::{Schema, SchemaFragment};

use super::AuthzError;
use super::diagnostics::{Diagnostic, from_miette};

const BUILTIN_SCHEMA: &str = include_str!("../../policies/builtin/portcullis.cedarschema");
const BUILTIN_SOURCE: &str = "policies/builtin/portcullis.cedarschema";

/// The application's schema as it was supplied.
#[derive(Debug, Clone)]
pub enum SchemaDoc {
    /// Cedar JSON schema (what cedar-agent's `PUT /v1/schema` takes).
    Json(serde_json::Value),
    /// Cedar schema syntax, from a `*.cedarschema` file.
    Cedar { source: String, text: String },
}

impl SchemaDoc {
    pub(crate) fn fragment(&self) -> Result<SchemaFragment, AuthzError> {
        match self {
            SchemaDoc::Json(value) => SchemaFragment::from_json_value(value.clone())
                .map_err(|e| AuthzError::SchemaInvalid(from_miette(&e, "schema", None, None))),
            SchemaDoc::Cedar { source, text } => SchemaFragment::from_cedarschema_str(text)
                .map(|(fragment, _warnings)| fragment)
                .map_err(|e| AuthzError::SchemaInvalid(from_miette(&e, source, Some(text), None))),
        }
    }

    /// The schema as Cedar JSON, for `GET /v1/schema`.
    pub fn to_json(&self) -> Result<serde_json::Value, AuthzError> {
        match self {
            SchemaDoc::Json(value) => Ok(value.clone()),
            SchemaDoc::Cedar { .. } => self.fragment()?.to_json_value().map_err(|e| {
                AuthzError::SchemaInvalid(vec![Diagnostic {
                    source: "schema".into(),
                    line: None,
                    column: None,
                    policy_id: None,
                    message: e.to_string(),
                }])
            }),
        }
    }
}

static BUILTIN: LazyLock<Result<SchemaFragment, Vec<Diagnostic>>> = LazyLock::new(|| {
    SchemaFragment::from_cedarschema_str(BUILTIN_SCHEMA)
        .map(|(fragment, _)| fragment)
        .map_err(|e| from_miette(&e, BUILTIN_SOURCE, Some(BUILTIN_SCHEMA), None))
});

/// Portcullis's own schema fragment (namespace `Portcullis`).
pub fn builtin_fragment() -> Result<SchemaFragment, AuthzError> {
    BUILTIN.clone().map_err(AuthzError::SchemaInvalid)
}

/// The built-in fragment alone: what admin policies are validated against.
pub(crate) fn builtin_schema() -> Result<Schema, AuthzError> {
    Schema::from_schema_fragments([builtin_fragment()?])
        .map_err(|e| AuthzError::SchemaInvalid(from_miette(&e, BUILTIN_SOURCE, None, None)))
}

/// The built-in fragment plus the application's.
pub(crate) fn combined_schema(app: &SchemaDoc) -> Result<Schema, AuthzError> {
    let source = match app {
        SchemaDoc::Json(_) => "schema",
        SchemaDoc::Cedar { source, .. } => source.as_str(),
    };
    Schema::from_schema_fragments([builtin_fragment()?, app.fragment()?])
        .map_err(|e| AuthzError::SchemaInvalid(from_miette(&e, source, None, None)))
}
