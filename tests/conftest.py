"""Session fixtures: the whole local topology, started once, on free ports.

Three real nats-server processes (central, eu-west, us-east), a mock provider, and
every Cordon process as a real child process: exactly what `cordon dev up` runs.
Plus one bare JetStream server for tests of the NATS plumbing alone.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from cordon.dev.procs import free_port, nats_server_binary, port_is_free
from cordon.dev.stack import DevStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("cordon"))
    try:
        dev.start()
    except Exception:
        dev.stop()
        raise
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def endpoints(stack: DevStack) -> dict[str, Any]:
    described: dict[str, Any] = json.loads((stack.root / "endpoints.json").read_text())
    return described


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def jetstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    store = tmp_path_factory.mktemp("jetstream")
    server = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while port_is_free("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    server.terminate()
    server.wait(5)


@pytest.fixture
async def bare_nats(jetstream_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(jetstream_url, connect_timeout=5)
    yield client
    await client.close()
