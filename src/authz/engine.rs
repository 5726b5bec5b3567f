//! The [`Engine`]: current policy and entity snapshots behind `ArcSwap`, the
//! caches, and the one place a Cedar `Authorizer` is called.
//!
//! The read path takes no lock: two atomic snapshot loads, a cache probe,
//! and on a miss one `is_authorized` against the shared entity set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use cedar_policy::{Authorizer, Context, Decision, Entities, Entity, EntityUid, Request, Response};
use serde::Serialize;

use super::AuthzError;
use super::cache::{BaseCache, CacheSettings, DecisionCache, Generations, SliceCache};
use super::entities::{EntitySnapshot, json_refs, merge, parse_entities};
use super::policies::PolicySnapshot;
use super::request::DecisionRequest;
use super::uid::{UidInput, parse_uid};

/// A decision with its explanation.
///
/// Cedar's diagnostics are put into words (policy ids, error messages and
/// the JSON body) the first time they are read, not when the decision is
/// made: an ext_authz check reads none of them, and its decision-log entry
/// reads them on the log's writer thread. Formatting the evaluation errors
/// was 9% of an uncached check's instructions.
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// Cedar's answer, when the policies gave it.
    response: Option<Response>,
    explained: OnceLock<Explained>,
}

/// An [`Outcome`]'s diagnostics in words.
#[derive(Debug)]
struct Explained {
    /// Ids of the policies that determined the decision, sorted.
    reasons: Vec<String>,
    /// Policy evaluation errors (these policies were skipped), sorted.
    errors: Vec<String>,
    /// `{"decision": …, "diagnostics": {"reason": […], "errors": […]}}`.
    body: Bytes,
}

#[derive(Serialize)]
struct Body<'a> {
    decision: &'static str,
    diagnostics: DiagnosticsBody<'a>,
    /// Set when the decision is a deny not of the policies' own: something
    /// needed could not be read (fail closed), or an agent's owner is denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct DiagnosticsBody<'a> {
    reason: &'a [String],
    errors: &'a [String],
}

impl Explained {
    fn new(
        decision: Decision,
        reasons: Vec<String>,
        errors: Vec<String>,
        error: Option<ErrorBody>,
    ) -> Explained {
        let body = serde_json::to_vec(&Body {
            decision: match decision {
                Decision::Allow => "Allow",
                Decision::Deny => "Deny",
            },
            diagnostics: DiagnosticsBody {
                reason: &reasons,
                errors: &errors,
            },
            error,
        })
        .unwrap_or_default();
        Explained {
            reasons,
            errors,
            body: Bytes::from(body),
        }
    }

    fn of(response: &Response) -> Explained {
        let diagnostics = response.diagnostics();
        Explained::new(
            response.decision(),
            sorted_text(diagnostics.reason()),
            sorted_text(diagnostics.errors()),
            None,
        )
    }
}

/// Each item as text, sorted.
fn sorted_text<T: ToString>(items: impl Iterator<Item = T>) -> Vec<String> {
    let mut text: Vec<String> = items.map(|item| item.to_string()).collect();
    text.sort_unstable();
    text
}

impl Outcome {
    fn from_response(response: Response) -> Outcome {
        Outcome {
            decision: response.decision(),
            response: Some(response),
            explained: OnceLock::new(),
        }
    }

    /// A deny reached without evaluating policies, because something the
    /// decision needs could not be read: never an allow, never a 5xx.
    pub fn fail_closed(code: &str, message: String) -> Outcome {
        Self::deny_because(code, message, Vec::new(), Vec::new())
    }

    /// An AI agent's allow withdrawn because its owner, deciding the same
    /// request (`owner_outcome`), is denied: an agent never does more than
    /// its owner. The owner's determining policies are the reasons.
    pub fn bounded_by_owner(owner: &str, owner_outcome: &Outcome) -> Outcome {
        Self::deny_because(
            "OWNER_DENIED",
            format!("the agent acts for `{owner}`, who is not allowed this request"),
            owner_outcome.reasons().to_vec(),
            owner_outcome.errors().to_vec(),
        )
    }

    /// A deny with `code` and `message` saying why it is not the policies'
    /// own answer.
    fn deny_because(
        code: &str,
        message: String,
        reasons: Vec<String>,
        mut errors: Vec<String>,
    ) -> Outcome {
        errors.push(format!("{code}: {message}"));
        let error = ErrorBody {
            code,
            message: &message,
        };
        Outcome {
            decision: Decision::Deny,
            response: None,
            explained: OnceLock::from(Explained::new(Decision::Deny, reasons, errors, Some(error))),
        }
    }

