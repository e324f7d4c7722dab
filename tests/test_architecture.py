"""The layout's rules hold, and would catch a wrong import (import-linter contracts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("cordon", "gateway", "replicator", "aggregator")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so a copy of the packages is analysed, not the installed ones.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_contract_is_kept(repo_root: Path) -> None:
    result = lint_imports(repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("aggregator/witness.py", "import gateway.records", "import only cordon, never gateway"),
        ("replicator/fanout.py", "import gateway.policy", "import only cordon, never gateway"),
        ("cordon/nats/subjects.py", "import gateway.ledger", "imports no process package"),
        ("cordon/packs/signing.py", "import cordon.dev", "imports no process package"),
        ("cordon/log/bundle.py", "import nats.js", "imports no NATS client"),
        ("gateway/policy/engine.py", "import gateway.http.dialects", "http on top"),
        ("gateway/records/record.py", "import gateway.ledger.summaries", "http on top"),
        ("gateway/identity/callers.py", "import aggregator", "never import one another"),
        ("gateway/http/app.py", "import fastapi", "loads no FastAPI"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    repo_root: Path, tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(repo_root / package, tmp_path / package)
    shutil.copy(repo_root / "pyproject.toml", tmp_path)
    planted = tmp_path / module
    planted.write_text(planted.read_text() + f"\n{wrong_import}  # planted by the test\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
