"""Red team, NATS: with each role's real credentials, every way to destroy or reach
evidence it has no business with is refused, and the streams are untouched after.

The rest of the suite is the other half: every process of the topology runs on exactly
these credentials (cordon_dev.stack), so each role's legitimate work still succeeds.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cordon.nats import Endpoint
from cordon_dev.stack import DevStack
from tests.helpers import nats_as

REGIONS = ("eu-west", "us-east")
DOMAINS = ("central", *REGIONS)
STREAMS = {
    ("region", "audit"): ("RECORDS",),
    ("region", "xr"): ("SUMMARY", "KV_policy", "KV_applied"),
    ("central", "xr"): ("POLICY", "AUDIT_SUMMARY", "KV_replicator", "KV_replicator_lease"),
}
DURABLES = {  # stream -> consumers the runtime roles own
    "RECORDS": ("sealer", "audit-index"),
    "POLICY": tuple(f"replicate-{region}" for region in REGIONS),
    "AUDIT_SUMMARY": ("aggregator",),
}
OWNED = {  # role -> the consumers that are its own
    "sealer": ("sealer",),
    "audit-api": ("audit-index",),
    "aggregator": ("aggregator",),
    "replicator": DURABLES["POLICY"],
}
UPDATE = json.dumps({"name": "X", "subjects": ["x.>"], "max_age": 1}).encode()


@dataclass(frozen=True)
class Identity:
    role: str
    place: str  # "central" or a region
    account: str  # "audit" or "xr"
    endpoint: dict[str, str]  # as endpoints.json gives it

    @property
    def domain(self) -> str:
        return self.place

    @property
    def kind(self) -> str:
        return "central" if self.place == "central" else "region"

    def __str__(self) -> str:
        return f"{self.place}/{self.account}/{self.role}"


def runtime_identities(endpoints: dict[str, Any]) -> Iterator[Identity]:
    described = endpoints["nats"]
    for role, endpoint in described["central"].items():
        if role != "provision":
            yield Identity(role, "central", "xr", endpoint)
    for region, accounts in described["regions"].items():
        for account, roles in accounts.items():
            for role, endpoint in roles.items():
                if role != "provision":
                    yield Identity(role, region, account, endpoint)


def forbidden(who: Identity) -> list[tuple[str, bytes]]:
    """(subject, body) of every request `who` must not get an answer to."""
    attempts: list[tuple[str, bytes]] = []
    own = STREAMS[(who.kind, who.account)]
    for stream in own:
        attempts += [
            (f"$JS.API.STREAM.DELETE.{stream}", b""),
            (f"$JS.API.STREAM.PURGE.{stream}", b"{}"),
            (f"$JS.API.STREAM.UPDATE.{stream}", UPDATE.replace(b'"X"', f'"{stream}"'.encode())),
            (f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}'),
            (f"$JS.API.STREAM.CREATE.EVIL_{stream}", b'{"name": "EVIL", "subjects": ["e.>"]}'),
        ]
        for durable in DURABLES.get(stream, ()):
            if durable in OWNED.get(who.role, ()):
                continue
            attempts += [
                (f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}", b'{"batch": 1}'),
                (f"$JS.API.CONSUMER.DELETE.{stream}.{durable}", b""),
            ]
    for domain in DOMAINS:
        if domain == who.domain:
            continue
        others = STREAMS[("central" if domain == "central" else "region", "xr")]
        for stream in (*others, "RECORDS"):
            for action in ("DELETE", "PURGE", "INFO"):
                attempts.append((f"$JS.{domain}.API.STREAM.{action}.{stream}", b"{}"))
            attempts.append((f"$JS.{domain}.API.DIRECT.GET.{stream}", b'{"seq": 1}'))
    if who.kind == "region" and who.account == "xr":
        other = next(r for r in REGIONS if r != who.place)
        attempts += [  # no policy from a region: not into central's stream, no bucket
            ("$KV.policy.pack.default", b"planted"),
            (f"$JS.{other}.API.$KV.policy.pack.default", b"planted"),
            ("cordon.policy.default", b"planted"),
            (f"cordon.sum.{other}.gw-1", b"{}"),
        ]
    if who.kind == "central" and who.role != "replicator":
        attempts += [  # no one but a replicator takes the lease or writes its state
            ("$KV.replicator_lease.active", b'{"holder": "intruder"}'),
            ("$KV.replicator.lease", b"planted"),
        ]
        if who.role != "publisher":  # `cordon policy halt|resume` is the publisher's
            attempts.append(("$KV.replicator.rollout.default", b'{"halted": null}'))
    return attempts


async def _answer(nc: NATS, subject: str, body: bytes) -> dict[str, Any] | None:
    """The JSON answer to a request, or None if none came (refused, or nobody listens)."""
    try:
        reply = await nc.request(subject, body, timeout=1.5)
    except (NatsTimeoutError, NoRespondersError):
        return None
    try:
        answer: dict[str, Any] = json.loads(reply.data or b"{}")
    except ValueError:
        return {"raw": reply.data.decode(errors="replace")}
    return answer


async def _state(endpoints: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(first seq, last seq) of every stream, read with setup's credentials."""
    places = [("central", endpoints["nats"]["central"]["provision"], STREAMS[("central", "xr")])]
    for region in REGIONS:
        urls = endpoints["nats"]["regions"][region]
        places.append((region, urls["audit"]["provision"], STREAMS[("region", "audit")]))
        places.append((region, urls["xr"]["provision"], STREAMS[("region", "xr")]))
    state = {}
    for place, url, names in places:
        nc = await nats_as(url)
        try:
            for name in names:
                info = await nc.jetstream().stream_info(name)
                state[f"{place}/{name}"] = (info.state.first_seq, info.state.last_seq)
        finally:
            await nc.close()
    return state


