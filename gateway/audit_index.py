"""The regional audit index: who, what and when for every record, so auditors' queries
read only the records they ask for. It lives in the region (a SQLite file beside the
audit API), holds no content, and is rebuilt from `RECORDS` if lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from gateway import envelope, merkle, subjects
from gateway.errors import SignatureError
from gateway.natsio import durable_batches, keep_running

log = logging.getLogger("cordon.audit.index")
DURABLE = "audit-index"
BATCH = 512
FIELDS = ("person", "agent", "outcome", "pack_revision", "model", "replica", "kind")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, id TEXT, ts TEXT, kind TEXT, replica TEXT, person TEXT,
    agent TEXT, outcome TEXT, pack_revision INTEGER, model TEXT, leaf BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_person_ts ON records (person, ts);
CREATE INDEX IF NOT EXISTS records_agent_ts ON records (agent, ts);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
"""


@dataclass(frozen=True)
class Query:
    person: str | None = None
    agent: str | None = None
    outcome: str | None = None
    pack_revision: int | None = None
    model: str | None = None
    since: str | None = None
    until: str | None = None
    after_seq: int = 0
    limit: int = 100


class AuditIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, rows: list[tuple[int, bytes]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [_row(seq, data) for seq, data in rows],
            )

    def size(self) -> int:
        """How many leading stream sequences are indexed without a gap."""
        row = self._db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM records").fetchone()
        return int(row[1]) if row[0] == row[1] else int(row[0])

    def search(self, query: Query) -> list[int]:
        sql = "SELECT seq FROM records WHERE seq > ?"
        params: list[Any] = [query.after_seq]
        for name in ("person", "agent", "outcome", "pack_revision", "model"):
            value = getattr(query, name)
            if value is not None:
                sql += f" AND {name} = ?"
                params.append(value)
        if query.since is not None:
            sql += " AND ts >= ?"
            params.append(query.since)
        if query.until is not None:
            sql += " AND ts < ?"
            params.append(query.until)
        sql += " ORDER BY seq LIMIT ?"
        params.append(query.limit)
        return [int(seq) for (seq,) in self._db.execute(sql, params)]

    def seqs_of_kind(self, kind: str, up_to: int) -> list[int]:
        rows = self._db.execute(
            "SELECT seq FROM records WHERE kind = ? AND seq <= ? ORDER BY seq", (kind, up_to)
        )
        return [int(seq) for (seq,) in rows]

    def leaves(self, size: int) -> list[bytes]:
        rows = self._db.execute("SELECT leaf FROM records WHERE seq <= ? ORDER BY seq", (size,))
        return [bytes(leaf) for (leaf,) in rows]


def _row(seq: int, data: bytes) -> tuple[Any, ...]:
    try:
        payload = envelope.decode(data).payload_dict()
    except SignatureError:
        payload = {"kind": "unreadable"}
    pack = payload.get("pack")
    pack = pack if isinstance(pack, dict) else {}
    return (
        seq,
        payload.get("id"),
        payload.get("ts"),
        payload.get("kind", "decision"),
        payload.get("replica"),
        payload.get("person"),
        payload.get("agent"),
        payload.get("outcome"),
        pack.get("revision"),
        payload.get("model"),
        merkle.leaf_hash(data),
    )


async def follow(nc: NATS, index: AuditIndex, stop: asyncio.Event) -> None:
    """Keep the index up to date with `RECORDS`, in order, through reconnects."""
    config = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=60)

    async def index_batches() -> None:
        batches = durable_batches(
            nc.jetstream(), subjects.RECORDS_STREAM, DURABLE, config, stop, BATCH
        )
        async for batch in batches:
            index.add([(m.metadata.sequence.stream, m.data) for m in batch])
            await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch

    await keep_running("audit index", index_batches, stop)
