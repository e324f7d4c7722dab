"""Sidecars for tests: the users' files copied byte for byte into a test's directory,
the real provider host they name (`api.openai.com`) answered by a mock provider
holding a certificate for it from a test CA, reached through a CONNECT proxy the
sidecar finds in `HTTPS_PROXY`, as a corporate egress proxy would be. The files stay
exactly as our users wrote them."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from cordon_dev.certs import provider_pki
from cordon_dev.egress_proxy import ConnectProxy
from cordon_dev.inprocess import serve_in_loop
from cordon_dev.mock_provider import MockProvider
from gateway.sidecar.config import CALLER_KEY_FILE, SidecarConfig
from gateway.sidecar.server import Sidecar, SidecarApp

SEEDS = Path(__file__).resolve().parents[2] / "seed_configs"
PROVIDER_HOSTS = ("api.openai.com", "api.anthropic.com")


def copy_seed(name: str, into: Path) -> Path:
    """A seed configuration file, byte for byte, in `into`."""
    into.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(SEEDS / name, into / name))


def fragment(into: Path, name: str, text: str) -> Path:
    path = into / name
    path.write_text(text)
    return path


def proxy_on_loopback(into: Path) -> Path:
    """The local overlay these tests add to a user's file: their egress proxy is on
    loopback, which a sidecar reaches only when told to (gateway.upstream.egress)."""
    return fragment(into, "loopback-proxy.yaml", "gateway:\n  allow_loopback_upstreams: true\n")


@dataclass
class Providers:
    """The mock provider behind the names the users' files give."""

    mock: MockProvider
    proxy: ConnectProxy


@contextlib.asynccontextmanager
async def real_provider_names(
    root: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str = "ok"
) -> AsyncIterator[Providers]:
    """`https://api.openai.com` and `https://api.anthropic.com` answered by one mock
    provider (environment set for the sidecar that is built inside this block)."""
    pki = provider_pki(root / "pki", PROVIDER_HOSTS[0])
    mock = MockProvider(behaviour)
    tls = (pki.server.cert_file, pki.server.key_file)
    async with serve_in_loop(mock, tls=tls) as url:
        port = int(url.rsplit(":", 1)[1])
        proxy = ConnectProxy({f"{host}:443": ("127.0.0.1", port) for host in PROVIDER_HOSTS})
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-openai")
        try:
            yield Providers(mock, proxy)
        finally:
            proxy.stop()


@dataclass
class RunningSidecar:
    sidecar: Sidecar
    app: SidecarApp
    client: httpx.AsyncClient
    url: str

    @property
    def caller_key(self) -> str:
        return (self.sidecar.config.state_dir / CALLER_KEY_FILE).read_text().strip()

    def openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.caller_key, max_retries=0)

    def anthropic(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=self.caller_key, max_retries=0)

    def records(self) -> list[dict[str, Any]]:
        """Every decision and intent record in the local log, opened."""
        from cordon.log import envelope

        found = []
        for _seq, subject, data in self.sidecar.records.read_from(1):
            if subject.startswith("cordon.rec."):
                found.append(envelope.decode(data).payload_dict())
        return found


@contextlib.asynccontextmanager
async def in_process_sidecar(
    files: Sequence[Path], config_source: str | None = None
) -> AsyncIterator[RunningSidecar]:
    """A started sidecar over `files`, served over real loopback HTTP in this loop (a
    stream arrives as it is sent, which httpx's ASGI transport would gather first)."""
    sidecar = Sidecar(SidecarConfig.load(list(files), config_source))
    app = SidecarApp(sidecar)
    await sidecar.start()  # what the ASGI lifespan does (served here without one)
    # Ready once its log is open for records, on its loop a moment after start(), as a
    # deployment's readiness probe waits for it.
    deadline = time.monotonic() + 10
    while not sidecar.runtime.ready:
        assert time.monotonic() < deadline, "the sidecar was not ready within 10 s"
        await asyncio.sleep(0.01)
    try:
        async with (
            serve_in_loop(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield RunningSidecar(sidecar, app, client, url)
    finally:
        await app.close()


@contextlib.contextmanager
def environment(monkeypatch: pytest.MonkeyPatch, **values: str) -> Iterator[None]:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield


LOOPBACK = (
    "gateway:\n  allow_loopback_upstreams: true\n  allowed_upstreams: ['http://127.0.0.1:*']\n"
)


def loopback_fragment(into: Path, extra: str = "") -> Path:
    """A local fragment letting the sidecar reach a mock provider on loopback, with
    more `gateway:` keys (indented two spaces) appended."""
    return fragment(into, "local.yaml", LOOPBACK + extra)


@contextlib.asynccontextmanager
async def provider_from_environment(
    monkeypatch: pytest.MonkeyPatch, mock: MockProvider | None = None
) -> AsyncIterator[MockProvider]:
    """A mock provider on loopback, named by `OPENAI_BASE_URL` (with `OPENAI_API_KEY`),
    as a pack with `base_url: "${OPENAI_BASE_URL}"` reads it."""
    mock = mock or MockProvider()
    async with serve_in_loop(mock) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
        yield mock
