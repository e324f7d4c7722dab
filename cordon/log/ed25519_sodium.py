"""Ed25519 signing through the system's libsodium, over ctypes, where one is installed.

A record is signed on every call, before its answer is released, so the signature is on
the hot path of the sidecar and the in-process SDK. OpenSSL 3's EVP layer costs more per
signature than the arithmetic does (the one-shot `EVP_DigestSign*` sets up a provider
context each time); libsodium's `crypto_sign_detached` is the arithmetic alone, about half
the time (`bench/ed25519.py`), and maps a few hundred kilobytes. Ed25519 is
deterministic: the signature is the same bytes whichever library made it.

A signature can also be made in two halves (`nonce`, then `sign_with`): the costly one,
a random nonce `r` and `R = rB`, ahead of the message (the in-process SDK makes it while
the provider thinks), the rest once the message is known: `S = r + H(R || A || M) a`,
in libsodium's constant-time scalar arithmetic. Such a signature verifies as any
Ed25519 signature does; it is not RFC 8032's deterministic one (whose nonce is derived
from the message), and each nonce signs once (`Nonce` refuses a second use).

Only signing comes from here. A `PrivateKey` wraps the OpenSSL key the sidecar's backend
made (`cordon.log.ed25519_openssl`) for everything else (its public key, its raw bytes,
verifying), and `cordon.log.keys.use_openssl_backend` selects it only after the RFC 8032
self-test gave the right bytes. `load()` raises `OSError` or `AttributeError` when no
libsodium (or a symbol of it) is there; the OpenSSL key then signs on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from typing import Any

from cordon.log import ed25519_openssl as openssl

__all__ = ["Nonce", "PrivateKey", "load"]

SEED_BYTES = 32
SECRET_BYTES = 64  # libsodium's secret key: the seed, then the public key
SIGNATURE_BYTES = 64
SCALAR_BYTES = 32
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
# A signature in two halves (libsodium 1.0.16 and later; without them, `nonce` is None).
_HALVES: dict[str, tuple[Any, list[Any]]] = {
    "crypto_core_ed25519_scalar_random": (None, [_BUF]),
    "crypto_core_ed25519_scalar_reduce": (None, [_BUF, _BUF]),
    "crypto_core_ed25519_scalar_mul": (None, [_BUF, _BUF, _BUF]),
    "crypto_core_ed25519_scalar_add": (None, [_BUF, _BUF, _BUF]),
    "crypto_scalarmult_ed25519_base_noclamp": (ctypes.c_int, [_BUF, _BUF]),
}
_halves = False  # bound

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
    _bind_halves(lib)
    _lib = lib


def _bind_halves(lib: ctypes.PyDLL) -> None:
    global _halves
    try:
        functions = [(getattr(lib, name), types) for name, types in _HALVES.items()]
    except AttributeError:
        return  # an older libsodium: whole signatures only
    for function, (restype, argtypes) in functions:
        function.restype, function.argtypes = restype, argtypes
    _halves = True


class Nonce:
    """A signature's first half: a fresh random scalar `r` and `R = rB`. It signs one
    message (`PrivateKey.sign_with`); `r` is wiped when it has."""

    __slots__ = ("_lock", "_r", "point", "spent")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a context copied into two threads shares it
        self._r = ctypes.create_string_buffer(SCALAR_BYTES)
        point = ctypes.create_string_buffer(SCALAR_BYTES)
        _lib.crypto_core_ed25519_scalar_random(self._r)
        if _lib.crypto_scalarmult_ed25519_base_noclamp(point, self._r) != 0:
            raise ValueError("libsodium: the nonce's point could not be made")
        self.point = point.raw
        self.spent = False

    def spend(self) -> ctypes.Array[ctypes.c_char] | None:
        """`r`, once; None after: a nonce that signed two messages would give the key
        away."""
        with self._lock:
            if self.spent:
                return None
            self.spent = True
            return self._r

    def wipe(self) -> None:
        ctypes.memset(self._r, 0, SCALAR_BYTES)

    def __del__(self) -> None:  # one never spent is wiped too
        if getattr(self, "_r", None) is not None:
            self.wipe()


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
        self._public = public.raw
        self._scalar: ctypes.Array[ctypes.c_char] | None = None
        if _halves:  # the secret scalar `a`, as RFC 8032 derives it, reduced mod L
            digest = bytearray(hashlib.sha512(seed).digest()[:SCALAR_BYTES])
            digest[0] &= 248
            digest[31] = (digest[31] & 127) | 64
            self._scalar = ctypes.create_string_buffer(SCALAR_BYTES)
            wide = ctypes.create_string_buffer(2 * SCALAR_BYTES)  # a, then zeros
            ctypes.memmove(wide, (ctypes.c_char * SCALAR_BYTES).from_buffer(digest), SCALAR_BYTES)
            _lib.crypto_core_ed25519_scalar_reduce(self._scalar, wide)
            ctypes.memset(wide, 0, 2 * SCALAR_BYTES)
            digest[:] = bytes(SCALAR_BYTES)

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

    def nonce(self) -> Nonce | None:
        """A signature's costly first half, made now; None where this libsodium cannot
        sign in halves."""
        return Nonce() if self._scalar is not None else None

    def sign_with(self, data: bytes, nonce: Nonce) -> bytes:
        """The signature of `data` finished from `nonce`: `R || S`, where
        `S = r + H(R || A || data) a mod L`; a whole signature if the nonce signed
        before."""
        assert self._scalar is not None
        r = nonce.spend()
        if r is None:
            return self.sign(data)
        product = ctypes.create_string_buffer(SCALAR_BYTES)
        try:
            challenge = ctypes.create_string_buffer(SCALAR_BYTES)
            digest = hashlib.sha512(nonce.point + self._public + data).digest()
            _lib.crypto_core_ed25519_scalar_reduce(challenge, digest)
            _lib.crypto_core_ed25519_scalar_mul(product, challenge, self._scalar)
            s = ctypes.create_string_buffer(SCALAR_BYTES)
            _lib.crypto_core_ed25519_scalar_add(s, r, product)
            return nonce.point + s.raw
        finally:
            nonce.wipe()
            ctypes.memset(product, 0, SCALAR_BYTES)  # k·a: with k public, it gives a
