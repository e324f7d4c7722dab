"""The regional audit index: who, what and when for every record, so auditors' queries
read only the records they ask for. It lives in the region (a SQLite file beside the
audit API), holds no content, and is rebuilt from `RECORDS` if lost.

It also keeps the log's Merkle tree: every leaf hash, and the perfect subtrees from
`STORED_LEVEL` up (smaller ones are recomputed from at most 2**STORED_LEVEL leaves),
so an inclusion or consistency proof reads O(log² n) rows whatever the log's size;
and the region's signed checkpoints, so a proof never scans them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from cordon.errors import SignatureError
from cordon.log import checkpoints, envelope, merkle
from cordon.nats import durable_batches, keep_running, stream_seq, subjects

log = logging.getLogger("cordon.audit.index")
DURABLE = "audit-index"
BATCH = 512

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, id TEXT, ts TEXT, kind TEXT, replica TEXT, person TEXT,
    agent TEXT, outcome TEXT, pack_revision INTEGER, model TEXT, leaf BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_person_ts ON records (person, ts);
CREATE INDEX IF NOT EXISTS records_agent_ts ON records (agent, ts);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER, idx INTEGER, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree (one INTEGER PRIMARY KEY CHECK (one = 1), size INTEGER);
CREATE TABLE IF NOT EXISTS checkpoints (
    summary_seq INTEGER PRIMARY KEY, size INTEGER NOT NULL, raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_size ON checkpoints (size);
"""
STORED_LEVEL = 4


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
    kind: str | None = None


class AuditIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Index pages for random people stay cached instead of re-read for every batch.
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.executescript(SCHEMA)
        self._tree = self._restore_tree()

    def close(self) -> None:
        self._db.close()

    def add(self, rows: list[tuple[int, bytes]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [_row(seq, data) for seq, data in rows],
            )
            self._grow()

    def _grow(self) -> None:
        """Extend the tree over every leaf that follows it without a gap."""
        rows = self._db.execute(
            "SELECT seq, leaf FROM records WHERE seq > ? ORDER BY seq", (self._tree.size,)
        )
        nodes: list[tuple[int, int, bytes]] = []
        for seq, leaf in rows:
            if seq != self._tree.size + 1:
                break
            nodes += [n for n in self._tree.append(bytes(leaf)) if n[0] >= STORED_LEVEL]
            if len(nodes) >= 10_000:  # an old index catching up: keep memory flat
                self._db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?)", nodes)
                nodes.clear()
        self._db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?)", nodes)
        self._db.execute("INSERT OR REPLACE INTO tree VALUES (1, ?)", (self._tree.size,))

    def _restore_tree(self) -> merkle.CompactTree:
        row = self._db.execute("SELECT size FROM tree").fetchone()
        size = int(row[0]) if row else 0
        frontier = [self.node(level, i) for level, i in merkle.perfect_subtrees(0, size)]
        return merkle.CompactTree(size, frontier)

    def size(self) -> int:
        """How many leading stream sequences are indexed without a gap (the tree's size)."""
        return self._tree.size

    def node(self, level: int, index: int) -> bytes:
        """`merkle.Nodes`: a perfect subtree of the indexed log."""
        if level >= STORED_LEVEL:
            row = self._db.execute(
                "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
            if row is None:
                raise LookupError(f"the audit index has no subtree {level}/{index} yet")
            return bytes(row[0])
        first, count = index << level, 1 << level
        leaves = [
            bytes(leaf)
            for (leaf,) in self._db.execute(
                "SELECT leaf FROM records WHERE seq > ? AND seq <= ? ORDER BY seq",
                (first, first + count),
            )
        ]
        if len(leaves) < count:
            raise LookupError(f"the audit index has no leaves {first + 1}..{first + count} yet")
        return merkle.root(leaves)

    def search(self, query: Query) -> list[int]:
        sql = "SELECT seq FROM records WHERE seq > ?"
        params: list[Any] = [query.after_seq]
        for name in ("person", "agent", "outcome", "pack_revision", "model", "kind"):
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

    def add_checkpoint(self, summary_seq: int, raw: bytes) -> None:
        size = checkpoints.unverified(raw).size
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?)", (summary_seq, size, raw)
            )

    def last_checkpoint_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(summary_seq), 0) FROM checkpoints").fetchone()
        return int(row[0])

    def latest_checkpoint(self) -> bytes | None:
        row = self._db.execute(
            "SELECT raw FROM checkpoints ORDER BY summary_seq DESC LIMIT 1"
        ).fetchone()
        return bytes(row[0]) if row else None

    def first_checkpoint_covering(self, seq: int) -> bytes | None:
        row = self._db.execute(
            "SELECT raw FROM checkpoints WHERE size >= ? ORDER BY size, summary_seq LIMIT 1",
            (seq,),
        ).fetchone()
        return bytes(row[0]) if row else None

    def checkpoints_below(self, size: int, limit: int) -> list[bytes]:
        """The newest `limit` checkpoints smaller than `size`, oldest first."""
        rows = self._db.execute(
            "SELECT raw FROM checkpoints WHERE size < ? ORDER BY size DESC LIMIT ?", (size, limit)
        ).fetchall()
        return [bytes(raw) for (raw,) in reversed(rows)]


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
    """Keep the index up to date with `RECORDS`, in order, through reconnects. An index
    file that was lost or restored from an older copy is refilled from the stream."""
    config = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=60)

    async def index_batches() -> None:
        batches = durable_batches(
            nc, subjects.RECORDS_STREAM, DURABLE, config, stop, BATCH, have=index.size()
        )
        async for batch in batches:
            index.add([(stream_seq(m), m.data) for m in batch])
            await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch

    await keep_running("audit index", index_batches, stop)


async def refresh_checkpoints(xr: NATS, index: AuditIndex, region: str) -> None:
    """Copy the region's checkpoints published since the last call into the index."""
    js = xr.jetstream()
    subject = subjects.checkpoint_subject(region)
    seq = index.last_checkpoint_seq() + 1
    while True:
        try:
            msg = await js.get_msg(subjects.SUMMARY_STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            return
        seq = msg.seq or seq
        try:
            index.add_checkpoint(seq, msg.data or b"")
        except SignatureError as exc:
            log.warning("skipping unreadable checkpoint at SUMMARY seq %s: %s", seq, exc)
        seq += 1


async def follow_checkpoints(xr: NATS, index: AuditIndex, region: str, stop: asyncio.Event) -> None:
    async def poll() -> None:
        while not stop.is_set():
            await refresh_checkpoints(xr, index, region)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    await keep_running("checkpoint follower", poll, stop)
