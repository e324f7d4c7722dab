"""Signatures through the system's libsodium (the sidecar's and the SDK's signer where
it is installed): the same bytes as `cryptography` and OpenSSL, and OpenSSL signing on
its own when libsodium is missing or gives other bytes."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cordon.log import ed25519_openssl, ed25519_sodium, keys
from cordon.log.keys import SigningKey, load_public_key, public_bytes, verify
from tests.cordon.log.test_ed25519_openssl import RFC8032

try:
    ed25519_sodium.load()
except (OSError, AttributeError) as exc:  # pragma: no cover - a machine without it
    # `make tools` installs it (Debian's libsodium23) where the machine lets it.
    reason = f"no libsodium on this machine ({exc}); `make tools` installs libsodium23"
    pytest.skip(reason, allow_module_level=True)
ed25519_openssl.load()
SodiumKey = ed25519_sodium.PrivateKey


@pytest.fixture
def fresh_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backend chosen yet, as in a process that has made no key."""
    monkeypatch.setattr(keys, "_backend", None)
    monkeypatch.setattr(keys, "_INVALID", ())


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_the_rfc_8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = SodiumKey.from_private_bytes(bytes.fromhex(secret))
    assert key.public_key().public_bytes_raw().hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert key.private_bytes_raw().hex() == secret


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), message=st.binary(max_size=2048))
def test_signatures_are_byte_identical_to_cryptography_and_openssl(
    secret: bytes, message: bytes
) -> None:
    signature = SodiumKey.from_private_bytes(secret).sign(message)
    assert signature == Ed25519PrivateKey.from_private_bytes(secret).sign(message)
    assert signature == ed25519_openssl.PrivateKey.from_private_bytes(secret).sign(message)


@pytest.mark.usefixtures("fresh_backend")
def test_the_sidecar_backend_signs_through_libsodium_and_verifies() -> None:
    assert keys.use_openssl_backend() is True
    key = SigningKey.generate()
    assert isinstance(key._private, SodiumKey)
    signature = key.sign(b"record")
    verify(load_public_key(public_bytes(key.public_key)), signature, b"record")
    theirs = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key.seed_hex()))
    assert signature == theirs.sign(b"record")


@pytest.mark.usefixtures("fresh_backend")
def test_without_libsodium_openssl_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ed25519_sodium, "_lib", None)
    monkeypatch.setattr(ed25519_sodium, "_NAMES", ("libno-such-sodium.so",))
    monkeypatch.setattr(ed25519_sodium.ctypes.util, "find_library", lambda name: None)
    assert keys.use_openssl_backend() is True
    key = SigningKey.generate()
    assert type(key._private) is ed25519_openssl.PrivateKey
    verify(key.public_key, key.sign(b"m"), b"m")


@pytest.mark.usefixtures("fresh_backend")
def test_a_libsodium_giving_other_bytes_signs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(SodiumKey, "sign", lambda self, data: b"\x00" * 64)
    with caplog.at_level(logging.INFO, logger="cordon.log.keys"):
        assert keys.use_openssl_backend() is True
    assert "libsodium not used" in caplog.text
    key = SigningKey.generate()
    assert type(key._private) is ed25519_openssl.PrivateKey
    verify(key.public_key, key.sign(b"m"), b"m")
