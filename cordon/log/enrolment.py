"""Enrolment of replica keys by the regional key, and the keyring auditors build.

An enrolment is a signed envelope (signed by the regional key) saying "key K
belongs to replica R of region G". Replicas publish theirs into `RECORDS` at start,
so the stream itself carries everything needed to verify it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cordon.errors import ConfigError, SignatureError
from cordon.log import envelope
from cordon.log.keys import SigningKey, public_bytes, raw_key_id

ENROLMENT_KIND = "enrolment"


def enrol(regional_key: SigningKey, region: str, replica: str, replica_key: SigningKey) -> bytes:
    """The encoded enrolment envelope for `replica_key`, signed by `regional_key`."""
    statement = {
        "kind": ENROLMENT_KIND,
        "region": region,
        "replica": replica,
        "key_id": replica_key.key_id,
        "public_key": public_bytes(replica_key.public_key),
        "enrolled_at": time.time(),
    }
    return envelope.seal(statement, regional_key).encode()


def load_signer(key_file: Path, enrolment_file: Path) -> tuple[SigningKey, bytes]:
    """A process's signing key and the enrolment that vouches for it."""
    key = SigningKey.load(key_file)
    try:
        return key, enrolment_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read enrolment {enrolment_file}: {exc}") from exc


class Keyring:
    """Keys an auditor trusts: the regional key plus every replica key it enrolled."""

    def __init__(self, region: str, regional_public_key: bytes) -> None:
        self.region = region
        self.regional_key_id = raw_key_id(regional_public_key)
        self._keys = {self.regional_key_id: regional_public_key}
        self._replica_keys: dict[str, bytes] = {}

    def add_enrolment(self, data: bytes) -> dict[str, Any]:
        env = envelope.decode(data)
        if env.key_id != self.regional_key_id:
            raise SignatureError("enrolment not signed by the regional key")
        statement = envelope.verify_envelope(env, self._keys)
        if statement.get("kind") != ENROLMENT_KIND or statement.get("region") != self.region:
            raise SignatureError("not an enrolment for this region")
        self._replica_keys[str(statement["key_id"])] = bytes(statement["public_key"])
        return statement

    @property
    def enrolled(self) -> dict[str, bytes]:
        """Key id -> raw public key of every key the regional key enrolled so far."""
        return dict(self._replica_keys)

    def verify_record(self, data: bytes) -> dict[str, Any]:
        """Verify a record envelope against the enrolled replica keys; return its payload."""
        return envelope.verify_envelope(envelope.decode(data), self._replica_keys)
