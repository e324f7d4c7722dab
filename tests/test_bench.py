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


@pytest.mark.servers
@pytest.mark.timeout(90)
def test_overhead_tracing_mode_exports_to_its_sink(repo_root: Path) -> None:
    """`overhead.py --tracing`, briefly: tracing off and on side by side, and the traced
    replica's spans reach the bench's OTLP sink (a run with no export fails)."""
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "overhead.py"),
            "--tracing",
            "--requests",
            "40",
            "--concurrency",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sink,) = [line for line in result.stdout.splitlines() if line.startswith("OTLP sink:")]
    exports = int(sink.split()[2])
    assert exports > 0, sink
    assert "CPU +µs" in result.stdout
