"""A sidecar as our users run it: `python -m cordon_cli sidecar --config ...`, a child
process of its own, calling a mock provider process through the environment-based
seed file (`OPENAI_BASE_URL`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon_dev.procs import ManagedProcess, free_port, wait_for_http
from gateway.sidecar.config import CALLER_KEY_FILE
from tests.gateway.sidecar.harness import copy_seed, fragment

CLI = [sys.executable, "-m", "cordon_cli"]


@dataclass
class SidecarProcess:
    process: ManagedProcess
    url: str
    files: list[Path]
    state_dir: Path

    @property
    def caller_key(self) -> str:
        return (self.state_dir / CALLER_KEY_FILE).read_text().strip()

    def start(self) -> None:
        self.process.start()
        assert self.process.proc is not None
        try:
            wait_for_http(self.url + "/readyz", 15, self.process.proc)
        except Exception:
            print(self.process.log_tail())
            raise

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        configs = [a for path in self.files for a in ("--config", str(path))]
        return subprocess.run(
            [*CLI, "sidecar", *args, *configs], capture_output=True, text=True, timeout=30
        )


@contextlib.contextmanager
def mock_provider(root: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "cordon_dev", "mock-provider", "--port", str(port)]
    mock = ManagedProcess("mock", argv, root / "mock.log")
    mock.start()
    assert mock.proc is not None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/mock/stats", 10, mock.proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        mock.stop()


@contextlib.contextmanager
def sidecar_process(
    root: Path, provider: str, extra: Sequence[str] = (), env: dict[str, Any] | None = None
) -> Iterator[SidecarProcess]:
    """The environment-based seed file, byte for byte, and a local fragment (its port,
    loopback upstreams for the mock), served by a sidecar process."""
    seed = copy_seed("env-providers.yaml", root)
    port = free_port()
    local = fragment(
        root,
        "local.yaml",
        "gateway:\n"
        f"  listen_port: {port}\n"
        "  allow_loopback_upstreams: true\n"
        "  allowed_upstreams: ['http://127.0.0.1:*', 'https://*']\n" + "".join(extra),
    )
    files = [seed, local]
    environment = {
        **os.environ,
        "OPENAI_BASE_URL": provider,
        "OPENAI_API_KEY": "sk-provider",
        "AZURE_OPENAI_ENDPOINT": "https://example-resource.openai.azure.com",
        "AZURE_OPENAI_KEY": "azure-key",
        **(env or {}),
    }
    argv = [*CLI, "sidecar", *(a for path in files for a in ("--config", str(path)))]
    process = ManagedProcess("sidecar", argv, root / "sidecar.log", environment)
    running = SidecarProcess(process, f"http://127.0.0.1:{port}", files, root / ".cordon")
    try:
        running.start()
        yield running
    finally:
        process.stop()
