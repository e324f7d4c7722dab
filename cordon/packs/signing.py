"""Signed policy packs: the statement a policy owner signs, and its verification.

A signed pack is JSON: `{"statement": "<canonical JSON text>", "signatures": [...]}`.
The statement names the pack, its revision, when it expires, which regions it is
for, the SHA-256 of its document and the document itself. Each signature is
Ed25519 over the statement's exact UTF-8 bytes by a key named `sha256:<hex of the
raw public key>`. Verifiers check those bytes as carried and only then parse them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cordon.errors import PackError, SignatureError
from cordon.log.keys import SigningKey, load_public_key, raw_key_id, verify
from cordon.packs.document import Pack, canonical_bytes, document_hash, parse_statement

FORMAT = "cordon-pack/1"
ALL_REGIONS = "*"


@dataclass(frozen=True)
class Verified:
    """A statement whose signature checked out, and who signed it."""

    statement: dict[str, Any]
    signed_by: tuple[str, ...]


def statement_bytes(
    document: Mapping[str, Any],
    name: str,
    revision: int,
    expires_at: int,
    regions: Iterable[str],
    signed_at: int | None = None,
) -> bytes:
    return canonical_bytes(
        {
            "format": FORMAT,
            "name": name,
            "revision": revision,
            "expires_at": expires_at,
            "regions": sorted(set(regions)),
            "hash": document_hash(document),
            "signed_at": int(time.time()) if signed_at is None else signed_at,
            "document": document,
        }
    )


def sign(statement: bytes, keys: Iterable[SigningKey]) -> bytes:
    signatures = [
        {"key_id": key.key_id, "sig": base64.b64encode(key.sign(statement)).decode()}
        for key in keys
    ]
    if not signatures:
        raise PackError("a pack needs at least one signing key")
    return json.dumps(
        {"statement": statement.decode(), "signatures": signatures}, indent=1
    ).encode()


def verify_signed(data: bytes, trusted: Mapping[str, bytes]) -> Verified:
    """Check the signatures of a signed pack against `trusted` (key id -> raw public key)."""
    try:
        envelope = json.loads(data)
        statement_text = envelope["statement"]
        signatures = envelope["signatures"]
        if not isinstance(statement_text, str) or not isinstance(signatures, list):
            raise TypeError("statement must be text and signatures a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise PackError(f"not a signed pack: {exc}") from exc
    signed = statement_text.encode()
    signed_by = tuple(_good_signers(signed, signatures, trusted))
    if not signed_by:
        named = [str(s.get("key_id")) for s in signatures if isinstance(s, dict)]
        raise PackError(
            f"no valid signature from a trusted key (signed by {', '.join(named) or 'nobody'})"
        )
    try:
        statement = json.loads(signed)
    except ValueError as exc:
        raise PackError("signed statement is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("format") != FORMAT:
        raise PackError(f"signed statement is not {FORMAT}")
    if statement.get("hash") != document_hash(statement.get("document")):
        raise PackError("content hash does not match the document")
    return Verified(statement, signed_by)


def _good_signers(
    signed: bytes, signatures: list[Any], trusted: Mapping[str, bytes]
) -> Iterable[str]:
    for entry in signatures:
        if not isinstance(entry, dict) or entry.get("key_id") not in trusted:
            continue
        try:
            signature = base64.b64decode(str(entry.get("sig")), validate=True)
            verify(load_public_key(trusted[entry["key_id"]]), signature, signed)
        except (SignatureError, binascii.Error):
            continue
        yield str(entry["key_id"])


def trust_root(public_keys_hex: Iterable[str]) -> dict[str, bytes]:
    """Key id -> raw public key, from hex-encoded raw Ed25519 public keys."""
    root = {}
    for hex_key in public_keys_hex:
        try:
            raw = bytes.fromhex(hex_key.strip())
            load_public_key(raw)
        except (ValueError, SignatureError) as exc:
            raise PackError(f"not a raw Ed25519 public key in hex: {hex_key[:16]}...") from exc
        root[raw_key_id(raw)] = raw
    return root


def decode(data: bytes, trusted: Mapping[str, bytes]) -> Pack:
    """Verify a signed pack and build its enforceable form."""
    verified = verify_signed(data, trusted)
    return parse_statement(verified.statement, verified.signed_by)


def claimed(data: bytes) -> dict[str, Any]:
    """What a signed pack says about itself, unverified: for naming what was refused."""
    try:
        statement = json.loads(json.loads(data)["statement"])
    except (ValueError, KeyError, TypeError, RecursionError):  # anything a stranger wrote
        statement = None
    if not isinstance(statement, dict):
        return {"name": None, "revision": None, "hash": None}
    return {k: statement.get(k) for k in ("name", "revision", "hash")}
