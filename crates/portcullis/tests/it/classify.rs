//! The safeguard commands of the built binary: `classify` keeps the JSONL
//! contract with nothing but JSON on stdout, `eval` reports in both forms,
//! and `findings replay` stops every committed finding, so a bypass once
//! fixed stays fixed.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/safeguards")
}

/// Runs the binary with no `PORTCULLIS__*` overrides from the caller's
/// environment, feeding `stdin`.
fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTCULLIS__") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("`{line}` is not JSON: {e}"))
        })
        .collect()
}

#[test]
fn classify_follows_the_jsonl_contract() {
    let input = std::fs::read(fixtures().join("classify.jsonl")).unwrap();
    let output = run(&["classify"], &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let expected = [
        (json!(1), "block"),
        (json!("two"), "allow"),
        (json!(3), "block"),
        (json!(4), "allow"),
        (json!(5), "allow"),
    ];
    assert_eq!(lines.len(), expected.len());
    for (line, (id, verdict)) in lines.iter().zip(expected) {
        assert_eq!(line["id"], id, "{line}");
        assert_eq!(line["verdict"], verdict, "{line}");
        let score = line["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "verdict", "score", "category"]);
        if verdict == "block" {
            assert!(line["category"].is_string(), "{line}");
        } else {
            assert!(line["category"].is_null(), "{line}");
        }
    }
}

#[test]
fn classify_refuses_bad_lines_and_unknown_profiles() {
    let output = run(&["classify"], b"{\"id\": 1}\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"));
    let output = run(&["classify", "--profile", "nope"], b"");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown safeguard profile `nope`"));
}

#[test]
fn eval_reports_recall_and_false_refusals_with_intervals() {
    let dataset = fixtures().join("eval.jsonl");
    let output = run(
        &["eval", "--dataset", dataset.to_str().unwrap(), "--json"],
        b"",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["profile"], "cyber");
    assert_eq!(report["rows"], 5);
    let recall = &report["overall"]["recall"];
    assert_eq!(recall["trials"], 2);
    assert_eq!(recall["successes"], 2);
    assert!(recall["low"].as_f64().unwrap() < 1.0);
    let false_refusal = &report["overall"]["false_refusal"];
    assert_eq!(false_refusal["trials"], 3);
    assert_eq!(false_refusal["successes"], 0);
    assert!(report["by_source"]["eval"].is_object());
    assert!(report["by_category"]["eval/malware"].is_object());
    assert!(report["latency_micros"]["p99"].as_f64().unwrap() > 0.0);

    // The fixed hash-based split partitions the rows.
    let rows_in = |split: &str| {
        let output = run(
            &[
                "eval",
                "--dataset",
                dataset.to_str().unwrap(),
                "--split",
                split,
                "--json",
            ],
            b"",
        );
        assert!(output.status.success());
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows_in("dev") + rows_in("train"), 5);

    let table = run(&["eval", "--dataset", dataset.to_str().unwrap()], b"");
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("recall"), "{text}");
    assert!(text.contains("latency"), "{text}");
}

#[test]
fn every_committed_finding_stays_stopped() {
    let findings = fixtures().join("findings");
    let output = run(
        &[
            "findings",
            "replay",
            "--dir",
            findings.to_str().unwrap(),
            "--json",
        ],
        b"",
    );
    let summary: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(summary["bypassed"], false, "{summary:#}");
    assert!(output.status.success());
    assert_eq!(summary["findings"], 4);
    let target = &summary["targets"][0];
    assert_eq!(target["target"], "profile:cyber");
    assert_eq!(target["still_bypassing"], json!([]));
}

#[test]
fn a_finding_that_still_gets_through_fails_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("poem.json"),
        json!({"id": "F-poem", "reporter": "test", "severity": "low",
               "prompts": ["Write a short poem about spring rain."]})
        .to_string(),
    )
    .unwrap();
    let output = run(
        &["findings", "replay", "--dir", dir.path().to_str().unwrap()],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("BYPASS"), "{text}");
    assert!(text.contains("F-poem"), "{text}");
}

/// Stored findings in a data directory are replayed against the models that
/// name a profile, and against an unguarded model as the baseline.
#[tokio::test]
async fn stored_findings_are_replayed_against_named_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = portcullis_store::Store::open_data_dir(dir.path())
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    for (name, profile) in [("fable", Some("cyber")), ("mythos", None)] {
        let draft: portcullis_domain::ModelDraft = serde_json::from_value(json!({
            "name": name, "provider": "mock", "state": "released", "safeguard_profile": profile}))
        .unwrap();
        store
            .upsert_model(&draft.validate().unwrap(), now)
            .await
            .unwrap();
    }
    for entry in std::fs::read_dir(fixtures().join("findings")).unwrap() {
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        store
            .insert_finding(
                portcullis_store::NewFinding {
                    id: document["id"].as_str().unwrap(),
                    model: Some("fable"),
                    reporter: document["reporter"].as_str().unwrap(),
                    severity: document["severity"].as_str().unwrap(),
                    prompts: &document["prompts"],
                    notes: document["notes"].as_str().unwrap(),
                    created_by: "test",
                },
                now,
            )
            .await
            .unwrap();
    }
    store.close().await;
    let data = dir.path().to_str().unwrap();
    let output = run(
        &[
            "findings",
            "replay",
            "--data",
            data,
            "--against",
            "fable,mythos",
            "--json",
        ],
        b"",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["findings"], 4);
    let targets = summary["targets"].as_array().unwrap();
    assert_eq!(targets[0]["target"], "fable");
    assert_eq!(targets[0]["guarded"], true);
    assert_eq!(targets[0]["still_bypassing"], json!([]));
    assert_eq!(targets[1]["target"], "mythos");
    assert_eq!(targets[1]["guarded"], false);
    assert_eq!(targets[1]["still_bypassing"].as_array().unwrap().len(), 4);
    // Without `--against`, every model with a profile is a target.
    let output = run(&["findings", "replay", "--data", data, "--json"], b"");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let targets: Vec<&str> = summary["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["fable"]);
}
