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
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

/// Anthropic `tools` from OpenAI `tools`: each function's name,
/// description and JSON-schema parameters (`input_schema`).
fn openai_tools_to_anthropic(tools: &Value) -> Result<Value, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ApiError::bad_request("invalid_request", "`tools` must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(untranslatable(
                &format!(
                    "tool of type {}",
                    tool.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                ),
                "Anthropic Messages",
            ));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", "every tool needs `function.name`")
            })?;
        let mut converted = Map::new();
        converted.insert("name".into(), json!(name));
        if let Some(description) = function.get("description").filter(|v| !v.is_null()) {
            converted.insert("description".into(), description.clone());
        }
        converted.insert(
            "input_schema".into(),
            function
                .get("parameters")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        out.push(Value::Object(converted));
    }
    Ok(Value::Array(out))
}

/// Anthropic `tool_choice` from OpenAI `tool_choice` and
/// `parallel_tool_calls`.
fn openai_tool_choice_to_anthropic(
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<Value>, ApiError> {
    let mut converted = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("unknown `tool_choice` `{other}`"),
                ));
            }
        }),
        Some(Value::Object(named)) => {
            let name = named
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        "`tool_choice` names no `function.name`",
                    )
                })?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`tool_choice` must be a string or an object",
            ));
        }
    };
    if parallel.and_then(Value::as_bool) == Some(false) {
        let choice = converted.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none"
            && let Some(object) = choice.as_object_mut()
        {
            object.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(converted)
}

/// The arguments of an OpenAI tool call (a JSON string) as the object an
/// Anthropic `tool_use` block carries.
fn tool_arguments(arguments: Option<&Value>) -> Result<Value, ApiError> {
    match arguments {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(json!({})),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|error| {
            ApiError::bad_request(
                "invalid_request",
                format!("tool call `arguments` is not JSON: {error}"),
            )
        }),
        Some(other) => Ok(other.clone()),
    }
}

/// An OpenAI assistant message with `tool_calls` as Anthropic blocks.
fn openai_assistant_blocks(message: &Value, text: String) -> Result<Value, ApiError> {
    let mut blocks = Vec::new();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
            "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
            "input": tool_arguments(function.get("arguments"))?,
        }));
    }
    Ok(Value::Array(blocks))
}

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
        if message.get("function_call").is_some_and(|v| !v.is_null()) {
            return Err(untranslatable(
                "function_call (use tool_calls)",
                "Anthropic Messages",
            ));
        }
        let text = openai_content_text(message.get("content").unwrap_or(&Value::Null))?;
        let has_tool_calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|calls| !calls.is_empty());
        match role {
            "system" | "developer" => system.push(text),
            "assistant" if has_tool_calls => out_messages.push(json!({
                "role": "assistant",
                "content": openai_assistant_blocks(message, text)?,
            })),
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_request",
                            "a `tool` message needs `tool_call_id`",
                        )
                    })?;
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": text});
                // Results of one turn's calls go together in one user turn,
                // as Anthropic requires.
                match out_messages.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"].as_array().is_some_and(|blocks| {
                                blocks.iter().all(|b| b["type"] == "tool_result")
                            }) =>
                    {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    _ => out_messages.push(json!({"role": "user", "content": [block]})),
                }
            }
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
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), openai_tools_to_anthropic(tools)?);
    }
    if let Some(choice) =
        openai_tool_choice_to_anthropic(body.get("tool_choice"), body.get("parallel_tool_calls"))?
    {
        out.insert("tool_choice".into(), choice);
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
    "tools",
    "tool_choice",
];

