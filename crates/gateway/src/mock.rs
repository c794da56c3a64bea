//! The built-in deterministic mock upstream. It answers in both the OpenAI
//! and the Anthropic format, streams `max_tokens` chunks (16 by default) at a
//! configurable interval, and can be served standalone (`portcullis mock`)
//! so that Portcullis, other gateways and direct clients are measured
//! against one upstream.
//!
//! Behaviour is a pure function of the request:
//! - a last user message starting with `echo:` is answered with the rest of
//!   that message, word by word (used to test translation and output guards);
//! - an upstream model name containing `fail-500` answers 500;
//! - one containing `fail-midstream` breaks the connection after 3 chunks;
//! - one containing `hang` never answers (for timeout tests).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::error::ApiFormat;
use crate::sse::{data_frame, named_frame};

/// Header that overrides the token interval for one request.
pub const TOKEN_INTERVAL_HEADER: &str = "x-mock-token-interval-ms";
/// Chunks streamed when the request names no `max_tokens`.
pub const DEFAULT_MOCK_TOKENS: usize = 16;
/// Upper bound on streamed chunks, so a large `max_tokens` cannot tie up the
/// mock for minutes.
pub const MAX_MOCK_TOKENS: usize = 4096;
/// A fixed `created` time keeps answers byte-for-byte deterministic.
const MOCK_CREATED: i64 = 1_767_225_600;
const FILLER: &[&str] = &[
    "Portcullis",
    "mock",
    "reply:",
    "every",
    "token",
    "arrives",
    "in",
    "order,",
    "one",
    "event",
    "at",
    "a",
    "time,",
    "exactly",
    "as",
    "sent.",
];

/// How the mock will fail, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockFailure {
    None,
    ServerError,
    Midstream { after_chunks: usize },
    Hang,
}

/// Header naming the tool the mock calls, instead of the first one.
pub const TOOL_CALL_HEADER: &str = "x-mock-tool-call";

/// A tool call the mock answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    pub name: String,
    /// Built from the tool schema's required properties.
    pub arguments: Value,
}

/// A planned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockPlan {
    /// Text chunks, or for a tool call the fragments of its JSON arguments.
    pub tokens: Vec<String>,
    pub prompt_tokens: u64,
    pub finish_length: bool,
    pub failure: MockFailure,
    pub include_usage: bool,
    pub tool_call: Option<MockToolCall>,
}

impl MockPlan {
    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

fn message_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Whether the last message is a tool result (OpenAI `role: tool`, or an
/// Anthropic user turn holding `tool_result` blocks).
fn last_is_tool_result(messages: &[Value]) -> bool {
    messages.last().is_some_and(|message| {
        message.get("role").and_then(Value::as_str) == Some("tool")
            || message
                .get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| {
                    blocks.iter().any(|block| {
                        block.get("type").and_then(Value::as_str) == Some("tool_result")
                    })
                })
    })
}

/// A value of the schema's type: what a required property gets.
fn sample_value(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => sample_arguments(schema),
        _ => json!("mock"),
    }
}

/// Arguments with every required property of `schema` filled in.
fn sample_arguments(schema: &Value) -> Value {
    let mut arguments = Map::new();
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let property = schema
            .get("properties")
            .and_then(|p| p.get(name))
            .unwrap_or(&Value::Null);
        arguments.insert(name.to_owned(), sample_value(property));
    }
    Value::Object(arguments)
}

/// The tool the mock calls, per the DESIGN contract: when the request
/// carries tools, `tool_choice` is not `none` and the last message is not a
/// tool result: the tool named by `x-mock-tool-call` or `tool_choice`, else
/// the first. Both formats' tool shapes are read.
fn plan_tool_call(
    body: &Map<String, Value>,
    messages: &[Value],
    forced: Option<&str>,
) -> Option<MockToolCall> {
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())?;
    let choice = body.get("tool_choice");
    let none = choice.is_some_and(|c| c == "none" || c.get("type").is_some_and(|t| t == "none"));
    if none || last_is_tool_result(messages) {
        return None;
    }
    let named = |tool: &Value| -> Option<(String, Value)> {
        match tool.get("function") {
            Some(function) => Some((
                function.get("name")?.as_str()?.to_owned(),
                function.get("parameters").cloned().unwrap_or(Value::Null),
            )),
            None => Some((
                tool.get("name")?.as_str()?.to_owned(),
                tool.get("input_schema").cloned().unwrap_or(Value::Null),
            )),
        }
    };
    let chosen_name = forced.map(str::to_owned).or_else(|| {
        choice
            .and_then(|c| {
                c.get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| c.get("name"))
            })
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let all: Vec<(String, Value)> = tools.iter().filter_map(named).collect();
    let (name, schema) = match chosen_name {
        Some(wanted) => all.into_iter().find(|(name, _)| *name == wanted)?,
        None => all.into_iter().next()?,
    };
    Some(MockToolCall {
        name,
        arguments: sample_arguments(&schema),
    })
}

