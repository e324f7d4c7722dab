"""NATS users as nkeys: each role's identity is a seed in a 0600 file and the public key
its server's config names (`cordon nats identities`, and the local topology)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import nkeys

from cordon.files import write_private

__all__ = ["Identity", "new_identity", "public_key_of"]


@dataclass(frozen=True)
class Identity:
    """A NATS user: the public nkey its server knows, and the file with its seed."""

    public_key: str
    seed_file: str


def public_key_of(seed_file: Path) -> str:
    """The public nkey of the seed in `seed_file`."""
    return str(nkeys.from_seed(bytearray(seed_file.read_bytes().strip())).public_key.decode())


def new_identity(seed_file: Path) -> Identity:
    """A fresh nkey user; the seed is written 0600 from the start."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    write_private(seed_file, seed.decode())
    return Identity(nkeys.from_seed(bytearray(seed)).public_key.decode(), str(seed_file))
