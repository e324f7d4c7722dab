"""Ed25519 through the OpenSSL that `ssl` already maps, over ctypes.

`cryptography` carries its own statically linked OpenSSL: about 6 MB resident beside the
libcrypto the interpreter's `ssl` module has mapped anyway. The sidecar, whose memory
budget is 40 MB, signs and verifies through that libcrypto instead (selected by
`cordon.log.keys.use_openssl_backend`); the regional processes keep `cryptography`.

The keys mirror the part of `cryptography`'s Ed25519 API that `cordon.log.keys` uses
(`from_private_bytes`, `generate`, `public_key`, `private_bytes_raw`, `sign`;
`from_public_bytes`, `public_bytes_raw`, `verify`), with the same bytes in and out:
Ed25519 is deterministic, so a signature is the same whichever library made it.
`load()` raises `OSError` or `AttributeError` when the library or a symbol is missing.
"""

from __future__ import annotations

import ctypes
import os
import ssl
from typing import Any

__all__ = ["InvalidSignature", "PrivateKey", "PublicKey", "load"]

EVP_PKEY_ED25519 = 1087  # NID_ED25519
RAW_BYTES = 32  # a raw Ed25519 key, private or public
SIGNATURE_BYTES = 64

_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_BUF = ctypes.c_char_p
_INT = ctypes.c_int
# name: (restype, argtypes); OpenSSL 1.1.1 and 3.x have them all.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "EVP_PKEY_new_raw_private_key": (_P, [_INT, _P, _BUF, _SIZE]),
    "EVP_PKEY_new_raw_public_key": (_P, [_INT, _P, _BUF, _SIZE]),
    "EVP_PKEY_get_raw_private_key": (_INT, [_P, _BUF, ctypes.POINTER(_SIZE)]),
    "EVP_PKEY_get_raw_public_key": (_INT, [_P, _BUF, ctypes.POINTER(_SIZE)]),
    "EVP_PKEY_free": (None, [_P]),
    "EVP_MD_CTX_new": (_P, []),
    "EVP_MD_CTX_free": (None, [_P]),
    "EVP_DigestSignInit": (_INT, [_P, _P, _P, _P, _P]),
    "EVP_DigestSign": (_INT, [_P, _BUF, ctypes.POINTER(_SIZE), _BUF, _SIZE]),
    "EVP_DigestVerifyInit": (_INT, [_P, _P, _P, _P, _P]),
    "EVP_DigestVerify": (_INT, [_P, _BUF, _SIZE, _BUF, _SIZE]),
    "ERR_clear_error": (None, []),
}

_lib: Any = None  # the loaded libcrypto, its functions typed (`load`)


class InvalidSignature(Exception):
    """The signature does not verify with this key over these bytes."""


def load() -> None:
    """Bind the functions of the libcrypto `ssl` mapped (idempotent)."""
    global _lib
    if _lib is not None:
        return
    lib = ctypes.CDLL(_library_path())
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)  # AttributeError: an OpenSSL without it
        function.restype, function.argtypes = restype, argtypes
    _lib = lib


def _library_path() -> str:
    """The libcrypto already in this process (mapped by `ssl`), so loading it maps
    nothing new; else what the dynamic linker would find."""
    assert ssl.OPENSSL_VERSION  # `ssl` is imported for this: it maps libcrypto
    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and os.path.basename(fields[5]).startswith("libcrypto."):
                    return fields[5]
    except OSError:
        pass  # no procfs (macOS): ask the linker, which spawns a helper or two
    import ctypes.util

    found = ctypes.util.find_library("crypto")
    if found is None:
        raise OSError("no libcrypto found")
    return found


def _fail(what: str) -> ValueError:
    # A failed call leaves errors on this thread's OpenSSL queue, where `ssl` would
    # read them as its own on its next call: cleared here.
    _lib.ERR_clear_error()
    return ValueError(f"OpenSSL: {what}")