    fn explained(&self) -> &Explained {
        self.explained.get_or_init(|| match &self.response {
            Some(response) => Explained::of(response),
            None => Explained::new(self.decision, Vec::new(), Vec::new(), None),
        })
    }

    /// Ids of the policies that determined the decision, sorted.
    pub fn reasons(&self) -> &[String] {
        &self.explained().reasons
    }

    /// Policy evaluation errors (these policies were skipped), sorted.
    pub fn errors(&self) -> &[String] {
        &self.explained().errors
    }

    /// `{"decision": …, "diagnostics": {"reason": […], "errors": […]}}`,
    /// cedar-agent's answer.
    pub fn body(&self) -> Bytes {
        self.explained().body.clone()
    }

    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// A principal's entities as its directory describes them (the user and
/// every group it reaches), and a stamp that changes whenever they are read
/// again, so decisions cached under an older read are not served.
#[derive(Debug)]
pub struct ResolvedIdentity {
    pub entities: Arc<[Entity]>,
    pub stamp: u64,
}

/// A decision and whether the decision cache answered it.
pub struct Decided {
    pub outcome: Arc<Outcome>,
    pub cache_hit: bool,
}

/// The policy and entity snapshots decisions read: one pointer, so a change
/// to both (a restore, a schema change) is seen whole or not at all.
struct Serving {
    policies: Arc<PolicySnapshot>,
    entities: Arc<EntitySnapshot>,
}

pub struct Engine {
    serving: ArcSwap<Serving>,
    decisions: DecisionCache,
    slices: SliceCache,
    bases: BaseCache,
    authorizer: Authorizer,
    generation: AtomicU64,
}

impl Engine {
    pub fn new(
        policies: PolicySnapshot,
        entities: EntitySnapshot,
        cache: &CacheSettings,
    ) -> Engine {
        let generation = policies.generation.max(entities.generation);
        Engine {
            serving: ArcSwap::from_pointee(Serving {
                policies: Arc::new(policies),
                entities: Arc::new(entities),
            }),
            decisions: DecisionCache::new(cache),
            slices: SliceCache::new(cache),
            bases: BaseCache::new(cache),
            authorizer: Authorizer::new(),
            generation: AtomicU64::new(generation),
        }
    }

    /// A generation number no snapshot has used yet.
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn policies(&self) -> Arc<PolicySnapshot> {
        self.serving.load().policies.clone()
    }

    pub fn entities(&self) -> Arc<EntitySnapshot> {
        self.serving.load().entities.clone()
    }

    /// Serves `snapshot` from the next decision on.
    pub fn swap_policies(&self, snapshot: PolicySnapshot) {
        let policies = Arc::new(snapshot);
        self.serving.rcu(|serving| Serving {
            policies: policies.clone(),
            entities: serving.entities.clone(),
        });
    }

    pub fn swap_entities(&self, snapshot: EntitySnapshot) {
        let entities = Arc::new(snapshot);
        self.serving.rcu(|serving| Serving {
            policies: serving.policies.clone(),
            entities: entities.clone(),
        });
    }

    /// Serves both snapshots from the next decision on, together.
    pub fn swap_both(&self, policies: PolicySnapshot, entities: EntitySnapshot) {
        self.serving.store(Arc::new(Serving {
            policies: Arc::new(policies),
            entities: Arc::new(entities),
        }));
    }

    pub fn decision_cache_enabled(&self) -> bool {
        self.decisions.enabled()
    }

    /// Decides one request against the current snapshots, with the
    /// principal's directory identity when it has one.
    pub fn decide(
        &self,
        req: &DecisionRequest,
        identity: Option<&ResolvedIdentity>,
    ) -> Result<Decided, AuthzError> {
        let serving = self.serving.load();
        let (policies, entities) = (&serving.policies, &serving.entities);
        let generations = Generations {
            policies: policies.generation,
            entities: entities.generation,
            identity: identity.map_or(0, |i| i.stamp),
        };
        if let Some(outcome) = self.decisions.get(req, generations) {
            return Ok(Decided {
                outcome,
                cache_hit: true,
            });
        }
        let outcome = Arc::new(self.evaluate(req, policies, entities, identity)?);
        self.decisions.insert(req, generations, outcome.clone());
        Ok(Decided {
            outcome,
            cache_hit: false,
        })
    }

