"""Signed envelopes: msgpack payload bytes, key id, Ed25519 signature over those bytes.

Verifiers check the exact bytes they were given and never re-serialize, so any
encoder can produce records and a one-byte change is always caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from cordon.errors import SignatureError
from cordon.log.keys import SigningKey, load_public_key, verify


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    key_id: str
    signature: bytes

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb({"p": self.payload, "k": self.key_id, "s": self.signature})
        return packed

    def payload_dict(self) -> dict[str, Any]:
        try:
            value = msgpack.unpackb(self.payload)
        except (ValueError, msgpack.UnpackException) as exc:
            raise SignatureError("envelope payload is not msgpack") from exc
        if not isinstance(value, dict):
            raise SignatureError("envelope payload is not a map")
        return value


def seal(payload: Mapping[str, Any], key: SigningKey) -> Envelope:
    data: bytes = msgpack.packb(payload)
    return Envelope(data, key.key_id, key.sign(data))


def decode(data: bytes) -> Envelope:
    try:
        raw = msgpack.unpackb(data)
        return Envelope(bytes(raw["p"]), str(raw["k"]), bytes(raw["s"]))
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise SignatureError("not a signed envelope") from exc


def verify_envelope(envelope: Envelope, trusted: Mapping[str, bytes]) -> dict[str, Any]:
    """Check the signature against the trusted raw public key of its key id."""
    raw_key = trusted.get(envelope.key_id)
    if raw_key is None:
        raise SignatureError(f"unknown key id {envelope.key_id}")
    verify(load_public_key(raw_key), envelope.signature, envelope.payload)
    return envelope.payload_dict()
