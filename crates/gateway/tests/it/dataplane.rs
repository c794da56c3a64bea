//! The data plane through real sockets: both APIs, streaming relay,
//! translation over HTTP, bad input, upstream failures and cancellation.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::harness;

use std::time::Duration;

use futures_util::StreamExt;
use harness::{TestGateway, model, sse_events, start_mock};
use portcullis_domain::{Provider, ReleaseState};
use portcullis_gateway::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn both_apis_answer_and_stream_in_their_own_framing() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(&chat("haiku", "echo: hello there"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    let response = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", gw.key("alice"))
        .json(&json!({"model": "haiku", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<_> = events.iter().map(|(e, _)| e.clone().unwrap()).collect();
    assert_eq!(names.first().unwrap(), "message_start");
    assert_eq!(names.last().unwrap(), "message_stop");
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_delta").count(),
        5
    );
}

#[tokio::test]
async fn stream_events_arrive_one_by_one_as_the_upstream_sends_them() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .header("x-mock-token-interval-ms", "40")
        .json(&json!({"model": "haiku", "max_tokens": 4, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut chunks = Vec::new();
    while let Some(chunk) = body.next().await {
        chunks.push(chunk.unwrap());
    }
    // With 40 ms between tokens, each event reaches the client as its own
    // chunk: nothing is buffered up and merged.
    let token_chunks = chunks
        .iter()
        .filter(|c| std::str::from_utf8(c).unwrap().contains("\"content\":\""))
        .count();
    assert!(
        token_chunks >= 4,
        "expected each token event in its own chunk, got {chunks:?}"
    );
    for chunk in &chunks {
        let text = std::str::from_utf8(chunk).unwrap();
        assert!(
            text.ends_with("\n\n"),
            "every chunk is whole events: {text:?}"
        );
    }
}

#[tokio::test]
async fn translation_works_both_ways_over_http_streaming_included() {
    let mock = start_mock().await;
    let gw = TestGateway::start(
        Config::default(),
        vec![
            model(
                "oa-bridge",
                Provider::Openai,
                Some(format!("http://{mock}/v1")),
                "mock",
                ReleaseState::Released,
            ),
            model(
                "an-bridge",
                Provider::Anthropic,
                Some(format!("http://{mock}")),
                "mock",
                ReleaseState::Released,
            ),
        ],
    )
    .await;
    // Anthropic client, OpenAI upstream.
    let body: Value = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", gw.key("alice"))
        .json(&json!({"model": "oa-bridge", "max_tokens": 2, "system": "sys", "messages": [{"role": "user", "content": "echo: one two three"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "one two ");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 2);

    let text = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", gw.key("alice"))
        .json(&json!({"model": "oa-bridge", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "echo: a b"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, "a b");
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));

    // OpenAI client, Anthropic upstream, usage requested.
    let text = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(
            &json!({"model": "an-bridge", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "echo: x y z"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    let content: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "x y z");

    // Untranslatable features are refused, not dropped.
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(&json!({"model": "an-bridge", "messages": [], "tools": [{"type": "file_search"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_translation");
}

#[tokio::test]
async fn unknown_fields_pass_through_unchanged_when_formats_match() {
    // A tiny upstream that echoes the request body it received.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|body: axum::body::Bytes| async move {
                let received: Value = serde_json::from_slice(&body).unwrap();
                axum::Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": received.to_string()}, "finish_reason": "stop"}]}))
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let gw = TestGateway::start(
        Config::default(),
        vec![model(
            "echoer",
            Provider::Openai,
            Some(format!("http://{addr}/v1")),
            "real-name",
            ReleaseState::Released,
        )],
    )
    .await;
    let body: Value = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(&json!({"model": "echoer", "messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
                      "response_format": {"type": "json_object"}, "x_vendor_field": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        received["model"], "real-name",
        "the alias is replaced by the upstream model name"
    );
    assert_eq!(received["x_vendor_field"], 7);
    assert_eq!(received["tools"][0]["function"]["name"], "f");
    assert_eq!(received["response_format"]["type"], "json_object");
}

#[tokio::test]
#[allow(clippy::type_complexity)]
async fn bad_input_gets_native_errors_and_no_panic() {
    let mut config = Config::default();
    config.server.max_body_bytes = 2048;
    config.server.upstream_response_timeout_ms = 300;
    let gw = TestGateway::start(
        config,
        vec![
            model(
                "broken",
                Provider::Mock,
                None,
                "mock-fail-midstream",
                ReleaseState::Released,
            ),
            model(
                "five-hundred",
                Provider::Mock,
                None,
                "mock-fail-500",
                ReleaseState::Released,
            ),
            model(
                "hanging",
                Provider::Mock,
                None,
                "mock-hang",
                ReleaseState::Released,
            ),
            model(
                "refused",
                Provider::Openai,
                Some("http://127.0.0.1:9/v1".into()),
                "x",
                ReleaseState::Released,
            ),
        ],
    )
    .await;
    let alice = gw.key("alice").to_owned();
    let cases: Vec<(&str, Vec<u8>, Option<&str>, u16, &str)> = vec![
        (
            "/v1/chat/completions",
            b"{\"model\": ".to_vec(),
            Some(&alice),
            400,
            "invalid_json",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\": 5, \"messages\": []}".to_vec(),
            Some(&alice),
            400,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\": \"haiku\", \"messages\": 3}".to_vec(),
            Some(&alice),
            400,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\": \"haiku\", \"messages\": [], \"stream\": \"yes\"}".to_vec(),
            Some(&alice),
            400,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\": \"\xc3\x28\"}".to_vec(),
            Some(&alice),
            400,
            "invalid_encoding",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("nope", "x")).unwrap(),
            Some(&alice),
            404,
            "model_not_found",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("haiku", &"x".repeat(4096))).unwrap(),
            Some(&alice),
            413,
            "request_too_large",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("haiku", "x")).unwrap(),
            None,
            401,
            "invalid_api_key",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("haiku", "x")).unwrap(),
            Some("pcl_wrong"),
            401,
            "invalid_api_key",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("mythos", "x")).unwrap(),
            Some(&alice),
            403,
            "model_access_denied",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("five-hundred", "x")).unwrap(),
            Some(&alice),
            502,
            "upstream_error",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("hanging", "x")).unwrap(),
            Some(&alice),
            504,
            "upstream_timeout",
        ),
        (
            "/v1/chat/completions",
            serde_json::to_vec(&chat("refused", "x")).unwrap(),
            Some(&alice),
            502,
            "upstream_unavailable",
        ),
        (
            "/v1/messages",
            b"not json".to_vec(),
            Some(&alice),
            400,
            "invalid_json",
        ),
        (
            "/v1/messages",
            serde_json::to_vec(&chat("nope", "x")).unwrap(),
            Some(&alice),
            404,
            "model_not_found",
        ),
        (
            "/v1/messages",
            serde_json::to_vec(&chat("haiku", &"x".repeat(4096))).unwrap(),
            Some(&alice),
            413,
            "request_too_large",
        ),
    ];
    for (path, body, key, status, code) in cases {
        let mut request = gw.http.post(gw.url(path)).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {code}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(body["type"], "error");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(code), "{message}");
        } else {
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["param"].is_null());
        }
        assert_eq!(body["request_id"], request_id.as_str());
        assert!(!body.to_string().contains(&alice), "errors never echo keys");
    }

    // A stream that breaks mid-way ends with a terminal error event.
    let text = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&alice)
        .json(&json!({"model": "broken", "max_tokens": 8, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    assert!(!text.contains("[DONE]"));

    let text = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &alice)
        .json(&json!({"model": "broken", "max_tokens": 8, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("error"));
    assert!(!text.contains("message_stop"));
}

#[tokio::test]
async fn inactive_principals_and_a_second_model_name_are_refused() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("ivan"))
        .json(&chat("haiku", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    for (uri, header) in [
        ("/v1/chat/completions?model=mythos", None),
        ("/v1/chat/completions", Some("mythos")),
    ] {
        let mut request = gw
            .http
            .post(gw.url(uri))
            .bearer_auth(gw.key("alice"))
            .json(&chat("haiku", "x"));
        if let Some(h) = header {
            request = request.header("x-model", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "conflicting_model");
    }
}

#[tokio::test]
async fn a_slow_client_body_times_out_with_408() {
    let mut config = Config::default();
    config.server.body_read_timeout_ms = 200;
    let gw = TestGateway::start(config, vec![]).await;
    let mut socket = tokio::net::TcpStream::connect(gw.data).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":",
        gw.key("alice")
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"));
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    // An upstream that streams slowly forever and reports when its client
    // (the gateway) goes away.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 65536];
        let _ = socket.read(&mut buffer).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"}}]}\n\n";
        loop {
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            if socket.write_all(framed.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = closed_tx.send(());
    });
    let gw = TestGateway::start(
        Config::default(),
        vec![model(
            "forever",
            Provider::Openai,
            Some(format!("http://{addr}/v1")),
            "x",
            ReleaseState::Released,
        )],
    )
    .await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(gw.key("alice"))
        .json(&json!({"model": "forever", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("tick"));
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the upstream connection should be closed after the client left")
        .unwrap();
}

#[tokio::test]
async fn models_list_shows_only_what_the_caller_may_invoke() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let body: Value = gw
        .http
        .get(gw.url("/v1/models"))
        .bearer_auth(gw.key("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["haiku"]);
    let body: Value = gw
        .http
        .get(gw.url("/v1/models"))
        .header("x-api-key", gw.key("alice"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["has_more"], false);
}

/// Every decision entry carries its location evidence (the place used, its
/// source and the peer), how the caller was identified, and the attributes
/// the policies read.
#[tokio::test]
async fn every_decision_records_where_the_request_was_placed_and_why() {
    let mut edge = Config::default();
    edge.location.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    edge.location.country_header = Some("x-edge-country".into());
    edge.location.subdivision_header = Some("x-edge-region".into());
    let mut defaulted = Config::default();
    defaulted.location.default_country = Some("US".into());
    // Headers from a peer that is not a trusted proxy are not evidence.
    defaulted.location.country_header = Some("x-edge-country".into());
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, &Config, Headers, Value); 5] = [
        (
            "a trusted edge's country",
            &edge,
            &[("x-edge-country", "fr")],
            json!({"country": "FR", "source": "edge_header", "client_address": "127.0.0.1"}),
        ),
        (
            "a trusted edge's subdivision implies its country",
            &edge,
            &[("x-edge-region", "US-CA")],
            json!({"country": "US", "subdivision": "US-CA", "source": "edge_header", "client_address": "127.0.0.1"}),
        ),
        (
            "no signal and no default",
            &edge,
            &[],
            json!({"source": "unknown", "client_address": "127.0.0.1"}),
        ),
        (
            "an unusable value is kept, bounded, and counts as unknown",
            &edge,
            &[("x-edge-country", "Narnia")],
            json!({"source": "unusable", "client_address": "127.0.0.1", "unusable_value": "Narnia"}),
        ),
        (
            "an untrusted peer's header is ignored for the default",
            &defaulted,
            &[("x-edge-country", "CN")],
            json!({"country": "US", "source": "configured_default", "client_address": "127.0.0.1"}),
        ),
    ];
    for (label, config, headers, expected) in cases {
        let gw = TestGateway::start(config.clone(), vec![]).await;
        let mut request = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(gw.key("alice"))
            .json(&chat("haiku", "echo: where am I"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{label}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        gw.gateway.audit.as_ref().unwrap().flush().await.unwrap();
        let entries = portcullis_audit::search(
            gw.gateway.store.pool(),
            &portcullis_audit::AuditQuery {
                kind: Some(portcullis_audit::EntryKind::RequestDecision),
                request_id: Some(request_id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(entries.len(), 1, "{label}");
        let entry = serde_json::to_value(&entries[0].entry).unwrap();
        assert_eq!(entry["location"], expected, "{label}");
        assert_eq!(entry["identity"], json!({"source": "api_key"}), "{label}");
        assert_eq!(
            entry["attributes"],
            json!({"organization": "acme", "employee": false, "screening": "unscreened"}),
            "{label}"
        );
    }
}
