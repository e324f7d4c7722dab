"""Ed25519 over the libcrypto `ssl` maps (the sidecar's backend) against `cryptography`
(the regional processes'): the same bytes out, either one verifying the other, the same
`SignatureError`, the same key files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cordon.errors import ConfigError, SignatureError
from cordon.log import ed25519_openssl, ed25519_sodium, keys
from cordon.log.keys import SigningKey, load_public_key, public_bytes, verify

ed25519_openssl.load()
OpenSSLKey = ed25519_openssl.PrivateKey

# RFC 8032, 7.1, tests 1 to 3: secret key, public key, message, signature.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.fixture(params=["cryptography", "openssl"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`cordon.log.keys` on one backend for the test, as it was after."""
    chosen = keys._openssl() if request.param == "openssl" else keys._cryptography()
    monkeypatch.setattr(keys, "_backend", chosen)
    monkeypatch.setattr(keys, "_INVALID", (*keys._INVALID, chosen.invalid))
    yield request.param


def on(backend: str) -> keys._Backend:
    return keys._openssl() if backend == "openssl" else keys._cryptography()


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_the_rfc_8032_vectors(
    backend: str, secret: str, public: str, message: str, signature: str
) -> None:
    key = SigningKey.from_seed_hex(secret)
    assert public_bytes(key.public_key).hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    verify(load_public_key(bytes.fromhex(public)), bytes.fromhex(signature), bytes.fromhex(message))
    assert key.seed_hex() == secret


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), message=st.binary(max_size=2048))
def test_signatures_are_byte_identical_and_verify_across(secret: bytes, message: bytes) -> None:
    theirs = Ed25519PrivateKey.from_private_bytes(secret)
    ours = OpenSSLKey.from_private_bytes(secret)
    public = theirs.public_key().public_bytes_raw()
    assert ours.public_key().public_bytes_raw() == public
    signature = ours.sign(message)
    assert signature == theirs.sign(message)
    theirs.public_key().verify(signature, message)  # raises if not
    ed25519_openssl.PublicKey.from_public_bytes(public).verify(theirs.sign(message), message)


def tampered(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:] if data else b"\x00"


@pytest.mark.parametrize("wrong", ["signature", "message", "key"])
def test_what_does_not_verify_is_a_signature_error_on_either(backend: str, wrong: str) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    message = b"record bytes"
    signature = key.sign(message)
    public = load_public_key(public_bytes((other if wrong == "key" else key).public_key))
    verify(load_public_key(public_bytes(key.public_key)), signature, message)
    with pytest.raises(SignatureError):
        verify(
            public,
            tampered(signature) if wrong == "signature" else signature,
            tampered(message) if wrong == "message" else message,
        )


def test_a_short_signature_or_key_is_refused_as_on_cryptography(backend: str) -> None:
    key = SigningKey.generate()
    with pytest.raises(SignatureError):
        verify(key.public_key, key.sign(b"x")[:63], b"x")
    with pytest.raises(SignatureError, match="32 raw bytes"):
        load_public_key(b"\x01" * 31)
    with pytest.raises(ConfigError, match="32 bytes of hex"):
        SigningKey.from_seed_hex("ab" * 31)


@pytest.mark.parametrize(
    ("writer", "reader"), [("cryptography", "openssl"), ("openssl", "cryptography")]
)
def test_a_key_written_by_one_backend_loads_in_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, reader: str
) -> None:
    path = tmp_path / "signing.key"
    monkeypatch.setattr(keys, "_backend", on(writer))
    written = SigningKey.load_or_create(path)
    monkeypatch.setattr(keys, "_backend", on(reader))
    monkeypatch.setattr(keys, "_INVALID", (on("openssl").invalid, on("cryptography").invalid))
    read = SigningKey.load_or_create(path)
    assert type(read._private) is not type(written._private)
    assert (read.key_id, read.seed_hex()) == (written.key_id, written.seed_hex())
    assert read.sign(b"m") == written.sign(b"m")
    verify(written.public_key, read.sign(b"m"), b"m")
    assert len(path.read_text().strip()) == 64  # hex of the 32-byte raw private key


def test_the_backend_is_refused_when_its_self_test_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(keys, "_backend", None)
    monkeypatch.setattr(keys, "_INVALID", ())
    monkeypatch.setattr(OpenSSLKey, "sign", lambda self, data: b"\x00" * 64)
    assert keys.use_openssl_backend() is False
    assert "stays with cryptography" in caplog.text
    assert isinstance(SigningKey.generate()._private, Ed25519PrivateKey)


def test_the_backend_is_refused_when_a_symbol_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_backend", None)
    monkeypatch.setattr(keys, "_INVALID", ())
    monkeypatch.setattr(ed25519_openssl, "_lib", None)
    monkeypatch.setitem(ed25519_openssl._SIGNATURES, "EVP_No_Such_Function", (None, []))
    assert keys.use_openssl_backend() is False
    assert keys._backend is None  # the first key takes cryptography


def test_the_backend_is_chosen_when_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_backend", None)
    monkeypatch.setattr(keys, "_INVALID", ())
    assert keys.use_openssl_backend() is True
    key = SigningKey.generate()
    # OpenSSL's key, signing through libsodium where the system has it
    # (tests/cordon/log/test_ed25519_sodium.py).
    assert isinstance(key._private, OpenSSLKey | ed25519_sodium.PrivateKey)
    with pytest.raises(SignatureError):
        verify(key.public_key, b"\x00" * 64, b"m")
