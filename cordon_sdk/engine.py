"""The engine behind `govern()`: a sidecar's runtime inside the application's process.

It is the `gateway.sidecar.Sidecar` that `cordon sidecar` runs (the configuration
loader, the local log, the sealer, the policy sources, the replica's runtime and its
ASGI app) without the HTTP server: the governed client's transport hands each request
to the app directly. It runs on an event loop of its own, in a daemon thread, so a
synchronous application and any number of asyncio loops share one log, one key and one
sequence. One engine per configuration and process; each process takes a worker slot
of its own under the state directory (`worker-0`, `worker-1`, ...: a multi-worker
application is several replicas, each with its log, key and sequence), and a
restarted worker takes a free slot again, so its log and numbering go on.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from cordon.errors import ConfigError, StateDirInUseError
from gateway.http.app import GatewayApp, create_app
from gateway.identity import Identity
from gateway.sidecar.config import WORKER, SidecarConfig
from gateway.sidecar.server import Sidecar

__all__ = ["Engine", "engine_for", "shutdown"]

log = logging.getLogger("cordon.sdk")
T = TypeVar("T")

MAX_WORKERS = 256  # worker slots under one state directory
START_TIMEOUT_S = 30.0
READY_WAIT_S = 10.0  # for the region's pack, in region mode
STOP_TIMEOUT_S = 10.0
# The application chose its provider: the SDK is not where egress is controlled (the
# application could call anywhere without it), so its client's URL is not refused.
ANY_UPSTREAM = ("http://*", "https://*")
# A per-call fsync (about 1 ms on a VM's disk) would cost ten times the SDK's whole
# budget: unless the file says `log_fsync`, records are written to the kernel before
# the answer and fsynced this often (gateway.records.local_log says what that risks).
SYNC_INTERVAL_S = 0.1


class Engine:
    """One configuration's runtime, serving every client governed by it."""

    def __init__(self, files: Sequence[Path], agent: str, state_dir: Path | None) -> None:
        self.caller_key = f"sk-sdk-{secrets.token_urlsafe(24)}"  # in memory only
        self.files, self.agent, self.state_arg = tuple(files), agent, state_dir
        self.pid = os.getpid()  # a forked child has no loop thread: see `_after_fork`
        self.sidecar = _take_slot(files, state_dir, self)
        self.app: GatewayApp = create_app(self.sidecar.runtime)
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="cordon-sdk", daemon=True)
        self._thread.start()
        self._closed = False
        try:
            self.submit(self._start()).result(START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        _at_exit(self.close)

    def settings_for(self, config: SidecarConfig, state: Path, slot: int) -> SidecarConfig:
        """The file's settings as one worker of this application runs them: its own
        state, this process's caller key, and (in local mode) a replica name of its own;
        in region mode the replica is the one its settings file was provisioned as."""
        settings = config.settings
        changes: dict[str, Any] = {
            "place": "sdk",
            "state_dir": state,
            "api_keys": {self.caller_key: Identity(agent=self.agent)},
            "allow_loopback_upstreams": True,
            "allowed_upstreams": ANY_UPSTREAM,
        }
        if config.mode == "local":
            changes["replica"] = f"sdk-{socket.gethostname()}-{slot}"
        sync = config.log_sync_interval_s if "log_fsync" in config.gateway else SYNC_INTERVAL_S
        return replace(config, settings=replace(settings, **changes), log_sync_interval_s=sync)

    def sign_ahead(self) -> None:
        """While a call served in its caller's thread waits for its provider: the
        costly half of its record's signature (cordon.log.keys.SigningKey.sign_ahead)."""
        self.sidecar.runtime.key.sign_ahead()

    @property
    def serves_here(self) -> bool:
        """Whether a synchronous call may be served in its caller's thread
        (`cordon_sdk.here`): its record is then written in-line, as on the engine's."""
        return self.sidecar.records.in_line

    @property
    def alive(self) -> bool:
        """Serving: not stopped, and in the process that started it."""
        return not self._closed and self.pid == os.getpid()

    def status(self) -> dict[str, Any]:
        """Where policy is read from, its last error, and (region mode) the shipping."""
        return self.sidecar.source_status()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def close(self) -> None:
        """Seal what was written and let the state directory go (at exit, or by hand)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.loop.is_running():
                self.submit(self._stop()).result(STOP_TIMEOUT_S)
        except Exception:
            log.exception("the cordon SDK engine did not stop cleanly")
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_TIMEOUT_S)
            if not self._thread.is_alive():  # else it is still running: left to exit
                self.loop.close()
            _ENGINES.pop(_key(self.files, self.agent, self.state_arg), None)

    async def _start(self) -> None:
        """Started, and ready unless the region is away: the first call may come as soon
        as `govern` returns. A region-mode worker whose region cannot be reached within
        `READY_WAIT_S` goes on; its calls fail closed until the region's pack is in."""
        await self.sidecar.start()
        runtime = self.sidecar.runtime
        deadline = self.loop.time() + READY_WAIT_S
        while not runtime.ready and self.loop.time() < deadline:  # noqa: ASYNC110  (no event)
            await asyncio.sleep(0.005)
        if not runtime.ready:
            log.warning("cordon SDK: the region is not reachable yet; calls fail closed")

    async def _stop(self) -> None:
        await self.app.close_mcp()
        await self.sidecar.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's where it is installed (the `sdk` extra brings it, but for Windows): each
    call wakes the engine's loop from the application's thread and back, and the
    provider's answer arrives on it; uvloop does both in about a third less time
    (docs/performance.md, "SDK wrapper"), for 1.5 MB."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _at_exit(close: Callable[[], None]) -> None:
    """Run `close` at interpreter exit before the thread pools shut down: stopping
    seals the log, and its last fsync runs in a worker thread. Threading's exit hooks
    run last registered first, before `atexit`'s, so this one is registered after the
    thread pools' own (imported here for that)."""
    import concurrent.futures.thread  # noqa: F401  (registers the pools' hook first)

    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(close)
    except RuntimeError:  # already shutting down
        atexit.register(close)


def _take_slot(files: Sequence[Path], state_dir: Path | None, engine: Engine) -> Sidecar:
    """The first worker slot no other process holds. In region mode each slot is the
    replica its `region_settings` names with `{worker}`; without it, there is one."""
    for slot in range(MAX_WORKERS):
        config = SidecarConfig.load(files, worker=slot)
        root = (state_dir or config.state_dir) / "sdk"
        try:
            return Sidecar(engine.settings_for(config, root / f"worker-{slot}", slot))
        except StateDirInUseError:
            if config.mode == "region" and WORKER not in str(config.gateway["region_settings"]):
                raise ConfigError(
                    f"{files[0]}: another worker of this application is the replica its "
                    f"region_settings names; name a replica per worker with {WORKER} in "
                    "region_settings (provisioned for each)"
                ) from None
    raise ConfigError(f"all {MAX_WORKERS} worker slots are held by other processes")


def _lighten() -> None:
    """What the engine adds to the application's memory (the budget is 10 MB): the
    configuration's schema is checked in a short-lived child, so jsonschema is never
    resident here (unless the application has it already), the gateway's Prometheus
    metrics are stand-ins (nothing serves them here), and Ed25519 goes through
    the libcrypto `ssl` already maps rather than a second copy in `cryptography`
    (about 7 MB; unless the application has loaded it: then it is no extra), signing
    through libsodium where the system has it."""
    import sys

    from cordon.log import keys
    from cordon.packs import lint
    from gateway import metrics

    lint.check_apart()
    metrics.off()  # no /metrics here: nothing counted, prometheus_client not loaded
    # With libsodium, signatures take about half of `cryptography`'s time, so it is
    # chosen even where the application has loaded `cryptography` (the libcrypto is
    # mapped by `ssl` anyway): the signature is on every call's path.
    if "cryptography" not in sys.modules or keys.libsodium_loads():
        keys.use_openssl_backend()


_ENGINES: dict[tuple[Any, ...], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _key(files: Sequence[Path], agent: str, state_dir: Path | None) -> tuple[Any, ...]:
    """An engine's place in the registry: its files, agent and state directory."""
    resolved = tuple(path.resolve() for path in files)
    return resolved, agent, state_dir.resolve() if state_dir else None


def engine_for(files: Sequence[Path], agent: str, state_dir: Path | None) -> Engine:
    """This process's engine for these files, started on first use."""
    key = _key(files, agent, state_dir)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            _lighten()
            engine = _ENGINES[key] = Engine(key[0], agent, state_dir)
        return engine


def _after_fork() -> None:
    """In a child forked after `govern()` (a pre-forking server, multiprocessing): the
    engines' threads did not come along, so they are forgotten, never stopped from here
    (their state belongs to the parent); the child's first call starts its own, in a
    worker slot of its own (`Governor.engine`)."""
    for engine in _ENGINES.values():
        engine._closed = True
    _ENGINES.clear()


os.register_at_fork(after_in_child=_after_fork)


def shutdown() -> None:
    """Stop every engine of this process, sealing what each has written. It happens by
    itself at exit; call it where an application stops governing before then."""
    for engine in list(_ENGINES.values()):
        engine.close()
