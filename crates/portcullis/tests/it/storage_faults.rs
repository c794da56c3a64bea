//! Storage faults on a real filesystem. The data directory is a small tmpfs
//! mounted for the test; filling it makes every SQLite write fail with
//! `SQLITE_FULL`, exactly as a full production disk does.
//!
//! What must hold: no request is served unaudited (every answer a client
//! received has its decision entry), requests and admin writes are refused
//! with 503 and `Retry-After` while the fault lasts, `/readyz` says why, no
//! checkpoint covers more entries than are stored, the gateway recovers on
//! its own once space is back, an order refused during the fault is
//! enforced when resent, and a SIGTERM during the fault still stops the
//! process within its grace period.
//!
//! Mounting needs root (CI runs as root); elsewhere the test prints
//! `skipped: …`, and `PORTCULLIS_REQUIRE_ALL=1` turns that into a failure.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::DemoServer;
use serde_json::{Value, json};

/// The grace period the server is given, so the SIGTERM check is quick.
const SHUTDOWN_GRACE_MS: u64 = 3_000;

/// A tmpfs of a fixed size, unmounted when dropped.
struct SmallFilesystem {
    mount_point: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(megabytes: u32) -> Result<Self, String> {
        let mount_point = tempfile::tempdir().map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(mount_point.path())
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Self { mount_point })
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler.bin")
    }

    /// Writes a file until the filesystem has no byte left.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
            let buffer = vec![0u8; chunk];
            while file.write_all(&buffer).is_ok() {}
        }
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path())
            .status();
    }
}

fn skip(reason: &str) {
    if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{reason}, but PORTCULLIS_REQUIRE_ALL=1");
    }
    println!("skipped: {reason}");
}

struct Client {
    http: reqwest::Client,
    listen: String,
    admin: String,
    admin_token: String,
    keys: Value,
    /// The request id of every answer that reached this client as a 200.
    served: Vec<String>,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Client {
    async fn chat(&mut self, who: &str, model: &str) -> Answer {
        let response = self
            .http
            .post(format!("http://{}/v1/chat/completions", self.listen))
            .bearer_auth(self.keys["keys"][who].as_str().unwrap())
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 {
            self.served.push(request_id);
        }
        Answer {
            status,
            retry_after,
            body,
        }
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = self
            .http
            .get(format!("http://{}/readyz", self.listen))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn apply_order(&self) -> (u16, Value) {
        let order = json!({
            "reference": "BIS-FULL-DISK-1", "issuer": "US Department of Commerce",
            "received_at": jiff::Timestamp::now().to_string(), "effective_at": null,
            "effect": "suspend", "models": ["family:frontier"],
            "principals": {"foreign_persons_under": "ear"},
            "reason": "order sent while the gateway's disk is full",
        });
        let response = self
            .http
            .post(format!("http://{}/admin/v1/orders", self.admin))
            .bearer_auth(&self.admin_token)
            .json(&order)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends requests until one is refused for want of an audit commit;
    /// SQLite may still fit a few commits into its write-ahead log after
    /// the disk fills.
    async fn until_refused(&mut self) -> Answer {
        for _ in 0..5_000 {
            let answer = self.chat("alice", "haiku").await;
            if answer.status != 200 {
                return answer;
            }
        }
        panic!("5,000 requests were served on a full disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_requests_instead_of_serving_them_unaudited_and_recovers() {
    let filesystem = match SmallFilesystem::mount(64) {
        Ok(filesystem) => filesystem,
        Err(reason) => return skip(&reason),
    };
    let grace = SHUTDOWN_GRACE_MS.to_string();
    let mut server = DemoServer::start_with(
        None,
        Some(filesystem.path()),
        &[("PORTCULLIS__SERVER__SHUTDOWN_GRACE_MS", &grace)],
    );
    let mut client = Client {
        http: reqwest::Client::new(),
        listen: server.keys["listen"].as_str().unwrap().to_owned(),
        admin: server.keys["admin_listen"].as_str().unwrap().to_owned(),
        admin_token: server.keys["admin_token"].as_str().unwrap().to_owned(),
        keys: server.keys.clone(),
        served: Vec::new(),
    };
    for _ in 0..5 {
        assert_eq!(client.chat("alice", "haiku").await.status, 200);
    }
    assert_eq!(client.chat("bruno", "fable").await.status, 200);

    // The fault: every request is either served with a durable entry or
    // refused with 503 and Retry-After in the OpenAI error format.
    filesystem.fill();
    let refused = client.until_refused().await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "audit_unavailable");
    assert!(refused.retry_after.is_some(), "503 without Retry-After");
    for _ in 0..50 {
        let answer = client.chat("alice", "haiku").await;
        assert_eq!(answer.status, 503, "served during the fault: {answer:?}");
    }
    let (ready, readiness) = client.readyz().await;
    assert_eq!(ready, 503, "ready on a full disk: {readiness}");
    assert_eq!(readiness["ready"], false);
    assert_eq!(readiness["checks"]["audit"]["state"], "failing");

    // An order sent now is refused loudly, not half-applied.
    let (status, body) = client.apply_order().await;
    assert_eq!(status, 503, "order during the fault: {body}");
    assert_eq!(client.chat("bruno", "fable").await.status, 503);

    // Recovery, with no restart: space is back and the gateway serves again.
    filesystem.free();
    let freed = Instant::now();
    loop {
        let answer = client.chat("alice", "haiku").await;
        let (ready, _) = client.readyz().await;
        if answer.status == 200 && ready == 200 {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(3),
            "not recovered 3 s after space was freed: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The order, resent, is enforced.
    let (status, body) = client.apply_order().await;
    assert_eq!(status, 201, "order after recovery: {body}");
    assert_eq!(client.chat("bruno", "fable").await.status, 451);
    assert_eq!(client.chat("alice", "fable").await.status, 200);

    // A SIGTERM while the disk is full still stops the process in time.
    filesystem.fill();
    client.until_refused().await;
    let stopped = server.terminate_within(Duration::from_millis(SHUTDOWN_GRACE_MS + 2_000));
    assert!(
        stopped.is_some(),
        "SIGTERM on a full disk did not stop the server within its grace period"
    );
    filesystem.free();

    // Nothing served went unaudited, and the log verifies: no checkpoint
    // (stored or witnessed) covers an entry that is not stored.
    let verified = common::run_with_data(&["audit", "verify"], server.data());
    assert!(
        verified.status.success(),
        "audit verify failed after the fault:\n{}\n{}",
        common::stdout(&verified),
        common::stderr(&verified)
    );
    let stored = common::stored_decision_request_ids(server.data());
    let unaudited: Vec<&String> = client
        .served
        .iter()
        .filter(|request_id| !stored.contains(*request_id))
        .collect();
    assert!(
        unaudited.is_empty(),
        "{} of {} served requests have no decision entry: {:?}",
        unaudited.len(),
        client.served.len(),
        unaudited.iter().take(5).collect::<Vec<_>>()
    );
}
