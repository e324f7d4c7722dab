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
from dataclasses import asdict, dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

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
    behind: bool = False
    stale: bool = False


@dataclass(frozen=True)
class Status:
    packs: list[Published]
    replicas: list[ReplicaState]
    unreachable: list[str]  # regions whose applied bucket could not be read

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

    def late(replica: ReplicaState) -> bool:
        published = packs.get(replica.pack)
        return (
            not stale(replica)
            and published is not None
            and published.revision > replica.revision
            and now - published.published_at > behind_after_s
        )

    marked = [ReplicaState(**{**asdict(r), "behind": late(r), "stale": stale(r)}) for r in replicas]
    return Status(sorted(packs.values(), key=lambda p: p.pack), marked, unreachable)


async def published_packs(nc: NATS) -> list[Published]:
    js = nc.jetstream()
    try:
        info = await js.stream_info(subjects.POLICY_STREAM, subjects_filter="cordon.policy.>")
    except NotFoundError:
        return []
    found = []
    for subject in info.state.subjects or {}:
        last = await js.get_last_msg(subjects.POLICY_STREAM, subject)
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
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a deleted key's marker, or an entry not in the report's shape
