//! Writing, reopening, searching, exporting and proving, on SQLite and
//! PostgreSQL.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::io::BufReader;
use std::time::Duration;

use common::{Backend, ORIGIN, TestStore, sample_entry, signer, start_time, store_for};
use jiff::SignedDuration;
use portcullis_audit::{
    AuditConfig, AuditEntry, AuditLog, AuditQuery, CheckpointSource, Decision, EntryKind,
    FailureReason, VerifyError, WitnessTarget, count, export, list_origins, prove_consistency,
    prove_inclusion, search, verify_consistency_proof, verify_export, verify_inclusion_proof,
    verify_store,
};

fn small_checkpoints() -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: 10,
        checkpoint_interval: Duration::from_secs(3600),
        ..AuditConfig::default()
    }
}

async fn write_entries(store: &TestStore, range: std::ops::Range<u64>, config: AuditConfig) {
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), config)
        .await
        .unwrap();
    let handle = log.handle();
    for i in range {
        handle.record(&sample_entry(i)).await.unwrap();
    }
    log.close().await.unwrap();
}

async fn verify_ok(store: &TestStore) -> portcullis_audit::VerifyReport {
    verify_store(&store.pool, ORIGIN, &signer().verifier(), None)
        .await
        .unwrap_or_else(|error| panic!("log does not verify: {error}"))
}

async fn reopen_continues_the_same_tree(backend: Backend) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    write_entries(&store, 0..15, small_checkpoints()).await;
    write_entries(&store, 15..27, small_checkpoints()).await;
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), small_checkpoints())
        .await
        .unwrap();
    let receipt = log.append_now(&sample_entry(27)).await.unwrap();
    assert_eq!(receipt.index, 27);
    let stored = search(
        &store.pool,
        &AuditQuery {
            request_id: Some("admin-req-27".to_owned()),
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].leaf_hash, hex::encode(receipt.leaf_hash));
    log.close().await.unwrap();
    let report = verify_ok(&store).await;
    // Checkpoints: 10 and 15 (close), 25 and 27 (close), 28 (close).
    assert_eq!(
        (report.entries, report.signed_size, report.checkpoints),
        (28, 28, 5)
    );
    assert_eq!(
        list_origins(&store.pool).await.unwrap(),
        vec![ORIGIN.to_owned()]
    );
    store.cleanup().await;
}

