"""Signatures through the system's libsodium (the sidecar's and the SDK's signer where
it is installed): the same bytes as `cryptography` and OpenSSL, and OpenSSL signing on
its own when libsodium is missing or gives other bytes."""

from __future__ import annotations

import contextvars
import logging

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cordon.log import ed25519_openssl, ed25519_sodium, keys
from cordon.log.keys import SigningKey, load_public_key, public_bytes, verify
from tests.cordon.log.test_ed25519_openssl import RFC8032

try:
    ed25519_sodium.load()
except (OSError, AttributeError) as exc:  # pragma: no cover - a machine without it
    # Until it is installed: `make tools` does so on Debian as root (libsodium23).
    reason = (
        f"no libsodium on this machine ({exc}) until it is installed: `make tools` "
        "installs Debian's libsodium23 when run as root"
    )
    pytest.skip(reason, allow_module_level=True)
ed25519_openssl.load()
SodiumKey = ed25519_sodium.PrivateKey
# Signatures in halves need libsodium 1.0.16's scalar functions (libsodium23 is 1.0.18).
IN_HALVES = pytest.mark.skipif(
    not ed25519_sodium._halves,
    reason="this libsodium predates 1.0.16 and signs whole only, until it is upgraded",
)


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


@IN_HALVES
@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), message=st.binary(max_size=2048))
def test_a_signature_made_in_halves_verifies_as_any_other(secret: bytes, message: bytes) -> None:
    """The in-process SDK's signature, its nonce made while the provider answered."""
    key = SodiumKey.from_private_bytes(secret)
    nonce = key.nonce()
    assert nonce is not None, "libsodium 1.0.16 or later signs in halves"
    signature = key.sign_with(message, nonce)
    theirs = Ed25519PrivateKey.from_private_bytes(secret).public_key()
    theirs.verify(signature, message)  # cryptography's verifier: raises if it is not valid
    ed25519_openssl.PrivateKey.from_private_bytes(secret).public_key().verify(signature, message)
    with pytest.raises(InvalidSignature):
        theirs.verify(signature, message + b"x")


@IN_HALVES
def test_a_nonce_signs_one_message_and_each_signature_has_its_own() -> None:
    key = SodiumKey.generate()
    nonce = key.nonce()
    assert nonce is not None
    first = key.sign_with(b"record", nonce)
    # Reused, it would give the key away: a second message gets a whole signature instead.
    again = key.sign_with(b"another record", nonce)
    assert again == Ed25519PrivateKey.from_private_bytes(key.private_bytes_raw()).sign(
        b"another record"
    )
    second_nonce = key.nonce()
    assert second_nonce is not None
    assert key.sign_with(b"record", second_nonce)[:32] != first[:32]  # a fresh R each time


@IN_HALVES
@pytest.mark.usefixtures("fresh_backend")
def test_a_half_made_ahead_signs_only_its_own_contexts_next_signature() -> None:
    assert keys.use_openssl_backend() is True
    key = SigningKey.generate()
    public = load_public_key(public_bytes(key.public_key))
    deterministic = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key.seed_hex()))

    def one_call() -> tuple[bytes, bytes]:
        key.sign_ahead()
        return key.sign(b"record"), key.sign(b"record")

    ahead, after = contextvars.copy_context().run(one_call)
    verify(public, ahead, b"record")
    assert ahead != deterministic.sign(b"record")  # from the random nonce
    assert after == deterministic.sign(b"record")  # the nonce went with the first
    contextvars.copy_context().run(key.sign_ahead)  # another call's, never used here
    assert key.sign(b"record") == deterministic.sign(b"record")
