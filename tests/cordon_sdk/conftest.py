"""The in-process SDK's tests: the real `openai` and `anthropic` SDKs, governed, against
a mock provider served by its own process on loopback (a synchronous client blocks the
test's thread, so the provider must not share it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cordon_sdk
from cordon_dev.procs import free_port, spawn, stop_group, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def provider_url() -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "cordon_dev", "mock-provider", "--port", str(port)]
    process = spawn(argv)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/mock/stats", 15, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process, timeout=5)


@pytest.fixture(autouse=True)
def engines_stopped() -> Iterator[None]:
    """Each test's engines stop with it: their logs sealed, their state let go."""
    yield
    cordon_sdk.shutdown()
