"""The layout's rules hold, and would catch a wrong import (import-linter contracts)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("cordon", "cordon_cli", "cordon_dev", "gateway", "replicator", "aggregator")


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
        ("aggregator/witness.py", "import gateway.records", "The house"),
        ("replicator/fanout.py", "import gateway.policy", "The house"),
        ("gateway/identity/callers.py", "import aggregator", "The house"),
        ("cordon/nats/subjects.py", "import gateway.ledger", "The house"),
        ("cordon/packs/signing.py", "import cordon_dev", "The house"),
        ("cordon/estate/plan.py", "import cordon_cli", "The house"),
        ("gateway/runtime.py", "import cordon_cli", "The house"),
        ("cordon_cli/policy.py", "import cordon_dev.stack", "The house"),
        ("cordon/settings.py", "import uvicorn", "none of the server stack"),
        ("cordon_cli/token.py", "import fastapi", "none of the server stack"),
        ("cordon/log/bundle.py", "import nats.js", "imports no NATS client"),
        ("gateway/policy/engine.py", "import gateway.http.dialects", "http on top"),
        ("gateway/records/record.py", "import gateway.ledger.summaries", "http on top"),
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
    # Contract names wrap in the report: read it as one line, each verdict closing a name.
    verdicts = re.findall(r"(\S.*?) (KEPT|BROKEN)\b", " ".join(result.stdout.split()))
    assert any(contract in name for name, verdict in verdicts if verdict == "BROKEN"), result.stdout


# The modules that handle calls: what a caller or a provider sends is read here.
TRAFFIC = ("gateway/http", "gateway/upstream", "gateway/records", "gateway/policy/engine.py")


def _json_reads(path: Path) -> list[str]:
    """Where `path` parses JSON with `json` or `orjson` directly (not `cordon.jsoncodec`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in ("json", "orjson"):
            if any(alias.name in ("load", "loads") for alias in node.names):
                found.append(f"{path}:{node.lineno}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("load", "loads")
            and isinstance(node.value, ast.Name)
            and node.value.id in ("json", "orjson")
        ):
            found.append(f"{path}:{node.lineno}")
    return found


def test_traffic_is_read_only_by_the_one_json_reader(repo_root: Path) -> None:
    """docs/security.md, "One JSON reader": a second reader with other rules (the old
    fallback to `json`) would let through what the record codec cannot carry."""
    paths = [repo_root / p for p in TRAFFIC]
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    assert len(files) > 10
    assert [hit for f in files for hit in _json_reads(f)] == []


# The fakes of Cordon's own seams (cordon_dev.inprocess): the fast lane's, never a test
# that starts real servers, where they could stand in for what NATS must do.
FAKES = ("MemoryBackplane", "MemorySink", "in_process_gateway")


def _uses_fakes(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "cordon_dev.inprocess"
        for alias in node.names
    }
    return bool(imported & set(FAKES))


def test_fakes_of_our_seams_serve_only_the_fast_lane(repo_root: Path) -> None:
    """docs/architecture.md, "Tests": a test file using the in-memory region starts no
    real server (no server fixture, no `servers` marker)."""
    from tests.conftest import SERVER_FIXTURES

    users = [p for p in sorted((repo_root / "tests").rglob("test_*.py")) if _uses_fakes(p)]
    assert users, "the in-process gateway tests use the fakes"
    for path in users:
        text = path.read_text()
        names = {
            arg.arg
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for arg in node.args.args
        }
        assert not names & SERVER_FIXTURES, path
        assert "mark.servers" not in text, path
