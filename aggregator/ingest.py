"""The cross-region view's writer: what the consumer (aggregator.consumer) stores as
summaries and checkpoints arrive and the witness judges them. Reads here are only the
ones settling needs (the waiting candidates, an accepted link, the witness's state);
what the API serves is aggregator.queries.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aggregator.database import Executor
from aggregator.schema import STORED, OnDatabase
from aggregator.witness import Judgement, Verdict
from cordon.errors import BadSummaryError, SignatureError
from cordon.log import checkpoints, envelope
from cordon.log.summary_chain import Candidate

__all__ = ["ViewWriter"]


class ViewWriter(OnDatabase):
    """Summaries in, judged by their checkpoints."""

    def add_candidates(self, candidates: Iterable[Candidate]) -> None:
        """Keep summaries as they arrived until a checkpoint settles them (one row per
        distinct body: a redelivered one is kept once, a forged one beside the true one)."""
        rows = [
            (
                str(c.summary["region"]),
                c.stream_seq,
                c.link.hex(),
                c.prev.hex(),
                json.dumps(c.summary),
            )
            for c in candidates
        ]
        with self._db.transaction() as tx:
            tx.executemany("INSERT INTO candidates VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING", rows)

    def candidates(self, region: str, after: int, upto: int) -> dict[int, list[Candidate]]:
        """The candidates waiting for sequences after..upto of `region`, by sequence."""
        found: dict[int, list[Candidate]] = {}
        rows = self._db.query(
            "SELECT stream_seq, link, prev, summary FROM candidates "
            "WHERE region = ? AND stream_seq > ? AND stream_seq <= ?",
            (region, after, upto),
        )
        for seq, link, prev, summary in rows:
            candidate = Candidate(
                seq, bytes.fromhex(prev), bytes.fromhex(link), json.loads(summary)
            )
            found.setdefault(seq, []).append(candidate)
        return found

    def accepted_link(self, region: str, seq: int) -> bytes | None:
        """The chain link of the summary accepted for `seq`, if one was."""
        rows = self._db.query(
            "SELECT link FROM summaries WHERE region = ? AND stream_seq = ?", (region, seq)
        )
        return bytes.fromhex(rows[0][0]) if rows and rows[0][0] else None

    def settle(
        self, checkpoint: bytes, judgement: Judgement, witness_state: dict[str, Any]
    ) -> None:
        """A checkpoint judged. One the region signed is kept, its accepted summaries join
        the view and every candidate up to its size leaves the waiting room; the verdict
        and the witness state it led to are kept with them, all at once."""
        verdict = judgement.verdict
        with self._db.transaction() as tx:
            if judgement.settles:
                _add_checkpoint(tx, verdict.region, checkpoint)
                _add_accepted(tx, judgement.accepted)
                tx.execute(
                    "DELETE FROM candidates WHERE region = ? AND stream_seq <= ?",
                    (verdict.region, verdict.size),
                )
            _add_verdict(tx, verdict)
            _save_witness(tx, verdict.region, witness_state)

    def save_witness(self, region: str, state: dict[str, Any]) -> None:
        with self._db.transaction() as tx:
            _save_witness(tx, region, state)

    def witness_states(self) -> dict[str, dict[str, Any]]:
        rows = self._db.query("SELECT region, state FROM witness_state")
        return {region: json.loads(state) for region, state in rows}

    @staticmethod
    def parse(raw: bytes) -> dict[str, Any]:
        try:
            summary = json.loads(raw)
            if (
                not isinstance(summary, dict)
                or "region" not in summary
                or "stream_seq" not in summary
            ):
                raise ValueError("not a summary")
            return summary
        except ValueError as exc:
            raise BadSummaryError(f"unreadable summary: {exc}") from exc


# -- writes, inside a store transaction -------------------------------------------------


def _add_accepted(tx: Executor, accepted: list[Candidate]) -> None:
    tx.executemany(
        f"INSERT INTO summaries ({', '.join(STORED)}) "
        f"VALUES ({', '.join('?' for _ in STORED)}) ON CONFLICT DO NOTHING",
        [_row(c) for c in accepted],
    )


def _row(accepted: Candidate) -> list[Any]:
    stored = {**accepted.summary, "ts": _time_of(accepted.summary), "link": accepted.link.hex()}
    return [stored.get(column) for column in STORED]


def _time_of(summary: dict[str, Any]) -> str | None:
    """A summary's time: its record's `ts`. An enrolment's record has none, so a region
    whose log holds only enrolments showed its newest summary as "never"; the signed
    enrolment the summary carries says when the key was enrolled, and that is its time
    (accepted only once the region's checkpoint vouched for the summary)."""
    ts = summary.get("ts")
    if ts is not None or summary.get("kind") != "enrolment":
        return None if ts is None else str(ts)
    try:
        signed = envelope.decode(base64.b64decode(str(summary["enrolment"]), validate=True))
        enrolled_at = float(signed.payload_dict()["enrolled_at"])
        return datetime.fromtimestamp(enrolled_at, UTC).isoformat(timespec="microseconds")
    except (KeyError, TypeError, ValueError, OverflowError, OSError, SignatureError):
        return None  # an enrolment without a readable time keeps none


def _add_checkpoint(tx: Executor, region: str, raw: bytes) -> None:
    stated = checkpoints.unverified(raw)
    tx.execute(
        "INSERT INTO checkpoints VALUES (?,?,?,?,?) ON CONFLICT (region, size) DO UPDATE "
        "SET root = excluded.root, time_ms = excluded.time_ms, signed = excluded.signed",
        (region, stated.size, stated.root.hex(), stated.time_ms, raw.decode()),
    )


def _add_verdict(tx: Executor, verdict: Verdict) -> None:
    cosignature = verdict.cosignature
    tx.execute(
        "INSERT INTO witnessed VALUES (?,?,?,?,?,?) ON CONFLICT (region, size) DO UPDATE "
        "SET verified = excluded.verified, reason = excluded.reason, "
        "cosignature = excluded.cosignature, rejected = excluded.rejected",
        (
            verdict.region,
            verdict.size,
            int(verdict.verified),
            verdict.reason,
            base64.b64encode(cosignature).decode() if cosignature else None,
            verdict.rejected,
        ),
    )


def _save_witness(tx: Executor, region: str, state: dict[str, Any]) -> None:
    tx.execute(
        "INSERT INTO witness_state VALUES (?, ?) ON CONFLICT (region) DO UPDATE "
        "SET state = excluded.state",
        (region, json.dumps(state)),
    )
