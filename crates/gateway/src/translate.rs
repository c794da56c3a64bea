//! Translation between the OpenAI Chat Completions and Anthropic Messages
//! formats, for text chat. This module is the one place that defines how
//! roles, system prompts, stop reasons and usage map between the two.
//!
//! Anything that cannot be translated faithfully (tools, images, `n > 1`,
//! unknown fields) is refused with a 400 naming the feature, never dropped.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::sse::{SseEvent, data_frame, named_frame};

/// The `max_tokens` sent to Anthropic when an OpenAI client gave none;
/// Anthropic requires the field.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;

/// Puts the alias the client asked for wherever an answer in the client's
/// own format names the upstream's model: the top-level `model` of an
/// OpenAI completion or chunk, of an Anthropic message, and of the message
/// inside an Anthropic `message_start` event. Returns whether it changed
/// anything. The upstream's name is deployment detail that clients must
/// not learn (and must not come to depend on).
pub fn alias_model(value: &mut Value, alias: &str) -> bool {
    let mut changed = false;
    let mut rename = |object: &mut Value| {
        if let Some(model) = object.get_mut("model")
            && model.as_str() != Some(alias)
        {
            *model = Value::String(alias.to_owned());
            changed = true;
        }
    };
    rename(value);
    if let Some(message) = value.get_mut("message") {
        rename(message);
    }
    changed
}

/// [`alias_model`] on one same-format stream event: the event re-framed
/// with the alias, or `None` when it names no model (and passes unchanged).
pub fn alias_model_in_event(event: &SseEvent, alias: &str) -> Option<Bytes> {
    if !event.data.contains("\"model\"") {
        return None;
    }
    let mut value: Value = serde_json::from_str(&event.data).ok()?;
    if !alias_model(&mut value, alias) {
        return None;
    }
    let data = value.to_string();
    Some(match &event.event {
        Some(name) => named_frame(name, &data),
        None => data_frame(&data),
    })
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason_from_stop_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "refusal" => "content_filter",
        "tool_use" => "tool_calls",
        _ => "stop",
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason_from_finish_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "content_filter" => "refusal",
        "tool_calls" | "function_call" => "tool_use",
        _ => "end_turn",
    }
}

fn untranslatable(feature: &str, to: &str) -> ApiError {
    ApiError::bad_request(
        "unsupported_translation",
        format!("`{feature}` cannot be translated to the {to} API used by this model's upstream"),
    )
}

/// Text of an OpenAI message `content`: a string, or an array of text parts.
fn openai_content_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(piece)) => text.push_str(piece),
                    (kind, _) => {
                        return Err(untranslatable(
                            &format!("content part of type {}", kind.unwrap_or("unknown")),
                            "Anthropic Messages",
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_request(
            "invalid_request",
            "message `content` must be a string or an array of parts",
        )),
    }
}

/// Text of Anthropic `content` (or `system`): a string, or text blocks.
fn anthropic_content_text(content: &Value, field: &str) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for block in blocks {
                match (
                    block.get("type").and_then(Value::as_str),
                    block.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(piece)) => {
                        if !text.is_empty() && field == "system" {
                            text.push('\n');
                        }
                        text.push_str(piece)
                    }
                    (kind, _) => {
                        return Err(untranslatable(
                            &format!("{field} block of type {}", kind.unwrap_or("unknown")),
                            "OpenAI Chat Completions",
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_request(
            "invalid_request",
            format!("`{field}` must be a string or an array of blocks"),
        )),
    }
}

/// Fields of an OpenAI request that translation to Anthropic understands.
const OPENAI_TRANSLATABLE: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "user",
    "n",
];

