//! Policy slicing: the policies that can apply to one (model, action),
//! split by who their principal scope names.
//!
//! Cedar evaluates every policy it is given, and each costs about a
//! microsecond, scope mismatch or not. A policy whose scope cannot match a
//! request evaluates to false without error, so leaving it out changes
//! nothing but the time spent. Scopes are decided entirely by the snapshot's
//! shape: a model's only ancestor is its family, a principal's only ancestor
//! is its organization, and actions form no groups. So the slices are exact,
//! computed once per snapshot, and a request evaluates at most three small
//! sets: the generic one, its organization's and its own.
//!
//! A model's attributes are fixed for a snapshot too, so a policy whose
//! condition starts by testing only the resource (`when { resource.state ==
//! "internal" && … }`) is tried against each model once, at build: when that
//! leading test is false without error, the whole condition is false without
//! error for every request on that model, and the policy is left out of the
//! model's slices. Only a leading test is used, because Cedar evaluates
//! conditions left to right and a later conjunct never runs before an
//! earlier one could error. Policies get faster by testing the resource
//! first; the default pack does.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityUid, Policy, PolicyId,
    PolicySet, PrincipalConstraint, Request, ResourceConstraint,
};
use serde_json::{Value, json};

use crate::context::ContextNeeds;
use crate::entities::{MODEL_TYPE, ORGANIZATION_TYPE, PRINCIPAL_TYPE, uid};

/// Whom a policy's principal scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalScope {
    /// Every principal: `principal` or `principal is Principal`.
    Every,
    /// Members of one organization: `principal in Organization::"o"`.
    Organization(String),
    /// One principal: `principal == Principal::"p"` (or `in`).
    Principal(String),
    /// No principal can match (a scope naming another entity type).
    Nobody,
}

fn type_is(uid: &EntityUid, type_name: &str) -> bool {
    uid.type_name().to_string() == type_name
}

fn principal_scope_of_member_of(uid: &EntityUid) -> PrincipalScope {
    let id = uid.id().unescaped().to_owned();
    if type_is(uid, PRINCIPAL_TYPE) {
        PrincipalScope::Principal(id)
    } else if type_is(uid, ORGANIZATION_TYPE) {
        PrincipalScope::Organization(id)
    } else {
        PrincipalScope::Nobody
    }
}

fn principal_scope(policy: &Policy) -> PrincipalScope {
    match policy.principal_constraint() {
        PrincipalConstraint::Any => PrincipalScope::Every,
        PrincipalConstraint::Is(type_name) => {
            if type_name.to_string() == PRINCIPAL_TYPE {
                PrincipalScope::Every
            } else {
                PrincipalScope::Nobody
            }
        }
        PrincipalConstraint::Eq(uid) => {
            if type_is(&uid, PRINCIPAL_TYPE) {
                PrincipalScope::Principal(uid.id().unescaped().to_owned())
            } else {
                PrincipalScope::Nobody
            }
        }
        PrincipalConstraint::In(uid) => principal_scope_of_member_of(&uid),
        PrincipalConstraint::IsIn(type_name, uid) => {
            if type_name.to_string() == PRINCIPAL_TYPE {
                principal_scope_of_member_of(&uid)
            } else {
                PrincipalScope::Nobody
            }
        }
    }
}

fn action_matches(policy: &Policy, action: &EntityUid) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == *action,
        ActionConstraint::In(uids) => uids.contains(action),
    }
}

fn resource_matches(policy: &Policy, model: &EntityUid, family: &EntityUid) -> bool {
    let is_model_or_family = |uid: &EntityUid| uid == model || uid == family;
    match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Eq(uid) => uid == *model,
        ResourceConstraint::In(uid) => is_model_or_family(&uid),
        ResourceConstraint::Is(type_name) => type_name.to_string() == MODEL_TYPE,
        ResourceConstraint::IsIn(type_name, uid) => {
            type_name.to_string() == MODEL_TYPE && is_model_or_family(&uid)
        }
    }
}

/// The policies for one (model, action).
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicySlice {
    /// Policies whose principal scope covers everyone; `None` when empty.
    pub(crate) every_principal: Option<PolicySet>,
    /// Policies scoped to an organization's members, by organization.
    pub(crate) by_organization: HashMap<String, PolicySet>,
    /// Policies scoped to one principal, by principal id.
    pub(crate) by_principal: HashMap<String, PolicySet>,
    /// The context attributes any policy in the slice reads.
    pub(crate) context_needs: ContextNeeds,
}

