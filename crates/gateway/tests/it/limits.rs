//! `[[limits]]` through real sockets: the burst, the native 429 in both
//! formats with `Retry-After` and the OpenAI-style headers, and what does
//! not count against a limit.

use crate::harness;

use harness::TestGateway;
use portcullis_gateway::Config;
use portcullis_gateway::limits::{LimitConfig, LimitScope};
use serde_json::{Value, json};

fn alice_rpm(n: u32) -> LimitConfig {
    serde_json::from_value(
        json!({"id": "alice-rpm", "scope": {"principal": "alice"}, "requests_per_minute": n}),
    )
    .unwrap()
}

#[tokio::test]
async fn a_principal_over_its_limit_gets_a_native_429_and_refusals_spend_nothing() {
    let config = Config {
        limits: vec![alice_rpm(3)],
        ..Config::default()
    };
    let gw = TestGateway::start(config, vec![]).await;
    let send = |path: &'static str, body: Value| {
        gw.http
            .post(gw.url(path))
            .bearer_auth(gw.key("alice"))
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let openai =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    // Denied by policy (mythos is internal): not counted.
    for _ in 0..5 {
        assert_eq!(
            send("/v1/chat/completions", openai("mythos"))
                .await
                .unwrap()
                .status(),
            403
        );
    }
    for _ in 0..3 {
        assert_eq!(
            send("/v1/chat/completions", openai("haiku"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let refused = send("/v1/chat/completions", openai("haiku")).await.unwrap();
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    let retry_after: u32 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["x-ratelimit-limit-requests"], "3");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        headers["x-ratelimit-reset-requests"].to_str().unwrap(),
        format!("{retry_after}s")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice-rpm")
    );

    let anthropic = send(
        "/v1/messages",
        json!({"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(anthropic.status(), 429);
    assert!(anthropic.headers().contains_key("retry-after"));
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    // The refusal is audited like any other.
    gw.gateway.audit.as_ref().unwrap().flush().await.unwrap();
    let limited = portcullis_audit::search(
        gw.gateway.store.pool(),
        &portcullis_audit::AuditQuery {
            kind: Some(portcullis_audit::EntryKind::RequestDecision),
            principal_id: Some("alice".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|stored| serde_json::to_value(&stored.entry).unwrap()["status"] == 429)
    .count();
    assert_eq!(limited, 2);
}

#[test]
fn limits_that_would_be_ignored_are_refused_at_start() {
    let cases = [
        (
            json!({"id": "t", "scope": {"model": "fable"}, "tokens_per_day": 100000}),
            "tokens_per_day",
        ),
        (
            json!({"id": "c", "scope": {"key": "key_1"}, "input_tokens_per_minute": 2000}),
            "input_tokens_per_minute",
        ),
        (
            json!({"id": "n", "scope": {"family": "frontier"}}),
            "requests_per_minute",
        ),
    ];
    for (limit, field) in cases {
        let config = Config {
            limits: vec![serde_json::from_value(limit.clone()).unwrap()],
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(field), "{limit}: {error}");
    }
    let config = Config {
        limits: vec![alice_rpm(5)],
        ..Config::default()
    };
    assert!(config.validate().is_ok());
    assert_eq!(
        config.limits[0].scope,
        LimitScope::Principal("alice".into())
    );
}

#[tokio::test]
async fn a_stream_slot_is_held_for_the_streams_life() {
    use futures_util::StreamExt as _;
    let config = Config {
        limits: vec![
            serde_json::from_value(json!({"id": "alice-streams", "scope": {"principal": "alice"}, "concurrent_streams": 1}))
                .unwrap(),
        ],
        ..Config::default()
    };
    let gw = TestGateway::start(config, vec![]).await;
    let stream = |interval: &'static str| {
        gw.http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(gw.key("alice"))
            .header("x-mock-token-interval-ms", interval)
            .json(&json!({"model": "haiku", "stream": true, "max_tokens": 40,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let first = stream("50").await.unwrap();
    assert_eq!(first.status(), 200);
    let mut chunks = first.bytes_stream();
    assert!(chunks.next().await.is_some());
    let second = stream("0").await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = second.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent streams"),
        "{body}"
    );
    // A whole answer takes no stream slot.
    let whole = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(&json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    // The slot comes back when the first stream ends.
    while chunks.next().await.is_some() {}
    drop(chunks);
    let mut third = None;
    for _ in 0..50 {
        let response = stream("0").await.unwrap();
        if response.status() == 200 {
            third = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "the slot was never given back");
}
