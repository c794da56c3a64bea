//! The admin API through real sockets.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::harness;

use harness::{ADMIN_TOKEN, TestGateway};
use portcullis_gateway::Config;
use serde_json::{Value, json};

#[tokio::test]
async fn admin_calls_need_a_token() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    for token in [None, Some("pcla_wrong")] {
        let mut request = gw.http.get(gw.admin_url("/admin/v1/models"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let openapi: Value = gw
        .http
        .get(gw.admin_url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/admin/v1/models",
        "/admin/v1/principals/{id}",
        "/admin/v1/keys/{id}/revoke",
        "/admin/v1/reports/{kind}/{id}/bundle",
        "/admin/v1/approvals/{id}/approve",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    assert_eq!(
        gw.http
            .get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.http
            .get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn models_principals_and_keys_round_trip_and_revocation_is_immediate() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let admin = |method: reqwest::Method, path: &str| {
        gw.http
            .request(method, gw.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
    };

    let invalid = admin(reqwest::Method::POST, "/admin/v1/models")
        .json(&json!({"name": "bad name", "provider": "mock", "state": "released"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let created = admin(reqwest::Method::POST, "/admin/v1/models")
        .json(&json!({"name": "sonnet", "provider": "mock", "state": "released"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let duplicate = admin(reqwest::Method::POST, "/admin/v1/models")
        .json(&json!({"name": "sonnet", "provider": "mock", "state": "released"}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);

    let principal = admin(reqwest::Method::POST, "/admin/v1/principals")
        .json(&json!({"id": "zoe", "display_name": "Zoe", "organization": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(principal.status(), 201);
    let key: Value = admin(reqwest::Method::POST, "/admin/v1/keys")
        .json(&json!({"principal_id": "zoe", "name": "laptop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcl_"));
    let listed: Value = admin(reqwest::Method::GET, "/admin/v1/keys?principal=zoe")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(&secret),
        "secrets are shown once only"
    );

    let call = || {
        gw.http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);

    // A restricted model fails closed for an unscreened principal with no
    // known location: a legal restriction naming the rules, never the
    // principal's attributes.
    admin(reqwest::Method::POST, "/admin/v1/models")
        .json(&json!({"name": "vault", "provider": "mock", "state": "released", "tags": ["fail_closed"]}))
        .send()
        .await
        .unwrap();
    let restricted = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "vault", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(restricted.status(), 451);
    let body: Value = restricted.json().await.unwrap();
    assert_eq!(body["error"]["code"], "legal_restriction");
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(
        !body.to_string().contains("acme"),
        "attributes never leak: {body}"
    );

    // Attribute documents are validated on import.
    let bad = admin(reqwest::Method::POST, "/admin/v1/principals")
        .json(&json!({"id": "yan", "verified_claims": {"verification": {"trust_framework": "x"}, "claims": {"nationalities": ["XX"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("XX"),
        "{body}"
    );

    let id = key["id"].as_str().unwrap();
    let revoked = admin(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{id}/revoke"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        call().await.unwrap().status(),
        401,
        "revocation takes effect before the call returns"
    );

    let deleted = admin(reqwest::Method::DELETE, "/admin/v1/models/sonnet")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let missing = admin(reqwest::Method::GET, "/admin/v1/models/sonnet")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let metrics = gw.http.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
}