/// OpenAI `tools` from Anthropic `tools`. Anthropic's server tools (those
/// with a `type`, such as web search) have no OpenAI counterpart.
fn anthropic_tools_to_openai(tools: &Value) -> Result<Value, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ApiError::bad_request("invalid_request", "`tools` must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|kind| *kind != "custom")
        {
            return Err(untranslatable(
                &format!("tool of type {kind}"),
                "OpenAI Chat Completions",
            ));
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("invalid_request", "every tool needs a `name`"))?;
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(description) = tool.get("description").filter(|v| !v.is_null()) {
            function.insert("description".into(), description.clone());
        }
        function.insert(
            "parameters".into(),
            tool.get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// OpenAI `tool_choice` (and `parallel_tool_calls`) from Anthropic's.
fn anthropic_tool_choice_to_openai(
    choice: &Value,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let converted = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "`tool_choice` of type tool needs a `name`",
                )
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("unknown `tool_choice` type {}", other.unwrap_or("(none)")),
            ));
        }
    };
    out.insert("tool_choice".into(), converted);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(())
}

/// The text of a `tool_result` block's content: a string or text blocks.
fn tool_result_text(block: &Value) -> Result<String, ApiError> {
    let text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(content) => anthropic_content_text(content, "tool_result content")?,
    };
    // OpenAI has no error flag on a tool message: the text says it.
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        Ok(format!("Error: {text}"))
    } else {
        Ok(text)
    }
}

