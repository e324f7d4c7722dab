"""Signed checkpoints of a region's record log.

The signed text is a note in the style of C2SP signed notes:

    cordon.rec/<region>
    <tree size>
    <base64 root hash>
    <unix milliseconds>
    <base64 summary chain head>

signed with Ed25519 by the region's sealer key (enrolled by the regional key, like
replica keys). On the wire a checkpoint is JSON: `{"note", "key_id", "sig"}` plus
`frontier`, the sealer's own resumption state (the roots of the tree's perfect
subtrees), which verifiers ignore: they recompute roots from leaves.

The last line commits to every metadata summary the sealer published up to this size
(`summary_chain`): the central witness accepts only summaries that chain to it. A note
without it (older sealers, or tests of the record log alone) is still a checkpoint of
the records; the witness refuses it as a checkpoint of the summaries.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cordon.errors import SignatureError
from cordon.log.keys import SigningKey, load_public_key, verify
from cordon.log.merkle import CompactTree

ORIGIN_PREFIX = "cordon.rec/"


@dataclass(frozen=True)
class Checkpoint:
    region: str
    size: int
    root: bytes
    time_ms: int
    summaries: bytes | None = None  # the summary chain's head at `size`

    def note(self) -> str:
        root = base64.b64encode(self.root).decode()
        note = f"{ORIGIN_PREFIX}{self.region}\n{self.size}\n{root}\n{self.time_ms}\n"
        if self.summaries is not None:
            note += base64.b64encode(self.summaries).decode() + "\n"
        return note


def encode(checkpoint: Checkpoint, key: SigningKey, tree: CompactTree) -> bytes:
    note = checkpoint.note()
    return json.dumps(
        {
            "note": note,
            "key_id": key.key_id,
            "sig": base64.b64encode(key.sign(note.encode())).decode(),
            "frontier": [base64.b64encode(h).decode() for h in tree.frontier],
        }
    ).encode()


def parse_note(note: str) -> Checkpoint:
    try:
        origin, size, root, time_ms, *chain, end = note.split("\n")
        if not origin.startswith(ORIGIN_PREFIX) or end != "" or len(chain) > 1:
            raise ValueError("not a cordon checkpoint note")
        return Checkpoint(
            origin[len(ORIGIN_PREFIX) :],
            int(size),
            base64.b64decode(root, validate=True),
            int(time_ms),
            base64.b64decode(chain[0], validate=True) if chain else None,
        )
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(f"malformed checkpoint: {exc}") from exc


def unverified(data: bytes) -> Checkpoint:
    """What a checkpoint states, without checking who signed it (for choosing, not trusting)."""
    try:
        return parse_note(str(json.loads(data)["note"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"not a checkpoint: {exc}") from exc


def decode(data: bytes, trusted: Mapping[str, bytes]) -> Checkpoint:
    """Verify a checkpoint's signature over its exact note text; return what it states."""
    try:
        wire = json.loads(data)
        note, key_id, sig = str(wire["note"]), str(wire["key_id"]), base64.b64decode(wire["sig"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"not a checkpoint: {exc}") from exc
    if key_id not in trusted:
        raise SignatureError(f"checkpoint signed by unknown key {key_id}")
    verify(load_public_key(trusted[key_id]), sig, note.encode())
    return parse_note(note)


def resume(data: bytes) -> tuple[Checkpoint, CompactTree]:
    """The sealer's own last checkpoint and the tree it was taken of (no trust needed:
    a wrong frontier would make the next checkpoint inconsistent, which verifiers catch)."""
    wire = json.loads(data)
    checkpoint = parse_note(str(wire["note"]))
    tree = CompactTree(checkpoint.size, [base64.b64decode(h) for h in wire["frontier"]])
    if tree.root() != checkpoint.root:
        raise SignatureError("checkpoint frontier does not match its root")
    return checkpoint, tree
