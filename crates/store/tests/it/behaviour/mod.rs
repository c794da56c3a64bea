//! The store's behaviour as one table of cases, run unchanged against every
//! backend (`sqlite.rs`, `postgres.rs`), so the portable SQL is proven
//! portable rather than assumed to be.
//!
//! Each case gets two handles on one fresh, migrated database: `store` for
//! most work and `second` to show what another process would see.

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use portcullis_domain::{
    ApiKey, GeneratedKey, Model, ModelDraft, PrincipalAttributes, Provider, ReleaseState,
};
use portcullis_store::{
    Admin, AdminRole, NewOrder, OrderApplication, Review, ReviewConclusion, Store, StoreError,
};
use serde_json::json;

pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub type Case = (&'static str, fn(Store, Store) -> CaseFuture);

/// Every case, by name.
pub const CASES: &[Case] = &[
    (
        "writes bump the version and load returns everything",
        |s, t| Box::pin(writes_bump_the_version_and_load_returns_everything(s, t)),
    ),
    ("a second handle sees committed writes", |s, t| {
        Box::pin(a_second_handle_sees_committed_writes(s, t))
    }),
    (
        "upserts replace and updates need an existing row",
        |s, t| Box::pin(upserts_replace_and_updates_need_an_existing_row(s, t)),
    ),
    ("keys revoke once and rotate by name", |s, t| {
        Box::pin(keys_revoke_once_and_rotate_by_name(s, t))
    }),
    ("admins are unique and their tokens rotate", |s, t| {
        Box::pin(admins_are_unique_and_their_tokens_rotate(s, t))
    }),
    (
        "orders are immutable and lifting is a new record",
        |s, t| Box::pin(orders_are_immutable_and_lifting_is_a_new_record(s, t)),
    ),
    ("replica reports do not bump the version", |s, t| {
        Box::pin(replica_reports_do_not_bump_the_version(s, t))
    }),
    ("a failed write leaves the version alone", |s, t| {
        Box::pin(a_failed_write_leaves_the_version_alone(s, t))
    }),
    (
        "a review conclusion and its conditions land together or not at all",
        |s, t| Box::pin(a_review_conclusion_and_its_conditions_land_together(s, t)),
    ),
];

/// Runs every case, each on the fresh pair of handles `open` gives it, and
/// names the case that failed. `open` also returns a guard (a temporary
/// directory, a test database) that is dropped once the case is done.
pub async fn run_all<F, Fut, Guard>(mut open: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (Store, Store, Guard)>,
{
    for (name, case) in CASES {
        let (store, second, guard) = open().await;
        let outcome = tokio::spawn(case(store.clone(), second.clone())).await;
        store.close().await;
        second.close().await;
        drop(guard);
        if let Err(error) = outcome {
            panic!("case `{name}` failed: {error}");
        }
    }
}

pub fn now() -> Timestamp {
    "2026-11-20T17:21:00Z".parse().unwrap()
}

pub fn model(name: &str, tags: &[&str]) -> Model {
    ModelDraft {
        name: name.into(),
        provider: Provider::Mock,
        base_url: None,
        upstream_model: None,
        state: ReleaseState::Released,
        family: Some("frontier".into()),
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        safeguard_profile: None,
        api_key: None,
        api_key_env: None,
        forward_mock_headers: false,
    }
    .validate()
    .unwrap()
}

pub fn principal(id: &str, organization: &str) -> PrincipalAttributes {
    serde_json::from_value(json!({"id": id, "organization": organization})).unwrap()
}

fn key(id: &str, principal_id: &str, name: &str) -> ApiKey {
    let generated = GeneratedKey::generate().unwrap();
    ApiKey {
        id: id.into(),
        principal_id: principal_id.into(),
        name: name.into(),
        display_prefix: generated.display_prefix,
        secret_sha256: generated.secret_sha256,
        created_at: now(),
        expires_at: Some(now() + jiff::SignedDuration::from_hours(24)),
        revoked_at: None,
    }
}

fn admin(id: &str, token_sha256: &str) -> Admin {
    Admin {
        id: id.into(),
        display_name: format!("Admin {id}"),
        role: AdminRole::ComplianceOfficer,
        token_sha256: token_sha256.into(),
        created_at: now(),
        disabled_at: None,
    }
}

async fn writes_bump_the_version_and_load_returns_everything(store: Store, _second: Store) {
    let mut versions = store.subscribe();
    let v0 = store.version().await.unwrap();

    let v1 = store
        .insert_model(&model("haiku", &["fail_closed"]), now())
        .await
        .unwrap();
    assert!(v1 > v0);
    assert_eq!(*versions.borrow_and_update(), v1);

    let duplicate = store.insert_model(&model("haiku", &[]), now()).await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::AlreadyExists { what: "model", .. })
        ),
        "{duplicate:?}"
    );

    store
        .insert_principal("Alice", &principal("alice", "acme"), now())
        .await
        .unwrap();
    let key = key("key_1", "alice", "laptop");
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
    assert_eq!(contents.principals[0].display_name, "Alice");
    assert_eq!(contents.principals[0].created_at, now());
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
    assert!(store.get_principal("alice").await.unwrap().is_none());
    assert!(matches!(
        store.delete_model("nope").await,
        Err(StoreError::NotFound { what: "model", .. })
    ));
}

