"""Plain and streaming chat through each SDK on `haiku`, a demo model on the
built-in mock, where the client and upstream speak the same format."""

from __future__ import annotations

import pytest

from harness import require_module

openai = require_module("openai")
anthropic = require_module("anthropic")

# The mock answers an `echo:` prompt with the rest of the message, one token
# per word, and stops early when `max_tokens` is smaller than the word count.
# Each row: prompt, max_tokens, expected text, whether the limit cut it.
ECHO_CASES = [
    pytest.param("echo: the quick brown fox", None, "the quick brown fox", False, id="complete"),
    pytest.param("echo: one two three four five", 3, "one two three ", True, id="cut-by-max-tokens"),
]

ANTHROPIC_RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


def words(text: str) -> int:
    return len(text.split())


def test_openai_chat_completion_on_haiku_returns_text_and_usage(openai_client):
    completion = openai_client.chat.completions.create(
        model="haiku", messages=[{"role": "user", "content": "Say something."}]
    )

    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens == words("Say something.")
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_openai_chat_completion_on_haiku_echoes_exactly(openai_client, prompt, max_tokens, expected_text, cut):
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    completion = openai_client.chat.completions.create(
        model="haiku", messages=[{"role": "user", "content": prompt}], **extra
    )

    assert completion.choices[0].message.content == expected_text
    assert completion.choices[0].finish_reason == ("length" if cut else "stop")
    assert completion.usage.completion_tokens == words(expected_text)


def test_openai_stream_on_haiku_matches_non_stream_and_ends_with_usage(openai_client):
    messages = [{"role": "user", "content": "Say something."}]
    complete = openai_client.chat.completions.create(model="haiku", messages=messages)

    chunks = list(
        openai_client.chat.completions.create(
            model="haiku",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks, "the stream produced no chunks"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    # With include_usage, usage arrives once, in a final chunk with no choices.
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == complete.usage.model_dump()

    choice_chunks = [chunk for chunk in chunks if chunk.choices]
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    streamed_text = "".join(chunk.choices[0].delta.content or "" for chunk in choice_chunks)
    assert streamed_text == complete.choices[0].message.content
    finish_reasons = [c.choices[0].finish_reason for c in choice_chunks if c.choices[0].finish_reason]
    assert finish_reasons == [complete.choices[0].finish_reason]


def test_openai_stream_without_include_usage_sends_no_usage_chunk(openai_client):
    chunks = list(
        openai_client.chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": "echo: a b c"}], stream=True
        )
    )

    assert [chunk for chunk in chunks if chunk.usage is not None] == []
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_anthropic_message_on_haiku_returns_text_usage_and_stop_reason(
    anthropic_client, prompt, max_tokens, expected_text, cut
):
    message = anthropic_client.messages.create(
        model="haiku",
        max_tokens=max_tokens or 256,
        messages=[{"role": "user", "content": prompt}],
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected_text
    assert message.stop_reason == ("max_tokens" if cut else "end_turn")
    assert message.usage.input_tokens == words(prompt)
    assert message.usage.output_tokens == words(expected_text)


@pytest.mark.parametrize(("prompt", "max_tokens", "expected_text", "cut"), ECHO_CASES)
def test_anthropic_stream_on_haiku_follows_the_event_sequence(
    anthropic_client, prompt, max_tokens, expected_text, cut
):
    with anthropic_client.messages.stream(
        model="haiku",
        max_tokens=max_tokens or 256,
        messages=[{"role": "user", "content": prompt}],
    ) as stream:
        event_types = [event.type for event in stream if event.type in ANTHROPIC_RAW_EVENTS]
        final = stream.get_final_message()

    # Consecutive deltas collapse to one entry; the shape of the sequence is
    # what clients depend on.
    sequence = [t for i, t in enumerate(event_types) if i == 0 or t != event_types[i - 1]]
    assert sequence == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert event_types.count("content_block_delta") == words(expected_text)
    assert final.content[0].text == expected_text
    assert final.stop_reason == ("max_tokens" if cut else "end_turn")
    assert final.usage.input_tokens == words(prompt)
    assert final.usage.output_tokens == words(expected_text)


def test_anthropic_stream_text_matches_non_stream_text_on_haiku(anthropic_client):
    request = {"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "Say something."}]}
    complete = anthropic_client.messages.create(**request)

    with anthropic_client.messages.stream(**request) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert streamed_text == complete.content[0].text
    assert final.stop_reason == complete.stop_reason
    assert final.usage.output_tokens == complete.usage.output_tokens
