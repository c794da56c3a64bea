//! A crash under load, simulated in-process: the writer is torn down
//! mid-stream without a flush by shutting down its runtime, the store is
//! reopened from the same file, and only entries that were not yet committed
//! may be missing.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::time::Duration;

use common::{ORIGIN, connect, sample_entry, signer};
use portcullis_audit::{AuditConfig, AuditEntry, AuditLog, AuditQuery, search, verify_store};

const RECORDED: u64 = 30_000;

fn request_id(entry: &AuditEntry) -> String {
    match entry {
        AuditEntry::RequestDecision(request) => request.request_id.clone(),
        AuditEntry::AdminAction(admin) => admin.request_id.clone().unwrap_or_default(),
        AuditEntry::RequestOutcome(outcome) => outcome.request_id.clone(),
    }
}

#[test]
fn crash_loses_only_uncommitted_entries() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("portcullis.db").display()
    );
    let config = AuditConfig {
        checkpoint_every_entries: 1_000,
        ..AuditConfig::default()
    };

    // Phase 1: write under load, then "crash".
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (admin_index, committed_before_crash) = runtime.block_on(async {
        let pool = connect(&url).await;
        let log = AuditLog::open(pool, ORIGIN, signer(), config.clone())
            .await
            .unwrap();
        let handle = log.handle();
        let admin_receipt = log.append_now(&sample_entry(6)).await.unwrap();
        for i in 0..RECORDED {
            handle.record(&sample_entry(1_000_000 + i)).await.unwrap();
        }
        let committed = handle.status().committed_size;
        // The log, its handles and the writer task are abandoned here, with
        // entries still queued: no flush, no close.
        std::mem::forget(log);
        (admin_receipt.index, committed)
    });
    runtime.shutdown_timeout(Duration::from_secs(0));

    // Phase 2: reopen the file, verify, and compare with what was sent.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = connect(&url).await;
        portcullis_audit::ensure_schema(&pool).await.unwrap();
        let report = verify_store(&pool, ORIGIN, &signer().verifier(), None)
            .await
            .unwrap_or_else(|error| panic!("log does not verify after the crash: {error}"));
        let stored = report.entries;
        println!(
            "committed before the crash: {committed_before_crash}, stored after it: {stored}, lost: {}",
            1 + RECORDED - stored
        );
        assert!(stored >= committed_before_crash, "a committed entry was lost");
        assert!(stored >= 1 && admin_index == 0, "the acknowledged admin action was lost");
        // What survived is exactly a prefix of what was sent, in order.
        let survivors = search(
            &pool,
            &AuditQuery {
                origin: Some(ORIGIN.to_owned()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
        let mut by_index = survivors;
        by_index.sort_by_key(|stored| stored.index);
        assert_eq!(request_id(&by_index[0].entry), "admin-req-6");
        for stored_entry in &by_index[1..] {
            let sent = sample_entry(1_000_000 + stored_entry.index - 1);
            assert_eq!(stored_entry.entry, sent, "entry {} is not what was sent", stored_entry.index);
        }

        // The reopened log continues the same tree.
        let log = AuditLog::open(pool.clone(), ORIGIN, signer(), config).await.unwrap();
        let receipt = log.append_now(&sample_entry(13)).await.unwrap();
        assert_eq!(receipt.index, stored);
        log.close().await.unwrap();
        let report = verify_store(&pool, ORIGIN, &signer().verifier(), None).await.unwrap();
        assert_eq!((report.entries, report.unsigned_entries), (stored + 1, 0));
    });
}