async fn a_second_handle_sees_committed_writes(store: Store, second: Store) {
    store
        .upsert_model(&model("fable", &["fail_closed"]), now())
        .await
        .unwrap();
    assert_eq!(
        second.get_model("fable").await.unwrap().unwrap().name,
        "fable"
    );
    assert_eq!(
        second.version().await.unwrap(),
        store.version().await.unwrap()
    );
    assert_eq!(
        second.load().await.unwrap().version,
        store.version().await.unwrap()
    );
}

async fn upserts_replace_and_updates_need_an_existing_row(store: Store, _second: Store) {
    store
        .upsert_model(&model("fable", &[]), now())
        .await
        .unwrap();
    store
        .upsert_model(&model("fable", &["fail_closed"]), now())
        .await
        .unwrap();
    assert_eq!(
        store.get_model("fable").await.unwrap().unwrap().tags,
        ["fail_closed"]
    );
    assert!(matches!(
        store.update_model(&model("mythos", &[]), now()).await,
        Err(StoreError::NotFound { what: "model", .. })
    ));
    store
        .update_model(&model("fable", &[]), now())
        .await
        .unwrap();
    assert!(
        store
            .get_model("fable")
            .await
            .unwrap()
            .unwrap()
            .tags
            .is_empty()
    );
    store.delete_model("fable").await.unwrap();
    assert!(store.get_model("fable").await.unwrap().is_none());

    store
        .upsert_principal("Bruno", &principal("bruno", "acme"), now())
        .await
        .unwrap();
    store
        .upsert_principal("Bruno Moreau", &principal("bruno", "lab"), now())
        .await
        .unwrap();
    let bruno = store.get_principal("bruno").await.unwrap().unwrap();
    assert_eq!(bruno.display_name, "Bruno Moreau");
    assert_eq!(bruno.attributes.organization.as_deref(), Some("lab"));
    assert!(matches!(
        store
            .update_principal("Nobody", &principal("nobody", "acme"), now())
            .await,
        Err(StoreError::NotFound {
            what: "principal",
            ..
        })
    ));
    assert!(matches!(
        store
            .insert_principal("Bruno", &principal("bruno", "acme"), now())
            .await,
        Err(StoreError::AlreadyExists {
            what: "principal",
            ..
        })
    ));

    store
        .upsert_policy("baseline", "permit (principal, action, resource);", now())
        .await
        .unwrap();
    store
        .upsert_policy("baseline", "forbid (principal, action, resource);", now())
        .await
        .unwrap();
    let policies = store.load().await.unwrap().policies;
    assert_eq!(policies.len(), 1);
    assert!(policies[0].source.starts_with("forbid"));
    store.delete_policy("baseline").await.unwrap();
    assert!(matches!(
        store.delete_policy("baseline").await,
        Err(StoreError::NotFound { what: "policy", .. })
    ));

    assert_eq!(store.get_meta("operator_organization").await.unwrap(), None);
    store
        .set_meta("operator_organization", "acme")
        .await
        .unwrap();
    store
        .set_meta("operator_organization", "lab")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_meta("operator_organization")
            .await
            .unwrap()
            .as_deref(),
        Some("lab")
    );
    assert_eq!(
        store.load().await.unwrap().meta,
        vec![("operator_organization".to_owned(), "lab".to_owned())]
    );
}

