"""Which pack this replica enforces, and how a new one becomes active.

A pack is activated only if its signature verifies against the replica's trust
root, its revision is above the active one and above every revision this replica
ever accepted, it has not expired and it is meant for this region; otherwise the
active pack stays and the reason is kept (status endpoint, metric, log, and a
rejection record in the region's stream). The swap rebinds one attribute, so a call
that has read `state.current` finishes on the pack it started with. The last good
pack and the highest revision accepted are persisted, so a replica that boots while
NATS is away still enforces it, and one whose persisted pack no longer verifies
still refuses every older revision.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cordon.errors import PackError
from cordon.packs import DEFAULT_PACK, Pack, signing

if TYPE_CHECKING:  # only named here: `cordon policy test` runs the rules without the
    from gateway.upstream.routing import Router  # provider client (httptools) loaded

log = logging.getLogger("cordon.gateway.activation")


@dataclass(frozen=True)
class Active:
    """A pack and the routing it resolved to, swapped as one."""

    pack: Pack
    router: Router


@dataclass(frozen=True)
class Rejection:
    reason: str
    claimed: dict[str, Any]
    at: float


RouterFactory = Callable[[Pack], "Router"]
Offer = Literal["activated", "unchanged", "rejected", "stale"]


class PackState:
    def __init__(
        self,
        pack_name: str,
        region: str,
        state_dir: Path,
        route: RouterFactory,
        trusted: Mapping[str, bytes],
    ) -> None:
        self.pack_name = pack_name
        self.region = region
        self._route = route
        self._trusted = trusted
        self.current = Active(DEFAULT_PACK, route(DEFAULT_PACK))
        self.activated_at: float | None = None
        self.last_rejection: Rejection | None = None
        self._path = state_dir / f"last-good-pack.{pack_name}.json"
        self._floor_path = state_dir / f"revision-floor.{pack_name}.json"
        self._origin_path = state_dir / f"last-good-pack.{pack_name}.origin.json"
        self.floor = self._read_floor()  # the highest revision ever accepted here
        # Calls answered under the active revision, and how many of them failed: what a
        # staged rollout judges a wave by (replicator.rollout). Reset on activation.
        self.calls = 0
        self.errors = 0
        self._counting = threading.Lock()
        # A region-mode sidecar's own rules, added to each pack the region sends
        # (gateway.sidecar.overlay); None for a replica. A PackError refuses the pack.
        self.overlay: Callable[[Pack], Pack] | None = None
        # The active pack as it was signed (None: the built-in default): what this
        # replica serves to readers of its pack (`GET /v1/cordon/pack`).
        self.signed: bytes | None = None

    def _read_floor(self) -> int:
        try:
            floor = json.loads(self._floor_path.read_text())["revision"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return floor if isinstance(floor, int) else 0

    @property
    def active(self) -> Pack:
        return self.current.pack

    def tally(self, revision: int, failed: bool) -> None:
        """Count one answered call that ran under `revision` (if it is still active)."""
        if revision == self.current.pack.revision:
            with self._counting:  # calls are answered on several threads (the SDK)
                self.calls += 1
                self.errors += failed

    def load_last_good(self) -> None:
        """Enforce the pack persisted by an earlier run, re-verified against today's trust."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        try:
            pack = dataclasses.replace(signing.decode(data, self._trusted), origin=self._origin())
            self._check_scope(pack)
            pack = self.overlay(pack) if self.overlay else pack
            self.current = Active(pack, self._route(pack))
        except PackError as exc:
            log.error("not enforcing the persisted pack %s: %s", self._path, exc)
            return
        self.signed = data
        self.activated_at = time.time()
        if pack.expired(time.time()):
            # Its fail mode decides: closed refuses every call until a current revision
            # arrives, open serves and flags; the status endpoint and a metric say so.
            log.warning("the persisted pack %s r%s has expired", pack.name, pack.revision)

    def refuse(self, reason: str, claimed: dict[str, Any]) -> None:
        """Keep the active pack: what was offered could not even be read (a sidecar's
        file that is not valid YAML, say). Said like any refusal (status, log)."""
        self.last_rejection = Rejection(reason, claimed, time.time())
        log.warning("policy refused, keeping revision %s: %s", self.active.revision, reason)

    def _origin(self) -> dict[str, str] | None:
        try:
            origin = json.loads(self._origin_path.read_text())
        except (OSError, ValueError):
            return None
        return origin if isinstance(origin, dict) else None

    def offer(
        self, data: bytes, replayed: bool = False, origin: dict[str, str] | None = None
    ) -> Offer:
        """Activate the signed pack in `data` if it may be; say why not otherwise.

        `replayed`: the entry is part of the bucket's kept history, delivered when a
        watch starts; one older than the active pack, or expired since, is "stale", not
        an event. `origin`: where a sidecar read it (file digest, git commit)."""
        try:
            pack = signing.decode(data, self._trusted)
            if origin:
                pack = dataclasses.replace(pack, origin=origin)
            if pack.revision == self.active.revision and pack.hash == self.active.hash:
                return "unchanged"  # the watch re-delivering what is already active
            self._check_scope(pack)
            newest = max(self.active.revision, self.floor)
            if pack.revision <= newest:
                if replayed:
                    return "stale"
                raise PackError(f"revision {pack.revision} is not newer than {newest}")
            if pack.expired(time.time()):
                if replayed:
                    return "stale"  # history: it expired since it was written
                raise PackError(f"pack expired at {_iso(pack.expires_at)}")
            pack = self.overlay(pack) if self.overlay else pack
            router = self._route(pack)  # resolves providers: a missing secret refuses the pack
        except PackError as exc:
            self.refuse(str(exc), {**signing.claimed(data), **(origin or {})})
            return "rejected"
        self._persist(self._path, data)
        self._persist(self._origin_path, json.dumps(origin).encode())
        self._persist(self._floor_path, json.dumps({"revision": pack.revision}).encode())
        self.floor = pack.revision
        self.current = Active(pack, router)
        self.signed = data
        self.activated_at = time.time()
        self.calls = self.errors = 0
        log.info("policy pack %s revision %s active", pack.name, pack.revision)
        return "activated"

    def _check_scope(self, pack: Pack) -> None:
        if pack.name != self.pack_name:
            raise PackError(f"pack {pack.name!r} is not {self.pack_name!r}")
        if not pack.covers(self.region):
            raise PackError(f"pack is for regions {list(pack.regions)}, not {self.region}")

    @staticmethod
    def _persist(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def status(self) -> dict[str, object]:
        pack = self.active
        rejection = self.last_rejection
        return {
            "pack": self.pack_name,
            "active_revision": pack.revision,
            "active_hash": pack.hash,
            "activated_at": self.activated_at,
            "expires_at": _iso(pack.expires_at),
            "expired": pack.expired(time.time()),
            "enabled": pack.enabled,
            "revision_floor": self.floor,
            "signed_by": list(pack.signed_by),
            "origin": pack.origin,
            "last_rejection": rejection.reason if rejection else None,
            "last_rejection_at": rejection.at if rejection else None,
            "last_rejected_pack": rejection.claimed if rejection else None,
        }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat()
    except (ValueError, OverflowError, OSError):  # far beyond what datetime can show
        return f"epoch {epoch:.0f}"


def applied_report(state: PackState, replica: str) -> bytes:
    """What this replica enforces, for the `applied` bucket; written on every activation
    and every REPORT_EVERY_S besides, so a replica that stopped reporting shows as stale."""
    rejection = state.last_rejection
    return json.dumps(
        {
            "replica": replica,
            "pack": state.active.name,
            "revision": state.active.revision,
            "hash": state.active.hash,
            "activated_at": state.activated_at,
            "reported_at": time.time(),
            "last_rejection": rejection.reason if rejection else None,
            "last_rejected_revision": rejection.claimed.get("revision") if rejection else None,
            "calls": state.calls,
            "errors": state.errors,
        }
    ).encode()


REPORT_EVERY_S = 10.0
