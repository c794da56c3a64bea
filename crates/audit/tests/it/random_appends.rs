//! Property: for random sequences of appends, flushes and reopens on a real
//! SQLite file, every checkpoint verifies, every inclusion proof against
//! every checkpoint checks, and consistency holds between consecutive
//! checkpoints.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::time::Duration;

use common::{ORIGIN, sample_entry, signer, sqlite_store};
use portcullis_audit::{
    AuditConfig, AuditLog, prove_consistency, prove_inclusion, read_witness,
    verify_consistency_proof, verify_inclusion_proof, verify_store,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Step {
    Record,
    AppendNow,
    Flush,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Record),
        3 => Just(Step::AppendNow),
        1 => Just(Step::Flush),
        1 => Just(Step::Reopen),
    ]
}

async fn run(steps: Vec<Step>, checkpoint_every_entries: u64) {
    let store = sqlite_store().await;
    let config = AuditConfig {
        checkpoint_every_entries,
        checkpoint_interval: Duration::from_secs(3600),
        witness: Some(portcullis_audit::WitnessTarget::Directory(
            store.dir.path().to_path_buf(),
        )),
        ..AuditConfig::default()
    };
    let open = || AuditLog::open(store.pool.clone(), ORIGIN, signer(), config.clone());
    let mut log = open().await.unwrap();
    let mut appended = 0u64;
    for step in steps {
        match step {
            Step::Record => {
                log.record(&sample_entry(appended)).await.unwrap();
                appended += 1;
            }
            Step::AppendNow => {
                let receipt = log.append_now(&sample_entry(appended)).await.unwrap();
                assert_eq!(receipt.index, appended);
                appended += 1;
            }
            Step::Flush => {
                let latest = log.flush().await.unwrap();
                assert_eq!(
                    latest.map_or(0, |signed| signed.checkpoint.tree_size),
                    appended
                );
            }
            Step::Reopen => {
                log.close().await.unwrap();
                log = open().await.unwrap();
            }
        }
    }
    log.close().await.unwrap();

    let verifier = signer().verifier();
    let report = verify_store(&store.pool, ORIGIN, &verifier, Some(store.dir.path()))
        .await
        .unwrap_or_else(|error| panic!("random log does not verify: {error}"));
    assert_eq!(
        (report.entries, report.signed_size, report.unsigned_entries),
        (appended, appended, 0)
    );

    let checkpoints = read_witness(store.dir.path(), ORIGIN).unwrap();
    assert_eq!(checkpoints.len() as u64, report.checkpoints);
    let mut previous_size = 0;
    for checkpoint in &checkpoints {
        assert!(
            checkpoint.tree_size > previous_size,
            "checkpoint sizes strictly grow"
        );
        for index in 0..checkpoint.tree_size {
            let proof = prove_inclusion(&store.pool, ORIGIN, index, checkpoint.tree_size)
                .await
                .unwrap();
            verify_inclusion_proof(&proof, &verifier).unwrap();
        }
        if previous_size > 0 {
            let proof = prove_consistency(&store.pool, ORIGIN, previous_size, checkpoint.tree_size)
                .await
                .unwrap();
            verify_consistency_proof(&proof, &verifier).unwrap();
        }
        previous_size = checkpoint.tree_size;
    }
    store.cleanup().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn random_append_sequences_verify(
        steps in proptest::collection::vec(step(), 1..60),
        checkpoint_every_entries in 1u64..9,
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(steps, checkpoint_every_entries));
    }
}