async fn keys_revoke_once_and_rotate_by_name(store: Store, _second: Store) {
    store
        .insert_principal("Alice", &principal("alice", "acme"), now())
        .await
        .unwrap();
    let first = key("key_a", "alice", "demo");
    let second_key = key("key_b", "alice", "demo");
    let other = key("key_c", "alice", "laptop");
    for key in [&first, &second_key, &other] {
        store.insert_key(key).await.unwrap();
    }
    assert!(matches!(
        store.insert_key(&first).await,
        Err(StoreError::AlreadyExists { what: "key", .. })
    ));

    let later = now() + jiff::SignedDuration::from_hours(1);
    store.revoke_key("key_a", now()).await.unwrap();
    store.revoke_key("key_a", later).await.unwrap();
    assert_eq!(
        store.get_key("key_a").await.unwrap().unwrap().revoked_at,
        Some(now()),
        "revoking twice keeps the first revocation time"
    );

    store
        .revoke_keys_named("alice", "demo", later)
        .await
        .unwrap();
    let keys = store.load().await.unwrap().keys;
    let revoked_at = |id: &str| keys.iter().find(|k| k.id == id).unwrap().revoked_at;
    assert_eq!(revoked_at("key_a"), Some(now()));
    assert_eq!(revoked_at("key_b"), Some(later));
    assert_eq!(revoked_at("key_c"), None, "other names are untouched");
    assert_eq!(
        keys.iter().find(|k| k.id == "key_c").unwrap().expires_at,
        other.expires_at
    );

    store.delete_key("key_c").await.unwrap();
    assert!(matches!(
        store.revoke_key("key_c", now()).await,
        Err(StoreError::NotFound { what: "key", .. })
    ));
}

async fn admins_are_unique_and_their_tokens_rotate(store: Store, _second: Store) {
    store.insert_admin(&admin("root", "aa")).await.unwrap();
    assert!(matches!(
        store.insert_admin(&admin("root", "bb")).await,
        Err(StoreError::AlreadyExists { what: "admin", .. })
    ));
    assert!(
        matches!(
            store.insert_admin(&admin("other", "aa")).await,
            Err(StoreError::AlreadyExists { .. })
        ),
        "two admins cannot share a token"
    );
    store.set_admin_token("root", "cc").await.unwrap();
    assert!(matches!(
        store.set_admin_token("nobody", "dd").await,
        Err(StoreError::NotFound { what: "admin", .. })
    ));
    let admins = store.load().await.unwrap().admins;
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].token_sha256, "cc");
    assert_eq!(admins[0].role, AdminRole::ComplianceOfficer);
    assert_eq!(admins[0].created_at, now());
    assert_eq!(admins[0].disabled_at, None);
}

