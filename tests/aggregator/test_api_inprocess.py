"""The aggregator's API and web page in this process (httpx's ASGI transport), over a
view store in a temporary SQLite file fed with a region's summaries and checkpoint as
the consumer feeds it: what an auditor or SRE asks for comes back, and what is refused
is refused with the status the document names."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.api import ViewState, create_app
from aggregator.store import ViewStore
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes
from cordon.tokens import Tokens, grant_settings, new_token
from tests.aggregator.regional_log import REGION, Log
from tests.aggregator.test_store import Central

TOKENS = {role: new_token() for role in ("auditor", "sre", "admin")}
GRANTS = Tokens.from_settings(
    [grant_settings(role, token, [role], ["*"]) for role, token in TOKENS.items()]
)


def _state(store: ViewStore, witness_key: SigningKey | None = None) -> ViewState:
    return ViewState(
        view=store,
        tokens=GRANTS,
        regions=(REGION, "us-east"),
        witness_key=witness_key,
        audit_apis={REGION: "https://audit.eu-west.example"},
    )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    """One region's log of two enrolments and five decisions, all vouched for."""
    log = Log()
    log.grow(5)
    fed = Central(lambda: ViewStore(tmp_path / "view.sqlite3"), log)
    fed.consume(*fed.summaries(*log.bodies), fed.checkpoint())
    try:
        yield fed
    finally:
        fed.store.close()


def _client(state: ViewState, role: str | None = "auditor") -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {TOKENS[role]}"} if role else {}
    transport = httpx.ASGITransport(app=create_app(state))
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@pytest.fixture
async def client(central: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_state(central.store)) as http:
        yield http


async def test_summaries_come_back_in_sequence_order_page_by_page(
    central: Central, client: httpx.AsyncClient
) -> None:
    first = (await client.get("/v1/summaries", params={"limit": 4})).json()
    rest = (await client.get("/v1/summaries", params={"cursor": first["next_cursor"]})).json()
    shown = [s["id"] for s in first["items"] + rest["items"]]
    assert shown == [c.summary["id"] for c in central.log.published]
    assert rest["next_cursor"] is None
    assert all("content" not in s and "prompt" not in s for s in first["items"])


async def test_counts_freshness_and_the_witness_verdict(
    central: Central, client: httpx.AsyncClient
) -> None:
    counted = await client.get("/v1/counts", params={"by": ["region"], "until": "2027-01-01"})
    assert counted.json()["items"] == [{"region": REGION, "count": 5}]
    window = {"since": "2026-12-02T10:00:03Z", "until": "2026-12-02T10:00:05+00:00"}
    assert (await client.get("/v1/counts", params={**window, "by": "region"})).json()["items"] == [
        {"region": REGION, "count": 2}
    ]
    fresh = (await client.get("/v1/freshness")).json()["regions"][REGION]
    assert fresh["summaries"] == 7 and fresh["newest_verified_checkpoint"]["size"] == 7
    verdict = (await client.get(f"/v1/witness/{REGION}/checkpoints/7")).json()
    assert verdict["verified"] is True
    gaps = (await client.get("/v1/gaps")).json()
    assert gaps["gaps"] == [] and gaps["failed_checkpoints"] == {REGION: [], "us-east": []}


@pytest.mark.parametrize(
    ("params", "says"),
    [({"until": "0.5"}, "ISO 8601"), ({"since": "1733133600"}, "ISO 8601"), ({"by": "x"}, "")],
)
async def test_a_time_is_a_written_date_never_a_bare_number(
    client: httpx.AsyncClient, params: dict[str, str], says: str
) -> None:
    refused = await client.get("/v1/counts", params=params)
    assert refused.status_code == 422 and says in refused.text


async def test_times_beyond_what_utc_holds_lie_before_or_after_everything(
    client: httpx.AsyncClient,
) -> None:
    early = {"since": "0001-01-01T00:00:00+05:00", "by": ["region"]}
    assert (await client.get("/v1/counts", params=early)).json()["items"][0]["count"] == 5
    late = {"since": "9999-12-31T23:59:59-05:00"}
    assert (await client.get("/v1/counts", params=late)).json()["items"] == []


async def test_what_is_not_there_is_a_404_and_a_witness_key_is_shown(central: Central) -> None:
    async with _client(_state(central.store)) as client:
        assert (await client.get("/v1/witness/key")).status_code == 404
        missing = await client.get(f"/v1/witness/{REGION}/checkpoints/99")
        assert missing.status_code == 404 and "has not judged" in missing.json()["detail"]
    key = SigningKey.generate()
    async with _client(_state(central.store, key)) as client:
        shown = (await client.get("/v1/witness/key")).json()
        assert shown["public_key"] == public_bytes(key.public_key).hex()


