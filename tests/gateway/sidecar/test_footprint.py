"""A local sidecar imports only what local mode uses: built and started from a seed
file in a fresh interpreter, it has loaded no NATS client, no FastAPI or pydantic and
no git library (bench/sidecar.py measures what that is worth in memory and start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.gateway.sidecar.harness import copy_seed, fragment

ROOT = Path(__file__).resolve().parents[3]
NOT_IN_LOCAL_MODE = ("nats", "aiohttp", "fastapi", "pydantic", "starlette", "dulwich")

# What `cordon sidecar` does before it serves: the server stack, the files read and
# checked, the sidecar assembled and started (its pack enforced), then stopped.
PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    import uvicorn  # noqa: F401  (what `run` serves with)

    from gateway.http.connections import guarded_protocol  # noqa: F401
    from gateway.sidecar.config import SidecarConfig
    from gateway.sidecar.server import Sidecar, SidecarApp

    async def main() -> None:
        app = SidecarApp(Sidecar(SidecarConfig.load([Path(p) for p in sys.argv[1:]])))
        await app.sidecar.start()
        await app.sidecar.stop()

    asyncio.run(main())
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
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
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert loaded.isdisjoint(NOT_IN_LOCAL_MODE), sorted(loaded & set(NOT_IN_LOCAL_MODE))
    assert "gateway" in loaded  # the probe did build the sidecar