/// One Anthropic message as the OpenAI messages it becomes: an assistant
/// turn's `tool_use` blocks become `tool_calls`, a user turn's
/// `tool_result` blocks become `tool` messages (before any text of the same
/// turn).
fn anthropic_message_to_openai(role: &str, content: &Value) -> Result<Vec<Value>, ApiError> {
    let Some(blocks) = content.as_array() else {
        return Ok(vec![
            json!({"role": role, "content": anthropic_content_text(content, "content")?}),
        ]);
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut tool_messages = Vec::new();
    for block in blocks {
        match (role, block.get("type").and_then(Value::as_str)) {
            (_, Some("text")) => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            ("assistant", Some("tool_use")) => tool_calls.push(json!({
                "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": block.get("input").unwrap_or(&json!({})).to_string(),
                },
            })),
            ("user", Some("tool_result")) => tool_messages.push(json!({
                "role": "tool",
                "tool_call_id": block.get("tool_use_id").and_then(Value::as_str).unwrap_or_default(),
                "content": tool_result_text(block)?,
            })),
            (_, kind) => {
                return Err(untranslatable(
                    &format!("content block of type {}", kind.unwrap_or("unknown")),
                    "OpenAI Chat Completions",
                ));
            }
        }
    }
    let mut out = tool_messages;
    if !tool_calls.is_empty() {
        out.push(json!({
            "role": "assistant",
            "content": if text.is_empty() { Value::Null } else { Value::String(text) },
            "tool_calls": tool_calls,
        }));
    } else if !text.is_empty() || out.is_empty() {
        out.push(json!({"role": role, "content": text}));
    }
    Ok(out)
}

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
        out_messages.extend(anthropic_message_to_openai(
            role,
            message.get("content").unwrap_or(&Value::Null),
        )?);
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
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), anthropic_tools_to_openai(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        anthropic_tool_choice_to_openai(choice, &mut out)?;
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
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let mut content = Vec::new();
    if !text.is_empty() || message.get("tool_calls").is_none_or(Value::is_null) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        let input = tool_arguments(function.get("arguments")).map_err(|_| {
            ApiError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream answered with tool-call arguments that are not JSON",
            )
        })?;
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
            "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
            "input": input,
        }));
    }
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
        "content": content,
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
    let mut tool_calls = Vec::new();
    for block in response
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") | Some("redacted_thinking") => {}
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": block.get("input").unwrap_or(&json!({})).to_string(),
                },
            })),
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
            "message": if tool_calls.is_empty() {
                json!({"role": "assistant", "content": text, "refusal": null})
            } else {
                json!({"role": "assistant",
                       "content": if text.is_empty() { Value::Null } else { Value::String(text) },
                       "refusal": null, "tool_calls": tool_calls})
            },
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
    /// The content block open now: its index, and whether it is text.
    open_block: Option<(usize, bool)>,
    /// The index the next content block gets.
    next_block: usize,
    /// OpenAI tool-call index → Anthropic content-block index.
    tool_blocks: Vec<(u64, usize)>,
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
            open_block: None,
            next_block: 0,
            tool_blocks: Vec::new(),
        }
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open_block.take() {
            out.push(named_frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}).to_string(),
            ));
        }
    }

    fn open_block(&mut self, block: Value, text: bool, out: &mut Vec<Bytes>) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open_block = Some((index, text));
        let start = json!({"type": "content_block_start", "index": index, "content_block": block});
        out.push(named_frame("content_block_start", &start.to_string()));
        index
    }

    /// One OpenAI `tool_calls` delta entry: a new call opens a `tool_use`
    /// block, argument fragments become `input_json_delta`s of its block.
    fn on_tool_call(&mut self, call: &Value, out: &mut Vec<Bytes>) -> Result<(), ApiError> {
        let openai_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let known = self
            .tool_blocks
            .iter()
            .find(|(index, _)| *index == openai_index)
            .map(|(_, block)| *block);
        let block = match known {
            Some(block) => {
                if self.open_block.map(|(open, _)| open) != Some(block) {
                    return Err(ApiError::upstream(
                        http::StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "upstream interleaved the arguments of several tool calls",
                    ));
                }
                block
            }
            None => {
                let function = call.get("function").unwrap_or(&Value::Null);
                let block = self.open_block(
                    json!({"type": "tool_use",
                           "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
                           "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
                           "input": {}}),
                    false,
                    out,
                );
                self.tool_blocks.push((openai_index, block));
                block
            }
        };
        if let Some(fragment) = call
            .get("function")
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|fragment| !fragment.is_empty())
        {
            let delta = json!({"type": "content_block_delta", "index": block,
                               "delta": {"type": "input_json_delta", "partial_json": fragment}});
            out.push(named_frame("content_block_delta", &delta.to_string()));
        }
        Ok(())
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
        self.open_block(json!({"type": "text", "text": ""}), true, out);
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
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str)
                && !text.is_empty()
            {
                let index = match self.open_block {
                    Some((index, true)) => index,
                    _ => self.open_block(json!({"type": "text", "text": ""}), true, &mut out),
                };
                let delta = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}});
                out.push(named_frame("content_block_delta", &delta.to_string()));
            }
            for call in delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.on_tool_call(call, &mut out)?;
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
        self.close_block(&mut out);
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
    /// Anthropic content-block index → OpenAI tool-call index, for the
    /// `tool_use` blocks seen so far.
    tool_calls: Vec<(u64, usize)>,
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
            tool_calls: Vec::new(),
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
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let call = self.tool_calls.len();
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        self.tool_calls.push((index, call));
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": call,
                                "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                                "type": "function",
                                "function": {"name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                                             "arguments": ""}}]}),
                            None,
                        ));
                    }
                    Some("text") | Some("thinking") | Some("redacted_thinking") | None => {}
                    Some(other) => {
                        return Err(ApiError::upstream(
                            http::StatusCode::BAD_GATEWAY,
                            "unsupported_translation",
                            format!(
                                "upstream streamed a {other} block, which cannot be translated"
                            ),
                        ));
                    }
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta");
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("input_json_delta") => {
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self
                            .tool_calls
                            .iter()
                            .find(|(block, _)| *block == index)
                            .map(|(_, call)| *call)
                            .ok_or_else(|| {
                                ApiError::upstream(
                                    http::StatusCode::BAD_GATEWAY,
                                    "upstream_error",
                                    "upstream streamed tool input for a block it never started",
                                )
                            })?;
                        let fragment = delta
                            .and_then(|d| d.get("partial_json"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": call, "function": {"arguments": fragment}}]}),
                            None,
                        ));
                    }
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
    fn tool_turns_translate_both_ways_with_ids_kept() {
        // Anthropic → OpenAI: results become `tool` messages before the
        // turn's text; an error result says so.
        let anthropic = json!({"model": "m", "max_tokens": 9,
            "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "tu_2", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "tu_2", "is_error": true,
                     "content": [{"type": "text", "text": "bad"}]},
                    {"type": "text", "text": "go on"}]}]});
        let openai = anthropic_request_to_openai(anthropic.as_object().unwrap(), "up").unwrap();
        assert_eq!(
            openai["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(openai["parallel_tool_calls"], false);
        assert_eq!(
            openai["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        let messages = openai["messages"].as_array().unwrap();
        assert_eq!(messages[0]["content"], "calling");
        assert_eq!(messages[0]["tool_calls"][1]["id"], "tu_2");
        assert_eq!(
            messages[0]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(
            messages[1],
            json!({"role": "tool", "tool_call_id": "tu_1", "content": "one"})
        );
        assert_eq!(messages[2]["content"], "Error: bad");
        assert_eq!(messages[3], json!({"role": "user", "content": "go on"}));

        // OpenAI → Anthropic: consecutive `tool` messages form one user
        // turn; `required` is `any`.
        let openai = json!({"model": "m", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "c2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"}]});
        let anthropic = openai_request_to_anthropic(openai.as_object().unwrap(), "up").unwrap();
        assert_eq!(anthropic["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            anthropic["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        let messages = anthropic["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{anthropic}");
        assert_eq!(messages[0]["content"][0]["input"], json!({"a": 1}));
        assert_eq!(messages[0]["content"][1]["input"], json!({}));
        assert_eq!(messages[1]["content"][1]["tool_use_id"], "c2");
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("none"), json!({"type": "none"})),
        ] {
            let body = json!({"model": "m", "tool_choice": choice, "messages": []});
            let out = openai_request_to_anthropic(body.as_object().unwrap(), "up").unwrap();
            assert_eq!(out["tool_choice"], expected);
        }
    }

    #[test]
    fn streamed_tool_calls_keep_their_indexes() {
        // Two OpenAI calls in one turn become two tool_use blocks after the
        // text block; every block is stopped.
        let event = |data: Value| SseEvent {
            raw: Bytes::new(),
            event: None,
            data: data.to_string(),
        };
        let delta = |delta: Value| {
            event(json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]}))
        };
        let mut stream = OpenAiToAnthropicStream::new("alias", "msg_1");
        let mut frames = Vec::new();
        for step in [
            delta(json!({"role": "assistant", "content": "let me check"})),
            delta(
                json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "a", "arguments": ""}}]}),
            ),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\""}}]})),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]})),
            delta(
                json!({"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]}),
            ),
            event(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})),
        ] {
            frames.extend(stream.on_event(&step).unwrap());
        }
        frames.extend(stream.finish());
        let text: String = frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let starts: Vec<Value> = text
            .split("\n\n")
            .filter(|frame| frame.starts_with("event: content_block_start"))
            .map(|frame| serde_json::from_str(frame.split("data: ").nth(1).unwrap()).unwrap())
            .collect();
        assert_eq!(starts.len(), 3, "{text}");
        assert_eq!(starts[1]["content_block"]["id"], "c1");
        assert_eq!(starts[2]["index"], 2);
        assert_eq!(starts[2]["content_block"]["name"], "b");
        assert_eq!(
            text.matches("event: content_block_stop").count(),
            3,
            "{text}"
        );
        assert!(text.contains("\"partial_json\":\"{\\\"x\\\"\""), "{text}");
        assert!(text.contains("\"stop_reason\":\"tool_use\""), "{text}");
        // A delta for a call whose block is closed cannot be placed.
        let late = delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}));
        assert!(stream.on_event(&late).is_err());
    }

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
            (
                json!({"model": "m", "messages": [], "tools": [{"type": "file_search"}]}),
                "tool of type file_search",
            ),
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
                "tool_call_id",
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
            &object(json!({"model": "m", "max_tokens": 1, "messages": [],
                           "tools": [{"type": "bash_20250124", "name": "bash"}]})),
            "x",
        )
        .unwrap_err();
        assert!(error.message.contains("tool of type bash_20250124"));
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
