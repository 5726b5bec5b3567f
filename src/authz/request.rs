//! The body of `POST /v1/is_authorized`, as cedar-agent and Verified
//! Permissions users write it. Unknown fields are ignored, as cedar-agent does.

use serde::Deserialize;

use super::UidInput;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DecisionRequest {
    #[serde(default)]
    pub principal: Option<UidInput>,
    #[serde(default)]
    pub action: Option<UidInput>,
    #[serde(default)]
    pub resource: Option<UidInput>,
    /// A JSON object; absent or `null` means an empty context.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    /// Replaces the stored entities for this request.
    #[serde(default)]
    pub entities: Option<serde_json::Value>,
    /// Merged over the stored (or `entities`) set for this request; wins on the same uid.
    #[serde(default)]
    pub additional_entities: Option<serde_json::Value>,
}

impl DecisionRequest {
    pub fn has_inline_entities(&self) -> bool {
        self.entities.is_some() || self.additional_entities.is_some()
    }
}
