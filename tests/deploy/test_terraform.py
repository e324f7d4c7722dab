"""terraform/: formatted, every root valid against the AWS provider 5.100 (offline, from
a local provider mirror), and checkov finds nothing that is not justified inline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers  # terraform itself, offline, per root

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
ROOTS = ("central", "eu-west", "us-east")
MIRRORS = ("/opt/tf-plugins", "/usr/share/terraform/plugins", "~/.terraform.d/plugins")


def _terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip("terraform not on PATH")
    return found


def _mirror() -> Path:
    """The folder above registry.terraform.io that holds hashicorp/aws 5.100.x."""
    for candidate in (os.environ.get("CORDON_TF_MIRROR"), *MIRRORS):
        if candidate and any(
            Path(candidate).expanduser().glob("registry.terraform.io/hashicorp/aws/5.100.*")
        ):
            return Path(candidate).expanduser()
    pytest.skip(
        "no local provider mirror with hashicorp/aws 5.100.x (set CORDON_TF_MIRROR to the"
        " folder above registry.terraform.io)"
    )


def test_terraform_is_formatted() -> None:
    result = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"not formatted: {result.stdout}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("root", ROOTS)
def test_every_root_validates_offline(root: str, tmp_path: Path) -> None:
    terraform, mirror = _terraform(), _mirror()
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*"))
    config = tmp_path / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}
    for command in (["init", "-backend=false", "-input=false"], ["validate", "-no-color"]):
        result = subprocess.run(
            [terraform, *command],
            cwd=copy / root,
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _checkov() -> str:
    for candidate in (
        os.environ.get("CORDON_CHECKOV"),
        shutil.which("checkov"),
        str(ROOT / ".tools" / "checkov" / "bin" / "checkov"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("checkov not found (`make test` installs it into .tools/checkov)")


@pytest.mark.timeout(300)
def test_checkov_finds_nothing_unjustified() -> None:
    result = subprocess.run(
        [_checkov(), "-d", str(TERRAFORM), "--framework", "terraform", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for report in reports
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    skipped = [
        check for report in reports for check in report.get("results", {}).get("skipped_checks", [])
    ]
    assert all(check.get("check_result", {}).get("suppress_comment") for check in skipped)
