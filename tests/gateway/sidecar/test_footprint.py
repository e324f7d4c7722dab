"""A local sidecar imports only what local mode uses: built and started from a seed
file in a fresh interpreter, it has loaded no NATS client, no FastAPI or pydantic, no
git library, jsonschema only in the child that checked the files, neither the MCP
endpoint nor the translated providers (no pack of its uses them), and no `cryptography`
(Ed25519 goes through the libcrypto `ssl` maps). bench/sidecar.py measures what that is
worth in memory and start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.gateway.sidecar.harness import copy_seed, fragment

ROOT = Path(__file__).resolve().parents[3]
NOT_IN_LOCAL_MODE = (
    "nats",
    "aiohttp",
    "fastapi",
    "pydantic",
    "starlette",
    "dulwich",
    "jsonschema",
)
# Modules of Cordon's own that only some packs use, loaded on first use; and
# `cryptography`, whose Ed25519 the sidecar takes from the libcrypto `ssl` maps.
LOADED_ON_FIRST_USE = (
    "gateway.mcp",
    "gateway.http.mcp",
    "gateway.upstream.translated",
    "gateway.upstream.bedrock",
    "gateway.upstream.gemini",
    "gateway.upstream.google_auth",
    "gateway.upstream.messages",
    "gateway.upstream.openai_chat",
    "gateway.upstream.steps",
    "cryptography",
)

# What `cordon sidecar` does before it serves: the server stack, the files read and
# checked, the sidecar assembled and started (its pack enforced), then stopped.
PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    import uvicorn  # noqa: F401  (what `run` serves with)

    from cordon.log import keys
    from cordon.packs import lint
    from gateway.http.connections import guarded_protocol  # noqa: F401
    from gateway.sidecar.config import SidecarConfig
    from gateway.sidecar.server import Sidecar, SidecarApp

    lint.check_apart()  # as `run` does
    assert keys.use_openssl_backend()  # as `run` does

    async def main() -> None:
        app = SidecarApp(Sidecar(SidecarConfig.load([Path(p) for p in sys.argv[1:]])))
        await app.sidecar.start()
        await app.sidecar.stop()

    asyncio.run(main())
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_a_local_sidecar_loads_only_what_local_mode_uses(tmp_path: Path) -> None:
    seed = copy_seed("sidecar.yaml", tmp_path)
    local = fragment(tmp_path, "local.yaml", "gateway:\n  listen_port: 1\n")
    env = {**os.environ, "OPENAI_API_KEY": "sk-provider", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(seed), str(local)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    loaded = {name.split(".")[0] for name in modules}
    assert loaded.isdisjoint(NOT_IN_LOCAL_MODE), sorted(loaded & set(NOT_IN_LOCAL_MODE))
    early = [m for m in modules if m.split(".")[0] == "cryptography" or m in LOADED_ON_FIRST_USE]
    assert not early, early
    assert "gateway.sidecar.server" in modules  # the probe did build the sidecar


# A file with schema problems, checked in a fresh interpreter with and without the
# child process: the same problems, word for word, with their lines.
LINT_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from cordon.packs import lint

    if sys.argv[2] == "apart":
        lint.check_apart()
    _, problems = lint.check_file(Path(sys.argv[1]))
    print(json.dumps([str(p) for p in problems]))
    print("jsonschema" in sys.modules)
    """
)


def test_the_schema_checked_in_a_child_reads_as_checked_here(tmp_path: Path) -> None:
    bad = fragment(
        tmp_path,
        "bad.yaml",
        "pack: {name: p, version: 1.0.0, enabled: true}\n"
        "policies:\n  - name: pii\n    type: output_filter\n    action: shout\n"
        "    patterns: [email]\n    colour: blue\n",
    )
    answers = {}
    for mode in ("here", "apart"):
        result = subprocess.run(
            [sys.executable, "-c", LINT_PROBE, str(bad), mode],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        problems, loaded = result.stdout.strip().splitlines()[-2:]
        answers[mode] = (json.loads(problems), loaded)
    assert answers["here"][0], "the probe file should have problems"
    assert answers["apart"][0] == answers["here"][0]
    assert answers == {"here": (answers["here"][0], "True"), "apart": (answers["here"][0], "False")}
