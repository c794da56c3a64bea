//! Every tampering case the verifier must detect, on a real SQLite file and
//! on a real PostgreSQL database. Each case starts from the same 45-entry log
//! (checkpoints at 10, 20, 30, 40 and 45, all copied to a witness), tampers
//! with the store the way an attacker with database access would, and checks
//! the first bad index and the reason the verifier reports.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::time::Duration;

use common::{Backend, ORIGIN, TestStore, sample_entry, signer, store_for};
use portcullis_audit::{
    AuditConfig, AuditLog, Checkpoint, CheckpointSource, FailureReason, NoteSigner, VerifyError,
    VerifyFailure, VerifyReport, WitnessTarget, verify_store,
};

const ENTRIES: u64 = 45;

fn config(store: &TestStore) -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: 10,
        checkpoint_interval: Duration::from_secs(3600),
        witness: Some(WitnessTarget::Directory(store.dir.path().to_path_buf())),
        ..AuditConfig::default()
    }
}

async fn populate(store: &TestStore) {
    let log = AuditLog::open(store.pool.clone(), ORIGIN, signer(), config(store))
        .await
        .unwrap();
    for i in 0..ENTRIES {
        if i % 2 == 0 {
            log.append_now(&sample_entry(i)).await.unwrap();
        } else {
            log.record(&sample_entry(i)).await.unwrap();
        }
    }
    let last = log.close().await.unwrap().unwrap();
    assert_eq!(last.checkpoint.tree_size, ENTRIES);
}

async fn verify(store: &TestStore, with_witness: bool) -> Result<VerifyReport, VerifyFailure> {
    let witness = with_witness.then(|| store.dir.path());
    match verify_store(&store.pool, ORIGIN, &signer().verifier(), witness).await {
        Ok(report) => Ok(report),
        Err(VerifyError::Failed(failure)) => Err(failure),
        Err(VerifyError::Audit(error)) => panic!("verification could not run: {error}"),
    }
}

async fn entry_row(store: &TestStore, index: i64) -> (String, String) {
    sqlx::query_as::<_, (String, String)>(
        "SELECT entry, leaf_hash FROM audit_entries WHERE origin = $1 AND idx = $2",
    )
    .bind(ORIGIN)
    .bind(index)
    .fetch_one(&store.pool)
    .await
    .unwrap()
}

async fn set_entry(store: &TestStore, index: i64, entry: &str, leaf_hash: &str) {
    sqlx::query(
        "UPDATE audit_entries SET entry = $1, leaf_hash = $2 WHERE origin = $3 AND idx = $4",
    )
    .bind(entry.to_owned())
    .bind(leaf_hash.to_owned())
    .bind(ORIGIN)
    .bind(index)
    .execute(&store.pool)
    .await
    .unwrap();
}

fn leaf_hex(entry: &str) -> String {
    hex::encode(portcullis_audit::merkle::leaf_hash(entry.as_bytes()))
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    EditEntryOnly,
    EditEntryAndLeafHash,
    EditSearchColumn,
    DeleteEntry,
    SwapEntries,
    TruncateEntries,
    TruncateEntriesAndCheckpoints,
    ForgeCheckpointSignature,
    ShrinkingCheckpoint,
    DeleteCheckpoint,
}

