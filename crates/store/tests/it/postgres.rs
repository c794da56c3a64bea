//! The store's behaviour table, and its change notifications, against a real
//! PostgreSQL server named by `PORTCULLIS_TEST_PG_URL`. Each test works in a
//! database of its own, created for it and dropped afterwards.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::behaviour;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use portcullis_store::{Backend, NewOrder, Store, StoreEvent, StoreListener};
use sqlx::{Connection, Executor, PgConnection, Row};

/// The server URL, or `None` (after printing why) when the suite must skip.
fn server_url() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("PORTCULLIS_TEST_PG_URL is unset but PORTCULLIS_REQUIRE_ALL=1");
            }
            println!("skipped: PORTCULLIS_TEST_PG_URL is unset");
            None
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

/// A database created for one test and dropped (forcibly, closing any
/// connection left open) when the guard goes out of scope.
struct TestDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create(server_url: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "portcullis_store_{}_{}_{}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(server_url).await.unwrap();
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        Self {
            url: with_database(server_url, &name),
            server_url: server_url.to_owned(),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop runs outside any async context we can borrow, so the cleanup
        // gets a small runtime on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&server_url).await {
                    let _ = admin
                        .execute(
                            format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str(),
                        )
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Waits for the listener's next event. The deadline only keeps a broken
/// build from hanging; it is not a latency bound.
async fn next_event(listener: &mut StoreListener) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(60), listener.recv())
        .await
        .expect("no store event within a minute")
        .expect("the listener stopped")
}

#[test]
fn database_names_are_swapped_into_server_urls() {
    let cases = [
        ("postgres://u@h:5/postgres", "postgres://u@h:5/t"),
        ("postgres://u@h:5", "postgres://u@h:5/t"),
        (
            "postgres://u@h:5/postgres?sslmode=disable",
            "postgres://u@h:5/t?sslmode=disable",
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(with_database(url, "t"), expected, "{url}");
    }
}

#[tokio::test]
async fn behaviour_table_on_postgres() {
    let Some(server) = server_url() else { return };
    behaviour::run_all(|| {
        let server = server.clone();
        async move {
            let database = TestDatabase::create(&server).await;
            let store = Store::open(&database.url).await.unwrap();
            let second = Store::open(&database.url).await.unwrap();
            assert_eq!(store.backend(), Backend::Postgres);
            (store, second, database)
        }
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent_across_concurrent_opens() {
    let Some(server) = server_url() else { return };
    let database = TestDatabase::create(&server).await;
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        assert_eq!(store.version().await.unwrap(), 1);
        store.close().await;
    }
}

#[tokio::test]
async fn listeners_hear_committed_versions_only() {
    let Some(server) = server_url() else { return };
    let database = TestDatabase::create(&server).await;
    let writer = Store::open(&database.url).await.unwrap();
    let reader = Store::open(&database.url).await.unwrap();
    let mut listener = reader.listen().unwrap();
    assert_eq!(next_event(&mut listener).await, StoreEvent::Resync);

    let v1 = writer
        .insert_model(&behaviour::model("haiku", &[]), behaviour::now())
        .await
        .unwrap();
    assert_eq!(next_event(&mut listener).await, StoreEvent::Version(v1));

    // An order insert bumps the version (and queues its notification)
    // before the insert that fails; the rollback must take both back.
    let document = serde_json::json!({"reference": "R-1"});
    let order = |id| NewOrder {
        id,
        reference: "R-1",
        document: &document,
        created_by: "admin",
        preview: None,
    };
    writer
        .insert_order(order("ord_1"), behaviour::now())
        .await
        .unwrap();
    assert_eq!(next_event(&mut listener).await, StoreEvent::Version(v1 + 1));
    assert!(
        writer
            .insert_order(order("ord_1"), behaviour::now())
            .await
            .is_err()
    );
    let v3 = writer.set_meta("k", "v").await.unwrap();
    assert_eq!(v3, v1 + 2);
    assert_eq!(
        next_event(&mut listener).await,
        StoreEvent::Version(v3),
        "nothing was heard of the rolled-back write"
    );

    // Replica reports are not store writes and notify nobody.
    writer
        .report_replica(
            "r1",
            v3,
            behaviour::now(),
            behaviour::now(),
            behaviour::now(),
        )
        .await
        .unwrap();
    let v4 = writer.set_meta("k", "w").await.unwrap();
    assert_eq!(next_event(&mut listener).await, StoreEvent::Version(v4));
}

#[tokio::test]
async fn a_listener_that_loses_its_connection_listens_again_then_asks_for_a_resync() {
    let Some(server) = server_url() else { return };
    let database = TestDatabase::create(&server).await;
    let store = Store::open(&database.url).await.unwrap();
    let mut listener = store.listen().unwrap();
    assert_eq!(next_event(&mut listener).await, StoreEvent::Resync);

    // Cut the listening connection from the server side.
    let mut admin = PgConnection::connect(&database.url).await.unwrap();
    let terminated = sqlx::query(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get::<i64, _>(0);
    assert_eq!(terminated, 1, "exactly the listening connection was cut");

    assert!(matches!(
        next_event(&mut listener).await,
        StoreEvent::Disconnected { .. }
    ));
    assert_eq!(next_event(&mut listener).await, StoreEvent::Resync);
    let version = store.set_meta("k", "v").await.unwrap();
    assert_eq!(
        next_event(&mut listener).await,
        StoreEvent::Version(version)
    );
}
