//! Properties over random policy sets: adding a `forbid` policy never grows
//! the set of allowed (principal, model, context) triples, whatever permits
//! are in force; and the engine's sliced evaluation decides exactly as
//! evaluating the whole set does.

// Helpers outside `#[test]` functions unwrap too: in a test, a failed
// unwrap is a failed test with its message, which is what we want.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::collections::BTreeSet;

use portcullis_policy::{
    Action, PolicyEngine, PolicySource, PrincipalRef, RequestContext, compile,
};
use proptest::prelude::*;
use proptest::sample::select;

const COUNTRIES: [&str; 6] = ["US", "CN", "IR", "FR", "SY", "UA"];
const TAGS: [&str; 3] = ["fail_closed", "us_persons_only", "other"];
const STATES: [&str; 3] = ["released", "internal", "under_review"];
const SCREENINGS: [&str; 4] = ["clear", "unscreened", "potential_match", "confirmed_match"];

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal.us_person".to_owned()),
        Just("principal.verified".to_owned()),
        Just("principal.employee".to_owned()),
        Just("principal.active".to_owned()),
        Just("context.location_known".to_owned()),
        Just(
            "(context has client_ip && context.client_ip.isInRange(ip(\"10.0.0.0/8\")))".to_owned()
        ),
        Just("(context has subdivision && context.subdivision == \"UA-43\")".to_owned()),
        Just("(principal has organization && principal.organization.is_operator)".to_owned()),
        Just(
            "(principal has residence_country && principal.residence_country == \"US\")".to_owned()
        ),
        select(&SCREENINGS[..]).prop_map(|s| format!("principal.screening == \"{s}\"")),
        select(&COUNTRIES[..])
            .prop_map(|c| format!("principal.attributed_countries.contains(\"{c}\")")),
        select(&COUNTRIES[..])
            .prop_map(|c| format!("(context has country && context.country == \"{c}\")")),
        select(&TAGS[..]).prop_map(|t| format!("resource.tags.contains(\"{t}\")")),
        select(&STATES[..]).prop_map(|s| format!("resource.state == \"{s}\"")),
        (0i64..4).prop_map(|n| format!("principal.assurance_level >= {n}")),
        Just("context.time > datetime(\"2026-11-01T00:00:00Z\")".to_owned()),
    ]
}

/// A condition, sometimes led by resource-only tests so that per-model
/// pruning is exercised.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        inner_condition(),
        (resource_atom(), inner_condition()).prop_map(|(r, c)| format!("{r} && {c}")),
        (resource_atom(), resource_atom(), inner_condition())
            .prop_map(|(r, s, c)| format!("{r} && {s} && ({c})")),
    ]
}

fn resource_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&TAGS[..]).prop_map(|t| format!("resource.tags.contains(\"{t}\")")),
        select(&TAGS[..]).prop_map(|t| format!("!resource.tags.contains(\"{t}\")")),
        select(&STATES[..]).prop_map(|s| format!("resource.state == \"{s}\"")),
        Just(
            "(resource has safeguard_profile && resource.safeguard_profile == \"cyber\")"
                .to_owned()
        ),
    ]
}

fn inner_condition() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal, action, resource".to_owned()),
        select(vec!["alice", "bruno", "lee", "emeka"])
            .prop_map(|p| format!("principal == Portcullis::Principal::\"{p}\", action, resource")),
        select(vec!["frontier", "haiku"]).prop_map(|f| format!(
            "principal, action, resource in Portcullis::ModelFamily::\"{f}\""
        )),
        Just("principal, action == Portcullis::Action::\"invoke\", resource".to_owned()),
        Just("principal in Portcullis::Organization::\"acme\", action, resource".to_owned()),
    ]
}

fn policy(effect: &str, id: String, status: &str, scope: &str, condition: &str) -> String {
    clause_policy(effect, id, status, scope, "when", condition)
}

fn clause_policy(
    effect: &str,
    id: String,
    status: &str,
    scope: &str,
    clause: &str,
    condition: &str,
) -> String {
    format!(
        "@id(\"{id}\")\n@status(\"{status}\")\n{effect} ({scope})\n{clause} {{ {condition} }};\n"
    )
}

