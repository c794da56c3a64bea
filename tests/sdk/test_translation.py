"""Cross-format translation over real HTTP: each SDK talks to a config model
whose provider speaks the other API, backed by the standalone mock."""

from __future__ import annotations

import pytest

from harness import require_module

openai = require_module("openai")
anthropic = require_module("anthropic")

# Each row: prompt, max_tokens, expected text, whether the limit cut it.
ECHO_CASES = [
    pytest.param(
        "echo: translated across formats intact", 64, "translated across formats intact", False, id="complete"
    ),
    pytest.param("echo: one two three four five", 2, "one two ", True, id="cut-by-max-tokens"),
]


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_anthropic_sdk_to_openai_upstream_non_stream(anthropic_client, prompt, max_tokens, expected_text, cut):
    message = anthropic_client.messages.create(
        model="oa-bridge", max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "oa-bridge"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected_text
    assert message.stop_reason == ("max_tokens" if cut else "end_turn")
    assert message.usage.input_tokens == words(prompt)
    assert message.usage.output_tokens == words(expected_text)


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_anthropic_sdk_to_openai_upstream_stream(anthropic_client, prompt, max_tokens, expected_text, cut):
    with anthropic_client.messages.stream(
        model="oa-bridge", max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        event_types = [event.type for event in stream]
        final = stream.get_final_message()

    assert event_types[0] == "message_start"
    assert event_types[-1] == "message_stop"
    assert "message_delta" in event_types
    assert final.content[0].text == expected_text
    assert final.stop_reason == ("max_tokens" if cut else "end_turn")
    assert final.usage.output_tokens == words(expected_text)
    assert final.usage.input_tokens == words(prompt)


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_openai_sdk_to_anthropic_upstream_non_stream(openai_client, prompt, max_tokens, expected_text, cut):
    completion = openai_client.chat.completions.create(
        model="an-bridge", max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "an-bridge"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text
    assert choice.finish_reason == ("length" if cut else "stop")
    assert completion.usage.prompt_tokens == words(prompt)
    assert completion.usage.completion_tokens == words(expected_text)
    assert completion.usage.total_tokens == words(prompt) + words(expected_text)


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_openai_sdk_to_anthropic_upstream_stream(openai_client, prompt, max_tokens, expected_text, cut):
    chunks = list(
        openai_client.chat.completions.create(
            model="an-bridge",
            max_tokens=max_tokens,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    choice_chunks = [chunk for chunk in chunks if chunk.choices]
    assert "".join(c.choices[0].delta.content or "" for c in choice_chunks) == expected_text
    finish_reasons = [c.choices[0].finish_reason for c in choice_chunks if c.choices[0].finish_reason]
    assert finish_reasons == ["length" if cut else "stop"]
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].usage.prompt_tokens == words(prompt)
    assert chunks[-1].usage.completion_tokens == words(expected_text)
    assert chunks[-1].usage.total_tokens == words(prompt) + words(expected_text)


def test_openai_sdk_to_anthropic_upstream_without_max_tokens(openai_client):
    # OpenAI clients usually omit max_tokens, which the Anthropic API
    # requires; the translation must still produce a complete answer.
    completion = openai_client.chat.completions.create(
        model="an-bridge", messages=[{"role": "user", "content": "echo: no limit was sent"}]
    )

    assert completion.choices[0].message.content == "no limit was sent"
    assert completion.choices[0].finish_reason == "stop"


def test_system_prompt_and_history_survive_translation(anthropic_client, openai_client):
    # The mock counts the words of every message and of the system prompt as
    # input tokens, so the counts prove the whole conversation went through.
    history = [
        {"role": "user", "content": "first question here"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "echo: second turn"},
    ]
    message = anthropic_client.messages.create(
        model="oa-bridge", max_tokens=32, system="be brief", messages=history
    )
    assert message.content[0].text == "second turn"
    assert message.usage.input_tokens == 2 + 3 + 2 + 3

    completion = openai_client.chat.completions.create(
        model="an-bridge",
        max_tokens=32,
        messages=[{"role": "system", "content": "be brief"}, *history],
    )
    assert completion.choices[0].message.content == "second turn"
    assert completion.usage.prompt_tokens == 2 + 3 + 2 + 3


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
WEATHER_ARGUMENTS = {"city": "mock", "days": 1}


def test_openai_sdk_tool_call_on_an_anthropic_upstream(openai_client):
    """The mock (Anthropic format) calls the tool; the OpenAI SDK sees a
    native tool call, then answers with the result."""
    import json

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    completion = openai_client.chat.completions.create(model="an-bridge", max_tokens=16, tools=tools, messages=messages)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS

    stream = openai_client.chat.completions.create(
        model="an-bridge", max_tokens=16, tools=tools, messages=messages, stream=True
    )
    arguments, name, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for piece in delta.tool_calls or []:
            assert piece.index == 0
            name = piece.function.name or name
            arguments += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    assert json.loads(arguments) == WEATHER_ARGUMENTS

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "4 degrees"},
    ]
    answer = openai_client.chat.completions.create(model="an-bridge", max_tokens=4, tools=tools, messages=messages)
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content


def test_anthropic_sdk_tool_use_on_an_openai_upstream(anthropic_client):
    """The mock (OpenAI format) calls the tool; the Anthropic SDK sees a
    native tool_use block, streamed too, then answers with the result."""
    tools = [{"name": "get_weather", "description": "Forecast", "input_schema": WEATHER_SCHEMA}]
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    message = anthropic_client.messages.create(model="oa-bridge", max_tokens=16, tools=tools, messages=messages)
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input == WEATHER_ARGUMENTS

    with anthropic_client.messages.stream(model="oa-bridge", max_tokens=16, tools=tools, messages=messages) as stream:
        final = stream.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert streamed.name == "get_weather" and streamed.input == WEATHER_ARGUMENTS
    assert final.stop_reason == "tool_use"

    messages += [
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "4 degrees"}]},
    ]
    answer = anthropic_client.messages.create(model="oa-bridge", max_tokens=4, tools=tools, messages=messages)
    assert [b.type for b in answer.content] == ["text"]
