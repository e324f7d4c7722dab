"""The NATS configs of deploy/nats rendered for central and three regions and booted as
real nats-server processes: every leaf connection up, and on that topology the
residency and least-privilege probes hold — no central or foreign identity reaches a
region's RECORDS, no region reaches another region's domain, and the replicator still
reaches every region's policy bucket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cordon.nats.endpoint import Endpoint
from cordon.nats.provision import provision
from cordon_dev.stack import provision_targets
from cordon_dev.topology import NatsTopology, TopologyPlan, plan

pytestmark = pytest.mark.servers  # central and three regions of real nats-server processes

REGIONS = ("eu-west", "us-east", "ap-south")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TopologyPlan]:
    planned = plan(tmp_path_factory.mktemp("nats-3") / "run", REGIONS)
    servers = NatsTopology(planned)
    try:
        servers.start()
        servers.wait_leafnodes()  # one leaf connection per region, or it raises
        asyncio.run(provision(provision_targets(planned, [])))
        yield planned
    finally:
        servers.stop()


async def _answers(
    asks: list[tuple[Endpoint, str, bytes]],
) -> list[dict[str, object] | None]:
    """Each (who, subject, body) asked at once, one connection per identity."""
    connections: dict[str, NATS] = {}
    for who, _, _ in asks:
        key = str(who.seed_file)
        if key not in connections:
            connections[key] = await who.connect()

    async def ask(who: Endpoint, subject: str, body: bytes) -> dict[str, object] | None:
        try:
            reply = await connections[str(who.seed_file)].request(subject, body, timeout=2)
        except (NatsTimeoutError, NoRespondersError):
            return None
        answer: dict[str, object] = json.loads(reply.data or b"{}")
        return answer

    try:
        return list(await asyncio.gather(*(ask(*each) for each in asks)))
    finally:
        for nc in connections.values():
            await nc.close()


def _refused(answer: dict[str, object] | None) -> bool:
    return answer is None or "error" in answer


@pytest.mark.timeout(120)
async def test_no_one_outside_a_region_reaches_its_records(topology: TopologyPlan) -> None:
    roles = ("replicator", "aggregator", "publisher")
    outsiders = [topology.central_endpoint(role) for role in roles]
    asks = [
        (who, f"$JS.{region}.API.{action}", b'{"seq": 1}')
        for region in REGIONS
        for who in outsiders
        for action in ("STREAM.INFO.RECORDS", "DIRECT.GET.RECORDS")
    ]
    asks += [
        (topology.regions[other].endpoint("xr", "gateway"), f"$JS.{region}.API.{target}", b"")
        for region in REGIONS
        for other in REGIONS
        if other != region
        for target in ("STREAM.INFO.RECORDS", "STREAM.INFO.SUMMARY", "STREAM.INFO.KV_policy")
    ]
    for (_, subject, _), answer in zip(asks, await _answers(asks), strict=True):
        assert _refused(answer), (subject, answer)


@pytest.mark.timeout(120)
async def test_each_role_still_reaches_its_own_work_in_every_region(
    topology: TopologyPlan,
) -> None:
    replicator = topology.central_endpoint("replicator")
    missing_key = b'{"last_by_subj": "$KV.policy.nothing-yet"}'
    asks = [
        (replicator, f"$JS.{region}.API.STREAM.MSG.GET.KV_policy", missing_key)
        for region in REGIONS
    ]
    for answer in await _answers(asks):
        error = answer.get("error") if answer else {"code": "no answer"}
        assert answer is not None and (error is None or error["code"] == 404), answer  # type: ignore[index]
    own = [
        (topology.regions[r].endpoint(account, "sealer"), f"$JS.API.STREAM.INFO.{stream}", b"")
        for r in REGIONS
        for account, stream in (("audit", "RECORDS"), ("xr", "SUMMARY"))
    ]
    assert not any(_refused(answer) for answer in await _answers(own))
