//! Engine construction and time: verdicts that change after the snapshot
//! was built, documents refused at build, operator embargo additions,
//! custom profiles, and fail-closed handling of erroring forbids.

// Helpers outside `#[test]` functions unwrap too: in a test, a failed
// unwrap is a failed test with its message, which is what we want.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::panic)]

use crate::common;

use jiff::Timestamp;
use portcullis_domain::PrincipalAttributes;
use portcullis_policy::{
    Action, CustomProfileConfig, DecideError, EmbargoConfig, EmbargoList, EmbargoPack, EngineError,
    PolicyEngine, PolicySource, PrincipalRef, ProfileRegistry, RequestContext, compile,
};
use serde_json::json;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn us_context(time: &str) -> RequestContext {
    RequestContext::at(at(time))
        .with_location(Some("US"), None)
        .unwrap()
}

fn citizen(id: &str, verified_at: &str, expires_at: &str) -> PrincipalAttributes {
    serde_json::from_value(json!({
        "id": id, "organization": "acme", "screening": "clear",
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                             "time": verified_at, "expires_at": expires_at},
            "claims": {"nationalities": ["US"], "us_person_basis": "citizen"}}}))
    .unwrap()
}

fn status(engine: &PolicyEngine, principal: &str, model: &str, time: &str) -> (u16, Vec<String>) {
    let decision = engine
        .decide(
            PrincipalRef::Id(principal),
            model,
            Action::Invoke,
            &us_context(time),
        )
        .unwrap();
    (decision.status, decision.reasons)
}