async def test_only_auditors_and_sres_get_in(central: Central) -> None:
    for role, status in ((None, 401), ("admin", 403), ("sre", 200)):
        async with _client(_state(central.store), role) as client:
            answer = await client.get("/v1/freshness")
            assert answer.status_code == status, (role, answer.text)
            if status == 401:
                assert answer.headers["www-authenticate"] == "Bearer"


async def _overview_row(client: httpx.AsyncClient, region: str) -> list[str]:
    """The cells of `region`'s row on the signed-in overview page."""
    signed = await client.post("/ui/login", data={"token": TOKENS["sre"]})
    assert signed.status_code == 303
    page = (await client.get("/ui/")).text
    row = re.search(rf'<tr class="region" data-region="{region}">(.*?)</tr>', page)
    assert row is not None, page
    return re.findall(r"<td>(.*?)</td>", row.group(1))


async def test_a_region_of_enrolments_only_shows_when_its_newest_summary_is(
    tmp_path: Path,
) -> None:
    """Three summaries, all enrolments (a region before its first call): the page
    showed "newest summary: never", as enrolment records carry no `ts`; the time the
    regional key signed the newest enrolment is that summary's time."""
    log = Log()
    log.records.append(enrol(log.regional, REGION, "audit-api", SigningKey.generate()))
    log.published.append(log._publish(3))
    fed = Central(lambda: ViewStore(tmp_path / "view.sqlite3"), log)
    fed.consume(*fed.summaries(*log.bodies), fed.checkpoint())
    async with _client(_state(fed.store), role=None) as client:
        newest, summaries = (await _overview_row(client, REGION))[2:4]
        assert summaries == "3"
        assert re.fullmatch(r"\d+ s ago", newest), newest
    fresh = fed.store.freshness()[REGION]
    shown = datetime.fromisoformat(fresh["newest_summary_ts"])
    assert abs((datetime.now(UTC) - shown).total_seconds()) < 3600
    fed.store.close()


async def test_the_page_shows_each_regions_newest_summary_time(central: Central) -> None:
    async with _client(_state(central.store), role=None) as client:
        cells = await _overview_row(client, REGION)
    assert re.fullmatch(r"\d+ (s|min|h) ago", cells[2]) and cells[3] == "7", cells
    unseen = _state(central.store).regions[1]
    async with _client(_state(central.store), role=None) as client:
        assert (await _overview_row(client, unseen))[2:4] == ["never", "0"]


def _document_statuses(document: dict[str, Any], path: str) -> set[str]:
    return set(document["paths"][path]["get"]["responses"])


async def test_every_data_route_documents_its_refusals(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in document["paths"]:
        if path != "/healthz":
            assert {"401", "403"} <= _document_statuses(document, path), path
    assert "404" in _document_statuses(document, "/v1/witness/key")
    assert "/metrics" not in document["paths"] and "/ui/" not in document["paths"]


async def test_enforcement_answers_per_region_and_pages_agents_with_a_cursor(
    tmp_path: Path,
) -> None:
    """Two SDK-governed agents, one page each; a cursor or a time not in the documented
    form is a 422, as on `/v1/counts`."""
    log = Log()
    sdk = [str(uuid.uuid4()) for _ in range(2)]
    log.add(
        {"id": sdk[0], "agent": "app-1", "enforced_by": "sdk"},
        {"id": sdk[1], "agent": "app-2", "enforced_by": "sdk"},
        {"agent": "app-2", "enforced_by": "gateway", "sdk_record": sdk[1]},
    )
    fed = Central(lambda: ViewStore(tmp_path / "view.sqlite3"), log)
    fed.consume(*fed.summaries(*log.bodies), fed.checkpoint())
    async with _client(_state(fed.store), role="sre") as client:
        first = (await client.get("/v1/enforcement", params={"limit": 1})).json()
        assert first["regions"] == {REGION: {"by_enforced_by": {"sdk": 2, "gateway": 1}}}
        cursor = {"limit": 1, "cursor": first["next_cursor"]}
        second = (await client.get("/v1/enforcement", params=cursor)).json()
        agents = first["agents"] + second["agents"]
        assert [a["sdk_records"] for a in agents] == [1, 1]
        assert sorted(a["gateway_calls_with_receipt"] for a in agents) == [0, 1]
        last = {"limit": 1, "cursor": second["next_cursor"]}
        assert (await client.get("/v1/enforcement", params=last)).json()["next_cursor"] is None
        for bad in ({"cursor": "eu-west.1"}, {"until": "0.5"}, {"limit": "0"}):
            refused = await client.get("/v1/enforcement", params=bad)
            assert refused.status_code == 422, bad
    fed.store.close()
