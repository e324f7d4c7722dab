"""A local-mode sidecar process with no NATS anywhere: it answers, records, seals,
and `cordon audit verify` proves the range with the pinned root key of its log; killed
with SIGKILL mid-load, it restarts with no record lost or doubled."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import pytest

from cordon.log import envelope
from gateway.records.local_log import LocalLog
from tests.gateway.sidecar.processes import CLI, SidecarProcess, mock_provider, sidecar_process

pytestmark = [pytest.mark.servers, pytest.mark.timeout(90)]


def sdk(sidecar: SidecarProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sidecar.url + "/v1", api_key=sidecar.caller_key, max_retries=0)


def ask(sidecar: SidecarProcess, text: str) -> str:
    """One call; the id of the record its receipt names."""
    answer = sdk(sidecar).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    return answer.headers["x-cordon-record-id"]


def stored(state_dir: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """Every entry of the sidecar's log, opened: (seq, subject, payload)."""
    log = LocalLog(state_dir / "records", read_only=True)
    return [
        (seq, subject, envelope.decode(data).payload_dict())
        for seq, subject, data in log.read_from(1)
    ]


def verified(sidecar: SidecarProcess, out: Path, pinned: str) -> subprocess.CompletedProcess[str]:
    """Export the log (waiting for the checkpoint that covers it), then verify offline."""
    deadline = time.monotonic() + 10
    while True:
        exported = sidecar.cli("export", "--out", str(out))
        if exported.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert exported.returncode == 0, exported.stderr
    return subprocess.run(
        [*CLI, "audit", "verify", str(out), "--trust-key", pinned],
        capture_output=True,
        text=True,
        timeout=30,
    )


def root_key(sidecar: SidecarProcess) -> str:
    shown = sidecar.cli("key")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["log_root_public_key"])


def test_a_local_sidecar_answers_records_seals_and_verifies_with_a_pinned_key(
    tmp_path: Path,
) -> None:
    with mock_provider(tmp_path) as provider, sidecar_process(tmp_path, provider) as sidecar:
        ids = [ask(sidecar, f"call {n}") for n in range(5)]
        time.sleep(1.2)  # a checkpoint is sealed every second
        good = verified(sidecar, tmp_path / "bundle.json", root_key(sidecar))
        forged = subprocess.run(
            [*CLI, "audit", "verify", str(tmp_path / "bundle.json"), "--trust-key", "ab" * 32],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().splitlines()[-1].startswith("OK: ")
    assert forged.returncode == 1  # another key pinned: nothing verifies
    decisions = [p for _, s, p in stored(sidecar.state_dir) if p.get("kind") == "decision"]
    assert [p["id"] for p in decisions] == ids
    assert sidecar.state_dir.stat().st_mode & 0o777 == 0o700  # its keys and log: owner only
    for secret in ("caller.key", "keys/log-root.key", "keys/sidecar.key", "keys/policy.key"):
        assert (sidecar.state_dir / secret).stat().st_mode & 0o777 == 0o600
    assert {p["enforced_by"] for p in decisions} == {"sidecar"}


def test_a_sidecar_killed_mid_load_restarts_with_no_record_lost_or_doubled(
    tmp_path: Path,
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()

    def load(sidecar: SidecarProcess, worker: int) -> None:
        client = sdk(sidecar)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answer = client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"w{worker} n{n}"}]
                )
            except openai.APIError:
                return  # the sidecar is gone
            acknowledged.append(answer.headers["x-cordon-record-id"])

    with mock_provider(tmp_path) as provider, sidecar_process(tmp_path, provider) as sidecar:
        workers = [threading.Thread(target=load, args=(sidecar, w)) for w in range(8)]
        for worker in workers:
            worker.start()
        while len(acknowledged) < 150:
            time.sleep(0.02)
        sidecar.process.kill()  # SIGKILL, calls in flight
        stop.set()
        for worker in workers:
            worker.join(10)
        sidecar.start()  # the same state directory
        after = ask(sidecar, "after the crash")
        time.sleep(1.2)
        good = verified(sidecar, tmp_path / "bundle.json", root_key(sidecar))
    entries = stored(sidecar.state_dir)
    records = [p for _, s, p in entries if s.startswith("cordon.rec.")]
    ids = Counter(p["id"] for p in records if p.get("kind") == "decision")
    assert set(acknowledged) <= set(ids)  # every answered call kept its record
    assert after in ids
    assert max(ids.values()) == 1  # none stored twice
    seqs = [p["replica_seq"] for p in records]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free across the crash
    assert good.returncode == 0, good.stdout + good.stderr


