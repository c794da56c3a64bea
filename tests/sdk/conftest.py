"""Session fixtures: one standalone mock and one demo gateway for the whole
run, and SDK clients pointed at the gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness import (
    RunningGateway,
    portcullis_binary,
    start_gateway,
    start_mock,
    stop_process,
    write_config,
)

# Generous enough for a debug build on a loaded 2-core machine, short enough
# that a gateway that never answers fails the test instead of hanging CI.
CLIENT_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    binary = portcullis_binary()
    work_dir = tmp_path_factory.mktemp("portcullis")
    mock = start_mock(binary, work_dir / "mock.log")
    try:
        config_path = work_dir / "portcullis.toml"
        write_config(config_path, mock.address)
        running = start_gateway(binary, work_dir, config_path, work_dir / "gateway.log")
        try:
            yield running
        finally:
            stop_process(running.process)
    finally:
        stop_process(mock.process)


@pytest.fixture(scope="session")
def openai_client_for(gateway: RunningGateway) -> Callable:
    """Builds an OpenAI SDK client for a demo principal, or for a raw key.
    Retries are off so every failure reaches the test as the gateway sent it."""
    import openai

    def build(principal: str = "alice", *, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=api_key if api_key is not None else gateway.keys[principal],
            base_url=gateway.openai_base_url,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    return build


@pytest.fixture(scope="session")
def anthropic_client_for(gateway: RunningGateway) -> Callable:
    """Builds an Anthropic SDK client for a demo principal, or for a raw key."""
    import anthropic

    def build(principal: str = "alice", *, api_key: str | None = None) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=api_key if api_key is not None else gateway.keys[principal],
            base_url=gateway.anthropic_base_url,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    return build


@pytest.fixture
def openai_client(openai_client_for: Callable):
    return openai_client_for("alice")


@pytest.fixture
def anthropic_client(anthropic_client_for: Callable):
    return anthropic_client_for("alice")
