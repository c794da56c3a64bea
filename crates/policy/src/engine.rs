//! The decision engine: one immutable value per snapshot that answers "may
//! this principal do this to this model, here and now".
//!
//! Everything that does not depend on the request is computed when the
//! engine is built: the compiled policy set, and one Cedar entity store
//! holding every principal (as the active profile sees it), organization,
//! model, model family and the embargoed destination list. Per request only
//! the Cedar context is built and the authorizer runs.
//!
//! A principal's profile verdict changes with time only when its
//! verification starts or stops counting. The store holds the verdict at
//! build time together with the window it is valid for; a request decided
//! outside that window (an expiry passed since the snapshot was built, or a
//! `policy eval` case with an explicit time) takes a slower path that
//! evaluates the profile at the decision time and builds a small entity
//! store for that one request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cedar_policy::{
    AuthorizationError, Authorizer, Decision as CedarDecision, Effect, Entities, Entity, EntityUid,
    PolicyId, PolicySet, Request, Response,
};
use jiff::Timestamp;
use portcullis_domain::{Model, PrincipalAttributes};

use crate::attributes::{AttributeError, validate_attributes};
use crate::context::{ContextNeeds, RequestContext};
use crate::embargo::EmbargoList;
use crate::entities::{
    ACTION_TYPE, MODEL_FAMILY_TYPE, MODEL_TYPE, PRINCIPAL_TYPE, destination_list_entity,
    model_entity, model_family_entity, organization_entity, principal_entity, uid,
};
use crate::orders::{Order, OrderError};
use crate::policies::{CompiledPolicies, NO_PERMIT_REASON, RuleStatus};
use crate::profile::{DefinitionProfile, ProfileError, ProfileRegistry, VerificationWindow};
use crate::slices::{PolicySlice, ResourceTests};

/// The Cedar actions a principal can take on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send a request to the model.
    Invoke,
    /// See the model in `GET /v1/models`.
    ListModels,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Invoke => "invoke",
            Action::ListModels => "list_models",
        }
    }
}

