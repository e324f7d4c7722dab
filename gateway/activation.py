"""Which pack this replica enforces, and how a new one becomes active.

The active pack is swapped by rebinding one attribute, so a request that has
already read `state.active` finishes on the pack it started with. The last good
pack is persisted, so a replica that boots while NATS is away still enforces it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.errors import PackError
from gateway.packs import DEFAULT_PACK, Pack, decode_published
from gateway.routing import Router

log = logging.getLogger("cordon.gateway.activation")


@dataclass(frozen=True)
class Active:
    """A pack and the routing it resolved to, swapped as one."""

    pack: Pack
    router: Router


RouterFactory = Callable[[Pack], Router]
Offer = Literal["activated", "unchanged", "rejected"]


class PackState:
    def __init__(self, pack_name: str, state_dir: Path, route: RouterFactory) -> None:
        self.pack_name = pack_name
        self._route = route
        self.current = Active(DEFAULT_PACK, route(DEFAULT_PACK))
        self.activated_at: float | None = None
        self.last_rejection: str | None = None
        self._path = state_dir / f"last-good-pack.{pack_name}.json"

    def load_last_good(self) -> None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        try:
            pack = decode_published(data)
            self.current = Active(pack, self._route(pack))
            self.activated_at = time.time()
        except PackError as exc:
            log.error("ignoring unreadable last good pack %s: %s", self._path, exc)

    def offer(self, data: bytes) -> Offer:
        """Activate the published pack in `data` if it may be; say why not otherwise."""
        try:
            pack = decode_published(data)
            if pack.revision == self.active.revision and pack.hash == self.active.hash:
                return "unchanged"  # the watch re-delivering what is already active
            if pack.name != self.pack_name:
                raise PackError(f"pack {pack.name!r} is not {self.pack_name!r}")
            if pack.revision <= self.active.revision:
                raise PackError(
                    f"revision {pack.revision} is not newer than active {self.active.revision}"
                )
            router = self._route(pack)  # resolves providers: a missing secret refuses the pack
        except PackError as exc:
            self.last_rejection = str(exc)
            log.warning("policy pack rejected, keeping revision %s: %s", self.active.revision, exc)
            return "rejected"
        self._persist(data)
        self.current = Active(pack, router)
        self.activated_at = time.time()
        log.info("policy pack %s revision %s active", pack.name, pack.revision)
        return "activated"

    @property
    def active(self) -> Pack:
        return self.current.pack

    def _persist(self, data: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self._path)

    def status(self) -> dict[str, object]:
        return {
            "pack": self.pack_name,
            "active_revision": self.active.revision,
            "active_hash": self.active.hash,
            "activated_at": self.activated_at,
            "last_rejection": self.last_rejection,
        }


def applied_report(state: PackState, replica: str) -> bytes:
    return json.dumps(
        {
            "replica": replica,
            "pack": state.active.name,
            "revision": state.active.revision,
            "hash": state.active.hash,
            "activated_at": state.activated_at,
        }
    ).encode()
