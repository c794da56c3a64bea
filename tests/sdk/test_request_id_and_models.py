"""Response metadata seen through the SDKs: the `x-request-id` header on
every answer, and the model list filtered by what the caller may invoke."""

from __future__ import annotations

import pytest

from harness import BRIDGE_MODELS, require_module

openai = require_module("openai")
anthropic = require_module("anthropic")

STREAM_MODES = [pytest.param(False, id="non-stream"), pytest.param(True, id="stream")]


@pytest.mark.parametrize("stream", STREAM_MODES)
def test_openai_sdk_responses_carry_a_distinct_request_id(openai_client, stream):
    request_ids = []
    for _ in range(2):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="haiku", messages=[{"role": "user", "content": "echo: hi"}], stream=stream
        )
        parsed = raw.parse()
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in parsed if c.choices) == "hi"
        else:
            assert parsed.choices[0].message.content == "hi"
        request_ids.append(raw.headers.get("x-request-id"))

    assert all(request_ids), request_ids
    assert request_ids[0] != request_ids[1]


@pytest.mark.parametrize("stream", STREAM_MODES)
def test_anthropic_sdk_responses_carry_a_distinct_request_id(anthropic_client, stream):
    request_ids = []
    for _ in range(2):
        raw = anthropic_client.messages.with_raw_response.create(
            model="haiku", max_tokens=16, messages=[{"role": "user", "content": "echo: hi"}], stream=stream
        )
        parsed = raw.parse()
        if stream:
            assert [event.type for event in parsed][-1] == "message_stop"
        else:
            assert parsed.content[0].text == "hi"
        request_ids.append(raw.headers.get("x-request-id"))

    assert all(request_ids), request_ids
    assert request_ids[0] != request_ids[1]


def test_models_list_response_carries_a_request_id(openai_client):
    raw = openai_client.models.with_raw_response.list()

    assert raw.headers.get("x-request-id")


# The demo contract opens internal `mythos` to the operator's organization
# (`lab`), but the gateway's interim access rule still denies every internal
# model to everyone, until the Cedar engine is wired into the snapshot.

# Each row: principal, the demo models that principal may invoke. `mythos` is
# internal and open only to the operator's organization, which `bruno` joins.
VISIBLE_DEMO_MODELS = [
    pytest.param("alice", {"fable", "haiku"}, id="alice-outside-the-lab"),
    pytest.param("bruno", {"mythos", "fable", "haiku"}, id="bruno-lab-employee"),
]
DEMO_MODELS = {"mythos", "fable", "haiku"}


@pytest.mark.parametrize(("principal", "expected_demo_models"), VISIBLE_DEMO_MODELS)
def test_models_list_shows_only_models_the_caller_may_invoke(openai_client_for, principal, expected_demo_models):
    listed = {model.id for model in openai_client_for(principal).models.list()}

    assert listed & DEMO_MODELS == expected_demo_models
    # The released config models are open to everyone.
    assert {model["name"] for model in BRIDGE_MODELS} <= listed
    assert listed - DEMO_MODELS == {model["name"] for model in BRIDGE_MODELS}


@pytest.mark.parametrize(
    ("principal", "may_invoke_mythos"),
    [
        pytest.param("alice", False, id="alice-outside-the-lab"),
        pytest.param("bruno", True, id="bruno-lab-employee"),
    ],
)
def test_internal_mythos_answers_only_the_operators_organization(openai_client_for, principal, may_invoke_mythos):
    # Listing and invoking must agree: a listed model is one the caller can use.
    client = openai_client_for(principal)
    if may_invoke_mythos:
        completion = client.chat.completions.create(
            model="mythos", messages=[{"role": "user", "content": "echo: internal"}]
        )
        assert completion.choices[0].message.content == "internal"
    else:
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="mythos", messages=[{"role": "user", "content": "hi"}])
