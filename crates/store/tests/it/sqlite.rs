//! The store's behaviour table against real SQLite files.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::behaviour;

use portcullis_store::{Backend, Store, StoreError};

#[tokio::test]
async fn behaviour_table_on_sqlite() {
    behaviour::run_all(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(dir.path()).await.unwrap();
        let second = Store::open_data_dir(dir.path()).await.unwrap();
        (store, second, dir)
    })
    .await;
}

#[tokio::test]
async fn the_data_dir_holds_one_database_file_and_has_no_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    assert!(dir.path().join("portcullis.db").exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(matches!(
        store.listen(),
        Err(StoreError::NotificationsUnsupported)
    ));
}
