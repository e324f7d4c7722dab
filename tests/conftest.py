"""Session fixtures: the whole local topology, started once, on free ports.

Three real nats-server processes (central, eu-west, us-east), a mock provider, and
every Cordon process as a real child process: exactly what `cordon dev up` runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cordon.devstack import DevStack


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
