//! The server's text log as an operator's collector receives it: written to
//! a file, it carries no ANSI colour codes, and at the default level every
//! refusal that decides access is one line naming who, which model and why.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes_and_names_each_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.path().join("demo-keys.json").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("demo-keys.json")).unwrap())
            .unwrap();
    // emeka (Nigerian national) asks for the internal model: refused.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/chat/completions",
            keys["listen"].as_str().unwrap()
        ))
        .bearer_auth(keys["keys"]["emeka"].as_str().unwrap())
        .json(&serde_json::json!({"model": "mythos", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = child.kill();
    let _ = child.wait();
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
    assert!(text.contains("INFO"), "the log is empty: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text}"
    );
}