async fn orders_are_immutable_and_lifting_is_a_new_record(store: Store, second: Store) {
    let document = json!({"reference": "BIS-2026-0521", "effect": "suspend",
        "models": ["family:frontier"], "principals": {"foreign_persons_under": "ear"}});
    let preview = json!({"principals_affected": 2});
    let before = store.version().await.unwrap();
    let order = store
        .insert_order(
            NewOrder {
                id: "ord_1",
                reference: "BIS-2026-0521",
                document: &document,
                created_by: "admin",
                preview: Some(&preview),
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(order.committed_version, before + 1);
    assert_eq!(order.lift, None);
    assert_eq!(second.get_order("ord_1").await.unwrap().unwrap(), order);

    let duplicate = store
        .insert_order(
            NewOrder {
                id: "ord_1",
                reference: "other",
                document: &document,
                created_by: "admin",
                preview: None,
            },
            now(),
        )
        .await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::AlreadyExists { what: "order", .. })
        ),
        "{duplicate:?}"
    );
    assert_eq!(
        store.version().await.unwrap(),
        order.committed_version,
        "the failed insert rolled its version bump back"
    );

    let lifted_at = now() + jiff::SignedDuration::from_mins(5);
    let lifted = store
        .lift_order("ord_1", "admin", Some("rescinded"), lifted_at)
        .await
        .unwrap();
    let lift = lifted.lift.clone().unwrap();
    assert_eq!(lift.lifted_at, lifted_at);
    assert_eq!(lift.reason.as_deref(), Some("rescinded"));
    assert_eq!(lift.committed_version, order.committed_version + 1);
    assert_eq!(
        lifted.document, document,
        "lifting leaves the order as it was"
    );
    assert!(matches!(
        store.lift_order("ord_1", "admin", None, lifted_at).await,
        Err(StoreError::AlreadyExists {
            what: "order lift",
            ..
        })
    ));
    assert!(matches!(
        store.lift_order("ord_404", "admin", None, lifted_at).await,
        Err(StoreError::NotFound { what: "order", .. })
    ));
    assert_eq!(store.list_orders().await.unwrap(), vec![lifted.clone()]);
    assert_eq!(second.load().await.unwrap().orders, vec![lifted]);
}

