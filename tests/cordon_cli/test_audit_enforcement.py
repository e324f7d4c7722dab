"""`cordon audit enforcement` against a served aggregator (uvicorn on loopback, its view
in a temporary SQLite file fed as the consumer feeds it): the table an auditor reads,
and the exit status a CI job acts on when calls went around an in-process SDK."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.api import ViewState, create_app
from aggregator.store import ViewStore
from cordon.tokens import Tokens, grant_settings, new_token
from cordon_cli.audit import BYPASS
from cordon_dev.inprocess import serve_in_loop
from gateway.ledger import summaries
from tests.aggregator.regional_log import REGION, SECRET, Log
from tests.aggregator.test_store import Central
from tests.cordon_cli.test_audit import cordon

TOKEN = new_token()
APP = "billing-app"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Central]]:
    """The aggregator's API over a view of one region, and the region's log feeding it."""
    central = Central(lambda: ViewStore(tmp_path / "view.sqlite3"), Log())
    central.consume(*central.summaries(*central.log.bodies))  # the keys' enrolments
    tokens = Tokens.from_settings([grant_settings("auditor", TOKEN, ["auditor"], ["*"])])
    state = ViewState(view=central.store, tokens=tokens, regions=(REGION,))
    try:
        async with serve_in_loop(create_app(state)) as url:
            yield url, central
    finally:
        central.store.close()


def _feed(central: Central, *records: dict[str, object]) -> None:
    sent = len(central.log.bodies)
    central.log.add(*records)
    central.consume(*central.summaries(*central.log.bodies[sent:]), central.checkpoint())


async def _audit(url: str, *args: str, token: str = TOKEN) -> tuple[int, str, str]:
    done = await asyncio.to_thread(cordon, "enforcement", "--api", url, *args, token=token)
    return done.returncode, done.stdout, done.stderr


async def test_enforcement_exits_3_once_a_call_goes_around_the_sdk(
    served: tuple[str, Central],
) -> None:
    url, central = served
    in_process = str(uuid.uuid4())
    _feed(
        central,
        {"id": in_process, "agent": APP, "enforced_by": "sdk"},
        {"agent": APP, "enforced_by": "gateway", "sdk_record": in_process},
        {"agent": "plain-app", "enforced_by": "gateway"},
    )
    agent = summaries.pseudonym(SECRET, APP)
    assert agent is not None
    status, table, _ = await _audit(url)
    assert status == 0, table
    lines = table.splitlines()
    assert lines[0].split() == ["region", "gateway", "sidecar", "sdk"]
    assert lines[1].split() == [REGION, "2", "0", "1"]
    row = next(line for line in lines if agent in line)
    assert row.split() == [REGION, agent, "1", "1", "0", "0"]
    assert "BYPASS" not in table and "1 agents with SDK records" in table

    _feed(
        central,
        {"agent": APP, "enforced_by": "gateway"},  # around the SDK
        {"agent": APP, "enforced_by": "sidecar", "sdk_record": str(uuid.uuid4())},
    )
    status, table, _ = await _audit(url)
    assert status == BYPASS == 3, table
    row = next(line for line in table.splitlines() if line.startswith(REGION) and agent in line)
    assert row.split() == [REGION, agent, "1", "1", "1", "1"]
    assert f"BYPASS {REGION}/{agent}: 1 gateway or sidecar calls" in table
    assert f"UNMATCHED {REGION}/{agent}: 1 calls" in table
    # A window before the bypass shows none, so a CI job can audit a period of its own.
    first_calls = central.log.published[-3].summary["ts"]
    status, _, _ = await _audit(url, "--until", first_calls)
    assert status == 0
    refused = await _audit(url, token="not-a-token")
    assert refused[0] == 1 and "401" in refused[2]
