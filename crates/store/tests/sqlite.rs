//! The store against a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use portcullis_domain::{
    ApiKey, GeneratedKey, ModelDraft, PrincipalAttributes, Provider, ReleaseState,
};
use portcullis_store::{Store, StoreError};

fn now() -> Timestamp {
    "2026-11-20T17:21:00Z".parse().unwrap()
}

fn model(name: &str) -> portcullis_domain::Model {
    ModelDraft {
        name: name.into(),
        provider: Provider::Mock,
        base_url: None,
        upstream_model: None,
        state: ReleaseState::Released,
        family: None,
        tags: vec!["fail_closed".into()],
        safeguard_profile: None,
        api_key: None,
        api_key_env: None,
    }
    .validate()
    .unwrap()
}

fn principal(id: &str) -> PrincipalAttributes {
    serde_json::from_value(serde_json::json!({"id": id, "organization": "acme"})).unwrap()
}

#[tokio::test]
async fn writes_bump_the_version_and_load_returns_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    assert!(dir.path().join("portcullis.db").exists());
    let mut versions = store.subscribe();
    let v0 = store.version().await.unwrap();

    let v1 = store.insert_model(&model("haiku"), now()).await.unwrap();
    assert!(v1 > v0);
    assert_eq!(*versions.borrow_and_update(), v1);

    let duplicate = store.insert_model(&model("haiku"), now()).await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::AlreadyExists { what: "model", .. })
        ),
        "{duplicate:?}"
    );

    store
        .insert_principal("Alice", &principal("alice"), now())
        .await
        .unwrap();
    let generated = GeneratedKey::generate().unwrap();
    let key = ApiKey {
        id: "key_1".into(),
        principal_id: "alice".into(),
        name: "laptop".into(),
        display_prefix: generated.display_prefix.clone(),
        secret_sha256: generated.secret_sha256.clone(),
        created_at: now(),
        expires_at: None,
        revoked_at: None,
    };
    store.insert_key(&key).await.unwrap();
    let orphan = ApiKey {
        id: "key_2".into(),
        principal_id: "nobody".into(),
        secret_sha256: "x".into(),
        ..key.clone()
    };
    assert!(matches!(
        store.insert_key(&orphan).await,
        Err(StoreError::NotFound {
            what: "principal",
            ..
        })
    ));

    let contents = store.load().await.unwrap();
    assert_eq!(contents.models.len(), 1);
    assert_eq!(contents.models[0].tags, ["fail_closed"]);
    assert_eq!(
        contents.principals[0].attributes.organization.as_deref(),
        Some("acme")
    );
    assert_eq!(contents.keys, vec![key.clone()]);
    assert_eq!(contents.version, store.version().await.unwrap());

    store.revoke_key("key_1", now()).await.unwrap();
    let revoked = store.get_key("key_1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now()));

    // Deleting a principal takes its keys with it.
    store.delete_principal("alice").await.unwrap();
    assert!(store.get_key("key_1").await.unwrap().is_none());
    assert!(matches!(
        store.delete_model("nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_second_handle_on_the_same_file_sees_committed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_data_dir(dir.path()).await.unwrap();
    writer.upsert_model(&model("fable"), now()).await.unwrap();
    let reader = Store::open_data_dir(dir.path()).await.unwrap();
    assert_eq!(
        reader.get_model("fable").await.unwrap().unwrap().name,
        "fable"
    );
    assert_eq!(
        reader.version().await.unwrap(),
        writer.version().await.unwrap()
    );
}
