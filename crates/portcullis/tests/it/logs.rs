//! The server's text log as an operator's collector receives it: written to
//! a file, it carries no ANSI colour codes, and at the default level every
//! refusal that decides access is one line naming who, which model and why,
//! and every served request one line when it ends.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use common::DemoServer;

#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes_and_names_each_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = DemoServer::start_logging(
        None,
        None,
        &[("RUST_LOG", "info")],
        std::fs::File::create(&log).unwrap().into(),
    );
    // emeka (Nigerian national) asks for the internal model: refused.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/chat/completions",
            server.keys["listen"].as_str().unwrap()
        ))
        .bearer_auth(server.keys["keys"]["emeka"].as_str().unwrap())
        .json(&serde_json::json!({"model": "mythos", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // alice's request is served: one line when it ends.
    let alice_key = server.keys["keys"]["alice"].as_str().unwrap().to_owned();
    let served = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/chat/completions",
            server.keys["listen"].as_str().unwrap()
        ))
        .bearer_auth(&alice_key)
        .json(&serde_json::json!({"model": "fable", "messages": [{"role": "user", "content": "Say hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served_id = served.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    served.bytes().await.unwrap();
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let refusal = text
        .lines()
        .find(|line| line.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line for the refusal: {text}"));
    for field in [
        "INFO",
        "request refused",
        "status=403",
        "principal=\"emeka\"",
        "model=\"mythos\"",
        "rules=\"internal_model_outside_operator\"",
    ] {
        assert!(refusal.contains(field), "`{field}` missing: {refusal}");
    }
    let served_line = text
        .lines()
        .find(|line| line.contains(&served_id) && line.contains("request served"))
        .unwrap_or_else(|| panic!("no log line for the served request: {text}"));
    for field in [
        "INFO",
        "principal=\"alice\"",
        "credential=\"key_",
        "model=\"fable\"",
        "endpoint=chat_completions",
        "decision=\"allow\"",
        "status=200",
        "outcome=\"completed\"",
        "safeguard=\"allow\"",
        "duration_ms=",
    ] {
        assert!(
            served_line.contains(field),
            "`{field}` missing: {served_line}"
        );
    }
    assert!(!text.contains(&alice_key), "a key reached the log: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text}"
    );
}

/// At `debug` the log is for reading: the store's polling statements
/// (sqlx logs each one at `debug`) stay out unless `RUST_LOG` asks for them.
#[tokio::test]
async fn a_debug_log_is_not_buried_under_store_polling() {
    let cases = [
        ("the config's debug level", "", false),
        ("RUST_LOG asking for sqlx", "debug,sqlx=debug", true),
    ];
    for (label, rust_log, statements_expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let mut server = DemoServer::start_logging(
            Some("[log]\nlevel = \"debug\"\nformat = \"text\"\n"),
            None,
            &[("RUST_LOG", rust_log)],
            std::fs::File::create(&log).unwrap().into(),
        );
        // A malformed request is refused with a debug line.
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.listen_url()))
            .bearer_auth(server.keys["keys"]["alice"].as_str().unwrap())
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{label}");
        // Long enough for several snapshot polls.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        server.stop();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.lines()
                .any(|line| line.contains(" DEBUG ") && line.contains("request refused")),
            "{label}: no debug line for the refusal: {text}"
        );
        assert_eq!(
            text.contains("sqlx::query"),
            statements_expected,
            "{label}: {}",
            text.lines()
                .filter(|line| line.contains("sqlx"))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
