"""The 5:21 p.m. letter through the official SDKs: an order applied through
the admin API cuts a foreign national's stream mid-flight with an error the
SDK raises, while a US person's stream runs to completion, and new requests
for the affected pair get a 451 `PermissionDeniedError`-class answer.

Runs on its own demo gateway, because an order would change what the
session gateway's other tests see."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from harness import RunningGateway, portcullis_binary, require_module, start_gateway, stop_process, start_mock, write_config

openai = require_module("openai")
anthropic = require_module("anthropic")

ORDER = {
    "reference": "BIS-2026-0521",
    "issuer": "US Department of Commerce",
    "received_at": "2026-11-20T17:21:00-05:00",
    "effective_at": None,
    "effect": "suspend",
    "models": ["family:frontier"],
    "principals": {"foreign_persons_under": "ear"},
    "reason": "order of 2026-11-20",
}


@pytest.fixture
def fresh_gateway(tmp_path) -> Iterator[RunningGateway]:
    binary = portcullis_binary()
    mock = start_mock(binary, tmp_path / "mock.log")
    try:
        config_path = tmp_path / "portcullis.toml"
        write_config(config_path, mock.address)
        running = start_gateway(binary, tmp_path, config_path, tmp_path / "gateway.log")
        try:
            yield running
        finally:
            stop_process(running.process)
    finally:
        stop_process(mock.process)


def admin(gateway: RunningGateway, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{gateway.admin_listen}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {gateway.admin_token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


SLOW = {"x-mock-token-interval-ms": "50"}


def apply_order_after_first_chunk(gateway: RunningGateway, first_chunk: threading.Event, result: dict) -> threading.Thread:
    def run() -> None:
        first_chunk.wait(timeout=30)
        result["status"], result["body"] = admin(gateway, "POST", "/admin/v1/orders", ORDER)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_openai_sdk_stream_is_cut_by_an_order_and_a_us_persons_stream_finishes(fresh_gateway):
    foreign = openai.OpenAI(api_key=fresh_gateway.keys["bruno"], base_url=fresh_gateway.openai_base_url, max_retries=0, timeout=30)
    citizen = openai.OpenAI(api_key=fresh_gateway.keys["alice"], base_url=fresh_gateway.openai_base_url, max_retries=0, timeout=30)
    citizen_stream = citizen.chat.completions.create(
        model="fable", max_tokens=40, stream=True, extra_headers=SLOW,
        messages=[{"role": "user", "content": "hello"}],
    )
    first_chunk = threading.Event()
    result: dict = {}
    applier = apply_order_after_first_chunk(fresh_gateway, first_chunk, result)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in foreign.chat.completions.create(
            model="mythos", max_tokens=400, stream=True, extra_headers=SLOW,
            messages=[{"role": "user", "content": "hello"}],
        ):
            received.append(chunk)
            first_chunk.set()
    applier.join()
    assert result["status"] == 201, result
    assert received, "the stream was cut before it started"
    assert len(received) < 400
    assert caught.value.body["code"] == "legal_restriction"
    assert "BIS-2026-0521" in caught.value.body["message"]

    citizen_chunks = list(citizen_stream)
    finish_reasons = [c.choices[0].finish_reason for c in citizen_chunks if c.choices]
    assert finish_reasons[-1] in ("stop", "length"), finish_reasons

    with pytest.raises(openai.APIStatusError) as denied:
        foreign.chat.completions.create(model="fable", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 451
    assert denied.value.body["code"] == "legal_restriction"
    assert citizen.chat.completions.create(model="fable", messages=[{"role": "user", "content": "hi"}]).choices


def test_anthropic_sdk_stream_is_cut_by_an_order(fresh_gateway):
    foreign = anthropic.Anthropic(api_key=fresh_gateway.keys["bruno"], base_url=fresh_gateway.anthropic_base_url, max_retries=0, timeout=30)
    first_chunk = threading.Event()
    result: dict = {}
    applier = apply_order_after_first_chunk(fresh_gateway, first_chunk, result)
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with foreign.messages.stream(
            model="mythos", max_tokens=400, extra_headers=SLOW,
            messages=[{"role": "user", "content": "hello"}],
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
                first_chunk.set()
    applier.join()
    assert result["status"] == 201, result
    assert received
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "permission_error"
    assert "legal_restriction" in caught.value.body["error"]["message"]

    # The SDKs have no class of their own for 451; it is an APIStatusError.
    with pytest.raises(anthropic.APIStatusError) as denied:
        foreign.messages.create(model="fable", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 451
