"""Where the engine in-process stops: the pack's word on where a call may go holds for
the client's own provider; an engine stopped or left behind by a fork never leaves the
application waiting; a policy URL's credentials stay out of logs and records."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from cordon.errors import ConfigError
from cordon.log import keys
from cordon_sdk import govern, shutdown
from gateway.policy.sources.http import HttpSource
from tests.cordon_sdk.harness import HELLO, ROOT, asking, governed_openai, records, seed, worker
from tests.gateway.sidecar.harness import fragment, in_process_sidecar, loopback_fragment


def _pack(root: Path, provider_url: str) -> Path:
    """A pack that keeps calls in the EU: one provider, in eu-west, for one model."""
    return fragment(
        root,
        "eu.yaml",
        "residency: {regions: [eu-*]}\n"
        "providers:\n  targets:\n"
        f"    - {{id: eu-mock, region: eu-west, models: [mock-gpt], provider: {{base_url: "
        f"'{provider_url}/v1'}}, secret_key_ref: {{env: EU_MOCK_KEY}}}}\n"
        "policies: []\n",
    )


def _python(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter (an application of its own) with `path` as its
    argument."""
    argv = [sys.executable, "-c", code, str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_packs_residency_and_models_hold_for_the_clients_own_provider(
    tmp_path: Path, provider_url: str
) -> None:
    config = _pack(tmp_path, provider_url)  # its key (EU_MOCK_KEY) is never read
    known = governed_openai(provider_url, config)
    assert known.chat.completions.create(model="mock-gpt", messages=HELLO).choices
    with pytest.raises(openai.NotFoundError):  # the pack's provider there serves no such model
        known.chat.completions.create(model="mock-gpt-mini", messages=HELLO)
    elsewhere = known.with_options(base_url=f"http://localhost:{provider_url.rsplit(':')[-1]}/v1")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        elsewhere.chat.completions.create(model="mock-gpt", messages=HELLO)
    assert refused.value.code == "outside_residency"  # type: ignore[attr-defined]
    decisions = records(worker(tmp_path))
    assert decisions[0]["route"] == "eu-mock" and decisions[0]["route_region"] == "eu-west"
    assert [r["outcome"] for r in decisions] == ["allow", "error", "block"]


def test_a_call_after_shutdown_fails_at_once_and_sends_nothing(
    tmp_path: Path, provider_url: str
) -> None:
    client = governed_openai(provider_url, seed("sidecar.yaml", tmp_path))
    assert client.chat.completions.create(model="mock-gpt", messages=HELLO).choices
    shutdown()
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="mock-gpt", messages=asking("after"))
    assert time.monotonic() - started < 5
    assert refused.value.code == "engine_stopped"  # type: ignore[attr-defined]


def test_a_process_forked_after_govern_gets_an_engine_of_its_own(
    tmp_path: Path, provider_url: str
) -> None:
    """A pre-forking server governs, then forks its workers: each worker's calls are
    answered by an engine in that worker, in a slot of its own, without waiting."""
    config = seed("sidecar.yaml", tmp_path)
    code = (
        "import os, sys, openai\n"
        "from cordon_sdk import govern\n"
        f"c = openai.OpenAI(api_key='k', base_url='{provider_url}/v1', timeout=20)\n"
        "c = govern(c, config=sys.argv[1])\n"
        "ask = lambda who: c.chat.completions.create(\n"
        "    model='mock-gpt', messages=[{'role': 'user', 'content': who}])\n"
        "ask('parent')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ask('child')\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child', status, flush=True)\n"
    )
    done = _python(code, config)
    assert done.stdout.strip() == "child 0", done.stderr
    parent, child = records(worker(tmp_path, 0)), records(worker(tmp_path, 1))
    assert len(parent) == 1 and len(child) == 1
    assert parent[0]["replica"] != child[0]["replica"]


def test_a_policy_urls_credentials_stay_out_of_logs_status_and_files(tmp_path: Path) -> None:
    source = HttpSource("https://reader:s3cret@policy.example:8443", "tok", 10)
    assert "s3cret" not in source.where and "s3cret" not in repr(source.status())
    with pytest.raises(ConfigError, match="plain http only to a sidecar on loopback"):
        HttpSource("http://policy.example", "tok", 10)
    os.environ["CORDON_POLICY_TOKEN"] = "tok"
    try:
        with pytest.raises(ConfigError):  # nothing serves there: govern stops, the file stays
            govern(
                openai.OpenAI(api_key="k"),
                policy="https://reader:s3cret@127.0.0.1:1",
                pack_trust=["ab" * 32],
                state_dir=tmp_path / "app",
            )
    finally:
        del os.environ["CORDON_POLICY_TOKEN"]
    (written,) = (tmp_path / "app").glob("govern-*.yaml")
    assert written.stat().st_mode & 0o777 == 0o600