def test_the_gateway_command_takes_a_users_file_and_runs_it_as_a_sidecar(
    tmp_path: Path,
) -> None:
    """`cordon gateway run --config <a seed-style file>`: the same file works wherever
    the gateway takes a configuration."""
    from cordon_dev.procs import ManagedProcess, free_port, wait_for_http

    port = free_port()
    config = tmp_path / "cordon.yaml"
    config.write_text(
        f"gateway:\n  listen_port: {port}\n  allow_loopback_upstreams: true\n"
        "  allowed_upstreams: ['http://127.0.0.1:*']\n"
        "providers:\n  targets:\n    - id: openai\n"
        '      provider: {base_url: "${OPENAI_BASE_URL}"}\n'
        "      secret_key_ref: {env: OPENAI_API_KEY}\n"
        "policies:\n  - {name: pii, type: output_filter, action: redact, patterns: [email]}\n"
    )
    with mock_provider(tmp_path) as provider:
        env = {"OPENAI_BASE_URL": provider, "OPENAI_API_KEY": "sk-provider"}
        process = ManagedProcess(
            "gateway", [*CLI, "gateway", "run", "--config", str(config)], tmp_path / "gw.log", env
        )
        process.start()
        try:
            assert process.proc is not None
            wait_for_http(f"http://127.0.0.1:{port}/readyz", 15, process.proc)
            key = (tmp_path / ".cordon" / "caller.key").read_text().strip()
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
            answer = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "a@example.com"}]
            )
        finally:
            process.stop()
    assert answer.choices[0].message.content == "echo: [EMAIL]"
    (decision,) = [p for _, _, p in stored(tmp_path / ".cordon") if p.get("kind") == "decision"]
    assert decision["enforced_by"] == "sidecar" and decision["pack"]["name"] == "cordon"


def test_a_sidecar_listens_on_a_unix_socket(tmp_path: Path) -> None:
    import httpx

    from cordon_dev.procs import ManagedProcess

    socket_path = tmp_path / "run" / "cordon.sock"
    socket_path.parent.mkdir(mode=0o700)
    config = tmp_path / "cordon.yaml"
    config.write_text(
        f"gateway:\n  unix_socket: {socket_path}\n  allow_loopback_upstreams: true\n"
        "  allowed_upstreams: ['http://127.0.0.1:*']\n"
        "providers:\n  targets:\n    - id: openai\n"
        '      provider: {base_url: "${OPENAI_BASE_URL}"}\n'
        "      secret_key_ref: {env: OPENAI_API_KEY}\n"
        "policies: []\n"
    )
    with mock_provider(tmp_path) as provider:
        env = {"OPENAI_BASE_URL": provider, "OPENAI_API_KEY": "sk-provider"}
        argv = [*CLI, "sidecar", "--config", str(config)]
        process = ManagedProcess("sidecar", argv, tmp_path / "sidecar.log", env)
        process.start()
        try:
            transport = httpx.HTTPTransport(uds=str(socket_path))
            with httpx.Client(transport=transport, base_url="http://sidecar") as http:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    try:
                        if http.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)
                key = (tmp_path / ".cordon" / "caller.key").read_text().strip()
                client = openai.OpenAI(base_url="http://sidecar/v1", api_key=key, http_client=http)
                answer = client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "over a socket"}]
                )
        finally:
            process.stop()
    assert answer.choices[0].message.content == "echo: over a socket"
    assert socket_path.stat().st_mode & 0o777 == 0o600  # only its owner may connect