impl PolicySlice {
    /// Slices `policies` for the model `model` in family `family` and the
    /// action `action`, leaving out `inapplicable` policies (see
    /// [`ResourceTests::inapplicable_to`]).
    pub(crate) fn new(
        policies: &PolicySet,
        model: &EntityUid,
        family: &EntityUid,
        action: &EntityUid,
        inapplicable: &HashSet<PolicyId>,
    ) -> Result<Self, String> {
        let mut every_principal = PolicySet::new();
        let mut by_organization: HashMap<String, PolicySet> = HashMap::new();
        let mut by_principal: HashMap<String, PolicySet> = HashMap::new();
        let mut context_needs = ContextNeeds::NONE;
        for policy in policies.policies() {
            if inapplicable.contains(policy.id())
                || !action_matches(policy, action)
                || !resource_matches(policy, model, family)
            {
                continue;
            }
            let target = match principal_scope(policy) {
                PrincipalScope::Every => &mut every_principal,
                PrincipalScope::Organization(organization) => {
                    by_organization.entry(organization).or_default()
                }
                PrincipalScope::Principal(principal) => by_principal.entry(principal).or_default(),
                PrincipalScope::Nobody => continue,
            };
            target
                .add(policy.clone())
                .map_err(|error| error.to_string())?;
            context_needs = context_needs.union(context_reads_of(policy));
        }
        let has_policies = every_principal.policies().next().is_some();
        Ok(Self {
            every_principal: has_policies.then_some(every_principal),
            by_organization,
            by_principal,
            context_needs,
        })
    }

    /// The sets to evaluate for a principal, at most three.
    pub(crate) fn sets_for<'a>(
        &'a self,
        principal_id: &str,
        organization: Option<&str>,
    ) -> impl Iterator<Item = &'a PolicySet> {
        self.every_principal
            .iter()
            .chain(organization.and_then(|organization| self.by_organization.get(organization)))
            .chain(self.by_principal.get(principal_id))
    }
}

/// The context attributes a policy's conditions read. A policy that uses
/// `context` other than through `.attr` or `has attr` reads everything.
fn context_reads_of(policy: &Policy) -> ContextNeeds {
    let Ok(json) = policy.to_json() else {
        return ContextNeeds::ALL;
    };
    let mut needs = ContextNeeds::NONE;
    if let Some(conditions) = json.get("conditions") {
        context_reads(conditions, &mut needs);
    }
    needs
}