/// Who a decision is about: a principal in the snapshot, or an attribute
/// document supplied with the request (a JWT's mapped claims, a `policy
/// eval` case). A document is validated before use.
#[derive(Debug, Clone, Copy)]
pub enum PrincipalRef<'a> {
    Id(&'a str),
    Attributes(&'a PrincipalAttributes),
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// 200, 403 (ordinary) or 451 (legal). 451 wins when both kinds deny.
    pub status: u16,
    /// The `@id`s (and order references) that decided it: the permits for an
    /// allow; for a denial, order references first, then legal rule ids,
    /// then ordinary ones, each group sorted; `no_permit` when nothing
    /// permitted and nothing forbade.
    pub reasons: Vec<String>,
    /// How many of the leading `reasons` are legal (order references and
    /// rules declared legal); the rest are ordinary rules.
    pub legal_reason_count: usize,
    /// The definition profile the decision was made under.
    pub profile: String,
}

impl Decision {
    /// The message a client sees for a denial, naming the deciding rule ids
    /// and never the principal's attributes. `None` for an allow.
    pub fn denial_message(&self, model_name: &str) -> Option<String> {
        if self.allowed {
            return None;
        }
        let quoted = |reasons: &[String]| {
            reasons
                .iter()
                .map(|reason| format!("`{reason}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = quoted(&self.reasons);
        Some(if self.status == 451 {
            // Only legal grounds are named as legal; ordinary rules that also
            // deny are listed apart, so a client never reads an internal
            // rule as a legal restriction.
            let legal_count = self.legal_reason_count.min(self.reasons.len());
            let (legal, ordinary) = self.reasons.split_at(legal_count);
            let mut message = format!(
                "access to model `{model_name}` is unavailable for legal reasons: {}",
                quoted(legal)
            );
            if !ordinary.is_empty() {
                message.push_str(&format!("; also denied by policy: {}", quoted(ordinary)));
            }
            message
        } else if self.reasons.iter().any(|reason| reason == NO_PERMIT_REASON) {
            format!("no policy permits access to model `{model_name}`: {rules}")
        } else {
            format!("access to model `{model_name}` is denied by policy: {rules}")
        })
    }
}

/// Why a decision could not be made. Each of these is a denial for the
/// caller; none is ever turned into an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("unknown principal `{0}`")]
    UnknownPrincipal(String),
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error(transparent)]
    InvalidAttributes(#[from] AttributeError),
    #[error("cannot build the policy request: {0}")]
    Request(String),
}

/// Why an engine could not be built. The caller keeps its current engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("model `{0}` is declared twice")]
    DuplicateModel(String),
    #[error("principal `{0}` is declared twice")]
    DuplicatePrincipal(String),
    #[error("operator organization must not be empty")]
    EmptyOperatorOrganization,
    #[error("cannot build policy entities: {0}")]
    Entities(String),
}

/// A principal document left out of a snapshot, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal `{principal_id}`: {error}")]
pub struct RejectedPrincipal {
    pub principal_id: String,
    #[source]
    pub error: AttributeError,
}

/// Everything an engine is built from: one snapshot's worth of state.
#[derive(Debug, Clone)]
pub struct EngineInputs {
    pub policies: CompiledPolicies,
    pub models: Vec<Model>,
    pub principals: Vec<PrincipalAttributes>,
    /// Orders in force or scheduled; lifted orders are left out.
    pub orders: Vec<Order>,
    pub operator_organization: String,
    /// The name of the active definition profile in `profiles`.
    pub active_profile: String,
    pub profiles: ProfileRegistry,
    pub embargo: EmbargoList,
    /// The instant the profile verdicts in the entity store are computed for;
    /// normally the snapshot's build time.
    pub built_at: Timestamp,
}

#[derive(Clone)]
struct PrincipalEntry {
    attributes: PrincipalAttributes,
    uid: EntityUid,
    /// When the verification counts under the active profile, if ever.
    verification_window: Option<VerificationWindow>,
    /// Whether the entity in the shared store was built as verified.
    verified_in_store: bool,
}

impl PrincipalEntry {
    /// Whether the shared entity store describes this principal correctly
    /// at `at`.
    fn store_is_current_at(&self, at: Timestamp) -> bool {
        self.verification_window
            .is_some_and(|window| window.contains(at))
            == self.verified_in_store
    }
}

#[derive(Clone)]
struct ModelEntry {
    model: Model,
    uid: EntityUid,
    family_uid: EntityUid,
    entity: Entity,
    family_entity: Entity,
    /// The policies that can apply to this model, for `invoke` and for
    /// `list_models`.
    slices: [PolicySlice; 2],
}

/// What Cedar said across the slices evaluated for one request.
#[derive(Debug, Default)]
struct CedarOutcome {
    satisfied_permits: Vec<PolicyId>,
    satisfied_forbids: Vec<PolicyId>,
    erroring: Vec<PolicyId>,
}

impl CedarOutcome {
    /// Adds one slice's response. On a deny Cedar reports the satisfied
    /// forbids (none when nothing permitted); on an allow, the satisfied
    /// permits. A slice's permits are not needed when it has a forbid: the
    /// request is denied either way.
    fn absorb(&mut self, response: &Response) {
        let diagnostics = response.diagnostics();
        let reasons = diagnostics.reason().cloned();
        if response.decision() == CedarDecision::Allow {
            self.satisfied_permits.extend(reasons);
        } else {
            self.satisfied_forbids.extend(reasons);
        }
        for error in diagnostics.errors() {
            let AuthorizationError::PolicyEvaluationError(error) = error;
            self.erroring.push(error.policy_id().clone());
        }
    }
}

/// A compiled, immutable decision engine for one snapshot.
pub struct PolicyEngine {
    policies: CompiledPolicies,
    authorizer: Authorizer,
    entities: Arc<Entities>,
    principals: HashMap<String, PrincipalEntry>,
    models: HashMap<String, ModelEntry>,
    model_order: Vec<String>,
    organizations: HashMap<String, Entity>,
    destination_list: Entity,
    action_uids: [EntityUid; 2],
    orders: Vec<Order>,
    operator_organization: String,
    profile: DefinitionProfile,
    profiles: ProfileRegistry,
    embargo: EmbargoList,
    rejected_principals: Vec<RejectedPrincipal>,
    built_at: Timestamp,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PolicyEngine")
            .field("policies", &self.policies.len())
            .field("principals", &self.principals.len())
            .field("models", &self.model_order)
            .field("orders", &self.orders.len())
            .field("profile", &self.profile.name())
            .field("built_at", &self.built_at)
            .finish()
    }
}

impl PolicyEngine {
    /// Builds the engine. Principals whose attributes do not validate are
    /// left out (so they are denied as unknown) and listed in
    /// [`Self::rejected_principals`]: one bad document must not stop every
    /// other change from taking effect.
    pub fn build(inputs: EngineInputs) -> Result<Self, EngineError> {
        let EngineInputs {
            policies,
            models,
            principals,
            orders,
            operator_organization,
            active_profile,
            profiles,
            embargo,
            built_at,
        } = inputs;
        if operator_organization.trim().is_empty() {
            return Err(EngineError::EmptyOperatorOrganization);
        }
        let profile = profiles.get(&active_profile)?.clone();
        for order in &orders {
            order.validate(&profiles)?;
        }
        let entity_error = EngineError::Entities;

        let mut organizations: BTreeMap<String, Entity> = BTreeMap::new();
        organizations.insert(
            operator_organization.clone(),
            organization_entity(&operator_organization, true).map_err(entity_error)?,
        );

        let mut principal_entries = HashMap::with_capacity(principals.len());
        let mut principal_entities = Vec::with_capacity(principals.len());
        let mut rejected_principals = Vec::new();
        for raw in principals {
            let attributes = match validate_attributes(&raw) {
                Ok(attributes) => attributes,
                Err(error) => {
                    rejected_principals.push(RejectedPrincipal {
                        principal_id: raw.id.clone(),
                        error,
                    });
                    continue;
                }
            };
            if principal_entries.contains_key(&attributes.id) {
                return Err(EngineError::DuplicatePrincipal(attributes.id));
            }
            if let Some(organization) = &attributes.organization
                && !organizations.contains_key(organization)
            {
                let is_operator = *organization == operator_organization;
                organizations.insert(
                    organization.clone(),
                    organization_entity(organization, is_operator).map_err(entity_error)?,
                );
            }
            let principal_uid = uid(PRINCIPAL_TYPE, &attributes.id).map_err(entity_error)?;
            let facts = profile.evaluate(&attributes, built_at);
            principal_entities.push(
                principal_entity(principal_uid.clone(), &attributes, &facts, profile.name())
                    .map_err(entity_error)?,
            );
            principal_entries.insert(
                attributes.id.clone(),
                PrincipalEntry {
                    verification_window: profile.verification_window(&attributes),
                    verified_in_store: facts.verified,
                    uid: principal_uid,
                    attributes,
                },
            );
        }

        let mut model_entries = HashMap::with_capacity(models.len());
        let mut model_order = Vec::with_capacity(models.len());
        let mut families: BTreeMap<String, Entity> = BTreeMap::new();
        for model in models {
            if model_entries.contains_key(&model.name) {
                return Err(EngineError::DuplicateModel(model.name));
            }
            let model_uid = uid(MODEL_TYPE, &model.name).map_err(entity_error)?;
            let family_uid = uid(MODEL_FAMILY_TYPE, &model.family).map_err(entity_error)?;
            let family_entity = model_family_entity(&model.family).map_err(entity_error)?;
            families
                .entry(model.family.clone())
                .or_insert_with(|| family_entity.clone());
            let entity = model_entity(model_uid.clone(), &model).map_err(entity_error)?;
            model_order.push(model.name.clone());
            model_entries.insert(
                model.name.clone(),
                ModelEntry {
                    model,
                    uid: model_uid,
                    family_uid,
                    entity,
                    family_entity,
                    slices: [PolicySlice::default(), PolicySlice::default()],
                },
            );
        }
        model_order.sort();
        let action_uids = [
            uid(ACTION_TYPE, Action::Invoke.as_str()).map_err(entity_error)?,
            uid(ACTION_TYPE, Action::ListModels.as_str()).map_err(entity_error)?,
        ];
        let resource_tests = ResourceTests::new(policies.policy_set());
        for entry in model_entries.values_mut() {
            entry.slices =
                slice_for_model(policies.policy_set(), &resource_tests, entry, &action_uids)
                    .map_err(EngineError::Entities)?;
        }

        let destination_list = destination_list_entity(&embargo).map_err(entity_error)?;
        let all_entities = principal_entities
            .into_iter()
            .chain(organizations.values().cloned())
            .chain(model_entries.values().map(|entry| entry.entity.clone()))
            .chain(families.into_values())
            .chain(std::iter::once(destination_list.clone()));
        let entities =
            Entities::from_entities(all_entities, Some(policies.schema().cedar_schema()))
                .map_err(|error| EngineError::Entities(error.to_string()))?;

        Ok(Self {
            policies,
            authorizer: Authorizer::new(),
            entities: Arc::new(entities),
            principals: principal_entries,
            models: model_entries,
            model_order,
            organizations: organizations.into_iter().collect(),
            destination_list,
            action_uids,
            orders,
            operator_organization,
            profile,
            profiles,
            embargo,
            rejected_principals,
            built_at,
        })
    }

    /// The same snapshot under a different policy set, sharing the entity
    /// store. Used to preview a proposed set.
    pub fn with_policies(&self, policies: CompiledPolicies) -> Result<Self, EngineError> {
        let mut models = self.models.clone();
        let resource_tests = ResourceTests::new(policies.policy_set());
        for entry in models.values_mut() {
            entry.slices = slice_for_model(
                policies.policy_set(),
                &resource_tests,
                entry,
                &self.action_uids,
            )
            .map_err(EngineError::Entities)?;
        }
        Ok(Self {
            policies,
            authorizer: Authorizer::new(),
            entities: Arc::clone(&self.entities),
            principals: self.principals.clone(),
            models,
            model_order: self.model_order.clone(),
            organizations: self.organizations.clone(),
            destination_list: self.destination_list.clone(),
            action_uids: self.action_uids.clone(),
            orders: self.orders.clone(),
            operator_organization: self.operator_organization.clone(),
            profile: self.profile.clone(),
            profiles: self.profiles.clone(),
            embargo: self.embargo.clone(),
            rejected_principals: self.rejected_principals.clone(),
            built_at: self.built_at,
        })
    }

    pub fn policies(&self) -> &CompiledPolicies {
        &self.policies
    }

    pub fn profile(&self) -> &DefinitionProfile {
        &self.profile
    }

    pub fn profiles(&self) -> &ProfileRegistry {
        &self.profiles
    }

    pub fn embargo(&self) -> &EmbargoList {
        &self.embargo
    }

    pub fn operator_organization(&self) -> &str {
        &self.operator_organization
    }

    pub fn orders(&self) -> &[Order] {
        &self.orders
    }

    pub fn built_at(&self) -> Timestamp {
        self.built_at
    }

    /// Principal documents left out of the snapshot because they did not
    /// validate.
    pub fn rejected_principals(&self) -> &[RejectedPrincipal] {
        &self.rejected_principals
    }

    /// Every model, sorted by name.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.model_order
            .iter()
            .filter_map(|name| self.models.get(name).map(|entry| &entry.model))
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.get(name).map(|entry| &entry.model)
    }

    /// Every principal id, sorted.
    pub fn principal_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.principals.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The normalised attributes of a principal in the snapshot.
    pub fn principal(&self, id: &str) -> Option<&PrincipalAttributes> {
        self.principals.get(id).map(|entry| &entry.attributes)
    }

    /// Decides one request.
    pub fn decide(
        &self,
        principal: PrincipalRef<'_>,
        model_name: &str,
        action: Action,
        context: &RequestContext,
    ) -> Result<Decision, DecideError> {
        let model = self
            .models
            .get(model_name)
            .ok_or_else(|| DecideError::UnknownModel(model_name.to_owned()))?;
        let at = context.decision_time();
        match principal {
            PrincipalRef::Id(id) => {
                let entry = self
                    .principals
                    .get(id)
                    .ok_or_else(|| DecideError::UnknownPrincipal(id.to_owned()))?;
                if entry.store_is_current_at(at) {
                    let outcome = self.authorize(
                        &entry.uid,
                        &entry.attributes,
                        model,
                        action,
                        context,
                        &self.entities,
                    )?;
                    Ok(self.conclude(&outcome, &entry.attributes, &model.model, at))
                } else {
                    self.decide_ad_hoc(&entry.attributes, model, action, context)
                }
            }
            PrincipalRef::Attributes(raw) => {
                let attributes = validate_attributes(raw)?;
                self.decide_ad_hoc(&attributes, model, action, context)
            }
        }
    }

    /// Decides one request by evaluating the whole policy set instead of the
    /// model's slices. It is the reference the sliced path must agree with,
    /// for tests and for checking a policy set by hand; it is several times
    /// slower and is not meant for the request path.
    pub fn decide_unsliced(
        &self,
        principal_id: &str,
        model_name: &str,
        action: Action,
        context: &RequestContext,
    ) -> Result<Decision, DecideError> {
        let model = self
            .models
            .get(model_name)
            .ok_or_else(|| DecideError::UnknownModel(model_name.to_owned()))?;
        let entry = self
            .principals
            .get(principal_id)
            .ok_or_else(|| DecideError::UnknownPrincipal(principal_id.to_owned()))?;
        let at = context.decision_time();
        let action_uid = match action {
            Action::Invoke => &self.action_uids[0],
            Action::ListModels => &self.action_uids[1],
        };
        let facts = self.profile.evaluate(&entry.attributes, at);
        let principal = principal_entity(
            entry.uid.clone(),
            &entry.attributes,
            &facts,
            self.profile.name(),
        )
        .map_err(DecideError::Request)?;
        let mut entities = vec![
            principal,
            model.entity.clone(),
            model.family_entity.clone(),
            self.destination_list.clone(),
        ];
        if let Some(organization) = entry
            .attributes
            .organization
            .as_ref()
            .and_then(|organization| self.organizations.get(organization))
        {
            entities.push(organization.clone());
        }
        let store = Entities::from_entities(entities, Some(self.policies.schema().cedar_schema()))
            .map_err(|error| DecideError::Request(error.to_string()))?;
        let request = Request::new(
            entry.uid.clone(),
            action_uid.clone(),
            model.uid.clone(),
            context
                .to_cedar(ContextNeeds::ALL)
                .map_err(DecideError::Request)?,
            None,
        )
        .map_err(|error| DecideError::Request(error.to_string()))?;
        let mut outcome = CedarOutcome::default();
        outcome.absorb(&self.authorizer.is_authorized(
            &request,
            self.policies.policy_set(),
            &store,
        ));
        Ok(self.conclude(&outcome, &entry.attributes, &model.model, at))
    }

    /// The models the principal may invoke and list, sorted by name. A model
    /// is listed only when both `list_models` and `invoke` are allowed, so
    /// the list never shows a model the caller cannot use.
    pub fn allowed_models(
        &self,
        principal: PrincipalRef<'_>,
        context: &RequestContext,
    ) -> Result<Vec<&Model>, DecideError> {
        let validated;
        let principal = match principal {
            PrincipalRef::Attributes(raw) => {
                validated = validate_attributes(raw)?;
                PrincipalRef::Attributes(&validated)
            }
            by_id => by_id,
        };
        let mut allowed = Vec::new();
        for name in &self.model_order {
            let listed = self.decide(principal, name, Action::ListModels, context)?;
            if listed.allowed
                && self
                    .decide(principal, name, Action::Invoke, context)?
                    .allowed
                && let Some(entry) = self.models.get(name)
            {
                allowed.push(&entry.model);
            }
        }
        Ok(allowed)
    }

    /// Decides for a principal whose entity is not (correctly) in the shared
    /// store: evaluates the profile at the decision time and builds a store
    /// holding only what this request can reach.
    fn decide_ad_hoc(
        &self,
        attributes: &PrincipalAttributes,
        model: &ModelEntry,
        action: Action,
        context: &RequestContext,
    ) -> Result<Decision, DecideError> {
        let at = context.decision_time();
        let request_error = DecideError::Request;
        let principal_uid = uid(PRINCIPAL_TYPE, &attributes.id).map_err(request_error)?;
        let facts = self.profile.evaluate(attributes, at);
        let mut entities = vec![
            principal_entity(
                principal_uid.clone(),
                attributes,
                &facts,
                self.profile.name(),
            )
            .map_err(request_error)?,
            model.entity.clone(),
            model.family_entity.clone(),
            self.destination_list.clone(),
        ];
        if let Some(organization) = &attributes.organization {
            let entity = match self.organizations.get(organization) {
                Some(entity) => entity.clone(),
                None => {
                    organization_entity(organization, *organization == self.operator_organization)
                        .map_err(request_error)?
                }
            };
            entities.push(entity);
        }
        let store = Entities::from_entities(entities, Some(self.policies.schema().cedar_schema()))
            .map_err(|error| DecideError::Request(error.to_string()))?;
        let outcome = self.authorize(&principal_uid, attributes, model, action, context, &store)?;
        Ok(self.conclude(&outcome, attributes, &model.model, at))
    }

    /// Runs Cedar over the slices that can apply to this request.
    fn authorize(
        &self,
        principal_uid: &EntityUid,
        attributes: &PrincipalAttributes,
        model: &ModelEntry,
        action: Action,
        context: &RequestContext,
        entities: &Entities,
    ) -> Result<CedarOutcome, DecideError> {
        let (action_uid, slice) = match action {
            Action::Invoke => (&self.action_uids[0], &model.slices[0]),
            Action::ListModels => (&self.action_uids[1], &model.slices[1]),
        };
        let cedar_context = context
            .to_cedar(slice.context_needs)
            .map_err(DecideError::Request)?;
        // The schema is not passed: the context is built by this crate in the
        // schema's shape, and validating it again per request costs time.
        let request = Request::new(
            principal_uid.clone(),
            action_uid.clone(),
            model.uid.clone(),
            cedar_context,
            None,
        )
        .map_err(|error| DecideError::Request(error.to_string()))?;
        let mut outcome = CedarOutcome::default();
        for policy_set in slice.sets_for(&attributes.id, attributes.organization.as_deref()) {
            outcome.absorb(
                &self
                    .authorizer
                    .is_authorized(&request, policy_set, entities),
            );
        }
        Ok(outcome)
    }

    /// Turns Cedar's answer and the orders in force into a decision.
    fn conclude(
        &self,
        outcome: &CedarOutcome,
        attributes: &PrincipalAttributes,
        model: &Model,
        at: Timestamp,
    ) -> Decision {
        let mut order_references: Vec<String> = Vec::new();
        let mut legal: Vec<String> = Vec::new();
        let mut ordinary: Vec<String> = Vec::new();
        let mut permits: Vec<String> = Vec::new();
        for policy_id in &outcome.satisfied_forbids {
            match self.policies.rule(policy_id) {
                Some(rule) => match rule.status {
                    RuleStatus::Legal => legal.push(rule.id.clone()),
                    RuleStatus::Ordinary => ordinary.push(rule.id.clone()),
                },
                // Every policy in a compiled set has a rule entry; an unknown
                // id is treated as a legal denial rather than ignored.
                None => legal.push(policy_id.to_string()),
            }
        }
        // Cedar skips a policy whose evaluation errors. For a forbid that
        // would fail open, so an erroring forbid denies as if it had matched.
        for policy_id in &outcome.erroring {
            if let Some(rule) = self.policies.rule(policy_id)
                && rule.effect == Effect::Forbid
            {
                match rule.status {
                    RuleStatus::Legal => legal.push(rule.id.clone()),
                    RuleStatus::Ordinary => ordinary.push(rule.id.clone()),
                }
            }
        }
        for policy_id in &outcome.satisfied_permits {
            permits.push(
                self.policies
                    .rule(policy_id)
                    .map_or_else(|| policy_id.to_string(), |rule| rule.id.clone()),
            );
        }
        let cedar_allowed = !permits.is_empty();
        for order in &self.orders {
            if order.denies(attributes, model, &self.profiles, at) {
                order_references.push(order.reference.clone());
            }
        }

        legal.sort_unstable();
        legal.dedup();
        ordinary.sort_unstable();
        ordinary.dedup();
        let profile = self.profile.name().to_owned();
        if !order_references.is_empty() || !legal.is_empty() {
            let mut reasons = order_references;
            reasons.extend(legal);
            let legal_reason_count = reasons.len();
            reasons.extend(ordinary);
            return Decision {
                allowed: false,
                status: RuleStatus::Legal.http_status(),
                reasons,
                legal_reason_count,
                profile,
            };
        }
        if !ordinary.is_empty() {
            return Decision {
                allowed: false,
                status: RuleStatus::Ordinary.http_status(),
                reasons: ordinary,
                legal_reason_count: 0,
                profile,
            };
        }
        if cedar_allowed {
            permits.sort_unstable();
            return Decision {
                allowed: true,
                status: 200,
                reasons: permits,
                legal_reason_count: 0,
                profile,
            };
        }
        Decision {
            allowed: false,
            status: RuleStatus::Ordinary.http_status(),
            reasons: vec![NO_PERMIT_REASON.to_owned()],
            legal_reason_count: 0,
            profile,
        }
    }
}

