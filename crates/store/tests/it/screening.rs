//! Imported screening lists and batch screening updates on a real SQLite file.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use portcullis_domain::{PrincipalAttributes, Screening, ScreeningStatus};
use portcullis_store::{ScreeningListFile, Store, StoredScreeningList};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn list(version: &str, imported_at: &str, contents: &[u8]) -> StoredScreeningList {
    StoredScreeningList {
        list_version: version.into(),
        source_format: "ofac_sdn".into(),
        imported_at: at(imported_at),
        imported_by: "admin".into(),
        entry_count: 2,
        skipped_rows: 1,
        files: vec![
            ScreeningListFile {
                role: "sdn".into(),
                file_name: "sdn.csv".into(),
                contents: contents.to_vec(),
            },
            ScreeningListFile {
                role: "alt".into(),
                file_name: "alt.csv".into(),
                contents: b"1,2,\"aka\",\"X\",-0-\n".to_vec(),
            },
        ],
    }
}

#[tokio::test]
async fn the_newest_import_is_in_force_and_files_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    assert_eq!(store.current_screening_list().await.unwrap(), None);
    let before = store.version().await.unwrap();
    // Bytes that are not UTF-8 must survive the round trip: the list
    // version is a hash of them.
    let first = list("v1", "2026-11-01T00:00:00Z", b"1,\"A\xffB\"\n");
    store.save_screening_list(&first).await.unwrap();
    assert!(store.version().await.unwrap() > before);
    assert_eq!(
        store.current_screening_list().await.unwrap(),
        Some(first.clone())
    );

    let second = list("v2", "2026-11-02T00:00:00Z", b"2,\"C\"\n");
    store.save_screening_list(&second).await.unwrap();
    assert_eq!(store.current_screening_list().await.unwrap(), Some(second));

    // Importing v1 again puts it back in force with the new time.
    let again = StoredScreeningList {
        imported_at: at("2026-11-03T00:00:00Z"),
        ..first.clone()
    };
    store.save_screening_list(&again).await.unwrap();
    assert_eq!(store.current_screening_list().await.unwrap(), Some(again));
}

#[tokio::test]
async fn screening_updates_touch_only_the_screening_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let now = at("2026-11-20T00:00:00Z");
    let alice: PrincipalAttributes = serde_json::from_value(serde_json::json!({
        "id": "alice", "organization": "acme", "employee": true, "note": "kept"
    }))
    .unwrap();
    store.insert_principal("Alice", &alice, now).await.unwrap();
    let matched = Screening::Detailed {
        status: ScreeningStatus::PotentialMatch,
        list_version: Some("v1".into()),
        entry: Some("sdn:1 X".into()),
        score: Some(0.93),
    };
    let before = store.version().await.unwrap();
    let (version, updated) = store
        .set_principal_screenings(
            &[
                ("alice".into(), matched.clone()),
                ("nobody".into(), matched.clone()),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(version, before + 1);
    assert_eq!(updated, ["alice"]);
    let stored = store.get_principal("alice").await.unwrap().unwrap();
    assert_eq!(stored.attributes.screening, matched);
    assert_eq!(
        stored.attributes,
        PrincipalAttributes {
            screening: matched,
            ..alice
        }
    );
    assert_eq!(stored.display_name, "Alice");
}