#[tokio::test]
async fn sqlite_reopen_continues_the_same_tree() {
    reopen_continues_the_same_tree(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_reopen_continues_the_same_tree() {
    reopen_continues_the_same_tree(Backend::Postgres).await;
}

async fn replicas_keep_separate_logs(backend: Backend) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    let origins = ["portcullis/replica-a", "portcullis/replica-b"];
    let mut logs = Vec::new();
    for origin in origins {
        let signer =
            portcullis_audit::NoteSigner::from_seed(origin, [origin.len() as u8 + 3; 32]).unwrap();
        logs.push((
            AuditLog::open(
                store.pool.clone(),
                origin,
                signer.clone(),
                small_checkpoints(),
            )
            .await
            .unwrap(),
            signer,
        ));
    }
    for i in 0..30 {
        let (log, _) = &logs[(i % 2) as usize];
        log.record(&sample_entry(i)).await.unwrap();
    }
    let mut verifiers = Vec::new();
    for (log, signer) in logs {
        log.close().await.unwrap();
        verifiers.push(signer.verifier());
    }
    for (origin, verifier) in origins.iter().zip(&verifiers) {
        let report = verify_store(&store.pool, origin, verifier, None)
            .await
            .unwrap();
        assert_eq!(report.entries, 15);
    }
    // One replica's key does not vouch for the other's log.
    assert!(matches!(
        verify_store(&store.pool, origins[0], &verifiers[1], None).await,
        Err(VerifyError::Failed(_))
    ));
    assert_eq!(
        list_origins(&store.pool).await.unwrap(),
        origins.map(str::to_owned).to_vec()
    );
    store.cleanup().await;
}

#[tokio::test]
async fn sqlite_replicas_keep_separate_logs() {
    replicas_keep_separate_logs(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_replicas_keep_separate_logs() {
    replicas_keep_separate_logs(Backend::Postgres).await;
}

#[tokio::test]
async fn backpressure_waits_instead_of_dropping() {
    let store = common::sqlite_store().await;
    let config = AuditConfig {
        queue_capacity: 2,
        max_batch_entries: 3,
        commit_interval: Duration::from_millis(1),
        checkpoint_every_entries: 50,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), config)
        .await
        .unwrap();
    let mut producers = Vec::new();
    for producer in 0..4u64 {
        let handle = log.handle();
        producers.push(tokio::spawn(async move {
            for i in 0..100u64 {
                handle
                    .record(&sample_entry(producer * 1_000 + i))
                    .await
                    .unwrap();
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    let last = log.flush().await.unwrap().unwrap();
    assert_eq!(last.checkpoint.tree_size, 400);
    assert_eq!(log.handle().status().committed_size, 400);
    log.close().await.unwrap();
    let report = verify_ok(&store).await;
    assert_eq!((report.entries, report.checkpoints), (400, 8));
    store.cleanup().await;
}

#[tokio::test]
async fn timer_checkpoints_cover_idle_entries() {
    let store = common::sqlite_store().await;
    let witness = store.dir.path().join("witness.jsonl");
    let config = AuditConfig {
        checkpoint_every_entries: 1_000,
        checkpoint_interval: Duration::from_millis(50),
        witness: Some(WitnessTarget::File(witness.clone())),
        ..AuditConfig::default()
    };
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), config)
        .await
        .unwrap();
    let handle = log.handle();
    for i in 0..5 {
        handle.record(&sample_entry(i)).await.unwrap();
    }
    let mut status = handle.watch_status();
    // Wait for the interval checkpoint without flushing; the bound on
    // waiting only stops a broken timer from hanging the suite.
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.checkpoint_size == 5),
    )
    .await
    .expect("interval checkpoint was never written")
    .unwrap();
    let witnessed = portcullis_audit::read_witness(&witness, ORIGIN).unwrap();
    assert_eq!(witnessed.len(), 1);
    assert_eq!(witnessed[0].tree_size, 5);
    drop(handle);
    log.close().await.unwrap();
    store.cleanup().await;
}

#[tokio::test]
async fn closed_log_refuses_new_entries() {
    let store = common::sqlite_store().await;
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), AuditConfig::default())
        .await
        .unwrap();
    let handle = log.handle();
    log.close().await.unwrap();
    assert!(matches!(
        handle.record(&sample_entry(0)).await,
        Err(portcullis_audit::AuditError::WriterStopped)
    ));
    assert!(handle.append_now(&sample_entry(0)).await.is_err());
    store.cleanup().await;
}

#[tokio::test]
async fn invalid_config_and_float_payloads_are_rejected() {
    let store = common::sqlite_store().await;
    let zero = AuditConfig {
        checkpoint_every_entries: 0,
        ..AuditConfig::default()
    };
    assert!(
        AuditLog::open(store.pool.clone(), ORIGIN, signer(), zero)
            .await
            .is_err()
    );
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), AuditConfig::default())
        .await
        .unwrap();
    let AuditEntry::AdminAction(mut admin) = sample_entry(6) else {
        panic!("entry 6 is an admin action")
    };
    admin.payload = serde_json::json!({"score": 0.25});
    let error = log
        .append_now(&AuditEntry::AdminAction(admin))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("$.payload.score"), "{error}");
    assert_eq!(log.flush().await.unwrap(), None);
    log.close().await.unwrap();
    store.cleanup().await;
}