async fn apply(store: &TestStore, tamper: Tamper) {
    store.drop_append_only_triggers().await;
    match tamper {
        Tamper::EditEntryOnly => {
            // Entry 14 is an allowed request; the attacker flips it to a
            // denial in the hashed text but leaves the leaf hash alone.
            let (entry, leaf) = entry_row(store, 14).await;
            let edited = entry.replace("\"allow\"", "\"deny\"");
            assert_ne!(edited, entry);
            set_entry(store, 14, &edited, &leaf).await;
        }
        Tamper::EditEntryAndLeafHash => {
            // Entry 15 is a request by alice; the attacker rewrites the
            // principal and recomputes the leaf hash.
            let (entry, _) = entry_row(store, 15).await;
            let edited = entry.replace("\"alice\"", "\"mallory\"");
            assert_ne!(edited, entry);
            set_entry(store, 15, &edited, &leaf_hex(&edited)).await;
            // A careful attacker keeps the search columns consistent too.
            store
                .execute(&format!(
                    "UPDATE audit_entries SET principal_id = 'mallory' WHERE origin = '{ORIGIN}' AND idx = 15"
                ))
                .await;
        }
        Tamper::EditSearchColumn => {
            // Entry 7 is a request for `fable`; only the search column
            // changes, hiding it from a search by model.
            store
                .execute(&format!(
                    "UPDATE audit_entries SET model = 'haiku' WHERE origin = '{ORIGIN}' AND idx = 7"
                ))
                .await;
        }
        Tamper::DeleteEntry => {
            store
                .execute(&format!(
                    "DELETE FROM audit_entries WHERE origin = '{ORIGIN}' AND idx = 22"
                ))
                .await;
        }
        Tamper::SwapEntries => {
            let (entry_5, leaf_5) = entry_row(store, 5).await;
            let (entry_6, leaf_6) = entry_row(store, 6).await;
            set_entry(store, 5, &entry_6, &leaf_6).await;
            set_entry(store, 6, &entry_5, &leaf_5).await;
        }
        Tamper::TruncateEntries => {
            store
                .execute(&format!(
                    "DELETE FROM audit_entries WHERE origin = '{ORIGIN}' AND idx >= 35"
                ))
                .await;
        }
        Tamper::TruncateEntriesAndCheckpoints => {
            store
                .execute(&format!(
                    "DELETE FROM audit_entries WHERE origin = '{ORIGIN}' AND idx >= 25"
                ))
                .await;
            store
                .execute(&format!(
                    "DELETE FROM audit_checkpoints WHERE origin = '{ORIGIN}' AND tree_size > 25"
                ))
                .await;
        }
        Tamper::ForgeCheckpointSignature => {
            // Same key name, different key: what an attacker without the
            // signing key can produce after rewriting the tree.
            let impostor = NoteSigner::from_seed(ORIGIN, [1u8; 32]).unwrap();
            let root: String = sqlx::query_scalar(
                "SELECT root_hash FROM audit_checkpoints WHERE origin = $1 AND tree_size = 30",
            )
            .bind(ORIGIN)
            .fetch_one(&store.pool)
            .await
            .unwrap();
            let mut root_hash = [0u8; 32];
            hex::decode_to_slice(&root, &mut root_hash).unwrap();
            let forged = Checkpoint {
                origin: ORIGIN.to_owned(),
                tree_size: 30,
                root_hash,
            }
            .sign(&impostor)
            .unwrap();
            sqlx::query(
                "UPDATE audit_checkpoints SET note = $1 WHERE origin = $2 AND tree_size = 30",
            )
            .bind(forged)
            .bind(ORIGIN)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        Tamper::ShrinkingCheckpoint => {
            // A genuinely signed checkpoint, appended after size 45, that
            // claims size 30: what a writer restored from an old backup
            // would publish.
            let row: (i64, String, String) = sqlx::query_as(
                "SELECT tree_size, root_hash, frontier FROM audit_checkpoints WHERE origin = $1 AND tree_size = 30",
            )
            .bind(ORIGIN)
            .fetch_one(&store.pool)
            .await
            .unwrap();
            let mut root_hash = [0u8; 32];
            hex::decode_to_slice(&row.1, &mut root_hash).unwrap();
            let note = Checkpoint {
                origin: ORIGIN.to_owned(),
                tree_size: 30,
                root_hash,
            }
            .sign(&signer())
            .unwrap();
            sqlx::query(
                "INSERT INTO audit_checkpoints (origin, seq, tree_size, root_hash, frontier, note) VALUES ($1, 5, 30, $2, $3, $4)",
            )
            .bind(ORIGIN)
            .bind(row.1)
            .bind(row.2)
            .bind(note)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        Tamper::DeleteCheckpoint => {
            store
                .execute(&format!(
                    "DELETE FROM audit_checkpoints WHERE origin = '{ORIGIN}' AND seq = 1"
                ))
                .await;
        }
    }
}

async fn append_only_triggers_reject_changes(store: &TestStore) {
    for statement in [
        format!("UPDATE audit_entries SET model = 'x' WHERE origin = '{ORIGIN}' AND idx = 1"),
        format!("DELETE FROM audit_entries WHERE origin = '{ORIGIN}' AND idx = 1"),
        format!("UPDATE audit_checkpoints SET note = 'x' WHERE origin = '{ORIGIN}'"),
        format!("DELETE FROM audit_checkpoints WHERE origin = '{ORIGIN}'"),
    ] {
        let error = sqlx::raw_sql(&statement)
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    if store.backend == Backend::Postgres {
        let error = sqlx::raw_sql("TRUNCATE audit_entries")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
}

/// Whether a reported reason is the expected one.
type ReasonCheck = Box<dyn Fn(&FailureReason) -> bool>;

async fn run_all_cases(backend: Backend) {
    // Each row: the tampering, whether the witness is consulted, and the
    // expected first bad index and reason.
    let cases: Vec<(Tamper, bool, u64, ReasonCheck)> = vec![
        (
            Tamper::EditEntryOnly,
            false,
            14,
            Box::new(|reason| *reason == FailureReason::LeafHashMismatch),
        ),
        (
            Tamper::EditEntryAndLeafHash,
            false,
            10,
            Box::new(|reason| {
                matches!(
                    reason,
                    FailureReason::RootMismatch {
                        tree_size: 20,
                        checkpoint: CheckpointSource::Store { seq: 1 }
                    }
                )
            }),
        ),
        (
            Tamper::EditSearchColumn,
            false,
            7,
            Box::new(|reason| *reason == FailureReason::ColumnMismatch { column: "model" }),
        ),
        (
            Tamper::DeleteEntry,
            false,
            22,
            Box::new(|reason| *reason == FailureReason::EntryMissing),
        ),
        (
            Tamper::SwapEntries,
            false,
            5,
            Box::new(|reason| *reason == FailureReason::EntryOutOfPlace { claimed_index: 6 }),
        ),
        (
            Tamper::TruncateEntries,
            false,
            35,
            Box::new(|reason| {
                matches!(
                    reason,
                    FailureReason::Truncated {
                        tree_size: 40,
                        entries_present: 35,
                        checkpoint: CheckpointSource::Store { seq: 3 }
                    }
                )
            }),
        ),
        (
            Tamper::TruncateEntriesAndCheckpoints,
            true,
            25,
            Box::new(|reason| {
                matches!(
                    reason,
                    FailureReason::Truncated {
                        tree_size: 30,
                        entries_present: 25,
                        checkpoint: CheckpointSource::Witness { line: 3 }
                    }
                )
            }),
        ),
        (
            Tamper::ForgeCheckpointSignature,
            false,
            20,
            Box::new(|reason| {
                matches!(
                    reason,
                    FailureReason::CheckpointSignature {
                        checkpoint: CheckpointSource::Store { seq: 2 },
                        ..
                    }
                )
            }),
        ),
        (
            Tamper::ShrinkingCheckpoint,
            false,
            30,
            Box::new(|reason| {
                matches!(
                    reason,
                    FailureReason::CheckpointSizeDecreased {
                        previous_size: 45,
                        tree_size: 30,
                        checkpoint: CheckpointSource::Store { seq: 5 }
                    }
                )
            }),
        ),
        (
            Tamper::DeleteCheckpoint,
            false,
            10,
            Box::new(|reason| *reason == FailureReason::CheckpointMissing { seq: 1 }),
        ),
    ];
    for (tamper, with_witness, expected_index, expected_reason) in cases {
        let Some(store) = store_for(backend).await else {
            return;
        };
        populate(&store).await;
        let report = verify(&store, true).await.expect("untampered log verifies");
        assert_eq!(
            (
                report.entries,
                report.checkpoints,
                report.witness_checkpoints,
                report.signed_size,
                report.unsigned_entries
            ),
            (ENTRIES, 5, 5, ENTRIES, 0)
        );
        append_only_triggers_reject_changes(&store).await;
        apply(&store, tamper).await;
        let failure = verify(&store, with_witness)
            .await
            .expect_err(&format!("{backend:?}: {tamper:?} went undetected"));
        assert_eq!(
            failure.index, expected_index,
            "{backend:?}: {tamper:?}: {failure}"
        );
        assert!(
            expected_reason(&failure.reason),
            "{backend:?}: {tamper:?}: unexpected reason: {failure}"
        );
        if matches!(tamper, Tamper::TruncateEntriesAndCheckpoints) {
            // Without the witness the shortened log is self-consistent:
            // this is exactly the case the witness exists for.
            let report = verify(&store, false)
                .await
                .expect("self-consistent without witness");
            assert_eq!((report.entries, report.signed_size), (25, 20));
        }
        store.cleanup().await;
    }
}

#[tokio::test]
async fn sqlite_detects_every_tampering() {
    run_all_cases(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_detects_every_tampering() {
    run_all_cases(Backend::Postgres).await;
}