/// Splits a tool call's JSON arguments into a few fragments, as real
/// upstreams stream them.
fn argument_fragments(arguments: &Value) -> Vec<String> {
    let text = arguments.to_string();
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Plans the answer to a request body in either format.
pub fn plan(body: &Map<String, Value>, upstream_model: &str) -> MockPlan {
    plan_with_tool(body, upstream_model, None)
}

/// [`plan`], with the `x-mock-tool-call` header's tool name.
pub fn plan_with_tool(
    body: &Map<String, Value>,
    upstream_model: &str,
    forced_tool: Option<&str>,
) -> MockPlan {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut prompt_tokens = 0u64;
    let mut last_user = String::new();
    for message in messages {
        let text = message_text(message.get("content"));
        prompt_tokens += text.split_whitespace().count() as u64;
        if message.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    if let Some(system) = body.get("system") {
        prompt_tokens += message_text(Some(system)).split_whitespace().count() as u64;
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| (n as usize).min(MAX_MOCK_TOKENS));
    let (tokens, finish_length) = match last_user.trim_start().strip_prefix("echo:") {
        Some(rest) => {
            let words: Vec<String> = split_keeping_spaces(rest.trim_start());
            let limit = max_tokens.unwrap_or(usize::MAX);
            let truncated = words.len() > limit;
            (words.into_iter().take(limit).collect(), truncated)
        }
        None => {
            let count = max_tokens.unwrap_or(DEFAULT_MOCK_TOKENS);
            let words = (0..count)
                .map(|i| {
                    let word = FILLER[i % FILLER.len()];
                    if i + 1 == count {
                        word.to_owned()
                    } else {
                        format!("{word} ")
                    }
                })
                .collect();
            (words, max_tokens.is_some())
        }
    };
    let failure = if upstream_model.contains("fail-500") {
        MockFailure::ServerError
    } else if upstream_model.contains("fail-midstream") {
        MockFailure::Midstream { after_chunks: 3 }
    } else if upstream_model.contains("hang") {
        MockFailure::Hang
    } else {
        MockFailure::None
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tool_call = plan_tool_call(body, messages, forced_tool);
    let (tokens, finish_length) = match &tool_call {
        Some(call) => (argument_fragments(&call.arguments), false),
        None => (tokens, finish_length),
    };
    MockPlan {
        tokens,
        prompt_tokens,
        finish_length,
        failure,
        include_usage,
        tool_call,
    }
}

/// The tool call's id in each format.
const MOCK_CALL_ID: &str = "call_mock_1";
const MOCK_TOOL_USE_ID: &str = "toolu_mock_1";

fn split_keeping_spaces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        current.push(ch);
        if ch == ' ' {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The complete (non-streaming) answer body.
pub fn complete_body(format: ApiFormat, plan: &MockPlan, model: &str) -> Value {
    let completion = plan.tokens.len() as u64;
    if let Some(call) = &plan.tool_call {
        return match format {
            ApiFormat::OpenAi => json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": MOCK_CREATED, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
                             "tool_calls": [{"id": MOCK_CALL_ID, "type": "function",
                                             "function": {"name": call.name, "arguments": call.arguments.to_string()}}]},
                             "logprobs": null, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion,
                          "total_tokens": plan.prompt_tokens + completion},
            }),
            ApiFormat::Anthropic => json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": MOCK_TOOL_USE_ID, "name": call.name, "input": call.arguments}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": completion},
            }),
        };
    }
    match format {
        ApiFormat::OpenAi => json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": MOCK_CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": plan.text(), "refusal": null},
                         "logprobs": null, "finish_reason": if plan.finish_length { "length" } else { "stop" }}],
            "usage": {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion,
                      "total_tokens": plan.prompt_tokens + completion},
        }),
        ApiFormat::Anthropic => json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": plan.text()}],
            "stop_reason": if plan.finish_length { "max_tokens" } else { "end_turn" }, "stop_sequence": null,
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": completion},
        }),
    }
}

