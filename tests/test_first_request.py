"""The README's first requests run as printed, against the local topology."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(marker)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match is not None, f"no python block after {marker!r}"
    return match.group(1)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
def test_the_readmes_mcp_example_runs_as_printed(endpoints: dict[str, Any]) -> None:
    code = _block_after("Agents' tool calls go through the same gateway")
    assert "http://127.0.0.1:8401/" in code and "cordon-dev-key" in code
    code = code.replace("http://127.0.0.1:8401", endpoints["gateways"]["eu-west"])
    code = code.replace("cordon-dev-key", endpoints["api_key"])
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, cwd=ROOT
    )
    assert ran.returncode == 0, ran.stderr
    listed, answer, record = ran.stdout.splitlines()
    assert "echo" in listed and "send_email" not in listed
    assert answer == "The contact for acme is Ana Lima, [EMAIL]."
    assert re.fullmatch(r"[0-9a-f-]{36}", record)