    fn evaluate(
        &self,
        req: &DecisionRequest,
        policies: &PolicySnapshot,
        stored: &EntitySnapshot,
        identity: Option<&ResolvedIdentity>,
    ) -> Result<Outcome, AuthzError> {
        let principal = parse_uid(
            req.principal
                .as_ref()
                .ok_or(AuthzError::MissingField("principal"))?,
        )?;
        let action = parse_uid(
            req.action
                .as_ref()
                .ok_or(AuthzError::MissingField("action"))?,
        )?;
        let resource = parse_uid(
            req.resource
                .as_ref()
                .ok_or(AuthzError::MissingField("resource"))?,
        )?;
        let schema = policies.schema.as_ref();
        let context = match &req.context {
            // An empty context needs no parsing; `Request::new` below still
            // checks it against the action's context type.
            None | Some(serde_json::Value::Null) => Context::empty(),
            Some(serde_json::Value::Object(map)) if map.is_empty() => Context::empty(),
            Some(value @ serde_json::Value::Object(_)) => {
                Context::from_json_value(value.clone(), schema.map(|s| (s, &action))).map_err(
                    |e| {
                        // An undeclared action or type also fails context
                        // parsing; name that cause rather than the context.
                        let bare = Request::new(
                            principal.clone(),
                            action.clone(),
                            resource.clone(),
                            Context::empty(),
                            schema,
                        );
                        match bare {
                            Err(cause) => request_invalid(cause),
                            Ok(_) => AuthzError::RequestInvalid {
                                code: "CONTEXT_INVALID",
                                message: format!("invalid context: {e}"),
                            },
                        }
                    },
                )?
            }
            Some(_) => {
                return Err(AuthzError::RequestInvalid {
                    code: "CONTEXT_INVALID",
                    message: "`context` must be a JSON object".into(),
                });
            }
        };
        let request = Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            context,
            schema,
        )
        .map_err(request_invalid)?;

        let directory = identity.map_or(&[][..], |i| &i.entities[..]);
        let response = match (&req.entities, &req.additional_entities) {
            (None, None) if directory.is_empty() => {
                self.is_authorized(&request, policies, &stored.entities)
            }
            (Some(replace), None) if directory.is_empty() => {
                let entities = Entities::from_json_value(replace.clone(), schema)
                    .map_err(|e| AuthzError::EntitiesInvalid(format!("`entities`: {e}")))?;
                self.is_authorized(&request, policies, &entities)
            }
            (base, additional) => {
                // What the request supplies wins over the identity's and the
                // store's entities.
                let mut supplied = Vec::new();
                if let Some(additional) = additional {
                    supplied.extend(
                        parse_entities(additional.clone(), schema)?
                            .into_iter()
                            .map(|p| p.entity),
                    );
                }
                let entities = match base {
                    Some(replace) => {
                        let base: Arc<[Entity]> = parse_entities(replace.clone(), schema)?
                            .into_iter()
                            .map(|p| p.entity)
                            .collect();
                        merge([base], directory, supplied, schema, false)?
                    }
                    None => {
                        let mut others = vec![resource];
                        if let Some(context) = &req.context {
                            json_refs(context, &mut others);
                        }
                        if let Some(additional) = additional {
                            json_refs(additional, &mut others);
                        }
                        if supplied.is_empty() {
                            let entities =
                                self.stored_for(stored, identity, principal, action, &others)?;
                            return Ok(Outcome::from_response(
                                self.is_authorized(&request, policies, &entities),
                            ));
                        }
                        let mut roots = vec![principal, action];
                        roots.extend(others);
                        roots.extend(directory.iter().map(Entity::uid));
                        let slices = roots.iter().map(|root| self.slice(stored, root));
                        merge(
                            slices.collect::<Vec<_>>(),
                            directory,
                            supplied,
                            schema,
                            true,
                        )?
                    }
                };
                self.is_authorized(&request, policies, &entities)
            }
        };
        Ok(Outcome::from_response(response))
    }