def _raw(getter: Any, pkey: int) -> bytes:
    out = ctypes.create_string_buffer(RAW_BYTES)
    size = _SIZE(RAW_BYTES)
    if getter(pkey, out, ctypes.byref(size)) != 1:
        raise _fail("raw key not readable")
    return out.raw[: size.value]


class _Key:
    """An EVP_PKEY, freed with this object."""

    _pkey = 0  # none yet (EVP_PKEY_free takes NULL)

    def __del__(self) -> None:
        if self._pkey and _lib is not None:  # _lib is None at interpreter exit
            _lib.EVP_PKEY_free(self._pkey)
            self._pkey = 0


def _new_pkey(make: Any, raw: bytes, what: str) -> int:
    """An EVP_PKEY made by `make` (EVP_PKEY_new_raw_public_key or _private_key) from
    the 32 raw bytes of an Ed25519 `what` key."""
    if len(raw) != RAW_BYTES:
        raise ValueError(f"An Ed25519 {what} key is 32 bytes long")
    pkey = int(make(EVP_PKEY_ED25519, None, raw, RAW_BYTES) or 0)
    if not pkey:
        raise _fail(f"not an Ed25519 {what} key")
    return pkey


class PublicKey(_Key):
    def __init__(self, pkey: int) -> None:
        self._pkey = pkey
        self._raw = _raw(_lib.EVP_PKEY_get_raw_public_key, pkey)

    @classmethod
    def from_public_bytes(cls, raw: bytes) -> PublicKey:
        return cls(_new_pkey(_lib.EVP_PKEY_new_raw_public_key, raw, "public"))

    def public_bytes_raw(self) -> bytes:
        return self._raw

    def verify(self, signature: bytes, data: bytes) -> None:
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature
        ctx = _lib.EVP_MD_CTX_new()
        if not ctx:
            raise MemoryError("OpenSSL: EVP_MD_CTX_new")
        try:
            ok = _lib.EVP_DigestVerifyInit(ctx, None, None, None, self._pkey) == 1 and (
                _lib.EVP_DigestVerify(ctx, signature, SIGNATURE_BYTES, data, len(data)) == 1
            )
        finally:
            _lib.EVP_MD_CTX_free(ctx)
        if not ok:
            _lib.ERR_clear_error()
            raise InvalidSignature


class PrivateKey(_Key):
    def __init__(self, pkey: int) -> None:
        self._pkey = pkey
        self._public: PublicKey | None = None

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> PrivateKey:
        return cls(_new_pkey(_lib.EVP_PKEY_new_raw_private_key, raw, "private"))

    @classmethod
    def generate(cls) -> PrivateKey:
        # An Ed25519 private key is 32 random bytes (RFC 8032, 5.1.5), as OpenSSL's own
        # key generation makes it.
        return cls.from_private_bytes(os.urandom(RAW_BYTES))

    def public_key(self) -> PublicKey:
        if self._public is None:
            self._public = PublicKey.from_public_bytes(
                _raw(_lib.EVP_PKEY_get_raw_public_key, self._pkey)
            )
        return self._public

    def private_bytes_raw(self) -> bytes:
        return _raw(_lib.EVP_PKEY_get_raw_private_key, self._pkey)

    def sign(self, data: bytes) -> bytes:
        ctx = _lib.EVP_MD_CTX_new()
        if not ctx:
            raise MemoryError("OpenSSL: EVP_MD_CTX_new")
        signature = ctypes.create_string_buffer(SIGNATURE_BYTES)
        size = _SIZE(SIGNATURE_BYTES)
        try:
            if _lib.EVP_DigestSignInit(ctx, None, None, None, self._pkey) != 1:
                raise _fail("EVP_DigestSignInit")
            if _lib.EVP_DigestSign(ctx, signature, ctypes.byref(size), data, len(data)) != 1:
                raise _fail("EVP_DigestSign")
        finally:
            _lib.EVP_MD_CTX_free(ctx)
        return signature.raw[: size.value]
