"""The cross-region view store: SQLite by default, one row per summary."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aggregator.witness import Verdict
from cordon.errors import BadSummaryError, SignatureError
from cordon.log import checkpoints

COLUMNS = (
    "id",
    "kind",
    "region",
    "replica",
    "replica_seq",
    "stream_seq",
    "leaf_hash",
    "ts",
    "outcome",
    "pack_name",
    "pack_revision",
    "model",
    "route",
    "classification",
    "person",
    "agent",
)

INTEGER_COLUMNS = {"replica_seq", "stream_seq", "pack_revision"}
_COLUMN_DEFS = ", ".join(f"{c} {'INTEGER' if c in INTEGER_COLUMNS else 'TEXT'}" for c in COLUMNS)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS summaries (
    {_COLUMN_DEFS},
    PRIMARY KEY (region, stream_seq)
);
CREATE INDEX IF NOT EXISTS summaries_region_ts ON summaries (region, ts);
CREATE TABLE IF NOT EXISTS checkpoints (
    region TEXT NOT NULL, size INTEGER NOT NULL, root TEXT NOT NULL, time_ms INTEGER,
    signed TEXT NOT NULL, PRIMARY KEY (region, size)
);
CREATE TABLE IF NOT EXISTS witnessed (
    region TEXT NOT NULL, size INTEGER NOT NULL, verified INTEGER NOT NULL, reason TEXT,
    cosignature TEXT, PRIMARY KEY (region, size)
);
CREATE TABLE IF NOT EXISTS witness_state (region TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


class ViewStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, raw_summaries: Iterable[bytes]) -> int:
        """Store summaries; a summary seen before (same region and seq) is kept once."""
        return self.add_parsed([self.parse(raw) for raw in raw_summaries])

    def add_parsed(self, summaries: Iterable[dict[str, Any]]) -> int:
        rows = [tuple(summary.get(c) for c in COLUMNS) for summary in summaries]
        with self._db:
            cursor = self._db.executemany(
                f"INSERT OR IGNORE INTO summaries ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in COLUMNS)})",
                rows,
            )
        return cursor.rowcount

    def add_checkpoint(self, region: str, raw: bytes) -> None:
        """Keep a region's signed checkpoint as it arrived (the note and its signature)."""
        try:
            stated = checkpoints.unverified(raw)
        except SignatureError as exc:
            raise BadSummaryError(f"unreadable checkpoint: {exc}") from exc
        if stated.region != region:
            raise BadSummaryError(f"checkpoint for {stated.region} on {region}'s subject")
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?)",
                (region, stated.size, stated.root.hex(), stated.time_ms, raw.decode()),
            )

    def latest_checkpoints(self) -> dict[str, dict[str, Any]]:
        """Each region's newest checkpoint, with the witness's verdict on it."""
        rows = self._db.execute(
            "SELECT c.region, c.size, c.root, c.time_ms, c.signed, w.verified, w.reason, "
            "w.cosignature FROM checkpoints c "
            "LEFT JOIN witnessed w ON w.region = c.region AND w.size = c.size "
            "WHERE c.size = (SELECT MAX(size) FROM checkpoints WHERE region = c.region)"
        )
        latest = {}
        for region, size, root, time_ms, signed, verified, why, cosignature in rows:
            witnessed = None
            if verified is not None:
                witnessed = {"verified": bool(verified), "reason": why, "cosignature": cosignature}
            latest[region] = {
                "size": size,
                "root": root,
                "time_ms": time_ms,
                "note": json.loads(signed)["note"],
                "witness": witnessed,
            }
        return latest

    def add_verdict(self, verdict: Verdict) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO witnessed VALUES (?,?,?,?,?)",
                (
                    verdict.region,
                    verdict.size,
                    int(verdict.verified),
                    verdict.reason,
                    base64.b64encode(verdict.cosignature).decode() if verdict.cosignature else None,
                ),
            )

    def verdict(self, region: str, size: int) -> dict[str, Any] | None:
        """The witness's verdict on one checkpoint, with its cosignature (base64)."""
        row = self._db.execute(
            "SELECT verified, reason, cosignature FROM witnessed WHERE region = ? AND size = ?",
            (region, size),
        ).fetchone()
        if row is None:
            return None
        verified, reason, cosignature = row
        return {
            "region": region,
            "size": size,
            "verified": bool(verified),
            "reason": reason,
            "cosignature": cosignature,
        }

    def witness_failures(self, region: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT size, reason FROM witnessed WHERE region = ? AND verified = 0 ORDER BY size",
            (region,),
        )
        return [{"size": size, "reason": reason} for size, reason in rows]

    def save_witness(self, region: str, state: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO witness_state VALUES (?, ?)", (region, json.dumps(state))
            )

    def witness_states(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT region, state FROM witness_state")
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

    def query(
        self, region: str | None = None, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM summaries WHERE stream_seq > ?"
        params: list[Any] = [after_seq]
        if region is not None:
            sql += " AND region = ?"
            params.append(region)
        sql += " ORDER BY region, stream_seq LIMIT ?"
        params.append(limit)
        return [dict(zip(COLUMNS, row, strict=True)) for row in self._db.execute(sql, params)]

    def stats(self) -> dict[str, Any]:
        by_region: dict[str, dict[str, Any]] = {}
        rows = self._db.execute(
            "SELECT region, kind, outcome, COUNT(*), MAX(ts) FROM summaries "
            "GROUP BY region, kind, outcome"
        )
        for region, kind, outcome, count, newest in rows:
            entry = by_region.setdefault(
                region, {"records": 0, "by_outcome": {}, "newest_ts": None}
            )
            if kind != "decision":
                continue
            entry["records"] += count
            entry["by_outcome"][outcome] = count
            if newest and (entry["newest_ts"] is None or newest > entry["newest_ts"]):
                entry["newest_ts"] = newest
        return {"regions": by_region}
