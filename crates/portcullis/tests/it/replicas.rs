//! Several `portcullis serve` processes sharing one real PostgreSQL store.
//!
//! Each test starts its own PostgreSQL cluster (initdb in a temporary
//! directory, binaries from `PORTCULLIS_TEST_PG_BIN`), so it can stop and
//! restart the server, and three gateway replicas seeded with the demo on
//! one database. Changes made through one replica's admin API must be
//! enforced by all of them; a replica cut off from the store serves
//! nothing it cannot audit, and catches up when it reconnects.
//!
//! Waiting is done by polling the data plane until the expected answer
//! arrives, under one generous deadline per step: the tests assert order
//! and outcome, never latency.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How long any one step may take before the test gives up. It only keeps
/// a broken build from hanging; it is not a latency bound.
const STEP_DEADLINE: Duration = Duration::from_secs(90);
/// The replicas' staleness bound, short so the fault tests run quickly.
const STALENESS_BOUND_MS: u64 = 1_000;
const POLL_INTERVAL_MS: u64 = 200;

// ---- PostgreSQL -----------------------------------------------------------

/// A PostgreSQL cluster of the test's own, stopped when dropped.
struct PgServer {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// initdb and the server refuse to run as root; then everything runs as
    /// the `postgres` user.
    as_postgres_user: bool,
}

fn skip_or_fail(reason: &str) {
    if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{reason}, but PORTCULLIS_REQUIRE_ALL=1");
    }
    println!("skipped: {reason}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Creates and starts a cluster, or `None` (after printing why) when the
    /// test must skip.
    fn start() -> Option<Self> {
        let Some(bin) = std::env::var_os("PORTCULLIS_TEST_PG_BIN").map(PathBuf::from) else {
            skip_or_fail("PORTCULLIS_TEST_PG_BIN (a directory with initdb and pg_ctl) is unset");
            return None;
        };
        let as_postgres_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
            .unwrap_or(false);
        let data = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir()
            .unwrap();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot hand the cluster directory to postgres"
            );
        }
        let server = Self {
            bin,
            data,
            port: free_port(),
            as_postgres_user,
        };
        server.run(
            "initdb",
            &format!("-D {} -A trust -U postgres", server.cluster_dir()),
        );
        server.pg_ctl_start();
        Some(server)
    }

    fn cluster_dir(&self) -> String {
        self.data.path().join("cluster").display().to_string()
    }

    /// Runs one of the server binaries with shell-free arguments joined by
    /// spaces (every argument here is a plain path or flag).
    fn run(&self, program: &str, arguments: &str) {
        let program = self.bin.join(program).display().to_string();
        let output = if self.as_postgres_user {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c"])
                .arg(format!("{program} {arguments}"))
                .output()
        } else {
            Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{program} {arguments}"))
                .output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{program} {arguments} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let socket_dir = self.data.path().display().to_string();
        self.run(
            "pg_ctl",
            &format!(
                "-D {} -o '-p {} -k {socket_dir} -c listen_addresses=127.0.0.1' -l {}/server.log -w start",
                self.cluster_dir(),
                self.port,
                socket_dir
            ),
        );
    }

    fn stop_fast(&self) {
        self.run(
            "pg_ctl",
            &format!("-D {} -m fast -w stop", self.cluster_dir()),
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &format!("-h 127.0.0.1 -p {} -U postgres {name}", self.port),
        );
        self.url(name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl").display().to_string();
        let command = format!("{program} -D {} -m immediate stop", self.cluster_dir());
        let _ = if self.as_postgres_user {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &command])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        } else {
            Command::new("/bin/sh")
                .args(["-c", &command])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
    }
}

// ---- a switchable link between one replica and the database ---------------

/// A TCP relay in front of PostgreSQL for one replica. Cutting it closes
/// every relayed connection and refuses new ones, which the replica sees as
/// the database going away while the others keep their connections.
struct Link {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Link {
    async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let open = open.clone();
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut server) =
                            TcpStream::connect(("127.0.0.1", upstream_port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().await.push(relay);
                }
            }
        });
        Self {
            address,
            open,
            connections,
            accept,
        }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.address)
    }

    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().await.drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