async fn replica_reports_do_not_bump_the_version(store: Store, second: Store) {
    let version = store.version().await.unwrap();
    let later = now() + jiff::SignedDuration::from_secs(3);
    store
        .report_replica("r1", version, now(), now(), now())
        .await
        .unwrap();
    second
        .report_replica("r1", version, now(), later, now())
        .await
        .unwrap();
    second
        .report_replica("r2", version, now(), now(), now())
        .await
        .unwrap();
    assert_eq!(store.version().await.unwrap(), version);
    let replicas = store.replicas().await.unwrap();
    assert_eq!(
        replicas
            .iter()
            .map(|r| r.replica_id.as_str())
            .collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert_eq!(replicas[0].confirmed_at, later, "the latest report wins");
    assert_eq!(replicas[0].applied_version, version);

    let application = |at: Timestamp, streams_cut: u64| OrderApplication {
        order_id: "ord_1".into(),
        replica_id: "r1".into(),
        event: "applied".into(),
        applied_at: at,
        applied_version: version,
        streams_cut,
    };
    store
        .record_order_application(&application(now(), 3))
        .await
        .unwrap();
    second
        .record_order_application(&application(later, 0))
        .await
        .unwrap();
    assert_eq!(
        store.order_applications("ord_1").await.unwrap(),
        vec![application(now(), 3)],
        "the first application per replica and event wins"
    );
    assert_eq!(store.version().await.unwrap(), version);
}

async fn a_failed_write_leaves_the_version_alone(store: Store, _second: Store) {
    store
        .insert_model(&model("haiku", &[]), now())
        .await
        .unwrap();
    let version = store.version().await.unwrap();
    let mut versions = store.subscribe();
    versions.borrow_and_update();
    assert!(
        store
            .insert_model(&model("haiku", &[]), now())
            .await
            .is_err()
    );
    assert!(store.delete_key("missing").await.is_err());
    assert_eq!(store.version().await.unwrap(), version);
    assert!(
        !versions.has_changed().unwrap(),
        "nothing is published for a write that did not commit"
    );
}

fn review(id: &str, model: &str) -> Review {
    Review {
        id: id.into(),
        model: model.into(),
        model_version: None,
        reviewing_party: "AISI".into(),
        party_kind: "government_evaluator".into(),
        programme: None,
        scope: "cyber".into(),
        requested_at: now(),
        access_granted_at: None,
        access: None,
        concluded_at: None,
        decision: None,
        rationale: None,
        concluded_by: None,
        conditions: Vec::new(),
        created_by: "carol".into(),
        created_at: now(),
    }
}

async fn a_review_conclusion_and_its_conditions_land_together(store: Store, second: Store) {
    store
        .insert_model(&model("fable", &[]), now())
        .await
        .unwrap();
    let conditions = [
        json!({"tag": "us_persons_only"}),
        json!({"text": "monthly report"}),
    ];

    // The conditioned model is gone by the time the conclusion is written
    // (the same failure as a crash between the two writes): nothing of the
    // conclusion may remain, or the release check would accept a review
    // whose conditions were never applied.
    store
        .insert_review(&review("rev_a", "ghost"))
        .await
        .unwrap();
    let version = store.version().await.unwrap();
    let ghost = model("ghost", &["us_persons_only"]);
    let failed = store
        .conclude_review(
            &ReviewConclusion {
                id: "rev_a",
                decision: "approve_with_conditions",
                rationale: "safe with the tag",
                conditions: &conditions,
                concluded_by: "carol",
                enforce: Some((&ghost, &[0])),
            },
            now(),
        )
        .await;
    assert!(
        matches!(failed, Err(StoreError::NotFound { what: "model", .. })),
        "{failed:?}"
    );
    let untouched = second.get_review("rev_a").await.unwrap().unwrap();
    assert_eq!(untouched.concluded_at, None);
    assert_eq!(untouched.decision, None);
    assert!(
        untouched.conditions.is_empty(),
        "{:?}",
        untouched.conditions
    );
    assert_eq!(store.version().await.unwrap(), version);

    // A conclusion that commits carries its conditions, the model change
    // and a new version, all visible to another handle at once.
    store
        .insert_review(&review("rev_b", "fable"))
        .await
        .unwrap();
    let tagged = model("fable", &["us_persons_only"]);
    let concluded = store
        .conclude_review(
            &ReviewConclusion {
                id: "rev_b",
                decision: "approve_with_conditions",
                rationale: "safe with the tag",
                conditions: &conditions,
                concluded_by: "carol",
                enforce: Some((&tagged, &[0])),
            },
            now(),
        )
        .await
        .unwrap();
    assert!(concluded.version.is_some_and(|v| v > version));
    let seen = second.get_review("rev_b").await.unwrap().unwrap();
    assert_eq!(seen.decision.as_deref(), Some("approve_with_conditions"));
    let enforced: Vec<_> = seen
        .conditions
        .iter()
        .map(|c| (c.position, c.enforced_at.is_some()))
        .collect();
    assert_eq!(enforced, [(0, true), (1, false)]);
    let contents = second.load().await.unwrap();
    let fable = contents.models.iter().find(|m| m.name == "fable").unwrap();
    assert!(fable.has_tag("us_persons_only"));

    // A second conclusion is refused and changes nothing.
    let again = store
        .conclude_review(
            &ReviewConclusion {
                id: "rev_b",
                decision: "reject",
                rationale: "changed my mind",
                conditions: &[],
                concluded_by: "mallory",
                enforce: None,
            },
            now(),
        )
        .await;
    assert!(again.is_err());
    let after = second.get_review("rev_b").await.unwrap().unwrap();
    assert_eq!(after.decision.as_deref(), Some("approve_with_conditions"));
    assert_eq!(after.conditions.len(), 2);
}
