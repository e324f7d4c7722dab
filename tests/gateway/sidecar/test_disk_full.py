"""A full disk fails closed: the caller gets a clear 503 in its API's shape and no
model output, nothing torn is left in the log, and once there is room again the next
call is answered and the numbering stays gap-free (the spent number is voided)."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from gateway.records import local_log
from gateway.records.local_log import LocalLog
from tests.gateway.sidecar.harness import (
    RunningSidecar,
    in_process_sidecar,
    loopback_fragment,
    provider_from_environment,
)

PACK = """\
pack: {name: full}
providers:
  targets:
    - id: openai
      provider: {base_url: "${OPENAI_BASE_URL}"}
      secret_key_ref: {env: OPENAI_API_KEY}
policies: []
"""


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningSidecar]:
    config = tmp_path / "cordon.yaml"
    config.write_text(PACK)
    local = loopback_fragment(tmp_path)
    async with (
        provider_from_environment(monkeypatch),
        in_process_sidecar([config, local]) as sidecar,
    ):
        yield sidecar


async def test_a_full_disk_fails_closed_and_leaves_nothing_torn(
    running: RunningSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = running.openai()
    messages: list[dict[str, str]] = [{"role": "user", "content": "the secret answer"}]
    await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as disk:
        disk.setattr(local_log, "_write_all", full)
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert refused.value.status_code == 503
    assert "echo:" not in refused.value.response.text  # no model output released
    assert refused.value.response.json()["error"]["message"]
    answer = await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "echo: the secret answer"
    reopened = LocalLog(running.sidecar.config.state_dir / "records", read_only=True)
    assert reopened.torn == 0
    seqs = [p["replica_seq"] for p in running.records()]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_second_sidecar_on_the_same_state_directory_is_refused(
    running: RunningSidecar,
) -> None:
    from cordon.errors import ConfigError
    from gateway.sidecar.server import Sidecar

    with pytest.raises(ConfigError, match="in use by another process"):
        Sidecar(running.sidecar.config)


def _pack_with_retention(days: int | None) -> str:
    chain = ""
    if days is not None:
        chain = (
            "  chain: [audit-logger]\n  policy:\n    audit-logger:\n"
            f"      immutable: true\n      retention_days: {days}\n"
        )
    base = PACK.replace("policies: []\n", "")
    return base + ("policies:\n" + chain if chain else "policies: []\n")


@pytest.mark.parametrize("days", [None, 365])
async def test_the_size_cap_removes_old_records_unless_the_pack_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, days: int | None
) -> None:
    """Without `retention_days` the cap drops the oldest segments and calls go on; with
    it, records younger than that are kept and a full log fails closed instead."""
    config = tmp_path / "cordon.yaml"
    config.write_text(_pack_with_retention(days))
    local = loopback_fragment(tmp_path, "  log_max_bytes: 40000\n  log_segment_bytes: 8000\n")
    async with (
        provider_from_environment(monkeypatch),
        in_process_sidecar([config, local]) as running,
    ):
        running.sidecar._retention()  # what the loop applies each minute
        sdk = running.openai()
        statuses = []
        for n in range(60):
            try:
                await sdk.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"call {n}"}]
                )
                statuses.append(200)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
        records = running.sidecar.records
        await running.sidecar.sealer.seal()  # what is not sealed yet is never removed
        running.sidecar._retention()
        records.enforce_retention()
        first, size = records.first_seq, records.size_bytes
    if days is None:
        assert set(statuses) == {200}
        assert first > 1  # the oldest went
        assert size <= 40000 + 8000
    else:
        assert statuses[0] == 200 and statuses[-1] == 503  # full: fails closed
        assert first == 1  # nothing the pack keeps was removed
