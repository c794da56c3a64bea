"""Refusals surface as each SDK's own exception class, with the provider's
native error body, whether or not the request asked for a stream."""

from __future__ import annotations

import pytest

from harness import MAX_BODY_BYTES, require_module

openai = require_module("openai")
anthropic = require_module("anthropic")

# Larger than the suite's `server.max_body_bytes` once wrapped in JSON.
OVERSIZED_PROMPT = "x" * (MAX_BODY_BYTES + 1024)

# Each row: case id, principal (None means a key the gateway never issued),
# model, prompt, HTTP status, OpenAI exception, OpenAI error type, OpenAI code
# (None when the contract fixes none), Anthropic exception, Anthropic error type.
REFUSALS = [
    pytest.param(
        None, "haiku", "hello", 401,
        openai.AuthenticationError, "authentication_error", None,
        anthropic.AuthenticationError, "authentication_error",
        id="401-unknown-key",
    ),
    pytest.param(
        "alice", "mythos", "hello", 403,
        openai.PermissionDeniedError, "permission_error", "model_access_denied",
        anthropic.PermissionDeniedError, "permission_error",
        id="403-alice-on-internal-mythos",
    ),
    pytest.param(
        "alice", "no-such-model", "hello", 404,
        openai.NotFoundError, "invalid_request_error", "model_not_found",
        anthropic.NotFoundError, "not_found_error",
        id="404-unknown-model",
    ),
    pytest.param(
        "alice", "haiku", OVERSIZED_PROMPT, 413,
        openai.APIStatusError, "invalid_request_error", "request_too_large",
        anthropic.ContentTooLargeError, "request_too_large",
        id="413-body-over-limit",
    ),
]
REFUSAL_FIELDS = (
    "principal", "model", "prompt", "status",
    "openai_error", "openai_type", "openai_code",
    "anthropic_error", "anthropic_type",
)
UNKNOWN_KEY = "pcl_this-key-was-never-issued-by-the-gateway"
STREAM_MODES = [pytest.param(False, id="non-stream"), pytest.param(True, id="stream")]


def assert_request_id_matches(error_response) -> None:
    body = error_response.json()
    header = error_response.headers.get("x-request-id")
    assert header, "the error response has no x-request-id header"
    assert body["request_id"] == header


@pytest.mark.parametrize("stream", STREAM_MODES)
@pytest.mark.parametrize(REFUSAL_FIELDS, REFUSALS)
def test_openai_sdk_raises_the_matching_exception_with_a_native_body(
    openai_client_for, stream,
    principal, model, prompt, status, openai_error, openai_type, openai_code, anthropic_error, anthropic_type,
):
    client = openai_client_for(api_key=UNKNOWN_KEY) if principal is None else openai_client_for(principal)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], stream=stream)

    error = caught.value
    assert type(error) is openai_error
    assert error.status_code == status
    body = error.response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == openai_type
    assert body["error"]["param"] is None
    assert body["error"]["message"]
    if openai_code is not None:
        assert body["error"]["code"] == openai_code
        assert error.code == openai_code
    assert_request_id_matches(error.response)


@pytest.mark.parametrize("stream", STREAM_MODES)
@pytest.mark.parametrize(REFUSAL_FIELDS, REFUSALS)
def test_anthropic_sdk_raises_the_matching_exception_with_a_native_body(
    anthropic_client_for, stream,
    principal, model, prompt, status, openai_error, openai_type, openai_code, anthropic_error, anthropic_type,
):
    client = anthropic_client_for(api_key=UNKNOWN_KEY) if principal is None else anthropic_client_for(principal)

    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": prompt}], stream=stream
        )

    error = caught.value
    assert type(error) is anthropic_error
    assert error.status_code == status
    body = error.response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == anthropic_type
    assert error.type == anthropic_type
    # Anthropic bodies have no code field, so the contract puts the code first
    # in the message; the OpenAI code names it.
    if openai_code is not None:
        assert body["error"]["message"].startswith(f"{openai_code}: ")
    assert_request_id_matches(error.response)


def test_permission_denial_names_the_model(openai_client, anthropic_client):
    with pytest.raises(openai.PermissionDeniedError) as openai_caught:
        openai_client.chat.completions.create(model="mythos", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.PermissionDeniedError) as anthropic_caught:
        anthropic_client.messages.create(model="mythos", max_tokens=8, messages=[{"role": "user", "content": "hi"}])

    assert "`mythos`" in openai_caught.value.body["message"]
    assert "`mythos`" in anthropic_caught.value.api_message


def test_a_body_just_under_the_limit_is_accepted(openai_client):
    # The limit must refuse only what exceeds it, not everything near it.
    prompt = "echo: " + "y" * (MAX_BODY_BYTES // 2)
    completion = openai_client.chat.completions.create(
        model="haiku", messages=[{"role": "user", "content": prompt}]
    )

    assert completion.choices[0].message.content == "y" * (MAX_BODY_BYTES // 2)


def test_a_rate_limit_is_each_sdks_rate_limit_error_with_retry_after(
    openai_client_for, anthropic_client_for
):
    """dara's `[[limits]]` admits LIMITED_PER_MINUTE requests; the next one
    is refused with 429, `Retry-After` and the provider's own error."""
    from harness import LIMITED_ID, LIMITED_PER_MINUTE, LIMITED_PRINCIPAL

    openai_client = openai_client_for(LIMITED_PRINCIPAL)
    for _ in range(LIMITED_PER_MINUTE):
        openai_client.chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.RateLimitError) as refused:
        openai_client.chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 429
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == str(LIMITED_PER_MINUTE)
    assert refused.value.code == "rate_limit_exceeded"
    assert LIMITED_ID in str(refused.value)

    with pytest.raises(anthropic.RateLimitError) as refused:
        anthropic_client_for(LIMITED_PRINCIPAL).messages.create(
            model="haiku", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 429
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.body["error"]["type"] == "rate_limit_error"
