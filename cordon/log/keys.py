"""Ed25519 keys, key ids, and the enrolment of replica keys by a regional key.

Each replica signs its records with its own key. The region's key signs an
enrolment statement for each replica key, so an auditor who trusts only the
regional public key can verify every record the region ever wrote.

Keys are `cryptography`'s, or (`use_openssl_backend`, the sidecar's and the SDK's
choice) keys over the libcrypto the `ssl` module maps (`cordon.log.ed25519_openssl`),
signing through the system's libsodium where it has one (`cordon.log.ed25519_sodium`):
the same bytes in and out, the same key files, `SignatureError` from either.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from cordon.errors import ConfigError, SignatureError

log = logging.getLogger("cordon.log.keys")
# A signature's first half made ahead (`SigningKey.sign_ahead`), for the next signature
# made in the same context (one call's), and only that one.
_AHEAD: ContextVar[Any] = ContextVar("cordon_signature_ahead", default=None)


class PublicKey(Protocol):
    """A public Ed25519 key as either backend holds it."""

    def public_bytes_raw(self) -> bytes: ...

    def verify(self, signature: bytes, data: bytes) -> None: ...


class PrivateKey(Protocol):
    """A private Ed25519 key as either backend holds it."""

    def public_key(self) -> Any: ...  # a `PublicKey`

    def private_bytes_raw(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class _Backend:
    """Where keys are made from raw bytes, and what a bad signature raises there.

    `cryptography` unless `use_openssl_backend` chose otherwise; imported on the first
    key, so a process that selects the other one never loads it."""

    def __init__(self, private: Any, public: Any, invalid: type[Exception]) -> None:
        self.private, self.public, self.invalid = private, public, invalid


_backend: _Backend | None = None
# What a failed verification raises, for every backend loaded: a key keeps the backend
# it was made with.
_INVALID: tuple[type[Exception], ...] = ()


def _select(backend: _Backend) -> _Backend:
    global _backend, _INVALID
    _backend, _INVALID = backend, (*_INVALID, backend.invalid)
    return backend


def _current() -> _Backend:
    return _backend if _backend is not None else _select(_cryptography())


def _cryptography() -> _Backend:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return _Backend(ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey, InvalidSignature)


def _openssl() -> _Backend:
    """OSError or AttributeError if libcrypto or one of its functions is missing."""
    from cordon.log import ed25519_openssl as openssl

    openssl.load()
    return _Backend(openssl.PrivateKey, openssl.PublicKey, openssl.InvalidSignature)


def _sodium(backend: _Backend) -> _Backend:
    """`backend` with its signatures made by libsodium (OSError or AttributeError if
    the system has none, or one without a symbol)."""
    from cordon.log import ed25519_sodium as sodium

    sodium.load()
    return _Backend(sodium.PrivateKey, backend.public, backend.invalid)


def libsodium_loads() -> bool:
    """Whether the system's libsodium can be loaded (not yet whether it signs right:
    `use_openssl_backend` self-tests it)."""
    from cordon.log import ed25519_sodium as sodium

    try:
        sodium.load()
    except (OSError, AttributeError):
        return False
    return True


def use_openssl_backend() -> bool:
    """Sign and verify through the libcrypto `ssl` maps (cordon.log.ed25519_openssl)
    instead of `cryptography`, about 6 MB less resident: for the sidecar and the SDK,
    called before any key is made. Signatures go through libsodium where the system has
    it and it passes the same self-test (about half the time per record). Kept to
    `cryptography` (and logged) if a symbol is missing or the RFC 8032 self-test fails.
    Whether the OpenSSL backend is in use."""
    try:
        backend = _openssl()
        _self_test(backend)
    # Whatever goes wrong here (a missing symbol, a ctypes mismatch, other bytes) means
    # this libcrypto is not to be trusted with keys: cryptography remains.
    except Exception as exc:
        log.warning("Ed25519 stays with cryptography: the libcrypto of ssl failed (%s)", exc)
        return False
    _select(_with_sodium(backend))
    return True


def _with_sodium(backend: _Backend) -> _Backend:
    """`backend`, signing through libsodium if it is there and gives RFC 8032's bytes."""
    try:
        faster = _sodium(backend)
        _self_test(faster)
    # As above: a libsodium that fails in any way signs nothing; OpenSSL signs.
    except Exception as exc:
        log.info("Ed25519 signatures through OpenSSL: libsodium not used (%s)", exc)
        return backend
    return faster


# RFC 8032, 7.1, test 1: secret key, public key, signature of the empty message.
RFC8032_TEST1 = (
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
)


def _self_test(backend: _Backend) -> None:
    secret, public, signature = (bytes.fromhex(h) for h in RFC8032_TEST1)
    key = backend.private.from_private_bytes(secret)
    if key.public_key().public_bytes_raw() != public or key.sign(b"") != signature:
        raise ValueError("RFC 8032 test 1 gave other bytes")
    trusted = backend.public.from_public_bytes(public)
    try:
        trusted.verify(signature, b"")
    except backend.invalid as exc:
        raise ValueError("RFC 8032 test 1 did not verify") from exc
    try:
        trusted.verify(signature, b"x")
    except backend.invalid:
        return
    raise ValueError("RFC 8032 test 1 verified a wrong message")


def key_id(public_key: PublicKey) -> str:
    """`sha256:<hex of the raw public key>`, the id records and checkpoints name."""
    return raw_key_id(public_key.public_bytes_raw())


def raw_key_id(raw: bytes) -> str:
    """The key id of a raw Ed25519 public key."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_bytes(public_key: PublicKey) -> bytes:
    # The raw methods, not public_bytes(Encoding.Raw, ...): the serialization module
    # pulls the SSH key formats and ciphers in (about 2 MB resident in every process).
    return public_key.public_bytes_raw()


class SigningKey:
    """A private Ed25519 key with its key id computed once."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._private = private_key
        self.public_key: PublicKey = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(_current().private.generate())

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> SigningKey:
        try:
            return cls(_current().private.from_private_bytes(bytes.fromhex(seed_hex.strip())))
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
        ahead = _AHEAD.get()
        finish = getattr(self._private, "sign_with", None) if ahead is not None else None
        if finish is not None:  # made for this context's next signature: this one
            _AHEAD.set(None)
            return bytes(finish(data, ahead))
        return self._private.sign(data)

    def sign_ahead(self) -> None:
        """Make the costly half of this context's next signature now, where the time is
        free (the in-process SDK: while the provider answers). Only where libsodium signs
        (`cordon.log.ed25519_sodium`): that signature is then made from a random nonce,
        not RFC 8032's derived one, and verifies as any other."""
        nonce = getattr(self._private, "nonce", None)
        if nonce is not None:
            _AHEAD.set(nonce())


def load_public_key(raw: bytes) -> PublicKey:
    try:
        key: PublicKey = _current().public.from_public_bytes(raw)
    except ValueError as exc:
        raise SignatureError("a public key must be 32 raw bytes") from exc
    return key


def verify(public_key: PublicKey, signature: bytes, data: bytes) -> None:
    try:
        public_key.verify(signature, data)
    except _INVALID as exc:
        raise SignatureError("signature does not verify") from exc