    /// The stored entities a request with an identity (and no entities of
    /// its own) decides on: the base of its principal and action (see
    /// [`BaseCache`]) when the slices of `others` (the resource, and the
    /// entities its context names) add nothing to it, else all of them
    /// merged.
    fn stored_for(
        &self,
        stored: &EntitySnapshot,
        identity: Option<&ResolvedIdentity>,
        principal: EntityUid,
        action: EntityUid,
        others: &[EntityUid],
    ) -> Result<Arc<Entities>, AuthzError> {
        let directory = identity.map_or(&[][..], |i| &i.entities[..]);
        let mut roots = vec![principal, action];
        roots.extend(directory.iter().map(Entity::uid));
        let base_slices = || roots.iter().map(|root| self.slice(stored, root));
        let base = self.bases.get_or_build(
            &roots[0],
            &roots[1],
            stored.generation,
            identity.map_or(0, |i| i.stamp),
            || merge(base_slices(), directory, Vec::new(), None, true),
        )?;
        let others: Vec<Arc<[Entity]>> = others.iter().map(|r| self.slice(stored, r)).collect();
        let adds_nothing = others
            .iter()
            .flat_map(|slice| slice.iter())
            .all(|entity| base.get(&entity.uid()).is_some());
        if adds_nothing {
            return Ok(base);
        }
        let slices = base_slices().chain(others);
        merge(slices, directory, Vec::new(), None, true).map(Arc::new)
    }

    fn slice(&self, stored: &EntitySnapshot, root: &EntityUid) -> Arc<[Entity]> {
        self.slices
            .get_or_compute(root, stored.generation, || stored.closure(root))
            .0
    }

    /// The uids of the stored entities a request's decision could read:
    /// its principal, action and resource with what they reach, or the
    /// entities it brought along.
    pub fn entities_used(&self, req: &DecisionRequest) -> Vec<String> {
        let mut uids: Vec<String> = match &req.entities {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|e| {
                    let uid = e.get("uid")?;
                    let input = UidInput::Typed {
                        type_name: uid.get("type")?.as_str()?.to_owned(),
                        id: uid.get("id")?.as_str()?.to_owned(),
                    };
                    parse_uid(&input).ok().map(|u| u.to_string())
                })
                .collect(),
            _ => {
                let stored = self.entities();
                [&req.principal, &req.action, &req.resource]
                    .into_iter()
                    .flatten()
                    .filter_map(|input| parse_uid(input).ok())
                    .flat_map(|root| stored.closure(&root))
                    .map(|entity| entity.uid().to_string())
                    .collect()
            }
        };
        uids.sort_unstable();
        uids.dedup();
        uids
    }

    /// Whether the built-in admin policies let `principal` (described by
    /// `entities`) do `action` (`admin` or `read`) on `Portcullis::Api::"<area>"`.
    pub fn admin_allowed(
        &self,
        entities: Vec<Entity>,
        principal: EntityUid,
        action: &str,
        area: &str,
    ) -> bool {
        let (Ok(action), Ok(resource)) = (
            format!("Portcullis::Action::{action:?}").parse::<EntityUid>(),
            format!("Portcullis::Api::{area:?}").parse::<EntityUid>(),
        ) else {
            return false;
        };
        let Ok(request) = Request::new(principal, action, resource, Context::empty(), None) else {
            return false;
        };
        let Ok(entities) = Entities::from_entities(entities, None) else {
            return false;
        };
        let policies = self.policies();
        self.authorizer
            .is_authorized(&request, &policies.admin, &entities)
            .decision()
            == Decision::Allow
    }

    /// The single call into Cedar's authorizer for application decisions,
    /// over the policies whose scope can match (see `index.rs`).
    pub fn is_authorized(
        &self,
        request: &Request,
        policies: &PolicySnapshot,
        entities: &Entities,
    ) -> Response {
        match (request.principal(), request.action(), request.resource()) {
            (Some(p), Some(a), Some(r)) => {
                let slice = policies.index.slice(&policies.app, entities, p, a, r);
                self.authorizer
                    .is_authorized(request, slice.set(), entities)
            }
            _ => self
                .authorizer
                .is_authorized(request, &policies.app, entities),
        }
    }
}

fn request_invalid(e: cedar_policy::RequestValidationError) -> AuthzError {
    use cedar_policy::RequestValidationError as E;
    let code = match &e {
        E::UndeclaredAction(_) => "UNKNOWN_ACTION",
        E::UndeclaredPrincipalType(_) | E::UndeclaredResourceType(_) => "UNKNOWN_ENTITY_TYPE",
        E::InvalidContext(_) | E::TypeOfContext(_) => "CONTEXT_INVALID",
        _ => "REQUEST_INVALID",
    };
    AuthzError::RequestInvalid {
        code,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
