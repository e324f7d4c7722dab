"""A whole replica in one process: the gateway's real ASGI app and `Runtime`, with an
in-memory region (records kept in a list, packs offered from memory) and the mock
provider served by uvicorn on loopback in the same event loop.

For the fast test lane, and for anyone trying a change without the topology:

    async with in_process_gateway(tmp_path) as gw:
        answer = await gw.client.post("/v1/chat/completions", json=..., headers=gw.auth)
        assert gw.records()[-1]["outcome"] == "allow"

The in-memory region is a fake of Cordon's own seam (`gateway.backplane.Backplane`,
`gateway.records.RecordSink`): what the stream guarantees (commit before release
across outages, de-duplication, privilege, residency) stays tested on real NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn

from cordon.errors import RecordCommitError, RegionUnreachableError
from cordon.log import envelope
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes
from cordon.packs import pack_name, signing
from cordon_dev import mock_provider
from cordon_dev.mock_provider import MockProvider
from cordon_dev.procs import free_port
from gateway.backplane import PackUpdate
from gateway.http.app import GatewayApp, create_app
from gateway.records.sink import HEADROOM
from gateway.runtime import Runtime
from gateway.settings import from_mapping

__all__ = [
    "API_KEY",
    "InProcessGateway",
    "MemoryBackplane",
    "MemorySink",
    "in_process_gateway",
    "serve_in_loop",
    "signed_pack",
]

API_KEY = "sk-inprocess"
NO_NATS = {"url": "nats://127.0.0.1:1"}  # required by the settings, never dialled here


class MemorySink:
    """Records in a list, in order; a repeated id is dropped as the stream would."""

    def __init__(self, capacity: int = 1024 * 1024 - HEADROOM) -> None:
        self.stored: list[bytes] = []
        self._positions: dict[str, int] = {}
        self.connected = True  # a test sets False to play an outage
        self.capacity = capacity

    async def publish(self, data: bytes, msg_id: str) -> int:
        if not self.connected:
            raise RecordCommitError("record not committed: the in-memory sink is away")
        if msg_id not in self._positions:
            self.stored.append(data)
            self._positions[msg_id] = len(self.stored)
        return self._positions[msg_id]

    async def last(self) -> bytes | None:
        return self.stored[-1] if self.stored else None

    def payloads(self) -> list[dict[str, Any]]:
        """Every stored record, opened (signatures are the recorder's, checked elsewhere)."""
        return [envelope.decode(data).payload_dict() for data in self.stored]


@dataclass
class MemoryBackplane:
    """A region held in memory: one sink, packs offered by the test, reports kept."""

    sink: MemorySink = field(default_factory=MemorySink)
    reachable: bool = True
    applied: dict[str, bytes] = field(default_factory=dict)
    enrolments: list[tuple[str, bytes]] = field(default_factory=list)
    retention_days: float | None = None
    _packs: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    @property
    def ready(self) -> bool:
        return self.reachable and self.sink.connected

    @property
    def watching(self) -> bool:
        return self.reachable

    async def connect(self) -> MemorySink:
        if not self.reachable:
            raise RegionUnreachableError("the in-memory region is away")
        return self.sink

    def offer(self, signed: bytes) -> None:
        """Publish a signed pack to the replica, as the replicator would."""
        self._packs.put_nowait(signed)

    async def pack_updates(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        yield PackUpdate(None)
        while True:
            yield PackUpdate(await self._packs.get())

    async def enrol(self, key_id: str, enrolment: bytes) -> None:
        self.enrolments.append((key_id, enrolment))

    async def report_applied(self, replica: str, report: bytes) -> None:
        if not self.reachable:
            raise RegionUnreachableError("the in-memory region is away")
        self.applied[replica] = report

    async def records_retention_days(self) -> float | None:
        return self.retention_days

    async def close(self) -> None:
        return None


def signed_pack(
    document: Mapping[str, Any],
    owner: SigningKey,
    revision: int = 1,
    regions: Sequence[str] = ("eu-west",),
    expires_in_s: int = 86400,
) -> bytes:
    """`document` signed by `owner`, as `cordon policy publish` signs it."""
    statement = signing.statement_bytes(
        document, pack_name(dict(document)), revision, int(time.time()) + expires_in_s, regions
    )
    return signing.sign(statement, [owner])


@contextlib.asynccontextmanager
async def serve_in_loop(
    app: Any,
    host: str = "127.0.0.1",
    lifespan: Literal["on", "off"] = "off",
    tls: tuple[str, str] | None = None,
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in this event loop; its
    base URL. Real HTTP, no child process. (`lifespan="on"` for apps that start work
    of their own, such as an MCP server's session manager; `tls`: (certificate file,
    key file) to serve HTTPS.)"""
    port = free_port(host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan=lifespan,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = _PromptServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        yield f"{'https' if tls else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        server.stopping.set()
        await task


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as asked rather than at its next 0.1 s tick
    (tests start and stop hundreds of these)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopping = asyncio.Event()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers (server, date) are set here
        await self.stopping.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, waiting for its connections and tasks in 5 ms steps
        rather than a fixed 0.1 s and then 0.1 s steps (at most 5 s, then cancelled)."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while self.server_state.connections or self.server_state.tasks:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


@dataclass
class InProcessGateway:
    app: GatewayApp
    runtime: Runtime
    backplane: MemoryBackplane
    provider: MockProvider
    owner: SigningKey  # the policy owner the replica trusts
    client: httpx.AsyncClient  # talks to `app` through httpx.ASGITransport
    auth: dict[str, str] = field(default_factory=lambda: {"authorization": f"Bearer {API_KEY}"})

    def records(self) -> list[dict[str, Any]]:
        return self.backplane.sink.payloads()

    async def activate(self, document: Mapping[str, Any], revision: int) -> None:
        """Offer a pack signed by the trusted owner and wait until it is enforced."""
        self.backplane.offer(signed_pack(document, self.owner, revision))
        await wait_for(lambda: self.runtime.packs.active.revision == revision)


async def wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Return once `condition()` holds; TimeoutError if it does not within `within_s`."""
    async with asyncio.timeout(within_s):
        # Another component's state, with no event to wait on: look every few ms.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _settings(root: Path, provider_url: str, owner: SigningKey, extra: Mapping[str, Any]) -> Any:
    raw = {
        "region": "eu-west",
        "replica": "gw-1",
        "audit_nats": NO_NATS,
        "xr_nats": NO_NATS,
        "signing_key_file": "unused.key",  # the key is handed to the Runtime itself
        "enrolment_file": "unused.enrolment",
        "state_dir": str(root / "state"),
        "targets": mock_provider.targets(f"{provider_url}/v1"),
        "allow_loopback_upstreams": True,
        "allowed_upstreams": ["http://127.0.0.1:*"],
        "api_keys": {API_KEY: {"agent": "inprocess-app", "roles": ["developer"]}},
        "pack_trust": [public_bytes(owner.public_key).hex()],
        **extra,
    }
    return from_mapping(raw, root)


@contextlib.asynccontextmanager
async def in_process_gateway(
    root: Path, behaviour: str = "ok", settings: Mapping[str, Any] | None = None
) -> AsyncIterator[InProcessGateway]:
    """A ready replica of eu-west over an in-memory region, its provider a `MockProvider`
    (`behaviour`) on loopback; `settings` overrides keys of its settings file."""
    provider = MockProvider(behaviour)
    async with serve_in_loop(provider) as provider_url:
        owner, key, regional = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        config = _settings(root, provider_url, owner, settings or {})
        backplane = MemoryBackplane()
        runtime = Runtime(config, backplane, key, enrol(regional, "eu-west", "gw-1", key))
        app = create_app(runtime)
        await runtime.start()  # what the ASGI lifespan does; httpx's transport sends none
        transport = httpx.ASGITransport(app=app)
        try:
            await wait_for(lambda: runtime.ready)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield InProcessGateway(app, runtime, backplane, provider, owner, client)
        finally:
            await app.mcp.close()  # the tool servers it started
            await runtime.stop()