@pytest.mark.timeout(120)
async def test_no_runtime_role_can_destroy_or_reach_what_is_not_its_own(
    endpoints: dict[str, Any],
) -> None:
    before = await _state(endpoints)
    answered: list[str] = []
    violations: list[str] = []

    async def attack(who: Identity) -> None:
        async def on_error(exc: Exception) -> None:
            if "permissions violation" in str(exc).lower():
                violations.append(f"{who}: {exc}")

        nc = await nats_as(who.endpoint, error_cb=on_error)
        try:
            attempts = forbidden(who)
            answers = await asyncio.gather(*(_answer(nc, s, b) for s, b in attempts))
            for (subject, _), answer in zip(attempts, answers, strict=True):
                if answer is not None and "error" not in answer:
                    answered.append(f"{who} got an answer to {subject}: {answer}")
            for subject, body in attempts:  # plain publishes, no reply wanted
                if not subject.startswith("$JS"):
                    await nc.publish(subject, body)
            await nc.flush()
        finally:
            await nc.close()

    identities = list(runtime_identities(endpoints))
    assert {who.role for who in identities} >= {
        "gateway",
        "sealer",
        "audit-api",
        "replicator",
        "aggregator",
        "publisher",
    }
    await asyncio.gather(*(attack(who) for who in identities))
    assert not answered, "\n".join(answered)
    assert len(violations) >= len(identities)  # refused by permission, not by luck
    after = await _state(endpoints)
    for stream, (first, last) in before.items():
        assert stream in after, f"{stream} is gone"
        refreshed = stream.endswith(("KV_applied", "KV_replicator_lease"))  # history 1
        assert after[stream][0] <= max(first, 1) or refreshed, stream
        assert after[stream][1] >= last, f"{stream} lost messages"
    assert after["central/POLICY"] == before["central/POLICY"], "a region published a pack"


@pytest.mark.parametrize(
    ("who", "subject", "body"),
    [
        (("regions", "eu-west", "audit", "gateway"), "$JS.API.STREAM.INFO.RECORDS", b""),
        (("regions", "eu-west", "audit", "sealer"), "$JS.API.STREAM.INFO.RECORDS", b""),
        (("regions", "eu-west", "audit", "audit-api"), "$JS.API.STREAM.INFO.RECORDS", b""),
        (("regions", "eu-west", "xr", "gateway"), "$JS.API.STREAM.INFO.KV_policy", b""),
        (("regions", "eu-west", "xr", "sealer"), "$JS.API.STREAM.INFO.SUMMARY", b""),
        (("regions", "eu-west", "xr", "audit-api"), "$JS.API.STREAM.INFO.SUMMARY", b""),
        (("central", "aggregator"), "$JS.API.STREAM.INFO.AUDIT_SUMMARY", b""),
        (("central", "publisher"), "$JS.API.STREAM.INFO.POLICY", b""),
        (
            ("central", "replicator"),
            "$JS.eu-west.API.STREAM.MSG.GET.KV_policy",
            b'{"last_by_subj": "$KV.policy.heartbeat"}',
        ),
    ],
)
async def test_each_role_still_reaches_what_its_work_needs(
    endpoints: dict[str, Any], who: tuple[str, ...], subject: str, body: bytes
) -> None:
    described = endpoints["nats"]
    url = described["central"][who[1]] if who[0] == "central" else None
    if url is None:
        _, region, account, role = who
        url = described["regions"][region][account][role]
    nc = await nats_as(url)
    try:
        answer = await _answer(nc, subject, body)
    finally:
        await nc.close()
    assert answer is not None and "error" not in answer, answer


