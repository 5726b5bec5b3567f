//! `[ext_authz]`: Envoy's ext_authz (HTTP mode under a prefix of the API
//! port, gRPC mode on a port of its own), and the route rules that map a
//! checked request to a Cedar decision.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

/// Envoy's ext_authz: requests under `prefix` (HTTP mode) and
/// `envoy.service.auth.v3.Authorization/Check` calls on `grpc_listen` (gRPC
/// mode) are checks, mapped to Cedar decisions by `rules` (the first that
/// matches wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtAuthzConfig {
    pub prefix: String,
    /// Address of the gRPC `Authorization` service; absent: gRPC mode off.
    pub grpc_listen: Option<SocketAddr>,
    /// What a request no rule matches gets: `deny` (the default) or `allow`.
    pub unmatched: UnmatchedRoute,
    /// Proxies before Envoy that append to `x-forwarded-for`: `{source}` is
    /// the entry this many places from the right. 0, the default: the
    /// rightmost, the address Envoy saw. Entries further left are whatever
    /// the client wrote.
    pub trusted_hops: usize,
    pub rules: Vec<RouteRule>,
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        Self {
            prefix: "/ext_authz".into(),
            grpc_listen: None,
            unmatched: UnmatchedRoute::Deny,
            trusted_hops: 0,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedRoute {
    Deny,
    Allow,
}

/// One route rule: method(s), path pattern and host to a Cedar action,
/// resource and context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Methods it applies to; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `/documents/{id}`: `{name}` captures one segment, `{*name}` the rest.
    pub path: PathPattern,
    /// Exact `Host` (port ignored); absent: any.
    #[serde(default)]
    pub host: Option<String>,
    /// A Cedar action uid, e.g. `Docs::Action::"read"`.
    pub action: String,
    /// The resource: its type, and an id template (`"{id}"`).
    pub resource: ResourceTemplate,
    /// Context attributes: strings are templates (`{source}`, `{method}`,
    /// `{path}`, `{host}`, `{header:NAME}`, `{query:NAME}`, captures);
    /// other values are taken as they are. An attribute whose template
    /// names a missing header or query parameter is left out.
    #[serde(default)]
    pub context: BTreeMap<String, serde_json::Value>,
    /// Whether the caller must be signed in (401 otherwise).
    #[serde(default = "default_true")]
    pub require_principal: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceTemplate {
    #[serde(rename = "type")]
    pub type_name: String,
    pub id: String,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}`: one segment.
    Capture(String),
    /// `{*name}`: the rest of the path (last only).
    Rest(String),
}

/// A parsed path pattern: `/documents/{id}`, `/files/{*path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pub text: String,
    pub segments: Vec<Segment>,
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("must start with `/`".into());
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.starts_with('*') => {
                    if index + 1 != parts.len() {
                        return Err(format!("`{{{name}}}` must be the last segment"));
                    }
                    Segment::Rest(name[1..].to_owned())
                }
                Some(name) => Segment::Capture(name.to_owned()),
                None if part.contains(['{', '}']) => {
                    return Err(format!(
                        "segment `{part}`: a capture is a whole segment, `{{name}}`"
                    ));
                }
                None => Segment::Literal((*part).to_owned()),
            };
            if let Segment::Capture(name) | Segment::Rest(name) = &segment {
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!("capture `{name}`: letters, digits and `_` only"));
                }
            }
            segments.push(segment);
        }
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PathPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl ExtAuthzConfig {
    /// The first rule setting that is wrong: `(key, why)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let prefix_ok = self.prefix.starts_with('/')
            && self.prefix.len() > 1
            && !self.prefix.ends_with('/')
            && !self.prefix.contains(['{', '}', '*']);
        if !prefix_ok {
            return Err(("prefix".into(), "must be a path like `/ext_authz`".into()));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let at = |key: &str| format!("rules[{index}].{key}");
            if let Some(bad) = rule
                .methods
                .iter()
                .find(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()))
            {
                return Err((
                    at("methods"),
                    format!("`{bad}` is not an upper-case HTTP method"),
                ));
            }
            if rule.action.parse::<cedar_policy::EntityUid>().is_err() {
                return Err((
                    at("action"),
                    "must be a Cedar uid, e.g. `Docs::Action::\"read\"`".into(),
                ));
            }
            if rule
                .resource
                .type_name
                .parse::<cedar_policy::EntityTypeName>()
                .is_err()
            {
                return Err((
                    at("resource.type"),
                    "must be a Cedar entity type, e.g. `Docs::Document`".into(),
                ));
            }
        }
        Ok(())
    }
}