async fn search_finds_entries_for_investigations(backend: Backend) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    write_entries(&store, 0..70, small_checkpoints()).await;
    let all = AuditQuery::default();
    assert_eq!(count(&store.pool, &all).await.unwrap(), 70);
    let expected = |predicate: &dyn Fn(u64, &AuditEntry) -> bool| -> Vec<u64> {
        (0..70)
            .filter(|i| predicate(*i, &sample_entry(*i)))
            .collect()
    };
    let at = |seconds: i64| start_time() + SignedDuration::from_secs(seconds);
    // Each row: the query, and which sample entries it must return.
    let cases: Vec<(AuditQuery, Vec<u64>)> = vec![
        (
            AuditQuery {
                principal_id: Some("alice".to_owned()),
                kind: Some(EntryKind::RequestDecision),
                ..AuditQuery::default()
            },
            expected(&|i, entry| matches!(entry, AuditEntry::RequestDecision(_)) && i % 5 == 0),
        ),
        (
            AuditQuery {
                model: Some("fable".to_owned()),
                decision: Some(Decision::Allow),
                since: Some(at(30)),
                ..AuditQuery::default()
            },
            expected(&|i, entry| {
                matches!(entry, AuditEntry::RequestDecision(_))
                    && i % 3 == 1
                    && i % 4 != 0
                    && i >= 30
            }),
        ),
        (
            AuditQuery {
                order_id: Some("ord-1".to_owned()),
                ..AuditQuery::default()
            },
            expected(&|_, entry| entry.order_ids().contains(&"ord-1")),
        ),
        (
            AuditQuery {
                order_id: Some("ord-1".to_owned()),
                kind: Some(EntryKind::AdminAction),
                until: Some(at(40)),
                ..AuditQuery::default()
            },
            expected(&|i, entry| {
                matches!(entry, AuditEntry::AdminAction(_))
                    && entry.order_ids().contains(&"ord-1")
                    && i < 40
            }),
        ),
        (
            // Pattern characters in the id must not act as wildcards.
            AuditQuery {
                order_id: Some("ord-%".to_owned()),
                ..AuditQuery::default()
            },
            vec![],
        ),
        (
            AuditQuery {
                actor: Some("admin".to_owned()),
                limit: Some(3),
                ..AuditQuery::default()
            },
            vec![6, 13, 20],
        ),
        (
            AuditQuery {
                request_id: Some("req-42".to_owned()),
                origin: Some(ORIGIN.to_owned()),
                ..AuditQuery::default()
            },
            vec![42],
        ),
    ];
    for (query, expected_indices) in cases {
        assert!(
            !expected_indices.is_empty() || query.order_id.is_some(),
            "vacuous case {query:?}"
        );
        let found = search(&store.pool, &query).await.unwrap();
        let indices: Vec<u64> = found.iter().map(|stored| stored.index).collect();
        assert_eq!(indices, expected_indices, "{backend:?}: {query:?}");
        for stored in &found {
            assert_eq!(stored.entry, sample_entry(stored.index));
        }
        if query.limit.is_none() {
            assert_eq!(
                count(&store.pool, &query).await.unwrap(),
                expected_indices.len() as u64
            );
        }
    }
    // "Admitted after enforcement": no allowed request for `mythos` by
    // anyone after a time past the last entry.
    let after_enforcement = AuditQuery {
        kind: Some(EntryKind::RequestDecision),
        model: Some("mythos".to_owned()),
        decision: Some(Decision::Allow),
        since: Some(at(70)),
        ..AuditQuery::default()
    };
    assert_eq!(count(&store.pool, &after_enforcement).await.unwrap(), 0);
    let before = AuditQuery {
        since: Some(at(0)),
        ..after_enforcement
    };
    assert!(count(&store.pool, &before).await.unwrap() > 0);
    store.cleanup().await;
}