// ---- gateway replicas ----------------------------------------------------

/// One `portcullis serve --demo` process with a data directory of its own.
struct Replica {
    id: String,
    child: Child,
    dir: tempfile::TempDir,
    data: String,
    admin: String,
    admin_token: String,
}

impl Replica {
    fn spawn(id: &str, store_url: &str) -> (Child, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"{store_url}\"\n\n[replica]\nid = \"{id}\"\nstaleness_bound_ms = {STALENESS_BOUND_MS}\npoll_interval_ms = {POLL_INTERVAL_MS}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--demo")
            .arg("--data")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        (child, dir)
    }

    /// Waits until the replica has written `demo-keys.json`, which it does
    /// only once both ports are bound.
    async fn ready(id: &str, mut child: Child, dir: tempfile::TempDir) -> Self {
        let keys_file = dir.path().join("demo-keys.json");
        let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&keys_file) {
                let keys: Value = serde_json::from_str(&text).unwrap();
                return Self {
                    id: id.to_owned(),
                    child,
                    data: format!("http://{}", keys["listen"].as_str().unwrap()),
                    admin: format!("http://{}", keys["admin_listen"].as_str().unwrap()),
                    admin_token: keys["admin_token"].as_str().unwrap().to_owned(),
                    dir,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "replica `{id}` exited with {status}:\n{}",
                    log_of(dir.path())
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica `{id}` did not start:\n{}",
                log_of(dir.path())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The demo key this replica issued for `principal`.
    fn key(&self, principal: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("demo-keys.json")).unwrap();
        let keys: Value = serde_json::from_str(&text).unwrap();
        keys["keys"][principal].as_str().unwrap().to_owned()
    }

    fn log(&self) -> String {
        log_of(self.dir.path())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts the replicas at once (as a rollout would) against their store URLs.
async fn start_replicas(replicas: &[(&str, String)]) -> Vec<Replica> {
    let spawned: Vec<_> = replicas
        .iter()
        .map(|(id, url)| (id.to_string(), Replica::spawn(id, url)))
        .collect();
    let mut started = Vec::new();
    for (id, (child, dir)) in spawned {
        started.push(Replica::ready(&id, child, dir).await);
    }
    started
}

// ---- HTTP ----------------------------------------------------------------

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn chat(replica: &Replica, key: &str, model: &str) -> Answer {
    let response = http()
        .post(format!("{}/v1/chat/completions", replica.data))
        .bearer_auth(key)
        .json(&json!({"model": model, "max_tokens": 4,
            "messages": [{"role": "user", "content": "Write a haiku about autumn."}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn readyz(replica: &Replica) -> u16 {
    http()
        .get(format!("{}/readyz", replica.data))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn admin(
    replica: &Replica,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("{}{path}", replica.admin))
        .bearer_auth(&replica.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `check` until it holds, failing with `what` (and the replica's log)
/// after the step deadline.
async fn eventually<F, Fut>(replica: &Replica, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica `{}`: {what} never happened\n{}",
            replica.id,
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn suspend_foreign_persons(reference: &str) -> Value {
    json!({"reference": reference, "issuer": "US Department of Commerce",
        "received_at": jiff::Timestamp::now().to_string(), "effective_at": null,
        "effect": "suspend", "models": ["family:frontier"],
        "principals": {"foreign_persons_under": "ear"}, "reason": "replica test"})
}

// ---- tests ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_enforce_changes_made_through_any_one_and_a_cut_off_one_catches_up() {
    let Some(pg) = PgServer::start() else { return };
    let database = pg.create_database("portcullis");
    let link = Link::start(pg.port).await;
    let replicas = start_replicas(&[
        ("r1", database.clone()),
        ("r2", database.clone()),
        ("r3", link.url("portcullis")),
    ])
    .await;
    let (r1, r2, r3) = (&replicas[0], &replicas[1], &replicas[2]);
    // Keys issued by one replica live in the shared store: every replica
    // accepts them, once it has caught up with the others' seeding.
    let emeka = r1.key("emeka");
    let alice = r2.key("alice");
    let dara = r3.key("dara");
    for replica in &replicas {
        for (key, model) in [(&emeka, "fable"), (&alice, "haiku"), (&dara, "haiku")] {
            eventually(replica, &format!("a 200 for {model}"), || async {
                chat(replica, key, model).await.status == 200
            })
            .await;
        }
        assert_eq!(readyz(replica).await, 200);
    }

    // An order applied through r1 is enforced by all three.
    let (status, order) = admin(
        r1,
        reqwest::Method::POST,
        "/admin/v1/orders",
        Some(suspend_foreign_persons("BIS-REPLICAS-1")),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().unwrap().to_owned();
    for replica in &replicas {
        eventually(replica, "the order's 451 for emeka on fable", || async {
            let answer = chat(replica, &emeka, "fable").await;
            answer.status == 451 && answer.message().contains("BIS-REPLICAS-1")
        })
        .await;
        // Alice is a verified US citizen: the order does not reach her.
        let answer = chat(replica, &alice, "fable").await;
        assert_eq!(answer.status, 200, "a US person is unaffected: {answer:?}");
    }

    // Cut r3 off from the database. Its audit log lives there too, so it
    // can commit no decision and refuses every request with a retryable
    // 503, restricted models and ordinary ones alike.
    link.cut().await;
    for model in ["fable", "haiku"] {
        eventually(r3, "a retryable refusal while cut off", || async {
            let answer = chat(r3, &alice, model).await;
            answer.status == 503
                && answer.code() == "audit_unavailable"
                && answer.retry_after.is_some()
        })
        .await;
    }
    assert_eq!(readyz(r3).await, 503);

    // While r3 is cut off: r2 lifts the order and r1 revokes dara's key.
    let (status, lifted) = admin(
        r2,
        reqwest::Method::POST,
        &format!("/admin/v1/orders/{order_id}/lift"),
        Some(json!({"reason": "rescinded"})),
    )
    .await;
    assert_eq!(status, 200, "{lifted}");
    let (status, keys) = admin(
        r1,
        reqwest::Method::GET,
        "/admin/v1/keys?principal=dara",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let dara_key_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "demo-r3" && key["revoked_at"].is_null())
        .expect("r3's demo key for dara")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = admin(
        r1,
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{dara_key_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    for replica in [r1, r2] {
        eventually(replica, "the revoked key's 401", || async {
            chat(replica, &dara, "haiku").await.status == 401
        })
        .await;
        eventually(
            replica,
            "emeka's access to fable after the lift",
            || async { chat(replica, &emeka, "fable").await.status == 200 },
        )
        .await;
    }
    // r3 has heard of neither change, but it serves nothing it cannot
    // audit, so even the revoked key gets no answer from it.
    assert_eq!(chat(r3, &dara, "haiku").await.status, 503);

    // Reconnected, r3 resyncs and enforces both changes.
    link.restore();
    eventually(r3, "the revoked key's 401 after reconnecting", || async {
        chat(r3, &dara, "haiku").await.status == 401
    })
    .await;
    eventually(r3, "readiness after reconnecting", || async {
        readyz(r3).await == 200
    })
    .await;
    let answer = chat(r3, &emeka, "fable").await;
    assert_eq!(answer.status, 200, "the lift reached r3 too: {answer:?}");

    // Every replica reported itself, and each one applied the order.
    eventually(r1, "reports from all three replicas", || async {
        let (_, listed) = admin(r1, reqwest::Method::GET, "/admin/v1/replicas", None).await;
        let reported: Vec<&str> = listed["data"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["replica_id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        reported == ["r1", "r2", "r3"]
    })
    .await;
    let (status, receipt) = admin(
        r1,
        reqwest::Method::GET,
        &format!("/admin/v1/orders/{order_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let mut applied: Vec<&str> = receipt["receipt"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["replica"].as_str().unwrap())
        .collect();
    applied.sort_unstable();
    assert_eq!(applied, ["r1", "r2", "r3"], "{receipt}");
    for replica in &receipt["receipt"]["replicas"].as_array().unwrap()[..] {
        assert_eq!(replica["admitted_after_enforcement"], 0, "{receipt}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgres_fails_restricted_models_closed_and_restarting_it_recovers() {
    let Some(pg) = PgServer::start() else { return };
    let database = pg.create_database("portcullis");
    let replicas = start_replicas(&[
        ("r1", database.clone()),
        ("r2", database.clone()),
        ("r3", database.clone()),
    ])
    .await;
    let r1 = &replicas[0];
    let alice = r1.key("alice");
    let emeka = r1.key("emeka");
    let (status, order) = admin(
        r1,
        reqwest::Method::POST,
        "/admin/v1/orders",
        Some(suspend_foreign_persons("BIS-FAULT-1")),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    for replica in &replicas {
        eventually(replica, "the order's 451 for emeka", || async {
            chat(replica, &emeka, "fable").await.status == 451
        })
        .await;
        eventually(replica, "a 200 for alice on fable", || async {
            chat(replica, &alice, "fable").await.status == 200
        })
        .await;
    }

    // Traffic for the suspended pair runs through the outage and recovery;
    // not one of those requests may be admitted.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic: Vec<JoinHandle<()>> = replicas
        .iter()
        .map(|replica| {
            let (data, emeka) = (replica.data.clone(), emeka.clone());
            let (stop, admitted, sent) = (stop_traffic.clone(), admitted.clone(), sent.clone());
            tokio::spawn(async move {
                let client = http();
                while !stop.load(Ordering::SeqCst) {
                    let response = client
                        .post(format!("{data}/v1/chat/completions"))
                        .bearer_auth(&emeka)
                        .json(&json!({"model": "fable", "max_tokens": 2,
                            "messages": [{"role": "user", "content": "hello"}]}))
                        .send()
                        .await;
                    if let Ok(response) = response {
                        sent.fetch_add(1, Ordering::SeqCst);
                        if response.status().is_success() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    // With the store down, no decision can be committed to the audit log
    // (it lives in the same database), so every request is refused with a
    // retryable 503, restricted or not: nothing is served unaudited.
    pg.stop_fast();
    for replica in &replicas {
        for model in ["fable", "haiku"] {
            eventually(replica, "a retryable refusal during the outage", || async {
                let answer = chat(replica, &alice, model).await;
                answer.status == 503
                    && answer.code() == "audit_unavailable"
                    && answer.retry_after.is_some()
            })
            .await;
        }
        assert_eq!(readyz(replica).await, 503);
    }

    pg.pg_ctl_start();
    for replica in &replicas {
        eventually(replica, "readiness after the restart", || async {
            readyz(replica).await == 200
        })
        .await;
        eventually(
            replica,
            "a 200 for alice on fable after the restart",
            || async { chat(replica, &alice, "fable").await.status == 200 },
        )
        .await;
    }
    stop_traffic.store(true, Ordering::SeqCst);
    for task in traffic {
        task.await.unwrap();
    }
    assert!(sent.load(Ordering::SeqCst) > 0, "no traffic ran");
    assert_eq!(
        admitted.load(Ordering::SeqCst),
        0,
        "a suspended pair was admitted during the outage or the recovery"
    );

    // The notification path is back too: a change through r1 reaches all.
    let (status, _) = admin(
        r1,
        reqwest::Method::POST,
        &format!("/admin/v1/orders/{}/lift", order["id"].as_str().unwrap()),
        Some(json!({"reason": "test over"})),
    )
    .await;
    assert_eq!(status, 200);
    for replica in &replicas {
        eventually(replica, "emeka's access after the lift", || async {
            chat(replica, &emeka, "fable").await.status == 200
        })
        .await;
    }
}
