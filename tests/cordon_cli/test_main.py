"""The `cordon` command line: every subcommand explains itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cordon_cli import build_parser

SUBCOMMANDS = [
    ["gateway", "run"],
    ["gateway", "seal"],
    ["gateway", "audit-api"],
    ["replicator", "run"],
    ["aggregator", "run"],
    ["policy", "publish"],
    ["policy", "status"],
    ["audit", "export"],
    ["audit", "verify"],
    ["nats", "provision"],
    ["token", "new"],
    ["nats", "identities"],
    ["nats", "render"],
]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    assert f"usage: cordon {' '.join(argv)}" in capsys.readouterr().out


def test_top_level_help_lists_the_processes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cordon_cli", "--help"], capture_output=True, text=True, check=True
    )
    for word in ("gateway", "replicator", "aggregator", "policy", "audit", "nats"):
        assert word in result.stdout


def test_a_missing_settings_file_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cordon_cli", "gateway", "run", "--config", "/nonexistent.json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "cordon gateway: cannot read settings /nonexistent.json" in result.stderr
    assert "Traceback" not in result.stderr