/// An error the mock stream produces to simulate a broken upstream.
#[derive(Debug, thiserror::Error)]
#[error("mock upstream broke off the stream")]
pub struct MockStreamBroken;

/// The streamed answer, one complete SSE event per item, paced by `interval`.
pub fn stream_frames(
    format: ApiFormat,
    plan: MockPlan,
    model: String,
    interval: Duration,
) -> impl Stream<Item = Result<Bytes, MockStreamBroken>> + Send + 'static {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let completion = plan.tokens.len() as u64;
    let token_frames: Vec<Bytes> = match format {
        ApiFormat::OpenAi => {
            let chunk = |delta: Value, finish: Option<&str>| {
                data_frame(
                    &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": MOCK_CREATED,
                            "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
                    .to_string(),
                )
            };
            head.push(chunk(json!({"role": "assistant", "content": ""}), None));
            let frames = match &plan.tool_call {
                Some(call) => {
                    head.push(chunk(
                        json!({"tool_calls": [{"index": 0, "id": MOCK_CALL_ID, "type": "function",
                                               "function": {"name": call.name, "arguments": ""}}]}),
                        None,
                    ));
                    plan.tokens
                        .iter()
                        .map(|t| {
                            chunk(
                                json!({"tool_calls": [{"index": 0, "function": {"arguments": t}}]}),
                                None,
                            )
                        })
                        .collect()
                }
                None => plan
                    .tokens
                    .iter()
                    .map(|t| chunk(json!({"content": t}), None))
                    .collect(),
            };
            let finish = if plan.tool_call.is_some() {
                "tool_calls"
            } else if plan.finish_length {
                "length"
            } else {
                "stop"
            };
            tail.push(chunk(json!({}), Some(finish)));
            if plan.include_usage {
                tail.push(data_frame(
                    &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": MOCK_CREATED,
                            "model": model, "choices": [],
                            "usage": {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion,
                                      "total_tokens": plan.prompt_tokens + completion}})
                    .to_string(),
                ));
            }
            tail.push(data_frame("[DONE]"));
            frames
        }
        ApiFormat::Anthropic => {
            head.push(named_frame(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
                        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 1}}})
                .to_string(),
            ));
            let block = match &plan.tool_call {
                Some(call) => {
                    json!({"type": "tool_use", "id": MOCK_TOOL_USE_ID, "name": call.name, "input": {}})
                }
                None => json!({"type": "text", "text": ""}),
            };
            head.push(named_frame(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": block})
                    .to_string(),
            ));
            head.push(named_frame("ping", &json!({"type": "ping"}).to_string()));
            let tool = plan.tool_call.is_some();
            let frames = plan
                .tokens
                .iter()
                .map(|t| {
                    let delta = if tool {
                        json!({"type": "input_json_delta", "partial_json": t})
                    } else {
                        json!({"type": "text_delta", "text": t})
                    };
                    named_frame(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0, "delta": delta})
                            .to_string(),
                    )
                })
                .collect();
            tail.push(named_frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}).to_string(),
            ));
            tail.push(named_frame(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": if tool { "tool_use" } else if plan.finish_length { "max_tokens" } else { "end_turn" }, "stop_sequence": null},
                        "usage": {"output_tokens": completion}})
                .to_string(),
            ));
            tail.push(named_frame(
                "message_stop",
                &json!({"type": "message_stop"}).to_string(),
            ));
            frames
        }
    };
    let break_after = match plan.failure {
        MockFailure::Midstream { after_chunks } => Some(after_chunks),
        _ => None,
    };
    let paced =
        stream::iter(token_frames.into_iter().enumerate()).then(move |(i, frame)| async move {
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            frame
        });
    let paced = paced.enumerate().map(move |(i, frame)| match break_after {
        Some(limit) if i >= limit => Err(MockStreamBroken),
        _ => Ok(frame),
    });
    // Stop right after the simulated break: a broken connection sends nothing more.
    let mut broken = false;
    let paced = paced.take_while(move |item| {
        let keep = !broken;
        broken |= item.is_err();
        std::future::ready(keep)
    });
    // A stream told to break never sends its closing frames.
    let tail_stream = if break_after.is_none() {
        stream::iter(tail.into_iter().map(Ok)).boxed()
    } else {
        stream::empty().boxed()
    };
    stream::iter(head.into_iter().map(Ok))
        .chain(paced)
        .chain(tail_stream)
}

