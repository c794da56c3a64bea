"""Starts a standalone mock upstream and a demo gateway for the SDK suite.

The suite drives the official OpenAI and Anthropic Python SDKs, unmodified,
over real HTTP, so everything here talks to real processes and real ports.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Both listeners must be bound within this bound; the contract promises a
# cold demo in under 10 s, and a debug build on a busy machine needs slack.
STARTUP_DEADLINE_SECONDS = 60.0

# The gateway's body limit for this suite, kept small so a 413 is cheap.
MAX_BODY_BYTES = 65536

# Config models that put the standalone mock behind each provider adapter,
# so translation and upstream failures cross a real socket. `{mock}` is the
# mock's `host:port`.
OPENAI_MOCK_URL = "http://{mock}/v1"
ANTHROPIC_MOCK_URL = "http://{mock}"
BRIDGE_MODELS = [
    {"name": "oa-bridge", "provider": "openai", "base_url": OPENAI_MOCK_URL, "upstream_model": "mock"},
    {"name": "an-bridge", "provider": "anthropic", "base_url": ANTHROPIC_MOCK_URL, "upstream_model": "mock"},
    {"name": "oa-broken", "provider": "openai", "base_url": OPENAI_MOCK_URL, "upstream_model": "mock-fail-midstream"},
    {
        "name": "an-broken",
        "provider": "anthropic",
        "base_url": ANTHROPIC_MOCK_URL,
        "upstream_model": "mock-fail-midstream",
    },
    {"name": "oa-500", "provider": "openai", "base_url": OPENAI_MOCK_URL, "upstream_model": "mock-fail-500"},
    {"name": "an-500", "provider": "anthropic", "base_url": ANTHROPIC_MOCK_URL, "upstream_model": "mock-fail-500"},
]


def require_all() -> bool:
    return os.environ.get("PORTCULLIS_REQUIRE_ALL") == "1"


def require_module(name: str) -> ModuleType:
    """Imports an SDK, or skips the calling module when it is not installed.

    Under `PORTCULLIS_REQUIRE_ALL=1` a missing SDK fails the run instead,
    because CI always provides the venv and a silent skip would hide that.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        reason = (
            f"skipped: the `{name}` Python SDK is not installed ({error}); "
            "install tests/sdk/requirements.txt into the venv"
        )
        if require_all():
            pytest.fail(reason.replace("skipped: ", "", 1) + " and PORTCULLIS_REQUIRE_ALL=1", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def portcullis_binary() -> Path:
    """The binary under test: `PORTCULLIS_BIN`, else the debug build."""
    configured = os.environ.get("PORTCULLIS_BIN")
    binary = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "portcullis"
    if not binary.is_absolute():
        binary = (Path.cwd() if configured else REPO_ROOT) / binary
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"portcullis binary not found at `{binary}`: build it with "
            "`cargo build -p portcullis` or point PORTCULLIS_BIN at one",
            pytrace=False,
        )
    return binary


def hermetic_environment() -> dict[str, str]:
    """The caller's environment without `PORTCULLIS__*` config overrides,
    which would otherwise change the listeners or limits under test."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS__")}


def unused_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(process: subprocess.Popen) -> None:
    """Asks for a graceful shutdown, then kills what does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclasses.dataclass
class RunningMock:
    process: subprocess.Popen
    address: str


def start_mock(binary: Path, log_path: Path) -> RunningMock:
    """Starts `portcullis mock` on a free port and waits until it accepts
    connections. Another process can take the probed port before the mock
    binds it, so a mock that exits at once is retried on a new port."""
    for _attempt in range(5):
        port = unused_local_port()
        log = log_path.open("ab")
        process = subprocess.Popen(
            [str(binary), "mock", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=hermetic_environment(),
        )
        log.close()
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return RunningMock(process, f"127.0.0.1:{port}")
            except OSError:
                time.sleep(0.05)
        stop_process(process)
    pytest.fail(f"the standalone mock did not start; its log ends with:\n{log_tail(log_path)}", pytrace=False)


LIMITED_PRINCIPAL = "dara"
LIMITED_ID = "dara-rpm"
LIMITED_PER_MINUTE = 2


def write_config(path: Path, mock_address: str) -> None:
    lines = ["[server]", f"max_body_bytes = {MAX_BODY_BYTES}", ""]
    for model in BRIDGE_MODELS:
        lines += [
            "[[models]]",
            f'name = "{model["name"]}"',
            f'provider = "{model["provider"]}"',
            f'base_url = "{model["base_url"].format(mock=mock_address)}"',
            f'upstream_model = "{model["upstream_model"]}"',
            'state = "released"',
            'family = "bridge"',
            "tags = []",
            "",
        ]
    # dara's requests are limited, for the rate-limit tests; no other test
    # uses dara.
    lines += [
        "[[limits]]",
        f'id = "{LIMITED_ID}"',
        f'scope = {{ principal = "{LIMITED_PRINCIPAL}" }}',
        f"requests_per_minute = {LIMITED_PER_MINUTE}",
        "",
    ]
    path.write_text("\n".join(lines))


@dataclasses.dataclass
class RunningGateway:
    process: subprocess.Popen
    listen: str
    admin_listen: str
    admin_token: str
    keys: dict[str, str]

    @property
    def openai_base_url(self) -> str:
        return f"http://{self.listen}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://{self.listen}"


def start_gateway(binary: Path, work_dir: Path, config_path: Path, log_path: Path) -> RunningGateway:
    """Runs `portcullis serve --demo` on port 0 and reads the bound
    addresses and keys from `demo-keys.json`, which the contract says is
    written only after both listeners are bound."""
    data_dir = work_dir / "data"
    keys_path = data_dir / "demo-keys.json"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            str(binary), "serve", "--demo",
            "--data", str(data_dir),
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
            "--config", str(config_path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=hermetic_environment(),
    )
    log.close()
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"portcullis serve exited with {process.returncode}; its log ends with:\n{log_tail(log_path)}",
                pytrace=False,
            )
        try:
            demo = json.loads(keys_path.read_text())
        except (OSError, ValueError):
            # Not written yet, or caught half-written: poll again.
            time.sleep(0.1)
            continue
        return RunningGateway(
            process=process,
            listen=demo["listen"],
            admin_listen=demo["admin_listen"],
            admin_token=demo["admin_token"],
            keys=demo["keys"],
        )
    stop_process(process)
    pytest.fail(
        f"`{keys_path.name}` did not appear within {STARTUP_DEADLINE_SECONDS:.0f} s; "
        f"the gateway log ends with:\n{log_tail(log_path)}",
        pytrace=False,
    )
