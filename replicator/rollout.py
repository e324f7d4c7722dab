"""Staged rollouts: a pack revision goes to one wave of regions at a time.

The state of each pack's rollout lives in the central `replicator` bucket
(`rollout.<pack>`), so a standby that takes over carries on where the last holder
was, and `cordon policy halt|resume` (the publisher's identity) act on it. Every
change is a compare-and-set on the entry's revision: the controller and an operator
never overwrite each other's word.

`released[region]` is the highest revision a region may receive. A region's fan-out
holds a revision with a rollout until it is released there; revisions without one
are never held, and when the newest revision of a pack has none, every region is
released up to it (the owner chose to go everywhere at once).

The active replicator's `RolloutController` looks every `TICK_S`: it opens the first
wave of a new revision; halts the rollout when a replica of an open wave refused the
revision or the wave's error ratio passed the threshold (from what replicas report
in their region's `applied` bucket); and opens the next wave once every live
replica of the current one enforces the revision and the soak time has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from cordon.errors import DocumentError, PackError, PublishError, RegionWriteError
from cordon.nats import Endpoint, subjects
from cordon.packs import signing
from cordon.packs.rollout import Rollout, parse_rollout
from replicator import metrics
from replicator.fanout import regional_revision
from replicator.status import ReplicaState, applied_reports, latest_published

__all__ = [
    "RolloutController",
    "RolloutState",
    "halt",
    "load_state",
    "resume",
]

log = logging.getLogger("cordon.replicator.rollout")
TICK_S = 0.5
LIVE_WITHIN_S = 60.0  # a replica silent for longer is stale: it neither holds a wave back
# nor counts towards its error ratio


@dataclass(frozen=True)
class RolloutState:
    pack: str
    revision: int
    waves: list[list[str]] = field(default_factory=list)
    wave: int = 0  # the newest open wave
    opened_at: float = 0.0
    done_at: float | None = None  # when the open wave was seen enforcing the revision
    soak_s: float = 0.0
    halted: str | None = None
    halted_at: float | None = None
    waived: int = -1  # waves up to this one were accepted by an operator (`resume`)
    released: dict[str, int] = field(default_factory=dict)
    complete: bool = False

    def permits(self, region: str, revision: int) -> bool:
        return self.released.get(region, 0) >= revision

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: bytes) -> RolloutState:
        raw = json.loads(data)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def _key(pack: str) -> str:
    return f"{subjects.ROLLOUT_KEY_PREFIX}{pack}"


async def load_state(kv: KeyValue, pack: str) -> tuple[RolloutState | None, int]:
    """The pack's rollout and the entry's revision (0: none yet)."""
    try:
        entry = await kv.get(_key(pack))
    except KeyNotFoundError:
        return None, 0
    if not entry.value:
        return None, entry.revision or 0
    return RolloutState.from_json(entry.value), entry.revision or 0


async def save_state(kv: KeyValue, state: RolloutState, last: int) -> int:
    """Compare-and-set: `KeyWrongLastSequenceError` if someone changed it since `last`."""
    data = json.dumps(state.as_dict()).encode()
    if last == 0:
        return await kv.create(_key(state.pack), data)
    return await kv.update(_key(state.pack), data, last=last)


# -- what operators do (`cordon policy halt|resume`) -----------------------------------


async def halt(central: Endpoint, pack: str, reason: str) -> RolloutState:
    return await _change(central, pack, lambda s: _halted(s, reason, time.time()))


async def resume(central: Endpoint, pack: str) -> RolloutState:
    def resumed(state: RolloutState) -> RolloutState:
        if state.halted is None:
            raise PublishError(f"the rollout of {pack} r{state.revision} is not halted")
        return replace(state, halted=None, halted_at=None, waived=state.wave)

    return await _change(central, pack, resumed)


async def _change(central: Endpoint, pack: str, change: Any) -> RolloutState:
    try:
        nc = await central.connect(name="cordon-policy-rollout", allow_reconnect=False)
    except (OSError, NatsError) as exc:
        raise PublishError(f"cannot reach central NATS: {exc}") from exc
    try:
        kv = await nc.jetstream().key_value(subjects.REPLICATOR_BUCKET)
        for _ in range(5):  # the controller may write in between: read again and retry
            state, last = await load_state(kv, pack)
            if state is None or state.complete:
                raise PublishError(f"no rollout of {pack} in progress")
            changed = change(state)
            try:
                await save_state(kv, changed, last)
            except KeyWrongLastSequenceError:
                continue
            return changed  # type: ignore[no-any-return]
        raise PublishError("the rollout kept changing under us; try again")
    except (NatsError, TimeoutError) as exc:
        raise PublishError(f"rollout state: {exc}") from exc
    finally:
        await nc.close()


def _halted(state: RolloutState, reason: str, now: float) -> RolloutState:
    if state.halted is not None:
        return state
    return replace(state, halted=reason, halted_at=now)


# -- the controller (active replicator only) -----------------------------------------


@dataclass(frozen=True)
class WaveView:
    """What the replicas of one wave's regions say about `revision`."""

    written: bool  # every region's policy bucket holds it (or newer)
    enforcing: bool  # ... and every live replica there enforces it
    refusals: list[str]
    calls: int
    errors: int