@pytest.mark.parametrize(
    ("where", "stream"),
    [
        (("regions", "eu-west", "audit"), "RECORDS"),
        (("regions", "eu-west", "xr"), "SUMMARY"),
        (("central",), "AUDIT_SUMMARY"),
    ],
)
async def test_the_evidence_streams_refuse_purges_even_to_setup(
    endpoints: dict[str, Any], where: tuple[str, ...], stream: str
) -> None:
    described = endpoints["nats"]
    if where[0] == "central":
        url = described["central"]["provision"]
    else:
        url = described["regions"][where[1]][where[2]]["provision"]
    nc = await nats_as(url)
    try:
        purged = await _answer(nc, f"$JS.API.STREAM.PURGE.{stream}", b"{}")
        deleted = await _answer(nc, f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}')
        config = (await nc.jetstream().stream_info(stream)).config
    finally:
        await nc.close()
    assert purged is not None and "error" in purged, purged
    assert deleted is not None and "error" in deleted, deleted
    assert config.deny_purge and config.deny_delete


async def test_a_regions_server_cannot_send_packs_or_other_regions_summaries_to_central(
    endpoints: dict[str, Any],
) -> None:
    # eu-west's most powerful XR identity (setup's), as if the region's server were
    # someone else's: central's leaf permissions stop what its users' lists would not.
    before = await _state(endpoints)
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["xr"]["provision"])
    try:
        await nc.publish("cordon.policy.default", b"planted by a region")
        await nc.publish("cordon.sum.us-east.gw-1", b'{"region": "us-east"}')
        await nc.publish("cordon.ckpt.us-east", b"{}")
        await nc.flush()
    finally:
        await nc.close()
    await asyncio.sleep(0.5)
    after = await _state(endpoints)
    assert after["central/POLICY"] == before["central/POLICY"]
    assert after["us-east/SUMMARY"][1] - before["us-east/SUMMARY"][1] < 50  # its own flow only
    nc = await nats_as(endpoints["nats"]["regions"]["us-east"]["xr"]["provision"])
    try:
        last = await nc.jetstream().get_last_msg("SUMMARY", "cordon.sum.us-east.gw-1")
    finally:
        await nc.close()
    assert b"planted" not in (last.data or b"") and last.data != b'{"region": "us-east"}'


def _stranger(tmp_path: Path) -> Path:
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    path = tmp_path / "stranger.nk"
    path.write_bytes(seed)
    return path


@pytest.mark.parametrize("place", DOMAINS)
async def test_only_a_known_nkey_logs_in(
    endpoints: dict[str, Any], place: str, tmp_path: Path
) -> None:
    described = endpoints["nats"]
    if place == "central":
        own, foreign = described["central"]["publisher"], described["regions"]["eu-west"]["xr"]
    else:
        other = next(r for r in REGIONS if r != place)
        own, foreign = (
            described["regions"][place]["audit"]["gateway"],
            described["regions"][other]["audit"],
        )
    url = own["url"]
    refused = {
        "no credentials": Endpoint(url),
        "a seed this server never heard of": Endpoint(url, _stranger(tmp_path)),
        "another place's identity": Endpoint(url, Path(foreign["gateway"]["nkey_seed_file"])),
        "another place's setup identity": Endpoint(
            url, Path(foreign["provision"]["nkey_seed_file"])
        ),
    }
    for why, endpoint in refused.items():
        with pytest.raises(NatsError, match="Authorization Violation"):
            nc = await endpoint.connect(allow_reconnect=False, connect_timeout=2)
            await nc.close()
            pytest.fail(f"{place} let in {why}")
    nc = await nats_as(own, allow_reconnect=False, connect_timeout=2)
    assert nc.is_connected
    await nc.close()


SEED = re.compile(rb"S[UA][A-Z2-7]{56}")


def test_no_seed_sits_in_a_server_config_or_endpoints_json(stack: DevStack) -> None:
    """Server configs hold public keys; the one seed a region's config holds is its own
    leaf identity's. endpoints.json names seed files and holds none."""
    assert stack.topology is not None
    confs = {path.stem: path.read_bytes() for path in (stack.root / "run" / "nats").glob("*.conf")}
    assert set(confs) == {"central", *REGIONS}
    assert SEED.findall(confs["central"]) == []
    for region in REGIONS:
        leaf_seed = (stack.root / "run" / "nkeys" / f"leaf-{region}.nk").read_bytes().strip()
        assert SEED.findall(confs[region]) == [leaf_seed]
    assert SEED.findall((stack.root / "endpoints.json").read_bytes()) == []
    assert b"password:" not in b"".join(confs.values())  # no user logs in with one