#[tokio::test]
async fn sqlite_search_finds_entries_for_investigations() {
    search_finds_entries_for_investigations(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_search_finds_entries_for_investigations() {
    search_finds_entries_for_investigations(Backend::Postgres).await;
}

async fn export_round_trip(
    store: &TestStore,
    since: Option<i64>,
    until: Option<i64>,
) -> (Vec<u8>, portcullis_audit::VerifyReport) {
    let at = |seconds: i64| start_time() + SignedDuration::from_secs(seconds);
    let mut exported = Vec::new();
    export(
        &store.pool,
        ORIGIN,
        since.map(at),
        until.map(at),
        &mut exported,
    )
    .await
    .unwrap();
    let report = verify_export(BufReader::new(&exported[..]), &signer().verifier())
        .unwrap_or_else(|error| panic!("export does not verify: {error}"));
    (exported, report)
}

async fn exports_verify_offline(backend: Backend) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    write_entries(&store, 0..45, small_checkpoints()).await;

    let (whole, report) = export_round_trip(&store, None, None).await;
    assert_eq!(
        (
            report.base_size,
            report.entries,
            report.checkpoints,
            report.signed_size,
            report.unsigned_entries
        ),
        (0, 45, 5, 45, 0)
    );

    // Entries 12..27 by time: starts from checkpoint 10, ends at checkpoint
    // 30, with leaves only for 10, 11 and 27..30.
    let (window, report) = export_round_trip(&store, Some(12), Some(27)).await;
    assert_eq!(
        (
            report.base_size,
            report.entries,
            report.checkpoints,
            report.signed_size
        ),
        (10, 15, 2, 30)
    );
    let text = String::from_utf8(window.clone()).unwrap();
    assert_eq!(
        text.lines()
            .filter(|line| line.contains(r#""type":"leaf""#))
            .count(),
        5
    );
    assert!(
        !text.contains("req-11"),
        "entries outside the window are not disclosed"
    );

    // Nothing in the window.
    let (_, report) = export_round_trip(&store, Some(1_000), None).await;
    assert_eq!((report.entries, report.signed_size), (0, 0));

    // A corrupt line is reported by its line number.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[4] = lines[4].replacen('{', "{{", 1);
    let corrupted = lines.join("\n");
    let failure = match verify_export(BufReader::new(corrupted.as_bytes()), &signer().verifier()) {
        Err(VerifyError::Failed(failure)) => failure,
        other => panic!("corrupt export accepted: {other:?}"),
    };
    assert_eq!(failure.line, Some(5));
    assert!(
        matches!(failure.reason, FailureReason::ExportLineCorrupt { .. }),
        "{failure}"
    );

    // An edited entry in a valid line fails at the next checkpoint.
    let whole_text = String::from_utf8(whole).unwrap();
    let edited = whole_text.replacen(r#""request_id":"req-3""#, r#""request_id":"req-X""#, 1);
    assert_ne!(edited, whole_text);
    let failure = match verify_export(BufReader::new(edited.as_bytes()), &signer().verifier()) {
        Err(VerifyError::Failed(failure)) => failure,
        other => panic!("edited export accepted: {other:?}"),
    };
    assert_eq!(failure.index, 0);
    assert!(
        matches!(
            failure.reason,
            FailureReason::RootMismatch {
                tree_size: 10,
                checkpoint: CheckpointSource::Export { .. }
            }
        ),
        "{failure}"
    );

    // A dropped entry line is out of order.
    let dropped: String = whole_text
        .lines()
        .filter(|line| !line.contains(r#""request_id":"req-3""#))
        .map(|line| format!("{line}\n"))
        .collect();
    let failure = match verify_export(BufReader::new(dropped.as_bytes()), &signer().verifier()) {
        Err(VerifyError::Failed(failure)) => failure,
        other => panic!("export with a dropped entry accepted: {other:?}"),
    };
    assert_eq!(failure.index, 3);
    store.cleanup().await;
}

#[tokio::test]
async fn sqlite_exports_verify_offline() {
    exports_verify_offline(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_exports_verify_offline() {
    exports_verify_offline(Backend::Postgres).await;
}

async fn proofs_check_outside_the_store(backend: Backend) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    write_entries(&store, 0..45, small_checkpoints()).await;
    let verifier = signer().verifier();
    for (index, tree_size) in [(0, 10), (9, 10), (13, 40), (44, 45), (0, 45)] {
        let proof = prove_inclusion(&store.pool, ORIGIN, index, tree_size)
            .await
            .unwrap();
        // The proof travels as JSON.
        let json = serde_json::to_string(&proof).unwrap();
        let proof: portcullis_audit::InclusionProof = serde_json::from_str(&json).unwrap();
        verify_inclusion_proof(&proof, &verifier).unwrap();
        let mut wrong_index = proof.clone();
        wrong_index.index = (index + 1) % tree_size;
        assert!(verify_inclusion_proof(&wrong_index, &verifier).is_err());
        let mut edited = proof.clone();
        edited.entry["time"] = serde_json::json!("2030-01-01T00:00:00Z");
        assert!(verify_inclusion_proof(&edited, &verifier).is_err());
        let mut edited_hash = proof.clone();
        edited_hash.leaf_hash = hex::encode([0u8; 32]);
        assert!(verify_inclusion_proof(&edited_hash, &verifier).is_err());
    }
    assert!(
        prove_inclusion(&store.pool, ORIGIN, 3, 12).await.is_err(),
        "no checkpoint of size 12"
    );

    for (old_size, new_size) in [(10, 45), (20, 30), (30, 30), (10, 20)] {
        let proof = prove_consistency(&store.pool, ORIGIN, old_size, new_size)
            .await
            .unwrap();
        verify_consistency_proof(&proof, &verifier).unwrap();
        let mut swapped = proof.clone();
        std::mem::swap(&mut swapped.old_checkpoint, &mut swapped.new_checkpoint);
        if old_size != new_size {
            assert!(verify_consistency_proof(&swapped, &verifier).is_err());
        }
        let mut other_key = proof.clone();
        other_key.origin = "portcullis/other".to_owned();
        assert!(verify_consistency_proof(&other_key, &verifier).is_err());
    }
    store.cleanup().await;
}

#[tokio::test]
async fn sqlite_proofs_check_outside_the_store() {
    proofs_check_outside_the_store(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_proofs_check_outside_the_store() {
    proofs_check_outside_the_store(Backend::Postgres).await;
}
