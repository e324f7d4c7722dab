"""The summary chain: a region's summaries, authenticated by its signed checkpoints.

Anyone holding a region's cross-region (XR) credentials can publish on its summary
subjects, so a summary proves nothing by arriving. The sealer therefore links every
summary it publishes into a hash chain,

    link(n) = SHA-256( link(n-1) || SHA-256(body(n)) ),   link(0) = SHA-256("cordon.sum/<region>")

where each body carries `prev` = link(n-1) (hex), and every checkpoint it signs states
the chain's head. One signature per checkpoint thus covers every summary before it,
at the cost of two hashes per summary instead of a signature each.

The aggregator keeps summaries as candidates until a checkpoint arrives, then walks
back from the signed head: at each sequence exactly one candidate can hash to the link
it needs (or SHA-256 is broken), and that candidate's `prev` is the link below it.
Everything else at those sequences was forged, whoever sent it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cordon.errors import BadSummaryError

__all__ = ["Candidate", "Walk", "candidate", "genesis", "link", "walk"]

ORIGIN_PREFIX = b"cordon.sum/"


def genesis(region: str) -> bytes:
    """The link before a region's first summary (region-bound: no chain fits two regions)."""
    return hashlib.sha256(ORIGIN_PREFIX + region.encode()).digest()


def link(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev + hashlib.sha256(body).digest()).digest()


@dataclass(frozen=True)
class Candidate:
    """A summary as it arrived: its exact bytes' link, the `prev` it claims, and its body."""

    stream_seq: int
    prev: bytes
    link: bytes
    summary: dict[str, Any] = field(compare=False)


def candidate(summary: dict[str, Any], body: bytes) -> Candidate:
    """`summary`, parsed from exactly `body`, as a candidate for its sequence."""
    try:
        prev = bytes.fromhex(str(summary["prev"]))
        seq = int(summary["stream_seq"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BadSummaryError(f"summary is not chained: {exc}") from exc
    return Candidate(seq, prev, link(prev, body), summary)


@dataclass(frozen=True)
class Walk:
    """The candidates the signed head authenticates (in sequence order) and, when the
    chain could not be followed all the way down, the highest sequence it broke at."""

    accepted: list[Candidate]
    broken_at: int | None


def walk(
    head: bytes,
    size: int,
    floor_head: bytes,
    floor: int,
    candidates: Mapping[int, Sequence[Candidate]],
) -> Walk:
    """Follow the chain from `head` (the link of summary `size`) down to `floor_head`
    (the link of summary `floor`), choosing at each sequence the candidate that hashes
    to the link needed there."""
    accepted: list[Candidate] = []
    want = head
    for seq in range(size, floor, -1):
        found = next((c for c in candidates.get(seq, ()) if c.link == want), None)
        if found is None:
            return Walk(accepted[::-1], seq)
        accepted.append(found)
        want = found.prev
    return Walk(accepted[::-1], None if want == floor_head else floor)
