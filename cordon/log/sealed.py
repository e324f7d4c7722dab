"""Signed summary messages: what a region's sealer publishes to `SUMMARY`, and what the
central view accepts only when the signature holds under a key the regional key enrolled.

A message is the summary's JSON, a newline, then `<key id> <base64 Ed25519 signature>`
over exactly those JSON bytes. The JSON is compact (no raw newline can occur in it), so
the last newline is the boundary. Verifiers check the bytes they were given.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cordon.errors import SignatureError
from cordon.log.keys import SigningKey, load_public_key, verify

__all__ = ["open_sealed", "seal"]


def seal(body: bytes, key: SigningKey) -> bytes:
    return body + b"\n" + key.key_id.encode() + b" " + base64.b64encode(key.sign(body))


def open_sealed(data: bytes, trusted: Mapping[str, bytes]) -> bytes:
    """The summary JSON, if `data` is signed by one of `trusted` (key id -> raw key)."""
    body, newline, trailer = data.rpartition(b"\n")
    key_id, space, signature = trailer.partition(b" ")
    if not newline or not space:
        raise SignatureError("unsigned summary")
    raw = trusted.get(key_id.decode(errors="replace"))
    if raw is None:
        raise SignatureError(f"summary signed by a key the region never enrolled ({key_id!r:.80})")
    try:
        verify(_public(raw), base64.b64decode(signature, validate=True), body)
    except binascii.Error as exc:
        raise SignatureError("summary signature is not base64") from exc
    return body


@functools.lru_cache(maxsize=256)
def _public(raw: bytes) -> Ed25519PublicKey:
    return load_public_key(raw)
