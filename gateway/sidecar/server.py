"""`cordon sidecar --config FILE`: one small process that enforces the configuration
our users already have, with nothing else running.

`Sidecar` assembles a replica's runtime over the local backplane (records in the
embedded log, sealed into checkpoints beside it), activates the file's pack before it
serves, and follows the file (on change and SIGHUP) or the repository. `SidecarApp` is
the gateway's ASGI app with the sidecar's start and stop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cordon.errors import ConfigError, PolicySourceError, StateDirInUseError
from cordon.log import keys
from cordon.packs import lint
from cordon.tokens import Tokens
from gateway import metrics
from gateway.http.app import GatewayApp, create_app, serve_lifespan
from gateway.http.asgi import Receive, Scope, Send
from gateway.policy.sources import FileSource, GitSource, PolicySource
from gateway.policy.sources.http import HttpSource
from gateway.records.local_log import LocalLog
from gateway.runtime import Runtime
from gateway.sidecar import audit
from gateway.sidecar.backplane import LocalBackplane
from gateway.sidecar.config import SidecarConfig
from gateway.sidecar.keys import LocalKeys
from gateway.sidecar.overlay import Overlay
from gateway.sidecar.policy import Candidates, file_origin
from gateway.sidecar.sealer import LocalSealer

__all__ = ["Sidecar", "SidecarApp", "run"]

log = logging.getLogger("cordon.sidecar")
RETENTION_EVERY_S = 60.0
CHECKPOINTS_MAX_BYTES = 64 * 1024 * 1024  # a day and more of a checkpoint a second


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        settings = config.settings
        state = config.state_dir
        self._lock = _lock(state)
        self.keys = LocalKeys.load_or_create(state / "keys", settings.region, settings.replica)
        self.records = LocalLog(
            state / "records",
            segment_bytes=config.log_segment_bytes,
            max_bytes=config.log_max_bytes,
            sync_interval_s=config.log_sync_interval_s,
            dedupe_window=_records_window(settings.connections.max_connections),
        )
        # Checkpoint ids are `ckpt-<tree size>`, and the sealer appends only a larger
        # tree than the last checkpoint it reads back: no id ever repeats here.
        # Old checkpoints may go: the newest covers every record kept.
        self.sealed = LocalLog(
            state / "checkpoints", dedupe_window=0, max_bytes=CHECKPOINTS_MAX_BYTES
        )
        self.backplane = LocalBackplane(self.records, settings.region, settings.replica)
        if config.mode == "region":  # a replica of the region: gateway.sidecar.region
            from gateway.sidecar.region import assemble

            self.keys, self.backplane = assemble(self.keys, self.records, config)
        trust = settings.pack_trust
        if not trust:  # the sidecar vouches for what it reads itself
            from dataclasses import replace

            settings = replace(settings, pack_trust=(self.keys.policy_public_hex,))
        self.runtime = Runtime(settings, self.backplane, self.keys.signer, self.keys.enrolment)
        self.overlay = _overlay(config)
        if self.overlay is not None:  # the file's own rules, added to the region's packs
            self.runtime.packs.overlay = self.overlay.apply
        policy_key = None if trust else self.keys.policy
        self.candidates = Candidates(self.runtime.packs, policy_key, config.fragments[1:])
        self.sealer = LocalSealer(self.records, self.sealed, settings.region, self.keys.signer)
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []  # stop when `_stop` is set
        self._followers: list[asyncio.Task[None]] = []  # cancelled
        self._sources: list[PolicySource] = []
        self._sighup = False  # a SIGHUP handler is installed (and removed at stop)
        self._repo: GitSource | None = None  # the repository followed (`_git_source`)
        self._served: HttpSource | None = None  # the pack server followed (`_http_source`)

    def activate_initial(self) -> None:
        """The file's pack, enforced before the first call is taken."""
        first = str(self.config.files[0])
        update = self.candidates.of_document(
            self.config.pack, file_origin(first, self.config.texts[0])
        )
        if update is None or update.value is None:
            return
        if self.runtime.packs.offer(update.value, origin=update.origin) == "rejected":
            reason = self.runtime.packs.last_rejection
            raise ConfigError(f"{first}: {reason.reason if reason else 'refused'}")

    async def start(self) -> None:
        # The log's own tasks run on this loop, whichever thread appends (cordon_sdk).
        self.records.serve_from(asyncio.get_running_loop())
        self.activate_initial()
        if self.candidates.owners_only and self.config.mode != "region":
            await self._first_signed_pack()
        await self.runtime.start()
        self._loops.append(asyncio.create_task(self.sealer.run(self._stop)))
        self._loops.append(asyncio.create_task(self._keep_retention()))
        self._follow_sources()
        self.runtime.source_status = self.source_status
        metrics.POLICY_SOURCE_FAILING.set_function(
            lambda: float(any(source.last_error for source in self._sources))
        )

    async def _first_signed_pack(self) -> None:
        """With `pack_trust`, only an owner's signed pack is enforced: the one kept from
        an earlier run, else the repository's or the pack server's, read now; without
        one the sidecar does not start (it never serves under no pack at all)."""
        packs = self.runtime.packs
        packs.load_last_good()
        for source in self._polled():
            try:
                found = await source.poll_once()
            except PolicySourceError as exc:
                log.error("no signed pack read from the %s source yet: %s", source.kind, exc)
            else:
                if found is not None:
                    packs.offer(found.data, origin=found.origin)
        if packs.active.revision == 0:
            why = packs.last_rejection.reason if packs.last_rejection else "none was found"
            raise ConfigError(
                "pack_trust is set, so only a pack signed by a trusted owner is enforced, "
                "and none is available (from config_source or policy_url, or kept from an "
                f"earlier run): {why}"
            )

    def _polled(self) -> list[GitSource | HttpSource]:
        """The sources polled for packs: the repository, the pack server (each made once)."""
        return [each for each in (self._git_source(), self._http_source()) if each is not None]

    def _git_source(self) -> GitSource | None:
        """The repository this sidecar follows (one reader, made once), or None."""
        config = self.config
        if config.git is None or config.poll_interval_s is None:
            return None
        if self._repo is None:
            git = config.git
            self._repo = GitSource(
                git.source, git.ref, git.path, config.state_dir / "git", config.poll_interval_s
            )
        return self._repo

    def _http_source(self) -> HttpSource | None:
        """The gateway or sidecar whose signed pack this one follows (made once), or None."""
        served = self.config.policy_url
        if served is None:
            return None
        if self._served is None:
            ca = self.config.settings.ca_bundle
            self._served = HttpSource(
                served.url, served.token, served.poll_interval_s, str(ca) if ca else None
            )
        return self._served

    def source_status(self) -> dict[str, Any]:
        """Where the policy is read from, and the last error reading it, if any."""
        config = self.config
        files = [str(path) for path in config.files]
        git = config.git
        shipping = getattr(self.backplane, "status", None)  # region mode's shipper
        return {
            "files": files,
            "reload": config.reload,
            "git": {"source": git.source, "ref": git.ref, "path": git.path} if git else None,
            "readers": [source.status() for source in self._sources],
            "shipping": shipping() if shipping else None,
            "overlay": self.overlay.status() if self.overlay else None,
        }

    def _follow_sources(self) -> None:
        config = self.config
        if config.reload:
            source = FileSource(config.files[0], config.watch_interval_s)
            self._sources.append(source)
            self._followers.append(asyncio.create_task(self._follow(source, skip_first=True)))
            # Not on the main thread (the SDK's engine): asyncio says RuntimeError,
            # uvloop ValueError. The file is still polled.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, source.reload_now)
                self._sighup = True
        for each in self._polled():
            self._sources.append(each)
            self._followers.append(asyncio.create_task(self._follow(each, skip_first=False)))

    async def _follow(self, source: PolicySource, skip_first: bool) -> None:
        first = skip_first
        async for found in source.updates():
            if first:  # the file as read at start-up: already active
                first = False
                continue
            update = self.candidates.of(
                found.origin.get("file", "config"), found.data, found.origin
            )
            if update is not None:
                self.backplane.offer(update)

    def _retention(self) -> None:
        """The log's retention as the active pack asks. With `audit-logger.retention_days`
        records go once older than that, and never sooner: when `log_max_bytes` is
        reached with nothing old enough to remove, appends are refused (calls fail
        closed) rather than records dropped. Without it, the size cap removes the oldest."""
        days = self.runtime.packs.active.retention_days
        keep_s = days * 86400 if days else None
        records = self.records
        records.max_age_s = records.min_age_s = keep_s
        records.full_at = self.config.log_max_bytes if keep_s else None
        if self.config.mode == "local":  # nothing a checkpoint does not cover yet may go
            records.keep_from = self.sealer.checkpoint_size + 1

    async def _keep_retention(self) -> None:
        while not self._stop.is_set():
            self._retention()
            removed = self.records.enforce_retention() + self.sealed.enforce_retention()
            if removed:
                log.info("retention removed %d records from the local log", removed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETENTION_EVERY_S):
                    await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._followers:
            task.cancel()
        for task in self._followers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._loops)  # the sealer seals what was appended
        await self.runtime.stop()
        if self._served is not None:
            self._served.close()
        await self.records.close()
        await self.sealed.close()
        os.close(self._lock)  # the next sidecar may take the state directory now


