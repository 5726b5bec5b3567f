//! The policy snapshot: application policies (files + API), the built-in
//! admin policies, and the schema they were validated against.
//!
//! Reload = build a whole new snapshot, check it, then swap it in; a set that
//! fails to parse or validate is returned as diagnostics and never served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use serde::Serialize;

use super::AuthzError;
use super::diagnostics::{Diagnostic, from_miette};
use super::index::ScopeIndex;
use super::schema::{SchemaDoc, builtin_schema, combined_schema};

const ADMIN_POLICIES: &str = include_str!("../../policies/builtin/admin.cedar");
const ADMIN_SOURCE: &str = "policies/builtin/admin.cedar";
const GUARD_POLICIES: &str = include_str!("../../policies/builtin/guards.cedar");
const GUARD_SOURCE: &str = "policies/builtin/guards.cedar";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PolicyOrigin {
    /// A `*.cedar` file of the policy directory.
    File { path: String },
    /// Created through `/v1/policies`.
    Api,
    /// Compiled into the binary (admin routes).
    Builtin,
    /// An RBAC grant (`/rbac/policies`), compiled to the policy `rbac/<id>`.
    Rbac,
}

/// A policy as `GET /v1/policies` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    pub id: String,
    pub content: String,
    pub source: PolicyOrigin,
    /// Line of its file where it starts (file policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// Everything a snapshot is built from.
#[derive(Debug, Clone, Default)]
pub struct PolicyInputs {
    /// `(path, text)` of each `*.cedar` file.
    pub files: Vec<(String, String)>,
    /// `(id, content)` of each policy stored through the API.
    pub api: Vec<(String, String)>,
    /// `(id, content)` of each compiled RBAC grant.
    pub rbac: Vec<(String, String)>,
    /// The application schema in force, if any.
    pub schema: Option<SchemaDoc>,
    /// Bounds on the set; a set past them is refused whole.
    pub limits: PolicyLimits,
}

/// Bounds on the policy set (`[policies]` `max_count`, `max_policy_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct PolicyLimits {
    /// Most application policies: files, API and RBAC grants together.
    pub max_count: usize,
    /// Most bytes of one API policy's text, checked before it is parsed.
    pub max_policy_bytes: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            max_count: 100_000,
            max_policy_bytes: 64 * 1024,
        }
    }
}

pub struct PolicySnapshot {
    pub generation: u64,
    pub app: PolicySet,
    pub admin: PolicySet,
    /// Built-in + application schema; `None` when the application has none.
    pub schema: Option<Schema>,
    pub app_schema: Option<SchemaDoc>,
    /// Application policies, sorted by id.
    pub policies: Vec<PolicyInfo>,
    /// The built-in guards evaluated with them (not listed as application
    /// policies, so `/v1/policies` shows what the application wrote).
    pub guards: Vec<PolicyInfo>,
    /// What this snapshot was built from, so one change can be applied to it.
    pub inputs: PolicyInputs,
    /// Which application policies can match a request.
    pub(crate) index: ScopeIndex,
}

