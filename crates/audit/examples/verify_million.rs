//! Writes a log of 1,000,000 request decisions to a SQLite file through the
//! group-commit path, then times `verify_store` over it and `verify_export`
//! over a full export. Run in release:
//!
//! `cargo run --release -p portcullis-audit --example verify_million [DIR] [ENTRIES]`
//!
//! DIR (default: a temporary directory) keeps the database for reuse; an
//! existing log there is verified without writing it again.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use portcullis_audit::{
    AuditConfig, AuditEntry, AuditLog, Decision, NoteSigner, RequestDecisionEntry,
    SafeguardVerdict, export, install_sql_drivers, verify_export, verify_store,
};
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

const ORIGIN: &str = "portcullis/bench";

fn request_entry(i: u64) -> AuditEntry {
    let start: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    AuditEntry::from(RequestDecisionEntry {
        request_id: format!("req-{i:016x}"),
        time: start + SignedDuration::from_micros(i as i64 * 20),
        principal_id: Some(format!("principal-{}", i % 1_000)),
        credential_id: Some(format!("key-{}", i % 1_000)),
        model: Some(["mythos", "fable", "haiku"][(i % 3) as usize].to_owned()),
        action: "chat.completions".to_owned(),
        decision: if i.is_multiple_of(5) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        status: if i.is_multiple_of(5) { 451 } else { 200 },
        policy_ids: vec!["baseline".to_owned()],
        order_ids: if i.is_multiple_of(5) {
            vec!["ord-1".to_owned()]
        } else {
            vec![]
        },
        definition_profile: Some("ear".to_owned()),
        safeguard_verdict: Some(SafeguardVerdict::Allow),
        safeguard_score_ppm: Some((i % 1_000_000) as u32),
        safeguard_constitution: None,
        snapshot_version: 12,
        replica: "bench".to_owned(),
        location: None,
        identity: None,
        attributes: None,
        prompt_sha256: None,
        response_sha256: None,
        prompt: None,
        response: None,
    })
}

/// User plus system CPU seconds of this process so far (Linux), so that
/// figures taken on a busy machine can be read as CPU cost as well as wall
/// time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |position: usize| {
        fields
            .get(position)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of /proc/PID/stat, counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    fn report(&self) -> String {
        format!(
            "{:.2} s wall, {:.2} s cpu",
            self.wall.elapsed().as_secs_f64(),
            cpu_seconds() - self.cpu
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let temporary = tempfile::tempdir().unwrap();
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let entries: u64 = args
        .next()
        .map_or(1_000_000, |count| count.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("portcullis.db").display());
    install_sql_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection
                    .execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000")
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, [5u8; 32]).unwrap();
    let verifier = signer.verifier();

    let log = AuditLog::open(pool.clone(), ORIGIN, signer, AuditConfig::default())
        .await
        .unwrap();
    let existing = log.handle().status().committed_size;
    if existing < entries {
        let started = Instant::now();
        let stopwatch = Stopwatch::start();
        let handle = log.handle();
        for i in existing..entries {
            handle.record(&request_entry(i)).await.unwrap();
        }
        log.flush().await.unwrap();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "append: {} entries in {} = {:.0} entries/s (group commit, checkpoints every 1,000)",
            entries - existing,
            stopwatch.report(),
            (entries - existing) as f64 / seconds
        );
    }
    log.close().await.unwrap();

    let stopwatch = Stopwatch::start();
    let report = verify_store(&pool, ORIGIN, &verifier, None).await.unwrap();
    eprintln!(
        "verify_store: {} entries, {} checkpoints in {}",
        report.entries,
        report.checkpoints,
        stopwatch.report()
    );

    let export_path = dir.join("export.jsonl");
    let stopwatch = Stopwatch::start();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&export_path).unwrap());
    export(&pool, ORIGIN, None, None, &mut file).await.unwrap();
    drop(file);
    eprintln!("export: {}", stopwatch.report());
    let stopwatch = Stopwatch::start();
    let reader = std::io::BufReader::new(std::fs::File::open(&export_path).unwrap());
    let report = verify_export(reader, &verifier).unwrap();
    eprintln!(
        "verify_export: {} entries, {} checkpoints in {}",
        report.entries,
        report.checkpoints,
        stopwatch.report()
    );
}