/// Builds an Anthropic Messages request from an OpenAI Chat Completions one.
pub fn openai_request_to_anthropic(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Value, ApiError> {
    if let Some(field) = body
        .keys()
        .find(|k| !OPENAI_TRANSLATABLE.contains(&k.as_str()))
    {
        return Err(untranslatable(field, "Anthropic Messages"));
    }
    if body
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n != 1)
    {
        return Err(untranslatable("n > 1", "Anthropic Messages"));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "`messages` must be an array"))?;
    let mut system = Vec::new();
    let mut out_messages = Vec::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if message.get("tool_calls").is_some() || message.get("function_call").is_some() {
            return Err(untranslatable("tool_calls", "Anthropic Messages"));
        }
        let text = openai_content_text(message.get("content").unwrap_or(&Value::Null))?;
        match role {
            "system" | "developer" => system.push(text),
            "user" | "assistant" => out_messages.push(json!({"role": role, "content": text})),
            other => {
                return Err(untranslatable(
                    &format!("message role {other}"),
                    "Anthropic Messages",
                ));
            }
        }
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS);
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("max_tokens".into(), json!(max_tokens));
    out.insert("messages".into(), Value::Array(out_messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    if let Some(temperature) = body.get("temperature").filter(|v| !v.is_null()) {
        if temperature.as_f64().is_some_and(|t| t > 1.0) {
            return Err(untranslatable("temperature above 1", "Anthropic Messages"));
        }
        out.insert("temperature".into(), temperature.clone());
    }
    if let Some(top_p) = body.get("top_p").filter(|v| !v.is_null()) {
        out.insert("top_p".into(), top_p.clone());
    }
    match body.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

const ANTHROPIC_TRANSLATABLE: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
];

/// Builds an OpenAI Chat Completions request from an Anthropic Messages one.
pub fn anthropic_request_to_openai(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Value, ApiError> {
    if let Some(field) = body
        .keys()
        .find(|k| !ANTHROPIC_TRANSLATABLE.contains(&k.as_str()))
    {
        return Err(untranslatable(field, "OpenAI Chat Completions"));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "`messages` must be an array"))?;
    let mut out_messages = Vec::new();
    if let Some(system) = body.get("system") {
        let text = anthropic_content_text(system, "system")?;
        if !text.is_empty() {
            out_messages.push(json!({"role": "system", "content": text}));
        }
    }
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(untranslatable(
                &format!("message role {role}"),
                "OpenAI Chat Completions",
            ));
        }
        let text =
            anthropic_content_text(message.get("content").unwrap_or(&Value::Null), "content")?;
        out_messages.push(json!({"role": role, "content": text}));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("messages".into(), Value::Array(out_messages));
    if let Some(max_tokens) = body.get("max_tokens") {
        out.insert("max_tokens".into(), max_tokens.clone());
    }
    for field in ["temperature", "top_p"] {
        if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(stops) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), stops.clone());
    }
    if let Some(metadata) = body.get("metadata").and_then(Value::as_object) {
        if let Some(field) = metadata.keys().find(|k| k.as_str() != "user_id") {
            return Err(untranslatable(
                &format!("metadata.{field}"),
                "OpenAI Chat Completions",
            ));
        }
        if let Some(user) = metadata.get("user_id").and_then(Value::as_str) {
            out.insert("user".into(), Value::String(user.to_owned()));
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        // Usage arrives only when asked for; Anthropic clients always get it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

/// Converts a complete OpenAI chat completion into an Anthropic message.
pub fn openai_response_to_anthropic(
    response: &Value,
    model_alias: &str,
) -> Result<Value, ApiError> {
    let choice = response
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| {
            ApiError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream response has no choices",
            )
        })?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    if message.get("tool_calls").is_some_and(|t| !t.is_null()) {
        return Err(ApiError::upstream(
            http::StatusCode::BAD_GATEWAY,
            "unsupported_translation",
            "upstream answered with tool calls, which cannot be translated",
        ));
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let usage = response.get("usage");
    let id = response
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("translated");
    Ok(json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model_alias,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason_from_finish_reason(finish_reason),
        "stop_sequence": null,
        "usage": {
            "input_tokens": usage.and_then(|u| u.get("prompt_tokens")).and_then(Value::as_u64).unwrap_or(0),
            "output_tokens": usage.and_then(|u| u.get("completion_tokens")).and_then(Value::as_u64).unwrap_or(0),
        },
    }))
}

/// Converts a complete Anthropic message into an OpenAI chat completion.
pub fn anthropic_response_to_openai(
    response: &Value,
    model_alias: &str,
    created: i64,
) -> Result<Value, ApiError> {
    let mut text = String::new();
    for block in response
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") | Some("redacted_thinking") => {}
            other => {
                return Err(ApiError::upstream(
                    http::StatusCode::BAD_GATEWAY,
                    "unsupported_translation",
                    format!(
                        "upstream answered with a {} block, which cannot be translated",
                        other.unwrap_or("unknown")
                    ),
                ));
            }
        }
    }
    let stop_reason = response
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let usage = response.get("usage");
    let input = usage
        .and_then(|u| u.get("input_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let output = usage
        .and_then(|u| u.get("output_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let id = response
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("translated");
    Ok(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model_alias,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason_from_stop_reason(stop_reason),
        }],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    }))
}

/// Translates an OpenAI chat-completion stream into Anthropic message events.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model_alias: String,
    message_id: String,
    started: bool,
    stop_reason: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    finished: bool,
}

