"""A gateway refuses packs it must not enforce, even when they reach its region.

The bad packs are written straight into eu-west's policy KV through the region's
JetStream domain with central credentials — what a compromised replicator could
do. The replica's own checks are the boundary.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cordon.log.keys import SigningKey
from cordon.packs import signing
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import (
    chat,
    cordon_policy_status,
    eventually,
    find_record,
    nats_as,
    policy_status,
    publish_pack,
    published_revision,
    recent_records,
    sdk_chat,
)

CORDON = [sys.executable, "-m", "cordon_cli"]

PACK = """\
pack: {{name: default}}
policies:
  - {{name: pii-{tag}, type: output_filter, action: redact, patterns: [email]}}
"""


def status(endpoints: dict[str, Any]) -> dict[str, Any]:
    return policy_status(endpoints["gateways"]["eu-west"], endpoints["tokens"]["admin"])


def rejections(endpoints: dict[str, Any]) -> float:
    text = httpx.get(endpoints["gateways"]["eu-west"] + "/metrics").text
    (line,) = [
        row for row in text.splitlines() if row.startswith("cordon_gateway_pack_rejections_total ")
    ]
    return float(line.split()[1])


def answer(endpoints: dict[str, Any]) -> str:
    gateway, key = endpoints["gateways"]["eu-west"], endpoints["api_key"]
    reply = sdk_chat(gateway, key, "mail bob@example.com").parse()
    return str(reply.choices[0].message.content or "")


async def inject(endpoints: dict[str, Any], data: bytes, name: str = "default") -> None:
    # Straight into the region's bucket with the replicator's own credentials: the
    # gateway must refuse what the replicator would never have written.
    nc = await nats_as(endpoints["nats"]["central"]["replicator"])
    try:
        reply = await nc.request(f"$JS.eu-west.API.$KV.policy.pack.{name}", data, timeout=2)
        assert "error" not in json.loads(reply.data), reply.data
    finally:
        await nc.close()


def owner_signed(
    stack: DevStack,
    revision: int,
    *,
    expires_at: int | None = None,
    regions: tuple[str, ...] = ("*",),
    tag: str = "x",
    name: str = "default",
    enabled: bool = True,
) -> bytes:
    document = {
        "pack": {"name": name, "enabled": enabled},
        "policies": [
            {
                "name": f"pii-{tag}",
                "type": "output_filter",
                "action": "redact",
                "patterns": ["email"],
            }
        ],
    }
    expiry = expires_at if expires_at is not None else int(time.time()) + 3600
    statement = signing.statement_bytes(document, name, revision, expiry, regions)
    return signing.sign(statement, [SigningKey.load(stack.policy_owner_key)])


async def test_bad_packs_are_refused_recorded_and_the_old_one_stays(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    for tag in ("a", "b"):
        path = tmp_path / f"{tag}.yaml"
        path.write_text(PACK.format(tag=tag))
        revision = published_revision(publish_pack(endpoints, path))
    eventually(lambda: status(endpoints)["active_revision"] == revision)
    assert answer(endpoints) == "echo: mail [EMAIL]"

    forger = SigningKey.generate()
    statement = signing.statement_bytes(
        {"pack": {"name": "default"}}, "default", revision + 10, 2**33, ["*"]
    )
    cases = [
        ("forged", signing.sign(statement, [forger]), "no valid signature from a trusted key"),
        (
            "rollback",
            owner_signed(stack, revision - 1, tag="old"),
            f"revision {revision - 1} is not newer than {revision}",
        ),
        (
            "expired",
            owner_signed(stack, revision + 20, expires_at=int(time.time()) - 60),
            "pack expired at",
        ),
        (
            "other region",
            owner_signed(stack, revision + 30, regions=("us-east",)),
            "is for regions ['us-east'], not eu-west",
        ),
        # A statement that is JSON but no object once stopped the replica's policy watch
        # (naming what was refused raised): the cases after it show the watch goes on.
        ("statement a list", b'{"statement": "[1]"}', "not a signed pack: 'signatures'"),
        ("broken", b'{"statement": "{not json', "not a signed pack: Unterminated"),
    ]
    for label, data, reason in cases:
        before = rejections(endpoints)
        await inject(endpoints, data)
        eventually(
            lambda reason=reason: reason in (status(endpoints)["last_rejection"] or ""), timeout=5
        )
        assert rejections(endpoints) == before + 1, label
        assert status(endpoints)["active_revision"] == revision, label
        assert answer(endpoints) == "echo: mail [EMAIL]", label  # still enforced

        async def recorded(reason: str = reason) -> bool:
            return any(
                r.get("kind") == "pack_rejection" and reason in r["reason"]
                for r in await recent_records(endpoints, "eu-west", 20)
            )

        for _ in range(50):
            if await recorded():
                break
            await asyncio.sleep(0.1)
        assert await recorded(), f"no rejection record for {label}"


def test_status_names_the_signer_and_expiry(endpoints: dict[str, Any]) -> None:
    current = status(endpoints)
    assert current["signed_by"] and current["signed_by"][0].startswith("sha256:")
    assert current["expires_at"] and current["expired"] is False


async def test_the_packs_retention_lengthens_records_but_never_shortens_them(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    async def max_age_days() -> float:
        nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
        try:
            info = await nc.jetstream().stream_info("RECORDS")
            return float(info.config.max_age or 0) / 86400
        finally:
            await nc.close()

    async def publish_retention(days: int) -> None:
        path = tmp_path / f"retention-{days}.yaml"
        path.write_text(
            "pack: {name: default}\n"
            "policies:\n  chain: [audit-logger]\n"
            f"  policy:\n    audit-logger: {{immutable: true, retention_days: {days}}}\n"
        )
        revision = published_revision(publish_pack(endpoints, path))
        eventually(lambda: status(endpoints)["active_revision"] == revision)

    def provision() -> None:
        result = subprocess.run(
            [*CORDON, "nats", "provision", "--endpoints", str(stack.root / "endpoints.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    async def provision_until(days: float) -> None:
        """Provision (it is idempotent) until RECORDS keeps `days`, for up to 20 s: in one
        full run of the suite on a loaded machine (2026-12-06) the first provisioning
        after the replica had the pack left 365 days; the cause was not found, and a
        second run sets it."""
        for _ in range(40):
            provision()
            if await max_age_days() == days:
                return
            await asyncio.sleep(0.5)
        assert await max_age_days() == days

    start = await max_age_days()
    await publish_retention(int(start) + 100)
    # A replica may not change the stream; it says what is missing, and how much.
    assert status(endpoints)["records_retention_shortfall"] == {
        "records_days": start,
        "pack_days": int(start) + 100,
    }
    assert await max_age_days() == start
    await provision_until(int(start) + 100)  # setup's identity raises it to what the pack asks
    assert status(endpoints)["records_retention_shortfall"] is None
    await publish_retention(30)
    provision()
    assert await max_age_days() == int(start) + 100  # not shortened


@pytest.fixture(scope="module")
def lifecycle(stack: DevStack) -> Iterator[str]:
    """A replica of its own, enforcing the `lifecycle` pack."""
    url = stack.start_gateway(
        "eu-west", "gw-lifecycle", stack.endpoints.mock_provider, pack_name="lifecycle"
    )
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-lifecycle"].proc)
    yield url
    stack.processes["gateway-eu-west-gw-lifecycle"].stop()


def _gauge(url: str, name: str) -> float:
    (line,) = [r for r in httpx.get(url + "/metrics").text.splitlines() if r.startswith(name + " ")]
    return float(line.split()[1])


async def _activate(
    url: str, endpoints: dict[str, Any], stack: DevStack, revision: int, **kw: Any
) -> None:
    await inject(endpoints, owner_signed(stack, revision, name="lifecycle", **kw), "lifecycle")
    admin = endpoints["tokens"]["admin"]
    eventually(lambda: policy_status(url, admin)["active_revision"] == revision, timeout=10)


@pytest.mark.parametrize(
    ("how", "code"), [("expired", "pack_expired"), ("disabled", "pack_disabled")]
)
async def test_an_expired_or_disabled_pack_refuses_every_call_and_says_why(
    stack: DevStack, endpoints: dict[str, Any], lifecycle: str, how: str, code: str
) -> None:
    base = policy_status(lifecycle, endpoints["tokens"]["admin"])["active_revision"] + 1
    if how == "expired":
        await _activate(lifecycle, endpoints, stack, base, expires_at=int(time.time()) + 3)
    else:
        await _activate(lifecycle, endpoints, stack, base, enabled=False)
    refused = eventually(
        lambda: (
            (r := chat(lifecycle, endpoints["api_key"], "are you on?")).status_code == 503 and r
        ),
        timeout=10,
    )
    error = refused.json()["error"]
    assert error["code"] == code and f"lifecycle r{base}" in error["message"]
    assert _gauge(lifecycle, f"cordon_gateway_pack_{how}") == 1.0
    status_now = policy_status(lifecycle, endpoints["tokens"]["admin"])
    assert status_now["expired" if how == "expired" else "enabled"] is (how == "expired")
    record = await find_record(endpoints, "eu-west", refused.headers["x-cordon-record-id"])
    assert record is not None and record["error"] == code and record["status"] == 503
    await _activate(lifecycle, endpoints, stack, base + 1)  # a current revision: served again
    assert chat(lifecycle, endpoints["api_key"], "are you on?").status_code == 200
    assert _gauge(lifecycle, f"cordon_gateway_pack_{how}") == 0.0


async def test_a_fresh_replica_takes_the_newest_revision_not_the_last_written(
    stack: DevStack, endpoints: dict[str, Any], lifecycle: str
) -> None:
    newest = policy_status(lifecycle, endpoints["tokens"]["admin"])["active_revision"] + 5
    await _activate(lifecycle, endpoints, stack, newest)
    await inject(endpoints, owner_signed(stack, newest - 3, name="lifecycle"), "lifecycle")
    url = stack.start_gateway(
        "eu-west", "gw-fresh", stack.endpoints.mock_provider, pack_name="lifecycle"
    )
    try:
        wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-fresh"].proc)
        admin = endpoints["tokens"]["admin"]
        fresh = eventually(lambda: (s := policy_status(url, admin))["active_revision"] and s)
        assert fresh["active_revision"] == newest and fresh["last_rejection"] is None
    finally:
        stack.processes["gateway-eu-west-gw-fresh"].stop()


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://169.254.169.254/latest", "link-local or cloud metadata"),
        ("http://metadata.google.internal/v1", "cloud metadata service"),
        ("${AWS_SECRET_ACCESS_KEY}", "allowed_env does not name it"),
    ],
    ids=["metadata-ip", "metadata-name", "forbidden-env"],
)
async def test_a_pack_pointing_at_the_metadata_service_or_the_environment_is_refused(
    stack: DevStack, endpoints: dict[str, Any], lifecycle: str, base_url: str, reason: str
) -> None:
    """Signed by the owner, and still refused: a replica decides where it sends calls and
    what of its environment a pack may read, not the pack."""
    admin = endpoints["tokens"]["admin"]
    active = policy_status(lifecycle, admin)["active_revision"]
    document = {
        "pack": {"name": "lifecycle"},
        "providers": {"targets": [{"id": "evil", "provider": {"base_url": base_url}}]},
        "policies": [],
    }
    statement = signing.statement_bytes(
        document, "lifecycle", active + 1, int(time.time()) + 3600, ["*"]
    )
    signed = signing.sign(statement, [SigningKey.load(stack.policy_owner_key)])
    await inject(endpoints, signed, "lifecycle")
    eventually(lambda: reason in (policy_status(lifecycle, admin)["last_rejection"] or ""))
    assert policy_status(lifecycle, admin)["active_revision"] == active


async def test_a_planted_entry_claiming_a_huge_revision_does_not_hold_real_packs_back(
    stack: DevStack, endpoints: dict[str, Any], lifecycle: str, tmp_path: Path
) -> None:
    """The replicator reads a region's revision only from a pack that verifies: an entry
    no trusted key signed, claiming revision 1,000,000, counts as nothing."""
    forger = SigningKey.generate()
    statement = signing.statement_bytes(
        {"pack": {"name": "lifecycle"}, "policies": []}, "lifecycle", 1_000_000, 2**33, ["*"]
    )
    await inject(endpoints, signing.sign(statement, [forger]), "lifecycle")
    admin = endpoints["tokens"]["admin"]
    above = str(policy_status(lifecycle, admin)["active_revision"] + 1)
    path = tmp_path / "lifecycle.yaml"
    path.write_text("pack: {name: lifecycle}\npolicies: []\n")
    revision = published_revision(publish_pack(endpoints, path, "--revision", above))
    eventually(lambda: policy_status(lifecycle, admin)["active_revision"] == revision, timeout=10)


async def test_policy_status_fails_while_a_replica_stays_behind_a_published_revision(
    stack: DevStack, endpoints: dict[str, Any], lifecycle: str, tmp_path: Path
) -> None:
    """A published revision the replica refuses (its provider is the metadata service)
    leaves it behind: `cordon policy status` names it and exits 1."""
    admin = endpoints["tokens"]["admin"]
    active = policy_status(lifecycle, admin)["active_revision"]
    path = tmp_path / "lifecycle.yaml"
    path.write_text(
        "pack: {name: lifecycle}\n"
        "providers: {targets: [{id: evil, provider: {base_url: 'http://169.254.169.254/v1'}}]}\n"
    )
    revision = published_revision(publish_pack(endpoints, path, "--revision", str(active + 1)))
    eventually(lambda: "169.254" in (policy_status(lifecycle, admin)["last_rejection"] or ""))
    result = cordon_policy_status(endpoints, "--behind-after", "0s")
    assert result.returncode == 1
    found = json.loads(result.stdout)
    mine = next(r for r in found["replicas"] if r["replica"] == "gw-lifecycle")
    assert mine["behind"] is True and mine["revision"] == active
    assert any(p["pack"] == "lifecycle" and p["revision"] == revision for p in found["packs"])
