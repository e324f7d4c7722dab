"""The configuration files our users already have (`../shared/seed-configs/`, the seeds'
printed files with their indentation put back) are kept here byte for byte: tests that
run them run the users' files, not a tidied copy. Each is pinned by its SHA-256, and
compared with the original when `../shared` is beside this checkout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parent / "seed_configs"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "seed-configs"

PINNED = {
    "env-providers.yaml": "cba8e021996a53b47eed3edeb5b8335d425cf9b0ad94218f6c4138476f89d107",
    "git-synced.yaml": "dda9c4e7bda65ab75643673b4c2136f63cda7d1edb4f2a1b18a619ba8ab6877d",
    "reverse-proxy.yaml": "f2a559e69e4adb97f7268634e6421c1ae60c8677c0f0741d9e9d800d3a8cdd35",
    "sidecar.yaml": "e0cf4222bc35f811d279181ea9f79ac74fa4a94577ac8f3a5ce2e9e990ead107",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_seed_config_is_the_users_file_byte_for_byte(name: str) -> None:
    kept = SEEDS / name
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == PINNED[name]
    users = SHARED / name
    if users.is_file():  # beside this checkout: the same bytes as the original too
        assert kept.read_bytes() == users.read_bytes()


def test_every_seed_config_is_kept() -> None:
    assert sorted(p.name for p in SEEDS.glob("*.yaml")) == sorted(PINNED)
    if SHARED.is_dir():
        assert sorted(p.name for p in SHARED.glob("*.yaml")) == sorted(PINNED)
