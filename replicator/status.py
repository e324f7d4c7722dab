"""`cordon policy status`: where every pack is, published centrally and active at each
replica, read with the publisher's identity.

Published revisions come from `POLICY` (the last message per pack); what each replica
enforces comes from its region's `applied` bucket, which every replica writes when it
activates a pack (gateway.policy.activation.applied_report), read through the region's
JetStream domain. Replicas report at least every 10 s: one whose last report is older
than the stale threshold is *stale* (stopped, or cut off) and listed as such, not as
behind. A live replica is *behind* when its pack's published revision is newer than the
one it enforces and was published longer ago than the threshold.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import RawStreamMsg
from nats.js.errors import KeyNotFoundError, NotFoundError

from cordon.errors import PublishError, RegionWriteError
from cordon.nats import Endpoint, subjects
from cordon.packs import signing
from replicator.fanout import region_api

__all__ = [
    "Published",
    "ReplicaState",
    "Status",
    "applied_reports",
    "collect",
    "latest_published",
    "published_packs",
]


@dataclass(frozen=True)
class Published:
    pack: str
    revision: int
    published_at: float  # when POLICY stored it (Unix seconds)


@dataclass(frozen=True)
class ReplicaState:
    region: str
    replica: str
    pack: str
    revision: int
    activated_at: float | None
    reported_at: float | None = None
    last_rejection: str | None = None
    last_rejected_revision: int | None = None
    calls: int = 0  # answered under `revision`, and how many failed (staged rollouts)
    errors: int = 0
    behind: bool = False
    stale: bool = False
    held: bool = False  # a staged rollout has not reached its region yet


@dataclass(frozen=True)
class Status:
    packs: list[Published]
    replicas: list[ReplicaState]
    unreachable: list[str]  # regions whose applied bucket could not be read
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # RolloutState.as_dict()

    @property
    def halted(self) -> list[dict[str, Any]]:
        return [r for r in self.rollouts if r.get("halted")]

    @property
    def behind(self) -> list[ReplicaState]:
        return [r for r in self.replicas if r.behind]

    @property
    def stale(self) -> list[ReplicaState]:
        return [r for r in self.replicas if r.stale]

    def as_dict(self) -> dict[str, Any]:
        return {
            "packs": [asdict(p) for p in self.packs],
            "replicas": [asdict(r) for r in self.replicas],
            "unreachable": self.unreachable,
            "rollouts": self.rollouts,
        }


async def collect(
    central: Endpoint,
    regions: list[str],
    now: float,
    behind_after_s: float,
    stale_after_s: float = 60.0,
) -> Status:
    try:
        nc = await central.connect(name="cordon-policy-status", allow_reconnect=False)
    except (OSError, NatsError) as exc:
        raise PublishError(f"cannot reach central NATS: {exc}") from exc
    try:
        packs = {p.pack: p for p in await published_packs(nc)}
        rollouts = await _rollouts(nc, list(packs))
        replicas: list[ReplicaState] = []
        unreachable: list[str] = []
        for region in regions:
            try:
                replicas += await applied_reports(nc, region)
            except (NatsError, TimeoutError, PublishError, RegionWriteError):
                unreachable.append(region)
    finally:
        await nc.close()

    def stale(replica: ReplicaState) -> bool:
        return replica.reported_at is None or now - replica.reported_at > stale_after_s

    def held(replica: ReplicaState) -> bool:
        """Waiting for its wave of a rollout that is moving (a halted one needs a human)."""
        rollout = rollouts.get(replica.pack)
        published = packs.get(replica.pack)
        return (
            rollout is not None
            and published is not None
            and rollout["revision"] == published.revision
            and not rollout["complete"]
            and not rollout["halted"]
            and rollout["released"].get(replica.region, 0) < published.revision
        )

    def late(replica: ReplicaState) -> bool:
        published = packs.get(replica.pack)
        return (
            not stale(replica)
            and not held(replica)
            and published is not None
            and published.revision > replica.revision
            and now - published.published_at > behind_after_s
        )

    marked = [
        replace(r, behind=late(r), stale=stale(r), held=held(r) and r.revision < _rev(packs, r))
        for r in replicas
    ]
    return Status(
        sorted(packs.values(), key=lambda p: p.pack),
        marked,
        unreachable,
        [rollouts[name] for name in sorted(rollouts)],
    )


def _rev(packs: dict[str, Published], replica: ReplicaState) -> int:
    published = packs.get(replica.pack)
    return published.revision if published else 0


async def _rollouts(nc: NATS, packs: list[str]) -> dict[str, dict[str, Any]]:
    """Each pack's rollout state (replicator.rollout), where there is one."""
    try:
        kv = await nc.jetstream().key_value(subjects.REPLICATOR_BUCKET)
    except NotFoundError:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for pack in packs:
        try:
            entry = await kv.get(f"{subjects.ROLLOUT_KEY_PREFIX}{pack}")
        except KeyNotFoundError:
            continue
        if entry.value:
            found[pack] = json.loads(entry.value)
    return found


async def latest_published(nc: NATS) -> list[RawStreamMsg]:
    """The last message of each pack in `POLICY`, as stored."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(subjects.POLICY_STREAM, subjects_filter="cordon.policy.>")
    except NotFoundError:
        return []
    return [
        await js.get_last_msg(subjects.POLICY_STREAM, subject)
        for subject in info.state.subjects or {}
    ]


async def published_packs(nc: NATS) -> list[Published]:
    found = []
    for last in await latest_published(nc):
        claimed = signing.claimed(last.data or b"")
        when = last.time.timestamp() if last.time else 0.0
        if isinstance(claimed.get("name"), str) and isinstance(claimed.get("revision"), int):
            found.append(Published(claimed["name"], claimed["revision"], when))
    return found


async def applied_reports(nc: NATS, region: str) -> list[ReplicaState]:
    """Every replica's report in `region`'s applied bucket, oldest first."""
    states: list[ReplicaState] = []
    seq = 1
    while True:
        request = {"seq": seq, "next_by_subj": f"$KV.{subjects.APPLIED_BUCKET}.>"}
        answer = await region_api(
            nc,
            region,
            f"STREAM.MSG.GET.KV_{subjects.APPLIED_BUCKET}",
            json.dumps(request).encode(),
        )
        error = answer.get("error")
        if isinstance(error, dict) and error.get("code") == 404:
            return states
        if error is not None:
            raise PublishError(f"{region}: {error}")
        message = answer["message"]
        if not isinstance(message, dict):
            raise PublishError(f"{region}: unexpected answer {answer}")
        seq = int(message["seq"]) + 1
        try:
            report = json.loads(base64.b64decode(message.get("data") or b""))
            states.append(
                ReplicaState(
                    region,
                    str(report["replica"]),
                    str(report["pack"]),
                    int(report["revision"]),
                    report.get("activated_at"),
                    report.get("reported_at"),
                    report.get("last_rejection"),
                    _int_or_none(report.get("last_rejected_revision")),
                    int(report.get("calls") or 0),
                    int(report.get("errors") or 0),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a deleted key's marker, or an entry not in the report's shape


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
