"""`cordon keys`: a region's keys and enrolments as a platform engineer makes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cordon.errors import SignatureError
from cordon.log.enrolment import Keyring
from cordon.log.keys import SigningKey


def _cordon(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cordon_cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_enrolments_verify_under_the_regional_key_only_and_nothing_is_replaced(
    tmp_path: Path,
) -> None:
    regional = tmp_path / "regional.key"
    public = _cordon("new", str(regional)).strip()
    out = tmp_path / "identity"
    names = ["cordon-gateway-0", "cordon-gateway-1", "sealer"]
    _cordon(
        "enrol", "--regional-key", str(regional), "--region", "eu-west", "--out", str(out), *names
    )
    files = sorted(out.iterdir())
    assert [f.name for f in files] == sorted(
        f"{n}.{k}" for n in names for k in ("enrolment", "key")
    )
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in [*files, regional])

    keyring = Keyring("eu-west", bytes.fromhex(public))
    for name in names:
        statement = keyring.add_enrolment((out / f"{name}.enrolment").read_bytes())
        assert statement["replica"] == name
        assert statement["key_id"] == SigningKey.load(out / f"{name}.key").key_id
    with pytest.raises(SignatureError):  # another region's auditor does not take it
        Keyring("us-east", bytes.fromhex(public)).add_enrolment(
            (out / "sealer.enrolment").read_bytes()
        )

    before = {f.name: f.read_bytes() for f in files}
    assert _cordon("new", str(regional)).strip() == public
    _cordon(
        "enrol", "--regional-key", str(regional), "--region", "eu-west", "--out", str(out), *names
    )
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
