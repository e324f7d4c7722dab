"""The view store's database: SQLite (embedded, the default) or PostgreSQL (a DSN).

The store writes one SQL for both: `?` placeholders, `ON CONFLICT` upserts, types both
understand (`TEXT`, `BIGINT`). What differs lives here: placeholders, how the schema
version is kept (SQLite's `user_version`, a `cordon_schema_version` table on
PostgreSQL), connections (one for SQLite; a psycopg pool for PostgreSQL), and how a
database error is reported (`StoreError`, with the cause chained).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from cordon.errors import StoreError

__all__ = ["Database", "Executor", "PostgresDatabase", "SQLiteDatabase", "open_database"]

Row = tuple[Any, ...]


class Executor(Protocol):
    """Statements run inside one transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Database(Protocol):
    kind: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def transaction(self) -> contextlib.AbstractContextManager[Executor]: ...

    def migrate(self, scripts: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class SQLiteDatabase:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        try:
            with self._db:
                yield _SQLiteExecutor(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    def migrate(self, scripts: Sequence[str]) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(scripts[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        self._db.close()


class _SQLiteExecutor:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)


class PostgresDatabase:
    """psycopg 3 with a small pool; every statement's `?` becomes `%s`."""

    kind = "postgresql"

    def __init__(self, dsn: str, pool_size: int = 4) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._errors = (psycopg.Error,)
        try:
            self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=True, timeout=10)
            self._pool.wait(timeout=10)
        except Exception as exc:  # psycopg_pool.PoolTimeout and connection errors
            raise StoreError(f"postgresql: cannot connect: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PostgresExecutor(conn)
        except self._errors as exc:
            raise StoreError(f"postgresql: {exc}") from exc

    def migrate(self, scripts: Sequence[str]) -> None:
        with self.transaction() as tx:
            # One migrator at a time, even with two aggregators starting together.
            tx.execute("SELECT pg_advisory_xact_lock(7261)")
            tx.execute("CREATE TABLE IF NOT EXISTS cordon_schema_version (version BIGINT)")
            rows = tx.execute("SELECT version FROM cordon_schema_version")
            version = int(rows[0][0]) if rows else 0
            if not rows:
                tx.execute("INSERT INTO cordon_schema_version VALUES (0)")
            for number, script in enumerate(scripts[version:], start=version + 1):
                for statement in _statements(script):
                    tx.execute(statement)
                tx.execute("UPDATE cordon_schema_version SET version = ?", (number,))

    def close(self) -> None:
        self._pool.close()


class _PostgresExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._conn.execute(_pg(sql), params or None)
        return list(cursor.fetchall()) if cursor.description is not None else []

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), list(rows))


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def open_database(path: Path | None, dsn: str | None) -> Database:
    """PostgreSQL when a DSN is given, else SQLite at `path`."""
    if dsn:
        return PostgresDatabase(dsn)
    if path is None:
        raise StoreError("the view store needs store_path (SQLite) or store_dsn (PostgreSQL)")
    return SQLiteDatabase(path)