impl OpenAiToAnthropicStream {
    pub fn new(model_alias: &str, message_id: &str) -> Self {
        Self {
            model_alias: model_alias.to_owned(),
            message_id: message_id.to_owned(),
            started: false,
            stop_reason: "end_turn",
            input_tokens: 0,
            output_tokens: 0,
            finished: false,
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let start = json!({
            "type": "message_start",
            "message": {
                "id": self.message_id, "type": "message", "role": "assistant", "model": self.model_alias,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        out.push(named_frame("message_start", &start.to_string()));
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        out.push(named_frame("content_block_start", &block.to_string()));
    }

    /// Frames for one upstream event. An error is a failure to relay, which
    /// the caller ends the stream with.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, ApiError> {
        let mut out = Vec::new();
        if event.data == "[DONE]" {
            out.extend(self.finish());
            return Ok(out);
        }
        let chunk: Value = serde_json::from_str(&event.data).map_err(|_| {
            ApiError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream sent a malformed stream event",
            )
        })?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error");
            return Err(ApiError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                message.to_owned(),
            ));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.input_tokens = usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(self.input_tokens);
            self.output_tokens = usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(self.output_tokens);
        }
        if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
            self.start(&mut out);
            let delta = choice.get("delta");
            if delta
                .and_then(|d| d.get("tool_calls"))
                .is_some_and(|t| !t.is_null())
            {
                return Err(ApiError::upstream(
                    http::StatusCode::BAD_GATEWAY,
                    "unsupported_translation",
                    "upstream streamed tool calls, which cannot be translated",
                ));
            }
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str)
                && !text.is_empty()
            {
                let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
                out.push(named_frame("content_block_delta", &delta.to_string()));
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.stop_reason = stop_reason_from_finish_reason(reason);
            }
        }
        Ok(out)
    }

    /// Closing frames, once. Called at `[DONE]` or when the upstream ends.
    pub fn finish(&mut self) -> Vec<Bytes> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = Vec::new();
        self.start(&mut out);
        out.push(named_frame(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}).to_string(),
        ));
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        });
        out.push(named_frame("message_delta", &delta.to_string()));
        out.push(named_frame(
            "message_stop",
            &json!({"type": "message_stop"}).to_string(),
        ));
        out
    }
}

