"""The regional audit API in this process (httpx's ASGI transport), over a region kept in
memory and an index in a temporary SQLite file: what an auditor asks for comes back,
verifies, and is itself recorded; every refusal is the status its document names."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cordon.log import bundle, checkpoints, merkle
from cordon.log.keys import public_bytes
from gateway.ledger.audit_api import MAX_EXPORT, create_app
from tests.gateway.ledger.memory_region import REGION, Region


@pytest.fixture
def region(tmp_path: Path) -> Iterator[Region]:
    made = Region(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def client(region: Region) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(region.state))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=region.headers
    ) as http:
        yield http


async def _access_records(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    found = await client.get("/v1/records/search", params={"kind": "access", "limit": 1000})
    return [item["record"] for item in found.json()["items"]]


async def test_records_come_back_verified_in_stream_order(
    region: Region, client: httpx.AsyncClient
) -> None:
    decided = region.decide(4)
    page = await client.get("/v1/records", params={"after_seq": decided[0] - 1, "limit": 3})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert [i["seq"] for i in items] == decided[:3]
    assert all(i["verified"] and i["kind"] == "decision" for i in items)
    assert [i["record"]["id"] for i in items] == ["r1", "r2", "r3"]
    everything = (await client.get("/v1/records")).json()["items"]
    assert [i["kind"] for i in everything[:3]] == ["enrolment"] * 3


async def test_search_pages_by_person_and_every_read_is_an_access_record(
    region: Region, client: httpx.AsyncClient
) -> None:
    mine = region.decide(3, person="p-7")
    region.decide(2, person="p-8")
    query: dict[str, str | int] = {"person": "p-7", "limit": 2}
    first = (await client.get("/v1/records/search", params=query)).json()
    assert [i["seq"] for i in first["items"]] == mine[:2]
    rest = await client.get(
        "/v1/records/search", params={**query, "after_seq": first["next_after_seq"]}
    )
    assert [i["seq"] for i in rest.json()["items"]] == mine[2:]
    assert rest.json()["next_after_seq"] is None
    region.decide(0)  # index the access records written so far
    accessed = await _access_records(client)
    assert [(a["route"], a["query"].get("person"), a["returned"]) for a in accessed] == [
        ("/v1/records/search", "p-7", 2),
        ("/v1/records/search", "p-7", 1),
    ]
    assert all(a["agent"] == "auditor-eu" and a["roles"] == ["auditor"] for a in accessed)


async def test_an_export_verifies_offline_against_the_regional_key(
    region: Region, client: httpx.AsyncClient
) -> None:
    decided = region.decide(5)
    region.seal()
    exported = await client.get(
        "/v1/export", params={"from_seq": decided[0], "to_seq": decided[-1]}
    )
    assert exported.status_code == 200, exported.text
    report = bundle.verify(exported.json(), public_bytes(region.regional.public_key))
    assert report.ok, report.problems
    assert report.records == 5


async def test_a_record_comes_with_its_inclusion_proof_and_sizes_with_a_consistency_proof(
    region: Region, client: httpx.AsyncClient
) -> None:
    seq = region.decide(3)[1]
    old = region.seal()
    region.decide(4)
    new = region.seal()
    body = (await client.get(f"/v1/records/{seq}/proof")).json()
    stated = checkpoints.unverified(json.dumps(body["checkpoint"]).encode())
    assert stated.size == new
    leaf = merkle.leaf_hash(base64.b64decode(body["data"]))
    proof = [base64.b64decode(p) for p in body["proof"]]
    merkle.verify_inclusion(leaf, seq - 1, stated.size, proof, stated.root)

    answer = await client.get("/v1/consistency", params={"old_size": old, "new_size": new})
    leaves = [merkle.leaf_hash(region.records.messages[s][1]) for s in range(1, new + 1)]
    merkle.verify_consistency(
        old,
        new,
        merkle.root(leaves[:old]),
        merkle.root(leaves),
        [base64.b64decode(p) for p in answer.json()["proof"]],
    )


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/v1/consistency", {"old_size": 5, "new_size": 4}, 400, "old_size is larger"),
        ("/v1/export", {"from_seq": 1, "to_seq": MAX_EXPORT + 1}, 400, "at most 10000"),
        ("/v1/export", {"from_seq": 3, "to_seq": 2}, 400, "to_seq is before"),
        ("/v1/records/99/proof", {}, 409, "no checkpoint covers seq 99"),
        ("/v1/export", {"to_seq": 99}, 409, "no checkpoint covers seq 99"),
    ],
)
async def test_refusals_say_why_with_their_documented_status(
    region: Region,
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    status: int,
    says: str,
) -> None:
    region.decide(2)
    region.seal()
    answer = await client.get(path, params=params)
    assert answer.status_code == status and says in answer.json()["detail"], answer.text
    document = (await client.get("/openapi.json")).json()
    route = path if "proof" not in path else "/v1/records/{seq}/proof"
    assert str(status) in document["paths"][route]["get"]["responses"]


async def test_only_an_auditor_of_this_region_gets_in(region: Region) -> None:
    app = create_app(region.state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as anonymous:
        refused = await anonymous.get("/v1/records")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "bearer token is required" in refused.json()["detail"]
        other = {"authorization": f"Bearer {region.other_region_token}"}
        forbidden = await anonymous.get("/v1/records", headers=other)
        assert forbidden.status_code == 403 and REGION in forbidden.json()["detail"]
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_nothing_is_released_when_the_access_record_cannot_be_committed(
    region: Region, client: httpx.AsyncClient
) -> None:
    region.decide(2)
    region.access.refusing[0] = True
    answer = await client.get("/v1/records")
    assert answer.status_code == 503
    assert answer.json() == {"detail": answer.json()["detail"]}  # the detail, no records
    assert "nothing was released" in answer.json()["detail"]  # what, not which internals
