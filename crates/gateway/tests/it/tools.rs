//! Tool calls across formats through real sockets: an OpenAI client on an
//! Anthropic-format upstream and an Anthropic client on an OpenAI-format
//! upstream (the standalone mock, which calls the first tool, or the one
//! `tool_choice` names, with arguments built from the schema), whole and
//! streamed, then the tool result sent back.

use crate::harness;

use harness::{TestGateway, model, sse_events, start_mock};
use portcullis_domain::{Provider, ReleaseState};
use portcullis_gateway::Config;
use serde_json::{Value, json};

async fn bridges() -> TestGateway {
    let mock = start_mock().await;
    TestGateway::start(
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
    .await
}

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
           "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city", "days", "unit"]})
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(gw.url(path))
        .bearer_auth(gw.key("alice"))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_openai_client_calls_tools_on_an_anthropic_upstream() {
    let gw = bridges().await;
    let tools = json!([
        {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "get_weather", "description": "Forecast", "parameters": weather_schema()}},
    ]);
    let request = json!({"model": "an-bridge", "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
    let response = post(&gw, "/v1/chat/completions", request.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "mock", "days": 1, "unit": "c"}));
    let call_id = call["id"].as_str().unwrap().to_owned();
    assert!(!call_id.is_empty());

    // Streamed: the call's id and name first, then argument fragments
    // that join into the same JSON.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = post(&gw, "/v1/chat/completions", streamed)
        .await
        .text()
        .await
        .unwrap();
    let mut name = None;
    let mut joined = String::new();
    let mut finish = None;
    for (_, data) in sse_events(&text) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if let Some(call) = choice["delta"]["tool_calls"].get(0) {
            assert_eq!(call["index"], 0, "{data}");
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_owned());
                assert!(
                    call["id"].as_str().is_some_and(|id| !id.is_empty()),
                    "{data}"
                );
            }
            joined.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), arguments);
    assert_eq!(finish.as_deref(), Some("tool_calls"));

    // The result goes back as a `tool` message; the model answers in text.
    let follow_up = json!({"model": "an-bridge", "max_tokens": 8, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "4 degrees, rain"},
    ]});
    let response = post(&gw, "/v1/chat/completions", follow_up).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // After a tool result the mock answers in text (`length`: it fills
    // max_tokens).
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().is_some());
    assert!(body["choices"][0]["message"].get("tool_calls").is_none());
}

#[tokio::test]
async fn an_anthropic_client_calls_tools_on_an_openai_upstream() {
    let gw = bridges().await;
    let tools = json!([{"name": "get_weather", "description": "Forecast", "input_schema": weather_schema()}]);
    let request = json!({"model": "oa-bridge", "max_tokens": 64, "tools": tools,
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
    let response = post(&gw, "/v1/messages", request.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stop_reason"], "tool_use", "{body}");
    let block = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block: {body}"))
        .clone();
    assert_eq!(block["name"], "get_weather");
    assert_eq!(
        block["input"],
        json!({"city": "mock", "days": 1, "unit": "c"})
    );
    let tool_use_id = block["id"].as_str().unwrap().to_owned();

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = post(&gw, "/v1/messages", streamed)
        .await
        .text()
        .await
        .unwrap();
    let mut started = None;
    let mut joined = String::new();
    let mut stop_reason = None;
    for (event, data) in sse_events(&text) {
        let data: Value = serde_json::from_str(&data).unwrap();
        match event.as_deref() {
            Some("content_block_start") if data["content_block"]["type"] == "tool_use" => {
                assert_eq!(data["content_block"]["name"], "get_weather");
                started = data["index"].as_u64();
            }
            Some("content_block_delta") if data["delta"]["type"] == "input_json_delta" => {
                assert_eq!(data["index"].as_u64(), started, "{data}");
                joined.push_str(data["delta"]["partial_json"].as_str().unwrap());
            }
            Some("message_delta") => {
                stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_owned)
            }
            _ => {}
        }
    }
    assert!(started.is_some(), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&joined).unwrap(),
        block["input"]
    );
    assert_eq!(stop_reason.as_deref(), Some("tool_use"));
    // Every block that starts also stops.
    let starts = text.matches("event: content_block_start").count();
    let stops = text.matches("event: content_block_stop").count();
    assert_eq!(starts, stops, "{text}");

    // The result goes back as a `tool_result` block, an error one included.
    let follow_up = json!({"model": "oa-bridge", "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_use_id, "is_error": true,
             "content": [{"type": "text", "text": "service down"}, {"type": "text", "text": ", retry later"}]}]},
    ]});
    let response = post(&gw, "/v1/messages", follow_up).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stop_reason"], "max_tokens", "{body}");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn what_cannot_be_translated_is_refused_naming_it() {
    let gw = bridges().await;
    let cases = [
        (
            "/v1/messages",
            json!({"model": "oa-bridge", "max_tokens": 16,
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                   "messages": [{"role": "user", "content": "hi"}]}),
            "web_search_20250305",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "an-bridge", "tools": [{"type": "code_interpreter"}],
                   "messages": [{"role": "user", "content": "hi"}]}),
            "code_interpreter",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "an-bridge", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
            "not JSON",
        ),
    ];
    for (path, body, named) in cases {
        let response = post(&gw, path, body).await;
        assert_eq!(response.status(), 400, "{named}");
        let text = response.text().await.unwrap();
        assert!(text.contains(named), "{named}: {text}");
    }
}

/// `x-mock-tool-call` reaches the standalone mock only through a model
/// whose config sets `forward_mock_headers`.
#[tokio::test]
async fn mock_headers_reach_only_models_that_forward_them() {
    let mock = start_mock().await;
    let mut forwarding = model(
        "an-forwarding",
        Provider::Anthropic,
        Some(format!("http://{mock}")),
        "mock",
        ReleaseState::Released,
    );
    forwarding.forward_mock_headers = true;
    let plain = model(
        "an-plain",
        Provider::Anthropic,
        Some(format!("http://{mock}")),
        "mock",
        ReleaseState::Released,
    );
    let gw = TestGateway::start(Config::default(), vec![forwarding, plain]).await;
    let tools = json!([
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "second", "parameters": {"type": "object"}}},
    ]);
    for (model, expected) in [("an-forwarding", "second"), ("an-plain", "first")] {
        let body: Value = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(gw.key("alice"))
            .header("x-mock-tool-call", "second")
            .json(&json!({"model": model, "max_tokens": 8, "tools": tools,
                          "messages": [{"role": "user", "content": "go"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], expected,
            "{model}: {body}"
        );
    }
}
