//! Input bounds and upstream errors, tried as an attacker would: oversized
//! and malformed fields, two credentials at once, and an upstream whose
//! error echoes the key it was sent.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::harness;

use std::net::SocketAddr;

use axum::response::IntoResponse;
use harness::{TestGateway, model, start_mock};
use http::StatusCode;
use portcullis_domain::{Provider, ReleaseState};
use portcullis_gateway::Config;
use serde_json::{Value, json};

const UPSTREAM_SECRET: &str = "sk-proj-upstream0secret0key0123456789";

/// An upstream that refuses every request with `status`, echoing the
/// credential it received the way some providers do.
async fn refusing_upstream(status: StatusCode, retry_after: Option<&'static str>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().fallback(move |headers: http::HeaderMap| async move {
        let presented = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let body = json!({"error": {
            "message": format!("Incorrect API key provided: {presented}"),
            "type": "invalid_request_error", "code": "invalid_api_key"}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static(seconds));
        }
        response
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn upstream_model(name: &str, addr: SocketAddr) -> portcullis_domain::ModelDraft {
    let mut draft = model(
        name,
        Provider::Openai,
        Some(format!("http://{addr}/v1")),
        "upstream-secret-model-name",
        ReleaseState::Released,
    );
    draft.api_key = Some(UPSTREAM_SECRET.to_owned());
    draft
}

async fn post(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, String) {
    let mut request = gw
        .http
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn oversized_and_out_of_range_fields_are_refused_without_echo() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let bearer = format!("Bearer {}", gw.key("alice"));
    let huge_model = "m".repeat(100_000);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a model name past the bound",
            json!({"model": huge_model, "messages": []}),
            "invalid_model",
        ),
        (
            "a model name with a control character",
            json!({"model": "hai\u{0}ku", "messages": []}),
            "invalid_model",
        ),
        (
            "negative max_tokens",
            json!({"model": "haiku", "max_tokens": -1, "messages": []}),
            "invalid_request",
        ),
        (
            "absurd max_tokens",
            json!({"model": "haiku", "max_tokens": 1e12, "messages": []}),
            "invalid_request",
        ),
        (
            "max_tokens past 2^64",
            json!({"model": "haiku", "max_tokens": 18446744073709551616.0_f64, "messages": []}),
            "invalid_request",
        ),
        (
            "zero max_completion_tokens",
            json!({"model": "haiku", "max_completion_tokens": 0, "messages": []}),
            "invalid_request",
        ),
        (
            "a billion choices",
            json!({"model": "haiku", "n": 1e9, "messages": []}),
            "invalid_request",
        ),
        (
            "a temperature past 2",
            json!({"model": "haiku", "temperature": 7, "messages": []}),
            "invalid_request",
        ),
        (
            "a string temperature",
            json!({"model": "haiku", "temperature": "hot", "messages": []}),
            "invalid_request",
        ),
    ];
    for (path, auth_header) in [
        ("/v1/chat/completions", "authorization"),
        ("/v1/messages", "authorization"),
    ] {
        for (what, body, code) in &cases {
            let (status, _, text) = post(
                &gw,
                path,
                &[(auth_header, &bearer), ("anthropic-version", "2023-06-01")],
                serde_json::to_vec(body).unwrap(),
            )
            .await;
            assert_eq!(status, 400, "{what} on {path}: {text}");
            assert!(text.contains(code), "{what} on {path}: {text}");
            assert!(text.len() < 1_000, "{what} on {path} echoed the value");
        }
    }
    // Nothing refused above reached the log with its value.
    let audit = gw.gateway.audit.as_ref().unwrap();
    audit.flush().await.unwrap();
    let stored = portcullis_audit::search(
        gw.gateway.store.pool(),
        &portcullis_audit::AuditQuery::default(),
    )
    .await
    .unwrap();
    for entry in stored {
        let text = serde_json::to_string(&entry.entry).unwrap();
        assert!(text.len() < 4_096, "an audit entry of {} bytes", text.len());
    }
    // In-range values still pass.
    let (status, _, text) = post(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer)],
        serde_json::to_vec(
            &json!({"model": "haiku", "max_tokens": 4, "n": 1, "temperature": 2,
            "top_p": 1, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn two_credentials_at_once_are_refused() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let alice = gw.key("alice").to_owned();
    let bearer = format!("Bearer {alice}");
    let body = serde_json::to_vec(
        &json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "two Authorization headers",
            vec![
                ("authorization", &bearer),
                ("authorization", "Bearer other"),
            ],
        ),
        (
            "Authorization and x-api-key",
            vec![("authorization", &bearer), ("x-api-key", &alice)],
        ),
        (
            "two x-api-key headers",
            vec![("x-api-key", &alice), ("x-api-key", &alice)],
        ),
    ];
    for path in ["/v1/chat/completions", "/v1/messages"] {
        for (what, headers) in &cases {
            let mut headers = headers.clone();
            headers.push(("anthropic-version", "2023-06-01"));
            let (status, _, text) = post(&gw, path, &headers, body.clone()).await;
            assert_eq!(status, 400, "{what} on {path}: {text}");
            assert!(text.contains("conflicting_credentials"), "{text}");
        }
    }
    // One credential is fine.
    let (status, _, _) = post(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer)],
        body,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upstream_errors_are_replaced_and_never_leak_the_upstream_key() {
    let unauthorized = refusing_upstream(StatusCode::UNAUTHORIZED, None).await;
    let limited = refusing_upstream(StatusCode::TOO_MANY_REQUESTS, Some("7")).await;
    let gw = TestGateway::start(
        Config::default(),
        vec![
            upstream_model("leaky", unauthorized),
            upstream_model("limited", limited),
        ],
    )
    .await;
    let bearer = format!("Bearer {}", gw.key("alice"));
    for (path, stream) in [
        ("/v1/chat/completions", false),
        ("/v1/chat/completions", true),
        // Translated: an Anthropic client in front of an OpenAI upstream.
        ("/v1/messages", false),
        ("/v1/messages", true),
    ] {
        let body = json!({"model": "leaky", "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, text) = post(
            &gw,
            path,
            &[
                ("authorization", &bearer),
                ("anthropic-version", "2023-06-01"),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 502, "{path} stream={stream}: {text}");
        assert!(!text.contains("sk-"), "{path} leaked the key: {text}");
        assert!(!text.contains("Incorrect API key"), "{path}: {text}");
        assert!(
            !text.contains("upstream-secret-model-name"),
            "{path}: {text}"
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["error"]["upstream_status"], 401, "{text}");

        let body = json!({"model": "limited", "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, headers, text) = post(
            &gw,
            path,
            &[
                ("authorization", &bearer),
                ("anthropic-version", "2023-06-01"),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 429, "{path}: {text}");
        assert_eq!(headers["retry-after"], "7");
        assert!(!text.contains("sk-"), "{path} leaked the key: {text}");
    }
}

/// What is tried, the method, the path, the admin credential and the body.
type AdminCase<'a> = (&'a str, http::Method, String, Option<&'a str>, Vec<u8>);

#[tokio::test]
async fn every_admin_error_is_json_with_the_request_id() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let token = format!("Bearer {}", harness::ADMIN_TOKEN);
    let oversized = vec![b'x'; 3 * 1024 * 1024];
    let cases: Vec<AdminCase> = vec![
        (
            "an oversized body",
            http::Method::POST,
            "/admin/v1/models".into(),
            Some(&token),
            oversized,
        ),
        (
            "a body that is not JSON",
            http::Method::POST,
            "/admin/v1/models".into(),
            Some(&token),
            b"{not json".to_vec(),
        ),
        (
            "a policy over the size bound (each is audited whole)",
            http::Method::PUT,
            "/admin/v1/policies/huge".into(),
            Some(&token),
            serde_json::to_vec(&json!({"source": format!("// {}", "x".repeat(300 * 1024))}))
                .unwrap(),
        ),
        (
            "a literal upstream key, which the store would keep in plain text",
            http::Method::POST,
            "/admin/v1/models".into(),
            Some(&token),
            serde_json::to_vec(&json!({"name": "keyed", "provider": "openai",
                "base_url": "http://127.0.0.1:9/v1", "state": "released",
                "api_key": "sk-live-plaintext"}))
            .unwrap(),
        ),
        (
            "a query that does not parse",
            http::Method::GET,
            "/admin/v1/audit?limit=abc".into(),
            Some(&token),
            Vec::new(),
        ),
        (
            "no token",
            http::Method::GET,
            "/admin/v1/models".into(),
            None,
            Vec::new(),
        ),
        (
            "an unknown route",
            http::Method::GET,
            "/admin/v1/nothing-here".into(),
            Some(&token),
            Vec::new(),
        ),
    ];
    for (what, method, path, auth, body) in cases {
        let mut request = gw
            .http
            .request(method, gw.admin_url(&path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{what}: {status}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
        assert_eq!(body["request_id"], request_id.as_str(), "{what}: {body}");
    }
}

#[tokio::test]
async fn answers_carry_the_alias_never_the_upstream_model_name() {
    let mock = start_mock().await;
    let hidden = "upstream-secret-model-name";
    let gw = TestGateway::start(
        Config::default(),
        vec![
            model(
                "alias-oa",
                Provider::Openai,
                Some(format!("http://{mock}/v1")),
                hidden,
                ReleaseState::Released,
            ),
            model(
                "alias-an",
                Provider::Anthropic,
                Some(format!("http://{mock}")),
                hidden,
                ReleaseState::Released,
            ),
            model(
                "alias-mock",
                Provider::Mock,
                None,
                hidden,
                ReleaseState::Released,
            ),
        ],
    )
    .await;
    let bearer = format!("Bearer {}", gw.key("alice"));
    for alias in ["alias-oa", "alias-an", "alias-mock"] {
        for path in ["/v1/chat/completions", "/v1/messages"] {
            for stream in [false, true] {
                let body = json!({"model": alias, "max_tokens": 8, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]});
                let (status, _, text) = post(
                    &gw,
                    path,
                    &[
                        ("authorization", &bearer),
                        ("anthropic-version", "2023-06-01"),
                    ],
                    serde_json::to_vec(&body).unwrap(),
                )
                .await;
                let case = format!("{alias} {path} stream={stream}");
                assert_eq!(status, 200, "{case}: {text}");
                assert!(
                    !text.contains(hidden),
                    "{case} leaked the upstream name: {text}"
                );
                assert!(
                    text.contains(&format!("\"model\":\"{alias}\"")),
                    "{case} does not name the alias: {text}"
                );
            }
        }
    }
}

#[tokio::test]
async fn request_heads_real_proxies_send_are_accepted_and_larger_ones_get_a_native_431() {
    let gw = TestGateway::start(Config::default(), vec![]).await;
    let body = json!({"model": "haiku", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    // (what, path, header count, bytes per value, expected status)
    let cases = [
        (
            "220 forwarding headers",
            "/v1/chat/completions",
            220,
            40,
            200,
        ),
        (
            "64 KB of headers",
            "/v1/chat/completions",
            16,
            4 * 1024,
            200,
        ),
        ("300 headers", "/v1/chat/completions", 300, 10, 431),
        ("300 headers, Anthropic", "/v1/messages", 300, 10, 431),
        (
            "160 KB of headers",
            "/v1/chat/completions",
            40,
            4 * 1024,
            431,
        ),
    ];
    for (what, path, count, size, expected) in cases {
        let mut request = gw
            .http
            .post(gw.url(path))
            .bearer_auth(gw.key("alice"))
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        for i in 0..count {
            request = request.header(format!("x-forwarded-hop-{i}"), "v".repeat(size));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{what}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let text = response.text().await.unwrap();
        if expected == 431 {
            let value: Value = serde_json::from_str(&text).unwrap();
            let code = if path == "/v1/messages" {
                &value["error"]["type"]
            } else {
                &value["error"]["code"]
            };
            assert!(
                code == "headers_too_large" || text.contains("headers_too_large"),
                "{what}: {text}"
            );
            assert!(text.contains(&request_id), "{what}: {text}");
        }
    }
}

/// How a misbehaving upstream behaves on every connection.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads the request and never answers.
    Hang,
    /// Starts a stream, sends two events, then resets the connection.
    ResetMidStream,
    /// Starts a stream, sends one event, then goes silent.
    SilentMidStream,
}

/// A raw TCP upstream with one fault, below HTTP libraries, so the reset
/// is a real RST and the silence a real silence.
async fn faulty_upstream(fault: Fault) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buffer).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let event = |text: &str| {
                    let data = format!(
                        "data: {}\n\n",
                        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
                    );
                    format!("{:x}\r\n{data}\r\n", data.len())
                };
                match fault {
                    Fault::Hang => {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                    Fault::ResetMidStream => {
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(event("one ").as_bytes()).await;
                        let _ = socket.write_all(event("two ").as_bytes()).await;
                        let _ = socket.flush().await;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        // Linger 0: closing sends RST, not FIN. (Deprecated
                        // because a non-zero linger blocks on drop; zero
                        // does not.)
                        #[allow(deprecated)]
                        let _ = socket.set_linger(Some(std::time::Duration::ZERO));
                        drop(socket);
                    }
                    Fault::SilentMidStream => {
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(event("one ").as_bytes()).await;
                        let _ = socket.flush().await;
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_hangs_resets_or_goes_silent_ends_the_request_cleanly() {
    let mut config = Config::default();
    config.server.upstream_response_timeout_ms = 300;
    config.server.stream_idle_timeout_ms = 300;
    let mut models = Vec::new();
    for (name, fault) in [
        ("hangs", Fault::Hang),
        ("resets", Fault::ResetMidStream),
        ("silent", Fault::SilentMidStream),
    ] {
        let addr = faulty_upstream(fault).await;
        models.push(model(
            name,
            Provider::Openai,
            Some(format!("http://{addr}/v1")),
            "upstream-secret-model-name",
            ReleaseState::Released,
        ));
    }
    let gw = TestGateway::start(config, models).await;
    let bearer = format!("Bearer {}", gw.key("alice"));
    // (model, stream, expected status, text the answer must carry)
    let cases = [
        ("hangs", false, 504, "upstream_timeout"),
        ("hangs", true, 504, "upstream_timeout"),
        ("resets", true, 200, "upstream_error"),
        ("silent", true, 200, "upstream_timeout"),
    ];
    for (name, stream, expected, code) in cases {
        let body = json!({"model": name, "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        // The timeouts, not the upstream (which gives up after 30 s and
        // would then read as a 502 or a truncated stream), end these.
        let (status, _, text) = post(
            &gw,
            "/v1/chat/completions",
            &[("authorization", &bearer)],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        let case = format!("{name} stream={stream}");
        assert_eq!(status, expected, "{case}: {text}");
        assert!(text.contains(code), "{case}: {text}");
        assert!(
            !text.contains("upstream-secret-model-name"),
            "{case}: {text}"
        );
        if stream && expected == 200 {
            // What was relayed before the fault arrived, then one terminal
            // error event: no half event, no [DONE] that would read as
            // success.
            assert!(text.contains("one "), "{case}: {text}");
            assert!(!text.contains("[DONE]"), "{case}: {text}");
        }
    }
    // The gateway is unharmed: an ordinary request still succeeds.
    let (status, _, text) = post(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer)],
        serde_json::to_vec(&json!({"model": "haiku", "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}