class RolloutController:
    def __init__(
        self,
        nc: NATS,
        regions: list[str],
        trusted: Mapping[str, bytes],
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.nc = nc
        self.regions = regions
        self.trusted = trusted
        self.may_write = may_write
        self.states: dict[str, RolloutState] = {}
        self._tick = asyncio.Event()
        self._specs: dict[tuple[str, int], tuple[Rollout | None, tuple[str, ...]]] = {}

    def permits(self, pack: str, revision: int, region: str) -> bool:
        state = self.states.get(pack)
        return state is not None and state.permits(region, revision)

    async def changed(self) -> None:
        """Return after the next look."""
        await self._tick.wait()

    async def run(self, stop: asyncio.Event) -> None:
        kv = await self.nc.jetstream().key_value(subjects.REPLICATOR_BUCKET)
        while not stop.is_set():
            try:
                await self._look(kv)
            except (NatsError, TimeoutError, PublishError, RegionWriteError) as exc:
                log.warning("rollouts not advanced this time: %s", exc)
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    async def _look(self, kv: KeyValue) -> None:
        for name, revision, spec, covered in await self._latest():
            state, last = await load_state(kv, name)
            wanted = await self._next(name, revision, spec, covered, state, time.time())
            if wanted is not None and wanted != state and self.may_write():
                try:
                    await save_state(kv, wanted, last)
                except KeyWrongLastSequenceError:
                    continue  # an operator acted in between: look again next tick
                self._report(state, wanted)
                state = wanted
            if state is not None:
                self.states[name] = state
                metrics.ROLLOUT_WAVE.labels(name).set(state.wave)
                metrics.ROLLOUT_HALTED.labels(name).set(state.halted is not None)

    async def _latest(self) -> list[tuple[str, int, Rollout | None, tuple[str, ...]]]:
        """Each pack's newest revision, its rollout and the regions (of ours) it covers;
        each revision verified once."""
        found = []
        specs = {}
        for last in await latest_published(self.nc):
            key = (last.subject or "", last.seq or 0)
            specs[key] = self._specs.get(key) or self._spec(last.data or b"")
            claimed = signing.claimed(last.data or b"")
            if isinstance(claimed.get("name"), str) and isinstance(claimed.get("revision"), int):
                found.append((claimed["name"], claimed["revision"], *specs[key]))
        self._specs = specs
        return found

    def _spec(self, data: bytes) -> tuple[Rollout | None, tuple[str, ...]]:
        try:
            pack = signing.decode(data, self.trusted)
            rollout = parse_rollout(pack.document)
        except (PackError, DocumentError):
            return None, ()  # the fan-out refuses it; nothing to stage
        return rollout, tuple(r for r in self.regions if pack.covers(r))

    async def _next(
        self,
        name: str,
        revision: int,
        spec: Rollout | None,
        covered: tuple[str, ...],
        state: RolloutState | None,
        now: float,
    ) -> RolloutState | None:
        if spec is None:  # everywhere at once, held revisions included
            released = {region: revision for region in self.regions}
            if state is not None and state.released == released and state.complete:
                return state
            return RolloutState(name, revision, released=released, complete=True, opened_at=now)
        if state is None or state.revision < revision:
            return self._begin(name, revision, spec, covered, state, now)
        if state.revision > revision or state.complete or state.halted:
            return state
        return await self._progress(state, spec, now)

    def _begin(
        self,
        name: str,
        revision: int,
        spec: Rollout,
        covered: tuple[str, ...],
        old: RolloutState | None,
        now: float,
    ) -> RolloutState:
        waves = [list(w) for w in spec.planned(covered)]
        released = dict(old.released) if old is not None else {}
        released |= {region: revision for region in waves[0]} if waves else {}
        return RolloutState(
            name,
            revision,
            waves=waves,
            opened_at=now,
            soak_s=spec.soak_s,
            released=released,
            complete=not waves,
        )

    async def _progress(self, state: RolloutState, spec: Rollout, now: float) -> RolloutState:
        for index in range(state.waived + 1, state.wave + 1):
            view = await self._view(state.pack, state.waves[index], state.revision)
            reason = _halt_reason(spec, view, index, state.waves[index])
            if reason is not None:
                return _halted(state, reason, now)
        waived = state.waived >= state.wave
        if not waived:
            view = await self._view(state.pack, state.waves[state.wave], state.revision)
            if not view.enforcing:
                return state
        done_at = state.done_at if state.done_at is not None else now
        if state.wave + 1 >= len(state.waves):  # the last wave: nothing left to soak for
            return replace(state, done_at=done_at, complete=True)
        if not waived and now - done_at < state.soak_s:
            return replace(state, done_at=done_at)
        wave = state.wave + 1
        released = state.released | {region: state.revision for region in state.waves[wave]}
        return replace(state, wave=wave, opened_at=now, done_at=None, released=released)

    async def _view(self, pack: str, regions: list[str], revision: int) -> WaveView:
        written = enforcing = True
        refusals: list[str] = []
        calls = errors = 0
        now = time.time()
        for region in regions:
            key = subjects.pack_key(pack)
            _, current = await regional_revision(self.nc, region, key, self.trusted)
            written = written and current >= revision
            for replica in await applied_reports(self.nc, region):
                if replica.pack != pack or not _live(replica, now):
                    continue
                if replica.revision < revision:
                    enforcing = False
                if replica.last_rejected_revision == revision:
                    refusals.append(f"{region}/{replica.replica}: {replica.last_rejection}")
                if replica.revision == revision:
                    calls += replica.calls
                    errors += replica.errors
        return WaveView(written, written and enforcing, refusals, calls, errors)

    def _report(self, old: RolloutState | None, new: RolloutState) -> None:
        if new.halted and (old is None or not old.halted):
            log.error("rollout of %s r%s halted: %s", new.pack, new.revision, new.halted)
        elif old is None or old.wave != new.wave or old.revision != new.revision:
            log.info("rollout of %s r%s: wave %s open", new.pack, new.revision, new.wave + 1)
        if new.complete and (old is None or not old.complete):
            log.info("rollout of %s r%s complete", new.pack, new.revision)


def _live(replica: ReplicaState, now: float) -> bool:
    return replica.reported_at is not None and now - replica.reported_at <= LIVE_WITHIN_S


def _halt_reason(spec: Rollout, view: WaveView, index: int, regions: list[str]) -> str | None:
    where = f"wave {index + 1} ({', '.join(regions)})"
    if len(view.refusals) >= spec.activation_failures:
        return f"{where}: {len(view.refusals)} replica(s) refused it: {'; '.join(view.refusals)}"
    if spec.error_ratio is not None and view.calls >= spec.min_calls:
        ratio = view.errors / view.calls
        if ratio > spec.error_ratio:
            return (
                f"{where}: error ratio {ratio:.3f} above {spec.error_ratio}"
                f" ({view.errors} of {view.calls} calls)"
            )
    return None