/// Translates an Anthropic message stream into OpenAI chat-completion chunks.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model_alias: String,
    completion_id: String,
    created: i64,
    include_usage: bool,
    input_tokens: u64,
    output_tokens: u64,
    finished: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(model_alias: &str, completion_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            model_alias: model_alias.to_owned(),
            completion_id: completion_id.to_owned(),
            created,
            include_usage,
            input_tokens: 0,
            output_tokens: 0,
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let chunk = json!({
            "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model_alias,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        data_frame(&chunk.to_string())
    }

    pub fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, ApiError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|_| {
            ApiError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream sent a malformed stream event",
            )
        })?;
        let kind = event
            .event
            .as_deref()
            .or_else(|| data.get("type").and_then(Value::as_str))
            .unwrap_or("");
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let usage = data.get("message").and_then(|m| m.get("usage"));
                self.input_tokens = usage
                    .and_then(|u| u.get("input_tokens"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_delta" => {
                let delta = data.get("delta");
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta
                            .and_then(|d| d.get("text"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        out.push(self.chunk(json!({"content": text}), None));
                    }
                    Some("thinking_delta") | Some("signature_delta") => {}
                    other => {
                        return Err(ApiError::upstream(
                            http::StatusCode::BAD_GATEWAY,
                            "unsupported_translation",
                            format!(
                                "upstream streamed a {} delta, which cannot be translated",
                                other.unwrap_or("unknown")
                            ),
                        ));
                    }
                }
            }
            "message_delta" => {
                if let Some(usage) = data.get("usage") {
                    self.output_tokens = usage
                        .get("output_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(self.output_tokens);
                    self.input_tokens = usage
                        .get("input_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(self.input_tokens);
                }
                let stop_reason = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                out.push(self.chunk(json!({}), Some(finish_reason_from_stop_reason(stop_reason))));
            }
            "message_stop" => out.extend(self.finish()),
            "error" => {
                let message = data
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                return Err(ApiError::upstream(
                    http::StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    message.to_owned(),
                ));
            }
            _ => {}
        }
        Ok(out)
    }

    pub fn finish(&mut self) -> Vec<Bytes> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = Vec::new();
        if self.include_usage {
            let usage = json!({
                "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model_alias, "choices": [],
                "usage": {"prompt_tokens": self.input_tokens, "completion_tokens": self.output_tokens,
                          "total_tokens": self.input_tokens + self.output_tokens},
            });
            out.push(data_frame(&usage.to_string()));
        }
        out.push(data_frame("[DONE]"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_alias_never_the_upstream_model() {
        let event = |name: Option<&str>, data: Value| SseEvent {
            raw: Bytes::new(),
            event: name.map(str::to_owned),
            data: data.to_string(),
        };
        let cases = [
            (
                event(
                    None,
                    json!({"id": "c", "model": "gpt-secret-2025", "choices": []}),
                ),
                Some("data: {\"id\":\"c\",\"model\":\"fable\",\"choices\":[]}\n\n"),
            ),
            (
                event(
                    Some("message_start"),
                    json!({"type": "message_start", "message": {"id": "m", "model": "claude-secret"}}),
                ),
                Some(
                    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"fable\"}}\n\n",
                ),
            ),
            (
                event(
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "delta": {"text": "hi"}}),
                ),
                None,
            ),
            (event(None, json!({"model": "fable"})), None),
        ];
        for (event, expected) in cases {
            let framed = alias_model_in_event(&event, "fable");
            assert_eq!(
                framed.as_deref(),
                expected.map(str::as_bytes),
                "{}",
                event.data
            );
        }
        assert!(alias_model_in_event(&event(None, json!("[DONE]")), "fable").is_none());
    }
    use crate::sse::SseSplitter;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn request_translation_table() {
        let openai = object(json!({
            "model": "fable", "max_completion_tokens": 7, "stop": "END", "temperature": 0.5, "stream": true,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        }));
        let anthropic = openai_request_to_anthropic(&openai, "claude-x").unwrap();
        assert_eq!(anthropic["model"], "claude-x");
        assert_eq!(anthropic["system"], "be brief");
        assert_eq!(anthropic["max_tokens"], 7);
        assert_eq!(anthropic["stop_sequences"], json!(["END"]));
        assert_eq!(
            anthropic["messages"],
            json!([{"role": "user", "content": "hi"}])
        );

        let back = anthropic_request_to_openai(&object(anthropic), "gpt-x").unwrap();
        assert_eq!(
            back["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(back["stop"], json!(["END"]));
        assert_eq!(back["stream_options"], json!({"include_usage": true}));

        let refused: &[(Value, &str)] = &[
            (json!({"model": "m", "messages": [], "tools": []}), "tools"),
            (
                json!({"model": "m", "messages": [], "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (json!({"model": "m", "messages": [], "n": 2}), "n > 1"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "image_url",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "role tool",
            ),
        ];
        for (body, feature) in refused {
            let error = openai_request_to_anthropic(&object(body.clone()), "x").unwrap_err();
            assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
            assert!(
                error.message.contains(feature),
                "{} should name {feature}",
                error.message
            );
        }
        let error = anthropic_request_to_openai(
            &object(json!({"model": "m", "max_tokens": 1, "messages": [], "tools": []})),
            "x",
        )
        .unwrap_err();
        assert!(error.message.contains("tools"));
    }

    #[test]
    fn stop_reasons_round_trip() {
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("tool_calls", "tool_use"),
        ] {
            assert_eq!(stop_reason_from_finish_reason(finish), stop);
            assert_eq!(finish_reason_from_stop_reason(stop), finish);
        }
    }

    fn events(raw: &str) -> Vec<SseEvent> {
        let mut splitter = SseSplitter::new();
        splitter.push(raw.as_bytes()).unwrap();
        std::iter::from_fn(|| splitter.next_event()).collect()
    }

    #[test]
    fn openai_stream_becomes_the_full_anthropic_event_sequence() {
        let upstream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";
        let mut translator = OpenAiToAnthropicStream::new("fable", "msg_1");
        let mut names = vec![];
        let mut text = String::new();
        let mut last_delta = Value::Null;
        for event in events(upstream) {
            for frame in translator.on_event(&event).unwrap() {
                let parsed = &events(std::str::from_utf8(&frame).unwrap())[0];
                let data: Value = serde_json::from_str(&parsed.data).unwrap();
                if let Some(t) = data.pointer("/delta/text").and_then(Value::as_str) {
                    text.push_str(t);
                }
                if parsed.event.as_deref() == Some("message_delta") {
                    last_delta = data.clone();
                }
                names.push(parsed.event.clone().unwrap());
            }
        }
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(text, "Hello");
        assert_eq!(last_delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(last_delta["usage"]["output_tokens"], 2);
        assert!(
            translator.finish().is_empty(),
            "closing frames are sent once"
        );
    }

    #[test]
    fn anthropic_stream_becomes_openai_chunks_with_usage() {
        let upstream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"},\"usage\":{\"output_tokens\":1}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut translator = AnthropicToOpenAiStream::new("haiku", "chatcmpl-1", 0, true);
        let frames: Vec<Bytes> = events(upstream)
            .iter()
            .flat_map(|e| translator.on_event(e).unwrap())
            .collect();
        let datas: Vec<String> = frames
            .iter()
            .map(|f| events(std::str::from_utf8(f).unwrap())[0].data.clone())
            .collect();
        assert_eq!(datas.last().unwrap(), "[DONE]");
        let usage: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 6);
        let finish: Value = serde_json::from_str(&datas[datas.len() - 3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
        let text: Value = serde_json::from_str(&datas[1]).unwrap();
        assert_eq!(text["choices"][0]["delta"]["content"], "Hi");
    }
}
