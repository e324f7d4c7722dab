"""The view store on both databases it runs on: SQLite (a file per test) and
PostgreSQL (a schema per test) from CORDON_TEST_PG_DSN, else the server this machine
kind runs on 127.0.0.1:5432 (database `test`), else testcontainers' PostgreSQL when a
Docker daemon answers; without any, the PostgreSQL half skips and says which was
missing."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aggregator.store import ViewStore
from cordon_dev.stack import DevStack

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/test"
OpenStore = Callable[[], ViewStore]


def _reachable(dsn: str) -> str | None:
    """None if a connection works, else why not."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{exc}".strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    explicit = os.environ.get("CORDON_TEST_PG_DSN")
    if explicit:
        why = _reachable(explicit)
        if why:
            pytest.fail(f"CORDON_TEST_PG_DSN is set but unusable: {why}")
        yield explicit
        return
    why_local = _reachable(LOCAL_DSN)
    if why_local is None:
        yield LOCAL_DSN
        return
    try:
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]

        container = PostgresContainer("postgres:16-alpine", driver=None)
        container.start()
    except Exception as exc:  # no package, no daemon, no image
        pytest.skip(
            "PostgreSQL: CORDON_TEST_PG_DSN unset; 127.0.0.1:5432 unusable"
            f" ({why_local}); testcontainers unavailable ({type(exc).__name__}: {exc})"
        )
    try:
        yield container.get_connection_url()
    finally:
        container.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens (and re-opens, for restarts) one fresh view store on the database."""
    if request.param == "sqlite":
        yield lambda: ViewStore(tmp_path / "view.sqlite3")
        return
    import psycopg
    from psycopg.conninfo import make_conninfo

    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield lambda: ViewStore(dsn=make_conninfo(dsn, options=f"-csearch_path={schema}"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="package")
def pg_schema(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """(DSN bound to a fresh schema, schema name) for a whole topology's central view."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"topology_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(postgres_dsn, options=f"-csearch_path={schema}"), schema
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="package")  # stopped once tests/aggregator is done
def pg_stack(
    pg_schema: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    """The whole topology with the central view on PostgreSQL."""
    dev = DevStack(tmp_path_factory.mktemp("cordon-pg"), aggregator_store_dsn=pg_schema[0])
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
