"""The cross-region API on the real topology, with the central view on SQLite and on
PostgreSQL: counts match what was sent, pages and errors are the API's, and nothing of
a prompt or a raw identity is anywhere in the central store."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DEV_API_KEY, DevStack
from tests.helpers import eventually, metric, stored_record

REGIONS = ("eu-west", "us-east")
SENT = {"eu-west": 3, "us-east": 2}


# The parameter picks the topology: tests/conftest.py groups each with its own.
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def view(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The topology to look at: the shared one (SQLite) or one on PostgreSQL."""
    stack: DevStack = request.getfixturevalue("stack" if request.param == "sqlite" else "pg_stack")
    endpoints: dict[str, Any] = json.loads((stack.root / "endpoints.json").read_text())
    database = (
        request.getfixturevalue("pg_schema")
        if request.param == "postgresql"
        else (stack.root / "state" / "aggregator.sqlite3", None)
    )
    return {"stack": stack, "endpoints": endpoints, "kind": request.param, "db": database}


def _get(view: dict[str, Any], path: str, **params: Any) -> httpx.Response:
    endpoints = view["endpoints"]
    token = endpoints["tokens"]["auditor"]
    return httpx.get(
        endpoints["aggregator"] + path,
        params=params,
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )


def _send(endpoints: dict[str, Any], region: str, marker: str) -> dict[str, Any]:
    """One chat call; the region's record of it."""
    answer = httpx.post(
        endpoints["gateways"][region] + "/v1/chat/completions",
        headers={"authorization": f"Bearer {DEV_API_KEY}"},
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": f"hi {marker}"}]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return {"seq": int(answer.headers["x-cordon-record-seq"]), "region": region}


@pytest.mark.timeout(120)
async def test_counts_match_what_was_sent_per_region_and_outcome(view: dict[str, Any]) -> None:
    endpoints = view["endpoints"]
    since = datetime.now(UTC).isoformat()
    marker = f"zebra-{secrets.token_hex(4)}"
    sent = [_send(endpoints, r, marker) for r, n in SENT.items() for _ in range(n)]
    expected: dict[tuple[str, str], int] = {}
    for call in sent:
        record = await stored_record(endpoints, call["region"], call["seq"])
        key = (call["region"], record["outcome"])
        expected[key] = expected.get(key, 0) + 1

    def counted() -> dict[tuple[str, str], int] | None:
        items = _get(view, "/v1/counts", since=since).json()["items"]
        found = {(i["region"], i["outcome"]): i["count"] for i in items}
        return found if found == expected else None

    eventually(counted, timeout=60, interval=0.5)
    by_model = _get(view, "/v1/counts", since=since, by=["model", "pack_revision"]).json()
    assert sum(i["count"] for i in by_model["items"]) == len(sent)
    assert {i["model"] for i in by_model["items"]} == {"mock-gpt"}

    # Every group, one page at a time.
    groups, cursor = [], None
    while True:
        params: dict[str, Any] = {"since": since, "by": ["region"], "bucket": "minute", "limit": 1}
        page = _get(view, "/v1/counts", **params, **({"cursor": cursor} if cursor else {})).json()
        groups += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sum(g["count"] for g in groups) == len(sent)

    fresh = _get(view, "/v1/freshness").json()["regions"]
    for region in REGIONS:
        assert fresh[region]["newest_summary_ts"] >= since
        assert fresh[region]["newest_verified_checkpoint"]["size"] >= 1

    _assert_nothing_of_the_content_is_central(view, marker)
    page = httpx.get(endpoints["aggregator"] + "/metrics").text
    for region in REGIONS:
        newest = metric(page, "cordon_aggregator_newest_summary_timestamp_seconds", region=region)
        assert newest is not None and newest >= datetime.fromisoformat(since).timestamp()
    assert metric(page, "cordon_aggregator_pending_messages") is not None


@pytest.mark.timeout(120)
async def test_after_central_was_down_the_view_converges_without_double_counts(
    view: dict[str, Any],
) -> None:
    stack, endpoints = view["stack"], view["endpoints"]
    since = datetime.now(UTC).isoformat()
    aggregator = stack.processes["aggregator"]
    aggregator.stop()
    try:
        sent = [_send(endpoints, r, "while central was down") for r in REGIONS for _ in range(2)]
    finally:
        aggregator.start()
        wait_for_http(endpoints["aggregator"] + "/healthz", 30, aggregator.proc)
    sent += [_send(endpoints, r, "after") for r in REGIONS]

    def total() -> int:
        items = _get(view, "/v1/counts", since=since, by=["region"]).json()["items"]
        return sum(i["count"] for i in items)

    eventually(lambda: total() == len(sent), timeout=60, interval=0.5)
    time.sleep(2)  # later checkpoints settle nothing twice
    assert total() == len(sent)


def _assert_nothing_of_the_content_is_central(view: dict[str, Any], marker: str) -> None:
    """Every column of every table of the central store, as text: no prompt, no raw id."""
    values = _every_value(view)
    assert values, "the store is empty?"
    leaks = [v for v in values if marker in v or "dev-app" in v]
    assert not leaks, leaks[:3]


def _every_value(view: dict[str, Any]) -> list[str]:
    if view["kind"] == "sqlite":
        path, _ = view["db"]
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return [str(v) for t in tables for row in db.execute(f"SELECT * FROM {t}") for v in row]
        finally:
            db.close()
    import psycopg

    dsn, schema = view["db"]
    with psycopg.connect(dsn) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        return [str(v) for t in tables for row in conn.execute(f"SELECT * FROM {t}") for v in row]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/counts", {"by": "prompt"}),
        ("/v1/counts", {"cursor": "not-a-cursor"}),
        ("/v1/counts", {"bucket": "week"}),
        ("/v1/counts", {"since": "yesterday"}),
        ("/v1/people", {}),
        ("/v1/people", {"pseudonym": "x", "cursor": "eyJyZWdpb24iOiAxfQ"}),
    ],
)
def test_bad_queries_are_refused_with_the_reason(
    view: dict[str, Any], path: str, params: dict[str, Any]
) -> None:
    answer = _get(view, path, **params)
    assert answer.status_code in (400, 422), answer.text
    assert "detail" in answer.json()


def test_the_cross_region_view_needs_an_auditor_or_sre_token(view: dict[str, Any]) -> None:
    endpoints = view["endpoints"]
    for path in ("/v1/counts", "/v1/freshness", "/v1/gaps", "/v1/people?pseudonym=x"):
        assert httpx.get(endpoints["aggregator"] + path).status_code == 401
        admin = {"authorization": f"Bearer {endpoints['tokens']['admin']}"}
        assert httpx.get(endpoints["aggregator"] + path, headers=admin).status_code == 403