fn context_reads(expression: &Value, needs: &mut ContextNeeds) {
    let context = json!({"Var": "context"});
    match expression {
        Value::Object(fields) => {
            for (key, value) in fields {
                if (key == "." || key == "has") && value.get("left") == Some(&context) {
                    match value.get("attr").and_then(Value::as_str) {
                        Some(attribute) => needs.read(attribute),
                        None => *needs = ContextNeeds::ALL,
                    }
                } else if key == "Var" && value.as_str() == Some("context") {
                    *needs = ContextNeeds::ALL;
                } else {
                    context_reads(value, needs);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                context_reads(item, needs);
            }
        }
        _ => {}
    }
}

/// The leading resource-only test of each policy's condition, ready to be
/// tried against each model.
pub(crate) struct ResourceTests {
    /// For each policy with such a test: whether the test is a `when` (the
    /// policy cannot apply when it is false) or an `unless` (cannot apply
    /// when it is true), and the test as a one-condition probe policy.
    tests: Vec<(PolicyId, bool, PolicySet)>,
}

impl ResourceTests {
    pub(crate) fn new(policies: &PolicySet) -> Self {
        let tests = policies
            .policies()
            .filter_map(|policy| {
                let (is_when, body) = leading_resource_test(policy)?;
                let probe = json!({
                    "effect": "permit",
                    "principal": {"op": "All"},
                    "action": {"op": "All"},
                    "resource": {"op": "All"},
                    "conditions": [{"kind": "when", "body": body}],
                });
                let probe = Policy::from_json(Some(PolicyId::new("probe")), probe).ok()?;
                let mut probe_set = PolicySet::new();
                probe_set.add(probe).ok()?;
                Some((policy.id().clone(), is_when, probe_set))
            })
            .collect();
        Self { tests }
    }

    /// The policies whose leading resource test rules them out for this
    /// model. A test that errors, or cannot be run, rules nothing out.
    pub(crate) fn inapplicable_to(
        &self,
        model_uid: &EntityUid,
        model: &Entity,
        family: &Entity,
        action: &EntityUid,
    ) -> HashSet<PolicyId> {
        let mut inapplicable = HashSet::new();
        if self.tests.is_empty() {
            return inapplicable;
        }
        let Ok(entities) = Entities::from_entities([model.clone(), family.clone()], None) else {
            return inapplicable;
        };
        let Ok(probe_principal) = uid(PRINCIPAL_TYPE, "resource-test-probe") else {
            return inapplicable;
        };
        let Ok(request) = Request::new(
            probe_principal,
            action.clone(),
            model_uid.clone(),
            Context::empty(),
            None,
        ) else {
            return inapplicable;
        };
        let authorizer = Authorizer::new();
        for (policy_id, is_when, probe) in &self.tests {
            let response = authorizer.is_authorized(&request, probe, &entities);
            if response.diagnostics().errors().next().is_some() {
                continue;
            }
            let test_holds = response.decision() == Decision::Allow;
            if test_holds != *is_when {
                inapplicable.insert(policy_id.clone());
            }
        }
        inapplicable
    }
}

/// The longest run of resource-only conjuncts at the start of the policy's
/// first condition, as an expression in Cedar's JSON policy format, with
/// whether that condition is a `when`. For an `unless`, the whole body must
/// be resource-only, since `!(a && b)` is not decided by `a` alone.
fn leading_resource_test(policy: &Policy) -> Option<(bool, Value)> {
    let json = policy.to_json().ok()?;
    let first = json.get("conditions")?.as_array()?.first()?;
    let is_when = first.get("kind")?.as_str()? == "when";
    let body = first.get("body")?;
    if !is_when {
        return resource_only(body).then(|| (false, body.clone()));
    }
    let mut conjuncts = Vec::new();
    flatten_conjunction(body, &mut conjuncts);
    let leading: Vec<&Value> = conjuncts
        .into_iter()
        .take_while(|conjunct| resource_only(conjunct))
        .collect();
    let mut leading = leading.into_iter();
    let first_conjunct = leading.next()?.clone();
    let test = leading.fold(
        first_conjunct,
        |left, right| json!({"&&": {"left": left, "right": right.clone()}}),
    );
    Some((true, test))
}

/// `a && b && c` parses as `(a && b) && c`; this lists `a`, `b`, `c` in the
/// order Cedar evaluates them.
fn flatten_conjunction<'a>(expression: &'a Value, conjuncts: &mut Vec<&'a Value>) {
    match expression.get("&&") {
        Some(and) => match (and.get("left"), and.get("right")) {
            (Some(left), Some(right)) => {
                flatten_conjunction(left, conjuncts);
                conjuncts.push(right);
            }
            _ => conjuncts.push(expression),
        },
        None => conjuncts.push(expression),
    }
}

