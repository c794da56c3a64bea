//! `portcullis policy eval | who-can | diff` against a data directory seeded
//! by `portcullis serve --demo`.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use common::{DemoServer, run_with_data, stderr, stdout};
use serde_json::{Value, json};

/// A model only verified US persons may use, declared in config beside the
/// demo's models.
const CONFIG: &str = r#"
[[models]]
name = "ctrl"
provider = "mock"
upstream_model = "ctrl"
state = "released"
family = "ctrl"
tags = ["us_persons_only"]
"#;

fn person(
    id: &str,
    organization: &str,
    employee: bool,
    nationalities: &[&str],
    basis: &str,
) -> Value {
    json!({
        "id": id, "organization": organization, "employee": employee, "screening": "clear",
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                             "time": "2025-01-01T00:00:00Z", "expires_at": "2035-01-01T00:00:00Z"},
            "claims": {"nationalities": nationalities, "us_person_basis": basis, "residence_country": "US"}}
    })
}

/// (id, principal, model, context, expected status, a reason that must be named)
type Case = (
    &'static str,
    Value,
    &'static str,
    Value,
    u16,
    Option<&'static str>,
);

#[test]
fn eval_decides_the_demo_story_like_the_contract() {
    let mut server = DemoServer::start(Some(CONFIG));
    let alice = person("alice", "acme", false, &["US"], "citizen");
    let bruno = person("bruno", "lab", true, &["FR"], "none");
    let chen = person("chen", "acme", false, &["US", "CN"], "citizen");
    let dara = person("dara", "acme", false, &["IN"], "lawful_permanent_resident");
    // Citizenship claimed only outside verified_claims never satisfies a
    // restriction.
    let self_asserted = json!({"id": "sam", "organization": "acme", "screening": "clear",
        "nationalities": ["US"], "us_person_basis": "citizen"});
    let us = json!({"country": "US"});
    // (id, principal, model, context, status, a reason that must be named)
    let cases: Vec<Case> = vec![
        ("alice-fable", alice.clone(), "fable", us.clone(), 200, None),
        ("chen-fable", chen, "fable", us.clone(), 200, None),
        ("dara-fable", dara, "fable", us.clone(), 200, None),
        ("bruno-mythos", bruno, "mythos", us.clone(), 200, None),
        (
            "alice-mythos",
            alice.clone(),
            "mythos",
            us.clone(),
            403,
            Some("internal_model_outside_operator"),
        ),
        (
            "alice-fable-unknown",
            alice.clone(),
            "fable",
            json!({}),
            451,
            Some("restricted_model_unknown_location"),
        ),
        (
            "alice-fable-null",
            alice.clone(),
            "fable",
            json!({"country": null}),
            451,
            Some("restricted_model_unknown_location"),
        ),
        (
            "alice-fable-ir",
            alice.clone(),
            "fable",
            json!({"country": "IR"}),
            451,
            Some("embargoed_location"),
        ),
        (
            "alice-fable-crimea",
            alice.clone(),
            "fable",
            json!({"country": "UA", "subdivision": "UA-43"}),
            451,
            Some("embargoed_location"),
        ),
        ("alice-ctrl", alice, "ctrl", us.clone(), 200, None),
        (
            "sam-ctrl",
            self_asserted,
            "ctrl",
            us,
            451,
            Some("us_persons_only"),
        ),
    ];
    let lines: Vec<String> = cases
        .iter()
        .map(|(id, principal, model, context, _, _)| {
            json!({"id": id, "principal": principal, "model": model, "context": context})
                .to_string()
        })
        .collect();
    let cases_file = server.data().join("cases.jsonl");
    std::fs::write(&cases_file, lines.join("\n") + "\n").unwrap();

    let output = run_with_data(
        &["policy", "eval", "--cases", cases_file.to_str().unwrap()],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let results: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("only JSON lines on stdout"))
        .collect();
    assert_eq!(results.len(), cases.len());
    for ((id, _, _, _, status, reason), result) in cases.iter().zip(&results) {
        assert_eq!(result["id"], *id);
        assert_eq!(result["status"], *status, "{id}: {result}");
        let expected_decision = if *status == 200 { "allow" } else { "deny" };
        assert_eq!(result["decision"], expected_decision, "{id}");
        let keys: Vec<&str> = result
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "decision", "status", "reasons"], "{id}");
        if let Some(reason) = reason {
            let reasons = result["reasons"].as_array().unwrap();
            assert!(reasons.contains(&json!(reason)), "{id}: {result}");
        }
    }
    server.stop();
}

#[test]
fn who_can_and_diff_report_on_the_stored_principals() {
    let mut server = DemoServer::start(None);
    let output = run_with_data(
        &[
            "policy",
            "who-can",
            "--model",
            "mythos",
            "--country",
            "US",
            "--json",
        ],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let allowed: Vec<&str> = report["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["principal"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["bruno"]);
    assert_eq!(report["denied"].as_array().unwrap().len(), 4);

    // A proposed set that drops the internal-model rules opens nothing
    // (no permit), while one with a syntax error is refused with its place.
    let proposed = server.data().join("proposed");
    std::fs::create_dir(&proposed).unwrap();
    std::fs::write(
        proposed.join("only.cedar"),
        "@id(\"released_model_access\")\n@status(\"ordinary\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let output = run_with_data(
        &[
            "policy",
            "diff",
            "--proposed",
            proposed.to_str().unwrap(),
            "--country",
            "US",
            "--json",
        ],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let changes: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        changes.iter().any(|change| change["principal"] == "alice"
            && change["model"] == "mythos"
            && change["access_changed"] == true),
        "{changes:?}"
    );

    std::fs::write(
        proposed.join("broken.cedar"),
        "@id(\"x\")\n@status(\"ordinary\")\npermit (principal,\n",
    )
    .unwrap();
    let output = run_with_data(
        &["policy", "diff", "--proposed", proposed.to_str().unwrap()],
        server.data(),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`broken.cedar` line 3 column"),
        "{}",
        stderr(&output)
    );
    server.stop();
}
