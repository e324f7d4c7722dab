"""`cordon audit export` and `cordon audit verify`: every tampering is caught and named,
and only the regional key the auditor pinned is trusted, never the one a bundle carries."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cordon.log import checkpoints, envelope, merkle
from cordon.log.bundle import build as build_bundle
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes, raw_key_id
from cordon.log.merkle import CompactTree
from tests.helpers import authed_get, central_get, chat

REGION = "eu-west"


@pytest.fixture(scope="module")
def exported(endpoints: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for i in range(6):
        chat(endpoints["gateways"][REGION], endpoints["api_key"], f"bundle {i}")
    last = int(
        authed_get(
            endpoints, endpoints["audit_apis"][REGION] + "/v1/records", params={"limit": 1000}
        ).json()["items"][-1]["seq"]
    )
    out = tmp_path_factory.mktemp("bundle") / "bundle.json"
    for _ in range(50):  # the sealer checkpoints every second
        result = cordon(
            "export",
            "--api",
            endpoints["audit_apis"][REGION],
            "--from",
            "1",
            "--to",
            str(last),
            "--out",
            str(out),
            token=endpoints["tokens"]["auditor"],
        )
        if result.returncode == 0:
            break
        time.sleep(0.2)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def cordon(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CORDON_AUDIT_TOKEN"}
    if token is not None:
        env["CORDON_AUDIT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cordon_cli", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def pinned(endpoints: dict[str, Any]) -> str:
    """The region's public key as an auditor would pin it (hex)."""
    key: str = endpoints["regional_public_keys"][REGION]
    return key


