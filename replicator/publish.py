"""Put signed packs on the central `POLICY` stream.

A pack is published only with a revision above the last one published under its
name, and the publish is conditional on the stream's last message for that name,
so two owners publishing at once cannot both get the same revision.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from cordon.errors import PublishError
from cordon.nats import Endpoint, subjects
from cordon.packs import signing


@dataclass(frozen=True)
class Published:
    name: str
    revision: int
    hash: str
    stream_seq: int


async def last_published(nc: NATS, name: str) -> tuple[int, int]:
    """(stream sequence, revision) of the last pack published under `name`, or (0, 0)."""
    try:
        last = await nc.jetstream().get_last_msg(
            subjects.POLICY_STREAM, subjects.policy_subject(name)
        )
    except NotFoundError:
        return 0, 0
    revision = signing.claimed(last.data or b"").get("revision")
    return last.seq or 0, int(revision) if isinstance(revision, int) else 0


async def published_pack(central: Endpoint, name: str, revision: int) -> bytes:
    """The signed pack published as `name` revision `revision`, as it was published
    (POLICY keeps the last 100 revisions of each pack)."""
    nc = await _connect(central)
    try:
        seq = 1
        while True:
            request = {"seq": seq, "next_by_subj": subjects.policy_subject(name)}
            reply = await nc.request(
                f"$JS.API.STREAM.MSG.GET.{subjects.POLICY_STREAM}",
                json.dumps(request).encode(),
                timeout=5,
            )
            answer = json.loads(reply.data)
            if "error" in answer:
                raise PublishError(f"{name} revision {revision} is not in POLICY")
            message = answer["message"]
            data = base64.b64decode(message.get("data") or b"")
            if signing.claimed(data).get("revision") == revision:
                return data
            seq = int(message["seq"]) + 1
    except NatsError as exc:
        raise PublishError(f"reading POLICY failed: {exc}") from exc
    finally:
        await nc.close()


async def latest_revision(central: Endpoint, name: str) -> int:
    nc = await _connect(central)
    try:
        return (await last_published(nc, name))[1]
    finally:
        await nc.close()


async def publish_signed(central: Endpoint, signed: bytes) -> Published:
    claimed = signing.claimed(signed)
    name, revision = claimed.get("name"), claimed.get("revision")
    if not isinstance(name, str) or not isinstance(revision, int):
        raise PublishError("not a signed pack (no name and revision in its statement)")
    nc = await _connect(central)
    try:
        last_seq, last_revision = await last_published(nc, name)
        if revision <= last_revision:
            raise PublishError(f"revision {revision} is not above the published {last_revision}")
        ack = await nc.jetstream().publish(
            subjects.policy_subject(name),
            signed,
            headers={"Nats-Expected-Last-Subject-Sequence": str(last_seq)},
        )
        return Published(name, revision, str(claimed.get("hash")), ack.seq)
    except NatsError as exc:
        raise PublishError(f"publish failed: {exc}") from exc
    finally:
        await nc.close()


async def _connect(central: Endpoint) -> NATS:
    try:
        return await central.connect(name="cordon-policy", allow_reconnect=False)
    except (OSError, NatsError) as exc:
        raise PublishError(f"cannot reach central NATS: {exc}") from exc


def is_signed(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict) and "statement" in json.loads(data)
    except ValueError:
        return False
