//! Governance through the admin router as a service (no sockets): the
//! two-person rule on releases, transitions refused with their reason,
//! evidence whose hash does not match, review conditions enforced on the
//! model, the findings workflow, and reviewer keys that stop at expiry.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use portcullis_domain::{ManualClock, ModelDraft, PrincipalAttributes, Provider, ReleaseState};
use portcullis_gateway::{Config, Gateway};
use portcullis_store::{Admin, AdminRole, NewFinding, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const ROOT: &str = "pcla_root_token";
const SECOND: &str = "pcla_second_token";
const AUDITOR: &str = "pcla_auditor_token";

struct World {
    gateway: Arc<Gateway>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let start: Timestamp = "2026-11-20T22:00:00Z".parse().unwrap();
    for (name, state) in [
        ("mythos", ReleaseState::Internal),
        ("haiku", ReleaseState::Released),
    ] {
        let draft = ModelDraft {
            name: name.into(),
            provider: Provider::Mock,
            base_url: None,
            upstream_model: None,
            state,
            family: None,
            tags: vec![],
            safeguard_profile: None,
            api_key: None,
            api_key_env: None,
            forward_mock_headers: false,
        };
        store
            .upsert_model(&draft.validate().unwrap(), start)
            .await
            .unwrap();
    }
    let reviewers: PrincipalAttributes =
        serde_json::from_value(json!({"id": "evaluators", "organization": "caisi"})).unwrap();
    store
        .upsert_principal("evaluators", &reviewers, start)
        .await
        .unwrap();
    for (id, role, token) in [
        ("root", AdminRole::Admin, ROOT),
        ("second", AdminRole::Approver, SECOND),
        ("auditor", AdminRole::ComplianceOfficer, AUDITOR),
    ] {
        store
            .insert_admin(&Admin {
                id: id.into(),
                display_name: id.into(),
                role,
                token_sha256: portcullis_domain::hash_api_key(token),
                created_at: start,
                disabled_at: None,
            })
            .await
            .unwrap();
    }
    store
        .insert_finding(
            NewFinding {
                id: "F-1",
                model: Some("mythos"),
                reporter: "researcher",
                severity: "high",
                prompts: &json!(["split the payload across turns"]),
                notes: "reported by email",
                created_by: "root",
            },
            start,
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let mut config = Config::default();
    config.store.data_dir = Some(dir.path().to_path_buf());
    let gateway = Gateway::new(config, store, clock.clone(), None)
        .await
        .unwrap();
    World {
        gateway,
        clock,
        _dir: dir,
    }
}

async fn call(
    world: &World,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let response = portcullis_gateway::admin_router(world.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn chat(world: &World, key: &str, model: &str) -> StatusCode {
    let request = Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .unwrap();
    portcullis_gateway::data_router(world.gateway.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

fn state_of(world: &World, model: &str) -> ReleaseState {
    world.gateway.snapshot.load().model(model).unwrap().state
}

#[tokio::test]
async fn releasing_needs_a_review_and_a_second_admin() {
    let w = world().await;
    let release = json!({"to": "released", "rationale": "ready"});
    // No review and no override: refused with the reason.
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/models/mythos/transitions",
        release.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a concluded review"),
        "{body}"
    );

    // A review concluded with a condition the system enforces.
    let (status, review) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/reviews",
        json!({
        "model": "mythos", "reviewing_party": "US CAISI", "party_kind": "government_evaluator",
        "programme": "voluntary pre-deployment testing", "scope": "cyber offence uplift"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{review}");
    let review_id = review["id"].as_str().unwrap().to_owned();
    let report = r#"{"recall":0.93}"#;
    let wrong = "0".repeat(64);
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        &format!("/admin/v1/reviews/{review_id}/evidence"),
        json!({"name": "eval.json", "kind": "eval_report", "content": report, "sha256": wrong}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "hash_mismatch");
    let (status, artifact) = call(
        &w,
        ROOT,
        "POST",
        &format!("/admin/v1/reviews/{review_id}/evidence"),
        json!({"name": "eval.json", "kind": "eval_report", "content": report}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{artifact}");
    assert_eq!(artifact["size_bytes"], report.len());
    assert!(artifact["audit"]["index"].is_u64(), "{artifact}");
    let (status, concluded) = call(&w, ROOT, "POST", &format!("/admin/v1/reviews/{review_id}/conclude"),
        json!({"decision": "approve_with_conditions", "rationale": "no greater uplift than released models",
               "conditions": [{"tag": "us_persons_only"}, {"text": "publish the system card"}]})).await;
    assert_eq!(status, StatusCode::OK, "{concluded}");
    let model = w.gateway.snapshot.load().model("mythos").unwrap().clone();
    assert!(
        model.has_tag("us_persons_only"),
        "the condition is enforced on the model"
    );
    let (status, _) = call(
        &w,
        ROOT,
        "POST",
        &format!("/admin/v1/reviews/{review_id}/conclude"),
        json!({"decision": "reject", "rationale": "again"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a review concludes once");

    // Now the release waits for a second admin.
    let (status, pending) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/models/mythos/transitions",
        release,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(state_of(&w, "mythos"), ReleaseState::Internal);
    let approve = format!(
        "/admin/v1/approvals/{}/approve",
        pending["approval"]["id"].as_str().unwrap()
    );
    let (status, body) = call(&w, ROOT, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "same_person");
    let (status, body) = call(&w, AUDITOR, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(state_of(&w, "mythos"), ReleaseState::Internal);
    let (status, body) = call(&w, SECOND, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state_of(&w, "mythos"), ReleaseState::Released);
    assert_eq!(body["result"]["approved_by"], "second");
    assert_eq!(body["result"]["actor"], "root");
    assert_eq!(body["result"]["review_id"], review_id.as_str());
    let (status, _) = call(&w, SECOND, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "an approval is used once");

    // PUT cannot change the state behind the lifecycle's back.
    let (status, body) = call(
        &w,
        ROOT,
        "PUT",
        "/admin/v1/models/mythos",
        json!({"name": "mythos", "provider": "mock", "state": "internal"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/transitions")
    );

    let (status, body) = call(
        &w,
        ROOT,
        "GET",
        "/admin/v1/models/mythos/transitions",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let transitions = body["data"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{body}");
    assert_eq!(transitions[0]["source"], "approval");
}

#[tokio::test]
async fn transitions_that_the_lifecycle_forbids_are_refused_with_the_reason() {
    let w = world().await;
    let retire = json!({"to": "retired", "rationale": "superseded"});
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/models/haiku/transitions",
        retire,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cases = [
        (
            json!({"to": "released", "rationale": "bring it back", "override_reason": "urgent"}),
            "a retired model stays retired",
        ),
        (
            json!({"to": "suspended", "rationale": "x"}),
            "a retired model stays retired",
        ),
        (
            json!({"to": "retired", "rationale": "x"}),
            "already in that state",
        ),
    ];
    for (request, reason) in cases {
        let (status, body) = call(
            &w,
            ROOT,
            "POST",
            "/admin/v1/models/haiku/transitions",
            request,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{body}"
        );
    }
    let (status, _) = call(
        &w,
        AUDITOR,
        "POST",
        "/admin/v1/models/mythos/transitions",
        json!({"to": "under_review", "rationale": "x"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "compliance officers are read-only"
    );
}

#[tokio::test]
async fn the_findings_workflow_records_each_step() {
    let w = world().await;
    let path = "/admin/v1/findings/F-1/transitions";
    for (to, expected) in [
        ("reproduced", StatusCode::CONFLICT),
        ("triaged", StatusCode::CREATED),
        ("reproduced", StatusCode::CREATED),
        ("mitigated", StatusCode::CREATED),
        ("verified_fixed", StatusCode::CREATED),
        ("wont_fix", StatusCode::CONFLICT),
    ] {
        let (status, body) = call(
            &w,
            ROOT,
            "POST",
            path,
            json!({"to": to, "note": format!("to {to}")}),
        )
        .await;
        assert_eq!(status, expected, "{to}: {body}");
    }
    let replay = json!({"against": ["fable", "mythos"], "results": [{"model": "fable", "blocked": 1, "of": 1}, {"model": "mythos", "blocked": 0, "of": 1}]});
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/findings/F-1/evidence",
        json!({"name": "replay.json", "kind": "findings_replay", "content": replay}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, events) = call(&w, ROOT, "GET", path, Value::Null).await;
    let steps: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_status"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["triaged", "reproduced", "mitigated", "verified_fixed"]
    );
    assert_eq!(events["evidence"][0]["kind"], "findings_replay");
    let (status, report) = call(
        &w,
        AUDITOR,
        "GET",
        "/admin/v1/reports/finding/F-1",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["facts"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(report["evidence"][0]["content"], replay);
}

#[tokio::test]
async fn reviewer_keys_are_ordinary_keys_that_stop_at_expiry() {
    let w = world().await;
    let (_, review) = call(&w, ROOT, "POST", "/admin/v1/reviews", json!({
        "model": "haiku", "reviewing_party": "red team", "party_kind": "internal_red_team", "scope": "jailbreaks"})).await;
    let review_id = review["id"].as_str().unwrap();
    let expires_at = w.gateway.clock.now() + SignedDuration::from_hours(2);
    let (status, access) = call(
        &w,
        ROOT,
        "POST",
        &format!("/admin/v1/reviews/{review_id}/access"),
        json!({"principal_id": "evaluators", "expires_at": expires_at}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{access}");
    let secret = access["secret"].as_str().unwrap().to_owned();
    assert_eq!(chat(&w, &secret, "haiku").await, StatusCode::OK);
    w.clock.advance_millis(2 * 3_600_000 + 1);
    assert_eq!(chat(&w, &secret, "haiku").await, StatusCode::UNAUTHORIZED);
}

async fn conclude_with_tag_condition(w: &World, model: &str) -> String {
    let (status, review) = call(
        w,
        ROOT,
        "POST",
        "/admin/v1/reviews",
        json!({"model": model, "reviewing_party": "US CAISI", "party_kind": "government_evaluator",
               "scope": "cyber offence uplift"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{review}");
    let review_id = review["id"].as_str().unwrap().to_owned();
    let (status, concluded) = call(
        w,
        ROOT,
        "POST",
        &format!("/admin/v1/reviews/{review_id}/conclude"),
        json!({"decision": "approve_with_conditions", "rationale": "fine for US persons",
               "conditions": [{"tag": "us_persons_only"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{concluded}");
    assert!(
        concluded["conditions"][0]["enforced_at"].is_string(),
        "{concluded}"
    );
    assert!(
        concluded["conditions_audit"]["index"].is_u64(),
        "{concluded}"
    );
    review_id
}

#[tokio::test]
async fn a_release_needs_the_review_conditions_still_in_force() {
    let w = world().await;
    let review_id = conclude_with_tag_condition(&w, "mythos").await;
    // Someone drops the condition's tag from the model after the review.
    let (status, body) = call(
        &w,
        ROOT,
        "PUT",
        "/admin/v1/models/mythos",
        json!({"name": "mythos", "provider": "mock", "state": "internal", "tags": []}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for release in [
        json!({"to": "released", "rationale": "ready"}),
        json!({"to": "released", "rationale": "ready", "review_id": review_id}),
    ] {
        let (status, body) = call(
            &w,
            ROOT,
            "POST",
            "/admin/v1/models/mythos/transitions",
            release,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("not in force") && message.contains("us_persons_only"),
            "{message}"
        );
    }
    // With the tag back the same review supports the release again.
    let (status, body) = call(
        &w,
        ROOT,
        "PUT",
        "/admin/v1/models/mythos",
        json!({"name": "mythos", "provider": "mock", "state": "internal", "tags": ["us_persons_only"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/models/mythos/transitions",
        json!({"to": "released", "rationale": "ready"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn creating_an_admin_is_a_privilege_change_that_needs_a_second_admin() {
    let w = world().await;
    let puppet = json!({"id": "puppet", "display_name": "Puppet", "role": "admin"});
    // Only the admin role may ask, and asking creates nothing.
    let (status, body) = call(&w, SECOND, "POST", "/admin/v1/admins", puppet.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, pending) = call(&w, ROOT, "POST", "/admin/v1/admins", puppet.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["status"], "pending_approval");
    assert!(pending.get("token").is_none() && pending["approval"].get("token").is_none());
    let admins = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, listed) = call(&w, ROOT, "GET", "/admin/v1/admins", Value::Null).await;
    assert!(!admins(&listed).contains(&"puppet".to_owned()), "{listed}");
    // Nor can the requester approve it, or a read-only officer.
    let approve = format!(
        "/admin/v1/approvals/{}/approve",
        pending["approval"]["id"].as_str().unwrap()
    );
    let (status, body) = call(&w, ROOT, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "same_person");
    let (status, _) = call(&w, AUDITOR, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A duplicate is refused when asked, not when approved.
    let (status, body) = call(
        &w,
        ROOT,
        "POST",
        "/admin/v1/admins",
        json!({"id": "second", "role": "admin"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The second admin approves and alone receives the token.
    let (status, body) = call(&w, SECOND, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["result"]["token"].as_str().unwrap().to_owned();
    assert!(body["result"]["audit"]["index"].is_u64(), "{body}");
    let (status, listed) = call(&w, &token, "GET", "/admin/v1/admins", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "the new token works");
    assert!(admins(&listed).contains(&"puppet".to_owned()));
    let (status, _) = call(&w, SECOND, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "an approval is used once");
}
