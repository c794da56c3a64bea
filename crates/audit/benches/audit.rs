//! Criterion benchmarks for the audit log's hot paths: the in-memory Merkle
//! append, rendering an entry to its canonical leaf, and group-committed
//! appends with checkpoints to a SQLite file in WAL mode.
//!
//! Run with `cargo bench -p portcullis-audit --bench audit`.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use portcullis_audit::merkle::{Frontier, leaf_hash};
use portcullis_audit::{
    AuditConfig, AuditEntry, AuditLog, Decision, NoteSigner, RequestDecisionEntry,
    SafeguardVerdict, install_sql_drivers,
};
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

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

fn merkle_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(1));
    let leaf = leaf_hash(b"entry");
    let mut frontier = Frontier::new();
    group.bench_function("frontier_append", |b| b.iter(|| frontier.append(leaf)));
    group.bench_function("frontier_root_at_1m", |b| {
        let mut frontier = Frontier::new();
        for _ in 0..1_000_000 {
            frontier.append(leaf);
        }
        b.iter(|| frontier.root())
    });
    group.finish();
}

fn canonical_leaf(c: &mut Criterion) {
    let mut group = c.benchmark_group("entry");
    group.throughput(Throughput::Elements(1));
    let entry = request_entry(7);
    group.bench_function("canonical_json_and_leaf_hash", |b| {
        b.iter(|| leaf_hash(entry.to_canonical_json(7).unwrap().as_bytes()))
    });
    group.finish();
}

fn sqlite_append(c: &mut Criterion) {
    const BATCH: u64 = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("portcullis.db").display()
    );
    let log = runtime.block_on(async {
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
        let signer = NoteSigner::from_seed("portcullis/bench", [5u8; 32]).unwrap();
        AuditLog::open(pool, "portcullis/bench", signer, AuditConfig::default())
            .await
            .unwrap()
    });
    let entries: Vec<AuditEntry> = (0..BATCH).map(request_entry).collect();
    let mut group = c.benchmark_group("sqlite_file_wal");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("record_and_flush_with_checkpoints", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let handle = log.handle();
                for entry in &entries {
                    handle.record(entry).await.unwrap();
                }
                log.flush().await.unwrap();
            })
        })
    });
    group.finish();
    runtime.block_on(async { log.close().await.unwrap() });
}

criterion_group!(benches, merkle_append, canonical_leaf, sqlite_append);
criterion_main!(benches);
