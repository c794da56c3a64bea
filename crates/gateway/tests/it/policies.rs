//! Policies through the admin API: a valid rule takes effect at once, an
//! invalid one is refused with its line and column while the set in force
//! keeps deciding, and the default pack stays unless replaced by name.

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

const FORBID_ALICE_HAIKU: &str = r#"
@id("no_haiku_for_alice")
@status("ordinary")
forbid (principal == Portcullis::Principal::"alice", action, resource == Portcullis::Model::"haiku");
"#;

async fn put(gateway: &TestGateway, id: &str, text: &str) -> (u16, Value) {
    let response = gateway
        .http
        .put(gateway.admin_url(&format!("/admin/v1/policies/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn haiku_status(gateway: &TestGateway) -> (u16, Value) {
    let response = gateway
        .http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(gateway.key("alice"))
        .json(&json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn policy_changes_are_validated_before_they_take_effect() {
    let gateway = TestGateway::start(Config::default(), vec![]).await;
    assert_eq!(haiku_status(&gateway).await.0, 200);

    let (status, body) = put(&gateway, "operator", FORBID_ALICE_HAIKU).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = haiku_status(&gateway).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_haiku_for_alice")
    );

    let cases: Vec<(&str, String, &str)> = vec![
        ("syntax", "@id(\"x\")\n@status(\"ordinary\")\npermit (principal, action, resource) when { resource.state == };".into(), "line 3"),
        ("unknown attribute", "@id(\"y\")\n@status(\"ordinary\")\npermit (principal, action, resource) when { resource.colour == \"red\" };".into(), "does not validate"),
        ("no status", "@id(\"z\")\npermit (principal, action, resource);".into(), "@status"),
        ("duplicate id", FORBID_ALICE_HAIKU.replace("forbid", "permit"), "already used"),
    ];
    for (name, text, expected) in cases {
        let (status, body) = put(&gateway, &format!("bad-{}", name.replace(' ', "-")), &text).await;
        assert_eq!(status, 400, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains("line"), "{name}: no location in {message}");
        // The set in force still decides.
        assert_eq!(haiku_status(&gateway).await.0, 403, "{name}");
    }

    let listed: Value = gateway
        .http
        .get(gateway.admin_url("/admin/v1/policies"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "operator"], "{listed}");

    let deleted = gateway
        .http
        .delete(gateway.admin_url("/admin/v1/policies/operator"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(haiku_status(&gateway).await.0, 200);
}
