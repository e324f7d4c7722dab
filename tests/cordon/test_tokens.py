"""Bearer tokens: settings hold digests only; roles and regions decide; 401 vs 403."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cordon.errors import AuthError, ConfigError, ForbiddenError
from cordon.tokens import Tokens, digest, grant_settings


def test_a_token_issued_by_the_cli_is_accepted_by_the_entry_it_prints() -> None:
    issue = ["token", "new", "--name", "alice", "--role", "auditor", "--region", "eu-west"]
    result = subprocess.run(
        [sys.executable, "-m", "cordon_cli", *issue],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    lines = result.stdout.splitlines()
    token, entry = lines[1].strip(), json.loads(lines[3])
    assert token not in lines[3] and entry["sha256"] == digest(token)  # never stored in clear
    tokens = Tokens.from_settings([entry])
    grant = tokens.authorize(f"Bearer {token}", ("auditor",), "eu-west")
    assert grant.name == "alice"
    with pytest.raises(ForbiddenError, match="alice may not"):
        tokens.authorize(f"Bearer {token}", ("auditor",), "us-east")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer wrong-token"])
def test_no_or_an_unknown_token_is_a_401_not_a_403(header: str | None) -> None:
    tokens = Tokens.from_settings([grant_settings("sre", "s3cret-token", ["sre"], ["*"])])
    with pytest.raises(AuthError) as caught:
        tokens.authorize(header, ("sre",), None)
    assert not isinstance(caught.value, ForbiddenError)


def test_the_wrong_role_is_a_403() -> None:
    tokens = Tokens.from_settings([grant_settings("sre", "s3cret-token", ["sre"], ["*"])])
    with pytest.raises(ForbiddenError):
        tokens.authorize("Bearer s3cret-token", ("admin",), "eu-west")
    assert tokens.authorize("bearer s3cret-token", ("auditor", "sre"), None).name == "sre"


@pytest.mark.parametrize(
    "raw",
    [
        {"not": "a list"},
        [{"name": "x", "sha256": "zz", "roles": ["auditor"], "regions": ["*"]}],
        [{"name": "x", "sha256": "ab" * 32, "roles": ["root"], "regions": ["*"]}],
        [{"name": "x", "roles": ["auditor"], "regions": ["*"]}],
    ],
)
def test_malformed_token_settings_are_refused_at_start(raw: object) -> None:
    with pytest.raises(ConfigError):
        Tokens.from_settings(raw)