/// Whether an expression reads nothing but `resource` and literals: no other
/// variable, no entity literal (which the per-request entity store might not
/// hold), no slot and no unknown.
fn resource_only(expression: &Value) -> bool {
    match expression {
        Value::Object(fields) => fields.iter().all(|(key, value)| match key.as_str() {
            "Var" => value.as_str() == Some("resource"),
            "__entity" | "Slot" | "unknown" | "entity" => false,
            _ => resource_only(value),
        }),
        Value::Array(items) => items.iter().all(resource_only),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn uid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap()
    }

    #[test]
    fn context_reads_table() {
        let cases: &[(&str, ContextNeeds)] = &[
            ("permit (principal, action, resource);", ContextNeeds::NONE),
            (
                "forbid (principal, action, resource) when { context has country && context.country == \"IR\" };",
                ContextNeeds {
                    country: true,
                    ..ContextNeeds::NONE
                },
            ),
            (
                "forbid (principal, action, resource) unless { context.time > datetime(\"2026-01-01\") || context[\"location_known\"] };",
                ContextNeeds {
                    time: true,
                    location_known: true,
                    ..ContextNeeds::NONE
                },
            ),
            (
                "forbid (principal, action, resource) when { context == {} };",
                ContextNeeds::ALL,
            ),
        ];
        for (text, expected) in cases {
            let policy = Policy::from_str(text).unwrap();
            assert_eq!(context_reads_of(&policy), *expected, "{text}");
        }
    }

    #[test]
    fn leading_resource_tests_rule_policies_out_per_model() {
        let text = r#"
            permit (principal, action, resource) when { resource.state == "internal" && principal.active };
            permit (principal, action, resource) when { principal.active && resource.state == "internal" };
            forbid (principal, action, resource) when { resource.tags.contains("fail_closed") && resource.state == "released" && context.location_known };
            forbid (principal, action, resource) unless { resource.tags.contains("fail_closed") };
            forbid (principal, action, resource) unless { resource.tags.contains("fail_closed") && principal.active };
            forbid (principal, action, resource) when { resource.state == "released" };
            forbid (principal, action, resource) when { resource.name == Portcullis::Model::"x".name };
            forbid (principal, action, resource) when { resource.safeguard_profile == "cyber" };
        "#;
        let policies = PolicySet::from_str(text).unwrap();
        let tests = ResourceTests::new(&policies);
        let model = |name: &str, state: &str, tags: &[&str]| {
            let model_uid = uid(&format!(r#"Portcullis::Model::"{name}""#));
            let family_uid = uid(r#"Portcullis::ModelFamily::"f""#);
            let attrs = HashMap::from([
                (
                    "name".to_owned(),
                    cedar_policy::RestrictedExpression::new_string(name.into()),
                ),
                (
                    "state".to_owned(),
                    cedar_policy::RestrictedExpression::new_string(state.into()),
                ),
                (
                    "tags".to_owned(),
                    cedar_policy::RestrictedExpression::new_set(
                        tags.iter()
                            .map(|t| cedar_policy::RestrictedExpression::new_string((*t).into())),
                    ),
                ),
            ]);
            let entity = Entity::new(
                model_uid.clone(),
                attrs,
                HashSet::from([family_uid.clone()]),
            )
            .unwrap();
            (
                model_uid,
                entity,
                Entity::new_no_attrs(family_uid, HashSet::new()),
            )
        };
        let invoke = uid(r#"Portcullis::Action::"invoke""#);
        let ruled_out = |name: &str, state: &str, tags: &[&str]| {
            let (model_uid, entity, family) = model(name, state, tags);
            let mut ids: Vec<String> = tests
                .inapplicable_to(&model_uid, &entity, &family, &invoke)
                .into_iter()
                .map(|id| id.to_string())
                .collect();
            ids.sort();
            ids
        };
        // policy1 tests the principal first, policy6 reads an entity
        // literal and policy7 reads an attribute the model lacks (an error):
        // none of them is ever ruled out.
        assert_eq!(ruled_out("haiku", "released", &[]), ["policy0", "policy2"]);
        assert_eq!(
            ruled_out("fable", "released", &["fail_closed"]),
            ["policy0", "policy3"]
        );
        assert_eq!(
            ruled_out("mythos", "internal", &["fail_closed"]),
            ["policy2", "policy3", "policy5"]
        );
    }

    fn ids(set: Option<&PolicySet>) -> Vec<String> {
        let mut ids: Vec<String> = set
            .map(|set| {
                set.policies()
                    .map(|policy| policy.id().to_string())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    #[test]
    fn scopes_sort_policies_into_the_right_slices() {
        let text = r#"
            permit (principal, action, resource);
            permit (principal is Portcullis::Principal, action, resource is Portcullis::Model);
            permit (principal == Portcullis::Principal::"alice", action, resource);
            permit (principal in Portcullis::Organization::"acme", action, resource);
            permit (principal is Portcullis::Principal in Portcullis::Organization::"lab", action, resource);
            permit (principal in Portcullis::Model::"fable", action, resource);
            permit (principal, action == Portcullis::Action::"list_models", resource);
            permit (principal, action in [Portcullis::Action::"invoke"], resource);
            permit (principal, action, resource == Portcullis::Model::"haiku");
            permit (principal, action, resource in Portcullis::ModelFamily::"frontier");
            permit (principal, action, resource in Portcullis::Model::"fable");
            permit (principal, action, resource is Portcullis::Model in Portcullis::ModelFamily::"haiku");
        "#;
        let policies = PolicySet::from_str(text).unwrap();
        let slice = PolicySlice::new(
            &policies,
            &uid(r#"Portcullis::Model::"fable""#),
            &uid(r#"Portcullis::ModelFamily::"frontier""#),
            &uid(r#"Portcullis::Action::"invoke""#),
            &HashSet::new(),
        )
        .unwrap();
        // Cedar names parsed policies policy0, policy1, … in source order.
        assert_eq!(
            ids(slice.every_principal.as_ref()),
            ["policy0", "policy1", "policy10", "policy7", "policy9"]
        );
        assert_eq!(ids(slice.by_principal.get("alice")), ["policy2"]);
        assert_eq!(ids(slice.by_organization.get("acme")), ["policy3"]);
        assert_eq!(ids(slice.by_organization.get("lab")), ["policy4"]);
        assert_eq!(slice.by_principal.len() + slice.by_organization.len(), 3);

        let chosen: Vec<Vec<String>> = slice
            .sets_for("alice", Some("acme"))
            .map(|set| ids(Some(set)))
            .collect();
        assert_eq!(chosen.len(), 3);
        assert_eq!(slice.sets_for("bob", None).count(), 1);
    }
}