impl PolicySnapshot {
    /// The application policy or built-in guard with this id.
    pub fn info(&self, id: &str) -> Option<&PolicyInfo> {
        self.policies
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.policies[i])
            .or_else(|| self.guards.iter().find(|g| g.id == id))
    }

    /// Parses and validates `inputs`; any error refuses the whole set.
    pub fn build(inputs: &PolicyInputs, generation: u64) -> Result<PolicySnapshot, AuthzError> {
        let limits = inputs.limits;
        if let Some((id, content)) = inputs
            .api
            .iter()
            .find(|(_, content)| content.len() > limits.max_policy_bytes)
        {
            return Err(AuthzError::PolicyLimit {
                code: "POLICY_TOO_LARGE",
                message: format!(
                    "policy `{id}` has {} bytes; at most {} are accepted (policies.max_policy_bytes)",
                    content.len(),
                    limits.max_policy_bytes
                ),
            });
        }
        let schema = inputs.schema.as_ref().map(combined_schema).transpose()?;

        let mut diagnostics = Vec::new();
        let mut texts: HashMap<String, (String, &str)> = HashMap::new();
        let mut infos = Vec::new();
        let mut app = PolicySet::new();

        // The built-in guards first: no file or API policy may take their ids.
        let mut guards = Vec::new();
        let builtin =
            file_policies(GUARD_SOURCE, GUARD_POLICIES).map_err(AuthzError::PoliciesInvalid)?;
        for policy in builtin {
            let id = policy.id().to_string();
            let content = policy.to_string();
            let line = GUARD_POLICIES
                .find(&content)
                .map(|at| GUARD_POLICIES[..at].matches('\n').count() + 1);
            guards.push(PolicyInfo {
                id: id.clone(),
                content,
                source: PolicyOrigin::Builtin,
                line,
            });
            texts.insert(id, (GUARD_SOURCE.to_owned(), GUARD_POLICIES));
            push(&mut app, policy, GUARD_SOURCE, &mut diagnostics);
        }

        for (path, text) in &inputs.files {
            match file_policies(path, text) {
                Ok(policies) => {
                    for policy in policies {
                        let id = policy.id().to_string();
                        if texts.contains_key(&id) {
                            diagnostics.push(duplicate(path, &id));
                            continue;
                        }
                        if id.starts_with(super::rbac::RBAC_POLICY_PREFIX) {
                            diagnostics.push(Diagnostic {
                                source: path.clone(),
                                line: None,
                                column: None,
                                policy_id: Some(id.clone()),
                                message: format!(
                                    "policy id `{id}`: ids starting with `{}` belong to RBAC grants",
                                    super::rbac::RBAC_POLICY_PREFIX
                                ),
                            });
                            continue;
                        }
                        let content = policy.to_string();
                        // The policy's text is its source, as written.
                        let line = text
                            .find(&content)
                            .map(|at| text[..at].matches('\n').count() + 1);
                        infos.push(PolicyInfo {
                            id: id.clone(),
                            content,
                            source: PolicyOrigin::File { path: path.clone() },
                            line,
                        });
                        texts.insert(id, (path.clone(), text.as_str()));
                        push(&mut app, policy, path, &mut diagnostics);
                    }
                }
                Err(mut errors) => diagnostics.append(&mut errors),
            }
        }
        let count = infos.len() + inputs.api.len() + inputs.rbac.len();
        if count > limits.max_count {
            return Err(AuthzError::PolicyLimit {
                code: "TOO_MANY_POLICIES",
                message: format!(
                    "the policy set would hold {count} policies; at most {} are accepted (policies.max_count)",
                    limits.max_count
                ),
            });
        }
        let stored = inputs
            .api
            .iter()
            .map(|p| (p, PolicyOrigin::Api, "api"))
            .chain(inputs.rbac.iter().map(|p| (p, PolicyOrigin::Rbac, "rbac")));
        for ((id, content), origin, kind) in stored {
            let source = format!("{kind}:{id}");
            if texts.contains_key(id) {
                diagnostics.push(duplicate(&source, id));
                continue;
            }
            match Policy::parse(Some(PolicyId::new(id)), content) {
                Ok(policy) => {
                    infos.push(PolicyInfo {
                        id: id.clone(),
                        content: content.clone(),
                        source: origin,
                        line: None,
                    });
                    texts.insert(id.clone(), (source.clone(), content.as_str()));
                    push(&mut app, policy, &source, &mut diagnostics);
                }
                Err(e) => {
                    diagnostics.extend(from_miette(&e, &source, Some(content), Some(id.clone())))
                }
            }
        }
        if !diagnostics.is_empty() {
            return Err(AuthzError::PoliciesInvalid(diagnostics));
        }
        if let Some(schema) = &schema {
            validate(schema, &app, &texts)?;
        }

        let admin = admin_policies()?;
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        let index = ScopeIndex::new(&app);
        Ok(PolicySnapshot {
            generation,
            app,
            admin,
            schema,
            app_schema: inputs.schema.clone(),
            policies: infos,
            guards,
            inputs: inputs.clone(),
            index,
        })
    }
}

fn duplicate(source: &str, id: &str) -> Diagnostic {
    Diagnostic {
        source: source.to_owned(),
        line: None,
        column: None,
        policy_id: Some(id.to_owned()),
        message: format!("policy id `{id}` is used more than once"),
    }
}

fn push(set: &mut PolicySet, policy: Policy, source: &str, diagnostics: &mut Vec<Diagnostic>) {
    let id = policy.id().to_string();
    if let Err(e) = set.add(policy) {
        diagnostics.extend(from_miette(&e, source, None, Some(id)));
    }
}