def _records_window(max_connections: int) -> int:
    """The record ids the local log remembers, to drop a repeat: far fewer than a
    replica's stream needs (100,000 ids, 5 MB once filled under load). Here the recorder
    assigns each id once and the local sink never retries; an id comes back only from
    the fail-open spool, for a record of a batch whose append failed, and nothing is
    appended between that batch and the spool's shipping but the batches in flight
    with it, each at most one record per open connection. (In region mode the region's
    stream drops what the shipper repeats, by its Nats-Msg-Id.)"""
    return max(1_000, 2 * max_connections)


def _overlay(config: SidecarConfig) -> Overlay | None:
    """In region mode, the file's `policies`, added to every pack the region sends."""
    if config.mode != "region" or not config.pack:
        return None
    return Overlay(config.pack, str(config.files[0]))


def _unix_listener(path: Path) -> int:
    """A Unix socket only its owner may connect to (0600; uvicorn would make it 0666),
    bound here and handed to uvicorn; a stale one left by a killed sidecar is replaced."""
    import socket

    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600, never a moment wider
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener.detach()


def _lock(state_dir: Path) -> int:
    """Hold the state directory: two sidecars appending to one log would interleave
    their frames. The lock goes with the process, however it ends (SIGKILL too)."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StateDirInUseError(
            f"{state_dir} is in use by another process (its state_dir)"
        ) from exc
    return fd


class SidecarApp:
    """The gateway's app, with the sidecar started and stopped around it."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.gateway: GatewayApp = create_app(sidecar.runtime)
        config = sidecar.config
        self.audit = audit.LazyAuditApp(
            sidecar.keys,
            config.settings.region,
            sidecar.records,
            sidecar.sealed,
            config.state_dir,
            Tokens.from_settings(config.gateway.get("audit_tokens", [])),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and audit.serves(scope["path"]):
            await self.audit(scope, receive, send)
        elif scope["type"] != "lifespan":
            await self.gateway(scope, receive, send)
        else:
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await serve_lifespan(receive, send, self.sidecar.start, self.close)

    async def close(self) -> None:
        await self.gateway.close_mcp()
        self.audit.close()
        await self.sidecar.stop()


def run(files: Sequence[Path], config_source: str | None = None) -> None:
    lint.check_apart()  # jsonschema checks the files in a child, never resident here
    # Ed25519 through the libcrypto `ssl` maps, not cryptography's own copy (about 6 MB),
    # chosen before the first key is made (cryptography if it fails its self-test).
    keys.use_openssl_backend()
    from gateway.http.server import log_to_stderr, serve

    log_to_stderr()
    config = SidecarConfig.load(files, config_source)
    settings = config.settings
    app = SidecarApp(Sidecar(config))
    where = (
        f"unix:{config.unix_socket}" if config.unix_socket else f"{settings.host}:{settings.port}"
    )
    log.info("sidecar enforcing %s on %s", settings.pack_name, where)
    serve(app, settings, _unix_listener(config.unix_socket) if config.unix_socket else None)