fn contexts() -> [RequestContext; 4] {
    let now = common::demo_now();
    [
        RequestContext::at(now)
            .with_location(Some("US"), None)
            .unwrap(),
        RequestContext::at(now),
        RequestContext::at(now)
            .with_location(Some("IR"), None)
            .unwrap(),
        RequestContext::at(now)
            .with_location(Some("UA"), Some("UA-43"))
            .unwrap()
            .with_client_ip("10.1.2.3".parse().unwrap()),
    ]
}

fn allowed_set(engine: &PolicyEngine) -> BTreeSet<(String, String, usize)> {
    let contexts = contexts();
    let mut allowed = BTreeSet::new();
    for principal in engine.principal_ids() {
        for model in engine.models() {
            for (index, context) in contexts.iter().enumerate() {
                let decision = engine
                    .decide(
                        PrincipalRef::Id(principal),
                        &model.name,
                        Action::Invoke,
                        context,
                    )
                    .unwrap();
                if decision.allowed {
                    allowed.insert((principal.to_owned(), model.name.clone(), index));
                }
            }
        }
    }
    allowed
}

fn engine_with(extra: &[String]) -> Result<PolicyEngine, String> {
    let mut sources = vec![PolicySource::default_pack()];
    sources.push(PolicySource::new("extra.cedar", extra.concat()));
    let compiled = compile(&sources, &common::schema()).map_err(|error| error.to_string())?;
    portcullis_policy::PolicyEngine::build(common::inputs("ear", compiled, vec![]))
        .map_err(|error| error.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_forbid_never_grows_the_allowed_set(
        permits in prop::collection::vec((scope(), condition()), 0..3),
        forbid in (scope(), condition(), select(vec!["legal", "ordinary"])),
    ) {
        let base: Vec<String> = permits
            .iter()
            .enumerate()
            .map(|(index, (scope, condition))| {
                policy("permit", format!("extra_permit_{index}"), "ordinary", scope, condition)
            })
            .collect();
        let before_engine = engine_with(&base).unwrap();
        let mut with_forbid = base.clone();
        with_forbid.push(policy("forbid", "extra_forbid".into(), forbid.2, &forbid.0, &forbid.1));
        let after_engine = engine_with(&with_forbid).unwrap();

        let before = allowed_set(&before_engine);
        let after = allowed_set(&after_engine);
        let grown: Vec<_> = after.difference(&before).collect();
        prop_assert!(grown.is_empty(), "forbid {:?} allowed {:?}", forbid, grown);
    }

    #[test]
    fn slices_decide_exactly_as_the_whole_set(
        policies in prop::collection::vec(
            (
                scope(),
                condition(),
                select(vec!["permit", "forbid"]),
                select(vec!["legal", "ordinary"]),
                select(vec!["when", "unless"]),
            ),
            1..6,
        ),
    ) {
        let texts: Vec<String> = policies
            .iter()
            .enumerate()
            .map(|(index, (scope, condition, effect, status, clause))| {
                clause_policy(effect, format!("random_{index}"), status, scope, clause, condition)
            })
            .collect();
        let engine = engine_with(&texts).unwrap();
        for (principal, model, context) in requests(&engine) {
            for action in [Action::Invoke, Action::ListModels] {
                let sliced = engine.decide(PrincipalRef::Id(&principal), &model, action, &context).unwrap();
                let whole = engine.decide_unsliced(&principal, &model, action, &context).unwrap();
                prop_assert_eq!(&sliced, &whole, "{} {} {:?} {:?}", principal, model, action, texts);
            }
        }
    }
}

fn requests(engine: &PolicyEngine) -> Vec<(String, String, RequestContext)> {
    let mut requests = Vec::new();
    for principal in engine.principal_ids() {
        for model in engine.models() {
            for context in contexts() {
                requests.push((principal.to_owned(), model.name.clone(), context));
            }
        }
    }
    requests
}
