"""The bench scripts `make bench` and `make bench-records` run still start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "script", ["overhead.py", "records.py", "policy_cost.py", "propagation.py", "aggregator.py"]
)
def test_bench_script_imports_and_explains_itself(repo_root: Path, script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
