//! The compliance tools and policy loading, end to end over the demo story.

// Helpers outside `#[test]` functions unwrap too: in a test, a failed
// unwrap is a failed test with its message, which is what we want.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::panic)]

use crate::common;

use portcullis_policy::{
    PolicyError, PolicySource, RequestContext, compile, diff_policies, load_policy_dir, run_eval,
    who_can,
};

#[test]
fn policy_eval_follows_the_jsonl_contract() {
    let engine = common::engine("ear", vec![common::bis_order()]);
    let cases = common::read_fixture("eval_cases.jsonl");
    let mut output = Vec::new();
    // `now` is before the order took effect, so a case without a time is
    // decided as of then; cases with a time use their own.
    let summary = run_eval(&engine, cases.as_bytes(), &mut output, common::demo_now()).unwrap();
    let output = String::from_utf8(output).unwrap();
    let expected = common::read_fixture("eval_expected.jsonl");
    assert_eq!(output, expected);
    assert_eq!(summary.evaluated, 8);
    let errors: Vec<(usize, String)> = summary
        .errors
        .iter()
        .map(|error| (error.line, error.message.clone()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0].0, 9);
    assert_eq!(
        errors[0].1,
        "invalid principal attribute `verified_claims.claims.nationalities[0]`: unknown country code `XX`"
    );
    assert_eq!(errors[1], (10, "unknown model `gpt-9`".to_owned()));
    assert_eq!(errors[2].0, 11);
}

#[test]
fn who_can_lists_allowed_and_denied_with_reasons() {
    let engine = common::engine("ear", vec![common::bis_order()]);
    let context = RequestContext::at("2026-11-21T09:00:00Z".parse().unwrap())
        .with_location(Some("US"), None)
        .unwrap();
    let report = who_can(&engine, "mythos", &context).unwrap();
    assert!(report.allowed.is_empty(), "{report:?}");
    let bruno = report
        .denied
        .iter()
        .find(|entry| entry.principal == "bruno")
        .unwrap();
    assert_eq!(
        (bruno.status, bruno.reasons.as_slice()),
        (451, &["BIS-2026-0521".to_owned()][..])
    );
    let quinn = report
        .denied
        .iter()
        .find(|entry| entry.principal == "quinn")
        .unwrap();
    // quinn is a US citizen at `lab` but has no verification expiry, so the
    // order (foreign persons under `ear`, fail closed) covers them.
    assert_eq!(quinn.reasons, ["BIS-2026-0521"]);

    let fable = who_can(&engine, "fable", &context).unwrap();
    let allowed: Vec<&str> = fable
        .allowed
        .iter()
        .map(|entry| entry.principal.as_str())
        .collect();
    assert_eq!(allowed, ["alice", "chen", "dara", "gita", "hana"]);
    assert_eq!(
        fable.allowed.len() + fable.denied.len(),
        engine.principal_ids().len()
    );
    assert_eq!(fable.profile, "ear");
}

#[test]
fn diff_shows_the_pairs_a_proposed_set_changes() {
    let engine = common::engine("ear", vec![]);
    let mut proposed = vec![PolicySource::default_pack()];
    proposed.extend(load_policy_dir(&common::fixture_path("proposed_policies")).unwrap());
    let proposed = compile(&proposed, &common::schema()).unwrap();
    let context = RequestContext::at(common::demo_now())
        .with_location(Some("US"), None)
        .unwrap();
    let changes = diff_policies(&engine, proposed, &context).unwrap();
    let changed: Vec<(&str, &str, bool)> = changes
        .iter()
        .map(|change| {
            (
                change.principal.as_str(),
                change.model.as_str(),
                change.access_changed,
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("bruno", "fable", true),
            ("bruno", "mythos", true),
            ("bruno", "preview", false),
            ("emeka", "fable", true),
            ("emeka", "mythos", false),
            ("emeka", "preview", false),
            ("farid", "fable", true),
            ("farid", "mythos", false),
            ("farid", "preview", false),
            ("ivan", "fable", true),
            ("ivan", "mythos", false),
            ("ivan", "preview", false),
            ("jules", "fable", true),
            ("jules", "mythos", false),
            ("jules", "preview", false),
            ("kim", "fable", true),
            ("kim", "mythos", false),
            ("kim", "preview", false),
            ("lee", "fable", false),
            ("lee", "mythos", false),
            ("lee", "preview", false),
            ("omar", "fable", false),
            ("omar", "mythos", false),
            ("omar", "preview", false),
            ("pia", "fable", true),
            ("pia", "mythos", false),
            ("pia", "preview", false),
            ("quinn", "fable", true),
            ("quinn", "mythos", true),
            ("quinn", "preview", false),
        ]
    );
    let bruno_mythos = &changes[1];
    assert_eq!(
        bruno_mythos.before.reasons,
        ["internal_model_operator_access"]
    );
    assert_eq!(bruno_mythos.after.reasons, ["frontier_us_persons_only"]);
    assert_eq!(bruno_mythos.after.status, 451);
}

#[test]
fn an_invalid_policy_file_is_refused_with_line_and_column() {
    let sources = load_policy_dir(&common::fixture_path("invalid_policies")).unwrap();
    let names: Vec<&str> = sources.iter().map(|source| source.name.as_str()).collect();
    assert_eq!(
        names,
        ["10-export.cedar", "20-broken.cedar"],
        "only .cedar files, in name order"
    );
    let error = compile(&sources, &common::schema()).unwrap_err();
    let location = error.location().unwrap();
    assert!(matches!(error, PolicyError::Syntax { .. }), "{error}");
    assert_eq!(
        (
            location.source_name.as_str(),
            location.line,
            location.column
        ),
        ("20-broken.cedar", 11, 1),
        "{error}"
    );
    assert!(
        error.to_string().starts_with(
            "`20-broken.cedar` line 11 column 1: syntax error: unexpected token `when`"
        ),
        "{error}"
    );
}

#[test]
fn a_refused_set_leaves_the_engine_in_force_untouched() {
    // `compile` is pure, so "keep the old set" is the caller holding on to
    // the engine it has. This checks that nothing about a failed compile
    // can reach an existing engine's decisions.
    let engine = common::engine("ear", vec![]);
    let context = RequestContext::at(common::demo_now())
        .with_location(Some("US"), None)
        .unwrap();
    let before = who_can(&engine, "fable", &context).unwrap();
    let broken = load_policy_dir(&common::fixture_path("invalid_policies")).unwrap();
    assert!(compile(&broken, &common::schema()).is_err());
    let after = who_can(&engine, "fable", &context).unwrap();
    assert_eq!(before, after);
    assert_eq!(engine.policies().len(), 10);
}
