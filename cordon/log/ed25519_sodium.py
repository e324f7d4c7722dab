"""Ed25519 signing through the system's libsodium, over ctypes, where one is installed.

A record is signed on every call, before its answer is released, so the signature is on
the hot path of the sidecar and the in-process SDK. OpenSSL 3's EVP layer costs more per
signature than the arithmetic does (the one-shot `EVP_DigestSign*` sets up a provider
context each time); libsodium's `crypto_sign_detached` is the arithmetic alone, about half
the time (`bench/ed25519.py`), and maps a few hundred kilobytes. Ed25519 is
deterministic: the signature is the same bytes whichever library made it.

Only signing comes from here. A `PrivateKey` wraps the OpenSSL key the sidecar's backend
made (`cordon.log.ed25519_openssl`) for everything else (its public key, its raw bytes,
verifying), and `cordon.log.keys.use_openssl_backend` selects it only after the RFC 8032
self-test gave the right bytes. `load()` raises `OSError` or `AttributeError` when no
libsodium (or a symbol of it) is there; the OpenSSL key then signs on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from cordon.log import ed25519_openssl as openssl

__all__ = ["PrivateKey", "load"]

SEED_BYTES = 32
SECRET_BYTES = 64  # libsodium's secret key: the seed, then the public key
SIGNATURE_BYTES = 64
# The names the dynamic linker knows libsodium by (Debian's libsodium23, Alpine's), and
# Homebrew's paths, which macOS's linker does not search; `find_library` last, as it
# may spawn a helper.
_NAMES = (
    "libsodium.so.23",
    "libsodium.so.26",
    "libsodium.so",
    "libsodium.dylib",
    "/opt/homebrew/lib/libsodium.dylib",
    "/usr/local/lib/libsodium.dylib",
)

_P = ctypes.c_void_p
_BUF = ctypes.c_char_p
_ULL = ctypes.c_ulonglong
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "sodium_init": (ctypes.c_int, []),
    "crypto_sign_seed_keypair": (ctypes.c_int, [_BUF, _BUF, _BUF]),
    # The library holds the GIL while it runs (PyDLL): a signature is tens of
    # microseconds, shorter than handing the interpreter to another thread and back.
    "crypto_sign_detached": (ctypes.c_int, [_BUF, ctypes.POINTER(_ULL), _BUF, _ULL, _BUF]),
}

_lib: Any = None


def load() -> None:
    """Bind libsodium's signing functions (idempotent)."""
    global _lib
    if _lib is not None:
        return
    lib = _open()
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)  # AttributeError: a libsodium without it
        function.restype, function.argtypes = restype, argtypes
    if lib.sodium_init() < 0:
        raise OSError("libsodium: sodium_init failed")
    _lib = lib


def _open() -> ctypes.PyDLL:
    for name in _NAMES:
        try:
            return ctypes.PyDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("sodium")
    if found is None:
        raise OSError("no libsodium found")
    return ctypes.PyDLL(found)


class PrivateKey:
    """An OpenSSL Ed25519 key whose signatures libsodium makes."""

    def __init__(self, key: openssl.PrivateKey) -> None:
        self._key = key
        seed = key.private_bytes_raw()
        public = ctypes.create_string_buffer(SEED_BYTES)
        self._secret = ctypes.create_string_buffer(SECRET_BYTES)
        if _lib.crypto_sign_seed_keypair(public, self._secret, seed) != 0:
            raise ValueError("libsodium: crypto_sign_seed_keypair failed")
        if public.raw != key.public_key().public_bytes_raw():
            raise ValueError("libsodium and OpenSSL derive different public keys")

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> PrivateKey:
        return cls(openssl.PrivateKey.from_private_bytes(raw))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(openssl.PrivateKey.generate())

    def public_key(self) -> openssl.PublicKey:
        return self._key.public_key()

    def private_bytes_raw(self) -> bytes:
        return self._key.private_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        signature = ctypes.create_string_buffer(SIGNATURE_BYTES)
        if _lib.crypto_sign_detached(signature, None, data, len(data), self._secret) != 0:
            raise ValueError("libsodium: crypto_sign_detached failed")
        return signature.raw
