//! Shared test support: throwaway SQLite and PostgreSQL stores, sample
//! entries, and the attacker's tools for tampering with a store.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use portcullis_audit::{
    AdminActionEntry, AdminTargetKind, AuditEntry, Decision, NoteSigner, RequestDecisionEntry,
    SafeguardVerdict, install_sql_drivers,
};
use serde_json::json;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store that exists for one test.
pub struct TestStore {
    pub backend: Backend,
    pub url: String,
    pub pool: AnyPool,
    pub dir: tempfile::TempDir,
    postgres_cleanup: Option<(String, String)>,
}

fn require_all() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_ALL").is_ok_and(|value| value == "1")
}

/// Prints the skip line, or fails when every suite is required.
pub fn skip(reason: &str) {
    assert!(!require_all(), "PORTCULLIS_REQUIRE_ALL=1 but {reason}");
    println!("skipped: {reason}");
}

pub async fn connect(url: &str) -> AnyPool {
    install_sql_drivers();
    AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(|connection, _| {
            Box::pin(async move {
                use sqlx::Executor;
                if connection.backend_name().eq_ignore_ascii_case("sqlite") {
                    connection
                        .execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("connect to the test store")
}

pub async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("portcullis.db").display()
    );
    let pool = connect(&url).await;
    TestStore {
        backend: Backend::Sqlite,
        url,
        pool,
        dir,
        postgres_cleanup: None,
    }
}

/// A fresh PostgreSQL database on the server named by
/// `PORTCULLIS_TEST_PG_URL`, or `None` (after printing the skip line) when
/// the variable is unset.
pub async fn postgres_store() -> Option<TestStore> {
    let Ok(server_url) = std::env::var("PORTCULLIS_TEST_PG_URL") else {
        skip("PORTCULLIS_TEST_PG_URL is not set");
        return None;
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "audit_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        Timestamp::now().as_millisecond()
    );
    let admin = connect(&server_url).await;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create the test database");
    admin.close().await;
    let base = server_url.split('?').next().unwrap_or(&server_url);
    let (server, _) = base.rsplit_once('/').expect("url with a database path");
    let url = format!("{server}/{name}");
    let pool = connect(&url).await;
    Some(TestStore {
        backend: Backend::Postgres,
        url,
        pool,
        dir: tempfile::tempdir().unwrap(),
        postgres_cleanup: Some((server_url, name)),
    })
}

pub async fn store_for(backend: Backend) -> Option<TestStore> {
    match backend {
        Backend::Sqlite => Some(sqlite_store().await),
        Backend::Postgres => postgres_store().await,
    }
}

impl TestStore {
    /// Drops the PostgreSQL database; SQLite files go with the temp dir.
    pub async fn cleanup(self) {
        self.pool.close().await;
        if let Some((server_url, name)) = self.postgres_cleanup {
            let admin = connect(&server_url).await;
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }

    /// What an attacker with write access to the database does first.
    pub async fn drop_append_only_triggers(&self) {
        let statements: &[&str] = match self.backend {
            Backend::Sqlite => &[
                "DROP TRIGGER audit_entries_no_update",
                "DROP TRIGGER audit_entries_no_delete",
                "DROP TRIGGER audit_checkpoints_no_update",
                "DROP TRIGGER audit_checkpoints_no_delete",
            ],
            Backend::Postgres => &[
                "DROP TRIGGER audit_entries_append_only ON audit_entries",
                "DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints",
            ],
        };
        for statement in statements {
            sqlx::raw_sql(statement).execute(&self.pool).await.unwrap();
        }
    }

    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sql).execute(&self.pool).await.unwrap();
    }
}

pub const ORIGIN: &str = "portcullis/test-replica";

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, [42u8; 32]).unwrap()
}

pub fn start_time() -> Timestamp {
    "2026-11-20T12:00:00Z".parse().unwrap()
}

/// The `i`th sample entry: mostly request decisions over a few principals,
/// models and orders, with an admin action every seventh entry. Entry `i`
/// happens `i` seconds after [`start_time`].
pub fn sample_entry(i: u64) -> AuditEntry {
    let time = start_time() + SignedDuration::from_secs(i as i64);
    if i % 7 == 6 {
        return AuditEntry::from(AdminActionEntry {
            time,
            actor: "admin".to_owned(),
            action: "create".to_owned(),
            target_kind: AdminTargetKind::Order,
            target_id: format!("ord-{}", i % 3),
            payload: json!({"reference": format!("BIS-{i}"), "models": ["family:frontier"]}),
            request_id: Some(format!("admin-req-{i}")),
            replica: Some("test-replica".to_owned()),
        });
    }
    let principals = ["alice", "bruno", "chen", "dara", "emeka"];
    let models = ["mythos", "fable", "haiku"];
    let denied = i.is_multiple_of(4);
    AuditEntry::from(RequestDecisionEntry {
        request_id: format!("req-{i}"),
        time,
        principal_id: Some(principals[(i % 5) as usize].to_owned()),
        credential_id: Some(format!("key-{}", i % 5)),
        model: Some(models[(i % 3) as usize].to_owned()),
        action: "chat.completions".to_owned(),
        decision: if denied {
            Decision::Deny
        } else {
            Decision::Allow
        },
        status: if denied { 451 } else { 200 },
        policy_ids: if denied {
            vec!["export-control".to_owned()]
        } else {
            vec!["baseline".to_owned()]
        },
        order_ids: if denied {
            vec![format!("ord-{}", i % 3)]
        } else {
            vec![]
        },
        definition_profile: Some("ear".to_owned()),
        safeguard_verdict: Some(SafeguardVerdict::Allow),
        safeguard_score_ppm: Some((i * 1_234 % 1_000_000) as u32),
        safeguard_constitution: None,
        snapshot_version: 7,
        replica: "test-replica".to_owned(),
        location: None,
        identity: None,
        attributes: None,
        prompt_sha256: None,
        response_sha256: None,
        prompt: None,
        response: None,
    })
}
