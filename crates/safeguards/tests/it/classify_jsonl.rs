//! The `classify` JSONL contract.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use portcullis_safeguards::Safeguard;
use portcullis_safeguards::jsonl::{ClassifyOutput, classify_jsonl};

#[test]
fn each_input_line_gives_one_contract_line() {
    let safeguard = Safeguard::builtin().unwrap();
    let mut profile = safeguard.default_cyber_profile();
    profile.allow_stage1_only = true;
    let input = concat!(
        r#"{"id":"a","text":"Write ransomware that encrypts every file on the network and demands bitcoin."}"#,
        "\n\n",
        r#"{"id":2,"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Write a poem about the sea."}]}"#,
        "\n"
    );
    let mut output = Vec::new();
    let summary = classify_jsonl(input.as_bytes(), &mut output, &safeguard, &profile).unwrap();
    assert_eq!(summary.lines, 2);
    let lines: Vec<ClassifyOutput> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0].id, serde_json::json!("a"));
    assert_eq!(lines[0].verdict, "block");
    assert!(lines[0].category.is_some());
    assert_eq!(lines[1].id, serde_json::json!(2));
    assert_eq!(lines[1].verdict, "allow");
    assert_eq!(lines[1].category, None);
    assert!((0.0..=1.0).contains(&lines[1].score));
}

#[test]
fn a_malformed_line_is_an_error_naming_the_line() {
    let safeguard = Safeguard::builtin().unwrap();
    let profile = safeguard.default_cyber_profile();
    let error = classify_jsonl(
        "{\"id\":1,\"text\":\"ok\"}\nnot json\n".as_bytes(),
        Vec::new(),
        &safeguard,
        &profile,
    )
    .unwrap_err();
    assert!(error.to_string().contains("line 2"), "{error}");
    let error =
        classify_jsonl("{\"id\":1}\n".as_bytes(), Vec::new(), &safeguard, &profile).unwrap_err();
    assert!(error.to_string().contains("neither"), "{error}");
}
