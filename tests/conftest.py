"""Session fixtures: the whole local topology, started once, on free ports.

Three real nats-server processes (central, eu-west, us-east), a mock provider, and
every Cordon process as a real child process: exactly what `cordon dev up` runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cordon.devstack import DevStack

T = TypeVar("T")


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


def eventually(probe: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