/// Slices `policies` for one model, for `invoke` and `list_models`.
fn slice_for_model(
    policies: &PolicySet,
    resource_tests: &ResourceTests,
    model: &ModelEntry,
    action_uids: &[EntityUid; 2],
) -> Result<[PolicySlice; 2], String> {
    let slice = |action_uid: &EntityUid| {
        let inapplicable = resource_tests.inapplicable_to(
            &model.uid,
            &model.entity,
            &model.family_entity,
            action_uid,
        );
        PolicySlice::new(
            policies,
            &model.uid,
            &model.family_uid,
            action_uid,
            &inapplicable,
        )
    };
    Ok([slice(&action_uids[0])?, slice(&action_uids[1])?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legal_denial_names_only_legal_grounds_as_legal() {
        let decision = Decision {
            allowed: false,
            status: 451,
            reasons: vec![
                "BIS-2026-0521".to_owned(),
                "embargoed_destination".to_owned(),
                "internal_model_outside_operator".to_owned(),
            ],
            legal_reason_count: 2,
            profile: "ear".to_owned(),
        };
        let message = decision.denial_message("mythos").unwrap();
        let (legal, ordinary) = message.split_once("; also denied by policy: ").unwrap();
        assert!(legal.ends_with("legal reasons: `BIS-2026-0521`, `embargoed_destination`"));
        assert!(!legal.contains("internal_model_outside_operator"));
        assert_eq!(ordinary, "`internal_model_outside_operator`");
    }

    #[test]
    fn an_ordinary_denial_is_not_called_legal() {
        let decision = Decision {
            allowed: false,
            status: 403,
            reasons: vec!["internal_model_outside_operator".to_owned()],
            legal_reason_count: 0,
            profile: "ear".to_owned(),
        };
        let message = decision.denial_message("mythos").unwrap();
        assert!(!message.contains("legal"), "{message}");
    }
}
