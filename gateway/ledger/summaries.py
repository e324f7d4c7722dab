"""Metadata-only summaries: what of a record may leave its region.

No content and no raw identity: the person and agent become keyed-HMAC
pseudonyms under a regional secret, so the central view can count and correlate
without being able to name anyone. Each summary is published chained to the one
before it (`cordon.log.summary_chain`), so the region's next signed checkpoint
authenticates it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any

from cordon import jsoncodec
from cordon.errors import SignatureError
from cordon.ids import is_record_id
from cordon.log import envelope, merkle, summary_chain

# Where a pack was enforced, as the replica's configuration names its place; a record
# from before records named it was a gateway's.
PLACES = frozenset({"gateway", "sidecar", "sdk"})
# A record id as the gateway accepts one in `x-cordon-sdk-record` (a UUID, lower-case).


def leaf_hash(record_bytes: bytes) -> str:
    return merkle.leaf_hash(record_bytes).hex()


def pseudonym(secret: bytes, value: str | None) -> str | None:
    if value is None:
        return None
    keyed = _keyed(secret).copy()  # the key schedule is done once per secret
    keyed.update(value.encode())
    return keyed.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod=hashlib.sha256)


def summarize(record_bytes: bytes, stream_seq: int, region: str, secret: bytes) -> dict[str, Any]:
    """The summary of the stream message `record_bytes` at `stream_seq`."""
    base: dict[str, Any] = {
        "v": 1,
        "region": region,
        "stream_seq": stream_seq,
        "leaf_hash": leaf_hash(record_bytes),
    }
    try:
        payload = envelope.decode(record_bytes).payload_dict()
    except SignatureError:
        # Still a leaf of the log: the summary keeps the tree complete.
        return {**base, "kind": "unreadable", "id": f"seq-{stream_seq}"}
    kind = str(payload.get("kind", "decision"))
    if kind == "enrolment":
        return {
            **base,
            "kind": kind,
            "id": f"enrol-{payload.get('key_id')}",
            "replica": payload.get("replica"),
            "key_id": payload.get("key_id"),
            # The signed enrolment itself (a public key, no personal data): the central
            # witness learns from it which keys may sign this region's checkpoints.
            "enrolment": base64.b64encode(record_bytes).decode(),
        }
    pack = payload.get("pack") or {}
    summary = {
        **base,
        "kind": kind,
        "id": payload.get("id"),
        "intent": payload.get("intent"),  # the stream intent a decision completes
        "replica": payload.get("replica"),
        "replica_seq": payload.get("replica_seq"),
        "ts": payload.get("ts"),
        "outcome": payload.get("outcome"),
        "pack_name": pack.get("name"),
        "pack_revision": pack.get("revision"),
        # What the caller typed as a model name may be anything, personal data included:
        # only the route's configured entry that it matched crosses.
        "model": payload.get("model_id") or "unrouted",
        "route": payload.get("route"),
        "classification": payload.get("classification"),
        "person": pseudonym(secret, payload.get("person")),
        "agent": pseudonym(secret, payload.get("agent")),
        "enforced_by": enforced_by(payload),
        # The in-process SDK's record of the same call, when one came through here: an id
        # in the one form the gateway lets in, so nothing else a caller typed can cross.
        "sdk_record": sdk_record(payload),
    }
    tool = payload.get("tool")
    if isinstance(tool, dict):  # a tool call has no model: its tool, as the pack names it
        summary["model"] = None
        summary["tool_server"], summary["tool"] = declared_names(tool)
    return summary


def enforced_by(payload: dict[str, Any]) -> str:
    """Where the record's pack was enforced (`gateway`, `sidecar`, `sdk`): `gateway` for
    a record from before records said, `other` for a value outside the closed set."""
    place = payload.get("enforced_by", "gateway")
    return place if isinstance(place, str) and place in PLACES else "other"


def sdk_record(payload: dict[str, Any]) -> str | None:
    """The id of the SDK record a gateway or sidecar record names, if it names one (in
    the UUID form the gateway checked it against; anything else does not cross)."""
    named = payload.get("sdk_record")
    if is_record_id(named):
        return named
    return None


def declared_names(tool: dict[str, Any]) -> tuple[str, str]:
    """A tool call's server and tool, as the pack declared them: a name a caller or a
    tool server typed (`undeclared`) may be anything, personal data included."""
    server_declared = tool.get("server_declared") is True
    server = str(tool.get("server")) if server_declared else "undeclared"
    return server, str(tool.get("name")) if tool.get("declared") is True else "undeclared"


def encode(summary: dict[str, Any]) -> bytes:
    return jsoncodec.dumps(summary)


def chained(summary: dict[str, Any], prev: bytes) -> tuple[bytes, bytes]:
    """`summary` as published after the chain link `prev`: its bytes, and the new link."""
    summary["prev"] = prev.hex()
    body = encode(summary)
    return body, summary_chain.link(prev, body)