async def test_a_gateway_never_passes_a_callers_receipt_on_to_its_provider(
    tmp_path: Path, provider_url: str
) -> None:
    files = [
        fragment(
            tmp_path,
            "side.yaml",
            "providers:\n  targets:\n    - id: mock\n"
            f"      provider: {{base_url: '{provider_url}/v1'}}\npolicies: []\n",
        ),
        loopback_fragment(tmp_path),
    ]
    async with in_process_sidecar(files) as side:
        receipt = "01938a7e-0000-7000-8000-000000000000"
        answer = await side.client.post(
            "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": HELLO},
            headers={"authorization": f"Bearer {side.caller_key}", "x-cordon-sdk-record": receipt},
        )
        assert answer.status_code == 200
        seen = httpx.get(f"{provider_url}/mock/stats", timeout=5).json()["auth"]
        recorded = [r for r in side.records() if r["kind"] == "decision"]
    assert seen["x-cordon-sdk-record"] == ""
    assert recorded[0]["sdk_record"] == receipt


def test_the_schema_check_in_a_child_holds_where_sigchld_is_ignored(tmp_path: Path) -> None:
    """An application that ignores SIGCHLD (some daemons do) can still govern: the
    configuration is checked, and a bad one still refused with its reason."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {listen_port: 41002}\npolicies:\n  - {name: x, type: nonsense}\n")
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        "from cordon.packs import lint\n"
        "lint.check_apart()\n"
        "_, problems = lint.check_file(__import__('pathlib').Path(sys.argv[1]))\n"
        "print(len(problems))\n"
    )
    done = _python(code, bad)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) >= 1


def test_the_application_gets_no_metrics_of_cordons_and_no_prometheus_client(
    tmp_path: Path, provider_url: str
) -> None:
    """The engine serves no /metrics: a governed call counts nothing, loads no
    prometheus_client, and an application with a registry of its own finds no Cordon
    series in it."""
    config = seed("sidecar.yaml", tmp_path)
    code = (
        "import sys, openai\n"
        "from cordon_sdk import govern\n"
        f"c = openai.OpenAI(api_key='k', base_url='{provider_url}/v1', timeout=20)\n"
        "c = govern(c, config=sys.argv[1])\n"
        "hi = [{'role': 'user', 'content': 'hi'}]\n"
        "c.chat.completions.create(model='mock-gpt', messages=hi)\n"
        "print('prometheus_client' in sys.modules, flush=True)\n"
        "from prometheus_client import REGISTRY, generate_latest\n"
        "print(b'cordon_' in generate_latest(REGISTRY), flush=True)\n"
    )
    done = _python(code, config)
    assert done.stdout.split() == ["False", "False"], done.stderr
    assert len(records(worker(tmp_path))) == 1  # the call itself was governed


def test_records_are_signed_through_libsodium_even_where_the_application_has_cryptography(
    tmp_path: Path, provider_url: str
) -> None:
    """The signature is on every call's path: an application that loaded `cryptography`
    itself still gets libsodium's (about half the time)."""
    if not keys.libsodium_loads():
        pytest.skip(
            "no libsodium on this machine until it is installed: `make tools` installs "
            "Debian's libsodium23 when run as root"
        )
    config = seed("sidecar.yaml", tmp_path)
    code = (
        "import sys, openai\n"
        "from cryptography.hazmat.primitives.asymmetric import ed25519\n"
        "from cordon_sdk import govern\n"
        "from cordon.log import keys\n"
        f"c = openai.OpenAI(api_key='k', base_url='{provider_url}/v1', timeout=20)\n"
        "c = govern(c, config=sys.argv[1])\n"
        "hi = [{'role': 'user', 'content': 'hi'}]\n"
        "c.chat.completions.create(model='mock-gpt', messages=hi)\n"
        "print(keys._current().private.__module__, flush=True)\n"
    )
    done = _python(code, config)
    assert done.stdout.split() == ["cordon.log.ed25519_sodium"], done.stderr
    assert len(records(worker(tmp_path))) == 1  # the call was recorded


def test_without_uvloop_the_engine_runs_on_asyncios_loop(tmp_path: Path, provider_url: str) -> None:
    """uvloop is the `sdk` extra's (not on Windows): where it cannot be imported the
    engine runs on asyncio's own loop, and calls are governed the same."""
    config = seed("sidecar.yaml", tmp_path)
    code = (
        "import sys, openai\n"
        "sys.modules['uvloop'] = None  # as if not installed: importing it fails\n"
        "from cordon_sdk import govern\n"
        "from cordon_sdk.engine import _ENGINES\n"
        f"c = openai.OpenAI(api_key='k', base_url='{provider_url}/v1', timeout=20)\n"
        "c = govern(c, config=sys.argv[1])\n"
        "hi = [{'role': 'user', 'content': 'mail me at someone@example.com'}]\n"
        "answer = c.chat.completions.create(model='mock-gpt', messages=hi)\n"
        "(engine,) = _ENGINES.values()\n"
        "print(type(engine.loop).__module__.split('.')[0], flush=True)\n"
        "print(answer.choices[0].message.content, flush=True)\n"
    )
    done = _python(code, config)
    lines = done.stdout.splitlines()
    assert lines[0] == "asyncio", done.stderr
    assert "someone@example.com" not in lines[1] and "[EMAIL]" in lines[1]
    assert len(records(worker(tmp_path))) == 1