#[test]
fn verdicts_follow_the_decision_time_not_the_build_time() {
    let mut inputs = common::inputs("ear", common::default_policies(), vec![]);
    // Built on 2026-11-20: `expiring` is verified then and expires on
    // 2026-12-01; `pending` is verified only from 2026-12-01.
    inputs.principals.push(citizen(
        "expiring",
        "2026-01-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    ));
    inputs.principals.push(citizen(
        "pending",
        "2026-12-01T00:00:00Z",
        "2027-12-01T00:00:00Z",
    ));
    let engine = PolicyEngine::build(inputs).unwrap();
    let allow = (200, vec!["released_model_access".to_owned()]);
    let us_only = (451, vec!["us_persons_only".to_owned()]);
    let cases = [
        ("expiring", "2026-11-20T12:00:00Z", &allow),
        ("expiring", "2026-11-30T23:59:59Z", &allow),
        ("expiring", "2026-12-01T00:00:00Z", &us_only),
        ("expiring", "2027-01-01T00:00:00Z", &us_only),
        ("pending", "2026-11-20T12:00:00Z", &us_only),
        ("pending", "2026-12-01T00:00:00Z", &allow),
    ];
    for (principal, time, expected) in cases {
        assert_eq!(
            &status(&engine, principal, "sentinel", time),
            expected,
            "{principal} at {time}"
        );
    }
}

#[test]
fn invalid_documents_are_left_out_and_reported() {
    let mut inputs = common::inputs("ear", common::default_policies(), vec![]);
    let mut bad = citizen("badcode", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    if let Some(verified) = bad.verified_claims.as_mut() {
        verified.claims.residence_country = Some("ZZ".into());
    }
    inputs.principals.push(bad);
    let engine = PolicyEngine::build(inputs).unwrap();
    let rejected: Vec<String> = engine
        .rejected_principals()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        rejected,
        [
            "principal `badcode`: invalid principal attribute `verified_claims.claims.residence_country`: unknown country code `ZZ`"
        ]
    );
    let decision = engine.decide(
        PrincipalRef::Id("badcode"),
        "haiku",
        Action::Invoke,
        &us_context("2026-11-20T12:00:00Z"),
    );
    assert_eq!(
        decision,
        Err(DecideError::UnknownPrincipal("badcode".into()))
    );
}

#[test]
fn build_refusals() {
    let mut duplicate = common::inputs("ear", common::default_policies(), vec![]);
    duplicate.principals.push(common::principal("alice"));
    assert_eq!(
        PolicyEngine::build(duplicate).unwrap_err(),
        EngineError::DuplicatePrincipal("alice".into())
    );
    let unknown_profile = common::inputs("gdpr", common::default_policies(), vec![]);
    assert_eq!(
        PolicyEngine::build(unknown_profile)
            .unwrap_err()
            .to_string(),
        "unknown definition profile `gdpr`"
    );
    let mut bad_order = common::bis_order();
    bad_order.principals = portcullis_policy::PrincipalScope::ForeignPersonsUnder {
        foreign_persons_under: "gdpr".into(),
    };
    let with_bad_order = common::inputs("ear", common::default_policies(), vec![bad_order]);
    assert_eq!(
        PolicyEngine::build(with_bad_order).unwrap_err().to_string(),
        "order `BIS-2026-0521`: unknown definition profile `gdpr`"
    );
}

#[test]
fn operator_embargo_additions_apply() {
    let mut inputs = common::inputs("ear", common::default_policies(), vec![]);
    inputs.embargo = EmbargoList::new(
        &EmbargoPack::default_pack().unwrap(),
        &EmbargoConfig {
            add_countries: vec!["RU".into(), "BLR".into()],
            add_subdivisions: vec![],
        },
    )
    .unwrap();
    let engine = PolicyEngine::build(inputs).unwrap();
    for country in ["RU", "BY"] {
        let context = RequestContext::at(common::demo_now())
            .with_location(Some(country), None)
            .unwrap();
        let decision = engine
            .decide(PrincipalRef::Id("alice"), "haiku", Action::Invoke, &context)
            .unwrap();
        assert_eq!(
            (decision.status, decision.reasons),
            (451, vec!["embargoed_location".to_owned()]),
            "{country}"
        );
    }
}

#[test]
fn a_custom_profile_is_what_policies_see() {
    let config: CustomProfileConfig = serde_json::from_value(json!({
        "us_person_bases": ["citizen"], "country_attribution": "all_current_and_former",
        "minimum_assurance": "ial3"
    }))
    .unwrap();
    let mut inputs = common::inputs("strict_counsel", common::default_policies(), vec![]);
    inputs.profiles = ProfileRegistry::with_custom([("strict_counsel", &config)]).unwrap();
    let engine = PolicyEngine::build(inputs).unwrap();
    // alice is verified at ial2 only, which this profile does not count.
    let decision = engine
        .decide(
            PrincipalRef::Id("alice"),
            "sentinel",
            Action::Invoke,
            &us_context("2026-11-20T12:00:00Z"),
        )
        .unwrap();
    assert_eq!(
        (decision.status, decision.reasons.as_slice()),
        (451, &["us_persons_only".to_owned()][..])
    );
    assert_eq!(decision.profile, "strict_counsel");
}

#[test]
fn a_forbid_that_errors_denies() {
    // Strict validation cannot see integer overflow. Cedar skips a policy
    // whose evaluation errors, which for a forbid would fail open; the
    // engine counts it as matched.
    let overflowing = PolicySource::new(
        "overflow.cedar",
        "@id(\"overflowing_forbid\")\n@status(\"legal\")\nforbid (principal, action, resource)\nwhen { principal.assurance_level + 9223372036854775807 < 0 };\n",
    );
    let compiled = compile(
        &[PolicySource::default_pack(), overflowing],
        &common::schema(),
    )
    .unwrap();
    let engine = PolicyEngine::build(common::inputs("ear", compiled, vec![])).unwrap();
    // alice has assurance 2, so the sum overflows: deny.
    assert_eq!(
        status(&engine, "alice", "haiku", "2026-11-20T12:00:00Z"),
        (451, vec!["overflowing_forbid".to_owned()])
    );
    // lee has assurance 0: no overflow, the condition is false: allow.
    assert_eq!(
        status(&engine, "lee", "haiku", "2026-11-20T12:00:00Z"),
        (200, vec!["released_model_access".to_owned()])
    );
}

#[test]
fn client_ip_reaches_policies() {
    let office_only = PolicySource::new(
        "network.cedar",
        "@id(\"office_network_only\")\n@status(\"ordinary\")\nforbid (principal, action, resource in Portcullis::ModelFamily::\"frontier\")\nunless { context has client_ip && context.client_ip.isInRange(ip(\"10.0.0.0/8\")) };\n",
    );
    let compiled = compile(
        &[PolicySource::default_pack(), office_only],
        &common::schema(),
    )
    .unwrap();
    let engine = PolicyEngine::build(common::inputs("ear", compiled, vec![])).unwrap();
    let cases = [
        (Some("10.1.2.3"), 200),
        (Some("192.0.2.1"), 403),
        (None, 403),
    ];
    for (client_ip, expected) in cases {
        let mut context = us_context("2026-11-20T12:00:00Z");
        if let Some(client_ip) = client_ip {
            context = context.with_client_ip(client_ip.parse().unwrap());
        }
        let decision = engine
            .decide(PrincipalRef::Id("alice"), "fable", Action::Invoke, &context)
            .unwrap();
        assert_eq!(decision.status, expected, "{client_ip:?}");
    }
}
