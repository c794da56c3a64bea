//! A gateway killed with SIGKILL under load leaves an audit log that still
//! verifies after a restart, with every admin action it acknowledged and the
//! decision entry of every answer a client received before the kill: a
//! decision is durable before the first byte of its answer leaves.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn start(dir: &Path) -> (Child, Value) {
    let keys_file = dir.join("demo-keys.json");
    let _ = std::fs::remove_file(&keys_file);
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
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&keys_file)
            && let Ok(keys) = serde_json::from_str::<Value>(&text)
        {
            return (child, keys);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify", "--data"])
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_leaves_a_log_that_verifies_with_every_acknowledged_admin_action() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, keys) = start(dir.path());
    let listen = keys["listen"].as_str().unwrap().to_owned();
    let admin = keys["admin_listen"].as_str().unwrap().to_owned();
    let admin_token = keys["admin_token"].as_str().unwrap().to_owned();
    let alice = keys["keys"]["alice"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // Load: eight clients sending requests until the process dies.
    let mut load = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = format!("http://{listen}/v1/chat/completions");
        let alice = alice.clone();
        load.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            loop {
                let sent = http
                    .post(&url)
                    .bearer_auth(&alice)
                    .json(
                        &json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await;
                match sent {
                    // Only an answer read to its end reached the client.
                    Ok(response) if response.status() == 200 => {
                        let request_id = response.headers()["x-request-id"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        if response.bytes().await.is_ok() {
                            answered.push(request_id);
                        }
                    }
                    Ok(response) => panic!("unexpected status {}", response.status()),
                    Err(_) => return answered,
                }
            }
        }));
    }
    // Admin actions interleaved with the load; each acknowledged one must
    // survive the kill.
    let mut acknowledged = Vec::new();
    for index in 0..20 {
        let response = http
            .post(format!("http://{admin}/admin/v1/keys"))
            .bearer_auth(&admin_token)
            .json(&json!({"principal_id": "alice", "name": format!("crash-{index}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        acknowledged.push(body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut answered = Vec::new();
    for task in load {
        answered.extend(task.await.unwrap());
    }
    assert!(
        !answered.is_empty(),
        "no request was served before the kill"
    );

    // Restart on the same directory: the writer reloads its frontier and
    // the log continues; then stop cleanly and verify.
    let (mut child, keys) = start(dir.path());
    let listen = keys["listen"].as_str().unwrap();
    let response = http
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth(keys["keys"]["alice"].as_str().unwrap())
        .json(&json!({"model": "haiku", "messages": [{"role": "user", "content": "after"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();

    let verified = verify(dir.path());
    assert!(
        verified.status.success(),
        "audit verify failed after a crash:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let searched = Command::new(BIN)
        .args(["audit", "search", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(searched.status.success());
    let text = String::from_utf8_lossy(&searched.stdout);
    let created_keys: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| {
            let entry = entry.get("entry").unwrap_or(entry);
            entry["kind"] == "admin_action"
                && entry["target_kind"] == "key"
                && entry["action"] == "create"
        })
        .map(|entry| {
            let entry = entry.get("entry").unwrap_or(&entry).clone();
            entry["target_id"].as_str().unwrap().to_owned()
        })
        .collect();
    for key in &acknowledged {
        assert!(
            created_keys.contains(key),
            "acknowledged key creation `{key}` is missing from the log"
        );
    }
    let decided = common::stored_decision_request_ids(dir.path());
    let lost: Vec<&String> = answered
        .iter()
        .filter(|request_id| !decided.contains(*request_id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answers the clients received have no decision entry, e.g. {:?}",
        lost.len(),
        answered.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}

/// SIGKILL while streams are open: each client sees its stream end without
/// a normal finish (never a silent, complete-looking answer), the admission
/// of every stream is on record, and the restarted gateway's log verifies
/// and serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_stream_ends_the_streams_and_keeps_their_admissions() {
    use futures_util::StreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, keys) = start(dir.path());
    let listen = keys["listen"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for (principal, anthropic) in [("alice", false), ("dara", true), ("chen", false)] {
        let key = keys["keys"][principal].as_str().unwrap();
        let (path, body) = if anthropic {
            (
                "/v1/messages",
                json!({"model": "haiku", "max_tokens": 400, "stream": true,
                       "messages": [{"role": "user", "content": "tell me a long story"}]}),
            )
        } else {
            (
                "/v1/chat/completions",
                json!({"model": "haiku", "max_tokens": 400, "stream": true,
                       "messages": [{"role": "user", "content": "tell me a long story"}]}),
            )
        };
        let response = http
            .post(format!("http://{listen}{path}"))
            .bearer_auth(key)
            .header("anthropic-version", "2023-06-01")
            .header("x-mock-token-interval-ms", "50")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{principal}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut chunks = response.bytes_stream();
        // The first event reached the client, so the admission is durable.
        let first = chunks.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        streams.push((principal, anthropic, request_id, chunks));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    for (principal, anthropic, _, chunks) in &mut streams {
        // The stream ends, by a reset or an early end of body.
        let mut rest = String::new();
        while let Some(Ok(bytes)) = chunks.next().await {
            rest.push_str(&String::from_utf8_lossy(&bytes));
        }
        let finished = if *anthropic {
            rest.contains("message_stop")
        } else {
            rest.contains("[DONE]")
        };
        assert!(
            !finished,
            "{principal}: the stream looked complete after the kill: {rest}"
        );
    }

    let (mut child, keys) = start(dir.path());
    let listen = keys["listen"].as_str().unwrap();
    let response = http
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth(keys["keys"]["alice"].as_str().unwrap())
        .json(&json!({"model": "haiku", "messages": [{"role": "user", "content": "after"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let verified = verify(dir.path());
    assert!(
        verified.status.success(),
        "audit verify failed after a kill mid-stream: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let decided = common::stored_decision_request_ids(dir.path());
    for (principal, _, request_id, _) in &streams {
        assert!(
            decided.contains(request_id),
            "{principal}: the admission of stream {request_id} is not on record"
        );
    }
}
