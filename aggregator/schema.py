"""The cross-region view's schema, shared by its writer (aggregator.ingest) and its
query side (aggregator.queries): the summary columns, what the view may be counted by,
and the migrations every database it opens is brought up to.

`summaries` holds one row per summary the witness accepted: the sealer's own, as
authenticated by a signed checkpoint's summary chain. Summaries wait in `candidates`
until their checkpoint is judged; whatever the chain does not reach is dropped there
and counted, so nothing forged is ever counted or shown.
"""

from __future__ import annotations

from pathlib import Path

from aggregator.database import Database, open_database

__all__ = [
    "BUCKETS",
    "COLUMNS",
    "ENFORCEMENT_COLUMNS",
    "GROUPABLE",
    "INTEGER_COLUMNS",
    "MIGRATIONS",
    "SHOWN",
    "STORED",
    "OnDatabase",
    "open_view",
]

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
# What the view may be counted by (column -> SQL), and time buckets (ISO prefix length).
GROUPABLE = {
    c: c
    for c in (
        "region",
        "outcome",
        "pack_name",
        "pack_revision",
        "model",
        "classification",
        "tool_server",
        "tool",
    )
}
BUCKETS = {"minute": 16, "hour": 13, "day": 10}
_COLUMN_DEFS = ", ".join(f"{c} {'BIGINT' if c in INTEGER_COLUMNS else 'TEXT'}" for c in COLUMNS)
# Applied in order, each once (aggregator.database keeps the number applied so far).
MIGRATIONS = (
    f"""
CREATE TABLE IF NOT EXISTS summaries (
    {_COLUMN_DEFS},
    PRIMARY KEY (region, stream_seq)
);
CREATE INDEX IF NOT EXISTS summaries_region_ts ON summaries (region, ts);
CREATE TABLE IF NOT EXISTS checkpoints (
    region TEXT NOT NULL, size BIGINT NOT NULL, root TEXT NOT NULL, time_ms BIGINT,
    signed TEXT NOT NULL, PRIMARY KEY (region, size)
);
CREATE TABLE IF NOT EXISTS witnessed (
    region TEXT NOT NULL, size BIGINT NOT NULL, verified BIGINT NOT NULL, reason TEXT,
    cosignature TEXT, PRIMARY KEY (region, size)
);
CREATE TABLE IF NOT EXISTS witness_state (region TEXT PRIMARY KEY, state TEXT NOT NULL);
""",
    """
ALTER TABLE summaries ADD COLUMN link TEXT;
ALTER TABLE witnessed ADD COLUMN rejected BIGINT NOT NULL DEFAULT 0;
CREATE TABLE candidates (
    region TEXT NOT NULL, stream_seq BIGINT NOT NULL, link TEXT NOT NULL,
    prev TEXT NOT NULL, summary TEXT NOT NULL, PRIMARY KEY (region, stream_seq, link)
);
""",
    """
ALTER TABLE summaries ADD COLUMN intent TEXT;
CREATE INDEX summaries_intent ON summaries (intent) WHERE intent IS NOT NULL;
CREATE INDEX summaries_kind ON summaries (kind, region);
""",
    # Tool calls (issue 24): the server and tool as the pack declared them, or
    # `undeclared`; NULL for model calls.
    """
ALTER TABLE summaries ADD COLUMN tool_server TEXT;
ALTER TABLE summaries ADD COLUMN tool TEXT;
""",
    # Where each pack was enforced (gateway, sidecar, sdk; NULL for summaries sealed
    # before they said) and the SDK record a gateway or sidecar record names. The
    # enforcement view (aggregator.queries `enforcement`) finds the agents with SDK
    # records, takes their decisions by region, agent and time, and looks each named
    # SDK record up by its id, and each receipt's earlier uses: four indexes, three of
    # them over SDK records or receipts only.
    """
ALTER TABLE summaries ADD COLUMN enforced_by TEXT;
ALTER TABLE summaries ADD COLUMN sdk_record TEXT;
CREATE INDEX summaries_agent ON summaries (region, agent, ts) WHERE kind = 'decision';
CREATE INDEX summaries_sdk_agent ON summaries (region, agent)
    WHERE kind = 'decision' AND enforced_by = 'sdk';
CREATE INDEX summaries_sdk_id ON summaries (region, id) WHERE enforced_by = 'sdk';
CREATE INDEX summaries_receipt ON summaries (region, sdk_record, stream_seq)
    WHERE sdk_record IS NOT NULL;
""",
)
TOOL_COLUMNS = ("tool_server", "tool")
ENFORCEMENT_COLUMNS = ("enforced_by", "sdk_record")
SHOWN = (*COLUMNS, *TOOL_COLUMNS, *ENFORCEMENT_COLUMNS)  # what a summaries query returns
STORED = (*COLUMNS, "link", "intent", *TOOL_COLUMNS, *ENFORCEMENT_COLUMNS)


def open_view(path: Path | None = None, dsn: str | None = None) -> Database:
    """The view's database (SQLite at `path`, or PostgreSQL at `dsn`), migrated."""
    db = open_database(path, dsn)
    db.migrate(MIGRATIONS)
    return db


class OnDatabase:
    """What the writer and the query side share: one open view database."""

    def __init__(self, db: Database) -> None:
        self._db = db
