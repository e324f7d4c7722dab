"""A replica's key can be replaced without a gap in what an auditor can verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cordon.log.keys import SigningKey
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack


def _ask(url: str, endpoints: dict[str, Any]) -> int:
    response = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "rotate"}]},
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
    )
    return int(response.headers["x-cordon-record-seq"])


def test_records_before_and_after_a_key_rotation_all_verify(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    key_file = stack.root / "keys" / "us-east" / "gw-rot.key"
    url = stack.start_gateway("us-east", "gw-rot", stack.endpoints.mock_provider)
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-us-east-gw-rot"].proc)
    before = _ask(url, endpoints)
    old_key = SigningKey.load(key_file).key_id

    stack.processes["gateway-us-east-gw-rot"].stop()
    key_file.unlink()  # rotate: a new key, enrolled by the regional key at the next start
    url = stack.start_gateway("us-east", "gw-rot", stack.endpoints.mock_provider)
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-us-east-gw-rot"].proc)
    after = _ask(url, endpoints)
    assert SigningKey.load(key_file).key_id != old_key

    out = tmp_path / "bundle.json"
    for _ in range(60):
        exported = subprocess.run(
            [
                sys.executable,
                "-m",
                "cordon_cli",
                "audit",
                "export",
                "--api",
                endpoints["audit_apis"]["us-east"],
                "--from",
                str(before),
                "--to",
                str(after),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "CORDON_AUDIT_TOKEN": endpoints["tokens"]["auditor"]},
        )
        if exported.returncode == 0:
            break
        time.sleep(0.25)
    assert exported.returncode == 0, exported.stderr
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "cordon_cli",
            "audit",
            "verify",
            str(out),
            "--trust-key",
            endpoints["regional_public_keys"]["us-east"],
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout
    bundle = json.loads(out.read_text())
    assert len(bundle["enrolments"]) >= 2
    stack.processes["gateway-us-east-gw-rot"].stop()