/// The policies of one file, each named by its `@id("…")` annotation or
/// `<file name>#<n>` (n counts from 0 in file order).
fn file_policies(path: &str, text: &str) -> Result<Vec<Policy>, Vec<Diagnostic>> {
    let set = PolicySet::from_str(text).map_err(|e| {
        e.iter()
            .flat_map(|err| from_miette(err, path, Some(text), None))
            .collect::<Vec<_>>()
    })?;
    if set.templates().next().is_some() {
        return Err(vec![Diagnostic {
            source: path.to_owned(),
            line: None,
            column: None,
            policy_id: None,
            message: "policy templates are not supported; write static policies".into(),
        }]);
    }
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned());
    // `from_str` names policies policy0, policy1, … in file order.
    let mut numbered: Vec<(usize, &Policy)> = set
        .policies()
        .map(|p| {
            let n = p
                .id()
                .to_string()
                .trim_start_matches("policy")
                .parse()
                .unwrap_or(usize::MAX);
            (n, p)
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    Ok(numbered
        .into_iter()
        .map(|(n, p)| {
            let id = p
                .annotation("id")
                .map_or_else(|| format!("{name}#{n}"), str::to_owned);
            p.new_id(PolicyId::new(id))
        })
        .collect())
}

fn validate(
    schema: &Schema,
    set: &PolicySet,
    texts: &HashMap<String, (String, &str)>,
) -> Result<(), AuthzError> {
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let diagnostics = result
        .validation_errors()
        .flat_map(|e| {
            let id = e.policy_id().to_string();
            let (source, text) = texts
                .get(&id)
                .map_or(("policies", None), |(s, t)| (s.as_str(), Some(*t)));
            from_miette(e, source, text, Some(id))
        })
        .collect();
    Err(AuthzError::PoliciesInvalid(diagnostics))
}

fn admin_policies() -> Result<PolicySet, AuthzError> {
    let set = PolicySet::from_str(ADMIN_POLICIES).map_err(|e| {
        AuthzError::PoliciesInvalid(
            e.iter()
                .flat_map(|err| from_miette(err, ADMIN_SOURCE, Some(ADMIN_POLICIES), None))
                .collect(),
        )
    })?;
    let result = Validator::new(builtin_schema()?).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        return Err(AuthzError::PoliciesInvalid(
            result
                .validation_errors()
                .flat_map(|e| from_miette(e, ADMIN_SOURCE, Some(ADMIN_POLICIES), None))
                .collect(),
        ));
    }
    Ok(set)
}

/// What the policy directory holds: policy files, at most one schema, and a
/// fingerprint (names, sizes, modification times) to notice changes cheaply.
#[derive(Debug, Clone, Default)]
pub struct PolicyDir {
    pub files: Vec<(String, String)>,
    pub schema: Option<SchemaDoc>,
}

/// Reads `*.cedar` and `*.cedarschema` / `*.cedarschema.json` files directly
/// in `dir` (subdirectories such as `builtin/` are not read).
pub fn load_policy_dir(dir: &Path) -> Result<PolicyDir, AuthzError> {
    let io = |path: &Path, e: std::io::Error| {
        AuthzError::PoliciesInvalid(vec![Diagnostic {
            source: path.display().to_string(),
            line: None,
            column: None,
            policy_id: None,
            message: e.to_string(),
        }])
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = PolicyDir::default();
    let mut schema_path: Option<String> = None;
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = path.display().to_string();
        let is_schema = name.ends_with(".cedarschema") || name.ends_with(".cedarschema.json");
        if !is_schema && !name.ends_with(".cedar") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        if !is_schema {
            out.files.push((shown, text));
            continue;
        }
        if let Some(first) = &schema_path {
            return Err(AuthzError::SchemaInvalid(vec![Diagnostic {
                source: shown,
                line: None,
                column: None,
                policy_id: None,
                message: format!(
                    "only one application schema file is allowed; {first} is one already"
                ),
            }]));
        }
        out.schema = Some(if name.ends_with(".json") {
            let value = serde_json::from_str(&text).map_err(|e| {
                AuthzError::SchemaInvalid(vec![Diagnostic {
                    source: shown.clone(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    policy_id: None,
                    message: e.to_string(),
                }])
            })?;
            SchemaDoc::Json(value)
        } else {
            SchemaDoc::Cedar {
                source: shown.clone(),
                text,
            }
        });
        schema_path = Some(shown);
    }
    Ok(out)
}

/// Names, sizes and modification times of the directory's files: a change
/// in any of them means "reload".
pub fn dir_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (e.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    out.sort();
    out
}
