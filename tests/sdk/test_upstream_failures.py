"""Upstream failures reach SDK clients as their own error types: a stream
broken mid-way ends with a provider-native error event after the tokens
already produced, and an upstream 500 becomes a 502."""

from __future__ import annotations

import pytest

from harness import require_module

openai = require_module("openai")
anthropic = require_module("anthropic")

# The mock breaks a `fail-midstream` stream after three tokens; an echo
# prompt makes those three tokens known exactly.
PROMPT = "echo: first second third fourth fifth sixth"
TEXT_BEFORE_THE_CUT = "first second third "

BROKEN_STREAM_MODELS = [
    pytest.param("oa-broken", id="openai-upstream"),
    pytest.param("an-broken", id="anthropic-upstream"),
]
FAILING_UPSTREAM_MODELS = [
    pytest.param("oa-500", id="openai-upstream"),
    pytest.param("an-500", id="anthropic-upstream"),
]


@pytest.mark.parametrize("model", BROKEN_STREAM_MODELS)
def test_openai_sdk_stream_cut_by_upstream_raises_api_error_after_the_delivered_chunks(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)

    error = caught.value
    # A cut stream is not an HTTP status error: the 200 head was already sent.
    assert not isinstance(error, openai.APIStatusError)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == TEXT_BEFORE_THE_CUT
    assert all(c.choices[0].finish_reason is None for c in received if c.choices), "a cut stream must not look finished"
    assert error.message
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.body["type"] == "server_error"


@pytest.mark.parametrize("model", BROKEN_STREAM_MODELS)
def test_anthropic_sdk_stream_cut_by_upstream_raises_api_status_error_after_the_delivered_text(
    anthropic_client, model
):
    received_text = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic_client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            for text in stream.text_stream:
                received_text.append(text)

    error = caught.value
    assert "".join(received_text) == TEXT_BEFORE_THE_CUT
    assert error.body["type"] == "error"
    assert set(error.body["error"]) == {"type", "message"}
    assert error.type == "api_error"
    assert error.api_message


@pytest.mark.parametrize("model", FAILING_UPSTREAM_MODELS)
def test_openai_sdk_upstream_500_raises_internal_server_error_502(openai_client, model):
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])

    error = caught.value
    assert error.status_code == 502
    body = error.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "server_error"
    assert body["request_id"] == error.response.headers["x-request-id"]


@pytest.mark.parametrize("model", FAILING_UPSTREAM_MODELS)
def test_anthropic_sdk_upstream_500_raises_internal_server_error_502(anthropic_client, model):
    with pytest.raises(anthropic.InternalServerError) as caught:
        anthropic_client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hello"}])

    error = caught.value
    assert error.status_code == 502
    body = error.response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "api_error"
    assert body["request_id"] == error.response.headers["x-request-id"]


@pytest.mark.parametrize("model", FAILING_UPSTREAM_MODELS)
def test_openai_sdk_stream_request_to_failing_upstream_is_refused_before_the_stream(openai_client, model):
    # The upstream fails before its first byte, so the gateway can still
    # answer with a real status instead of a 200 followed by an error event.
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], stream=True
        )

    assert caught.value.status_code == 502


def test_gateway_serves_normally_after_upstream_failures(openai_client):
    # Failures above must not poison pooled upstream connections.
    completion = openai_client.chat.completions.create(
        model="oa-bridge", messages=[{"role": "user", "content": "echo: still healthy"}]
    )

    assert completion.choices[0].message.content == "still healthy"