def verify(bundle: dict[str, Any], tmp_path: Path, *pin: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    return cordon("verify", str(path), *pin)


def decisions(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in bundle["records"] if b"decision" in base64.b64decode(r["data"])]


def test_an_untouched_export_verifies(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    result = verify(exported, tmp_path, "--trust-key", pinned)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("OK: ") and " 0 problems" in result.stdout


def middle_of_its_replica(bundle: dict[str, Any]) -> dict[str, Any]:
    """A decision record its replica numbered both before and after: removing it must
    open a gap in that replica's numbering (other tests' replicas write to the same
    stream, and the last record a replica wrote leaves no gap when removed)."""
    numbers: dict[str, set[int]] = {}
    for record in bundle["records"]:
        payload = envelope.decode(base64.b64decode(record["data"])).payload_dict()
        if isinstance(payload.get("replica_seq"), int):
            numbers.setdefault(str(payload.get("replica")), set()).add(payload["replica_seq"])
    for record in decisions(bundle):
        payload = envelope.decode(base64.b64decode(record["data"])).payload_dict()
        mine, n = numbers[str(payload.get("replica"))], payload["replica_seq"]
        if n - 1 in mine and n + 1 in mine:
            return record
    raise AssertionError("no decision record has its replica's numbers on both sides")


def test_a_record_altered_by_one_byte(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    bundle = copy.deepcopy(exported)
    target = decisions(bundle)[2]
    data = bytearray(base64.b64decode(target["data"]))
    data[len(data) // 2] ^= 0x01
    target["data"] = base64.b64encode(bytes(data)).decode()
    result = verify(bundle, tmp_path, "--trust-key", pinned)
    assert result.returncode == 1
    assert f"FAIL record seq {target['seq']}: not in the log at that position" in result.stdout


def test_a_record_removed_from_the_middle(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    bundle = copy.deepcopy(exported)
    removed = middle_of_its_replica(bundle)
    bundle["records"].remove(removed)
    result = verify(bundle, tmp_path, "--trust-key", pinned)
    assert result.returncode == 1
    assert f"FAIL record seq {removed['seq']}: missing from the export" in result.stdout
    assert "replica_seq jumps" in result.stdout


def test_two_records_swapped(exported: dict[str, Any], pinned: str, tmp_path: Path) -> None:
    bundle = copy.deepcopy(exported)
    first, second = decisions(bundle)[1:3]
    first["data"], second["data"] = second["data"], first["data"]
    result = verify(bundle, tmp_path, "--trust-key", pinned)
    assert result.returncode == 1
    assert f"FAIL record seq {first['seq']}: not in the log at that position" in result.stdout
    assert f"FAIL record seq {second['seq']}: not in the log at that position" in result.stdout


def test_a_checkpoint_signed_with_a_wrong_key(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    bundle = copy.deepcopy(exported)
    stated = checkpoints.parse_note(bundle["checkpoint"]["note"])
    forged = json.loads(checkpoints.encode(stated, SigningKey.generate(), CompactTree()))
    bundle["checkpoint"] = forged
    result = verify(bundle, tmp_path, "--trust-key", pinned)
    assert result.returncode == 1
    assert "FAIL checkpoint: signed by a key the regional key never enrolled" in result.stdout


def test_a_forged_enrolment(exported: dict[str, Any], pinned: str, tmp_path: Path) -> None:
    bundle = copy.deepcopy(exported)
    impostor = SigningKey.generate()
    forged = enrol(SigningKey.generate(), REGION, "gw-evil", impostor)  # not the regional key
    bundle["enrolments"].append(
        {
            "seq": bundle["enrolments"][0]["seq"],
            "data": base64.b64encode(forged).decode(),
            "proof": bundle["enrolments"][0]["proof"],
        }
    )
    # and a record signed by the impostor, slipped in place of a real one
    target = decisions(bundle)[0]
    payload = envelope.decode(base64.b64decode(target["data"])).payload_dict()
    target["data"] = base64.b64encode(envelope.seal(payload, impostor).encode()).decode()
    result = verify(bundle, tmp_path, "--trust-key", pinned)
    assert result.returncode == 1
    assert "enrolment not signed by the regional key" in result.stdout
    assert f"FAIL record seq {target['seq']}: unknown key id {impostor.key_id}" in result.stdout


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    assert cordon("verify", str(tmp_path / "junk.json")).returncode == 2
    (tmp_path / "other.json").write_text('{"hello": 1}')
    result = cordon("verify", str(tmp_path / "other.json"))
    assert result.returncode == 2 and "not an audit bundle" in result.stderr


def test_verify_runs_without_a_nats_client(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    # An auditor's offline tool: verifying a bundle loads nothing that talks to NATS.
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(json.dumps(exported))
    probe = (
        "import sys\n"
        "from cordon_cli import main\n"
        f"code = main(['audit', 'verify', {str(bundle_path)!r}, '--trust-key', {pinned!r}])\n"
        "loaded = sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.'))\n"
        "print('exit', code, 'nats modules', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert "exit 0 nats modules []" in result.stdout, result.stdout + result.stderr


def test_a_bundle_whose_key_is_not_the_pinned_one_fails(
    exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    wrong = public_bytes(SigningKey.generate().public_key).hex()
    result = verify(exported, tmp_path, "--trust-key", wrong)
    assert result.returncode == 1
    carried = raw_key_id(bytes.fromhex(pinned))
    assert f"FAIL regional key: the bundle carries {carried}, not the pinned key" in result.stdout
    assert not result.stdout.startswith("OK")


def test_without_a_pinned_key_nothing_is_called_good(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    result = verify(exported, tmp_path)
    assert result.returncode == 1
    assert "OK" not in result.stdout
    assert "NOT VERIFIED" in result.stdout and "--trust-key" in result.stdout


def test_a_pinned_key_from_a_file_or_a_keys_file_of_several_regions(
    exported: dict[str, Any], endpoints: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "eu-west.pub"
    key_file.write_text(pinned + "\n")
    assert verify(exported, tmp_path, "--trust-key", str(key_file)).returncode == 0
    keys_file = tmp_path / "regions.json"
    keys_file.write_text(json.dumps(endpoints["regional_public_keys"]))
    assert verify(exported, tmp_path, "--trust-keys", str(keys_file)).returncode == 0


def test_a_self_consistent_bundle_made_with_a_fresh_key_fails_against_the_pin(
    pinned: str, tmp_path: Path
) -> None:
    # Invented records, signed by a replica key that a fresh "regional" key enrolled,
    # with a checkpoint over them: consistent in itself, and worth nothing.
    regional, replica = SigningKey.generate(), SigningKey.generate()
    entries = [enrol(regional, REGION, "gw-1", replica)]
    entries += [
        envelope.seal({"id": f"r{i}", "replica": "gw-1", "replica_seq": i}, replica).encode()
        for i in range(1, 4)
    ]
    leaves = [merkle.leaf_hash(data) for data in entries]
    tree = CompactTree()
    for leaf in leaves:
        tree.append(leaf)
    stated = checkpoints.Checkpoint(REGION, len(leaves), tree.root(), int(time.time() * 1000))
    forged = build_bundle(
        region=REGION,
        regional_public_key=public_bytes(regional.public_key),
        nodes=merkle.LeafList(leaves),
        checkpoint=checkpoints.encode(stated, replica, tree),
        older=[],
        enrolments={1: entries[0]},
        records={seq: data for seq, data in enumerate(entries[1:], start=2)},
        first=2,
        last=len(entries),
    )
    unpinned = verify(forged, tmp_path)
    assert unpinned.returncode == 1 and " 0 problems" in unpinned.stdout  # consistent...
    result = verify(forged, tmp_path, "--trust-key", pinned)  # ...and not the region's
    assert result.returncode == 1
    assert "FAIL regional key" in result.stdout
    assert "enrolment not signed by the regional key" in result.stdout


def test_export_needs_an_auditor_token_for_the_region(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "bundle.json"
    args = ("export", "--api", endpoints["audit_apis"][REGION], "--to", "3", "--out", str(out))
    assert cordon(*args).returncode == 2  # no token at all: says how to give one
    other = cordon(*args, token=endpoints["tokens"]["auditor-us-east"])
    assert other.returncode == 1 and "403" in other.stderr
    assert cordon(*args, token=endpoints["tokens"][f"auditor-{REGION}"]).returncode == 0


def test_with_the_witness_key_every_checkpoint_must_carry_its_cosignature(
    endpoints: dict[str, Any], exported: dict[str, Any], pinned: str, tmp_path: Path
) -> None:
    out = tmp_path / "witnessed.json"
    last = str(exported["range"][1])
    args = ["export", "--api", endpoints["audit_apis"][REGION], "--to", last, "--out", str(out)]
    for _ in range(50):  # the witness judges each checkpoint a moment after it lands
        result = cordon(
            *args, "--witness", endpoints["aggregator"], token=endpoints["tokens"]["auditor"]
        )
        if result.returncode == 0:
            break
        time.sleep(0.2)
    assert result.returncode == 0, result.stderr
    witnessed = json.loads(out.read_text())
    witness_key = central_get(endpoints, "/v1/witness/key").json()["public_key"]
    pins = ("--trust-key", pinned, "--witness-key", witness_key)
    good = verify(witnessed, tmp_path, *pins)
    assert good.returncode == 0, good.stdout
    stranger = public_bytes(SigningKey.generate().public_key).hex()
    wrong = verify(witnessed, tmp_path, "--trust-key", pinned, "--witness-key", stranger)
    assert wrong.returncode == 1 and "is not the pinned witness's" in wrong.stdout
    bare = verify(exported, tmp_path, *pins)  # exported without --witness
    assert bare.returncode == 1 and "is not cosigned by the witness" in bare.stdout