/// The pacing interval for a request: the header override or the default.
pub fn token_interval(headers: &HeaderMap, default: Duration) -> Duration {
    headers
        .get(TOKEN_INTERVAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(60_000)))
        .unwrap_or(default)
}

/// State of the standalone mock server.
#[derive(Debug, Clone)]
pub struct MockServer {
    pub default_token_interval: Duration,
}

/// The standalone mock's routes: both APIs plus `/v1/models` and health.
pub fn router(server: MockServer) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_handler))
        .route("/chat/completions", post(openai_handler))
        .route("/v1/messages", post(anthropic_handler))
        .route("/v1/models", get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "mock", "object": "model", "created": MOCK_CREATED, "owned_by": "portcullis"}]})) }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(server)
}

async fn openai_handler(State(server): State<MockServer>, request: Request) -> Response {
    serve(server, ApiFormat::OpenAi, request).await
}

async fn anthropic_handler(State(server): State<MockServer>, request: Request) -> Response {
    serve(server, ApiFormat::Anthropic, request).await
}

async fn serve(server: MockServer, format: ApiFormat, request: Request) -> Response {
    let interval = token_interval(request.headers(), server.default_token_interval);
    let forced_tool = request
        .headers()
        .get(TOOL_CALL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let body: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(error) => {
            let message = format!("invalid JSON body: {error}");
            let body = match format {
                ApiFormat::OpenAi => {
                    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
                }
                ApiFormat::Anthropic => {
                    json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
                }
            };
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_owned();
    let plan = plan_with_tool(&body, &model, forced_tool.as_deref());
    match plan.failure {
        MockFailure::ServerError => {
            let body = match format {
                ApiFormat::OpenAi => {
                    json!({"error": {"message": "mock upstream failure", "type": "server_error", "param": null, "code": null}})
                }
                ApiFormat::Anthropic => {
                    json!({"type": "error", "error": {"type": "api_error", "message": "mock upstream failure"}})
                }
            };
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
        }
        MockFailure::Hang => {
            std::future::pending::<()>().await;
        }
        _ => {}
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let frames = stream_frames(format, plan, model, interval)
            .map(|item| item.map_err(std::io::Error::other));
        let mut response = Response::new(Body::from_stream(frames));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    } else {
        let body = complete_body(format, &plan, &model).to_string();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn plans_are_deterministic() {
        let default = plan(
            &body(json!({"messages": [{"role": "user", "content": "hello there"}]})),
            "mock",
        );
        assert_eq!(default.tokens.len(), DEFAULT_MOCK_TOKENS);
        assert_eq!(default.prompt_tokens, 2);
        assert!(!default.finish_length);
        let limited = plan(
            &body(json!({"max_tokens": 3, "messages": [{"role": "user", "content": "x"}]})),
            "mock",
        );
        assert_eq!(limited.tokens.len(), 3);
        assert!(limited.finish_length);
        let echo = plan(
            &body(json!({"messages": [{"role": "user", "content": "echo: say exactly this"}]})),
            "mock",
        );
        assert_eq!(echo.text(), "say exactly this");
        assert_eq!(echo.tokens, ["say ", "exactly ", "this"]);
        assert_eq!(
            plan(&body(json!({})), "x-fail-500").failure,
            MockFailure::ServerError
        );
    }

    #[tokio::test]
    async fn streams_every_frame_then_breaks_where_told() {
        let p = plan(
            &body(json!({"max_tokens": 5, "stream_options": {"include_usage": true}})),
            "mock",
        );
        let frames: Vec<_> = stream_frames(ApiFormat::OpenAi, p, "m".into(), Duration::ZERO)
            .collect()
            .await;
        // role chunk + 5 tokens + finish + usage + [DONE]
        assert_eq!(frames.len(), 9);
        assert!(frames.iter().all(Result::is_ok));

        let p = plan(&body(json!({"max_tokens": 5})), "mock-fail-midstream");
        let frames: Vec<_> = stream_frames(ApiFormat::Anthropic, p, "m".into(), Duration::ZERO)
            .collect()
            .await;
        // 3 head frames, 3 tokens, then the break and nothing after it.
        assert_eq!(frames.len(), 7);
        assert!(frames.last().unwrap().is_err());
    }
}
