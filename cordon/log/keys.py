"""Ed25519 keys, key ids, and the enrolment of replica keys by a regional key.

Each replica signs its records with its own key. The region's key signs an
enrolment statement for each replica key, so an auditor who trusts only the
regional public key can verify every record the region ever wrote.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cordon.errors import ConfigError, SignatureError


def key_id(public_key: Ed25519PublicKey) -> str:
    """`sha256:<hex of the raw public key>`, the id records and checkpoints name."""
    return raw_key_id(public_key.public_bytes_raw())


def raw_key_id(raw: bytes) -> str:
    """The key id of a raw Ed25519 public key."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    # The raw methods, not public_bytes(Encoding.Raw, ...): the serialization module
    # pulls the SSH key formats and ciphers in (about 2 MB resident in every process).
    return public_key.public_bytes_raw()


class SigningKey:
    """A private Ed25519 key with its key id computed once."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> SigningKey:
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex.strip())))
        except ValueError as exc:
            raise ConfigError("a signing key must be 32 bytes of hex") from exc

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            return cls.from_seed_hex(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read signing key {path}: {exc}") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in `path`, or a new one written there (0600) if there is none: a key
        that exists is never replaced."""
        if path.exists():
            return cls.load(path)
        from cordon.files import write_private

        key = cls.generate()
        write_private(path, key.seed_hex())
        return key

    def seed_hex(self) -> str:
        return self._private.private_bytes_raw().hex()

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SignatureError("a public key must be 32 raw bytes") from exc


def verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    try:
        public_key.verify(signature, data)
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify") from exc
