"""The cross-region view store: SQLite by default, PostgreSQL with a DSN
(aggregator.database); the same schema, migrations and answers on both.

It is the writer (aggregator.ingest: summaries and checkpoints in, as the witness
judges them) and the query side (aggregator.queries: what the API and the web page
read) over one database (aggregator.schema opens and migrates it). The consumer holds
a `ViewStore`; the API and the page need only its `ViewQueries` half.
"""

from __future__ import annotations

from pathlib import Path

from aggregator.ingest import ViewWriter
from aggregator.queries import ViewQueries
from aggregator.schema import BUCKETS, COLUMNS, GROUPABLE, MIGRATIONS, open_view

__all__ = [
    "BUCKETS",
    "COLUMNS",
    "GROUPABLE",
    "MIGRATIONS",
    "ViewQueries",
    "ViewStore",
    "ViewWriter",
]


class ViewStore(ViewWriter, ViewQueries):
    """`path`: SQLite file; `dsn`: PostgreSQL instead. Migrations are applied at start."""

    def __init__(self, path: Path | None = None, dsn: str | None = None) -> None:
        super().__init__(open_view(path, dsn))

    @property
    def kind(self) -> str:
        return self._db.kind

    def close(self) -> None:
        self._db.close()
