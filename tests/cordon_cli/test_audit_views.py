"""The auditor's CLI beyond export and verify: `cordon audit summary` (the central view
in a terminal), `cordon audit search` (a region's records by who, what and when) and
`cordon audit export --since/--until` (a time range as verifiable bundles)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DEV_API_KEY, DevStack
from tests.cordon_cli.test_audit import cordon
from tests.helpers import chat, eventually
from tests.mcp_agent import call_tool

REGION = "eu-west"


def _call(endpoints: dict[str, Any], words: str, region: str = REGION) -> str:
    answer = chat(endpoints["gateways"][region], DEV_API_KEY, words, timeout=10)
    assert answer.status_code == 200
    return answer.headers["x-cordon-record-id"]


def _seq(endpoints: dict[str, Any], words: str) -> int:
    answer = chat(endpoints["gateways"][REGION], DEV_API_KEY, words, timeout=10)
    return int(answer.headers["x-cordon-record-seq"])


def test_summary_shows_every_region_with_its_counts_and_checkpoints(
    endpoints: dict[str, Any],
) -> None:
    for region in endpoints["gateways"]:
        _call(endpoints, "for the summary", region)
    token = endpoints["tokens"]["sre"]

    def shown() -> dict[str, Any] | None:
        result = cordon("summary", "--api", endpoints["aggregator"], "--json", token=token)
        found: dict[str, Any] = json.loads(result.stdout)
        regions = found["freshness"]
        ready = all(
            regions.get(r, {}).get("newest_verified_checkpoint") for r in endpoints["gateways"]
        )
        return found if ready else None

    found = eventually(shown, timeout=30, interval=0.5)
    assert all(found["freshness"][r]["newest_verified_checkpoint"] for r in endpoints["gateways"])
    table = cordon("summary", "--api", endpoints["aggregator"], token=token).stdout
    assert "verified up to" in table and "decisions" in table
    for region in endpoints["gateways"]:
        assert any(line.startswith(region) for line in table.splitlines())
    refused = cordon("summary", "--api", endpoints["aggregator"], token="not-a-token")
    assert refused.returncode == 1 and "401" in refused.stderr


@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
def test_search_finds_a_regions_records_by_time_and_outcome(endpoints: dict[str, Any]) -> None:
    since = datetime.now(UTC).isoformat()
    # first: the index takes the stream in order, so it is in once the calls are
    tool_call = call_tool(
        endpoints["mcp"][REGION]["dev-tools"], endpoints["api_key"], "echo", {"text": "me too"}
    )
    ids = [_call(endpoints, f"search me {secrets.token_hex(3)}") for _ in range(3)]
    token = endpoints["tokens"][f"auditor-{REGION}"]
    api = endpoints["audit_apis"][REGION]

    def found() -> list[dict[str, Any]] | None:
        result = cordon("search", "--api", api, "--since", since, "--json", token=token)
        items: list[dict[str, Any]] = json.loads(result.stdout)
        mine = [i for i in items if i.get("record", {}).get("id") in ids]
        return mine if len(mine) == 3 else None

    mine = eventually(found, timeout=30, interval=0.5)
    assert all(item["verified"] for item in mine)
    outcome = mine[0]["record"]["outcome"]
    table = cordon(
        "search", "--api", api, "--since", since, "--outcome", outcome, token=token
    ).stdout
    assert all(record_id in table for record_id in ids) and "4 records" in table
    tool_row = next(line for line in table.splitlines() if "tool dev-tools/echo" in line)
    assert tool_call["result"]["_meta"]["cordon/record"] in tool_row  # beside the model calls
    elsewhere = cordon("search", "--api", api, token=endpoints["tokens"]["auditor-us-east"])
    assert elsewhere.returncode == 1 and "403" in elsewhere.stderr


def test_export_by_time_range_verifies_with_the_pinned_key(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    since = datetime.now(UTC).isoformat()
    seqs = [_seq(endpoints, "export by time") for _ in range(2)]
    time.sleep(0.2)
    until = datetime.now(UTC).isoformat()
    out = tmp_path / "range.json"
    token = endpoints["tokens"][f"auditor-{REGION}"]
    args = ["export", "--api", endpoints["audit_apis"][REGION], "--since", since]

    def exported() -> bool:
        result = cordon(*args, "--until", until, "--out", str(out), token=token)
        return result.returncode == 0 and "[1/1 100%]" in result.stdout

    eventually(exported, timeout=30, interval=1.0)  # indexed, and covered by a checkpoint
    pin = endpoints["regional_public_keys"][REGION]
    verified = cordon("verify", str(out), "--trust-key", pin)
    assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stdout
    bundle = json.loads(out.read_text())
    first, last = bundle["range"]
    assert first <= min(seqs) and max(seqs) <= last
    assert set(seqs) <= {record["seq"] for record in bundle["records"]}
    empty = cordon(*args, "--until", since, "--out", str(tmp_path / "none.json"), token=token)
    assert empty.returncode == 1 and "no records in that time range" in empty.stderr


def test_export_by_person_holds_that_persons_records_and_no_one_elses(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    person = f"person:bob-{secrets.token_hex(3)}"
    url = stack.start_gateway(
        REGION,
        "gw-person",
        stack.endpoints.mock_provider,
        extra={
            "api_keys": {
                "bob-key": {"agent": "bob-app", "person": person, "roles": [], "scopes": []}
            }
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes[f"gateway-{REGION}-gw-person"].proc)
    try:

        def ask(key: str, base: str) -> int:
            return int(chat(base, key, "mine", timeout=10).headers["x-cordon-record-seq"])

        bobs = [ask("bob-key", url), ask("bob-key", url)]
        someone_else = ask(DEV_API_KEY, endpoints["gateways"][REGION])
        bobs.append(ask("bob-key", url))
    finally:
        stack.processes[f"gateway-{REGION}-gw-person"].stop()
    token = endpoints["tokens"][f"auditor-{REGION}"]
    out = tmp_path / "bob.json"
    args = ["export", "--api", endpoints["audit_apis"][REGION], "--person", person]

    def exported() -> subprocess.CompletedProcess[str] | None:
        result = cordon(*args, "--out", str(out), token=token)
        return result if result.returncode == 0 else None

    result = eventually(exported, timeout=30, interval=1.0)
    bundles = sorted(tmp_path.glob("bob*.json"))
    assert "100%]" in result.stdout.splitlines()[-1]
    exported_seqs = set()
    for bundle in bundles:
        verified = cordon(
            "verify", str(bundle), "--trust-key", endpoints["regional_public_keys"][REGION]
        )
        assert verified.returncode == 0, verified.stdout
        exported_seqs |= {r["seq"] for r in json.loads(bundle.read_text())["records"]}
    assert set(bobs) <= exported_seqs and someone_else not in exported_seqs
