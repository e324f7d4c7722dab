"""Signed envelopes and the keyring an auditor builds from enrolments."""

from __future__ import annotations

import pytest

from cordon.errors import SignatureError
from cordon.log import envelope
from cordon.log.enrolment import Keyring, enrol
from cordon.log.keys import SigningKey, public_bytes


@pytest.fixture
def region_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def keyring(region_key: SigningKey) -> Keyring:
    return Keyring("eu-west", public_bytes(region_key.public_key))


def test_key_id_is_sha256_of_the_raw_public_key(region_key: SigningKey) -> None:
    import hashlib

    raw = public_bytes(region_key.public_key)
    assert region_key.key_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_an_enrolled_replica_key_verifies_its_records(
    region_key: SigningKey, keyring: Keyring
) -> None:
    replica = SigningKey.generate()
    statement = keyring.add_enrolment(enrol(region_key, "eu-west", "gw-1", replica))
    assert statement["replica"] == "gw-1"
    data = envelope.seal({"id": "r1", "outcome": "allow"}, replica).encode()
    assert keyring.verify_record(data) == {"id": "r1", "outcome": "allow"}


@pytest.mark.parametrize("position", [0, 5, -1])
def test_any_changed_payload_byte_is_caught(
    region_key: SigningKey, keyring: Keyring, position: int
) -> None:
    replica = SigningKey.generate()
    keyring.add_enrolment(enrol(region_key, "eu-west", "gw-1", replica))
    sealed = envelope.seal({"id": "r1", "content": "the answer"}, replica)
    payload = bytearray(sealed.payload)
    payload[position] ^= 0x01
    tampered = envelope.Envelope(bytes(payload), sealed.key_id, sealed.signature).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        keyring.verify_record(tampered)


def test_a_record_from_an_unenrolled_key_is_refused(keyring: Keyring) -> None:
    stranger = SigningKey.generate()
    data = envelope.seal({"id": "r1"}, stranger).encode()
    with pytest.raises(SignatureError, match="unknown key id"):
        keyring.verify_record(data)


def test_an_enrolment_not_signed_by_the_regional_key_is_refused(keyring: Keyring) -> None:
    forger = SigningKey.generate()
    forged = enrol(forger, "eu-west", "gw-evil", SigningKey.generate())
    with pytest.raises(SignatureError, match="not signed by the regional key"):
        keyring.add_enrolment(forged)


def test_an_enrolment_for_another_region_is_refused(region_key: SigningKey) -> None:
    other = Keyring("us-east", public_bytes(region_key.public_key))
    with pytest.raises(SignatureError, match="not an enrolment for this region"):
        other.add_enrolment(enrol(region_key, "eu-west", "gw-1", SigningKey.generate()))


def test_garbage_is_not_an_envelope(keyring: Keyring) -> None:
    with pytest.raises(SignatureError, match="not a signed envelope"):
        keyring.verify_record(b"\x93garbage")
